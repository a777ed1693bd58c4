"""Benchmark: wall time of `sztpctl --help` (target < 0.3 s), written to bench/RESULTS.md.

Runs the installed console script several times and reports the median and the worst run, so
an accidental heavy import at start-up shows up as a regression in the recorded figures.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from benchlib import publish

TARGET_SECONDS = 0.3
SECTION = "## sztpctl --help start-up"


def measure(command: list[str], runs: int) -> list[float]:
    subprocess.run(command, check=True, capture_output=True)  # warm the page cache once
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        timings.append(time.perf_counter() - started)
    return timings


def imported_modules(python: str) -> int:
    """How many modules `--help` imports: a cheap, noise-free regression signal."""
    probe = (
        "import sys, runpy; sys.argv=['sztpctl','--help']\n"
        "try:\n    runpy.run_module('sztpctl.commands.__main__', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print(len(sys.modules), file=sys.stderr)"
    )
    result = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True)
    return int(result.stderr.strip().splitlines()[-1])


def render(timings: list[float], modules: int) -> str:
    median = statistics.median(timings)
    verdict = "meets" if median < TARGET_SECONDS else "MISSES"
    return "\n".join(
        [
            SECTION,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node() or 'this machine'} "
            f"({platform.python_implementation()} {platform.python_version()}, "
            f"{len(timings)} runs), `python bench/cli_startup.py`.",
            "",
            "| median | best | worst | modules imported | target |",
            "|---|---|---|---|---|",
            f"| {median * 1000:.0f} ms | {min(timings) * 1000:.0f} ms "
            f"| {max(timings) * 1000:.0f} ms | {modules} | < {TARGET_SECONDS * 1000:.0f} ms "
            f"({verdict}) |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    executable = shutil.which("sztpctl", path=str(Path(sys.executable).parent))
    if executable is None:
        sys.exit("sztpctl is not installed beside this Python; run `make test` first")
    section = render(measure([executable, "--help"], args.runs), imported_modules(sys.executable))
    publish(section, args.write, SECTION)


if __name__ == "__main__":
    main()

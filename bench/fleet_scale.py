"""Benchmark: a fleet of a million devices, on SQLite and on PostgreSQL.

For each backend, against one fresh sztp-server with its default `workers` (one process per
core): `sztpctl apply -f fleet.yaml` of N devices from empty and again as a no-op, the
server's resident memory (every process summed: main, device workers, writer) before and
after, and how long an operator waits for the fleet's views: `sztpctl status`, `sztpctl device
list` (first line and all of it), `sztpctl export` (first byte and all of it) and the inventory
plugin (`ansible-inventory --list`). Devices carry a profile and a MAC address, no secrets
(password hashing and voucher checks are measured by bulk_apply.py).
Targets at 1,000,000 devices: apply < 60 s, no-op < 10 s, RSS < 2 GB, status < 2 s, first
output of list and export < 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible_devices import collections_path
from benchlib import console_script, publish, running_server
from burst import TreeWatch, fresh_database, postgres_cluster, tree_usage

from sztp.labpki import write_lab_pki

SECTION = "## A million devices"
MIB = 1024 * 1024
WHERE_THE_TIME_GOES = "Where the time goes: not profiled yet."


def write_fleet(path: Path, devices: int) -> None:
    """fleet.yaml: the lab's trust anchor and owner, one profile and `devices` devices, each
    with the profile and a MAC."""
    lab = write_lab_pki(path.parent / "pki", [])
    with path.open("w") as out:
        out.write(
            "trust_anchors:\n  - name: lab\n"
            f"    certificates: {{file: {lab.manufacturer_ca.certificate}}}\n"
            f"owner:\n  certificate_chain: {{file: [{lab.owner.certificate}, "
            f"{lab.owner_ca.certificate}]}}\n  private_key: {{file: {lab.owner.private_key}}}\n"
            "profiles:\n  - name: day0\n    type: onboarding\n"
            '    configuration: "hostname lab\\n"\ndevices:\n'
        )
        for index in range(devices):
            mac = ":".join(f"{byte:02x}" for byte in (0x02, 0, *index.to_bytes(4, "big")))
            out.write(f"  - serial: SN-{index:08d}\n    profile: day0\n    mac: '{mac}'\n")


class Cli:
    """sztpctl against one server, timed: wall seconds to the first output and to the end."""

    def __init__(self, admin_url: str, token_file: Path, work: Path) -> None:
        self.environment = {
            **os.environ,
            "SZTP_SERVER": admin_url,
            "SZTP_TOKEN_FILE": str(token_file),
            "XDG_CONFIG_HOME": str(work / "xdg"),
        }

    def run(self, *arguments: str) -> tuple[float, float]:
        return timed_output([console_script("sztpctl"), *arguments], self.environment)


def timed_output(command: Sequence[str], environment: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first byte on standard output, seconds to the end) of a command that
    must succeed; its output is read and dropped."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=environment)
    if process.stdout is None:
        raise SystemExit("no standard output to read")
    first = process.stdout.read(1)
    first_at = time.perf_counter() - started
    while process.stdout.read(1 << 20):
        pass
    if process.wait() != 0 or not first:
        raise SystemExit(f"{' '.join(command)} failed (exit {process.returncode})")
    return first_at, time.perf_counter() - started


def inventory_seconds(admin_url: str, token_file: Path, work: Path) -> float:
    source = work / "fleet.sztp.yml"
    source.write_text(
        json.dumps(
            {
                "plugin": "sztp.bootstrap.devices",
                "server": admin_url,
                "token_file": str(token_file),
            }
        )
    )
    environment = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path(work)),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
    }
    command = [console_script("ansible-inventory"), "-i", str(source), "--list"]
    return timed_output(command, environment)[1]


@contextmanager
def database(backend: str, work: Path) -> Iterator[dict[str, Any]]:
    """Server settings naming a fresh database of `backend`."""
    if backend == "sqlite":
        yield {}
        return
    with postgres_cluster(work) as (url, _cluster):
        yield {"database_url": fresh_database(url, "fleet")}


def measure(backend: str, devices: int, work: Path) -> dict[str, float]:
    fleet = work / "fleet.yaml"
    if not fleet.exists():
        write_fleet(fleet, devices)
    server_dir = work / backend
    server_dir.mkdir()
    figures: dict[str, float] = {}
    with (
        database(backend, work) as settings,
        running_server(server_dir, {"devices": {}}, workers=0, **settings) as server,
    ):
        token_file = server_dir / "admin-token"
        cli = Cli(server.admin_url, token_file, work)
        figures["rss_empty"] = tree_usage(server.process_id)[1] / MIB
        watch = TreeWatch({"server": server.process_id})
        watch.start()
        figures["apply"] = cli.run("apply", "-f", str(fleet))[1]
        figures["noop"] = cli.run("apply", "-f", str(fleet))[1]
        figures["peak_rss"] = watch.stop()["server"].peak_rss / MIB
        figures["rss"] = tree_usage(server.process_id)[1] / MIB
        figures["status"] = cli.run("status")[1]
        figures["list_first"], figures["list"] = cli.run("device", "list")
        figures["export_first"], figures["export"] = cli.run("export")
        figures["inventory"] = inventory_seconds(server.admin_url, token_file, server_dir)
        figures["processes"] = tree_usage(server.process_id)[2]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    arguments = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sztp-fleet-") as scratch:
        for backend in arguments.backends:
            results[backend] = measure(backend, arguments.devices, Path(scratch))
            print(backend, json.dumps(results[backend]), flush=True)
    publish(render(arguments.devices, results), arguments.write, SECTION)


def render(devices: int, results: dict[str, dict[str, float]]) -> str:
    def seconds(value: float, target: float | None = None) -> str:
        verdict = (
            "" if target is None else f" ({'meets' if value < target else 'MISSES'} < {target:g} s)"
        )
        return f"{value:.2f} s{verdict}"

    rows = []
    labels = [
        ("`sztpctl apply -f` from empty", "apply", 60.0),
        ("`sztpctl apply -f` no-op", "noop", 10.0),
        ("`sztpctl status`", "status", 2.0),
        ("`sztpctl device list`, first line", "list_first", 1.0),
        ("`sztpctl device list`, all", "list", None),
        ("`sztpctl export`, first byte", "export_first", 1.0),
        ("`sztpctl export`, all", "export", None),
        ("inventory plugin, `ansible-inventory --list`", "inventory", None),
    ]
    backends = list(results)
    for label, key, target in labels:
        rows.append(
            f"| {label} | " + " | ".join(seconds(results[b][key], target) for b in backends) + " |"
        )
    for label, key in (
        ("server RSS, empty", "rss_empty"),
        ("server RSS, peak", "peak_rss"),
        ("server RSS after", "rss"),
    ):
        rows.append(
            f"| {label} | " + " | ".join(f"{results[b][key]:,.0f} MiB" for b in backends) + " |"
        )
    rows.append(
        "| memory per device (RSS after minus empty) | "
        + " | ".join(
            f"{(results[b]['rss'] - results[b]['rss_empty']) * MIB / devices:,.0f} bytes"
            for b in backends
        )
        + " |"
    )
    measured = (
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}), `python bench/fleet_scale.py --devices {devices}`."
    )
    return "\n".join(
        [
            SECTION,
            "",
            measured,
            "",
            "| what | " + " | ".join(backends) + " |",
            "|---" * (len(backends) + 1) + "|",
            *rows,
            "",
            WHERE_THE_TIME_GOES,
            "",
        ]
    )


if __name__ == "__main__":
    main()

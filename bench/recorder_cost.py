"""Benchmark: what the flight recorder costs a device request.

The same devices (activation codes, a voucher each, signed responses) on a server of the code
before the recorder (`--before`: a checkout of it, e.g. `git worktree add /tmp/before 4f50a58`)
and on one of this checkout, in turn, `--rounds` times, the order alternating from round to
round: wrk plays first contact (each request a different device's first, on a new connection)
and repeat requests (kept-alive connections) as first_contact.py does; the server's CPU time
per request is read from /proc. One server process (`workers: 1`), SQLite, plain HTTP, wrk on
the same machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchlib import (
    lab_fleet,
    lab_vouchers,
    post_state,
    publish,
    require_wrk,
    running_server,
    table_section,
)
from burst import tree_usage
from first_contact import FIRST_CONNECTIONS, REPEAT_CONNECTIONS, basic, run_wrk
from fleet_scale import run_meta

from sztp.labpki import write_lab_pki
from sztp.passwords import generate_activation_code

SECTION = "## The flight recorder's cost"
ROOT = Path(__file__).resolve().parents[1]
CODE_PATHS = ("server", "kit", "cli")
WHERE = (
    "Where the time goes: `--before` is the code before the flight recorder, so the comparison "
    "holds everything issue 15 put on a device request: the recorder's event, the "
    "`sztp_request_duration_seconds` histogram, the profile, image and what-the-device-said "
    "columns. Each request's event is a tuple made on the event loop and every half second a "
    "store thread writes the batch: the tuples become `DeviceEvent`s (a datetime each), are "
    "encoded as one JSON array and go into the reports file's `device_events` table by one "
    "`INSERT ... SELECT ... FROM json_each(?)` (PostgreSQL: `jsonb_array_elements`), then the "
    "rows beyond `device_events_kept` go by one range delete. A first version bound the rows "
    "one by one with `executemany` and cost repeat requests about 50 µs of server CPU each; "
    "as one statement it was within 5 µs of the code before (2026-12-04). Since the histogram "
    "and the three columns, repeat requests cost about 35 µs more than the code before: a "
    "py-spy profile of repeat requests (3,000 devices, 8 s, 250 Hz) puts 10.5% of the server's "
    "samples in the batch write (`add_device_events` 7.9%: the tuple-to-event-to-JSON "
    "conversions and SQLite's insert and delete, the datetime encoding alone 1.8%) and 3.1% in "
    "the histogram's `observe`; writing the JSON rows straight from the tuples is the next "
    "step. Refused requests beyond `refused_events_per_second` cost only a counter."
)


@contextmanager
def code_of(checkout: Path) -> Iterator[None]:
    """Servers started meanwhile import the sztp packages of `checkout`."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(str(checkout / part) for part in CODE_PATHS)
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def measure(
    checkout: Path, resources: dict[str, Any], credentials: list[str], seconds: int, work: Path
) -> dict[str, float]:
    """First contact and repeat rates, and the server's CPU µs per request, on `checkout`."""
    work.mkdir()
    figures: dict[str, float] = {}
    with code_of(checkout), running_server(work, {"http": {}}) as server:
        post_state(server.admin_url, server.token, resources)
        url = server.urls["http"]
        for kind, connections, first in (
            ("first_contact", FIRST_CONNECTIONS, True),
            ("repeat", REPEAT_CONNECTIONS, False),
        ):
            cpu_before = tree_usage(server.process_id)[0]
            load = run_wrk(url, credentials, seconds, connections, first=first, work=work)
            cpu = tree_usage(server.process_id)[0] - cpu_before
            figures[kind] = load.rate
            figures[f"{kind}_cpu_us"] = cpu / max(load.requests, 1) * 1e6
            figures["failed"] = figures.get("failed", 0) + load.failed
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout without the recorder")
    parser.add_argument("--devices", type=int, default=15_000)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    arguments = parser.parse_args()
    require_wrk()
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="sztp-recorder-") as scratch:
        work = Path(scratch)
        lab = write_lab_pki(work / "pki", [])
        vouchers = lab_vouchers(lab, (f"POD-{number:06d}" for number in range(arguments.devices)))
        codes = {serial: generate_activation_code() for serial in vouchers}
        devices = {
            serial: {"profile": "day0", "voucher": voucher, "activation_code": codes[serial]}
            for serial, voucher in vouchers.items()
        }
        resources = lab_fleet(lab, devices)
        credentials = [basic(serial, code) for serial, code in codes.items()]
        checkouts = {"before": arguments.before.resolve(), "after": ROOT}
        for number in range(arguments.rounds):
            order = ["before", "after"] if number % 2 == 0 else ["after", "before"]
            for name in order:
                figures = measure(
                    checkouts[name], resources, credentials, arguments.seconds,
                    work / f"{name}-{number}",
                )  # fmt: skip
                runs[name].append(figures)
                print(name, number, figures, flush=True)
    publish(render(arguments, runs), arguments.write, SECTION)


def render(arguments: argparse.Namespace, runs: dict[str, list[dict[str, float]]]) -> str:
    meta = run_meta()

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    rows = []
    for kind, label in (("first_contact", "first contact"), ("repeat", "repeat requests")):
        ratios = sorted(
            after[kind] / before[kind]
            for before, after in zip(runs["before"], runs["after"], strict=True)
        )
        rows.append(
            f"| {label} | {median('before', kind):,.0f} req/s, "
            f"{median('before', f'{kind}_cpu_us'):.0f} µs | {median('after', kind):,.0f} req/s, "
            f"{median('after', f'{kind}_cpu_us'):.0f} µs | "
            f"{statistics.median(ratios):.0%} (rounds {ratios[0]:.0%}-{ratios[-1]:.0%}) |"
        )
    failed = sum(run["failed"] for name in runs for run in runs[name])
    measured = (
        f"Measured {meta['date']} on {meta['host']} ({meta['cores']} cores, Python "
        f"{meta['python']}), `python bench/recorder_cost.py --before <checkout of the code before "
        f"the recorder> --devices {arguments.devices} --seconds {arguments.seconds} --rounds "
        f"{arguments.rounds}`: {arguments.devices:,} devices with activation codes and vouchers, "
        "signed responses, one sztp-server process on SQLite, plain HTTP, wrk on the same "
        f"machine; medians of {arguments.rounds} rounds, the servers of each round in turn (the "
        f"order alternating). Failed requests: {failed:.0f}."
    )
    columns = ["what", "before (req/s, server CPU a request)", "with the recorder", "after/before"]
    return table_section(SECTION, measured, columns, rows, WHERE)


if __name__ == "__main__":
    main()

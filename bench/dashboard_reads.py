"""Benchmark: what the fleet dashboard asks of the server, at fleet size.

A server (one process, SQLite, plain HTTP) holds `--devices` devices spread over ten profiles
(copies of the lab's `day0`), three models and twenty sites; `--reported` of them have progress
reports (written into its store directly, most in progress, some complete, some failed, some
stale) and the flight recorder holds `--refused` refused requests. Then each request the dashboard's
refresh makes is timed as the browser makes it, over HTTP with the token: the first after the
server started (nothing cached) and the median of `--rounds` more; and a whole refresh, its
requests at once as the page sends them. A Prometheus scrape of /metrics is timed the same way.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from benchlib import lab_fleet, post_state, publish, running_server, table_section
from fleet_scale import run_meta

from sztp.labpki import write_lab_pki
from sztp_server.store import open_store
from sztp_server.store.model import DeviceEvent, ProgressRecord

SECTION = "## The fleet dashboard's reads"
# What one refresh of the dashboard asks for (dashboard.js `refresh`).
REFRESH = (
    "/api/v1/status",
    "/api/v1/status/by?field=profile&field=model&field=site",
    "/api/v1/events?refused=true&limit=50",
)
# The same counts one field a request, for the comparison: each request is a pass of its own.
ONE_FIELD_EACH = tuple(f"/api/v1/status/by?field={field}" for field in ("profile", "model", "site"))
PROFILES = 10
MODELS = 3
SITES = 20


def build_fleet(work: Path, devices: int) -> dict[str, Any]:
    lab = write_lab_pki(work / "pki", [])
    fleet = lab_fleet(
        lab,
        {
            f"SN-{number:07d}": {
                "profile": f"day{number % PROFILES}",
                "model": f"M{number % MODELS}",
                "site": f"site-{number % SITES:02d}",
            }
            for number in range(devices)
        },
    )
    day0 = fleet["profile"]["day0"]
    fleet["profile"] = {f"day{number}": day0 for number in range(PROFILES)}
    return fleet


def add_history(database: str, devices: int, reported: float, refused: int) -> None:
    """Reports for the first `reported` of the devices, and refused requests, as devices
    would have left them."""
    store = open_store(database)
    now = datetime.now(UTC)
    kinds = ("bootstrap-initiated", "bootstrap-complete", "bootstrap-error", "config-initiated")
    try:
        for number in range(int(devices * reported)):
            age = timedelta(hours=1) if number % 7 == 0 else timedelta(seconds=number % 60)
            record = ProgressRecord(
                f"SN-{number:07d}", now - age, kinds[number % len(kinds)], "m", None, 1
            )
            store.add_report(record)
        events = [
            DeviceEvent(
                now, "get-bootstrapping-data", 401, f"X-{n}", False, "unknown-serial", "::1", 1
            )
            for n in range(refused)
        ]
        store.add_device_events(events, keep=200_000)
    finally:
        store.close()


def timed(get: Any, path: str) -> float:
    started = time.perf_counter()
    get(path).raise_for_status()
    return time.perf_counter() - started


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sztp-dashboard-bench-") as directory:
        work = Path(directory)
        database = f"sqlite:///{work / 'sztp.db'}"
        with running_server(work, {"device": {}}) as server:
            post_state(server.admin_url, server.token, build_fleet(work, args.devices))
        add_history(database, args.devices, args.reported, args.refused)
        with running_server(work, {"device": {}}) as server:  # nothing of it cached
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {server.token}"

            def get(path: str) -> requests.Response:
                return session.get(server.admin_url + path, timeout=120)

            paths = [
                *REFRESH,
                *ONE_FIELD_EACH,
                "/api/v1/devices/SN-0000001/progress",
                "/dashboard/",
                "/metrics",
            ]
            first = {path: timed(get, path) for path in paths}
            repeated = {
                path: statistics.median(timed(get, path) for _ in range(args.rounds))
                for path in paths
            }
            with ThreadPoolExecutor(len(REFRESH)) as pool:
                refreshes = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    list(pool.map(lambda path: get(path).raise_for_status(), REFRESH))
                    refreshes.append(time.perf_counter() - started)
    return {
        "meta": run_meta(),
        "first": first,
        "repeated": repeated,
        "refresh": statistics.median(refreshes),
    }


def render(args: argparse.Namespace, result: dict[str, Any]) -> str:
    meta = result["meta"]
    measured = (
        f"Measured {meta['date']} on {meta['host']} ({meta['cores']} cores, Python "
        f"{meta['python']}), `python bench/dashboard_reads.py --devices {args.devices} "
        f"--reported {args.reported} --refused {args.refused} --rounds {args.rounds}`: one "
        f"sztp-server process on SQLite, {args.devices:,} devices over {PROFILES} profiles, "
        f"{MODELS} models and {SITES} sites, {args.reported:.0%} of them with a progress report, "
        f"{args.refused:,} refused requests in the flight recorder; each request timed over "
        "HTTP as the dashboard (or Prometheus) makes it, the first after the server started and "
        f"the median of {args.rounds} more. A refresh (the page's {len(REFRESH)} requests at "
        "once) took "
        f"{result['refresh'] * 1000:.0f} ms (median)."
    )
    rows = [
        f"| `{path}` | {result['first'][path] * 1000:.0f} | {result['repeated'][path] * 1000:.0f} |"
        for path in result["first"]
    ]
    where = (
        "Where the time goes: `/api/v1/status` is the grouped count of head reports "
        "(`sztpctl status`'s) with its stalled and failed lists and the expiry dates (worked out "
        "once per revision: the first call after a start reads them); `/api/v1/status/by` "
        "passes over every device once (its profile, model and site read from the spec), looks "
        "up its head report and counts the devices of each combination of the three (asked "
        "one field a request, as the page did before, each is a pass of its own); the "
        "events page walks the refused-events index backwards. The page and its script are "
        "served from memory. A scrape of `/metrics` runs the grouped count, the expiry look-up "
        "and the webhook outbox's status at once."
    )
    return table_section(SECTION, measured, ["request", "first ms", "repeated ms"], rows, where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--reported", type=float, default=0.5)
    parser.add_argument("--refused", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    publish(render(args, measure(args)), args.write, SECTION)


if __name__ == "__main__":
    main()

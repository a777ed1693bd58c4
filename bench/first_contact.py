"""Benchmark: first contact of a pod of devices that log in with HTTP Basic (issue 14).

A pod powers on: every device makes its first `get-bootstrapping-data`, each over a new
connection. wrk (a C load generator, so the client costs the server's cores little) plays the
devices in turn, one device per request, `Connection: close`, 10 at a time, for `--seconds`,
against a server holding more devices than that gets through: every request is a device's
first, so no login memo or response cache helps. Then the same devices again over kept-alive
connections, 50 at a time: the repeat requests that the older benchmark measured.

sztp-server runs here on SQLite, plain HTTP, every response signed (owner certificate and a
voucher per device), in two fleets: devices with activation codes (a fast salted hash) loaded
through the admin API, the apply timed; and devices with passwords (scrypt), seeded into the
database (hashing that many passwords through the API would take most of an hour; every device
gets the same password and hash, which costs a login exactly as much). `--other NAME=URL
--other-devices CSV` measures another server someone started, e.g. the reference server sztpd
in a throwaway venv, with the same load for its devices (CSV: serial,password per line); its
set-up is not part of this project.
"""

from __future__ import annotations

import argparse
import base64
import csv
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
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

from sztp.labpki import write_lab_pki
from sztp.passwords import generate_activation_code, hash_password
from sztp.state.resources import normalize_spec
from sztp_server.store import Change, SqliteStore

GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
SECTION = "## First contact of a pod (HTTP Basic)"
FIRST_CONNECTIONS = 10
REPEAT_CONNECTIONS = 50
TARGET_FACTOR = 20
BENCH_PASSWORD = "bench password"  # noqa: S105 - every seeded device's, hashed once
WHERE_THE_TIME_GOES = (
    "Where the time goes (py-spy on the server during first contact, 15,000 devices with "
    "activation codes): the server is not saturated by 10 clients on a machine it shares with "
    "wrk; of its busy time about a fifth goes to the TCP connection itself (accept and close: "
    "every first contact is a new connection), a fifth to the device's response (the stored "
    "voucher read once per device and snapshot, the signed data rendered once per device and "
    "cached), and the activation-code check to about 4%. With passwords every first login "
    "costs one scrypt on the password workers (4 threads, 2 cores), which caps first contact "
    "near 50 a second whatever else the server does; activation codes take the check off "
    "those workers, and a wrong code still costs its scrypt there (docs/server.md, Password "
    "logins). sztpd answers an unsigned redirect; it was not profiled."
)


@dataclass(frozen=True)
class Load:
    """What wrk measured."""

    requests: int
    rate: float
    p50_ms: float
    p99_ms: float
    failed: int

    def cell(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.rate:.0f} req/s (p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms{failed})"


def seed(database: Path, resources: dict[str, Any]) -> None:
    """Store `resources` as applying them leaves them (the server is not running yet)."""
    changes = [
        Change("create", kind, name, normalize_spec(kind, name, spec))
        for kind in ("trust-anchor", "owner", "image", "profile", "device")
        for name, spec in resources[kind].items()
    ]
    store = SqliteStore(database)
    try:
        store.apply(changes, actor="bench")
    finally:
        store.close()


def run_wrk(
    url: str, credentials: list[str], seconds: int, connections: int, *, first: bool, work: Path
) -> Load:
    """wrk's figures for requests cycling through `credentials` (base64 of serial:secret)."""
    script = work / f"wrk-{'first' if first else 'repeat'}.lua"
    close = ', ["Connection"]="close"' if first else ""
    script.write_text(
        "local credentials = {" + ",".join(f'"{value}"' for value in credentials) + "}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n % #credentials + 1\n"
        '  return wrk.format("POST", nil, {["Content-Type"]="application/yang-data+json",'
        ' ["Accept"]="application/yang-data+json",'
        f' ["Authorization"]="Basic " .. credentials[n]{close}}}, "")\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("RESULT requests=%d non2xx=%d errors=%d p50=%d p99=%d\\n",'
        " summary.requests, summary.errors.status, summary.errors.connect + summary.errors.read"
        " + summary.errors.write + summary.errors.timeout,"
        " latency:percentile(50), latency:percentile(99)))\n"
        "end\n"
    )
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"{url}{GET_DATA}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    found = re.search(
        r"RESULT requests=(\d+) non2xx=(\d+) errors=(\d+) p50=(\d+) p99=(\d+)", output
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None or rate is None:
        sys.exit(f"wrk gave no figures:\n{output}")
    total, non2xx, errors, p50, p99 = (int(value) for value in found.groups())
    if first and total > len(credentials):
        sys.exit(f"{total} requests for {len(credentials)} devices: raise --devices")
    return Load(total, float(rate.group(1)), p50 / 1000, p99 / 1000, non2xx + errors)


def basic(serial: str, secret: str) -> str:
    return base64.b64encode(f"{serial}:{secret}".encode()).decode()


def measure_sztp_server(work: Path, count: int, seconds: int) -> dict[str, Any]:
    lab = write_lab_pki(work / "pki", [])
    vouchers = lab_vouchers(lab, (f"POD-{number:06d}" for number in range(count)))
    figures: dict[str, Any] = {}
    codes = {serial: generate_activation_code() for serial in vouchers}
    devices = {
        serial: {"profile": "day0", "voucher": voucher, "activation_code": codes[serial]}
        for serial, voucher in vouchers.items()
    }
    (work / "codes").mkdir()
    with running_server(work / "codes", {"http": {}}) as server:
        figures["apply_seconds"] = post_state(
            server.admin_url, server.token, lab_fleet(lab, devices)
        )
        credentials = [basic(serial, code) for serial, code in codes.items()]
        url = server.urls["http"]
        figures["codes_first"] = run_wrk(
            url, credentials, seconds, FIRST_CONNECTIONS, first=True, work=work
        )
        figures["codes_repeat"] = run_wrk(
            url, credentials, seconds, REPEAT_CONNECTIONS, first=False, work=work
        )
    shared_hash = hash_password(BENCH_PASSWORD)
    devices = {
        serial: {"profile": "day0", "voucher": voucher, "password_hash": shared_hash}
        for serial, voucher in vouchers.items()
    }
    (work / "passwords").mkdir()
    seed(work / "passwords" / "sztp.db", lab_fleet(lab, devices))
    with running_server(work / "passwords", {"http": {}}) as server:
        credentials = [basic(serial, BENCH_PASSWORD) for serial in vouchers]
        url = server.urls["http"]
        figures["passwords_first"] = run_wrk(
            url, credentials, seconds, FIRST_CONNECTIONS, first=True, work=work
        )
    return figures


def measure_other(url: str, devices_csv: Path, seconds: int, work: Path) -> dict[str, Load]:
    with devices_csv.open(newline="") as rows:
        credentials = [
            basic(row[0], row[1]) for row in csv.reader(rows) if row and row[0] != "serial"
        ]
    return {
        "first": run_wrk(url, credentials, seconds, FIRST_CONNECTIONS, first=True, work=work),
        "repeat": run_wrk(url, credentials, seconds, REPEAT_CONNECTIONS, first=False, work=work),
    }


def render(args: argparse.Namespace, ours: dict[str, Any], other: dict[str, Load] | None) -> str:
    rows = [
        f"| sztp-server, activation codes | {ours['codes_first'].cell()} "
        f"| {ours['codes_repeat'].cell()} |",
        f"| sztp-server, passwords (scrypt) | {ours['passwords_first'].cell()} | not measured |",
    ]
    comparison = ""
    if other is not None:
        rows.append(f"| {args.other_name} | {other['first'].cell()} | {other['repeat'].cell()} |")
        factor = ours["codes_first"].rate / other["first"].rate
        verdict = "meets" if factor >= TARGET_FACTOR else "MISSES"
        comparison = (
            f" First contact with activation codes: {factor:.1f} times {args.other_name}'s "
            f"({verdict} ≥ {TARGET_FACTOR} times)."
        )
    return table_section(
        SECTION,
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}), `python bench/first_contact.py --devices "
        f"{args.devices} --seconds {args.seconds}`: one sztp-server process on SQLite, plain "
        "HTTP, every response signed (owner certificate and a voucher per device); wrk on the "
        "same machine. First contact: each request a different device's first, on a new "
        f"connection, {FIRST_CONNECTIONS} at a time; repeat: the same devices again over "
        f"{REPEAT_CONNECTIONS} kept-alive connections. Applying the {args.devices} devices "
        "with activation codes and vouchers through the admin API (one `POST /api/v1/state`): "
        f"{ours['apply_seconds']:.1f} s.{comparison}",
        ("server, device secret", "first contact", "repeat"),
        rows,
        WHERE_THE_TIME_GOES,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--other", help="NAME=URL of another server's device listener")
    parser.add_argument("--other-devices", type=Path, help="CSV serial,password for --other")
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    require_wrk()
    args.other_name, _, other_url = (args.other or "").partition("=")
    if bool(args.other) != bool(args.other_devices) or (args.other and not other_url):
        sys.exit("--other NAME=URL and --other-devices CSV go together")
    with tempfile.TemporaryDirectory(prefix="sztp-first-") as temporary:
        work = Path(temporary)
        other = None
        if args.other:
            other = measure_other(other_url, args.other_devices, args.seconds, work)
        ours = measure_sztp_server(work, args.devices, args.seconds)
    publish(render(args, ours, other), args.write, SECTION)


if __name__ == "__main__":
    main()

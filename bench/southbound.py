"""Benchmark: signed `get-bootstrapping-data` throughput of sztp-server on loopback.

Three measurements against one server process on SQLite, all with signed responses (owner
certificate + voucher), each device different:

1. HTTP behind a TLS-terminating proxy: device identity in the client-certificate header from a
   trusted address (the deployment the 1,500 requests/s target is stated for), load by wrk;
2. HTTPS with IDevID client certificates over keep-alive connections;
3. HTTPS with a new TLS connection (full handshake) for every request.

The HTTPS load comes from Python client processes, which share the machine's two cores with
the server: those figures are lower bounds for the server.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import re
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import requests
from benchlib import (
    lab_fleet,
    lab_vouchers,
    post_state,
    require_wrk,
    running_server,
    table_section,
    write_section,
)

from sztp.labpki import LabPki, write_lab_pki

GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
SECTION = "## Southbound get-bootstrapping-data throughput"
TARGET_RPS = 1500
WHERE_THE_TIME_GOES = (
    "Where the time goes: rendering and signing happen once per device and profile; after "
    "that the response comes from a cache keyed by the state revision, so a request costs "
    "header parsing, one certificate parse, a memo lookup for its chain check, and JSON "
    "encoding. sztpd (the reference server) was not measured in this run: its licence forbids "
    "redistribution and it needs a patched dependency on Python 3.11."
)


def load_fleet(lab: LabPki, admin_url: str, token: str, serials: list[str]) -> None:
    devices = {
        serial: {"profile": "day0", "voucher": voucher}
        for serial, voucher in lab_vouchers(lab, serials).items()
    }
    resources = lab_fleet(lab, devices, configuration="hostname x\n")
    post_state(admin_url, token, resources)


def wrk_proxy_mode(
    lab: LabPki, url: str, serials: list[str], seconds: int, work: Path
) -> dict[str, float]:
    headers = [
        quote(lab.devices[serial].idevid.certificate.read_text(), safe="") for serial in serials
    ]
    script = work / "proxy.lua"
    script.write_text(
        "local certs = {" + ",".join(f'"{value}"' for value in headers) + "}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n % #certs + 1\n"
        '  return wrk.format("POST", nil, {["Content-Type"]="application/yang-data+json",'
        ' ["X-SSL-Client-Cert"]=certs[n]}, "")\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("STATUS non2xx=%d\\n", summary.errors.status))\n'
        "end\n"
    )
    output = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), f"{url}{GET_DATA}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", output)
    non2xx = int(re.search(r"STATUS non2xx=(\d+)", output).group(1))  # type: ignore[union-attr]
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": rate,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
        "non2xx": non2xx,
    }


def _https_worker(arguments: tuple[str, str, str, str, float, bool]) -> int:
    url, cert, key, ca, seconds, keep_alive = arguments
    session = requests.Session()
    session.trust_env = False
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not keep_alive:
            session.close()
            session = requests.Session()
            session.trust_env = False
        response = session.post(
            f"{url}{GET_DATA}", headers={"Content-Type": "application/yang-data+json"},
            cert=(cert, key), verify=ca, timeout=10,
        )  # fmt: skip
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        done += 1
    return done


def https_mode(lab: LabPki, url: str, serials: list[str], seconds: int, keep_alive: bool) -> float:
    workers = 3
    jobs = [
        (
            url,
            str(lab.devices[serials[index]].idevid.certificate),
            str(lab.devices[serials[index]].idevid.private_key),
            str(lab.tls_ca.certificate),
            float(seconds),
            keep_alive,
        )
        for index in range(workers)
    ]
    with multiprocessing.Pool(workers) as pool:
        total = sum(pool.map(_https_worker, jobs))
    return total / seconds


def render(devices: int, proxy: dict[str, float], keep_alive: float, handshake: float) -> str:
    verdict = "meets" if proxy["rps"] >= TARGET_RPS else "MISSES"
    rows = [
        (
            "HTTP, identity from trusted proxy header (wrk, 32 connections)",
            proxy["rps"],
            f"p99 {proxy['p99_ms']:.1f} ms, {proxy['non2xx']:.0f} non-2xx; "
            f"target ≥ {TARGET_RPS} ({verdict})",
        ),
        (
            "HTTPS + IDevID client certificate, keep-alive (3 Python clients)",
            keep_alive,
            "client-bound lower bound",
        ),
        (
            "HTTPS + IDevID client certificate, new TLS connection per request",
            handshake,
            "full ECDHE handshake with client-certificate verification each time",
        ),
    ]
    return table_section(
        SECTION,
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}), `python bench/southbound.py`: one sztp-server "
        f"process, SQLite, {devices} devices, every response signed (owner certificate + "
        "voucher), client and server on the same machine.",
        ("mode", "requests/s", "notes"),
        (f"| {mode} | {rate:.0f} | {notes} |" for mode, rate, notes in rows),
        WHERE_THE_TIME_GOES,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    require_wrk()
    with tempfile.TemporaryDirectory(prefix="sztp-bench-") as temporary:
        work = Path(temporary)
        serials = [f"BENCH-{number:05d}" for number in range(args.devices)]
        lab = write_lab_pki(work / "pki", serials)
        tls = {"tls_cert": str(lab.server.certificate), "tls_key": str(lab.server.private_key)}
        listeners = {"http": {}, "https": tls}
        with running_server(work, listeners, trusted_proxies=["127.0.0.1/32"]) as server:
            load_fleet(lab, server.admin_url, server.token, serials)
            proxy = wrk_proxy_mode(lab, server.urls["http"], serials, args.seconds, work)
            keep_alive = https_mode(lab, server.urls["https"], serials, args.seconds, True)
            handshake = https_mode(lab, server.urls["https"], serials, args.seconds, False)
    section = render(args.devices, proxy, keep_alive, handshake)
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)


if __name__ == "__main__":
    main()

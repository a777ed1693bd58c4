"""Benchmark: new TLS connections with a client certificate, sztp-server against OpenSSL's own
`s_server` (issue 14, "TLS at the handshake limit").

A device connects once, so a full handshake with client-certificate verification is what each
device of a powered-on pod costs. Both servers get the same server certificate, the same
manufacturer CA to verify the client against and the same TLS 1.3 cipher suite; the clients
use `--devices` lab IDevIDs in turn. Two measurements, each for `--seconds` per server:

- handshakes only: two `openssl s_time -new` processes make full handshakes one after another
  each, no request: the transport's limit;
- handshake and request: bench/tls_client.c (built into build/bench when missing or older
  than its source; C, so the client spends little beyond its own side of each handshake) makes
  `--clients` connections at a time, each a full handshake and one request read to its end,
  then closed. sztp-server gets a signed
  `get-bootstrapping-data` from a device known by its IDevID (owner certificate and a voucher
  per device); `s_server -www` answers only GET, so it gets `GET /` and sends its status page.

sztp-server runs with `workers: 1` and `workers: 2` (device worker processes beside the main
one, on the same port). The issue's target: sztp-server at least 70% of `s_server`'s rate for
a handshake and a signed `get-bootstrapping-data` on every connection.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchlib import (
    free_port,
    lab_fleet,
    lab_vouchers,
    post_state,
    publish,
    running_server,
    table_section,
)

from sztp.labpki import LabPki, write_lab_pki

SECTION = "## New TLS connections with a client certificate"
GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
CIPHER_SUITE = "TLS_AES_128_GCM_SHA256"
S_TIME_CLIENTS = 2
TARGET_SHARE = 0.70
WORKER_COUNTS = (1, 2)
SOURCE = Path(__file__).with_name("tls_client.c")
CLIENT = Path(__file__).resolve().parent.parent / "build" / "bench" / "tls_client"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WHERE_THE_TIME_GOES = (
    "Where the time goes (py-spy on sztp-server under the handshake-and-request load): with "
    "`workers: 1` its event loop is never idle; about two fifths of its time is the TLS "
    "handshake in OpenSSL (ECDHE, the server's signature, the client certificate's chain "
    "check: what `s_server` spends too), about a third the send() system calls (on loopback "
    "the kernel hands the bytes to the client within the call, and time the process spends "
    "preempted there counts too), and under a fifth the request itself: aiohttp reading it "
    "and writing the response, the device handler (the device named by its certificate, the "
    "profile's signed conveyed information and owner certificate from the response cache, "
    "which signs once per profile, plus the device's own voucher) and the connection's "
    "admission. So no signature is made per connection beyond the handshake's; what "
    "sztp-server spends per connection beyond `s_server` (last column) is Python: asyncio's "
    "TLS layer, aiohttp and the handler. "
    "`s_server` serves one connection at a time and sits idle while the client does its part "
    "of each handshake, so its rate is bounded by the server's and the client's time added "
    "up; sztp-server overlaps connections, which is how it reaches or passes that rate, "
    "handshakes alone included. `workers: 2` spends about the CPU per connection one process "
    "does, and its rate is capped by the machine, not by the server: the server's processes "
    "and the client together use most of the two cores (server CPU per connection times the "
    "rate, plus the client's), so a second process only adds what the client leaves free; on "
    "a busy machine (the same bench run beside a test suite) both it and `workers: 1` lose "
    "most of their lead."
)


@dataclass(frozen=True)
class Run:
    """What tls_client measured."""

    rate: float
    connections: int
    failed: int
    p50_ms: float
    p99_ms: float
    server_cpu_ms: float  # CPU time per connection, the server's processes together
    client_cpu_ms: float

    def cells(self, reference: Run | None) -> list[str]:
        share = f" ({self.rate / reference.rate:.0%})" if reference else ""
        return [
            f"{self.rate:.0f}{share}",
            f"{self.p50_ms:.1f}, {self.p99_ms:.1f}",
            f"{self.failed} of {self.connections}",
            f"{self.server_cpu_ms:.2f}, {self.client_cpu_ms:.2f}",
        ]


@dataclass(frozen=True)
class Figures:
    """One server's figures: handshakes only (connections/s), then handshake and request."""

    handshakes: float
    requests: Run


@dataclass(frozen=True)
class Setup:
    """What every measurement shares."""

    work: Path
    client: Path  # the built tls_client
    lab: LabPki
    pairs: Path  # every device's "certificate key" paths, a line each, for tls_client -K
    vouchers: dict[str, str]  # serial -> base64 voucher
    seconds: int
    clients: int


def build_client() -> Path:
    """build/bench/tls_client, compiled when missing or older than its source."""
    if CLIENT.exists() and CLIENT.stat().st_mtime >= SOURCE.stat().st_mtime:
        return CLIENT
    if shutil.which("gcc") is None:
        sys.exit("gcc is needed to build bench/tls_client.c: apt-get install gcc libssl-dev")
    CLIENT.parent.mkdir(parents=True, exist_ok=True)
    # The command bench/tls_client.c's header gives, from anywhere.
    command = [
        "gcc", "-O2", "-Wall", "-Wextra", "-o", str(CLIENT), str(SOURCE), "-lssl", "-lcrypto",
    ]  # fmt: skip
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        sys.exit(f"building tls_client failed (libssl-dev installed?):\n{built.stderr}")
    return CLIENT


def handshakes(port: int, lab: LabPki, seconds: int) -> float:
    """New connections per second, `S_TIME_CLIENTS` s_time processes together."""
    device = next(iter(lab.devices.values())).idevid
    command = [
        "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(seconds),
        "-cert", str(device.certificate), "-key", str(device.private_key),
        "-CAfile", str(lab.tls_ca.certificate), "-ciphersuites", CIPHER_SUITE,
    ]  # fmt: skip

    def one() -> int:
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        found = re.search(r"(\d+) connections in ([\d.]+)s;", output)
        if found is None:
            sys.exit(f"s_time gave no figures:\n{output}")
        return int(found.group(1))

    with ThreadPoolExecutor(S_TIME_CLIENTS) as pool:
        total = sum(pool.map(lambda _: one(), range(S_TIME_CLIENTS)))
    return total / seconds


def tree_cpu_seconds(root: int) -> float:
    """CPU time used so far by process `root` and every process below it (sztp-server's
    device workers are children of its forkserver), as /proc shows them now."""
    total, pending, seen = 0.0, [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            # After the command name's closing parenthesis: field 3 (state) on; utime and
            # stime are fields 14 and 15.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:  # ended meanwhile
            continue
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def with_requests(port: int, server_pid: int, request: str, setup: Setup) -> Run:
    """tls_client's figures for `request` on every new connection, `setup.clients` at a time,
    and the CPU time per connection of the server (`server_pid` and below) and the client."""
    request_file = setup.work / "request.http"
    request_file.write_bytes(request.encode())
    command = [
        str(setup.client), "-H", "127.0.0.1", "-p", str(port), "-d", str(setup.seconds),
        "-c", str(setup.clients), "-C", str(setup.lab.tls_ca.certificate),
        "-K", str(setup.pairs), "-s", CIPHER_SUITE, "-r", str(request_file),
    ]  # fmt: skip
    server_before, client_before = tree_cpu_seconds(server_pid), children_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, timeout=setup.seconds + 60)
    server_cpu, client_cpu = (
        tree_cpu_seconds(server_pid) - server_before,
        children_cpu_seconds() - client_before,
    )
    found = re.search(r"^RESULT (.*)$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or found is None:
        sys.exit(f"tls_client gave no figures:\n{done.stdout}{done.stderr}")
    figures = {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", found.group(1))}
    if figures["failed"] or figures["resumed"]:
        print(f"tls_client on port {port}: {found.group(1)}\n{done.stderr}", file=sys.stderr)
    connections = int(figures["connections"])
    return Run(
        figures["rate"],
        connections,
        int(figures["failed"]),
        figures["p50_us"] / 1000,
        figures["p99_us"] / 1000,
        server_cpu * 1000 / max(connections, 1),
        client_cpu * 1000 / max(connections, 1),
    )


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until something accepts on `port`, or exit when `process` ends or takes too long."""
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("openssl s_server did not start")


@contextmanager
def s_server(lab: LabPki) -> Iterator[tuple[int, int]]:
    """`openssl s_server -www` on a free port. -verify_return_error: without it s_server
    reports a client certificate that fails verification and carries on with the handshake."""
    port = free_port()
    server = subprocess.Popen(
        [
            "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-quiet", "-www",
            "-cert", str(lab.server.certificate), "-key", str(lab.server.private_key),
            "-CAfile", str(lab.manufacturer_ca.certificate), "-Verify", "1",
            "-verify_return_error", "-ciphersuites", CIPHER_SUITE,
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, server)
        yield port, server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)


def measure_s_server(setup: Setup) -> Figures:
    # HTTP/1.0: s_server closes once its page is out.
    request = "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    with s_server(setup.lab) as (port, pid):
        return Figures(
            handshakes(port, setup.lab, setup.seconds), with_requests(port, pid, request, setup)
        )


def measure_sztp_server(setup: Setup, workers: int) -> Figures:
    work = setup.work / f"workers-{workers}"
    work.mkdir()
    lab = setup.lab
    tls = {"tls_cert": str(lab.server.certificate), "tls_key": str(lab.server.private_key)}
    devices = {
        serial: {"profile": "day0", "voucher": voucher}
        for serial, voucher in setup.vouchers.items()
    }
    with running_server(work, {"https": tls}, workers=workers) as server:
        post_state(server.admin_url, server.token, lab_fleet(lab, devices))
        port = int(server.urls["https"].rsplit(":", 1)[1])
        # An empty body: RFC 8572's input is optional. The data comes signed all the same: the
        # profile's `signing` is `required` unless set otherwise.
        request = (
            f"POST {GET_DATA} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/yang-data+json\r\nAccept: application/yang-data+json\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        return Figures(
            handshakes(port, lab, setup.seconds),
            with_requests(port, server.process_id, request, setup),
        )


def render(setup: Setup, reference: Figures, ours: dict[int, Figures]) -> str:
    version = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout
    rows = [
        f"| `openssl s_server -www` | {reference.handshakes:.0f} | "
        + " | ".join(reference.requests.cells(None))
        + " |"
    ]
    verdicts = []
    for workers, figures in ours.items():
        share = figures.requests.rate / reference.requests.rate
        rows.append(
            f"| sztp-server, `workers: {workers}` | {figures.handshakes:.0f} "
            f"({figures.handshakes / reference.handshakes:.0%}) | "
            + " | ".join(figures.requests.cells(reference.requests))
            + " |"
        )
        verdict = "meets" if share >= TARGET_SHARE else "MISSES"
        cpu = figures.requests.server_cpu_ms / reference.requests.server_cpu_ms
        verdicts.append(
            f"`workers: {workers}` {share:.0%}, {verdict} it (its CPU time per connection "
            f"{cpu:.2f} times `s_server`'s)"
        )
    return table_section(
        SECTION,
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {version.strip()}), `python "
        f"bench/tls_handshake.py --seconds {setup.seconds} --clients {setup.clients} --devices "
        f"{len(setup.vouchers)}`: every server and its clients on the same machine, "
        f"{setup.seconds} s per measurement, EC P-256 lab certificates, {CIPHER_SUITE}, each "
        f"client certificate verified against the manufacturer CA, {len(setup.vouchers)} "
        "devices' IDevIDs taken in turn. Handshakes only: "
        f"{S_TIME_CLIENTS} `openssl s_time -new` clients, no request. Handshake and request: "
        f"bench/tls_client.c, {setup.clients} connections at a time, each a full handshake, "
        "one request read to its end, and a close; sztp-server answers a signed "
        "`get-bootstrapping-data` (POST, conveyed information signed by the owner, owner "
        "certificate, the device's voucher) to the device its IDevID names; `s_server -www` "
        "answers only GET, so it gets `GET /` and sends its status page. The target, "
        f"sztp-server at least {TARGET_SHARE:.0%} of `s_server` for a handshake and request: "
        + ", ".join(verdicts)
        + ".",
        (
            "server",
            "handshakes only, connections/s",
            "handshake + request, connections/s",
            "p50, p99 (ms)",
            "failed",
            "CPU ms per connection: server, client",
        ),
        rows,
        WHERE_THE_TIME_GOES,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4, help="tls_client's connections at once")
    parser.add_argument("--devices", type=int, default=200, help="distinct IDevIDs, in turn")
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    if shutil.which("openssl") is None:
        sys.exit("openssl is needed: apt-get install openssl")
    client = build_client()
    with tempfile.TemporaryDirectory(prefix="sztp-tls-") as temporary:
        work = Path(temporary)
        serials = [f"TLS-{number:05d}" for number in range(args.devices)]
        lab = write_lab_pki(work / "pki", serials)
        pairs = work / "devices.txt"
        pairs.write_text(
            "".join(
                f"{d.idevid.certificate} {d.idevid.private_key}\n" for d in lab.devices.values()
            )
        )
        setup = Setup(
            work, client, lab, pairs, lab_vouchers(lab, serials), args.seconds, args.clients
        )
        reference = measure_s_server(setup)
        ours = {workers: measure_sztp_server(setup, workers) for workers in WORKER_COUNTS}
    publish(render(setup, reference, ours), args.write, SECTION)


if __name__ == "__main__":
    main()

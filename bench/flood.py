"""Benchmark: real devices and the admin API while an attacker floods the device listener.

One sztp-server (SQLite, TLS device listener with the lab PKI, signed responses), measured in
three phases of equal length:

1. baseline: nothing else happens;
2. Basic login flood: many connections send `get-bootstrapping-data` with wrong passwords for a
   known password device and with unknown serial numbers, as fast as the server answers;
3. half-open connections (slowloris): TCP connections that never start TLS, requests whose
   header block never ends, and requests whose body never arrives, each dribbling a little now
   and then, and opened again whenever the server closes them.

Meanwhile certificate devices (IDevID client certificates, a new TLS connection per request, as
a device bootstrapping) call `get-bootstrapping-data`, and an admin client reads a device's
status over a new connection each time. A device request that fails or takes longer than the
timeout counts as a failure. The attacker's requests answered 401 were "processed" (the server
did the work of checking them); answers of 408, 429 or 503, and connections the server closes
or refuses, count as refused.

Attacker and measuring clients are Python processes on the same machine as the server and
share its cores: the figures compare phases with each other, not with other machines.

Over 500 lines on purpose: a benchmark is read from top to bottom by whoever checks its
figures, and the attacker, the measured clients and the report are one experiment.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import itertools
import multiprocessing
import os
import platform
import resource
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from benchlib import running_server, write_section
from southbound import GET_DATA, load_fleet

from sztp.labpki import LabPki, write_lab_pki

SECTION = "## Devices and admin API under a login flood and half-open connections"
LOGIN_SERIAL = "FLOOD-LOGIN"  # a device with a Basic login
# Statuses with which a server turns an attacker away instead of doing the work.
REFUSAL_STATUSES = frozenset({408, 429, 503})
JSON_TYPE = "application/yang-data+json"
RETRY_PAUSE = 0.1  # seconds a device client waits after a failed request
# Seconds between the admin client's reads and between the password device's logins: paced
# like an operator's tooling and a device, not like a load generator.
PACE = 0.05


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        sys.exit(f"{url} names no host and port")
    return parts.hostname, parts.port


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    tls_ca: str

    @classmethod
    def of(cls, url: str, tls_ca: Path) -> Target:
        return cls(*_host_port(url), str(tls_ca))

    def tls(self, certificate: tuple[str, str] | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.tls_ca)
        if certificate is not None:
            context.load_cert_chain(*certificate)
        return context


# --------------------------------------------------------------------------- measuring clients


@dataclass
class Samples:
    """Latencies (seconds) of successful requests, and the failures by kind."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    def merge(self, other: Samples) -> None:
        self.latencies.extend(other.latencies)
        self.failures.update(other.failures)


def _timed_loop(seconds: float, request: Callable[[], int], expected: int) -> Samples:
    samples = Samples()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        start = time.monotonic()
        try:
            status = request()
        except TimeoutError:
            failure = "timeout"
        except (OSError, http.client.HTTPException) as exc:
            failure = type(exc).__name__
        else:
            if status == expected:
                samples.latencies.append(time.monotonic() - start)
                continue
            failure = f"HTTP {status}"
        samples.failures[failure] += 1
        # A refused device tries again soon, not in a tight loop.
        time.sleep(RETRY_PAUSE)
    return samples


def _device_worker(
    arguments: tuple[Target, list[tuple[str, str]], float, float],
) -> Samples:
    """Certificate devices taking turns, each request on a new TLS connection."""
    target, certificates, seconds, timeout = arguments
    contexts = itertools.cycle([target.tls(certificate) for certificate in certificates])

    def request() -> int:
        connection = http.client.HTTPSConnection(
            target.host, target.port, context=next(contexts), timeout=timeout
        )
        return _status_of(
            connection, "POST", GET_DATA, body=b"", headers={"Content-Type": JSON_TYPE}
        )

    return _timed_loop(seconds, request, 200)


def _login_worker(arguments: tuple[Target, str, str, float, float]) -> Samples:
    """The password device logging in with the right password, as often as the admin client
    asks: a limiter that locks a serial out shows here."""
    target, serial, password, seconds, timeout = arguments
    context = target.tls()
    credentials = base64.b64encode(f"{serial}:{password}".encode()).decode()

    def login() -> int:
        connection = http.client.HTTPSConnection(
            target.host, target.port, context=context, timeout=timeout
        )
        return _status_of(
            connection,
            "POST",
            GET_DATA,
            body=b"",
            headers={"Content-Type": JSON_TYPE, "Authorization": f"Basic {credentials}"},
        )

    return _timed_loop(seconds, _paced(login), 200)


def _admin_worker(arguments: tuple[str, str, str, float, float]) -> Samples:
    """The admin API read a device's status; a new connection each time, as `sztpctl` does."""
    admin_url, token, serial, seconds, timeout = arguments
    host, port = _host_port(admin_url)

    def request() -> int:
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        return _status_of(
            connection,
            "GET",
            f"/api/v1/devices/{serial}/status",
            headers={"Authorization": f"Bearer {token}"},
        )

    return _timed_loop(seconds, _paced(request), 200)


def _status_of(
    connection: http.client.HTTPConnection,
    method: str,
    path: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
) -> int:
    """The status of one request on a connection of its own, which is closed after."""
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _paced(request: Callable[[], int]) -> Callable[[], int]:
    """`request`, then a pause of PACE: a client that comes back now and then."""

    def paced() -> int:
        status = request()
        time.sleep(PACE)
        return status

    return paced


# --------------------------------------------------------------------------- the attacker


# What became of the attacker's connections and requests.
OPENED = "opened"
OPEN_AT_END = "open at the end"
CLOSED = "closed by server"
CONNECT_FAILED = "connection refused or failed"
TIMED_OUT = "timed out"
PROCESSED = "answered 401"
REFUSED = "refused (408, 429, 503)"
FLOOD = "login flood"
# What was tried, for the latency of 401 answers: a gap between the two tells serials apart.
WRONG_PASSWORD, UNKNOWN_SERIAL = "wrong password", "unknown serial"


@dataclass
class AttackStats:
    # (kind of attack, outcome) -> count
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    cpu_seconds: float = 0.0

    def count(self, kind: str, outcome: str) -> None:
        self.counts[kind, outcome] += 1


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server closes the connection) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("connection", "").lower() == "close"


def _login_request(host: str, serial: str, password: str) -> bytes:
    credentials = base64.b64encode(f"{serial}:{password}".encode()).decode()
    return (
        f"POST {GET_DATA} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {JSON_TYPE}\r\n"
        f"Authorization: Basic {credentials}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def _login_flood(
    target: Target,
    sources: list[str],
    connections: int,
    deadline: float,
    timeout: float,
    stats: AttackStats,
) -> None:
    """Keep-alive connections sending bad logins back to back; reopened when closed."""
    context = target.tls()
    attempt = itertools.count()

    async def one_connection(source: str) -> None:
        while time.monotonic() < deadline:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(
                        target.host, target.port, ssl=context, local_addr=(source, 0)
                    ),
                    timeout,
                )
            except (OSError, TimeoutError):
                stats.count(FLOOD, CONNECT_FAILED)
                await asyncio.sleep(0.1)
                continue
            stats.count(FLOOD, OPENED)
            try:
                while time.monotonic() < deadline:
                    number = next(attempt)
                    tried = WRONG_PASSWORD if number % 2 else UNKNOWN_SERIAL
                    serial = LOGIN_SERIAL if tried == WRONG_PASSWORD else f"NO-SUCH-{number}"
                    writer.write(_login_request(target.host, serial, f"guess-{number}"))
                    start = time.monotonic()
                    status, closing = await asyncio.wait_for(_read_response(reader), timeout)
                    if status == 401:
                        stats.count(FLOOD, PROCESSED)
                        stats.latencies.setdefault(tried, []).append(time.monotonic() - start)
                    elif status in REFUSAL_STATUSES:
                        stats.count(FLOOD, REFUSED)
                    else:
                        stats.count(FLOOD, f"answered {status}")
                    if closing:
                        break
            except TimeoutError:
                stats.count(FLOOD, TIMED_OUT)
            except (OSError, asyncio.IncompleteReadError):
                stats.count(FLOOD, CLOSED)
            finally:
                writer.close()

    await asyncio.gather(
        *(one_connection(sources[index % len(sources)]) for index in range(connections))
    )


ATTACKER_TIMEOUT = 10.0  # seconds the login flood waits for a connection or an answer
REOPEN_PAUSE = 1.0  # seconds before a half-open connection is opened again
DRIP_INTERVAL = 5.0  # seconds between the octets or header lines a half-open connection sends
NO_TLS, ENDLESS_HEADERS, ENDLESS_BODY = "no TLS handshake", "endless headers", "endless body"
SLOW_KINDS = (NO_TLS, ENDLESS_HEADERS, ENDLESS_BODY)


async def _half_open(
    target: Target,
    sources: list[str],
    connections: int,
    deadline: float,
    interval: float,
    stats: AttackStats,
) -> None:
    """Connections that never finish a request, a drip every `interval`; reopened when the
    server closes or answers them."""
    context = target.tls()
    # Handshakes in bounded batches, so the ramp-up itself is not a handshake flood.
    opening = asyncio.Semaphore(50)

    async def one_connection(kind: str, source: str) -> None:
        while time.monotonic() < deadline:
            try:
                async with opening:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(
                            target.host,
                            target.port,
                            ssl=None if kind == NO_TLS else context,
                            local_addr=(source, 0),
                        ),
                        30,
                    )
            except (OSError, TimeoutError):
                stats.count(kind, CONNECT_FAILED)
                await asyncio.sleep(REOPEN_PAUSE)
                continue
            stats.count(kind, OPENED)
            request_line = f"POST {GET_DATA} HTTP/1.1\r\nHost: {target.host}\r\n"
            if kind == ENDLESS_HEADERS:
                writer.write(request_line.encode())
            elif kind == ENDLESS_BODY:
                writer.write(
                    f"{request_line}Content-Type: {JSON_TYPE}\r\n"
                    "Content-Length: 1000000\r\n\r\n".encode()
                )
            try:
                for drip in itertools.count():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        stats.count(kind, OPEN_AT_END)
                        return
                    try:
                        data = await asyncio.wait_for(reader.read(4096), min(interval, remaining))
                    except TimeoutError:
                        if kind == ENDLESS_HEADERS:
                            writer.write(f"X-Drip-{drip}: x\r\n".encode())
                        elif kind == ENDLESS_BODY:
                            writer.write(b"{")
                        continue
                    status_line = data.split(b"\r\n", 1)[0].split()
                    answered = len(status_line) > 1 and status_line[0].startswith(b"HTTP/")
                    stats.count(kind, f"answered {status_line[1].decode()}" if answered else CLOSED)
                    break
            except (OSError, asyncio.IncompleteReadError):
                stats.count(kind, CLOSED)
            finally:
                writer.close()
            # Slow, not a handshake flood: a closed or answered connection is reopened later.
            await asyncio.sleep(REOPEN_PAUSE)

    await asyncio.gather(
        *(
            one_connection(SLOW_KINDS[index % len(SLOW_KINDS)], sources[index % len(sources)])
            for index in range(connections)
        )
    )


def _attacker(
    kind: str,
    target: Target,
    sources: list[str],
    strength: int,
    seconds: float,
    report: Connection,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    stats = AttackStats()
    deadline = time.monotonic() + seconds
    if kind == FLOOD:
        attack = _login_flood(target, sources, strength, deadline, ATTACKER_TIMEOUT, stats)
    else:
        attack = _half_open(target, sources, strength, deadline, DRIP_INTERVAL, stats)
    asyncio.run(attack)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.cpu_seconds = usage.ru_utime + usage.ru_stime
    report.send(stats)


# --------------------------------------------------------------------------- phases


def add_password(admin_url: str, token: str, serial: str) -> str:
    """Give `serial` a Basic login too (the flood guesses at it); its password."""
    url = f"{admin_url}/api/v1/devices/{serial}"
    headers = {"Authorization": f"Bearer {token}"}
    spec = requests.get(url, headers=headers, timeout=60).json()["spec"]
    spec["password"] = secrets.token_urlsafe()
    response = requests.put(url, json={"spec": spec}, headers=headers, timeout=60)
    if not response.ok:
        sys.exit(f"giving {serial} a password failed: {response.text}")
    return str(spec["password"])


@dataclass
class PhaseResult:
    name: str
    seconds: float
    devices: Samples
    admin: Samples
    login: Samples
    server_cpu_seconds: float  # while measured
    attack: AttackStats | None


def cpu_seconds(process_id: int) -> float:
    """User and system CPU time of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{process_id}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    name: str,
    attack: str | None,
    *,
    server_process: int,
    strength: int,
    seconds: float,
    ramp: float,
    target: Target,
    device_certificates: list[tuple[str, str]],
    device_clients: int,
    admin: tuple[str, str, str],
    login: tuple[str, str],
    attacker_sources: list[str],
    timeout: float,
) -> PhaseResult:
    attacker = None
    receiver, sender = multiprocessing.Pipe(duplex=False)
    if attack is not None:
        attacker = multiprocessing.Process(
            target=_attacker,
            args=(attack, target, attacker_sources, strength, ramp + seconds, sender),
        )
        attacker.start()
        time.sleep(ramp)
    server_cpu = cpu_seconds(server_process)
    shares = [device_certificates[index::device_clients] for index in range(device_clients)]
    with multiprocessing.Pool(device_clients + 2) as pool:
        admin_result = pool.apply_async(_admin_worker, [(*admin, seconds, timeout)])
        login_result = pool.apply_async(_login_worker, [(target, *login, seconds, timeout)])
        device_results = pool.map(
            _device_worker, [(target, share, seconds, timeout) for share in shares]
        )
        devices = Samples()
        for result in device_results:
            devices.merge(result)
        admin_samples = admin_result.get()
        login_samples = login_result.get()
    server_cpu = cpu_seconds(server_process) - server_cpu
    stats = None
    if attacker is not None:
        stats = receiver.recv()
        attacker.join()
    return PhaseResult(name, seconds, devices, admin_samples, login_samples, server_cpu, stats)


# --------------------------------------------------------------------------- report


def _ms(values: list[float], quantile: int) -> str:
    if len(values) < 2:
        return "—"
    return f"{statistics.quantiles(values, n=100, method='inclusive')[quantile - 1] * 1000:.0f}"


def _failures(samples: Samples) -> str:
    total = sum(samples.failures.values())
    if not total:
        return "0"
    kinds = ", ".join(f"{count} {kind}" for kind, count in samples.failures.most_common())
    return f"{total} ({kinds})"


def _flood_rows(results: list[PhaseResult]) -> list[str]:
    rows = []
    for result in results:
        if result.attack is None or not any(kind == FLOOD for kind, _ in result.attack.counts):
            continue
        counts = {outcome: n for (kind, outcome), n in result.attack.counts.items()}
        answered = sum(counts.get(outcome, 0) for outcome in (PROCESSED, REFUSED))
        others = ", ".join(
            f"{n} {outcome}"
            for outcome, n in sorted(counts.items())
            if outcome.startswith("answered ") and outcome != PROCESSED
        )
        latencies = result.attack.latencies
        rows.append(
            f"| {result.name} | {answered} | {counts.get(PROCESSED, 0)} "
            f"| {counts.get(REFUSED, 0)} | {others or 0} "
            f"| {counts.get(CLOSED, 0)} / {counts.get(TIMED_OUT, 0)} "
            f"| {counts.get(CONNECT_FAILED, 0)} "
            f"| {_ms(latencies.get(WRONG_PASSWORD, []), 50)} "
            f"/ {_ms(latencies.get(UNKNOWN_SERIAL, []), 50)} |"
        )
    return rows


def _half_open_rows(results: list[PhaseResult]) -> list[str]:
    rows = []
    for result in results:
        if result.attack is None:
            continue
        for kind in SLOW_KINDS:
            counts = {o: n for (k, o), n in result.attack.counts.items() if k == kind}
            if not counts:
                continue
            answers = ", ".join(
                f"{n} {outcome.removeprefix('answered ')}"
                for outcome, n in sorted(counts.items())
                if outcome.startswith("answered ")
            )
            rows.append(
                f"| {kind} | {counts.get(OPENED, 0)} | {counts.get(OPEN_AT_END, 0)} "
                f"| {counts.get(CLOSED, 0)} | {answers or 0} | {counts.get(CONNECT_FAILED, 0)} |"
            )
    return rows


def _git_state() -> str:
    root = Path(__file__).resolve().parents[1]

    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", "-C", str(root), *arguments], capture_output=True, text=True, check=False
        ).stdout.strip()

    changed = len(git("status", "--porcelain").splitlines())
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return f"{commit}" + (f" with {changed} uncommitted changes" if changed else "")


def render(
    results: list[PhaseResult], arguments: argparse.Namespace, loads: list[float], tracebacks: int
) -> str:
    rows = []
    for result in results:
        devices, admin, login = result.devices, result.admin, result.login
        attacker_cpu = "—"
        if result.attack is not None:
            attacker_cpu = f"{result.attack.cpu_seconds / (arguments.ramp + result.seconds):.0%}"
        rows.append(
            f"| {result.name} | {len(devices.latencies)} | {_failures(devices)} "
            f"| {len(devices.latencies) / result.seconds:.0f} "
            f"| {_ms(devices.latencies, 50)} / {_ms(devices.latencies, 99)} "
            f"| {len(admin.latencies)} | {_failures(admin)} "
            f"| {_ms(admin.latencies, 50)} / {_ms(admin.latencies, 99)} "
            f"| {len(login.latencies)} | {_failures(login)} "
            f"| {result.server_cpu_seconds / result.seconds:.0%} | {attacker_cpu} |"
        )
    command = (
        f"python bench/flood.py --seconds {arguments.seconds:g} --devices {arguments.devices} "
        f"--device-clients {arguments.device_clients} --flood-connections "
        f"{arguments.flood_connections} --slow-connections {arguments.slow_connections} "
        f"--attacker-addresses {arguments.attacker_addresses}"
    )
    return "\n".join(
        [
            SECTION,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
            f"Python {platform.python_version()}), tree {_git_state()}, `{command}`: one "
            f"sztp-server, SQLite, {arguments.devices} certificate devices "
            f"({arguments.device_clients} clients, a new TLS connection per request, signed "
            "responses), one password device logging in with its right password every "
            f"{PACE * 1000:.0f} ms, attacker from {arguments.attacker_addresses} loopback "
            f"address(es) of its own, {arguments.seconds:g} s per phase, device timeout "
            f"{arguments.timeout:g} s; the "
            "1-minute load average was "
            + " → ".join(f"{load:.1f}" for load in loads)
            + " (before, after each phase). Clients, attacker and server share the machine; "
            "CPU is the share of one core, server while measured, attacker over its run. "
            f"Tracebacks in the server log: {tracebacks}.",
            "",
            "| phase | certificate devices ok | failed | ok/s | p50 / p99 ms "
            "| admin GETs ok | failed | p50 / p99 ms | password device ok | failed "
            "| server CPU | attacker CPU |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Bad Basic logins (half wrong passwords for the password device, half unknown "
            "serials; keep-alive connections, reopened when closed):",
            "",
            "| phase | answers | 401 (checked) | refused (408, 429, 503) | other answers "
            "| connections closed / timed out | connections refused "
            "| 401 p50 ms, wrong password / unknown serial |",
            "|---|---|---|---|---|---|---|---|",
            *_flood_rows(results),
            "",
            f"Half-open connections ({arguments.slow_connections}, a third of each kind, one "
            f"octet or header line every {DRIP_INTERVAL:g} s, reopened {REOPEN_PAUSE:g} s "
            "after the server closes or answers them):",
            "",
            "| kind | opened | open at the end | closed by server | answered | "
            "connections refused |",
            "|---|---|---|---|---|---|",
            *_half_open_rows(results),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20, help="measured time per phase")
    parser.add_argument("--devices", type=int, default=20, help="certificate devices")
    parser.add_argument("--device-clients", type=int, default=2, help="device client processes")
    parser.add_argument(
        "--flood-connections", type=int, default=64, help="connections sending bad logins"
    )
    parser.add_argument(
        "--slow-connections", type=int, default=900, help="half-open connections held"
    )
    parser.add_argument(
        "--attacker-addresses",
        type=int,
        default=1,
        help="loopback addresses the attacker's connections come from (devices: 127.0.0.1)",
    )
    parser.add_argument("--timeout", type=float, default=10, help="device and admin timeout")
    parser.add_argument("--ramp", type=float, default=3, help="attack time before measuring")
    parser.add_argument("--server-log", type=Path, help="keep the server's log in this file")
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sztp-bench-") as temporary:
        work = Path(temporary)
        serials = [f"FLOOD-{number:04d}" for number in range(args.devices)]
        lab: LabPki = write_lab_pki(work / "pki", [*serials, LOGIN_SERIAL])
        tls = {"tls_cert": str(lab.server.certificate), "tls_key": str(lab.server.private_key)}
        server_log = args.server_log or work / "server.log"
        with running_server(work, {"https": tls}, server_log=server_log) as server:
            load_fleet(lab, server.admin_url, server.token, [*serials, LOGIN_SERIAL])
            password = add_password(server.admin_url, server.token, LOGIN_SERIAL)
            target = Target.of(server.urls["https"], lab.tls_ca.certificate)
            certificates = [
                (str(lab.devices[serial].idevid.certificate),
                 str(lab.devices[serial].idevid.private_key))
                for serial in serials
            ]  # fmt: skip
            common: dict[str, Any] = {
                "server_process": server.process_id,
                "seconds": args.seconds,
                "ramp": args.ramp,
                "target": target,
                "device_certificates": certificates,
                "device_clients": args.device_clients,
                "admin": (server.admin_url, server.token, serials[0]),
                "login": (LOGIN_SERIAL, password),
                # Loopback addresses of their own: a server may count connections and failed
                # logins per client address, and devices come from elsewhere.
                "attacker_sources": [
                    f"127.0.1.{number}" for number in range(1, args.attacker_addresses + 1)
                ],
                "timeout": args.timeout,
            }
            loads = [os.getloadavg()[0]]
            results = []
            for name, attack, strength in (
                ("baseline", None, 0),
                (f"{args.flood_connections} connections of bad Basic logins", FLOOD,
                 args.flood_connections),
                (f"{args.slow_connections} half-open connections", "half-open",
                 args.slow_connections),
            ):  # fmt: skip
                results.append(run_phase(name, attack, strength=strength, **common))
                loads.append(os.getloadavg()[0])
        tracebacks = server_log.read_text(errors="replace").count("Traceback")
    section = render(results, args, loads, tracebacks)
    print(section)
    if args.write:
        write_section(args.write, SECTION, section)


if __name__ == "__main__":
    main()

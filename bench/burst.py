"""Benchmark: a power-on burst, N devices bootstrapping over HTTPS at once (issue 14, item 5).

N distinct lab devices power on together. Each opens a TLS connection of its own to the
server's device listener, presenting its own IDevID (client certificate; the lab manufacturer
CA is the trust anchor) from an address of its own (127.2.x.y, as devices on a network have),
and plays the whole RFC 8572 flow over it, kept alive: `GET /.well-known/host-meta`,
`get-bootstrapping-data` (signed: owner certificate and a voucher per device), then the
progress reports a device at reporting-level `verbose` sends, the last one `bootstrap-complete`
carrying SSH host keys. Which reports, in which order and with which messages comes from the
kit's simulator: before each burst one more device (the probe) runs `sztp.simulator.simulate`
against the server, and every burst device replays its reports. Host keys come from a handful
of key sets generated once (one per device would cost more than the burst).

A request answered 5xx, 429 or 503 (after its `Retry-After`), or lost to a broken or refused
connection or a timeout, is retried as an RFC 8572 client would: a bounded number of attempts,
a short growing backoff, a new TLS connection after a broken one; every failed attempt is
counted. A report still undelivered after its attempts is counted and the device carries on
(RFC 8572 §5.6); a device without its bootstrapping data gives up. Afterwards the admin API must
list every device as `complete`, one answer per client process is verified as a device does
(voucher, owner certificate, signature), and the server's counters (`/metrics`) and log are
read.

`--clients` processes play the devices (asyncio, raw streams over `ssl`, a minimal HTTP/1.1
client), each holding an `ssl.SSLContext` per device, built before the burst starts. The
server's CPU seconds and the peak of its summed resident memory are read from /proc over its
whole process tree (main process, device workers, writer, forkserver); on PostgreSQL the
cluster's CPU is read the same way; the clients measure their own CPU.

The whole matrix (1,000 and 10,000 devices, SQLite and PostgreSQL, `workers` 1 and 2) takes
longer than ten minutes: run a store at a time with `--save`, then report the saved runs as one
section with `--load ... --write`; `--pki-cache DIR` keeps the lab PKI and vouchers between
invocations. `--py-spy PATH` records every server process during each burst into
`--profile-dir` (py-spy is no dependency of this project: install it in a venv of its own).

Over 500 lines on purpose: the devices, the measurement of the server and the report are one
experiment, read from top to bottom by whoever checks its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import multiprocessing
import os
import platform
import random
import resource
import shlex
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psycopg
import requests
from benchlib import lab_fleet, lab_vouchers, post_state, publish, running_server, table_section
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from prometheus_client.parser import text_string_to_metric_families

from sztp.errors import SztpError
from sztp.labpki import LabPki, load_lab_pki, write_lab_pki
from sztp.protocol import bootstrapping_data, pki, restconf
from sztp.protocol.restconf import SshHostKey, WireFormat
from sztp.simulator import DeviceIdentity, SimulatorConfig, simulate

SECTION = "## Power-on burst"
PG_CLUSTER = Path(__file__).resolve().parent.parent / "tests" / "python" / "pg_cluster.sh"
PG_PORT = "54357"  # names the cluster's socket file only; apart from the test suite's
HOST_META = "/.well-known/host-meta"
JSON_TYPE = WireFormat.JSON.media_type
PROBE = "BURST-PROBE"
OS_NAME, OS_VERSION, HW_MODEL = "LabOS", "2.0", "lab-switch-48"
HOST_KEY_SETS = 8
TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MAX_BODY = restconf.MAX_OUTPUT_SIZE
MAX_HEADER_LINES = 100
MAX_RETRY_AFTER = 30.0
SAMPLE_INTERVAL = 0.2
# Table columns, in a device's order: its connection, then its requests.
STEPS = ("TCP connect", "TLS handshake", "host-meta", "get-bootstrapping-data", "report-progress")
CONFIGURATION = "".join(
    [
        "hostname lab-switch\n",
        "ntp server 192.0.2.1\n",
        "logging host 192.0.2.2\n",
        *(f"interface eth{port}\n description access {port}\n no shutdown\n" for port in range(48)),
        "ip route 0.0.0.0/0 192.0.2.254\n",
    ]
)
PRE_SCRIPT = "#!/bin/sh\n# check the running image and free space before configuring\ndf -h\n"
POST_SCRIPT = "#!/bin/sh\n# enable the management services once configured\necho done\n"
WHERE_THE_TIME_GOES = (
    "Where the time goes (py-spy on every server process during bursts of 1,000 devices, "
    "workers 1 and 2, SQLite and PostgreSQL; the server's counters, `ss` and /proc during "
    "bursts of 10,000; profiles made on 2026-12-03 with the machine shared with another test "
    "session, the table's runs on a machine otherwise quiet but for a package install during "
    "the first SQLite runs). Up to a thousand devices at once, every device completes without a "
    "failed attempt and each process's event loop is the limit, busy through the burst: a "
    "device costs the server 8-14 ms of CPU on SQLite (11-17 ms on PostgreSQL, and 3-4 ms more "
    "in PostgreSQL itself) for one TLS handshake and 14 requests. Of the loop's busy time about "
    "a fifth is the TLS handshake (OpenSSL: key exchange, the server's signature, the IDevID's "
    "chain), an eighth the TLS records and asyncio's TLS protocol around them, a fifth socket "
    "sends and receives, a seventh aiohttp's request cycle and routing, an eighth handing store "
    "calls to the store threads and being woken by them (every report is such a call), and a "
    "ninth the RPC handlers themselves (the client certificate is identified again on every "
    "request of the connection, 5%; content negotiation, parsing the report); rendering and "
    "signing do not show (once per profile, then cached). The store threads are not the limit: "
    "on SQLite they mostly wait for the reports file's lock, one report written at a time per "
    "process in about 0.3 ms (the device's summary read, the insert, its head row, the commit "
    "in WAL's normal mode); on PostgreSQL they wait for the round trips of the same statements "
    "(about 1.7 ms a report), and psycopg's Python code there takes the interpreter from the "
    "loop, which is why the same burst takes a fifth to a half longer. A second process "
    "(`workers: 2`) gets half the connections (the kernel spreads them by address) and takes "
    "the thousand devices through in 53-64% of the time on SQLite across runs (64% in the "
    "table); on PostgreSQL, whose database wants the same two cores, in 57-96% (70% in the "
    "table). The client processes take about 3 ms of CPU a device from those cores too."
    "\n\n"
    "Ten thousand at once: every device completes, on both stores and with one or two "
    "processes, and nothing is lost; what the devices meet instead is waiting. The server is "
    "CPU-bound (14 ms a device on SQLite, 17-20 ms on PostgreSQL with the database's 5 ms on "
    "the same cores), so the last of 10,000 devices is served about two minutes after the first "
    "however connections are handled. Since the accept backpressure "
    "(server/sztp_server/connections.py: accepting stops at `max_connections`, at most "
    "`max_tls_handshakes` handshakes under way per process, a 64 KiB TLS read buffer) the "
    "devices that cannot be served yet wait in the kernel's listen queue rather than being "
    "reset (163 resets in one of the four runs of 10,000, against 32,000-69,000 a run before), "
    "no head timeouts, and the server's memory stays at 430-650 MiB through the burst (it "
    "reached 3.2 GB with two processes before). A device whose connection waits longer than its "
    "30 s attempt timeout gives up on that attempt and connects again: those are the failed "
    "attempts in the table (TLS handshakes timed out: 6,000-21,000 a burst, the most with one "
    "process on PostgreSQL, whose burst is the longest), and with the listen queue full the "
    "kernel drops further SYNs, which the devices' kernels resend. Devices retry as RFC 8572 "
    "expects; the retries cost the clients 37-61 s of CPU on the server's cores. Two processes "
    "take the 10,000 through in 58% of the time of one on SQLite (1.74 times as fast) and 69% "
    "on PostgreSQL. The run before the backpressure (2026-12-03, same machine): with one "
    "process 2,309 (SQLite) and 5,908 (PostgreSQL) of 10,000 devices gave up after their 8 "
    "attempts, 32,000-69,000 connections were reset, and the server peaked at 1.7-3.2 GB. "
    "Powering the same devices on over two minutes instead (`--ramp 120`, workers 2, SQLite, an "
    "earlier run) completed them without a failed attempt: the attempts that fail are the price "
    "of arriving all in the same second on two cores."
)


# --------------------------------------------------------------------------- the devices


@dataclass(frozen=True)
class DeviceSpec:
    serial: str
    certificate: str
    key: str
    source: str  # the device's own address: no per-address cap applies to the burst
    start_offset: float  # seconds after the burst's start (--ramp)


@dataclass(frozen=True)
class ClientPlan:
    """What one client process plays; every body is encoded once, here."""

    host: str
    port: int
    ca_pem: str
    devices: tuple[DeviceSpec, ...]
    get_data_body: bytes
    report_bodies: tuple[bytes, ...]  # in order, without bootstrap-complete
    complete_bodies: tuple[bytes, ...]  # bootstrap-complete, one per host-key set
    attempts: int
    attempt_timeout: float
    max_backoff: float


@dataclass
class ClientResult:
    """What one client process measured: latencies in ms, instants in time.monotonic()."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    flows: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    failed_attempts: Counter[str] = field(default_factory=Counter)
    failed_devices: list[str] = field(default_factory=list)
    undelivered_reports: int = 0
    context_seconds: float = 0.0
    context_cpu: float = 0.0
    burst_cpu: float = 0.0
    max_rss_kb: int = 0
    sample: tuple[str, bytes] | None = None  # one device's serial and bootstrapping data
    # Per device: progress reports answered 2xx, and attempts at one whose request was sent
    # but whose answer never came (the server may have stored it: a retry can store it again).
    acknowledged: Counter[str] = field(default_factory=Counter)
    unanswered: Counter[str] = field(default_factory=Counter)


class ProtocolError(Exception):
    """The answer is not HTTP/1.1 as this client reads it."""


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    content: bytes
    retry_after: float | None
    close: bool


class DeviceLink:
    """One device's connection to the server, opened on first use and again after a failure;
    its requests are retried as an RFC 8572 client would."""

    def __init__(
        self, plan: ClientPlan, device: DeviceSpec, context: ssl.SSLContext, out: ClientResult
    ) -> None:
        self.plan = plan
        self.device = device
        self.context = context
        self.out = out
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.host_header = f"Host: {plan.host}:{plan.port}\r\n".encode()
        self.phase = "TCP connect"  # what an attempt is doing, to say what failed

    async def call(
        self, step: str, method: str, path: str, body: bytes, accept: str
    ) -> Reply | None:
        """The 2xx answer; None once the attempts are spent or the refusal is final."""
        for attempt in range(self.plan.attempts):
            backoff = min(self.plan.max_backoff, 0.5 * 2**attempt)
            delay = backoff * random.uniform(0.5, 1.5)  # noqa: S311
            try:
                async with asyncio.timeout(self.plan.attempt_timeout):
                    if self.writer is None:
                        await self._open()
                    self.phase = step
                    started = time.perf_counter()
                    reply = await self._exchange(method, path, body, accept)
            except (
                OSError,
                EOFError,
                TimeoutError,
                ProtocolError,
                asyncio.LimitOverrunError,
            ) as exc:
                self.out.failed_attempts[f"{self.phase}: {_failure(exc)}"] += 1
                if self.phase == step == "report-progress":
                    self.out.unanswered[self.device.serial] += 1
                self.close()
            else:
                if reply.close:
                    self.close()
                if reply.status in (200, 204):
                    self._record(step, started)
                    if step == "report-progress":
                        self.out.acknowledged[self.device.serial] += 1
                    return reply
                self.out.failed_attempts[f"{step}: HTTP {reply.status}"] += 1
                if reply.status != 429 and reply.status < 500:
                    return None  # refused for good: a device would try its next server
                if reply.retry_after is not None:
                    delay = min(reply.retry_after, MAX_RETRY_AFTER)
            if attempt + 1 < self.plan.attempts:
                await asyncio.sleep(delay)
        return None

    def close(self) -> None:
        """Drop the connection after a failure: no TLS goodbye to a broken peer."""
        if self.writer is not None:
            self.writer.transport.abort()
        self.reader = self.writer = None

    async def finish(self) -> None:
        """Close the connection as a device does once done: TLS close_notify, then TCP."""
        writer = self.writer
        if writer is None:
            return
        self.reader = self.writer = None
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), 5)
        except (OSError, TimeoutError):
            writer.transport.abort()

    def _record(self, step: str, started: float) -> None:
        self.out.latencies.setdefault(step, []).append((time.perf_counter() - started) * 1000)

    async def _open(self) -> None:
        """TCP, then TLS over it, each timed on its own: a burst strains them differently (the
        listen backlog, the server's caps and its handshake work)."""
        self.phase, started = "TCP connect", time.perf_counter()
        self.reader, self.writer = await asyncio.open_connection(
            self.plan.host, self.plan.port, local_addr=(self.device.source, 0)
        )
        self._record(self.phase, started)
        self.phase, started = "TLS handshake", time.perf_counter()
        await self.writer.start_tls(
            self.context,
            server_hostname=self.plan.host,
            ssl_handshake_timeout=self.plan.attempt_timeout,
        )
        self._record(self.phase, started)

    async def _exchange(self, method: str, path: str, body: bytes, accept: str) -> Reply:
        reader, writer = self.reader, self.writer
        if reader is None or writer is None:
            raise ProtocolError("no connection")
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self.host_header
        head += f"Accept: {accept}\r\n".encode()
        if method == "POST":
            head += f"Content-Type: {JSON_TYPE}\r\nContent-Length: {len(body)}\r\n".encode()
        writer.write(head + b"\r\n" + body)
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"status line {status_line[:40]!r}")
        status = int(parts[1])
        headers = await _headers(reader)
        content, until_closed = await _body(reader, status, headers)
        retry_after = headers.get(b"retry-after", b"")
        return Reply(
            status,
            headers.get(b"content-type", b"").decode("latin-1"),
            content,
            float(retry_after) if retry_after.isdigit() else None,
            until_closed or headers.get(b"connection", b"").lower() == b"close",
        )


async def _headers(reader: asyncio.StreamReader) -> dict[bytes, bytes]:
    headers: dict[bytes, bytes] = {}
    for _ in range(MAX_HEADER_LINES):
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            return headers
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    raise ProtocolError(f"more than {MAX_HEADER_LINES} header lines")


async def _body(
    reader: asyncio.StreamReader, status: int, headers: dict[bytes, bytes]
) -> tuple[bytes, bool]:
    """The body, and whether it ran to the end of the connection."""
    length = headers.get(b"content-length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_BODY:
            raise ProtocolError(f"Content-Length {length[:20]!r}")
        return await reader.readexactly(int(length)), False
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_BODY:  # every chunk but the last adds at least one octet
            line = await reader.readuntil(b"\r\n")
            try:
                chunk_size = int(line.split(b";")[0], 16)
            except ValueError:
                raise ProtocolError(f"chunk size {line[:20]!r}") from None
            if chunk_size == 0:
                await _headers(reader)  # trailers
                return b"".join(chunks), False
            size += chunk_size
            chunks.append((await reader.readexactly(chunk_size + 2))[:-2])
        raise ProtocolError("chunked body too large")
    if status in (204, 304) or status < 200:
        return b"", False
    chunks, size = [], 0
    while chunk := await reader.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            raise ProtocolError("body too large")
        chunks.append(chunk)
    return b"".join(chunks), True


def _failure(exc: BaseException) -> str:
    """A failed attempt's kind, short enough to count by."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS {exc.reason or type(exc).__name__}"
    if isinstance(exc, EOFError):
        return "connection closed"
    if isinstance(exc, ProtocolError | asyncio.LimitOverrunError):
        return "bad HTTP answer"
    return type(exc).__name__


async def play_device(
    plan: ClientPlan, index: int, device: DeviceSpec, context: ssl.SSLContext, out: ClientResult
) -> None:
    """One device: host-meta, get-bootstrapping-data, its reports, bootstrap-complete."""
    link = DeviceLink(plan, device, context, out)
    started = time.monotonic()
    try:
        meta = await link.call("host-meta", "GET", HOST_META, b"", "application/xrd+xml")
        if meta is None:
            out.failed_devices.append(device.serial)
            return
        try:
            root = restconf.parse_host_meta(meta.content, meta.content_type)
        except SztpError:
            out.failed_attempts["host-meta: unreadable"] += 1
            out.failed_devices.append(device.serial)
            return
        operations = f"{root.rstrip('/')}/operations/"
        data = await link.call(
            "get-bootstrapping-data",
            "POST",
            operations + restconf.RPC_GET_BOOTSTRAPPING_DATA,
            plan.get_data_body,
            JSON_TYPE,
        )
        # Verifying every answer is the device's work, not the server's: one per client
        # process is verified in full afterwards, the others must at least be signed.
        if data is None or b'"ownership-voucher"' not in data.content:
            if data is not None:
                out.failed_attempts["get-bootstrapping-data: unsigned answer"] += 1
            out.failed_devices.append(device.serial)
            return
        if out.sample is None:
            out.sample = (device.serial, data.content)
        report_path = operations + restconf.RPC_REPORT_PROGRESS
        complete = plan.complete_bodies[index % len(plan.complete_bodies)]
        for body in (*plan.report_bodies, complete):
            if await link.call("report-progress", "POST", report_path, body, JSON_TYPE) is None:
                out.undelivered_reports += 1
        ended = time.monotonic()
        out.flows.append((ended - started) * 1000)
        out.ends.append(ended)
        await link.finish()
    except asyncio.CancelledError:
        out.failed_devices.append(device.serial)  # still under way when the burst timed out
        raise
    finally:
        link.close()


def device_context(ca_pem: str, device: DeviceSpec) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem)
    context.load_cert_chain(device.certificate, device.key)
    return context


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def client_process(plan: ClientPlan, pipe: Connection) -> None:
    """Build the devices' TLS contexts, say so, wait for the start, play the devices, and send
    back what was measured."""
    out = ClientResult()
    cpu, started = cpu_seconds(), time.perf_counter()
    contexts = [device_context(plan.ca_pem, device) for device in plan.devices]
    out.context_seconds = time.perf_counter() - started
    out.context_cpu = cpu_seconds() - cpu
    pipe.send("ready")
    start_at, deadline = pipe.recv()
    cpu = cpu_seconds()
    asyncio.run(_burst(plan, contexts, start_at, deadline, out))
    out.burst_cpu = cpu_seconds() - cpu
    out.max_rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pipe.send(out)


async def _burst(
    plan: ClientPlan,
    contexts: list[ssl.SSLContext],
    start_at: float,
    deadline: float,
    out: ClientResult,
) -> None:
    async def one(index: int, device: DeviceSpec, context: ssl.SSLContext) -> None:
        await asyncio.sleep(max(0.0, start_at + device.start_offset - time.monotonic()))
        try:
            await play_device(plan, index, device, context, out)
        except Exception as exc:  # a bug here must not hide a device's fate
            out.failed_attempts[f"client error: {type(exc).__name__}: {exc}"] += 1
            out.failed_devices.append(device.serial)

    tasks = [
        asyncio.create_task(one(index, device, context))
        for index, (device, context) in enumerate(zip(plan.devices, contexts, strict=True))
    ]
    _done, pending = await asyncio.wait(tasks, timeout=max(1.0, deadline - time.monotonic()))
    for task in pending:
        task.cancel()
    if pending:
        out.failed_attempts["burst timed out"] += len(pending)
        await asyncio.wait(pending, timeout=10)


# --------------------------------------------------------------------------- the server's side


def _process_table() -> dict[int, tuple[int, float, int]]:
    """pid → (parent pid, CPU seconds of it and its reaped children, resident bytes)."""
    table: dict[int, tuple[int, float, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        fields = text[text.rindex(")") + 2 :].split()
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), ticks / TICKS, int(fields[21]) * PAGE_BYTES)
    return table


def tree_usage(root: int) -> tuple[float, int, int]:
    """CPU seconds, resident bytes and process count of `root` and every process below it.
    A process that ended and was waited for counts in its parent's CPU (cutime, cstime)."""
    table = _process_table()
    tree = _tree(root, table)
    return (
        sum(table[pid][1] for pid in tree),
        sum(table[pid][2] for pid in tree),
        len(tree),
    )


def _tree(root: int, table: dict[int, tuple[int, float, int]]) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, (parent, _cpu, _rss) in table.items():
        children.setdefault(parent, []).append(pid)
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        if pid in table:
            tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


@dataclass
class TreeFigures:
    cpu: float = 0.0
    rss_at_start: int = 0
    peak_rss: int = 0
    processes: int = 0


class TreeWatch:
    """CPU of process trees between `start` and `stop`, and the peak of each tree's summed
    resident memory, sampled every SAMPLE_INTERVAL seconds meanwhile."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.figures = {name: TreeFigures() for name in roots}
        self._cpu_at_start: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def start(self) -> None:
        for name, root in self.roots.items():
            self._cpu_at_start[name], self.figures[name].rss_at_start, _count = tree_usage(root)
        self._thread.start()

    def stop(self) -> dict[str, TreeFigures]:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()
        for name, root in self.roots.items():
            self.figures[name].cpu = tree_usage(root)[0] - self._cpu_at_start[name]
        return self.figures

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._sample()

    def _sample(self) -> None:
        for name, root in self.roots.items():
            _cpu, rss, count = tree_usage(root)
            figures = self.figures[name]
            figures.peak_rss = max(figures.peak_rss, rss)
            figures.processes = max(figures.processes, count)


@contextmanager
def profiling(py_spy: str | None, options: str, root: int, prefix: Path) -> Iterator[None]:
    """py-spy recording each of the server's processes (raw collapsed stacks, one file per
    process: `--subprocesses` missed the forkserver's children) while the block runs."""
    if py_spy is None:
        yield
        return
    recorders = []
    try:
        for pid in _tree(root, _process_table()):
            output = prefix.with_name(f"{prefix.name}-{pid}.txt")
            command = [py_spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
            command += ["--output", str(output), *shlex.split(options)]
            recorders.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        time.sleep(1)  # py-spy attaches before the burst begins
        yield
    finally:
        for recorder in recorders:
            recorder.send_signal(signal.SIGINT)
        for recorder in recorders:
            try:
                recorder.wait(timeout=60)
            except subprocess.TimeoutExpired:
                recorder.kill()
                recorder.wait(timeout=10)


@contextmanager
def postgres_cluster(work: Path) -> Iterator[tuple[str, Path]]:
    """A throwaway cluster under `work`: the URL of its `postgres` database and its directory."""
    cluster = work / "pg"
    environment = {**os.environ, "SZTP_PG_PORT": PG_PORT}
    try:
        url = subprocess.run(
            [str(PG_CLUSTER), "start", str(cluster)], env=environment, capture_output=True,
            text=True, check=True,
        ).stdout.strip()  # fmt: skip
        yield url, cluster
    finally:
        subprocess.run([str(PG_CLUSTER), "stop", str(cluster)], env=environment, check=False)


def fresh_database(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    return url.replace("///postgres?", f"///{name}?")


def host_key_sets(count: int) -> list[tuple[SshHostKey, ...]]:
    """`count` sets of an ed25519 and an ECDSA P-256 host key, as bootstrap-complete carries."""

    def host_key(public: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey) -> SshHostKey:
        line = public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        algorithm, blob = line.split(b" ")[:2]
        return SshHostKey(algorithm.decode("ascii"), base64.b64decode(blob))

    return [
        (
            host_key(ed25519.Ed25519PrivateKey.generate().public_key()),
            host_key(ec.generate_private_key(ec.SECP256R1()).public_key()),
        )
        for _ in range(count)
    ]


def lab_with_vouchers(work: Path, cache: Path | None, count: int) -> tuple[LabPki, dict[str, str]]:
    """The lab PKI with `count` burst devices and the probe, and a voucher each; from `cache`
    when it holds enough of them, else made (into `cache`, when given)."""
    serials = [PROBE, *device_serials(count)]
    directory = cache if cache is not None else work / "pki"
    vouchers_file = directory / "vouchers.json"
    if cache is not None and vouchers_file.exists():
        lab = load_lab_pki(directory)
        vouchers: dict[str, str] = json.loads(vouchers_file.read_text())
        if all(serial in lab.devices and serial in vouchers for serial in serials):
            return lab, vouchers
    lab = write_lab_pki(directory, serials, force=cache is not None)
    vouchers = lab_vouchers(lab, serials)
    vouchers_file.write_text(json.dumps(vouchers))
    return lab, vouchers


def burst_fleet(lab: LabPki, vouchers: dict[str, str], serials: Sequence[str]) -> dict[str, Any]:
    """The lab fleet of a burst: `serials` and the probe device, each with its voucher, on one
    verbose onboarding profile with configuration and both scripts."""
    devices = {serial: {"profile": "day0", "voucher": vouchers[serial]} for serial in serials}
    devices[PROBE] = {"profile": "day0", "voucher": vouchers[PROBE]}
    return lab_fleet(
        lab,
        devices,
        reporting_level="verbose",
        configuration=CONFIGURATION,
        pre_configuration_script=PRE_SCRIPT,
        post_configuration_script=POST_SCRIPT,
    )


def device_serials(count: int) -> list[str]:
    return [f"BURST-{number:05d}" for number in range(count)]


def source_address(index: int) -> str:
    return f"127.2.{index // 250}.{index % 250 + 1}"


def probe(lab: LabPki, url: str, work: Path, keys: tuple[SshHostKey, ...]) -> list[tuple[str, str]]:
    """The reports the kit's simulator sends to this server, as (progress type, message)."""
    device = lab.devices[PROBE]
    manufacturer = pki.load_certificates_pem(lab.manufacturer_ca.certificate.read_bytes())
    result = simulate(
        SimulatorConfig(
            bootstrap_uris=(url,),
            trust_anchors=tuple(manufacturer),
            server_ca=lab.tls_ca.certificate,
            work_dir=work / "probe",
            ssh_host_keys=keys,
        ),
        DeviceIdentity(
            PROBE,
            device.idevid.certificate,
            device.idevid.private_key,
            hw_model=HW_MODEL,
            os_name=OS_NAME,
            os_version=OS_VERSION,
        ),
    )
    if not result.succeeded:
        sys.exit(f"the probe device did not bootstrap: {result.reason}")
    return result.reports


def client_plans(
    lab: LabPki,
    url: str,
    reports: Sequence[tuple[str, str]],
    keys: Sequence[tuple[SshHostKey, ...]],
    count: int,
    args: argparse.Namespace,
) -> list[ClientPlan]:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    *steps, (last_type, last_message) = reports
    if last_type != restconf.BOOTSTRAP_COMPLETE:
        sys.exit(f"the probe's last report is {last_type}, not bootstrap-complete")
    get_data = restconf.encode_get_bootstrapping_data_input(
        restconf.GetBootstrappingDataInput(
            hw_model=HW_MODEL, os_name=OS_NAME, os_version=OS_VERSION
        ),
        WireFormat.JSON,
    )
    report_bodies = tuple(
        restconf.encode_report_progress_input(
            restconf.ProgressReport(progress_type, message), WireFormat.JSON
        )
        for progress_type, message in steps
    )
    complete_bodies = tuple(
        restconf.encode_report_progress_input(
            restconf.ProgressReport(last_type, last_message, ssh_host_keys=key_set),
            WireFormat.JSON,
        )
        for key_set in keys
    )
    devices = [
        DeviceSpec(
            serial,
            str(lab.devices[serial].idevid.certificate),
            str(lab.devices[serial].idevid.private_key),
            source_address(index),
            args.ramp * index / count,
        )
        for index, serial in enumerate(device_serials(count))
    ]
    return [
        ClientPlan(
            host=host,
            port=int(port),
            ca_pem=lab.tls_ca.certificate.read_text(),
            devices=tuple(devices[client :: args.clients]),
            get_data_body=get_data,
            report_bodies=report_bodies,
            complete_bodies=complete_bodies,
            attempts=args.attempts,
            attempt_timeout=args.attempt_timeout,
            max_backoff=args.max_backoff,
        )
        for client in range(args.clients)
    ]


def drive(
    plans: Sequence[ClientPlan],
    roots: dict[str, int],
    args: argparse.Namespace,
    profile: Path,
) -> tuple[list[ClientResult], float, dict[str, TreeFigures]]:
    """Start the client processes, let them build their contexts, start them together; their
    results, the instant the burst started, and the trees' figures over the burst."""
    spawn = multiprocessing.get_context("spawn")
    processes: list[Any] = []
    pipes: list[Connection] = []
    try:
        for plan in plans:
            parent_end, child_end = spawn.Pipe()
            process = spawn.Process(target=client_process, args=(plan, child_end), daemon=True)
            process.start()
            child_end.close()
            processes.append(process)
            pipes.append(parent_end)
        for pipe in pipes:
            if not pipe.poll(600):
                sys.exit("a client process did not get ready")
            pipe.recv()
        watch = TreeWatch(roots)
        with profiling(args.py_spy, args.py_spy_options, roots["server"], profile):
            watch.start()
            try:
                start_at = time.monotonic() + 0.5
                deadline = start_at + args.burst_timeout
                for pipe in pipes:
                    pipe.send((start_at, deadline))
                results: list[ClientResult] = []
                for pipe in pipes:
                    if not pipe.poll(max(1.0, deadline + 60 - time.monotonic())):
                        sys.exit("a client process did not report")
                    results.append(pipe.recv())
            finally:
                figures = watch.stop()
        return results, start_at, figures
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)


def listen_overflows() -> int:
    """The kernel's count of connections dropped for a full accept queue (all sockets)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    for names, values in itertools.pairwise(lines):
        if names[0] == values[0] == "TcpExt:" and "ListenOverflows" in names:
            return int(values[names.index("ListenOverflows")])
    return 0


def server_counters(admin_url: str, token: str) -> dict[str, int]:
    """The server's device-side counters worth reporting, from its /metrics."""
    text = requests.get(
        f"{admin_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ).text
    counters: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, label, value = sample.name, sample.labels, int(sample.value)
            if name == "sztp_requests_total":
                counters[f"{label['rpc']} {label['status']}"] += value
            elif name in ("sztp_connections_refused_total", "sztp_connections_timed_out_total"):
                kind = label.get("cap") or label.get("phase")
                counters[f"{name.removeprefix('sztp_').removesuffix('_total')} {kind}"] += value
    return dict(counters)


def device_statuses(admin_url: str, token: str, serials: Sequence[str]) -> Counter[str]:
    """How many of `serials` the admin API lists with each status."""
    listing = requests.get(
        f"{admin_url}/api/v1/devices",
        params={"with_status": "true"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    )
    listing.raise_for_status()
    status = {device["name"]: device["status"] for device in listing.json()}
    return Counter(status.get(serial, "missing") for serial in serials)


def verify_sample(lab: LabPki, sample: tuple[str, bytes]) -> None:
    """Verify one answer as its device does: voucher, owner certificate, signature."""
    serial, content = sample
    data = restconf.parse_get_bootstrapping_data_output(content, WireFormat.JSON)
    bootstrapping_data.verify_bootstrapping_data(
        data,
        serial_number=serial,
        trust_anchors=pki.load_certificates_pem(lab.manufacturer_ca.certificate.read_bytes()),
        server_trusted=True,
    )


def logged(log: Path, levels: Sequence[str]) -> Counter[str]:
    """Events the server logged at `levels` (and tracebacks), by event."""
    found: Counter[str] = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            if line.startswith("Traceback"):
                found["traceback"] += 1
            continue
        if isinstance(record, dict) and record.get("level") in levels:
            found[str(record.get("event"))] += 1
    return found


def run_burst(
    args: argparse.Namespace,
    work: Path,
    lab: LabPki,
    vouchers: dict[str, str],
    keys: Sequence[tuple[SshHostKey, ...]],
    backend: str,
    database: tuple[str, Path] | None,
    count: int,
    workers: int,
) -> dict[str, Any]:
    """One burst of `count` devices against a fresh server; its figures."""
    name = f"{backend}-{count}-w{workers}"
    run = work / name
    run.mkdir()
    settings: dict[str, Any] = {"workers": workers}
    roots: dict[str, int] = {}
    if database is not None:
        settings["database_url"] = fresh_database(database[0], name.replace("-", "_"))
        postmaster = (database[1] / "data" / "postmaster.pid").read_text().split()[0]
        roots["database"] = int(postmaster)
    tls = {"tls_cert": str(lab.server.certificate), "tls_key": str(lab.server.private_key)}
    serials = device_serials(count)
    fleet = burst_fleet(lab, vouchers, serials)
    with running_server(run, {"https": tls}, server_log=run / "server.log", **settings) as server:
        roots["server"] = server.process_id
        apply_seconds = post_state(server.admin_url, server.token, fleet)
        reports = probe(lab, server.urls["https"], run, keys[0])
        plans = client_plans(lab, server.urls["https"], reports, keys, count, args)
        overflows = listen_overflows()
        results, start_at, trees = drive(plans, roots, args, args.profile_dir / name)
        overflows = listen_overflows() - overflows
        time.sleep(2)  # device workers send their counts every second
        counters = server_counters(server.admin_url, server.token)
        statuses = device_statuses(server.admin_url, server.token, serials)
    for result in results:
        if result.sample is not None:
            verify_sample(lab, result.sample)
    ends = [end for result in results for end in result.ends]
    latencies: dict[str, list[float]] = {step: [] for step in STEPS}
    for result in results:
        for step, values in result.latencies.items():
            latencies[step].extend(values)
    failed_attempts: Counter[str] = Counter()
    for result in results:
        failed_attempts.update(result.failed_attempts)
    return {
        "backend": backend,
        "workers": workers,
        "devices": count,
        "reports_per_device": len(reports),
        "apply_seconds": apply_seconds,
        "burst_seconds": (max(ends) - start_at) if ends else float("nan"),
        "steps": {step: summary(values) for step, values in latencies.items()},
        "flow": summary([flow for result in results for flow in result.flows]),
        "failed_attempts": dict(failed_attempts),
        "failed_devices": sum(len(result.failed_devices) for result in results),
        "undelivered_reports": sum(result.undelivered_reports for result in results),
        "statuses": dict(statuses),
        "server": asdict(trees["server"]),
        "database": asdict(trees["database"]) if "database" in trees else None,
        "client_cpu": sum(result.burst_cpu for result in results),
        "client_max_rss_kb": max(result.max_rss_kb for result in results),
        "context_ms": 1000 * sum(r.context_seconds for r in results) / count,
        "context_cpu_ms": 1000 * sum(r.context_cpu for r in results) / count,
        "server_counters": counters,
        "listen_overflows": overflows,
        "log_errors": dict(logged(run / "server.log", ("error", "critical"))),
        "log_warnings": dict(logged(run / "server.log", ("warning",))),
        "verified_samples": sum(result.sample is not None for result in results),
    }


def summary(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"count": len(values), "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"count": len(values), "p50": cuts[49], "p99": cuts[98], "max": max(values)}


# --------------------------------------------------------------------------- the report


def render(measurements: Sequence[dict[str, Any]]) -> str:
    """The RESULTS.md section for one or more saved measurements (`--save`, `--load`)."""
    meta = measurements[0]["meta"]
    runs = [run for measurement in measurements for run in measurement["runs"]]
    commands = " and ".join(f"`{m['meta']['command']}`" for m in measurements)
    loads = [m["meta"][key] for m in measurements for key in ("load_before", "load_after")]
    reports = runs[0]["reports_per_device"] if runs else 0
    contexts = [run["context_cpu_ms"] for run in runs]
    measured = (
        f"Measured {meta['date']} on {meta['node']} ({meta['cores']} cores, Python "
        f"{meta['python']}, {meta['openssl']}), {commands}: for each store, `workers` setting "
        "and number of devices, a fresh sztp-server (a TLS device listener, otherwise its "
        "default settings) is given the devices (lab IDevIDs, a voucher each, one onboarding "
        "profile: image, pre- and post-configuration script, configuration, reporting-level "
        "verbose); then every device powers on at once, each from a loopback address of its "
        "own, over a TLS connection of its own with its IDevID: host-meta, signed "
        f"get-bootstrapping-data, and the {reports} progress reports the kit's simulator sends "
        "for this profile (`bootstrap-complete` last, with an ed25519 and an ECDSA host key), "
        "over that kept-alive connection. A failed attempt is counted and retried (at most "
        f"{meta['attempts']} attempts per request, {meta['attempt_timeout']:g} s each, backoff "
        f"from 0.5 s doubling up to {meta['max_backoff']:g} s with jitter, `Retry-After` "
        "honoured); a device that cannot get its bootstrapping data gives up. 'complete' is "
        "what the admin API lists afterwards. 'burst' runs from the start to the last "
        "`bootstrap-complete` answered; latencies are those of a request's successful attempt. "
        "Server CPU and resident memory are summed over its process tree (main process, device "
        "workers, writer, forkserver, voucher checkers), memory as the peak during the burst "
        "and the figure just before it; PostgreSQL's CPU over the cluster's processes. "
        f"{meta['clients']} Python client processes play the devices on the same cores "
        "(asyncio, one `ssl.SSLContext` per device, built before the start at "
        f"{min(contexts, default=0):.1f}-{max(contexts, default=0):.1f} ms of CPU each); their "
        "CPU during the burst is the last column. The 1-minute load average was "
        f"{min(loads):.1f}-{max(loads):.1f} before and after (other work shared the machine)."
    )
    columns = (
        "store", "workers", "devices", "burst", "devices/s",
        *(f"{step} p50 / p99 ms" for step in STEPS), "errors (failed attempts)", "complete",
        "server CPU", "server peak RSS", "PostgreSQL CPU", "client CPU",
    )  # fmt: skip
    notes = [note for note in map(_notes, runs) if note]
    where = "\n\n".join([*notes, WHERE_THE_TIME_GOES])
    return table_section(SECTION, measured, columns, [_row(run) for run in runs], where)


def _row(run: dict[str, Any]) -> str:
    steps = " | ".join(
        f"{run['steps'][step]['p50']:.0f} / {run['steps'][step]['p99']:.0f}" for step in STEPS
    )
    failed = sum(run["failed_attempts"].values())
    database = f"{run['database']['cpu']:.1f} s" if run["database"] else "—"
    burst = run["burst_seconds"]
    return (
        f"| {run['backend']} | {run['workers']} | {run['devices']:,} | {burst:.1f} s "
        f"| {run['devices'] / burst:.0f} | {steps} | {failed} "
        f"| {run['statuses'].get('complete', 0):,} | {run['server']['cpu']:.1f} s "
        f"| {run['server']['peak_rss'] / 2**20:.0f} MiB "
        f"({run['server']['rss_at_start'] / 2**20:.0f} before) "
        f"| {database} | {run['client_cpu']:.1f} s |"
    )


def _notes(run: dict[str, Any]) -> str:
    """What went wrong in a run, if anything, in a sentence or two."""
    label = f"{run['backend']}, workers {run['workers']}, {run['devices']:,} devices"
    parts = []
    if run["failed_attempts"]:
        kinds = ", ".join(f"{kind} {n} times" for kind, n in sorted(run["failed_attempts"].items()))
        parts.append(f"failed attempts: {kinds}")
    if run["failed_devices"] or run["undelivered_reports"]:
        parts.append(
            f"{run['failed_devices']} devices gave up, "
            f"{run['undelivered_reports']} reports undelivered"
        )
    refusals = {
        name: value
        for name, value in run["server_counters"].items()
        if name.startswith("connections") or not name.endswith(("200", "204"))
    }
    if run["listen_overflows"]:
        parts.append(
            f"the kernel dropped {run['listen_overflows']} connection attempts for a full "
            "accept queue"
        )
    if refusals:
        parts.append(
            "server counted " + ", ".join(f"{n} {name}" for name, n in sorted(refusals.items()))
        )
    if run["log_errors"]:
        parts.append(
            "server log: "
            + ", ".join(f"{event} {n} times" for event, n in run["log_errors"].items())
        )
    not_complete = {s: n for s, n in run["statuses"].items() if s != "complete"}
    if not_complete:
        parts.append(
            "not complete: " + ", ".join(f"{n} {status}" for status, n in not_complete.items())
        )
    return f"{label}: " + "; ".join(parts) + "." if parts else ""


def run_meta(command: str) -> dict[str, Any]:
    """How and on what a run was made, for its section's text."""
    return {
        "command": command,
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "node": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "load_before": os.getloadavg()[0],
    }


def raise_file_limit() -> None:
    """Thousands of connections at once: the servers started from here inherit the limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _command(args: argparse.Namespace) -> str:
    options = [
        f"--devices {args.devices}",
        f"--backends {args.backends}",
        f"--workers {args.workers}",
        f"--clients {args.clients}",
    ]
    if args.ramp:
        options.append(f"--ramp {args.ramp:g}")
    return "python bench/burst.py " + " ".join(options)


def _numbers(text: str) -> list[int]:
    return [int(value) for value in text.split(",") if value]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every burst the options ask for; the figures and what they were measured with."""
    counts, worker_settings = _numbers(args.devices), _numbers(args.workers)
    backends = [name for name in args.backends.split(",") if name]
    if not counts or not worker_settings or args.clients < 1 or args.attempts < 1:
        sys.exit("give at least one device count, workers setting, client and attempt")
    if unknown := set(backends) - {"sqlite", "postgresql"}:
        sys.exit(f"unknown backends: {', '.join(sorted(unknown))}")
    meta: dict[str, Any] = {
        **run_meta(_command(args)),
        "clients": args.clients,
        "attempts": args.attempts,
        "attempt_timeout": args.attempt_timeout,
        "max_backoff": args.max_backoff,
    }
    raise_file_limit()
    keys = host_key_sets(HOST_KEY_SETS)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sztp-burst-") as temporary:
        work = Path(temporary)
        # Run as root, the PostgreSQL cluster runs as its own user, who must enter this.
        work.chmod(0o711)
        lab, vouchers = lab_with_vouchers(work, args.pki_cache, max(counts))
        for backend in backends:
            with database_for(backend, work) as database:
                for count in counts:
                    for workers in worker_settings:
                        run = run_burst(
                            args, work, lab, vouchers, keys, backend, database, count, workers
                        )
                        print(_row(run), _notes(run), flush=True)
                        runs.append(run)
    meta["load_after"] = os.getloadavg()[0]
    return {"meta": meta, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", default="1000,10000", help="device counts, comma-separated")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="the server's `workers` settings")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--attempts", type=int, default=8, help="attempts per request")
    parser.add_argument("--attempt-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="seconds")
    parser.add_argument("--ramp", type=float, default=0.0, help="spread the starts over seconds")
    parser.add_argument("--burst-timeout", type=float, default=900.0, help="seconds per burst")
    parser.add_argument("--pki-cache", type=Path, help="keep the lab PKI and vouchers here")
    parser.add_argument("--py-spy", help="py-spy binary: record the server during each burst")
    parser.add_argument(
        "--py-spy-options",
        default="--nonblocking",
        help="more py-spy record options (--py-spy-options=--native)",
    )
    parser.add_argument("--profile-dir", type=Path, default=Path(), help="for --py-spy")
    parser.add_argument("--save", type=Path, help="write the figures to this JSON file")
    parser.add_argument(
        "--load",
        type=Path,
        nargs="+",
        help="measure nothing: report the figures of these --save files together",
    )
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    if args.load:
        measurements = [json.loads(path.read_text()) for path in args.load]
    else:
        measurements = [measure(args)]
        if args.save:
            args.save.write_text(json.dumps(measurements[0], indent=1))
    publish(render(measurements), args.write, SECTION)


@contextmanager
def database_for(backend: str, work: Path) -> Iterator[tuple[str, Path] | None]:
    """PostgreSQL: a throwaway cluster (URL, directory) for the backend's runs; SQLite: None."""
    if backend == "postgresql":
        with postgres_cluster(work) as cluster:
            yield cluster
    else:
        yield None


if __name__ == "__main__":
    main()

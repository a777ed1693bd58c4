"""Benchmark: the power-on burst against two sztp-server instances behind HAProxy, one of them
killed mid-burst (issue 14, item 5, active-active).

One throwaway PostgreSQL cluster (tests/python/pg_cluster.sh) holds one database; two
sztp-server instances (`a` and `b`, `workers: 1` each, so one core each on a 2-core machine)
run on it, each with its own configuration, device port and admin port, the same secret key
file (both must open the stored owner key) and `max_connections_per_address` raised to
`max_connections`: in TCP passthrough every device connection reaches a server from HAProxy's
address. HAProxy (Debian's) listens on a loopback port in TCP mode, so TLS passes through and
each server sees the devices' client certificates; it balances over both with a health check
of each instance's admin `/healthz`, `option redispatch` and retries.

The fleet is applied once through `a`'s admin API; `b` sees it through the database. The
probe device learns the reports through HAProxy, then N devices (bench/burst.py's clients:
an IDevID and a loopback address each, retrying as RFC 8572 clients do) power on at once
against HAProxy. When `--kill-at` of them are complete (as `b`'s admin API counts), instance
`a` is killed: SIGKILL to its whole process group, as a crashed host takes every process
with it. Afterwards, through `b`'s admin API: every device's status, and every device's
stored progress reports against what the device sent and had acknowledged.

"Stored twice": RFC 8572 progress reports carry no identifier. A device whose connection
broke after it sent a report, but before the answer came, cannot know whether the report was
stored, and sends it again (RFC 8572 §5.6 expects retries). The server stores a report equal
to the device's newest one within `repeated_report_seconds` only once; a copy stored twice
anyway (a copy committed after a later report, say) is counted here, not treated as an
error, as long as it is explained by such an unanswered attempt. An error is: a device
whose stored reports lack one the device had acknowledged (lost), more copies of a report
than the device sent (stored but never sent), or reports stored out of the order the device
sent them.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from benchlib import console_script, free_port, post_state, publish, table_section
from burst import (
    HOST_KEY_SETS,
    ClientResult,
    burst_fleet,
    client_plans,
    device_serials,
    device_statuses,
    drive,
    fresh_database,
    host_key_sets,
    lab_with_vouchers,
    logged,
    postgres_cluster,
    probe,
    raise_file_limit,
    run_meta,
    server_counters,
    tree_usage,
)

SECTION = "## Active-active behind HAProxy"
START_TIMEOUT = 60.0
POLL_INTERVAL = 0.5
HEALTH_INTERVAL_MS = 500  # HAProxy's check interval: two failed checks mark a server down
WHERE_THE_TIME_GOES = (
    "Where the time goes (these runs, and earlier ones of 1,000 devices with HAProxy's "
    "check on the admin `/healthz`). Up to the kill the burst runs as on one server: each "
    "instance has one core and a connection per device (HAProxy counted 501 and 500 at the "
    "kill of an earlier 1,000-device run). The kill costs every device connected to the "
    "victim exactly one failed attempt: its request in flight ('connection closed': 236 of "
    "1,000 devices, 151 of 10,000) or, where the connection still waited for its TLS "
    "handshake, a reset (64 and 3,281); the device reconnects after its first backoff (0.5 s "
    "with jitter), and while HAProxy still counts the victim up (two missed checks) its "
    "connections are refused and redispatched to the survivor, unseen by the device. Some "
    "reports in flight had been committed before the victim died; the device sends each "
    "again, and the survivor finds it equal to the device's newest stored report and stores "
    "nothing (`repeated_report_seconds`): no duplicates, where the run of 2026-12-04, before "
    "repeats were recognised, stored 78 of 178 such reports twice (39 of 154 at 10,000). "
    "None acknowledged was lost. After the kill the survivor serves the rest alone on its "
    "core: at 10,000 devices that is 6,691 of them in about 100 s, and a device waiting "
    "longer than its 30 s attempt timeout connects again, as in the single-server burst "
    "('Power-on burst' above): most of the failed attempts there are such timed-out "
    "handshakes. HAProxy itself cost 1.1 s of CPU for the burst of 1,000 and 13.8 s for "
    "10,000. With the admin `/healthz` check "
    "(500 ms, two failures) the same burst took four times as long and left one device "
    "listed in-progress: `/healthz` is answered by the event loop that serves the devices, "
    "which a burst keeps busy for longer than the check allows, so HAProxy took both live "
    "instances out of rotation several times before the kill (838 connections refused for "
    "want of a server), and with `on-marked-down shutdown-sessions` cut connections whose "
    "reports the instances still committed after the devices had moved on: 18 devices had "
    "a copy stored after their later reports, one of them after `bootstrap-complete`, so "
    "its status (the latest report's) went back to in-progress. Hence the TCP check and no "
    "`shutdown-sessions` here and in playbooks/active_active.yml."
)


# --------------------------------------------------------------------------- the topology


@dataclass(frozen=True)
class Instance:
    name: str
    admin_url: str
    device_port: int
    process_id: int
    log: Path


@contextmanager
def running_instance(
    name: str, work: Path, database_url: str, secret_key: Path, tls: dict[str, str]
) -> Iterator[Instance]:
    """One sztp-server on the shared database, in a process group of its own (so that killing
    the instance takes its writer and forkserver too), stopped on the way out."""
    directory = work / name
    directory.mkdir()
    device_port, admin_port = free_port(), free_port()
    config = {
        "database_url": database_url,
        "device_listeners": [{"host": "127.0.0.1", "port": device_port, **tls}],
        "admin_listener": {"host": "127.0.0.1", "port": admin_port},
        "admin_token_file": str(directory / "admin-token"),
        "secret_key_file": str(secret_key),
        "log_level": "warning",
        "workers": 1,
        # Behind a TCP proxy every device comes from the proxy's address.
        "max_connections_per_address": 4096,
    }
    (directory / "server.yaml").write_text(json.dumps(config))
    log = directory / "server.log"
    with log.open("ab") as stderr:
        process = subprocess.Popen(
            [console_script("sztp-server"), "run", "-c", str(directory / "server.yaml")],
            stderr=stderr,
            start_new_session=True,
        )
    admin_url = f"http://127.0.0.1:{admin_port}"
    try:
        wait_until(
            lambda: healthy(admin_url), START_TIMEOUT, lambda: f"sztp-server {name} did not start"
        )
        yield Instance(name, admin_url, device_port, process.pid, log)
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the main process (as the role's unit does), then SIGKILL to whatever is left
    of its process group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def healthy(admin_url: str) -> bool:
    try:
        return requests.get(f"{admin_url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def wait_until(condition: Callable[[], bool], timeout: float, failure: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(failure())
        time.sleep(0.1)


def haproxy_config(
    port: int, stats_socket: Path, instances: Sequence[Instance], retries: int, health: str
) -> str:
    """TCP passthrough over the instances; each checked by a TCP connect to its device
    listener or (`health` admin) by GET /healthz on its admin listener."""
    servers = "\n".join(
        f"    server {instance.name} 127.0.0.1:{instance.device_port} check"
        + (f" port {instance.admin_url.rsplit(':', 1)[1]}" if health == "admin" else "")
        for instance in instances
    )
    httpchk = "    option httpchk GET /healthz\n" if health == "admin" else ""
    return f"""global
    stats socket {stats_socket} mode 600 level admin

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries {retries}
    option redispatch 1

frontend devices
    bind 127.0.0.1:{port}
    backlog 4096
    default_backend sztp

backend sztp
    balance roundrobin
{httpchk}    default-server inter {HEALTH_INTERVAL_MS} fall 2 rise 2
{servers}
"""


@contextmanager
def running_haproxy(
    work: Path, instances: Sequence[Instance], retries: int, health: str
) -> Iterator[tuple[str, Path, int]]:
    """HAProxy in front of `instances`: its URL, stats socket and process id."""
    port, stats_socket = free_port(), work / "haproxy.sock"
    config = work / "haproxy.cfg"
    config.write_text(haproxy_config(port, stats_socket, instances, retries, health))
    with (work / "haproxy.log").open("ab") as output:
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_until(
            lambda: (
                all(
                    row.get("status") == "UP"
                    for row in haproxy_stats(stats_socket)
                    if row["svname"] in {instance.name for instance in instances}
                )
                and len(haproxy_stats(stats_socket)) > len(instances)
            ),
            START_TIMEOUT,
            lambda: (
                "HAProxy did not see both servers up: "
                + json.dumps(backend_view(stats_socket))
                + (work / "haproxy.log").read_text(errors="replace")[-2000:]
            ),
        )
        yield f"https://127.0.0.1:{port}", stats_socket, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def haproxy_stats(stats_socket: Path) -> list[dict[str, str]]:
    """`show stat` of HAProxy's stats socket, a dict per proxy and server; [] when absent."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(5)
            connection.connect(str(stats_socket))
            connection.sendall(b"show stat\n")
            chunks = []
            while chunk := connection.recv(65536):
                chunks.append(chunk)
    except OSError:
        return []
    text = b"".join(chunks).decode().removeprefix("# ")
    return list(csv.DictReader(io.StringIO(text)))


def backend_view(stats_socket: Path) -> dict[str, dict[str, str]]:
    """What HAProxy counted for each server and the backend: connections, retries,
    redispatches, connection errors, status, failed checks."""
    keep = ("stot", "wretr", "wredis", "econ", "eresp", "status", "chkfail", "chkdown")
    return {
        row["svname"]: {key: row.get(key, "") for key in keep}
        for row in haproxy_stats(stats_socket)
        if row["pxname"] == "sztp"
    }


# --------------------------------------------------------------------------- the kill


class Killer:
    """Watches the survivor's count of complete devices; at `threshold`, SIGKILLs the victim's
    process group, noting the instant and what HAProxy and /proc said just before."""

    def __init__(
        self, victim: Instance, survivor: Instance, token: str, threshold: int, timeout: float
    ) -> None:
        self.victim, self.survivor, self.token = victim, survivor, token
        self.threshold, self.timeout = threshold, timeout
        self.killed_at: float | None = None
        self.complete_at_kill = 0
        self.victim_cpu = 0.0
        self.stats_before: dict[str, dict[str, str]] = {}
        self.stats_socket: Path | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, stats_socket: Path) -> None:
        self.stats_socket = stats_socket
        self.victim_cpu = -tree_usage(self.victim.process_id)[0]  # its CPU in the burst alone
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.token}"
        while not self._stop.wait(POLL_INTERVAL) and time.monotonic() < deadline:
            try:
                counts = session.get(f"{self.survivor.admin_url}/api/v1/status", timeout=10)
                complete = int(counts.json()["counts"]["complete"])
            except (requests.RequestException, ValueError, KeyError):
                continue
            if complete >= self.threshold:
                self.complete_at_kill = complete
                if self.stats_socket is not None:
                    self.stats_before = backend_view(self.stats_socket)
                self.victim_cpu += tree_usage(self.victim.process_id)[0]
                os.killpg(self.victim.process_id, signal.SIGKILL)
                self.killed_at = time.monotonic()
                return


# --------------------------------------------------------------------------- the check


def stored_reports(admin_url: str, token: str, serials: Sequence[str]) -> dict[str, list[str]]:
    """serial → the reports stored for it (type and message), oldest first."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    found: dict[str, list[str]] = {}
    for serial in serials:
        response = session.get(
            f"{admin_url}/api/v1/devices/{serial}/progress", params={"limit": 1000}, timeout=60
        )
        if response.status_code == 404:
            continue  # missing: counted by the caller
        response.raise_for_status()
        body = response.json()
        if body.get("next_before") is not None:
            sys.exit(f"{serial} has more than a page of reports")
        reports = [report for attempt in body["attempts"] for report in attempt["reports"]]
        reports.sort(key=lambda report: int(report["id"]))
        found[serial] = [f"{report['progress_type']}: {report['message']}" for report in reports]
    return found


def compare(
    expected: Sequence[str],
    stored: dict[str, list[str]],
    results: Sequence[ClientResult],
    serials: Sequence[str],
) -> dict[str, Any]:
    """Each device's stored reports against what it sent and had acknowledged."""
    acknowledged: Counter[str] = Counter()
    unanswered: Counter[str] = Counter()
    for result in results:
        acknowledged.update(result.acknowledged)
        unanswered.update(result.unanswered)
    position = {report: index for index, report in enumerate(expected)}
    figures: Counter[str] = Counter()
    problems: list[str] = []
    for serial in serials:
        reports = stored.get(serial)
        if reports is None:
            figures["missing devices"] += 1
            problems.append(f"{serial}: no such device")
            continue
        sent = Counter(expected[: acknowledged[serial]])
        kept = Counter(reports)
        figures["stored"] += len(reports)
        figures["acknowledged"] += acknowledged[serial]
        figures["unanswered attempts"] += unanswered[serial]
        if lost := sum((sent - kept).values()):
            figures["lost"] += lost
            problems.append(f"{serial}: {lost} acknowledged reports not stored")
        extra = sum((kept - sent).values())
        figures["duplicates"] += extra
        figures["devices with duplicates"] += bool(extra)
        if extra > unanswered[serial]:
            figures["devices with more copies than sent"] += 1
            problems.append(f"{serial}: {extra} extra copies, {unanswered[serial]} unanswered")
        # A copy committed after a later report of the device: the server finished an
        # attempt the device had given up on (its connection cut) after the device's retry.
        indexes = [position.get(report, -1) for report in reports]
        if any(later < earlier for earlier, later in itertools.pairwise(indexes)):
            figures["devices with a copy stored late"] += 1
            if reports[-1] != expected[-1]:
                figures["devices whose latest stored report is not their last"] += 1
                problems.append(f"{serial}: latest stored report is {reports[-1]!r}")
    return {"figures": dict(figures), "problems": problems[:20]}


# --------------------------------------------------------------------------- the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    raise_file_limit()  # HAProxy inherits it too
    meta: dict[str, Any] = {
        **run_meta(_command(args)),
        "haproxy": subprocess.run(
            ["haproxy", "-v"], capture_output=True, text=True, check=True
        ).stdout.split("\n")[0],
    }
    keys = host_key_sets(HOST_KEY_SETS)
    serials = device_serials(args.devices)
    with (
        tempfile.TemporaryDirectory(prefix="sztp-active-active-") as temporary,
        ExitStack() as stack,
    ):
        work = Path(temporary)
        work.chmod(0o711)  # the cluster's user must enter it
        lab, vouchers = lab_with_vouchers(work, args.pki_cache, args.devices)
        cluster_url, cluster = stack.enter_context(postgres_cluster(work))
        database_url = fresh_database(cluster_url, "active_active")
        secret_key = work / "secret-key"
        secret_key.write_text(os.urandom(32).hex() + "\n")
        secret_key.chmod(0o600)
        tls = {"tls_cert": str(lab.server.certificate), "tls_key": str(lab.server.private_key)}
        # `a` first: on the empty database it writes the admin token, which `b` shares.
        victim = stack.enter_context(running_instance("a", work, database_url, secret_key, tls))
        survivor = stack.enter_context(running_instance("b", work, database_url, secret_key, tls))
        token = (work / "a" / "admin-token").read_text().strip()
        url, stats_socket, haproxy_pid = stack.enter_context(
            running_haproxy(work, [victim, survivor], args.haproxy_retries, args.health_check)
        )
        fleet = burst_fleet(lab, vouchers, serials)
        apply_seconds = post_state(victim.admin_url, token, fleet)
        wait_until(
            lambda: (
                requests.get(
                    f"{survivor.admin_url}/api/v1/devices/{serials[-1]}/status",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=10,
                ).ok
            ),
            START_TIMEOUT,
            lambda: "instance b did not see the fleet applied through a",
        )
        reports = probe(lab, url, work, keys[0])
        expected = [f"{kind}: {message}" for kind, message in reports]
        plans = client_plans(lab, url, reports, keys, args.devices, args)
        postmaster = int((cluster / "data" / "postmaster.pid").read_text().split()[0])
        roots = {"server": survivor.process_id, "haproxy": haproxy_pid, "database": postmaster}
        stats_at_start = backend_view(stats_socket)
        # The probe is complete already: it counts towards the survivor's total.
        killer = Killer(
            victim, survivor, token, round(args.kill_at * args.devices) + 1, args.burst_timeout
        )
        killer.start(stats_socket)
        try:
            results, start_at, trees = drive(plans, roots, args, Path())
        finally:
            killer.stop()
        time.sleep(2)  # the survivor sends its counts every second
        stats_after = backend_view(stats_socket)
        statuses = device_statuses(survivor.admin_url, token, serials)
        stored = stored_reports(survivor.admin_url, token, serials)
        counters = server_counters(survivor.admin_url, token)
        outcome = compare(expected, stored, results, serials)
        logs = {
            instance.name: {
                "errors": dict(logged(instance.log, ("error", "critical"))),
                "warnings": dict(logged(instance.log, ("warning",))),
            }
            for instance in (victim, survivor)
        }
        if args.keep_logs is not None:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for instance in (victim, survivor):
                shutil.copy(instance.log, args.keep_logs / f"server-{instance.name}.log")
            shutil.copy(work / "haproxy.cfg", args.keep_logs / "haproxy.cfg")
    ends = [end for result in results for end in result.ends]
    failed: Counter[str] = Counter()
    for result in results:
        failed.update(result.failed_attempts)
    meta["load_after"] = os.getloadavg()[0]
    return {
        "meta": meta,
        "devices": args.devices,
        "reports_per_device": len(expected),
        "apply_seconds": apply_seconds,
        "burst_seconds": (max(ends) - start_at) if ends else float("nan"),
        "killed_after": (killer.killed_at - start_at) if killer.killed_at else None,
        "complete_at_kill": max(0, killer.complete_at_kill - 1),
        "statuses": dict(statuses),
        "failed_attempts": dict(failed),
        "failed_devices": sum(len(result.failed_devices) for result in results),
        "undelivered_reports": sum(result.undelivered_reports for result in results),
        "devices_that_retried": len({serial for result in results for serial in result.unanswered}),
        "outcome": outcome,
        "haproxy": {"start": stats_at_start, "at_kill": killer.stats_before, "end": stats_after},
        "cpu": {
            "victim_until_kill": killer.victim_cpu,
            **{name: figures.cpu for name, figures in trees.items()},
        },
        "client_cpu": sum(result.burst_cpu for result in results),
        "survivor_counters": counters,
        "logs": logs,
    }


# --------------------------------------------------------------------------- the report


def render(measurements: Sequence[dict[str, Any]]) -> str:
    """The section for one run or several (each a row, each with its own command)."""
    measurement = measurements[0]
    meta = measurement["meta"]
    commands = " and ".join(f"`{m['meta']['command']}`" for m in measurements)
    measured = (
        f"Measured {meta['date']} on {meta['node']} ({meta['cores']} cores, Python "
        f"{meta['python']}, {meta['openssl']}, {meta['haproxy']}), {commands}: one "
        "PostgreSQL database, two sztp-server instances on it (`workers: 1` each, the same "
        "secret key, `max_connections_per_address` 4096 since every connection comes from "
        "HAProxy), HAProxy in TCP mode in front (TLS passes through to the servers, which see "
        "the devices' IDevIDs; round robin; health check ("
        + (
            "a TCP connect to each device port"
            if meta.get("health_check", "admin") == "tcp"
            else "GET of each admin `/healthz`"
        )
        + " every "
        f"{HEALTH_INTERVAL_MS} ms, down after 2 failures; `retries "
        f"{meta['haproxy_retries']}`, `option redispatch`). The fleet is applied through "
        "instance a; then the devices of the power-on burst (bench/burst.py: own IDevID, own "
        "loopback address, host-meta, signed get-bootstrapping-data, "
        f"{measurement['reports_per_device']} progress reports, retries as an RFC 8572 client) "
        "power on at once against HAProxy, and instance a's process group is killed with "
        f"SIGKILL once {meta['kill_at']:.0%} of them are complete. Statuses and stored "
        "reports are read afterwards through instance b's admin API. A duplicate is a report "
        "stored twice because the device sent it again after an attempt whose answer was lost "
        "(RFC 8572 reports carry no id; the server stores a copy equal to the device's newest "
        "report within `repeated_report_seconds` only once). The "
        "1-minute load average was "
        + " and ".join(
            f"{m['meta']['load_before']:.1f} before and {m['meta']['load_after']:.1f} after "
            f"the run of {m['devices']:,} devices"
            for m in measurements
        )
        + "."
    )
    columns = (
        "devices", "killed after", "burst", "complete", "failed attempts", "reports stored",
        "acknowledged", "duplicates", "lost", "copies stored late", "HAProxy connections a / b",
        "retries", "redispatches", "CPU a / b / PostgreSQL / HAProxy",
    )  # fmt: skip
    notes = [f"{m['devices']:,} devices: {_notes(m)}" for m in measurements if _notes(m)]
    where = "\n\n".join([*notes, WHERE_THE_TIME_GOES])
    return table_section(SECTION, measured, columns, [_row(m) for m in measurements], where)


def _row(m: dict[str, Any]) -> str:
    figures = m["outcome"]["figures"]
    end = m["haproxy"]["end"]
    a, b, backend = end.get("a", {}), end.get("b", {}), end.get("BACKEND", {})
    killed = f"{m['killed_after']:.1f} s" if m["killed_after"] is not None else "not killed"
    cpu = m["cpu"]
    lost = figures.get("lost", 0) + figures.get("missing devices", 0)
    late = figures.get("devices with a copy stored late", 0)
    return (
        f"| {m['devices']:,} | {killed} ({m['complete_at_kill']:,} complete) "
        f"| {m['burst_seconds']:.1f} s | {m['statuses'].get('complete', 0):,} "
        f"| {sum(m['failed_attempts'].values())} | {figures.get('stored', 0):,} "
        f"| {figures.get('acknowledged', 0):,} | {figures.get('duplicates', 0)} "
        f"({figures.get('unanswered attempts', 0)} unanswered attempts) | {lost} | {late} devices "
        f"| {a.get('stot', '?')} / {b.get('stot', '?')} | {backend.get('wretr', '?')} "
        f"| {backend.get('wredis', '?')} "
        f"| {cpu['victim_until_kill']:.1f} / {cpu.get('server', 0):.1f} / "
        f"{cpu.get('database', 0):.1f} / {cpu.get('haproxy', 0):.1f} s |"
    )


def _notes(m: dict[str, Any]) -> str:
    parts = []
    if m["failed_attempts"]:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(m["failed_attempts"].items()))
        parts.append(f"failed attempts by kind: {kinds}")
    if m["failed_devices"] or m["undelivered_reports"]:
        parts.append(
            f"{m['failed_devices']} devices gave up, {m['undelivered_reports']} reports undelivered"
        )
    not_complete = {s: n for s, n in m["statuses"].items() if s != "complete"}
    if not_complete:
        parts.append("not complete: " + ", ".join(f"{n} {s}" for s, n in not_complete.items()))
    if m["outcome"]["problems"]:
        parts.append("problems: " + "; ".join(m["outcome"]["problems"]))
    for name, log in m["logs"].items():
        if log["errors"]:
            events = ", ".join(f"{event} {n}" for event, n in log["errors"].items())
            parts.append(f"instance {name} logged errors: {events}")
    return "; ".join(parts) + "." if parts else ""


def _command(args: argparse.Namespace) -> str:
    return (
        f"python bench/active_active.py --devices {args.devices} --kill-at {args.kill_at:.2g} "
        f"--clients {args.clients}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument(
        "--kill-at", type=float, default=1 / 3, help="fraction of devices complete at the kill"
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--attempts", type=int, default=8, help="attempts per request")
    parser.add_argument("--attempt-timeout", type=float, default=30.0, help="seconds")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="seconds")
    parser.add_argument("--haproxy-retries", type=int, default=3)
    parser.add_argument(
        "--health-check",
        choices=("tcp", "admin"),
        default="tcp",
        help="HAProxy's check: connect to the device port, or GET the admin /healthz",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the servers' and HAProxy's logs here")
    parser.add_argument("--burst-timeout", type=float, default=900.0, help="seconds")
    parser.add_argument("--pki-cache", type=Path, help="keep the lab PKI and vouchers here")
    parser.add_argument("--save", type=Path, help="write the figures to this JSON file")
    parser.add_argument(
        "--load", type=Path, nargs="+", help="measure nothing: report these --save files"
    )
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    # What burst.drive and burst.client_plans read besides these.
    args.ramp, args.py_spy, args.py_spy_options = 0.0, None, ""
    if args.load:
        measurements = [json.loads(path.read_text()) for path in args.load]
    else:
        if args.devices < 1 or args.clients < 1 or not 0 < args.kill_at < 1:
            sys.exit("give at least one device and client, and a --kill-at between 0 and 1")
        measurement = run(args)
        measurement["meta"]["kill_at"] = args.kill_at
        measurement["meta"]["haproxy_retries"] = args.haproxy_retries
        measurement["meta"]["health_check"] = args.health_check
        if args.save:
            args.save.write_text(json.dumps(measurement, indent=1))
        measurements = [measurement]
    publish(render(measurements), args.write, SECTION)


if __name__ == "__main__":
    main()

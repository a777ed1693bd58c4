"""Token buckets in shared memory (`SharedTokenBuckets`): the meaning of `TokenBuckets`, one
budget for every process a table is passed to (started as the server starts its device
workers), bounded memory, keys that never share a bucket, a lock that dies with its holder;
then a real server whose device worker, killed and replaced, counts in the same tables."""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import signal
import threading
import time
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from sztp_server.children import server_processes
from sztp_server.config import ServerConfig
from sztp_server.device_api.rate_limits import RateLimits
from sztp_server.device_api.shared_buckets import WAYS, SharedTokenBuckets
from sztp_server.device_api.token_buckets import TokenBuckets
from sztp_testing import ManualClock, RunningServer, running_server

# How long a process started from the forkserver may take to start and answer.
PATIENCE_SECONDS = 60.0

Table = type[TokenBuckets] | type[SharedTokenBuckets]
BOTH = pytest.mark.parametrize("table", [TokenBuckets, SharedTokenBuckets])


# ---- what both kinds of table mean


@BOTH
def test_a_bucket_allows_its_burst_then_one_per_refill(table: Table) -> None:
    clock = ManualClock()
    buckets = table(3, 10.0, clock=clock)
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    assert buckets.wait("a") == pytest.approx(10.0)
    assert buckets.wait("b") == 0  # keys are independent
    clock.now += 4
    assert buckets.wait("a") == pytest.approx(6.0)
    clock.now += 6
    assert buckets.take("a")
    assert not buckets.take("a")
    clock.now += 1000  # refills to the burst, no further
    for _ in range(3):
        buckets.charge("a")
    assert buckets.wait("a") > 0
    buckets.charge("a")  # a charge counts even beyond the burst
    clock.now += 10
    assert buckets.wait("a") == pytest.approx(10.0)


@BOTH
def test_a_refund_gives_a_charge_back_never_beyond_the_burst(table: Table) -> None:
    buckets = table(1, 60.0, clock=ManualClock())
    buckets.charge("a")
    assert buckets.wait("a") > 0
    buckets.refund("a")
    assert buckets.wait("a") == 0
    buckets.refund("a")
    buckets.refund("never charged")
    buckets.charge("a")
    assert buckets.wait("a") > 0


@BOTH
def test_a_zero_burst_means_no_limit(table: Table) -> None:
    buckets = table(0, 60.0, clock=ManualClock())
    for _ in range(100):
        buckets.charge("a")
        assert buckets.take("a")
    assert buckets.wait("a") == 0


def test_a_zero_burst_tracks_nothing() -> None:
    buckets = SharedTokenBuckets(0, 60.0, clock=ManualClock())
    buckets.charge("a")
    buckets.refund("a")
    assert len(buckets) == 0


# ---- shared memory, its bounds and its keys


def test_a_full_set_forgets_its_least_recently_charged_key_first() -> None:
    clock = ManualClock()
    buckets = SharedTokenBuckets(2, 10.0, tracked=3, clock=clock)  # one set of three
    for key in ("a", "b", "c"):
        clock.now += 1
        buckets.charge(key)
        buckets.charge(key)
    buckets.charge("a")  # charged again: now the most recent
    buckets.charge("d")  # full: "b", the least recently charged, goes
    assert buckets.wait("b") == 0
    assert buckets.wait("a") > 0 and buckets.wait("c") > 0 and buckets.wait("d") == 0
    assert len(buckets) == 3


def test_a_refilled_bucket_goes_before_a_spent_one() -> None:
    clock = ManualClock()
    buckets = SharedTokenBuckets(1, 10.0, tracked=2, clock=clock)  # one set of two
    for _ in range(5):
        buckets.charge("indebted")  # 4 in debt: 50 s until refilled
    clock.now += 1
    buckets.charge("brief")  # charged later, refilled sooner: 10 s
    clock.now += 11
    buckets.charge("new")  # takes the place of "brief", not of the less recent "indebted"
    assert buckets.wait("indebted") == pytest.approx(38.0)  # still counted
    assert buckets.wait("new") > 0
    assert len(buckets) == 2


def test_memory_is_bounded_whatever_the_keys() -> None:
    buckets = SharedTokenBuckets(5, 3600.0, tracked=4 * WAYS, clock=ManualClock())
    for number in range(2000):
        buckets.charge(f"key {number}")
    assert len(buckets) == 4 * WAYS
    # Recent keys are still counted: each of the last few went to a set of its own choice,
    # where it is the most recent.
    assert buckets.wait("key 1999") == 0  # one of five charged
    for _ in range(4):
        buckets.charge("key 1999")
    assert buckets.wait("key 1999") > 0


def test_keys_in_one_set_never_share_a_bucket() -> None:
    """Every key lands in the one set: each is told apart by its digest alone."""
    buckets = SharedTokenBuckets(1, 3600.0, tracked=WAYS, clock=ManualClock())
    keys: list[Hashable] = [
        "192.0.2.1",
        b"192.0.2.1",
        ipaddress.ip_address("192.0.2.1"),
        ipaddress.ip_network("192.0.2.1/32"),
        ipaddress.ip_network("2001:db8::/64"),
        ipaddress.ip_address("2001:db8::"),
        "SN-1",
        "SN-2",
    ]
    for spent, key in enumerate(keys):
        assert buckets.take(key), key
        assert not buckets.take(key)
        assert all(buckets.wait(other) == 0 for other in keys[spent + 1 :])
    assert len(buckets) == WAYS


def test_a_digest_across_two_slots_is_no_match() -> None:
    buckets = SharedTokenBuckets(1, 3600.0, tracked=WAYS, clock=ManualClock())
    buckets.charge("a")
    buckets.charge("b")
    first, second = buckets._digest("a"), buckets._digest("b")
    assert [buckets._find(first)[1], buckets._find(second)[1]] == [0, 1]  # side by side
    straddling = first[8:] + second[:8]
    assert buckets._find(straddling) == (0, -1)


def test_each_table_hashes_with_a_salt_of_its_own() -> None:
    one, other = SharedTokenBuckets(1, 60.0), SharedTokenBuckets(1, 60.0)
    assert one._digest("SN-1") != other._digest("SN-1")
    assert one._digest("SN-1") == one._digest("SN-1")


def test_keys_must_have_a_form_every_process_agrees_on() -> None:
    with pytest.raises(TypeError):
        SharedTokenBuckets(1, 60.0).charge(("a", 1))


# ---- several processes


def charge_times(buckets: SharedTokenBuckets, key: str, times: int, done: Connection) -> None:
    for _ in range(times):
        buckets.charge(key)
    done.send(buckets.wait(key))


def take_all(
    buckets: SharedTokenBuckets, key: str, tries: int, go: Event, done: Connection
) -> None:
    go.wait()
    done.send(sum(buckets.take(key) for _ in range(tries)))


def hold_lock(buckets: SharedTokenBuckets, holding: Connection) -> None:
    with buckets._locked:
        holding.send("holding")
        time.sleep(3600)


def test_two_processes_charging_a_key_spend_one_budget() -> None:
    processes = server_processes()
    buckets = SharedTokenBuckets(10, 3600.0)
    receiving, sending = processes.Pipe(duplex=False)
    child = processes.Process(target=charge_times, args=(buckets, "SN-1", 4, sending))
    child.start()
    try:
        assert receiving.poll(PATIENCE_SECONDS)
        assert receiving.recv() == 0  # 6 left
        for _ in range(6):
            buckets.charge("SN-1")
        assert buckets.wait("SN-1") > 0
        assert buckets.wait("SN-2") == 0
    finally:
        child.join(PATIENCE_SECONDS)
    # A refund in this process is seen by the next process too.
    buckets.refund("SN-1")
    child = processes.Process(target=charge_times, args=(buckets, "SN-1", 0, sending))
    child.start()
    try:
        assert receiving.poll(PATIENCE_SECONDS)
        assert receiving.recv() == 0
    finally:
        child.join(PATIENCE_SECONDS)


def test_processes_taking_at_once_take_the_burst_exactly() -> None:
    processes = server_processes()
    burst = 20_000
    buckets = SharedTokenBuckets(burst, 3600.0)
    go = processes.Event()
    pipes, children = [], []
    for _ in range(2):
        receiving, sending = processes.Pipe(duplex=False)
        child = processes.Process(target=take_all, args=(buckets, "SN-1", burst, go, sending))
        child.start()
        pipes.append(receiving)
        children.append(child)
    try:
        go.set()
        taken = []
        for receiving in pipes:
            assert receiving.poll(PATIENCE_SECONDS)
            taken.append(receiving.recv())
        assert sum(taken) == burst
        assert not buckets.take("SN-1")
    finally:
        for child in children:
            child.join(PATIENCE_SECONDS)


def test_a_process_killed_holding_the_lock_holds_no_one_up() -> None:
    processes = server_processes()
    buckets = SharedTokenBuckets(5, 3600.0)
    receiving, sending = processes.Pipe(duplex=False)
    holder = processes.Process(target=hold_lock, args=(buckets, sending))
    holder.start()
    try:
        assert receiving.poll(PATIENCE_SECONDS)
        assert receiving.recv() == "holding"
        charging = threading.Thread(target=buckets.charge, args=("SN-1",), daemon=True)
        charging.start()
        charging.join(0.5)
        assert charging.is_alive()  # waits for the holder
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        charging.join(PATIENCE_SECONDS)
        assert not charging.is_alive()
        assert buckets.wait("SN-1") == 0  # one of five charged
    finally:
        holder.kill()
        holder.join(PATIENCE_SECONDS)


# ---- what the server makes


def test_the_server_shares_its_tables_only_with_workers_to_share_them() -> None:
    config = ServerConfig(
        password_failures_per_address=3, report_burst=7, report_rate_per_minute=6.0
    )
    alone = RateLimits.of(config, shared=False)
    assert isinstance(alone.reports, TokenBuckets)
    shared = RateLimits.of(config, shared=True)
    assert isinstance(shared.reports, SharedTokenBuckets)
    assert shared.reports.refill_seconds == 10.0
    assert all(shared.reports.take("SN-1") for _ in range(7))
    assert not shared.reports.take("SN-1")


# ---- a real server


GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
# Logins at once after the limit is reached, each over a new connection to either process:
# the replaced worker gets none of them once in 256 runs.
SPREAD = 8


def failed_login(server: RunningServer, source: str) -> int:
    """The status of a login with a wrong password from `source`, over a new connection."""
    url = urlsplit(server.device_url)
    connection = http.client.HTTPConnection(
        url.hostname or "", url.port, timeout=30, source_address=(source, 0)
    )
    credentials = base64.b64encode(b"SN-1:wrong").decode()
    try:
        connection.request(
            "POST",
            GET_DATA,
            body=b"",
            headers={
                "Authorization": f"Basic {credentials}",
                "Content-Type": "application/yang-data+json",
            },
        )
        return connection.getresponse().status
    finally:
        connection.close()


def test_a_replaced_worker_counts_in_the_same_tables(tmp_path: Path) -> None:
    settings = {
        "workers": 2,
        "password_failures_per_address": 3,
        "password_failure_refill_seconds": 3600,
    }
    with running_server(tmp_path, settings=settings) as server:
        server.apply({"device": {"SN-1": {"password": "device password 1"}}})
        assert [failed_login(server, "127.0.0.5") for _ in range(3)] == [401] * 3
        [first] = server.worker_pids()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + PATIENCE_SECONDS
        while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(server.worker_pids()) == 2, server.log
        with ThreadPoolExecutor(max_workers=SPREAD) as pool:
            statuses = list(pool.map(failed_login, [server] * SPREAD, ["127.0.0.5"] * SPREAD))
        assert statuses == [429] * SPREAD
        assert failed_login(server, "127.0.0.6") == 401  # another address has its own

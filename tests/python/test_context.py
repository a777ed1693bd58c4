"""ServerContext: snapshot reloads run off the event loop, and concurrent callers share one."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sztp_server.config import ServerConfig
from sztp_server.context import ServerContext, load_snapshot
from sztp_server.secret_key import SecretKey
from sztp_server.store import Change, SqliteStore
from sztp_server.store.model import StateDelta

SLOW_LIST_SECONDS = 0.5


class SlowListStore(SqliteStore):
    """A real store whose reads of the state (a full listing, or what changed since a
    revision) are slow once released, and counted."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.slow = threading.Event()
        self.lists = 0
        self.catch_ups = 0

    def each_spec(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        self.lists += 1
        if self.slow.is_set():
            time.sleep(SLOW_LIST_SECONDS)
        return super().each_spec()

    def changes_since(self, revision: int, *, most: int) -> StateDelta | None:
        self.catch_ups += 1
        if self.slow.is_set():
            time.sleep(SLOW_LIST_SECONDS)
        return super().changes_since(revision, most=most)

    @property
    def loads(self) -> int:
        return self.lists + self.catch_ups


@pytest.fixture
def context(tmp_path: Path) -> Iterator[ServerContext]:
    store = SlowListStore(tmp_path / "sztp.db")
    context = ServerContext(store, ServerConfig(), SecretKey(os.urandom(32)))
    yield context
    context.close()
    store.close()


def test_concurrent_refreshes_share_one_load_off_the_loop(context: ServerContext) -> None:
    store = context.store
    assert isinstance(store, SlowListStore)
    revision = store.apply([Change("create", "device", "SN-1", {"profile": "p"})], actor="t")
    store.slow.set()
    loads_before = store.loads

    async def scenario() -> tuple[list[Any], list[float]]:
        ticks: list[float] = []

        async def ticker() -> None:
            for _ in range(8):
                started = time.monotonic()
                await asyncio.sleep(0.02)
                ticks.append(time.monotonic() - started)

        refreshes = [context.refresh(revision) for _ in range(5)]
        results = await asyncio.gather(ticker(), *refreshes, context.poll())
        return list(results[1:]), ticks

    snapshots, ticks = asyncio.run(scenario())
    assert store.loads - loads_before == 1, "each caller loaded the state itself"
    assert {snapshot.revision for snapshot in snapshots} == {revision}
    assert snapshots[0].device("SN-1") == {"profile": "p"}
    # The loop kept its timers while the load slept in a worker.
    assert max(ticks) < SLOW_LIST_SECONDS / 2, ticks


def test_snapshot_never_reads_the_store(context: ServerContext) -> None:
    store = context.store
    assert isinstance(store, SlowListStore)
    before = context.snapshot()
    store.apply([Change("create", "device", "SN-1", {"profile": "p"})], actor="t")
    loads = store.loads
    assert context.snapshot() is before
    assert store.loads == loads


def test_a_write_costs_a_reload_what_it_changed_not_the_whole_state(
    context: ServerContext,
) -> None:
    store = context.store
    assert isinstance(store, SlowListStore)
    store.apply(
        [Change("create", "device", f"SN-{i}", {"profile": "p"}) for i in range(50)], actor="t"
    )
    store.apply([Change("create", "image", "os", {"os_name": "x"})], actor="t")
    asyncio.run(context.poll())
    lists = store.lists
    before = context.snapshot()
    store.apply([Change("update", "device", "SN-1", {"profile": "q"})], actor="t")
    store.apply([Change("delete", "device", "SN-2", None)], actor="t")
    store.apply([Change("create", "device", "SN-new", {"profile": "p"})], actor="t")
    after = asyncio.run(context.poll())
    assert store.lists == lists, "caught up by reading every resource"
    assert after.revision == store.revision()
    assert after.state == load_snapshot(store, context.secret_key).state
    assert after.state["image"] is before.state["image"]  # an untouched kind is shared
    # With the audit entries of a missed revision pruned, the whole state is read again.
    store.apply([Change("delete", "device", "SN-3", None)], actor="t")
    with store._reading() as connection:
        connection.execute("UPDATE audit SET at = '2000-01-01T00:00:00.000000+00:00'")
    store.prune_audit(datetime(2010, 1, 1, tzinfo=UTC))
    lists = store.lists
    pruned = asyncio.run(context.poll())
    assert store.lists == lists + 1
    assert pruned.device("SN-3") is None
    assert pruned.state == load_snapshot(store, context.secret_key).state


def test_poll_follows_a_database_restored_to_an_older_revision(tmp_path: Path) -> None:
    """A backup restored under a running server: the poller serves what the database holds
    now, though its revision is lower than the snapshot's."""
    database = tmp_path / "sztp.db"
    store = SqliteStore(database)
    store.apply([Change("create", "device", "SN-1", {"profile": "p"})], actor="t")
    store.close()
    backup = database.read_bytes()
    store = SqliteStore(database)
    context = ServerContext(store, ServerConfig(), SecretKey(os.urandom(32)))
    try:
        newer = store.apply([Change("create", "device", "SN-2", {"profile": "p"})], actor="t")
        assert asyncio.run(context.poll()).revision == newer
        store.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        database.write_bytes(backup)
        context.store = store = SqliteStore(database)
        context.admin_store.store = store
        restored = asyncio.run(context.poll())
        assert restored.revision == newer - 1
        assert restored.device("SN-2") is None and restored.device("SN-1") is not None
    finally:
        context.close()
        store.close()

"""ServerContext: snapshot reloads run off the event loop, and concurrent callers share one."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sztp_server.config import ServerConfig
from sztp_server.context import ServerContext
from sztp_server.secret_key import SecretKey
from sztp_server.store import Change, SqliteStore, StoredResource

SLOW_LIST_SECONDS = 0.5


class SlowListStore(SqliteStore):
    """A real store whose full listing (what a snapshot load reads) is slow once released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.slow = threading.Event()
        self.lists = 0

    def list(self, kind: str | None = None) -> list[StoredResource]:
        self.lists += 1
        if self.slow.is_set():
            time.sleep(SLOW_LIST_SECONDS)
        return super().list(kind)


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
    loads_before = store.lists

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
    assert store.lists - loads_before == 1, "each caller loaded the state itself"
    assert {snapshot.revision for snapshot in snapshots} == {revision}
    assert snapshots[0].device("SN-1") == {"profile": "p"}
    # The loop kept its timers while the load slept in a worker.
    assert max(ticks) < SLOW_LIST_SECONDS / 2, ticks


def test_snapshot_never_reads_the_store(context: ServerContext) -> None:
    store = context.store
    assert isinstance(store, SlowListStore)
    before = context.snapshot()
    store.apply([Change("create", "device", "SN-1", {"profile": "p"})], actor="t")
    loads = store.lists
    assert context.snapshot() is before
    assert store.lists == loads


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

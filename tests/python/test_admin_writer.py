"""The writer (sztp_server.admin.writer) on a real SQLite store, in this process: its snapshot
between writes, and writes racing another server instance on the same database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import requests

from sztp.errors import ValidationError
from sztp.state.model import DEVICE, KINDS, PROFILE
from sztp_server.admin import writes
from sztp_server.admin.errors import ApiError
from sztp_server.admin.jobs import Progress
from sztp_server.admin.service import StateService
from sztp_server.admin.vouchers import VoucherChecker
from sztp_server.admin.writer import Writer
from sztp_server.admin.writes import (
    ApplyState,
    DeleteResource,
    JsonAnswer,
    PutResource,
    WriteTools,
)
from sztp_server.config import ServerConfig
from sztp_server.context import ServerContext, Snapshot, load_snapshot
from sztp_server.secret_key import SecretKey
from sztp_server.store import Change, SqliteStore
from sztp_server.tokens import ensure_first_admin_token
from test_admin_api import LiveServer


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "sztp.db"


@pytest.fixture
def other_instance(database: Path) -> Iterator[SqliteStore]:
    """Another server instance's handle on the same database."""
    store = SqliteStore(database)
    yield store
    store.close()


@pytest.fixture
def secret_key() -> SecretKey:
    return SecretKey(os.urandom(32))


def make_writer(store: SqliteStore, secret_key: SecretKey) -> Writer:
    return Writer(store, secret_key, Progress(), frozenset({"lab-ldevid"}))


def add_device(store: SqliteStore, serial: str) -> int:
    return store.apply([Change("create", "device", serial, {"profile": None})], actor="other")


def test_the_snapshot_kept_between_writes_is_what_the_store_holds(
    database: Path, secret_key: SecretKey
) -> None:
    store = SqliteStore(database)
    writer = make_writer(store, secret_key)
    writer.run(PutResource("device", "SN-1", {}), actor="admin", if_match=None)
    writer.run(PutResource("device", "SN-2", {"model": "switch"}), actor="admin", if_match=None)
    writer.run(PutResource("device", "SN-1", {"model": "dpu"}), actor="admin", if_match=None)
    writer.run(DeleteResource("device", "SN-2"), actor="admin", if_match=None)
    kept = writer.snapshot()
    stored = load_snapshot(store, secret_key)
    assert kept.revision == stored.revision == 4
    assert kept.state == stored.state
    assert set(kept.state["device"]) == {"SN-1"}
    assert kept.state["device"]["SN-1"]["model"] == "dpu"
    writer.close()
    store.close()


def test_a_write_sees_what_another_instance_stored_since_the_last_one(
    database: Path, other_instance: SqliteStore, secret_key: SecretKey
) -> None:
    store = SqliteStore(database)
    writer = make_writer(store, secret_key)
    writer.run(PutResource("device", "SN-1", {}), actor="admin", if_match=None)
    add_device(other_instance, "SN-2")
    commit = writer.run(DeleteResource("device", "SN-2"), actor="admin", if_match=None)
    assert commit.revision == 3
    assert [change.name for change in commit.changes] == ["SN-2"]
    assert store.get("device", "SN-2") is None
    writer.close()
    store.close()


class RacedStore(SqliteStore):
    """A store whose first apply loses the race to `other`, which stores a device first."""

    def __init__(self, path: Path, other: SqliteStore) -> None:
        super().__init__(path)
        self.other = other
        self.raced = 0

    def apply(self, changes: Sequence[Change], **kwargs: Any) -> int:
        if not self.raced:
            self.raced = add_device(self.other, "SN-RACED")
        return super().apply(changes, **kwargs)


def test_a_write_that_loses_a_race_is_planned_again_on_the_new_state(
    database: Path, other_instance: SqliteStore, secret_key: SecretKey
) -> None:
    store = RacedStore(database, other_instance)
    writer = make_writer(store, secret_key)
    body = b'{"resources": {"device": {"SN-1": {}}}, "prune": true}'
    answer = writer.run(ApplyState(body, "summary"), actor="admin", if_match=None)
    assert isinstance(answer, JsonAnswer)
    # Planned again on the state the race left: the pruning write now removes SN-RACED too.
    assert store.raced == 1 and answer.revision == 2
    assert b'"name": "SN-RACED"' in answer.body and b'"action": "delete"' in answer.body
    assert [resource.name for resource in store.list("device")] == ["SN-1"]
    writer.close()
    store.close()


def test_a_write_pinned_by_if_match_that_loses_a_race_is_refused(
    database: Path, other_instance: SqliteStore, secret_key: SecretKey
) -> None:
    store = RacedStore(database, other_instance)
    writer = make_writer(store, secret_key)
    with pytest.raises(ApiError) as refused:
        writer.run(PutResource("device", "SN-1", {}), actor="admin", if_match='"0"')
    assert refused.value.status == 412 and refused.value.headers == {"ETag": '"1"'}
    assert [resource.name for resource in store.list("device")] == ["SN-RACED"]
    writer.close()
    store.close()


def test_a_refused_write_stores_nothing_and_says_why(database: Path, secret_key: SecretKey) -> None:
    store = SqliteStore(database)
    writer = make_writer(store, secret_key)
    with pytest.raises(ApiError) as refused:
        writer.run(ApplyState(b'{"resources": [', "full"), actor="admin", if_match=None)
    assert refused.value.status == 400 and "not valid JSON" in refused.value.message
    with pytest.raises(ApiError) as missing:
        writer.run(DeleteResource("device", "SN-NONE"), actor="admin", if_match=None)
    assert missing.value.status == 404
    assert store.revision() == 0
    writer.close()
    store.close()


class UnreachableFromOtherProcesses(SqliteStore):
    """A store another process cannot open (its reopener names a file below a file)."""

    def reopener(self) -> Callable[[], SqliteStore]:
        return partial(SqliteStore, self._path / "sztp.db")


def test_a_writer_that_cannot_start_answers_503_and_reads_go_on(
    tmp_path: Path, secret_key: SecretKey
) -> None:
    store = UnreachableFromOtherProcesses(tmp_path / "sztp.db")
    token = ensure_first_admin_token(store, tmp_path / "admin-token")
    context = ServerContext(store, ServerConfig(), secret_key)
    server = LiveServer(context, max_bulk_bytes=1024 * 1024)
    try:
        headers = {"Authorization": f"Bearer {token}"}
        refused = requests.put(
            f"{server.url}/api/v1/devices/SN-1", json={"spec": {}}, headers=headers, timeout=30
        )
        assert refused.status_code == 503, refused.text
        assert "writer process cannot start" in refused.json()["error"]["message"]
        listed = requests.get(f"{server.url}/api/v1/devices", headers=headers, timeout=30)
        assert listed.status_code == 200 and listed.json() == []
        assert store.revision() == 0
    finally:
        server.close()
        store.close()


class _RecordingWriter:
    """A writer handle that answers at once and records what the service asks of it."""

    def __init__(self, events: list[str], changed: bool) -> None:
        self.events = events
        self.changed = changed

    async def start(self) -> None:
        pass

    async def run(self, write: Any, **_: Any) -> JsonAnswer:
        self.events.append("write")
        return JsonAnswer(7, b"{}", self.changed)

    def retire(self) -> None:
        self.events.append("retire")

    def renew(self) -> None:
        self.events.append("renew")

    def close(self) -> None:
        pass


class _RecordingContext:
    admin_store = None

    def __init__(self, events: list[str]) -> None:
        self.events = events

    async def published(self, revision: int) -> None:
        self.events.append(f"published {revision}")


@pytest.mark.parametrize(
    ("body", "changed", "expected"),
    [
        # Its process goes while the others read the state; a new one reads it after them.
        (b"x" * 64, True, ["write", "retire", "published 7", "renew"]),
        (b"x" * 64, False, ["write", "published 7"]),  # it kept its state: nothing to give up
        (b"x" * 8, True, ["write", "published 7"]),  # small: its process keeps serving
    ],
)
def test_the_writer_process_of_a_large_write_goes_before_the_state_is_published(
    monkeypatch: pytest.MonkeyPatch, body: bytes, changed: bool, expected: list[str]
) -> None:
    monkeypatch.setattr(writes, "LARGE_WRITE_BYTES", 32)
    events: list[str] = []
    service = StateService(
        _RecordingContext(events),  # type: ignore[arg-type]
        _RecordingWriter(events, changed),
    )
    write = ApplyState(body, "summary")
    asyncio.run(service.apply_state(write, actor="admin", if_match=None, progress=Progress()))
    assert events == expected


class _DevicesReadOnlyBy(Mapping[str, Mapping[str, Any]]):
    """Stored devices of which only the named ones may be read: walking them all fails."""

    def __init__(self, specs: Mapping[str, Mapping[str, Any]], readable: set[str]) -> None:
        self.specs = specs
        self.readable = readable

    def __getitem__(self, serial: str) -> Mapping[str, Any]:
        assert serial in self.readable, f"read device {serial}"
        return self.specs[serial]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("walked every device")

    def __len__(self) -> int:
        return len(self.specs)

    def __contains__(self, serial: object) -> bool:
        return serial in self.specs


def test_a_write_of_devices_checks_the_devices_it_writes_and_no_other(
    secret_key: SecretKey,
) -> None:
    """The stored state passed the reference and voucher checks when it was written; a write
    that changes only devices answers for those (at a million devices, a PUT of one used to
    read all of them, twice)."""
    stored = {f"SN-{number}": {"profile": "day0"} for number in range(1000)}
    devices = _DevicesReadOnlyBy(stored, {"SN-5", "SN-7", "SN-NEW"})
    profile = {"type": "onboarding", "signing": "optional", "owner": None}
    state: dict[str, Mapping[str, Mapping[str, Any]]] = {kind: {} for kind in KINDS}
    state |= {PROFILE: {"day0": profile}, DEVICE: devices}
    snapshot = Snapshot(1, state, secret_key)
    tools = WriteTools(secret_key, VoucherChecker(), Progress(), frozenset())
    put = PutResource(DEVICE, "SN-5", {"profile": "day0", "model": "m"})
    assert [change.action for change in put.changes(snapshot, tools)] == ["update"]
    create = PutResource(DEVICE, "SN-NEW", {"profile": "day0"})
    assert [change.action for change in create.changes(snapshot, tools)] == ["create"]
    delete = DeleteResource(DEVICE, "SN-7")
    assert [change.action for change in delete.changes(snapshot, tools)] == ["delete"]
    # What the written device breaks is still refused.
    with pytest.raises(ValidationError, match="refers to unknown profile 'nope'"):
        PutResource(DEVICE, "SN-5", {"profile": "nope"}).changes(snapshot, tools)
    # A profile's write is checked against every device.
    with pytest.raises(AssertionError, match="walked every device"):
        DeleteResource(PROFILE, "day0").changes(snapshot, tools)

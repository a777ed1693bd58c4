"""Storage layer: every case runs on SQLite, and on PostgreSQL when SZTP_TEST_POSTGRES_URL is set.

Start a throwaway PostgreSQL with
`export SZTP_TEST_POSTGRES_URL="$(tests/python/pg_cluster.sh start build/pg)"`;
each test then gets its own schema in that database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import signal
import sqlite3
import stat
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sztp.errors import SztpError
from sztp_server.store import (
    Change,
    ConflictError,
    ProgressRecord,
    Store,
    StoreError,
    TokenRecord,
    open_store,
    sqlite_path,
)
from sztp_server.store.base import decode_stored_json_texts, encode_json, report_size
from sztp_server.store.model import (
    CurrentLdevid,
    DeviceEvent,
    HeadFilter,
    IssuedCertificate,
    ReportOutcome,
    StateDelta,
)
from sztp_server.store.schema import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from sztp_server.store.sql_reads import ROW_BATCH

POSTGRES_URL_VARIABLE = "SZTP_TEST_POSTGRES_URL"
BULK_SIZE = 10_000
# Child processes start fresh interpreters: forking pytest (threads, open connections) is unsafe.
SPAWN = multiprocessing.get_context("spawn")


def postgres_base_url() -> str:
    url = os.environ.get(POSTGRES_URL_VARIABLE)
    if not url:
        pytest.skip(
            f"PostgreSQL backend not tested: set {POSTGRES_URL_VARIABLE}, e.g. "
            '"$(tests/python/pg_cluster.sh start build/pg)"'
        )
    pytest.importorskip("psycopg", reason="PostgreSQL backend needs psycopg")
    return url


def with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    base_url = postgres_base_url()
    import psycopg
    from psycopg import sql

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield with_search_path(base_url, schema)
    with psycopg.connect(base_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state/sztp.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


def raw_execute(store_url: str, statement: str) -> None:
    """Run SQL behind the store's back, to set up states the API cannot produce."""
    if store_url.startswith("sqlite:"):
        with sqlite3.connect(sqlite_path(store_url)) as connection:
            connection.execute(statement)
        return
    import psycopg

    with psycopg.connect(store_url, autocommit=True) as connection:
        connection.execute(statement)


def create(kind: str, name: str, **spec: Any) -> Change:
    return Change("create", kind, name, spec)


def report(serial: str, progress_type: str, *, at: datetime | None = None) -> ProgressRecord:
    return ProgressRecord(
        serial=serial,
        received_at=at or datetime.now(UTC),
        progress_type=progress_type,
        message=f"{progress_type} on {serial}",
        source_address="192.0.2.10",
        attempt=1,
    )


# -- resources ---------------------------------------------------------------------------


def test_create_read_update_delete(store: Store) -> None:
    assert store.revision() == 0
    revision = store.apply(
        [
            create("device", "SN-2", profile="lab"),
            create("device", "SN-1", profile="lab"),
            create("image", "os-1", os_name="dpu-os", os_version="1.0"),
        ],
        actor="alice",
    )
    assert revision == store.revision() == 1
    device = store.get("device", "SN-1")
    assert device is not None
    assert device.spec == {"profile": "lab"}
    assert device.revision == 1
    assert device.created_at.tzinfo is not None
    assert [(r.kind, r.name) for r in store.list()] == [
        ("device", "SN-1"),
        ("device", "SN-2"),
        ("image", "os-1"),
    ]
    assert [r.name for r in store.list("image")] == ["os-1"]
    assert store.list("profile") == []

    assert store.apply([Change("update", "device", "SN-1", {"profile": "prod"})], actor="a") == 2
    updated = store.get("device", "SN-1")
    assert updated is not None
    assert updated.spec == {"profile": "prod"}
    assert updated.revision == 2
    assert updated.created_at == device.created_at
    assert updated.updated_at >= device.updated_at
    untouched = store.get("device", "SN-2")
    assert untouched is not None
    assert untouched.revision == 1

    assert store.apply([Change("delete", "device", "SN-2", None)], actor="a") == 3
    assert store.get("device", "SN-2") is None
    assert store.get("nothing", "SN-2") is None


def test_spec_round_trips_nested_json(store: Store) -> None:
    spec = {"list": [1, 2.5, "x", None, True], "nested": {"é": "ü", "empty": {}}}
    store.apply([Change("create", "profile", "p", spec)], actor="a")
    stored = store.get("profile", "p")
    assert stored is not None
    assert stored.spec == spec


def test_empty_apply_returns_current_revision_without_audit(store: Store) -> None:
    store.apply([create("device", "SN-1")], actor="a")
    assert store.apply([], actor="a") == 1
    assert store.apply([], actor="a", expected_revision=1) == 1
    with pytest.raises(ConflictError):
        store.apply([], actor="a", expected_revision=0)
    assert len(store.audit()) == 1


def test_changes_apply_in_order_within_a_batch(store: Store) -> None:
    store.apply([create("device", "old", v=1)], actor="a")
    store.apply(
        [
            create("device", "new", v=1),
            Change("update", "device", "new", {"v": 2}),
            Change("delete", "device", "old", None),
            create("device", "old", v=3),
        ],
        actor="a",
    )
    assert {r.name: r.spec for r in store.list("device")} == {"new": {"v": 2}, "old": {"v": 3}}


@pytest.mark.parametrize(
    ("third_change", "message"),
    [
        (create("device", "existing"), "cannot create device/existing: it exists"),
        (Change("update", "device", "missing", {}), "cannot update device/missing"),
        (Change("delete", "device", "missing", None), "cannot delete device/missing"),
    ],
)
def test_batch_with_a_conflict_changes_nothing(
    store: Store, third_change: Change, message: str
) -> None:
    store.apply([create("device", "existing", v=1)], actor="a")
    before = store.list()
    with pytest.raises(ConflictError, match=message):
        store.apply(
            [create("device", "a"), Change("update", "device", "existing", {"v": 2}), third_change],
            actor="a",
        )
    assert store.list() == before
    assert store.revision() == 1
    assert len(store.audit()) == 1


def test_expected_revision_conflict(store: Store) -> None:
    store.apply([create("device", "SN-1")], actor="a")
    with pytest.raises(ConflictError, match="state changed: revision is 1, expected 0"):
        store.apply([create("device", "SN-2")], actor="a", expected_revision=0)
    assert store.get("device", "SN-2") is None
    assert store.apply([create("device", "SN-2")], actor="a", expected_revision=1) == 2


@pytest.mark.parametrize(
    ("changes", "audit_details", "message"),
    [
        ([Change("create", "device", "x", None)], None, "needs a spec object"),
        ([create("device", "x", when={1, 2})], None, "not JSON-serialisable"),
        ([create("device", "x", ratio=float("nan"))], None, "not JSON-serialisable"),
        ([create("device", "x")], [{}, {}], "more audit details than changes"),
        ([create("device", "x"), create("device", "y")], [{}], "fewer audit details than"),
        ([create("device", "x"), create("device", "y", when={1})], None, "spec of device/y"),
    ],
)
def test_invalid_changes_are_store_errors(
    store: Store, changes: list[Change], audit_details: Any, message: str
) -> None:
    with pytest.raises(StoreError, match=message):
        store.apply(changes, actor="a", audit_details=audit_details)
    assert store.list() == []
    assert store.revision() == 0


def test_errors_derive_from_sztp_error() -> None:
    assert issubclass(ConflictError, StoreError)
    assert issubclass(StoreError, SztpError)


def test_audit_rows_per_change(store: Store) -> None:
    store.apply(
        [create("device", "SN-1"), create("device", "SN-2")],
        actor="alice",
        audit_details=[{"fields": ["profile"]}, {}],
    )
    store.apply([Change("delete", "device", "SN-1", None)], actor="bob")
    entries = store.audit()
    assert [(e.actor, e.action, e.kind, e.name) for e in entries] == [
        ("bob", "delete", "device", "SN-1"),
        ("alice", "create", "device", "SN-2"),
        ("alice", "create", "device", "SN-1"),
    ]
    assert entries[2].detail == {"fields": ["profile"]}
    assert entries[1].detail == {}
    assert entries[0].id > entries[1].id > entries[2].id
    assert entries[0].at >= entries[2].at
    assert [e.name for e in store.audit(limit=1)] == ["SN-1"]
    assert store.audit(limit=0) == []


def test_audit_cursor_never_skips(store: Store) -> None:
    store.apply([create("device", f"SN-{i}") for i in range(7)], actor="a")
    seen: list[str] = []
    cursor = 0
    while page := store.audit(limit=3, after_id=cursor):
        assert [e.id for e in page] == sorted((e.id for e in page), reverse=True)
        seen.extend(e.name for e in reversed(page))
        cursor = page[0].id
    assert seen == [f"SN-{i}" for i in range(7)]


def test_large_batch_in_one_apply(store: Store) -> None:
    changes = [create("device", f"SN-{i:05}", profile="lab") for i in range(BULK_SIZE)]
    assert store.apply(changes, actor="bulk") == 1
    assert len(store.list("device")) == BULK_SIZE
    assert len(store.audit(limit=BULK_SIZE + 1)) == BULK_SIZE
    deletes = [Change("delete", "device", f"SN-{i:05}", None) for i in range(BULK_SIZE)]
    assert store.apply(deletes, actor="bulk", expected_revision=1) == 2
    assert store.list() == []


# -- concurrency and crash safety -----------------------------------------------------------


def increment_counter(store: Store, times: int, actor: str) -> list[int]:
    """Read-modify-write with optimistic concurrency, retrying on conflict."""
    revisions = []
    while len(revisions) < times:
        revision = store.revision()
        counter = store.get("counter", "c")
        assert counter is not None
        try:
            revisions.append(
                store.apply(
                    [Change("update", "counter", "c", {"value": counter.spec["value"] + 1})],
                    actor=actor,
                    expected_revision=revision,
                )
            )
        except ConflictError:
            continue
    return revisions


def increment_in_child(store_url: str, times: int, results: Any) -> None:
    store = open_store(store_url)
    results.put(increment_counter(store, times, actor=f"process-{os.getpid()}"))
    store.close()


def test_concurrent_threads_lose_no_update(store: Store) -> None:
    store.apply([create("counter", "c", value=0)], actor="setup")
    per_thread, threads_count = 25, 4
    revisions: list[int] = []
    failures: list[BaseException] = []

    def work(index: int) -> None:
        try:
            revisions.extend(increment_counter(store, per_thread, actor=f"thread-{index}"))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    total = per_thread * threads_count
    assert sorted(revisions) == list(range(2, total + 2))
    counter = store.get("counter", "c")
    assert counter is not None
    assert counter.spec == {"value": total}
    assert store.revision() == total + 1


def test_concurrent_processes_lose_no_update(store: Store, store_url: str) -> None:
    store.apply([create("counter", "c", value=0)], actor="setup")
    per_process = 30
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=increment_in_child, args=(store_url, per_process, results))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    revisions = [revision for _ in processes for revision in results.get(timeout=60)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    assert sorted(revisions) == list(range(2, 2 * per_process + 2))
    counter = store.get("counter", "c")
    assert counter is not None
    assert counter.spec == {"value": 2 * per_process}


def bulk_apply_in_child(store_url: str, inside_transaction: Any, pause: bool) -> None:
    store = open_store(store_url)
    if pause:
        # Every resource row is written, audit and revision are not, COMMIT has not run.
        write_changes = store._write_changes  # type: ignore[attr-defined]

        def write_then_wait(*args: Any) -> None:
            write_changes(*args)
            inside_transaction.set()
            time.sleep(120)

        store._write_changes = write_then_wait  # type: ignore[attr-defined]
    else:
        inside_transaction.set()
    store.apply([create("bulk", f"item-{i:05}") for i in range(BULK_SIZE)], actor="child")


def assert_all_or_nothing(store_url: str) -> int:
    reopened = open_store(store_url)
    try:
        count = len(reopened.list("bulk"))
        assert count in (0, BULK_SIZE)
        expected_revision = 1 if count else 0
        assert reopened.revision() == expected_revision
        assert len(reopened.audit(limit=BULK_SIZE + 1)) == count
        # The killed writer's locks are gone: the store accepts writes again.
        reopened.apply([create("device", "after-crash")], actor="test")
        return count
    finally:
        reopened.close()


def kill_child(store_url: str, *, pause: bool, delay: float) -> None:
    inside_transaction = SPAWN.Event()
    child = SPAWN.Process(target=bulk_apply_in_child, args=(store_url, inside_transaction, pause))
    child.start()
    try:
        assert inside_transaction.wait(timeout=60), "child never reached the apply"
        time.sleep(delay)
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join(timeout=60)


def test_killed_mid_apply_leaves_old_state(store_url: str) -> None:
    open_store(store_url).close()
    kill_child(store_url, pause=True, delay=0)
    assert assert_all_or_nothing(store_url) == 0


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_killed_at_any_moment_leaves_old_or_new_state(store_url: str, delay: float) -> None:
    open_store(store_url).close()
    kill_child(store_url, pause=False, delay=delay)
    assert_all_or_nothing(store_url)


# -- progress reports -----------------------------------------------------------------------


def add_devices(store: Store, *serials: str) -> None:
    store.apply([create("device", serial) for serial in serials], actor="test")


def heads(store: Store) -> dict[str, ProgressRecord]:
    """Every device's head report, by serial (a test's fleet fits in one page)."""
    return {
        item.device.name: item.head
        for item in store.device_page(after=None, limit=BULK_SIZE)
        if item.head is not None
    }


def stored_heads(store: Store) -> int:
    """How many head reports the store keeps, whether or not their device exists."""
    return sum(store.head_counts(datetime.now(UTC)).heads.values())


def without_ids(records: list[ProgressRecord]) -> list[ProgressRecord]:
    return [dataclasses.replace(record, id=0) for record in records]


def test_report_fields_round_trip(store: Store) -> None:
    add_devices(store, "SN-1")
    record = ProgressRecord(
        serial="SN-1",
        received_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        progress_type="bootstrap-complete",
        message=None,
        source_address=None,
        attempt=3,
        ssh_host_keys=(("ssh-ed25519", "AAAAC3Nza"), ("ecdsa-sha2-nistp256", "AAAAE2Vj")),
        trust_anchor_certs=("MIIB", "MIIC"),
        truncated=True,
    )
    assert store.add_report(record) is ReportOutcome.STORED
    (stored,) = store.reports("SN-1")
    assert stored.id > 0
    assert without_ids([stored]) == [record]
    assert heads(store) == {"SN-1": stored}


def test_reports_are_bounded_per_device(store: Store) -> None:
    add_devices(store, "SN-A", "SN-B")
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(12):
        store.add_report(
            report("SN-A", f"step-{i}", at=start + timedelta(seconds=i)), keep_per_device=5
        )
    for i in range(3):
        store.add_report(report("SN-B", f"step-{i}"), keep_per_device=5)
    assert [r.progress_type for r in store.reports("SN-A")] == [f"step-{i}" for i in range(7, 12)]
    assert [r.progress_type for r in store.reports("SN-A", limit=2)] == ["step-10", "step-11"]
    assert len(store.reports("SN-B")) == 3
    # A smaller bound later trims the backlog in one go.
    store.add_report(report("SN-A", "step-12"), keep_per_device=2)
    assert [r.progress_type for r in store.reports("SN-A")] == ["step-11", "step-12"]
    latest = heads(store)
    assert latest["SN-A"].progress_type == "step-12"
    assert latest["SN-B"].progress_type == "step-2"

    store.delete_reports("SN-A")
    assert store.reports("SN-A") == []
    assert store.report_summary("SN-A") is None
    assert set(heads(store)) == {"SN-B"} and stored_heads(store) == 1
    store.add_report(report("SN-A", "again"), keep_per_device=2)
    assert [r.progress_type for r in store.reports("SN-A")] == ["again"]
    with pytest.raises(StoreError, match="keep_per_device"):
        store.add_report(report("SN-A", "x"), keep_per_device=0)
    with pytest.raises(StoreError, match="bytes_per_device"):
        store.add_report(report("SN-A", "x"), bytes_per_device=0)


def test_report_summary_counts_what_pruning_kept(store: Store) -> None:
    add_devices(store, "SN-A")
    for i in range(12):
        store.add_report(report("SN-A", f"step-{i}"), keep_per_device=5)
    summary = store.report_summary("SN-A")
    assert summary is not None
    assert summary.latest.progress_type == "step-11"
    assert summary.report_count == 5
    assert summary.report_bytes == sum(map(report_size, store.reports("SN-A")))


def test_late_reports_join_the_history_but_never_push_out_the_deciding_one(store: Store) -> None:
    add_devices(store, "SN-A")
    store.add_report(report("SN-A", "bootstrap-complete"), keep_per_device=3)
    for i in range(6):
        store.add_report(report("SN-A", f"late-{i}"), keep_per_device=3, decides_status=False)
    summary = store.report_summary("SN-A")
    assert summary is not None
    assert summary.latest.progress_type == "bootstrap-complete"
    assert heads(store)["SN-A"].progress_type == "bootstrap-complete"
    kept = [r.progress_type for r in store.reports("SN-A")]
    assert kept == ["bootstrap-complete", "late-4", "late-5"]  # within the bound
    assert summary.report_count == len(kept)
    store.add_report(report("SN-A", "bootstrap-initiated"), keep_per_device=3)
    assert heads(store)["SN-A"].progress_type == "bootstrap-initiated"
    assert [r.progress_type for r in store.reports("SN-A")] == [
        "late-4",
        "late-5",
        "bootstrap-initiated",
    ]


def test_a_report_flood_stays_within_the_byte_budget(store: Store) -> None:
    add_devices(store, "SN-A", "SN-B")
    store.add_report(report("SN-B", "bootstrap-initiated"), bytes_per_device=10_000)
    flood = [
        dataclasses.replace(report("SN-A", "informational"), message=f"{i:04}" + "x" * 996)
        for i in range(50)
    ]
    for record in flood:
        store.add_report(record, keep_per_device=1000, bytes_per_device=10_000)
    kept = store.reports("SN-A")
    summary = store.report_summary("SN-A")
    assert summary is not None
    assert summary.report_bytes == sum(map(report_size, kept)) == 10_000
    # The newest reports stay, oldest first; the other device keeps its report.
    assert without_ids(kept) == flood[-10:]
    assert len(store.reports("SN-B")) == 1
    # A report larger than the whole budget still replaces the history: the newest stays.
    huge = dataclasses.replace(report("SN-A", "bootstrap-error"), message="y" * 20_000)
    store.add_report(huge, bytes_per_device=10_000)
    assert without_ids(store.reports("SN-A")) == [huge]


def test_report_pages_hold_every_report_once(store: Store) -> None:
    add_devices(store, "SN-A", "SN-B")
    for i in range(25):
        store.add_report(report("SN-A", f"step-{i}"))
        store.add_report(report("SN-B", f"other-{i}"))
    pages: list[list[ProgressRecord]] = []
    before = None
    while True:
        page = store.reports("SN-A", limit=10, before_id=before)
        if not page:
            break
        pages.insert(0, page)
        before = page[0].id
    assert [len(page) for page in pages] == [5, 10, 10]
    paged = [record.progress_type for page in pages for record in page]
    assert paged == [f"step-{i}" for i in range(25)]


def test_deleting_a_device_deletes_its_reports(store: Store) -> None:
    add_devices(store, "SN-A", "SN-B")
    for serial in ("SN-A", "SN-B"):
        store.add_report(report(serial, "bootstrap-initiated"))
        store.add_report(report(serial, "bootstrap-complete"))
    store.apply([Change("delete", "device", "SN-A", None)], actor="test")
    assert store.reports("SN-A") == []
    assert store.report_summary("SN-A") is None
    assert set(heads(store)) == {"SN-B"} and stored_heads(store) == 1
    # A report from a device deleted after it authenticated is not stored.
    assert store.add_report(report("SN-A", "informational")) is ReportOutcome.NO_DEVICE
    add_devices(store, "SN-A")
    assert store.reports("SN-A") == []
    assert store.report_summary("SN-A") is None
    assert len(store.reports("SN-B")) == 2
    # Delete and re-create in one batch: the new device starts without history too.
    store.add_report(report("SN-A", "bootstrap-initiated"))
    store.apply([Change("delete", "device", "SN-A", None), create("device", "SN-A")], actor="test")
    assert store.reports("SN-A") == []


def test_a_report_sent_again_is_stored_once(store: Store) -> None:
    """Equal to the device's newest report and within the window: answered, not stored again;
    anything else that looks alike is a report of its own."""
    add_devices(store, "SN-1", "SN-2")
    window = timedelta(seconds=60)
    start = datetime.now(UTC)

    def send(record: ProgressRecord, seconds: float) -> ReportOutcome:
        sent = dataclasses.replace(record, received_at=start + timedelta(seconds=seconds))
        return store.add_report(sent, repeat_window=window)

    first = dataclasses.replace(
        report("SN-1", "bootstrap-initiated"),
        message="starting",
        ssh_host_keys=(("ssh-ed25519", "AAAA"),),
        trust_anchor_certs=("MIIB",),
    )
    assert send(first, 0) is ReportOutcome.STORED
    # The server's own fields (address, attempt) do not make a report new.
    again = dataclasses.replace(first, source_address="198.51.100.7", attempt=2)
    assert send(again, 5) is ReportOutcome.REPEATED
    assert send(first, 60) is ReportOutcome.REPEATED  # the window's last moment
    summary = store.report_summary("SN-1")
    assert summary is not None and summary.report_count == 1
    assert send(first, 61) is ReportOutcome.STORED  # past the window of the newest
    for changed in (
        dataclasses.replace(first, message="starting again"),
        dataclasses.replace(first, message=None),
        dataclasses.replace(first, ssh_host_keys=(("ssh-ed25519", "AAAB"),)),
        dataclasses.replace(first, trust_anchor_certs=()),
        dataclasses.replace(first, truncated=True),
        dataclasses.replace(first, progress_type="bootstrap-error"),
    ):
        assert send(changed, 62) is ReportOutcome.STORED, changed
    # A message-less report repeated (NULL equals NULL here) and a device starting over after
    # another report.
    assert send(dataclasses.replace(first, progress_type="bootstrap-error"), 63) is (
        ReportOutcome.REPEATED
    )
    assert send(first, 64) is ReportOutcome.STORED
    # Another device's equal report is its own, and without a window every copy is kept.
    assert send(dataclasses.replace(first, serial="SN-2"), 65) is ReportOutcome.STORED
    assert store.add_report(first) is ReportOutcome.STORED
    kept = [(record.progress_type, record.message) for record in store.reports("SN-1")]
    assert kept == [
        ("bootstrap-initiated", "starting"),
        ("bootstrap-initiated", "starting"),
        ("bootstrap-initiated", "starting again"),
        ("bootstrap-initiated", None),
        ("bootstrap-initiated", "starting"),
        ("bootstrap-initiated", "starting"),
        ("bootstrap-initiated", "starting"),
        ("bootstrap-error", "starting"),
        ("bootstrap-initiated", "starting"),
        ("bootstrap-initiated", "starting"),
    ]
    summary = store.report_summary("SN-1")
    assert summary is not None and summary.report_count == len(kept)


def test_postgres_a_report_sent_to_two_instances_at_once_is_stored_once(
    postgres_url: str,
) -> None:
    """The copy that commits second waits for the device's head row and then sees the first."""
    import psycopg

    stores = [open_store(postgres_url) for _ in range(2)]
    outcomes: list[ReportOutcome] = []
    try:
        stores[0].apply([create("device", "SN-1")], actor="a")
        stores[0].add_report(report("SN-1", "bootstrap-initiated"))
        copy = report("SN-1", "informational")
        with psycopg.connect(postgres_url) as holder:
            holder.execute("SELECT 1 FROM report_heads WHERE serial = 'SN-1' FOR UPDATE")
            reporters = [
                threading.Thread(
                    target=lambda opened=opened: outcomes.append(
                        opened.add_report(copy, repeat_window=timedelta(seconds=60))
                    ),
                    daemon=True,
                )
                for opened in stores
            ]
            for reporter in reporters:
                reporter.start()
            deadline = time.monotonic() + 30
            while lock_waiters(postgres_url) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert lock_waiters(postgres_url) == 2, "the copies did not wait for the head row"
            holder.commit()
        for reporter in reporters:
            reporter.join(timeout=30)
        assert sorted(outcomes) == [ReportOutcome.REPEATED, ReportOutcome.STORED]
        stored = [record.progress_type for record in stores[1].reports("SN-1")]
        assert stored == ["bootstrap-initiated", "informational"]
    finally:
        for opened in stores:
            opened.close()


def test_postgres_the_copy_with_the_lower_id_committing_second_sees_the_first(
    postgres_url: str,
) -> None:
    """Instance A inserted its copy first (the lower id) and stalled; B's copy took a higher
    id and committed. A's check must find B's copy although its id is higher than A's own."""
    import psycopg

    from sztp_server.store import postgres
    from sztp_server.store.base import repeat_values, report_values

    opened = open_store(postgres_url)
    try:
        opened.apply([create("device", "SN-1")], actor="a")
        opened.add_report(report("SN-1", "bootstrap-initiated"))
        copy = report("SN-1", "informational")
        values = report_values(copy, copy.received_at)
        with psycopg.connect(postgres_url) as instance_a:
            (lower_id,) = instance_a.execute(
                "INSERT INTO reports (serial, received_at, progress_type, message, "
                "source_address, attempt, ssh_host_keys, trust_anchor_certs, truncated, "
                "size_bytes) VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s) "
                "RETURNING id",
                values,
            ).fetchone()
            assert opened.add_report(copy, repeat_window=timedelta(seconds=60)) is (
                ReportOutcome.STORED
            )
            found = instance_a.execute(
                postgres._REPEATED_REPORT,
                (
                    "SN-1",
                    lower_id,
                    copy.received_at - timedelta(seconds=60),
                    *repeat_values(values),
                ),
            ).fetchone()
            instance_a.rollback()
        assert found is not None
    finally:
        opened.close()


def test_postgres_report_racing_its_device_delete_is_not_kept(postgres_url: str) -> None:
    """A report that arrives while another instance deletes the device waits for the delete,
    then finds no device: nothing is left for a device re-created under the serial."""
    import psycopg

    opened = open_store(postgres_url)
    outcome: list[ReportOutcome] = []
    try:
        opened.apply([create("device", "SN-1")], actor="a")
        with psycopg.connect(postgres_url) as deleter:
            deleter.execute("DELETE FROM resources WHERE kind = 'device' AND name = 'SN-1'")
            reporter = threading.Thread(
                target=lambda: outcome.append(opened.add_report(report("SN-1", "informational"))),
                daemon=True,
            )
            reporter.start()
            deadline = time.monotonic() + 30
            while not lock_waiters(postgres_url) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert lock_waiters(postgres_url), "the report did not wait for the delete"
            deleter.commit()
        reporter.join(timeout=30)
        assert outcome == [ReportOutcome.NO_DEVICE]
        assert opened.reports("SN-1") == []
    finally:
        opened.close()


def test_sqlite_reports_live_in_a_file_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "sztp.db"
    opened = open_store(f"sqlite://{path}")
    try:
        add_devices(opened, "SN-1")
        assert opened.add_report(report("SN-1", "bootstrap-initiated")) is ReportOutcome.STORED
    finally:
        opened.close()
    reports_file = tmp_path / "sztp-reports.db"
    assert stat.S_IMODE(reports_file.stat().st_mode) == 0o600
    with contextlib.closing(sqlite3.connect(path)) as state:
        tables = {name for (name,) in state.execute("SELECT name FROM sqlite_master")}
    assert "resources" in tables and not tables & {"reports", "report_heads"}
    with contextlib.closing(sqlite3.connect(reports_file)) as reports:
        assert reports.execute("SELECT serial, progress_type FROM reports").fetchall() == [
            ("SN-1", "bootstrap-initiated")
        ]


def test_sqlite_report_is_stored_while_the_state_file_is_locked(tmp_path: Path) -> None:
    """What a bulk apply in another process holds does not hold up a device's report."""
    path = tmp_path / "sztp.db"
    opened = open_store(f"sqlite://{path}")
    outcome: list[ReportOutcome] = []
    try:
        add_devices(opened, "SN-1")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as holder:
            holder.execute("BEGIN IMMEDIATE")
            reporter = threading.Thread(
                target=lambda: outcome.append(opened.add_report(report("SN-1", "informational")))
            )
            reporter.start()
            reporter.join(timeout=5)
            assert outcome == [ReportOutcome.STORED], "the report waited for the state file's lock"
            holder.execute("ROLLBACK")
        assert [record.progress_type for record in opened.reports("SN-1")] == ["informational"]
    finally:
        opened.close()


def test_reports_racing_device_deletes_are_never_kept(store: Store) -> None:
    """Reports sent back to back while the device is deleted and re-created: right after each
    delete, and in the re-created device's history, no report of the deleted one is left."""
    add_devices(store, "SN-1")
    stop = threading.Event()
    stored: list[ReportOutcome] = []

    def report_until_stopped() -> None:
        while not stop.is_set():
            stored.append(store.add_report(report("SN-1", "informational")))

    reporter = threading.Thread(target=report_until_stopped)
    reporter.start()
    try:
        for _ in range(20):
            time.sleep(0.01)
            store.apply([Change("delete", "device", "SN-1", None)], actor="test")
            assert store.reports("SN-1") == []
            assert store.report_summary("SN-1") is None
            add_devices(store, "SN-1")
    finally:
        stop.set()
        reporter.join(timeout=30)
    # The race was run, both ways.
    assert {ReportOutcome.STORED, ReportOutcome.NO_DEVICE} <= set(stored)
    summary = store.report_summary("SN-1")
    assert summary is None or summary.report_count == len(store.reports("SN-1"))


def test_sqlite_open_drops_reports_a_crash_left_behind(tmp_path: Path) -> None:
    """A crash between the commits of the two files can leave a deleted device's reports."""
    path = tmp_path / "sztp.db"
    opened = open_store(f"sqlite://{path}")
    add_devices(opened, "SN-KEPT", "SN-GONE")
    opened.add_report(report("SN-KEPT", "bootstrap-initiated"))
    opened.add_report(report("SN-GONE", "bootstrap-initiated"))
    opened.close()
    with contextlib.closing(sqlite3.connect(path)) as state, state:
        state.execute("DELETE FROM resources WHERE name = 'SN-GONE'")
    reopened = open_store(f"sqlite://{path}")
    try:
        assert set(heads(reopened)) == {"SN-KEPT"} and stored_heads(reopened) == 1
        assert reopened.reports("SN-GONE") == []
    finally:
        reopened.close()


def lock_waiters(postgres_url: str) -> int:
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_schema_upgrade_drops_reports_of_deleted_devices(store_url: str) -> None:
    """A version 1 database still holds the reports of devices deleted before the upgrade."""
    migrations = POSTGRES_MIGRATIONS
    if store_url.startswith("sqlite:"):
        migrations = SQLITE_MIGRATIONS
        sqlite_path(store_url).parent.mkdir()
    version_1 = [
        *migrations[0].statements,
        "CREATE TABLE schema_version (id INTEGER PRIMARY KEY, version INTEGER NOT NULL)",
        "INSERT INTO schema_version (id, version) VALUES (1, 1)",
        "INSERT INTO resources (kind, name, spec, revision, created_at, updated_at) VALUES "
        "('device', 'SN-KEPT', '{}', 1, '2024-01-01T00:00:00+00:00', '2024-01-01T00:00:00+00:00')",
        "INSERT INTO reports (serial, received_at, progress_type, message, source_address, "
        "attempt, ssh_host_keys, trust_anchor_certs) VALUES "
        "('SN-GONE', '2024-01-01T00:00:00+00:00', 'bootstrap-initiated', 'twelve bytes', NULL, "
        "1, '[]', '[]'), "
        "('SN-KEPT', '2024-01-01T00:00:00+00:00', 'bootstrap-initiated', 'twelve bytes', NULL, "
        "1, '[]', '[]')",
        "INSERT INTO report_heads (serial, latest_id, report_count) "
        "SELECT serial, id, 1 FROM reports",
    ]
    for statement in version_1:
        raw_execute(store_url, statement)
    upgraded = open_store(store_url)
    try:
        assert set(heads(upgraded)) == {"SN-KEPT"} and stored_heads(upgraded) == 1
        assert upgraded.reports("SN-GONE") == []
        upgraded.apply([create("device", "SN-GONE")], actor="test")
        assert upgraded.reports("SN-GONE") == []
        summary = upgraded.report_summary("SN-KEPT")
        assert summary is not None and summary.report_count == 1
        # Backfilled from the stored text: the message and the two empty JSON lists.
        assert summary.report_bytes == len("twelve bytes") + 4
        assert summary.latest.truncated is False
    finally:
        upgraded.close()


def test_device_pages_walk_the_fleet_in_name_order_with_heads(store: Store) -> None:
    # Names whose byte order differs from a locale's: the order is Python's, on both backends.
    names = [f"SN-{i:04}" for i in range(1000)] + ["sn-lower", "SN_under", "SN-ä", "SN-Z"]
    store.apply(
        [
            create("device", name, profile="even" if i % 2 else "odd")
            for i, name in enumerate(names)
        ],
        actor="test",
    )
    for i in range(1000):
        store.add_report(report(f"SN-{i:04}", "bootstrap-initiated"))
    for i in range(0, 1000, 2):
        store.add_report(report(f"SN-{i:04}", "bootstrap-complete"))
    listed: list[str] = []
    while page := store.device_page(after=listed[-1] if listed else None, limit=300):
        assert len(page) <= 300
        listed += [item.device.name for item in page]
    assert listed == sorted(names)
    latest = heads(store)
    assert len(latest) == 1000
    assert latest["SN-0000"].progress_type == "bootstrap-complete"
    assert latest["SN-0001"].progress_type == "bootstrap-initiated"
    assert all(serial == record.serial for serial, record in latest.items())

    evens = store.device_page(after="SN-0500", limit=3, spec_equals={"profile": "even"})
    assert [item.device.name for item in evens] == ["SN-0501", "SN-0503", "SN-0505"]
    assert store.device_page(after=None, limit=5, spec_equals={"model": "none"}) == []
    with pytest.raises(StoreError, match="password_hash"):
        store.device_page(after=None, limit=1, spec_equals={"password_hash": "x"})


def test_device_pages_and_counts_by_head_report(store: Store) -> None:
    add_devices(store, "SN-A", "SN-B", "SN-C", "SN-D")
    now = datetime.now(UTC)
    cutoff = now - timedelta(hours=1)
    store.add_report(report("SN-A", "bootstrap-initiated", at=cutoff - timedelta(minutes=1)))
    store.add_report(report("SN-B", "bootstrap-initiated", at=cutoff))  # at the cutoff: recent
    store.add_report(report("SN-C", "config-error", at=now - timedelta(minutes=5)))
    store.add_report(report("SN-C", "bootstrap-initiated", at=now - timedelta(minutes=4)))
    store.add_report(report("SN-C", "config-error", at=now))

    def chosen(**heads: Any) -> list[str]:
        found = store.device_page(after=None, limit=10, heads=HeadFilter(**heads))
        return [item.device.name for item in found]

    nothing: frozenset[str] = frozenset()
    initiated = frozenset({"bootstrap-initiated"})
    kinds = {"recent_types": nothing, "stale_types": nothing, "stale_before": cutoff}
    assert chosen(**{**kinds, "unreported": True}) == ["SN-D"]
    assert chosen(**{**kinds, "unreported": False, "stale_types": initiated}) == ["SN-A"]
    assert chosen(**{**kinds, "unreported": False, "recent_types": initiated}) == ["SN-B"]
    assert chosen(**{**kinds, "unreported": False}) == []
    errors = HeadFilter(False, frozenset({"config-error"}), frozenset({"config-error"}), cutoff)
    (newest,) = store.head_reports(errors, limit=5)
    assert (newest.serial, newest.received_at) == ("SN-C", now)
    counts = store.head_counts(cutoff)
    assert counts.devices == 4
    assert counts.heads == {
        ("bootstrap-initiated", True): 1,
        ("bootstrap-initiated", False): 1,
        ("config-error", False): 1,
    }


def test_devices_are_found_and_counted_by_site(store: Store) -> None:
    store.apply(
        [
            create("device", "SN-A", site="fra1", model="DPU-1"),
            create("device", "SN-B", site="fra1", model="DPU-2"),
            create("device", "SN-C", site="ams2", model="DPU-1"),
            create("device", "SN-D", model="DPU-1"),
        ],
        actor="test",
    )
    now = datetime.now(UTC)
    store.add_report(report("SN-A", "bootstrap-complete", at=now))
    store.add_report(report("SN-C", "config-error", at=now))
    found = store.device_page(after=None, limit=10, spec_equals={"site": "fra1"})
    assert [item.device.name for item in found] == ["SN-A", "SN-B"]
    both = store.device_page(after=None, limit=10, spec_equals={"site": "fra1", "model": "DPU-1"})
    assert [item.device.name for item in both] == ["SN-A"]
    by = store.head_counts_by(["site", "model"], now - timedelta(hours=1))
    assert by["model"] == {
        "DPU-1": {("bootstrap-complete", False): 1, ("config-error", False): 1, (None, False): 1},
        "DPU-2": {(None, False): 1},
    }
    assert by["site"] == {
        "fra1": {("bootstrap-complete", False): 1, (None, False): 1},
        "ams2": {("config-error", False): 1},
        None: {(None, False): 1},
    }


# -- tokens ---------------------------------------------------------------------------------


def test_tokens(store: Store) -> None:
    now = datetime.now(UTC)
    admin = TokenRecord("ci", "hash-1", "admin", now)
    reader = TokenRecord("dashboard", "hash-2", "read-only", now)
    store.add_token(reader, actor="setup")
    store.add_token(admin, actor="setup")
    with pytest.raises(ConflictError, match="token 'ci' already exists"):
        store.add_token(TokenRecord("ci", "hash-3", "admin", now), actor="setup")
    with pytest.raises(ConflictError, match="same secret"):
        store.add_token(TokenRecord("other", "hash-1", "admin", now), actor="setup")
    assert store.find_token("hash-1") == admin
    assert store.find_token("hash-3") is None
    assert store.tokens() == [admin, reader]
    assert store.delete_token("ci", actor="ops") is True
    assert store.delete_token("ci", actor="ops") is False
    assert store.find_token("hash-1") is None


def test_token_changes_are_audited_without_secrets(store: Store) -> None:
    now = datetime.now(UTC)
    store.add_token(TokenRecord("ci", "hash-of-ci", "admin", now), actor="setup")
    with pytest.raises(ConflictError):
        store.add_token(TokenRecord("ci", "hash-other", "admin", now), actor="setup")
    assert store.delete_token("ci", actor="ops") is True
    assert store.delete_token("ci", actor="ops") is False
    entries = store.audit()
    assert [(e.actor, e.action, e.kind, e.name, e.detail) for e in entries] == [
        ("ops", "delete", "token", "ci", {"role": "admin"}),
        ("setup", "create", "token", "ci", {"role": "admin"}),
    ]
    assert "hash-of-ci" not in repr(entries)
    assert store.revision() == 0  # tokens are not part of the admin state


# -- audit size and retention -------------------------------------------------------------------


def test_large_audit_strings_are_stored_as_digest_and_size(store: Store) -> None:
    script = "#!/bin/sh\n" + "echo configuring\n" * 200  # 3.4 KB
    small = "#!/bin/sh\ntrue\n"
    store.apply(
        [create("profile", "lab")],
        actor="alice",
        audit_details=[
            {
                "after": {
                    "post_configuration_script": script,
                    "pre_configuration_script": small,
                    "bootstrap_servers": [{"address": "a", "trust_anchor": "é" * 600}],
                }
            }
        ],
    )
    (entry,) = store.audit()
    after = entry.detail["after"]
    assert after["post_configuration_script"] == {
        "sha256": hashlib.sha256(script.encode()).hexdigest(),
        "size": len(script.encode()),
    }
    assert after["pre_configuration_script"] == small
    nested = after["bootstrap_servers"][0]
    assert nested["address"] == "a"
    assert nested["trust_anchor"]["size"] == 1200  # UTF-8 bytes, not characters
    assert "echo configuring" not in repr(entry)


def audit_times(store: Store) -> list[str]:
    return [entry.name for entry in store.audit(limit=1000)]


def test_prune_audit_removes_only_older_entries(store: Store, store_url: str) -> None:
    store.apply([create("device", f"SN-{i}") for i in range(4)], actor="a")
    raw_execute(store_url, "UPDATE audit SET at = '2000-01-01T00:00:00.000000+00:00'")
    raw_execute(
        store_url, "UPDATE audit SET at = '2020-01-01T00:00:00.000000+00:00' WHERE name = 'SN-3'"
    )
    store.apply([create("device", "SN-new")], actor="a")
    cutoff = datetime(2010, 1, 1, tzinfo=UTC)
    assert store.prune_audit(cutoff, dry_run=True) == 3
    assert sorted(audit_times(store)) == ["SN-0", "SN-1", "SN-2", "SN-3", "SN-new"]
    assert store.prune_audit(cutoff) == 3  # the server's own retention: no entry of its own
    assert sorted(audit_times(store)) == ["SN-3", "SN-new"]
    assert store.prune_audit(cutoff, dry_run=True) == 0
    assert store.prune_audit(datetime(2025, 1, 1, tzinfo=UTC), actor="ops") == 1
    entries = store.audit()
    assert [(e.actor, e.action, e.kind, e.name) for e in entries] == [
        ("ops", "prune", "audit", "2025-01-01T00:00:00Z"),
        ("a", "create", "device", "SN-new"),
    ]
    assert entries[0].detail == {"before": "2025-01-01T00:00:00Z", "entries": 1}


def test_prune_audit_works_in_batches(
    store: Store, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = sys.modules[type(store).__module__]
    monkeypatch.setattr(backend, "AUDIT_PRUNE_BATCH", 4)
    store.apply([create("device", f"SN-{i}") for i in range(10)], actor="a")
    raw_execute(store_url, "UPDATE audit SET at = '2000-01-01T00:00:00.000000+00:00'")
    store.apply([create("device", "SN-kept")], actor="a")
    assert store.prune_audit(datetime(2001, 1, 1, tzinfo=UTC)) == 10
    assert audit_times(store) == ["SN-kept"]


def prune_in_child(store_url: str, before: datetime, results: Any) -> None:
    store = open_store(store_url)
    try:
        results.put(store.prune_audit(before))
    finally:
        store.close()


def test_instances_pruning_at_once_remove_each_entry_once(store: Store, store_url: str) -> None:
    store.apply([create("device", f"SN-{i:05}") for i in range(BULK_SIZE)], actor="a")
    raw_execute(store_url, "UPDATE audit SET at = '2000-01-01T00:00:00.000000+00:00'")
    store.apply([create("device", "SN-kept")], actor="a")
    results = SPAWN.Queue()
    children = [
        SPAWN.Process(
            target=prune_in_child, args=(store_url, datetime(2001, 1, 1, tzinfo=UTC), results)
        )
        for _ in range(2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
        assert child.exitcode == 0
    assert results.get(timeout=10) + results.get(timeout=10) == BULK_SIZE
    assert audit_times(store) == ["SN-kept"]


def admin_tokens(store: Store) -> list[str]:
    return [token.name for token in store.tokens() if token.role == "admin"]


def test_the_last_token_of_a_role_is_kept(store: Store) -> None:
    now = datetime.now(UTC)
    for name, role in (("a", "admin"), ("b", "admin"), ("viewer", "read-only")):
        store.add_token(TokenRecord(name, f"hash-{name}", role, now), actor="test")
    assert store.delete_token("viewer", actor="test", keep_one_of_role="admin") is True
    assert store.delete_token("a", actor="test", keep_one_of_role="admin") is True
    with pytest.raises(ConflictError, match="token 'b' is the last admin token"):
        store.delete_token("b", actor="test", keep_one_of_role="admin")
    assert admin_tokens(store) == ["b"]
    assert store.delete_token("gone", actor="test", keep_one_of_role="admin") is False
    assert store.delete_token("b", actor="test") is True  # without the guard, as asked


def test_instances_deleting_the_last_two_admin_tokens_keep_one(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances (stores with their own connections) delete the two admin tokens at once.

    The first pauses inside its transaction right after its check; the second must then wait
    for it and refuse, not check the state the first is about to change and delete as well.
    """
    first, second = open_store(store_url), open_store(store_url)
    now = datetime.now(UTC)
    first.add_token(TokenRecord("a", "hash-a", "admin", now), actor="test")
    first.add_token(TokenRecord("b", "hash-b", "admin", now), actor="test")
    backend = sys.modules[type(first).__module__]
    checked, release = threading.Event(), threading.Event()
    check = backend.check_not_last_of_role

    def check_then_pause(*args: Any) -> None:
        check(*args)
        if not checked.is_set():
            checked.set()
            release.wait(timeout=60)

    monkeypatch.setattr(backend, "check_not_last_of_role", check_then_pause)
    outcomes: dict[str, object] = {}

    def delete(store: Store, name: str) -> None:
        try:
            outcomes[name] = store.delete_token(name, actor=name, keep_one_of_role="admin")
        except ConflictError as exc:
            outcomes[name] = exc

    racers = [
        threading.Thread(target=delete, args=(first, "a")),
        threading.Thread(target=delete, args=(second, "b")),
    ]
    try:
        racers[0].start()
        assert checked.wait(timeout=60), "the first delete never reached its check"
        racers[1].start()
        # The second delete is blocked on the first one's lock; give it time to go wrong if
        # it is not (the outcome asserted below does not depend on this wait).
        racers[1].join(timeout=1)
        release.set()
        for racer in racers:
            racer.join(timeout=60)
        assert outcomes["a"] is True
        assert isinstance(outcomes["b"], ConflictError)
        assert admin_tokens(second) == ["b"]
    finally:
        release.set()
        first.close()
        second.close()


# -- opening, schema, URLs --------------------------------------------------------------------


def test_reopen_keeps_state(store_url: str) -> None:
    first = open_store(store_url)
    first.apply([create("device", "SN-1")], actor="a")
    first.add_token(TokenRecord("t", "h", "admin", datetime.now(UTC)), actor="setup")
    first.close()
    second = open_store(store_url)
    assert second.revision() == 1
    assert [r.name for r in second.list()] == ["SN-1"]
    assert [t.name for t in second.tokens()] == ["t"]
    second.close()


def test_newer_schema_version_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    raw_execute(store_url, "UPDATE schema_version SET version = 99")
    with pytest.raises(
        StoreError,
        match=rf"database schema version 99 is newer than this server supports "
        rf"\({SQLITE_MIGRATIONS[-1].version}\)",
    ):
        open_store(store_url)


def test_closed_store_refuses_calls(store_url: str) -> None:
    opened = open_store(store_url)
    opened.close()
    with pytest.raises(StoreError, match="closed"):
        opened.revision()


def test_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "sztp.db"
    opened = open_store(f"sqlite://{path}")
    opened.apply([create("device", "SN-1")], actor="a")
    for file in path.parent.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    opened.close()


def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sqlite_path("sqlite:///var/lib/sztp/sztp.db") == Path("/var/lib/sztp/sztp.db")
    assert sqlite_path("sqlite:///tmp/with%20space.db") == Path("/tmp/with space.db")
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///./state/x.db") == tmp_path / "state" / "x.db"
    open_store("sqlite:///./state/x.db").close()
    assert (tmp_path / "state" / "x.db").exists()
    for bad in ("sqlite://host/x.db", "sqlite:x.db", "sqlite:///x.db?mode=ro", "sqlite:///"):
        with pytest.raises(StoreError, match="malformed SQLite URL"):
            sqlite_path(bad)


def test_sqlite_cannot_create_is_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot create database"):
        open_store(f"sqlite://{blocker}/sztp.db")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://admin:hunter2@db/sztp", "unsupported store URL scheme 'mysql'"),
        ("admin:hunter2@db/sztp", "unsupported store URL scheme 'admin'"),
        ("hunter2@db:5432/sztp", "store URL has no scheme"),
        ("/var/lib/sztp.db", "store URL has no scheme"),
    ],
)
def test_bad_store_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        open_store(url)
    assert "hunter2" not in str(caught.value)


def test_unreachable_postgres_hides_password(tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql://admin:hunter2@/sztp?host={tmp_path}&port=1&connect_timeout=2"
    with pytest.raises(StoreError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "hunter2" not in message
    assert "admin:***@" in message
    assert "\n" not in message


def idle_backend_pid(store: Store) -> int:
    """The server process of the one idle connection of a PostgreSQL store (pool size 1)."""
    (connection,) = store._pool._idle  # type: ignore[attr-defined]
    return int(connection.info.backend_pid)


def test_postgres_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    opened = open_store(postgres_url)
    backend_pid = idle_backend_pid(opened)
    raw_execute(postgres_url, f"SELECT pg_terminate_backend({backend_pid})")
    with pytest.raises(StoreError, match="PostgreSQL"):
        opened.revision()
    assert opened.apply([create("device", "SN-1")], actor="a") == 1
    opened.close()


def apply_in_thread(store: Store) -> list[BaseException | int]:
    """Run one apply in a thread; its outcome, or nothing if it is still blocked after 30 s."""
    outcome: list[BaseException | int] = []

    def write() -> None:
        try:
            outcome.append(store.apply([create("device", "SN-1")], actor="a"))
        except StoreError as exc:
            outcome.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    writer.join(timeout=30)
    return outcome


def test_postgres_statement_timeout_holds_on_every_connection(postgres_url: str) -> None:
    """A write stuck behind another instance's lock fails with StoreError instead of hanging,
    on the first connection and on the one that replaces it."""
    import psycopg

    opened = open_store(postgres_url, statement_timeout=0.2)
    try:
        with psycopg.connect(postgres_url) as holder:
            holder.execute("SELECT revision FROM store_state WHERE id = 1 FOR UPDATE")
            for _connection in ("first", "replacement"):
                outcome = apply_in_thread(opened)
                assert outcome, "the write waited for the lock with no statement timeout"
                assert isinstance(outcome[0], StoreError)
                assert "statement timeout" in str(outcome[0])
                backend_pid = idle_backend_pid(opened)
                raw_execute(postgres_url, f"SELECT pg_terminate_backend({backend_pid})")
                with pytest.raises(StoreError, match="PostgreSQL"):
                    opened.revision()
            holder.rollback()
        assert opened.apply([create("device", "SN-1")], actor="a") == 1
    finally:
        opened.close()


def test_postgres_connections_end_idle_transactions(postgres_url: str) -> None:
    """Every pooled connection carries both timeouts, so neither a stuck statement nor an
    abandoned transaction keeps its locks."""
    opened = open_store(postgres_url, statement_timeout=0.25)
    try:
        with opened._reading() as connection:  # type: ignore[attr-defined]
            settings = [
                connection.execute(f"SHOW {name}").fetchone()[0]
                for name in ("statement_timeout", "idle_in_transaction_session_timeout")
            ]
        assert settings == ["250ms", "250ms"]
    finally:
        opened.close()


@contextlib.contextmanager
def _apply_behind_a_row_lock(opened: Store, url: str) -> Iterator[Any]:
    """An apply of `opened` started while another connection holds the state's row lock; the
    lock is released when the block ends, and the apply then finishes."""
    import psycopg

    with psycopg.connect(url) as holder:
        holder.execute("SELECT revision FROM store_state WHERE id = 1 FOR UPDATE")
        writer = threading.Thread(
            target=opened.apply, args=([create("device", "SN-1")],), kwargs={"actor": "a"}
        )
        writer.start()
        try:
            time.sleep(0.3)
            assert writer.is_alive(), "the apply did not wait for the row lock"
            yield writer
        finally:
            holder.rollback()
            writer.join(timeout=30)


def test_postgres_pool_serves_reads_while_a_write_waits(postgres_url: str) -> None:
    """A call waiting for a row lock (an apply behind another instance's apply) holds one
    pooled connection; others go on with theirs instead of queuing behind it."""
    opened = open_store(postgres_url, pool_size=2)
    try:
        with _apply_behind_a_row_lock(opened, postgres_url):
            reader = threading.Thread(target=opened.revision)
            reader.start()
            reader.join(timeout=5)
            assert not reader.is_alive(), "a read queued behind the waiting apply"
        assert opened.revision() == 1
    finally:
        opened.close()


def test_postgres_pool_of_one_serialises_calls(postgres_url: str) -> None:
    """Beyond the pool size a call waits for a connection to come back (and then runs)."""
    opened = open_store(postgres_url, pool_size=1)
    try:
        revisions: list[int] = []
        with _apply_behind_a_row_lock(opened, postgres_url):
            reader = threading.Thread(target=lambda: revisions.append(opened.revision()))
            reader.start()
            reader.join(timeout=0.5)
            assert reader.is_alive() and not revisions
        reader.join(timeout=30)
        assert revisions == [1]
    finally:
        opened.close()


def test_postgres_pool_serves_callers_in_turn(postgres_url: str) -> None:
    """A thread calling back to back does not keep the pool's one connection from a waiter."""
    opened = open_store(postgres_url, pool_size=1)
    stop = threading.Event()

    def call_until_stopped() -> None:
        while not stop.is_set():
            opened.revision()

    busy = threading.Thread(target=call_until_stopped)
    busy.start()
    try:
        served: list[int] = []
        for _ in range(20):
            waiter = threading.Thread(target=lambda: served.append(opened.revision()))
            waiter.start()
            waiter.join(timeout=10)
            assert not waiter.is_alive(), "a caller waited behind a busy one for 10 s"
        assert served == [0] * 20
    finally:
        stop.set()
        busy.join(timeout=30)
        opened.close()


def test_postgres_pool_needs_a_connection() -> None:
    pytest.importorskip("psycopg")
    from sztp_server.store.postgres import PostgresStore

    with pytest.raises(StoreError, match="at least 1 connection"):
        PostgresStore("postgresql:///nowhere", pool_size=0)


def test_changes_since_a_revision_catch_a_reader_up(store: Store, store_url: str) -> None:
    store.apply(
        [create("device", "SN-1"), create("device", "SN-2"), create("image", "os")], actor="a"
    )
    at_one = store.revision()
    assert store.changes_since(at_one, most=100) == StateDelta(at_one, (), ())
    store.apply([Change("update", "device", "SN-1", {"profile": "p"})], actor="a")
    store.apply([Change("delete", "device", "SN-2", None)], actor="a")
    store.apply([create("device", "SN-3"), Change("delete", "image", "os", None)], actor="a")
    store.apply([Change("delete", "device", "SN-3", None)], actor="a")
    store.apply([create("device", "SN-3", profile="again")], actor="a")  # recreated
    delta = store.changes_since(at_one, most=100)
    assert delta is not None
    assert delta.revision == store.revision() == at_one + 5
    assert {(r.kind, r.name): r.spec for r in delta.written} == {
        ("device", "SN-1"): {"profile": "p"},
        ("device", "SN-3"): {"profile": "again"},
    }
    assert sorted(delta.deleted) == [("device", "SN-2"), ("image", "os")]
    # Applied to the state at `at_one`, the delta gives the state as stored.
    assert store.changes_since(0, most=100) is not None
    assert store.changes_since(0, most=1) is None  # more written than a catch-up is worth
    assert (
        store.changes_since(store.revision() + 1, most=100) is None
    )  # a store restored from a backup
    # Once the audit entries of a revision are pruned, deletions are no longer known.
    raw_execute(
        store_url,
        f"UPDATE audit SET at = '2000-01-01T00:00:00.000000+00:00' WHERE revision = {at_one + 3}",  # noqa: S608 - an int
    )
    store.prune_audit(datetime(2010, 1, 1, tzinfo=UTC))
    assert store.changes_since(at_one, most=100) is None
    assert store.changes_since(at_one + 3, most=100) is not None


def test_each_spec_streams_every_resource_in_order(store: Store) -> None:
    serials = [f"SN-{i:05d}" for i in range(2 * ROW_BATCH + 1)]
    store.apply([create("image", "os", os_name="x")], actor="a")
    store.apply([create("device", serial, mac=serial) for serial in serials], actor="a")
    streamed = store.each_spec()
    assert next(streamed) == ("device", serials[0], {"mac": serials[0]})
    assert [("device", serials[0], {"mac": serials[0]}), *streamed] == [
        (resource.kind, resource.name, resource.spec) for resource in store.list()
    ]


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


@given(_json_values)
def test_stored_json_is_what_json_dumps_writes_compactly(value: Any) -> None:
    assert encode_json(value, "value") == json.dumps(value, separators=(",", ":"))
    # The same encoder again: nothing from one value is left over for the next.
    assert encode_json([value, value], "pair") == json.dumps([value, value], separators=(",", ":"))


@given(st.lists(_json_values, max_size=8))
def test_stored_texts_decode_in_one_call_as_each_alone(values: list[Any]) -> None:
    texts = [encode_json(value, "value") for value in values]
    assert decode_stored_json_texts(texts) == [json.loads(text) for text in texts]


def test_a_stored_text_of_two_values_does_not_shift_the_others() -> None:
    # As decoded alone, the first value of such a text; the rest stay paired with their rows.
    texts = ['{"a":1}', '{"b":2},{"c":3}', '{"d":4}']
    assert decode_stored_json_texts(texts) == [{"a": 1}, {"b": 2}, {"d": 4}]
    with pytest.raises(ValueError):
        decode_stored_json_texts(['{"a":1}', '{"b":'])


def device_event(
    number: int, *, serial: str | None = "SN-1", refusal: str | None = None
) -> DeviceEvent:
    return DeviceEvent(
        at=datetime(2024, 5, 1, 12, 0, 0, 250, tzinfo=UTC) + timedelta(seconds=number),
        rpc="get-bootstrapping-data",
        status=200 if refusal is None else 401,
        serial=serial,
        authenticated=refusal is None,
        refusal=refusal,
        remote="192.0.2.7",
        duration_us=1500 + number,
        profile="day0" if refusal is None else None,
        image="os-1.2" if refusal is None and number % 2 else None,
        detail=None if number % 3 else f"hw-model DPU-{number}",
    )


def test_device_events_round_trip_newest_first(store: Store) -> None:
    events = [
        device_event(1),
        device_event(2, serial="SN-404", refusal="unknown-serial"),
        device_event(3, serial=None, refusal="no-credentials"),
    ]
    store.add_device_events(events, keep=100)
    stored = store.device_events()
    assert [dataclasses.replace(event, id=0) for event in stored] == events[::-1]
    assert stored[0].id > stored[1].id > stored[2].id > 0
    # Events need no device: a refused serial is often none the fleet holds.
    assert store.device_events(serial="SN-404") == [stored[1]]
    assert store.device_events(refused=True) == stored[:2]
    assert store.device_events(refused=True, serial="SN-1") == []
    assert store.device_events(before_id=stored[0].id, limit=1) == [stored[1]]


def test_device_events_keep_only_the_newest(store: Store) -> None:
    for start in range(0, 30, 10):
        store.add_device_events([device_event(start + n) for n in range(10)], keep=12)
    kept = store.device_events(limit=100)
    assert [event.duration_us - 1500 for event in kept] == list(range(29, 17, -1))


def test_device_events_older_than_the_age_limit_go(store: Store) -> None:
    store.add_device_events([device_event(n) for n in range(10)], keep=100)
    cutoff = device_event(6).at
    store.add_device_events([device_event(10)], keep=100, before=cutoff)
    kept = store.device_events(limit=100)
    assert [event.duration_us - 1500 for event in kept] == [10, 9, 8, 7, 6]


def test_sqlite_reports_file_of_an_older_schema_gains_the_event_columns(tmp_path: Path) -> None:
    """A reports file whose device_events table predates the profile and image columns."""
    path = tmp_path / "sztp.db"
    open_store(f"sqlite://{path}").close()
    with contextlib.closing(sqlite3.connect(tmp_path / "sztp-reports.db")) as reports:
        for column in ("profile", "image", "detail"):
            reports.execute(f"ALTER TABLE device_events DROP COLUMN {column}")
        reports.commit()
    reopened = open_store(f"sqlite://{path}")
    try:
        reopened.add_device_events([device_event(1)], keep=10)
        (event,) = reopened.device_events()
        assert (event.profile, event.image, event.detail) == ("day0", "os-1.2", None)
    finally:
        reopened.close()


def outbox_report(serial: str, at: datetime) -> ProgressRecord:
    return ProgressRecord(serial, at, "bootstrap-error", "m", None, 1)


def test_the_outbox_is_written_with_the_report_and_claimed_once(store: Store) -> None:
    store.apply([Change("create", "device", "SN-1", {})], actor="test")
    now = datetime.now(UTC)
    rows = [("ops", "device-failed", '{"a":1}'), ("ops", "device-status-changed", '{"b":2}')]
    assert store.add_report(outbox_report("SN-1", now), outbox=rows) is (ReportOutcome.STORED)
    # A repeat stores nothing, its events neither; nor does a report of no device.
    window = timedelta(seconds=60)
    repeated = store.add_report(outbox_report("SN-1", now), repeat_window=window, outbox=rows)
    assert repeated is ReportOutcome.REPEATED
    assert store.add_report(outbox_report("SN-X", now), outbox=rows) is (ReportOutcome.NO_DEVICE)
    lease = now + timedelta(seconds=60)
    claimed = store.claim_webhook_deliveries(now, lease, 10)
    assert [(entry.event_type, entry.body, entry.attempts) for entry in claimed] == [
        ("device-failed", '{"a":1}', 0),
        ("device-status-changed", '{"b":2}', 0),
    ]
    assert store.claim_webhook_deliveries(now, lease, 10) == []  # leased
    first, second = claimed
    store.record_webhook_attempt(first.id, now, error=None, retry_at=None)
    store.record_webhook_attempt(
        second.id, now, error="HTTP 503", retry_at=now + timedelta(seconds=2)
    )
    (status,) = store.webhook_status()
    assert (status.pending, status.delivered, status.given_up) == (1, 1, 0)
    assert status.last_error == "HTTP 503" and status.last_delivered_at is not None
    assert store.claim_webhook_deliveries(now + timedelta(seconds=1), lease, 10) == []
    (again,) = store.claim_webhook_deliveries(now + timedelta(seconds=3), lease, 10)
    assert again.attempts == 1
    store.record_webhook_attempt(again.id, now, error="refused", retry_at=None)
    (status,) = store.webhook_status()
    assert (status.pending, status.delivered, status.given_up) == (0, 1, 1)
    pruned = store.prune_webhook_outbox(now + timedelta(seconds=1), marks_before=now)
    assert pruned == 2
    assert store.webhook_status() == []


# -- issued certificates and their revocation ---------------------------------------------


def issued_certificate(issuer: str, serial_number: str, device: str) -> IssuedCertificate:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    return IssuedCertificate(
        issuer=issuer,
        serial_number=serial_number,
        device=device,
        profile="ldevid",
        subject=f"serialNumber={device}",
        not_before=start,
        not_after=start + timedelta(days=365),
        issued_at=start + timedelta(minutes=int(serial_number, 16)),
        certificate_pem="-----BEGIN CERTIFICATE-----\n",
    )


def test_each_devices_newest_unrevoked_ldevid_counts_for_expiry(store: Store) -> None:
    for record in (
        issued_certificate("lab", "1a", "SN-1"),
        issued_certificate("lab", "2b", "SN-1"),  # newer: SN-1's
        issued_certificate("lab", "3c", "SN-2"),
        issued_certificate("lab", "4d", "SN-3"),
    ):
        store.add_issued_certificate(record)
    at = datetime(2024, 6, 1, tzinfo=UTC)
    store.revoke_certificate("lab", "3c", at, "keyCompromise", actor="alice")
    store.revoke_certificate("lab", "1a", at, "superseded", actor="alice")
    # SN-2's newest is revoked: it holds no current LDevID, whatever it held before.
    assert sorted(store.current_ldevids()) == [
        ("SN-1", issued_certificate("lab", "2b", "SN-1").not_after),
        ("SN-3", issued_certificate("lab", "4d", "SN-3").not_after),
    ]


def test_device_pages_carry_each_devices_current_ldevid(store: Store) -> None:
    add_devices(store, "SN-1", "SN-2", "SN-3", "SN-4", "SN-5", "SN-6")
    store.add_report(report("SN-1", "bootstrap-complete"))
    expired = dataclasses.replace(
        issued_certificate("lab", "4d", "SN-3"), not_after=datetime(2024, 6, 1, tzinfo=UTC)
    )
    for record in (
        issued_certificate("lab", "1a", "SN-1"),
        issued_certificate("other-ca", "2b", "SN-1"),  # newer: SN-1's current one
        issued_certificate("lab", "1b", "SN-2"),
        issued_certificate("lab", "3c", "SN-2"),
        expired,
        issued_certificate("lab", "5e", "SN-5"),
        issued_certificate("lab", "6f", "SN-6"),
    ):
        store.add_issued_certificate(record)
    at = datetime(2024, 6, 1, tzinfo=UTC)
    # SN-2's newest is revoked: the older one it replaced is not its LDevID again.
    store.revoke_certificate("lab", "3c", at, "keyCompromise", actor="alice")
    newest = issued_certificate("other-ca", "2b", "SN-1")

    def current(**chosen: Any) -> dict[str, Any]:
        page = store.device_page(after=None, limit=10, ldevid_at=at, **chosen)
        return {item.device.name: item.ldevid for item in page}

    shown = current()
    assert shown == {
        "SN-1": CurrentLdevid("2b", "other-ca", newest.not_before, newest.not_after),
        "SN-2": None,
        "SN-3": None,  # it expires at that very moment
        "SN-4": None,  # none issued
        "SN-5": CurrentLdevid("5e", "lab", newest.not_before, newest.not_after),
        "SN-6": CurrentLdevid("6f", "lab", newest.not_before, newest.not_after),
    }
    # A moment earlier SN-3's was still valid.
    before = store.device_page(after="SN-2", limit=1, ldevid_at=at - timedelta(seconds=1))
    assert [(item.device.name, item.ldevid) for item in before] == [
        ("SN-3", CurrentLdevid("4d", "lab", expired.not_before, expired.not_after))
    ]
    # Pages and filters choose the same devices as without it, each with its own.
    walked: dict[str, CurrentLdevid | None] = {}
    while page := store.device_page(
        after=list(walked)[-1] if walked else None, limit=4, ldevid_at=at
    ):
        walked |= {item.device.name: item.ldevid for item in page}
    assert walked == shown
    reported = HeadFilter(
        unreported=False,
        recent_types=frozenset({"bootstrap-complete"}),
        stale_types=frozenset(),
        stale_before=at,
    )
    assert current(heads=reported) == {"SN-1": shown["SN-1"]}
    assert current(spec_equals={"model": "none"}) == {}
    # Read without a moment, a page does not look for them.
    assert all(item.ldevid is None for item in store.device_page(after=None, limit=10))
    assert [item.device.name for item in store.device_page(after=None, limit=10)] == list(shown)


def test_a_revocation_is_kept_once_with_its_reason_and_audited(store: Store) -> None:
    for record in (
        issued_certificate("lab", "1a", "SN-1"),
        issued_certificate("lab", "2b", "SN-1"),
        issued_certificate("lab", "3c", "SN-2"),
        issued_certificate("other-ca", "1a", "SN-2"),
    ):
        store.add_issued_certificate(record)
    first = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    revoked = store.revoke_certificate("lab", "1a", first, "keyCompromise", actor="alice")
    assert revoked == dataclasses.replace(
        issued_certificate("lab", "1a", "SN-1"),
        revoked_at=first,
        revocation_reason="keyCompromise",
    )
    # Again, later and for another reason: the first revocation stands, audited once.
    again = store.revoke_certificate(
        "lab", "1a", first + timedelta(hours=1), "superseded", actor="bob"
    )
    assert again == revoked
    assert store.revoke_certificate("lab", "ff", first, "keyCompromise", actor="alice") is None
    assert store.revoke_certificate("nobody", "1a", first, "superseded", actor="alice") is None
    later = first + timedelta(days=1)
    store.revoke_certificate("lab", "3c", later, "cessationOfOperation", actor="alice")
    assert store.revoked_certificates("lab") == [
        ("1a", first, "keyCompromise"),
        ("3c", later, "cessationOfOperation"),
    ]
    assert store.revoked_certificates("other-ca") == []
    [kept] = store.issued_certificates(device="SN-2", serial_number="1a")
    assert (kept.issuer, kept.revoked_at) == ("other-ca", None)
    assert [r.serial_number for r in store.issued_certificates(device="SN-1")] == ["2b", "1a"]
    assert [(e.actor, e.action, e.kind, e.name, e.detail) for e in store.audit()] == [
        (
            "alice",
            "revoke",
            "certificate",
            "lab/3c",
            {
                "device": "SN-2",
                "issuer": "lab",
                "serial_number": "3c",
                "reason": "cessationOfOperation",
            },
        ),
        (
            "alice",
            "revoke",
            "certificate",
            "lab/1a",
            {"device": "SN-1", "issuer": "lab", "serial_number": "1a", "reason": "keyCompromise"},
        ),
    ]
    assert store.revision() == 0  # issued certificates are not part of the admin state


def test_instances_revoking_at_once_audit_one_revocation(store: Store, store_url: str) -> None:
    store.add_issued_certificate(issued_certificate("lab", "1a", "SN-1"))
    others = [open_store(store_url) for _ in range(4)]
    try:
        threads = [
            threading.Thread(
                target=other.revoke_certificate,
                args=("lab", "1a", datetime.now(UTC), "keyCompromise"),
                kwargs={"actor": f"instance-{index}"},
            )
            for index, other in enumerate(others)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for other in others:
            other.close()
    [entry] = store.audit()
    [(_, revoked_at, _)] = store.revoked_certificates("lab")
    [record] = store.issued_certificates(device="SN-1")
    assert record.revoked_at == revoked_at and entry.action == "revoke"


def test_sqlite_reports_file_of_an_older_schema_gains_the_revocation_reason(
    tmp_path: Path,
) -> None:
    """A reports file whose issued_certificates table predates migration 14."""
    path = tmp_path / "sztp.db"
    open_store(f"sqlite://{path}").close()
    with contextlib.closing(sqlite3.connect(tmp_path / "sztp-reports.db")) as reports:
        reports.execute("DROP INDEX issued_certificates_revoked")
        reports.execute("ALTER TABLE issued_certificates DROP COLUMN revocation_reason")
        reports.commit()
    reopened = open_store(f"sqlite://{path}")
    try:
        reopened.add_issued_certificate(issued_certificate("lab", "1a", "SN-1"))
        at = datetime.now(UTC)
        reopened.revoke_certificate("lab", "1a", at, "superseded", actor="test")
        assert reopened.revoked_certificates("lab") == [("1a", at, "superseded")]
    finally:
        reopened.close()

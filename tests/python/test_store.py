"""Storage layer: every case runs on SQLite, and on PostgreSQL when SZTP_TEST_POSTGRES_URL is set.

Start a throwaway PostgreSQL with
`export SZTP_TEST_POSTGRES_URL="$(tests/python/pg_cluster.sh start build/pg)"`;
each test then gets its own schema in that database.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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
from sztpctl.errors import SztpError

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
        ([create("device", "x")], [{}, {}], "2 audit details for 1 changes"),
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


def test_report_fields_round_trip(store: Store) -> None:
    record = ProgressRecord(
        serial="SN-1",
        received_at=datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
        progress_type="bootstrap-complete",
        message=None,
        source_address=None,
        attempt=3,
        ssh_host_keys=(("ssh-ed25519", "AAAAC3Nza"), ("ecdsa-sha2-nistp256", "AAAAE2Vj")),
        trust_anchor_certs=("MIIB", "MIIC"),
    )
    store.add_report(record)
    assert store.reports("SN-1") == [record]
    assert store.latest_reports() == {"SN-1": record}


def test_reports_are_bounded_per_device(store: Store) -> None:
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
    latest = store.latest_reports()
    assert latest["SN-A"].progress_type == "step-12"
    assert latest["SN-B"].progress_type == "step-2"

    store.delete_reports("SN-A")
    assert store.reports("SN-A") == []
    assert set(store.latest_reports()) == {"SN-B"}
    store.add_report(report("SN-A", "again"), keep_per_device=2)
    assert [r.progress_type for r in store.reports("SN-A")] == ["again"]
    with pytest.raises(StoreError, match="keep_per_device"):
        store.add_report(report("SN-A", "x"), keep_per_device=0)


def test_latest_reports_across_a_thousand_devices(store: Store) -> None:
    for i in range(1000):
        store.add_report(report(f"SN-{i:04}", "bootstrap-initiated"))
    for i in range(0, 1000, 2):
        store.add_report(report(f"SN-{i:04}", "bootstrap-complete"))
    latest = store.latest_reports()
    assert len(latest) == 1000
    assert latest["SN-0000"].progress_type == "bootstrap-complete"
    assert latest["SN-0001"].progress_type == "bootstrap-initiated"
    assert all(serial == record.serial for serial, record in latest.items())


# -- tokens ---------------------------------------------------------------------------------


def test_tokens(store: Store) -> None:
    now = datetime.now(UTC)
    admin = TokenRecord("ci", "hash-1", "admin", now)
    reader = TokenRecord("dashboard", "hash-2", "read-only", now)
    store.add_token(reader)
    store.add_token(admin)
    with pytest.raises(ConflictError, match="token 'ci' already exists"):
        store.add_token(TokenRecord("ci", "hash-3", "admin", now))
    with pytest.raises(ConflictError, match="same secret"):
        store.add_token(TokenRecord("other", "hash-1", "admin", now))
    assert store.find_token("hash-1") == admin
    assert store.find_token("hash-3") is None
    assert store.tokens() == [admin, reader]
    assert store.delete_token("ci") is True
    assert store.delete_token("ci") is False
    assert store.find_token("hash-1") is None


# -- opening, schema, URLs --------------------------------------------------------------------


def test_reopen_keeps_state(store_url: str) -> None:
    first = open_store(store_url)
    first.apply([create("device", "SN-1")], actor="a")
    first.add_token(TokenRecord("t", "h", "admin", datetime.now(UTC)))
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
        match=r"database schema version 99 is newer than this server supports \(1\)",
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


def test_postgres_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    opened = open_store(postgres_url)
    backend_pid = opened._connection().info.backend_pid  # type: ignore[attr-defined]
    raw_execute(postgres_url, f"SELECT pg_terminate_backend({backend_pid})")
    with pytest.raises(StoreError, match="PostgreSQL"):
        opened.revision()
    assert opened.apply([create("device", "SN-1")], actor="a") == 1
    opened.close()

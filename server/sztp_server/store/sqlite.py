"""SQLite backend: the default, embedded store for a single sztp-server instance.

Over 500 lines on purpose: it is every `Store` method in this dialect's SQL, kept in one file
so that it reads side by side with `postgres.py`.

Two files: the state (`sztp.db`: resources, audit, tokens) and, beside it, the progress
reports (`sztp-reports.db`), attached to every connection as schema `progress`. SQLite has one
writer per file, so a device's report never waits for an admin's bulk commit to the state.

Concurrency: each thread gets its own connection (aiohttp handlers run on the event-loop
thread and in `asyncio.to_thread` workers), so readers never wait for one another and, thanks to
WAL, never wait for the writer either. Writes to each file are serialised by a process-wide lock
(cheap, fair hand-off between threads) and across processes by SQLite's file lock plus
`busy_timeout`. An admin write locks the state file first, by updating its revision row
(`BEGIN IMMEDIATE` would lock the reports file too); that makes the revision check of `apply`
race-free. A report locks the reports file by inserting first, then checks that its device
exists; an apply that deletes devices deletes their reports last, so whichever of the two
commits second sees the other (no report of a deleted device is kept).

Durability: both files run in WAL mode with `synchronous=NORMAL`, where a commit is atomic and
survives a killed process but the newest commits can be lost on power failure (the database
stays consistent). Admin writes (`apply`, tokens) switch the state file to `synchronous=FULL`
for their transaction, so a change acknowledged to an admin survives power loss as well;
progress reports, frequent and re-sent by devices, take the cheaper path. A transaction over
both files is atomic in each; after a crash between the two, the sweep at open drops the reports
of devices that no longer exist.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any

from sztp.state.resources import DEVICE

from .base import (
    AUDIT_PRUNE_BATCH,
    EVENT_COLUMNS,
    ISSUED_INSERT,
    ISSUED_SELECT_ONE,
    MARK_INSERT,
    MARKS_PRUNE,
    OUTBOX_CLAIM,
    OUTBOX_INSERT,
    OUTBOX_PRUNE,
    REPORT_COLUMNS,
    REVOKE_CERTIFICATE,
    OutboxRow,
    as_utc,
    audit_rows,
    check_change_shapes,
    check_changes,
    check_expected_revision,
    check_limit,
    check_not_last_of_role,
    check_report_bound,
    deleted_devices,
    events_json,
    issued_conflict,
    issued_row,
    outbox_rows,
    prune_audit_row,
    record_attempt,
    repeat_values,
    repeated_report_query,
    report_size,
    report_values,
    resource_rows,
    revocation_audit_row,
    revoke_in,
    token_audit_row,
    trim_reports,
    utc_now,
)
from .errors import ConflictError, StoreError
from .model import (
    AuditEntry,
    Change,
    DeviceEvent,
    IssuedCertificate,
    OutboxEntry,
    ProgressRecord,
    ReportOutcome,
    StoredResource,
    TokenRecord,
)
from .schema import (
    REPORTS_FILE_ADDED_COLUMNS,
    REPORTS_FILE_SCHEMA,
    REPORTS_SCHEMA,
    SQLITE_MIGRATIONS,
    migrate,
)
from .sql_reads import CURRENT_LDEVID_BY_KEY, ROW_BATCH, Row, SqlReads

BUSY_TIMEOUT_MS = 10_000
_REPEATED_REPORT = repeated_report_query()
# Takes the state file's write lock at once, and only that file's (a no-op write of its one row).
_LOCK_STATE = "UPDATE store_state SET revision = revision WHERE id = 1"


# Statements for `resource_rows`' runs, one executemany each. Writes run in the writer
# process, which has no event loop to wait for between rows, and encode each row as it is
# written: a million devices' JSON is never held at once. Device reports, in the reports file,
# do not wait for the state file's write lock meanwhile.
_RESOURCE_SQL = {
    "create": "INSERT INTO resources (kind, name, spec, revision, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "update": "UPDATE resources SET spec = ?, revision = ?, updated_at = ? "
    "WHERE kind = ? AND name = ?",
    "delete": "DELETE FROM resources WHERE kind = ? AND name = ?",
}


def _encode_time(moment: datetime) -> str:
    # Fixed width (always microseconds, always +00:00) so text order is time order.
    return as_utc(moment).isoformat(timespec="microseconds")


def _decode_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _resource(row: tuple[Any, ...]) -> StoredResource:
    kind, name, spec, revision, created_at, updated_at = row
    return StoredResource(
        kind=kind,
        name=name,
        spec=json.loads(spec),
        revision=revision,
        created_at=datetime.fromisoformat(created_at),
        updated_at=datetime.fromisoformat(updated_at),
    )


def _outbox_entry(row: tuple[Any, ...]) -> OutboxEntry:
    entry_id, webhook, event_type, body, created_at, attempts = row
    return OutboxEntry(
        entry_id, webhook, event_type, body, datetime.fromisoformat(created_at), attempts
    )


def _add_missing_columns(connection: sqlite3.Connection) -> None:
    """A reports file made before a column was added to one of its tables gets it now (the
    file may be newer or older than the state file's schema version says)."""
    for table, column, kind in REPORTS_FILE_ADDED_COLUMNS:
        present = {
            row[1] for row in connection.execute(f"PRAGMA {REPORTS_SCHEMA}.table_info({table})")
        }
        if column not in present:
            connection.execute(f"ALTER TABLE {REPORTS_SCHEMA}.{table} ADD COLUMN {column} {kind}")


def _report(row: tuple[Any, ...]) -> ProgressRecord:
    report_id, serial, received_at, progress_type, message, source, attempt = row[:7]
    host_keys, anchors, truncated = row[7:10]
    return ProgressRecord(
        serial=serial,
        received_at=datetime.fromisoformat(received_at),
        progress_type=progress_type,
        message=message,
        source_address=source,
        attempt=attempt,
        ssh_host_keys=tuple((algorithm, key) for algorithm, key in json.loads(host_keys)),
        trust_anchor_certs=tuple(json.loads(anchors)),
        truncated=bool(truncated),
        id=report_id,
    )


def _audit_entry(row: tuple[Any, ...]) -> AuditEntry:
    entry_id, at, actor, action, kind, name, detail = row
    return AuditEntry(
        id=entry_id,
        at=datetime.fromisoformat(at),
        actor=actor,
        action=action,
        kind=kind,
        name=name,
        detail=json.loads(detail),
    )


def _token(row: tuple[Any, ...]) -> TokenRecord:
    name, token_hash, role, created_at = row
    return TokenRecord(
        name=name, token_hash=token_hash, role=role, created_at=datetime.fromisoformat(created_at)
    )


class SqliteStore(SqlReads):
    """A `Store` in one SQLite file, created with mode 0600 (it holds token hashes)."""

    resource_from_row = _resource
    spec_text = "spec"
    report_from_row = _report
    audit_entry_from_row = _audit_entry
    token_from_row = _token
    time_from_value = _decode_time
    spec_field = "json_extract(resources.spec, '$.{field}')"
    current_ldevid_join = CURRENT_LDEVID_BY_KEY
    time_parameter = _encode_time

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._reports_lock = threading.Lock()
        self._closed = False
        _create_private_file(path)
        _create_private_file(reports_path(path))
        with self._write_transaction(durable=True, both_files=True) as connection:
            for statement in REPORTS_FILE_SCHEMA:
                connection.execute(statement)
            _add_missing_columns(connection)
            migrate(connection, SQLITE_MIGRATIONS)
            _sweep_orphan_reports(connection)

    def reopener(self) -> Callable[[], SqliteStore]:
        return partial(SqliteStore, self._path)

    # -- connections and transactions ------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"store {self._path} is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
            with self._connections_lock:
                self._connections.append(connection)
        return connection

    def _connect(self) -> sqlite3.Connection:
        with self._translate_errors():
            # isolation_level=None: we issue BEGIN/COMMIT ourselves; check_same_thread=False
            # only so that close() may close other threads' connections.
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            try:
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                connection.execute("PRAGMA foreign_keys = ON")
                connection.execute(
                    f"ATTACH DATABASE ? AS {REPORTS_SCHEMA}", (str(reports_path(self._path)),)
                )
                for schema, path in (
                    ("main", self._path),
                    (REPORTS_SCHEMA, reports_path(self._path)),
                ):
                    (mode,) = connection.execute(f"PRAGMA {schema}.journal_mode = WAL").fetchone()
                    if mode != "wal":
                        raise StoreError(
                            f"database {path} cannot use WAL journaling (got {mode!r}); "
                            "put it on a local file system"
                        )
                    connection.execute(f"PRAGMA {schema}.synchronous = NORMAL")
            except BaseException:
                connection.close()
                raise
            return connection

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreError(
                    f"database {self._path} is busy: another writer held it for more than "
                    f"{BUSY_TIMEOUT_MS // 1000} s"
                ) from None
            raise StoreError(f"database {self._path}: {exc}") from None
        except sqlite3.Error as exc:
            raise StoreError(f"database {self._path}: {exc}") from None

    def _row_batches(self, statement: str) -> Iterator[Row]:
        with self._reading() as connection:
            cursor = connection.execute(statement)
            while rows := cursor.fetchmany(ROW_BATCH):
                yield from rows

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        with self._translate_errors():
            yield connection

    @contextmanager
    def _write_transaction(
        self, *, durable: bool, both_files: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """A transaction holding the state file's write lock from its start (and the reports
        file's too with `both_files`, for the schema at open)."""
        connection = self._connection()
        with self._write_lock, self._translate_errors():
            if durable:
                connection.execute("PRAGMA synchronous = FULL")
            try:
                if both_files:
                    connection.execute("BEGIN IMMEDIATE")
                else:
                    connection.execute("BEGIN")
                    connection.execute(_LOCK_STATE)
                try:
                    yield connection
                    connection.execute("COMMIT")
                except BaseException:
                    if connection.in_transaction:
                        connection.execute("ROLLBACK")
                    raise
            finally:
                if durable:
                    connection.execute("PRAGMA synchronous = NORMAL")

    @contextmanager
    def _report_transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction whose first statement must write the reports file: it takes that
        file's lock only, never the state file's."""
        connection = self._connection()
        with self._reports_lock, self._translate_errors():
            connection.execute("BEGIN")
            try:
                yield connection
                if connection.in_transaction:
                    connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    # -- resources ------------------------------------------------------------------------

    def revision(self) -> int:
        with self._reading() as connection:
            return _current_revision(connection)

    def apply(
        self,
        changes: Sequence[Change],
        *,
        actor: str,
        expected_revision: int | None = None,
        audit_details: Iterable[Mapping[str, Any]] | None = None,
    ) -> int:
        check_change_shapes(changes)
        if not changes:
            current = self.revision()
            check_expected_revision(current, expected_revision)
            return current
        now = _encode_time(utc_now())
        deleted_serials = [serial for (serial,) in deleted_devices(changes)]
        # Which resources exist is read before the write lock is taken (only `apply` changes
        # resources, and always bumps the revision): under the lock, an unchanged revision
        # proves it still holds, and reports wait that much less.
        with self._reading() as connection:
            connection.execute("BEGIN")
            try:
                read_at = _current_revision(connection)
                existing = _existing(connection, changes)
            finally:
                connection.execute("COMMIT")
        # The reports lock, when devices go, is taken last and held through the commit.
        with ExitStack() as reports_held, self._write_transaction(durable=True) as connection:
            current = _current_revision(connection)
            check_expected_revision(current, expected_revision)
            if current != read_at:
                existing = _existing(connection, changes)
            check_changes(changes, existing)
            new_revision = current + 1
            self._write_changes(connection, changes, new_revision, now)
            connection.executemany(
                "INSERT INTO audit (at, actor, action, kind, name, detail, revision) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                audit_rows(changes, audit_details, at=now, actor=actor, revision=new_revision),
            )
            connection.execute("UPDATE store_state SET revision = ? WHERE id = 1", (new_revision,))
            if deleted_serials:
                # Last, so the reports file is locked only for the rest of this transaction.
                reports_held.enter_context(self._reports_lock)
                _delete_reports(connection, json.dumps(deleted_serials))
        return new_revision

    def _write_changes(
        self, connection: sqlite3.Connection, changes: Sequence[Change], revision: int, now: str
    ) -> None:
        for action, rows in resource_rows(changes, revision, now):
            connection.executemany(_RESOURCE_SQL[action], rows)

    # -- progress reports -------------------------------------------------------------------

    def add_report(
        self,
        record: ProgressRecord,
        *,
        keep_per_device: int = 1000,
        bytes_per_device: int | None = None,
        decides_status: bool = True,
        repeat_window: timedelta | None = None,
        outbox: Sequence[OutboxRow] = (),
    ) -> ReportOutcome:
        check_report_bound(keep_per_device, bytes_per_device)
        received = _encode_time(record.received_at)
        values = report_values(record, received)
        with self._report_transaction() as connection:
            # Insert first: the reports file is then locked, so an apply deleting this device
            # either committed before (and the check below fails) or deletes this report too,
            # and a repeat of this report by another process is compared with this one.
            (report_id,) = connection.execute(
                f"INSERT INTO reports ({REPORT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "  # noqa: S608
                "RETURNING id",
                values,
            ).fetchone()
            if not connection.execute(
                "SELECT 1 FROM resources WHERE kind = ? AND name = ?", (DEVICE, record.serial)
            ).fetchone():
                connection.execute("ROLLBACK")
                return ReportOutcome.NO_DEVICE
            if (
                repeat_window is not None
                and connection.execute(
                    _REPEATED_REPORT,
                    (
                        record.serial,
                        report_id,
                        _encode_time(record.received_at - repeat_window),
                        *repeat_values(values),
                    ),
                ).fetchone()
            ):
                connection.execute("ROLLBACK")
                return ReportOutcome.REPEATED
            connection.executemany(OUTBOX_INSERT, outbox_rows(outbox, received))
            connection.execute(
                "INSERT INTO report_heads (serial, latest_id, report_count, report_bytes) "
                "VALUES (?, ?, 1, ?) ON CONFLICT (serial) DO UPDATE SET "
                "latest_id = CASE WHEN ? THEN max(report_heads.latest_id, excluded.latest_id) "
                "ELSE report_heads.latest_id END, "
                "report_count = report_heads.report_count + 1, "
                "report_bytes = report_heads.report_bytes + excluded.report_bytes",
                (record.serial, report_id, report_size(record), decides_status),
            )
            count, size = connection.execute(
                "SELECT report_count, report_bytes FROM report_heads WHERE serial = ?",
                (record.serial,),
            ).fetchone()
            byte_bound = size if bytes_per_device is None else bytes_per_device
            if count > keep_per_device or size > byte_bound:
                trim_reports(
                    connection.execute, record.serial, report_id, keep_per_device, byte_bound
                )
                connection.execute(
                    "UPDATE report_heads SET (report_count, report_bytes) = "
                    "(SELECT count(*), coalesce(sum(size_bytes), 0) FROM reports WHERE serial = ?) "
                    "WHERE serial = ?",
                    (record.serial, record.serial),
                )
        return ReportOutcome.STORED

    def delete_reports(self, serial: str) -> None:
        with self._report_transaction() as connection:
            _delete_reports(connection, json.dumps([serial]))

    # -- webhook outbox ---------------------------------------------------------------------

    def claim_webhook_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxEntry]:
        check_limit(limit)
        with self._report_transaction() as connection:
            rows = connection.execute(
                OUTBOX_CLAIM.format(lock=""),
                (_encode_time(lease_until), _encode_time(now), limit),
            ).fetchall()
        return sorted(map(_outbox_entry, rows), key=attrgetter("id"))

    def record_webhook_attempt(
        self, entry_id: int, now: datetime, *, error: str | None, retry_at: datetime | None
    ) -> None:
        with self._report_transaction() as connection:
            record_attempt(
                connection.execute,
                entry_id,
                _encode_time(now),
                error,
                None if retry_at is None else _encode_time(retry_at),
            )

    def prune_webhook_outbox(self, before: datetime, *, marks_before: datetime) -> int:
        with self._report_transaction() as connection:
            pruned = connection.execute(OUTBOX_PRUNE, (_encode_time(before),)).rowcount
            connection.execute(MARKS_PRUNE, (_encode_time(marks_before),))
        return int(pruned)

    def queue_webhook_events_once(
        self, mark: str, now: datetime, outbox: Sequence[OutboxRow]
    ) -> bool:
        at = _encode_time(now)
        with self._report_transaction() as connection:
            if not connection.execute(MARK_INSERT, (mark, at)).rowcount:
                return False
            connection.executemany(OUTBOX_INSERT, outbox_rows(outbox, at))
        return True

    def add_device_events(
        self, events: Sequence[DeviceEvent], *, keep: int, before: datetime | None = None
    ) -> None:
        check_limit(keep)
        rows = events_json(events, _encode_time)
        with self._report_transaction() as connection:
            connection.execute(
                f"INSERT INTO device_events ({EVENT_COLUMNS}) "  # noqa: S608
                "SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, "
                "value ->> 5, value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10 "
                "FROM json_each(?)",
                (rows,),
            )
            connection.execute(
                "DELETE FROM device_events WHERE id <= (SELECT max(id) FROM device_events) - ?",
                (keep,),
            )
            if before is not None:
                connection.execute(
                    "DELETE FROM device_events WHERE at < ?", (_encode_time(before),)
                )

    # -- audit ------------------------------------------------------------------------------

    def prune_audit(
        self, before: datetime, *, actor: str | None = None, dry_run: bool = False
    ) -> int:
        cutoff = _encode_time(before)
        if dry_run:
            with self._reading() as connection:
                (count,) = connection.execute(
                    "SELECT count(*) FROM audit WHERE at < ?", (cutoff,)
                ).fetchone()
            return int(count)
        pruned = 0
        while True:
            with self._write_transaction(durable=actor is not None) as connection:
                deleted = connection.execute(
                    "DELETE FROM audit WHERE id IN "
                    "(SELECT id FROM audit WHERE at < ? ORDER BY id LIMIT ?)",
                    (cutoff, AUDIT_PRUNE_BATCH),
                ).rowcount
                pruned += deleted
                done = deleted < AUDIT_PRUNE_BATCH
                if done and actor is not None:
                    _add_audit_row(connection, actor, "prune", prune_audit_row(before, pruned))
            if done:
                return pruned

    # -- issued certificates ----------------------------------------------------------------

    def add_issued_certificate(self, record: IssuedCertificate) -> None:
        with self._report_transaction() as connection:
            inserted = connection.execute(ISSUED_INSERT, issued_row(record, _encode_time)).rowcount
        if not inserted:
            raise issued_conflict(record)

    def revoke_certificate(
        self, issuer: str, serial_number: str, at: datetime, reason: str, *, actor: str
    ) -> IssuedCertificate | None:
        # The audit entry is in the state file, the certificate in the reports file: one
        # transaction holds both, locked in the order `apply` takes them.
        with ExitStack() as reports_held, self._write_transaction(durable=True) as connection:
            reports_held.enter_context(self._reports_lock)
            record, revoked = revoke_in(
                connection,
                (REVOKE_CERTIFICATE, ISSUED_SELECT_ONE),
                (_encode_time(at), reason, issuer, serial_number),
                _decode_time,
            )
            if record is not None and revoked:
                _add_audit_row(connection, actor, "revoke", revocation_audit_row(record))
            return record

    # -- tokens -----------------------------------------------------------------------------

    def add_token(self, record: TokenRecord, *, actor: str) -> None:
        with self._write_transaction(durable=True) as connection:
            inserted = connection.execute(
                "INSERT INTO tokens (name, token_hash, role, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (record.name, record.token_hash, record.role, _encode_time(record.created_at)),
            ).rowcount
            if not inserted:
                name_taken = connection.execute(
                    "SELECT 1 FROM tokens WHERE name = ?", (record.name,)
                ).fetchone()
                raise ConflictError(
                    f"token {record.name!r} already exists"
                    if name_taken
                    else "a token with the same secret already exists"
                )
            _add_audit_row(connection, actor, "create", token_audit_row(record))

    def delete_token(self, name: str, *, actor: str, keep_one_of_role: str | None = None) -> bool:
        # BEGIN IMMEDIATE holds the database's write lock from the check to the commit.
        with self._write_transaction(durable=True) as connection:
            row = connection.execute(
                "SELECT name, token_hash, role, created_at FROM tokens WHERE name = ?", (name,)
            ).fetchone()
            if row is None:
                return False
            role = row[2]
            if role == keep_one_of_role:
                (others,) = connection.execute(
                    "SELECT count(*) FROM tokens WHERE role = ? AND name <> ?", (role, name)
                ).fetchone()
                check_not_last_of_role(name, role, others)
            connection.execute("DELETE FROM tokens WHERE name = ?", (name,))
            _add_audit_row(connection, actor, "delete", token_audit_row(_token(row)))
            return True

    def close(self) -> None:
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()


def reports_path(path: Path) -> Path:
    """The reports file that goes with the state file `path` (`sztp.db` → `sztp-reports.db`)."""
    return path.with_name(f"{path.stem}-reports{path.suffix}")


def _create_private_file(path: Path) -> None:
    """Create the database file owner-only before SQLite does (its -wal/-shm files inherit
    the mode); an existing file keeps the mode its administrator chose."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot create database {path}: {exc.strerror}") from None


def _add_audit_row(
    connection: sqlite3.Connection, actor: str, action: str, row: tuple[str, str, str]
) -> None:
    """An audit entry for something other than a resource change: (kind, name, detail)."""
    connection.execute(
        "INSERT INTO audit (at, actor, action, kind, name, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (_encode_time(utc_now()), actor, action, *row),
    )


def _existing(connection: sqlite3.Connection, changes: Sequence[Change]) -> set[tuple[str, str]]:
    """Which of the resources `changes` name exist. It runs under the write lock that devices'
    reports wait for: one statement per kind, whose answer is one row (a JSON array of names),
    so Python is not re-entered per resource."""
    names: dict[str, set[str]] = {}
    for change in changes:
        names.setdefault(change.kind, set()).add(change.name)
    existing: set[tuple[str, str]] = set()
    for kind, wanted in names.items():
        (found,) = connection.execute(
            "SELECT json_group_array(name) FROM resources WHERE kind = ? "
            "AND name IN (SELECT value FROM json_each(?))",
            (kind, json.dumps(sorted(wanted))),
        ).fetchone()
        existing.update((kind, name) for name in json.loads(found))
    return existing


def _current_revision(connection: sqlite3.Connection) -> int:
    (revision,) = connection.execute("SELECT revision FROM store_state WHERE id = 1").fetchone()
    return int(revision)


def _delete_reports(connection: sqlite3.Connection, serials: str) -> None:
    """Delete the reports of the devices in `serials`, a JSON array."""
    connection.execute(
        "DELETE FROM reports WHERE serial IN (SELECT value FROM json_each(?))", (serials,)
    )
    connection.execute(
        "DELETE FROM report_heads WHERE serial IN (SELECT value FROM json_each(?))", (serials,)
    )


def _sweep_orphan_reports(connection: sqlite3.Connection) -> None:
    """Drop the reports of devices that no longer exist: left only by a crash between the
    commits of the two files, when an apply that deleted devices was cut short."""
    connection.execute(
        "DELETE FROM reports WHERE serial IN (SELECT serial FROM report_heads "
        "WHERE serial NOT IN (SELECT name FROM resources WHERE kind = ?))",
        (DEVICE,),
    )
    connection.execute(
        "DELETE FROM report_heads WHERE serial NOT IN (SELECT name FROM resources WHERE kind = ?)",
        (DEVICE,),
    )

"""PostgreSQL backend, for several sztp-server instances sharing one database.

Over 500 lines on purpose: it is every `Store` method in this dialect's SQL, kept in one file
so that it reads side by side with `sqlite.py`.

Concurrency: a small pool of connections (`pool_size`, made on demand and kept open), one per
call in progress, so a device's report does not wait for an admin's long `apply` to give the
connection back; a call beyond the pool size waits for a connection to be returned. Every
connection carries `statement_timeout` and `idle_in_transaction_session_timeout`, so neither a
stuck statement nor an abandoned transaction holds locks for longer. A broken connection
(server restart, network cut) fails the call in progress with StoreError and is dropped; the
next call opens a new one. Writes are never retried blindly, since the outcome of an
interrupted COMMIT is unknown.

`apply` serialises writers of every instance with `SELECT ... FOR UPDATE` on the single
revision row: the revision check and the existence checks then see the latest committed state,
and audit ids (BIGSERIAL) are allocated in commit order, so audit cursors never skip a row.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from operator import attrgetter
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg

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
from .schema import POSTGRES_MIGRATIONS, migrate
from .sql_reads import CURRENT_LDEVID_LATERAL, ROW_BATCH, Row, SqlReads

CONNECT_TIMEOUT_S = 10
# Any fixed 64-bit number; it serialises schema migrations of instances starting together.
_MIGRATION_LOCK_KEY = 0x5A7B_0001
_REPEATED_REPORT = repeated_report_query("::jsonb").replace("?", "%s")
_OUTBOX_INSERT = OUTBOX_INSERT.replace("?", "%s")
_OUTBOX_CLAIM = OUTBOX_CLAIM.format(lock=" FOR UPDATE SKIP LOCKED").replace("?", "%s")
_REVOKE_CERTIFICATE = REVOKE_CERTIFICATE.replace("?", "%s")
_ISSUED_SELECT_ONE = ISSUED_SELECT_ONE.replace("?", "%s")


def redact_url(url: str) -> str:
    """The URL with any password (in the user info or a `password=` parameter) masked."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostinfo = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostinfo}"
    query = "&".join(
        "password=***" if item.partition("=")[0] == "password" else item
        for item in parts.query.split("&")
        if item
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _url_passwords(url: str) -> set[str]:
    parts = urlsplit(url)
    found = {parts.password or ""}
    found.update(
        item.partition("=")[2] for item in parts.query.split("&") if item.startswith("password=")
    )
    found |= {unquote(secret) for secret in found}
    found.discard("")
    return found


# The columns of `resource_rows`' create rows, which COPY writes: a bulk create of a million
# devices is COPY's work, several times quicker than as many INSERTs.
_CREATE_COLUMNS = "kind, name, spec, revision, created_at, updated_at"


_RESOURCE_SQL = {
    "update": "UPDATE resources SET spec = %s::jsonb, revision = %s, updated_at = %s "
    "WHERE kind = %s AND name = %s",
    "delete": "DELETE FROM resources WHERE kind = %s AND name = %s",
}


def _resource(row: tuple[Any, ...]) -> StoredResource:
    kind, name, spec, revision, created_at, updated_at = row
    return StoredResource(
        kind=kind,
        name=name,
        spec=spec,
        revision=revision,
        created_at=as_utc(created_at),
        updated_at=as_utc(updated_at),
    )


def _report(row: tuple[Any, ...]) -> ProgressRecord:
    report_id, serial, received_at, progress_type, message, source, attempt = row[:7]
    host_keys, anchors, truncated = row[7:10]
    return ProgressRecord(
        serial=serial,
        received_at=as_utc(received_at),
        progress_type=progress_type,
        message=message,
        source_address=source,
        attempt=attempt,
        ssh_host_keys=tuple((algorithm, key) for algorithm, key in host_keys),
        trust_anchor_certs=tuple(anchors),
        truncated=truncated,
        id=report_id,
    )


def _audit_entry(row: tuple[Any, ...]) -> AuditEntry:
    entry_id, at, actor, action, kind, name, detail = row
    return AuditEntry(
        id=entry_id, at=as_utc(at), actor=actor, action=action, kind=kind, name=name, detail=detail
    )


def _token(row: tuple[Any, ...]) -> TokenRecord:
    name, token_hash, role, created_at = row
    return TokenRecord(name=name, token_hash=token_hash, role=role, created_at=as_utc(created_at))


class PostgresStore(SqlReads):
    """A `Store` in a PostgreSQL database given by a libpq URL."""

    placeholder = "%s"
    resource_from_row = _resource
    spec_text = "spec::text"
    report_from_row = _report
    audit_entry_from_row = _audit_entry
    token_from_row = _token
    time_from_value = as_utc
    spec_field = "(resources.spec ->> '{field}')"
    current_ldevid_join = CURRENT_LDEVID_LATERAL
    time_parameter = as_utc

    def __init__(
        self, url: str, *, statement_timeout: float | None = None, pool_size: int = 1
    ) -> None:
        self._url = url
        self._statement_timeout = statement_timeout
        # Milliseconds, as PostgreSQL counts them; a statement that would round to 0 (no limit)
        # gets the smallest limit instead.
        self._statement_timeout_ms = (
            None if statement_timeout is None else max(1, round(statement_timeout * 1000))
        )
        self._redacted_url = redact_url(url)
        self._passwords = _url_passwords(url)
        self._pool = _ConnectionPool(self._connect, pool_size, self._redacted_url)
        with self._transaction() as connection:
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
            migrate(connection, POSTGRES_MIGRATIONS)

    def reopener(self) -> Callable[[], PostgresStore]:
        # One connection: the writer process runs one write at a time.
        return partial(PostgresStore, self._url, statement_timeout=self._statement_timeout)

    # -- connections and transactions ------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        connection = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        try:
            connection.execute("SET TIME ZONE 'UTC'")
            if self._statement_timeout_ms is not None:
                # A transaction left idle (a stalled worker) must not hold its row locks for
                # longer than a statement may run.
                for setting in ("statement_timeout", "idle_in_transaction_session_timeout"):
                    connection.execute(
                        "SELECT set_config(%s, %s, false)",
                        (setting, f"{self._statement_timeout_ms}ms"),
                    )
        except BaseException:
            connection.close()
            raise
        return connection

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except psycopg.Error as exc:
            # libpq messages span lines ("Is the server running...?"); keep them to one.
            message = " ".join(str(exc).split()) or type(exc).__name__
            for secret in self._passwords:
                message = message.replace(secret, "***")
            raise StoreError(f"PostgreSQL {self._redacted_url}: {message}") from None

    def _row_batches(self, statement: str) -> Iterator[Row]:
        # A server-side cursor: psycopg would otherwise receive every row before the first.
        with (
            self._transaction() as connection,
            connection.cursor(name="row_batches") as cursor,
        ):
            cursor.execute(statement)
            while rows := cursor.fetchmany(ROW_BATCH):
                yield from rows

    @contextmanager
    def _reading(self) -> Iterator[psycopg.Connection[Any]]:
        with self._translate_errors(), self._pool.connection() as connection:
            yield connection

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection[Any]]:
        with (
            self._translate_errors(),
            self._pool.connection() as connection,
            connection.transaction(),
        ):
            yield connection

    # -- resources ------------------------------------------------------------------------

    def revision(self) -> int:
        with self._reading() as connection:
            return _current_revision(connection, for_update=False)

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
        now = utc_now()
        keys = sorted({(change.kind, change.name) for change in changes})
        with self._transaction() as connection:
            current = _current_revision(connection, for_update=True)
            check_expected_revision(current, expected_revision)
            existing = {
                (kind, name)
                for kind, name in connection.execute(
                    "SELECT r.kind, r.name FROM resources r "
                    "JOIN unnest(%s::text[], %s::text[]) AS wanted(kind, name) "
                    "ON r.kind = wanted.kind AND r.name = wanted.name",
                    ([kind for kind, _ in keys], [name for _, name in keys]),
                )
            }
            check_changes(changes, existing)
            new_revision = current + 1
            with connection.cursor() as cursor:
                self._write_changes(cursor, changes, new_revision, now)
                _copy_rows(
                    cursor,
                    "audit (at, actor, action, kind, name, detail, revision)",
                    audit_rows(changes, audit_details, at=now, actor=actor, revision=new_revision),
                )
            connection.execute("UPDATE store_state SET revision = %s WHERE id = 1", (new_revision,))
        return new_revision

    def _write_changes(
        self,
        cursor: psycopg.Cursor[Any],
        changes: Sequence[Change],
        revision: int,
        now: datetime,
    ) -> None:
        for action, rows in resource_rows(changes, revision, now):
            if action == "create":
                _copy_rows(cursor, f"resources ({_CREATE_COLUMNS})", rows)
            else:
                # executemany pipelines the statements: one round trip per run, not per change.
                cursor.executemany(_RESOURCE_SQL[action], rows)
        _delete_reports(cursor, deleted_devices(changes))

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
        values = report_values(record, as_utc(record.received_at))
        outcome = ReportOutcome.STORED
        with self._transaction() as connection:
            # The key-share lock makes a concurrent delete of the device wait for this report
            # (and then remove it), or this wait for the delete (and then find no device); spec
            # updates do not wait for it.
            if not connection.execute(
                "SELECT 1 FROM resources WHERE kind = %s AND name = %s FOR KEY SHARE",
                (DEVICE, record.serial),
            ).fetchone():
                return ReportOutcome.NO_DEVICE
            (report_id,) = _one(
                connection.execute(
                    f"INSERT INTO reports ({REPORT_COLUMNS}) "  # noqa: S608
                    "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s) RETURNING id",
                    values,
                ).fetchone()
            )
            # The upsert locks the device's head row, serialising its writers across instances;
            # GREATEST keeps "latest" right when they commit out of id order.
            count, size = _one(
                connection.execute(
                    "INSERT INTO report_heads (serial, latest_id, report_count, report_bytes) "
                    "VALUES (%s, %s, 1, %s) ON CONFLICT (serial) DO UPDATE SET "
                    "latest_id = CASE WHEN %s "
                    "THEN GREATEST(report_heads.latest_id, excluded.latest_id) "
                    "ELSE report_heads.latest_id END, "
                    "report_count = report_heads.report_count + 1, "
                    "report_bytes = report_heads.report_bytes + excluded.report_bytes "
                    "RETURNING report_count, report_bytes",
                    (record.serial, report_id, report_size(record), decides_status),
                ).fetchone()
            )
            # After the upsert: a repeat of this report by another instance waited for the
            # head row's lock, and this compares it with the report that instance committed.
            if (
                repeat_window is not None
                and connection.execute(
                    _REPEATED_REPORT,
                    (
                        record.serial,
                        report_id,
                        as_utc(record.received_at - repeat_window),
                        *repeat_values(values),
                    ),
                ).fetchone()
            ):
                outcome = ReportOutcome.REPEATED
                raise psycopg.Rollback  # leaves the transaction block, nothing written
            if outbox:
                with connection.cursor() as cursor:
                    cursor.executemany(
                        _OUTBOX_INSERT, outbox_rows(outbox, as_utc(record.received_at))
                    )
            byte_bound = size if bytes_per_device is None else bytes_per_device
            if count > keep_per_device or size > byte_bound:
                trim_reports(
                    lambda statement, parameters: connection.execute(
                        statement.replace("?", "%s"), parameters
                    ),
                    record.serial,
                    report_id,
                    keep_per_device,
                    byte_bound,
                )
                connection.execute(
                    "UPDATE report_heads SET (report_count, report_bytes) = "
                    "(SELECT count(*), coalesce(sum(size_bytes), 0) FROM reports "
                    "WHERE serial = %s) WHERE serial = %s",
                    (record.serial, record.serial),
                )
        return outcome

    def delete_reports(self, serial: str) -> None:
        with self._transaction() as connection, connection.cursor() as cursor:
            _delete_reports(cursor, [(serial,)])

    # -- webhook outbox ---------------------------------------------------------------------

    def claim_webhook_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> list[OutboxEntry]:
        check_limit(limit)
        with self._transaction() as connection:
            # SKIP LOCKED: instances claiming at once each take other entries.
            rows = connection.execute(
                _OUTBOX_CLAIM, (as_utc(lease_until), as_utc(now), limit)
            ).fetchall()
        return sorted(
            (
                OutboxEntry(entry_id, webhook, kind, body, as_utc(created), attempts)
                for entry_id, webhook, kind, body, created, attempts in rows
            ),
            key=attrgetter("id"),
        )

    def record_webhook_attempt(
        self, entry_id: int, now: datetime, *, error: str | None, retry_at: datetime | None
    ) -> None:
        with self._transaction() as connection:
            record_attempt(
                lambda statement, parameters: connection.execute(
                    statement.replace("?", "%s"), parameters
                ),
                entry_id,
                as_utc(now),
                error,
                None if retry_at is None else as_utc(retry_at),
            )

    def prune_webhook_outbox(self, before: datetime, *, marks_before: datetime) -> int:
        with self._transaction() as connection:
            pruned = connection.execute(OUTBOX_PRUNE.replace("?", "%s"), (as_utc(before),)).rowcount
            connection.execute(MARKS_PRUNE.replace("?", "%s"), (as_utc(marks_before),))
        return int(pruned)

    def queue_webhook_events_once(
        self, mark: str, now: datetime, outbox: Sequence[OutboxRow]
    ) -> bool:
        with self._transaction() as connection:
            # A concurrent insert of the same mark waits for this one and then does nothing.
            if not connection.execute(MARK_INSERT.replace("?", "%s"), (mark, as_utc(now))).rowcount:
                return False
            with connection.cursor() as cursor:
                cursor.executemany(_OUTBOX_INSERT, outbox_rows(outbox, as_utc(now)))
        return True

    def add_device_events(
        self, events: Sequence[DeviceEvent], *, keep: int, before: datetime | None = None
    ) -> None:
        check_limit(keep)
        rows = events_json(events, lambda at: as_utc(at).isoformat())
        with self._transaction() as connection, connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO device_events ({EVENT_COLUMNS}) "  # noqa: S608
                "SELECT (row ->> 0)::timestamptz, row ->> 1, (row ->> 2)::integer, row ->> 3, "
                "(row ->> 4)::boolean, row ->> 5, row ->> 6, (row ->> 7)::bigint, row ->> 8, "
                "row ->> 9, row ->> 10 "
                "FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS rows (row, number) "
                "ORDER BY number",
                (rows,),
            )
            cursor.execute(
                "DELETE FROM device_events WHERE id <= (SELECT max(id) FROM device_events) - %s",
                (keep,),
            )
            if before is not None:
                cursor.execute("DELETE FROM device_events WHERE at < %s", (as_utc(before),))

    # -- audit ------------------------------------------------------------------------------

    def prune_audit(
        self, before: datetime, *, actor: str | None = None, dry_run: bool = False
    ) -> int:
        cutoff = as_utc(before)
        if dry_run:
            with self._reading() as connection:
                (count,) = _one(
                    connection.execute(
                        "SELECT count(*) FROM audit WHERE at < %s", (cutoff,)
                    ).fetchone()
                )
            return int(count)
        pruned = 0
        while True:
            with self._transaction() as connection:
                # SKIP LOCKED: instances pruning together take different batches, never wait.
                deleted = connection.execute(
                    "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < %s "
                    "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)",
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
        with self._transaction() as connection:
            inserted = connection.execute(
                ISSUED_INSERT.replace("?", "%s"), issued_row(record, as_utc)
            ).rowcount
        if not inserted:
            raise issued_conflict(record)

    def revoke_certificate(
        self, issuer: str, serial_number: str, at: datetime, reason: str, *, actor: str
    ) -> IssuedCertificate | None:
        with self._transaction() as connection:
            # A concurrent revocation holds the row until it commits; this one then finds it
            # revoked and changes nothing.
            record, revoked = revoke_in(
                connection,
                (_REVOKE_CERTIFICATE, _ISSUED_SELECT_ONE),
                (as_utc(at), reason, issuer, serial_number),
                as_utc,
            )
            if record is not None and revoked:
                _add_audit_row(connection, actor, "revoke", revocation_audit_row(record))
            return record

    # -- tokens -----------------------------------------------------------------------------

    def add_token(self, record: TokenRecord, *, actor: str) -> None:
        with self._transaction() as connection:
            inserted = connection.execute(
                "INSERT INTO tokens (name, token_hash, role, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (record.name, record.token_hash, record.role, as_utc(record.created_at)),
            ).rowcount
            if not inserted:
                name_taken = connection.execute(
                    "SELECT 1 FROM tokens WHERE name = %s", (record.name,)
                ).fetchone()
                raise ConflictError(
                    f"token {record.name!r} already exists"
                    if name_taken
                    else "a token with the same secret already exists"
                )
            _add_audit_row(connection, actor, "create", token_audit_row(record))

    def delete_token(self, name: str, *, actor: str, keep_one_of_role: str | None = None) -> bool:
        with self._transaction() as connection:
            if keep_one_of_role is not None:
                # Every token of the role is locked, in name order so that instances never
                # deadlock: of two instances deleting the last two, the second waits for the
                # first to commit and then finds only its own token left.
                holders = [
                    holder
                    for (holder,) in connection.execute(
                        "SELECT name FROM tokens WHERE role = %s ORDER BY name FOR UPDATE",
                        (keep_one_of_role,),
                    )
                ]
                if name in holders:
                    check_not_last_of_role(name, keep_one_of_role, len(holders) - 1)
            row = connection.execute(
                "DELETE FROM tokens WHERE name = %s RETURNING name, token_hash, role, created_at",
                (name,),
            ).fetchone()
            if row is None:
                return False
            _add_audit_row(connection, actor, "delete", token_audit_row(_token(row)))
            return True

    def close(self) -> None:
        self._pool.close()


class _Waiter:
    """A caller queued for a connection: handed one, or the right to open one."""

    def __init__(self, lock: threading.Lock) -> None:
        self.woken = threading.Condition(lock)
        self.connection: psycopg.Connection[Any] | None = None
        self.may_open = False


class _ConnectionPool:
    """Up to `size` connections, opened when no idle one is left and kept for the next call.

    Callers are served first come, first served: a returned connection goes to the longest
    waiting caller, so a thread calling back to back (a device's reports) cannot starve another
    (an admin's apply) by taking its connection back before the waiter wakes.
    """

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], size: int, redacted_url: str
    ) -> None:
        if size < 1:
            raise StoreError(f"the connection pool needs at least 1 connection, got {size}")
        self._connect = connect
        self._size = size
        self._redacted_url = redacted_url
        self._idle: list[psycopg.Connection[Any]] = []
        self._waiters: deque[_Waiter] = deque()
        self._open = 0
        self._closed = False
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        connection = self._take()
        try:
            yield connection
        finally:
            self._give_back(connection)

    def _take(self) -> psycopg.Connection[Any]:
        with self._lock:
            self._check_open()
            if not self._waiters and self._idle:
                return self._idle.pop()
            if not self._waiters and self._open < self._size:
                self._open += 1
            else:
                waiter = _Waiter(self._lock)
                self._waiters.append(waiter)
                while waiter.connection is None and not waiter.may_open and not self._closed:
                    waiter.woken.wait()
                if waiter.connection is not None:
                    return waiter.connection
                if not waiter.may_open:
                    self._waiters.remove(waiter)
                    self._check_open()
        try:
            return self._connect()
        except BaseException:
            self._forget()
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store {self._redacted_url} is closed")

    def _give_back(self, connection: psycopg.Connection[Any]) -> None:
        with self._lock:
            if not (self._closed or connection.closed or connection.broken):
                if self._waiters:
                    waiter = self._waiters.popleft()
                    waiter.connection = connection
                    waiter.woken.notify()
                else:
                    self._idle.append(connection)
                return
        connection.close()
        self._forget()

    def _forget(self) -> None:
        """One connection fewer: the longest waiting caller may open a new one."""
        with self._lock:
            if self._waiters and not self._closed:
                waiter = self._waiters.popleft()
                waiter.may_open = True
                waiter.woken.notify()
            else:
                self._open -= 1

    def close(self) -> None:
        """Close the idle connections now, and those in use when they come back."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._open -= len(idle)
            for waiter in self._waiters:
                waiter.woken.notify()
        for connection in idle:
            connection.close()


def _add_audit_row(
    connection: psycopg.Connection[Any], actor: str, action: str, row: tuple[str, str, str]
) -> None:
    """An audit entry for something other than a resource change: (kind, name, detail)."""
    connection.execute(
        "INSERT INTO audit (at, actor, action, kind, name, detail) "
        "VALUES (%s, %s, %s, %s, %s, %s::jsonb)",
        (utc_now(), actor, action, *row),
    )


def _current_revision(connection: psycopg.Connection[Any], *, for_update: bool) -> int:
    query = (
        "SELECT revision FROM store_state WHERE id = 1 FOR UPDATE"
        if for_update
        else "SELECT revision FROM store_state WHERE id = 1"
    )
    (revision,) = _one(connection.execute(query).fetchone())
    return int(revision)


def _one(row: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """The row a statement that always returns one did return."""
    if row is None:
        raise StoreError("the database returned no row where one was expected")
    return row


def _copy_rows(cursor: psycopg.Cursor[Any], table: str, rows: Iterable[Sequence[Any]]) -> None:
    """COPY `rows` into `table` ("name (columns)", this module's own text)."""
    with cursor.copy(f"COPY {table} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _delete_reports(cursor: psycopg.Cursor[Any], serials: Sequence[tuple[str]]) -> None:
    # Heads first: that waits for a report being added (it holds the head row), so the
    # reports delete that follows sees that report too.
    cursor.executemany("DELETE FROM report_heads WHERE serial = %s", serials)
    cursor.executemany("DELETE FROM reports WHERE serial = %s", serials)

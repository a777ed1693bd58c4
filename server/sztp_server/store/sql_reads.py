"""The reads both SQL backends run alike, written once.

Statements are written with `?` placeholders; a backend whose driver spells them otherwise
(psycopg: `%s`) sets `placeholder`. What differs per backend is how a row decodes (SQLite keeps
timestamps and JSON as text, PostgreSQL returns typed values), how a time is passed as a
parameter, how a spec field is read in SQL, how a device page joins each device's current
LDevID, and how a connection for reading is had: each backend gives its row decoders,
`time_parameter`, `spec_field`, `current_ldevid_join` and `_reading`.

The device reads walk `resources` in the order of its primary key (kind, name): byte order of
the names on both backends (SQLite's BINARY collation, PostgreSQL's `COLLATE "C"`), which is
Python's order of `str` (or, filtered by a spec field, that field's index, whose entries of one
value are in name order too). A page is one statement that steps along the index from the
cursor and stops after `limit` matching rows, so its cost is the rows it passes over, not the
fleet.
"""

from __future__ import annotations

import builtins  # in the store classes a bare `list` would name their list() method
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from itertools import islice
from typing import Any, ClassVar

from sztp.revocation import DEFAULT_REVOCATION_REASON
from sztp.state.resources import DEVICE

from .base import (
    DEVICE_FILTER_FIELDS,
    EVENT_COLUMNS,
    ISSUED_COLUMNS,
    NEWEST_ISSUED_FIRST,
    REPORT_FIELDS,
    REPORT_SELECT,
    REPORT_SUMMARY_SELECT,
    RevokedEntry,
    check_limit,
    decode_stored_json_texts,
    event_from_row,
    issued_from_row,
)
from .errors import StoreError
from .model import (
    AuditEntry,
    CurrentLdevid,
    DeviceEvent,
    DeviceHead,
    HeadCounts,
    HeadFilter,
    IssuedCertificate,
    ProgressRecord,
    ReportSummary,
    StateDelta,
    StoredResource,
    TokenRecord,
    WebhookStatus,
)

Row = tuple[Any, ...]
# Above every id either database hands out: "before no id" pages from the newest report.
UNBOUNDED_ID = 2**63 - 1
# Rows fetched at a time when a read streams (a million devices are never all rows at once).
ROW_BATCH = 5000

_RESOURCE_FIELDS = (
    "resources.kind, resources.name, resources.spec, resources.revision, "
    "resources.created_at, resources.updated_at"
)
_RESOURCE_COLUMNS = f"SELECT {_RESOURCE_FIELDS} FROM resources"  # noqa: S608 - constants only
_REPORT_WIDTH = REPORT_FIELDS.count(",") + 1
# Each device with its head report, or NULLs in the report's columns when it has none.
_DEVICE_HEADS = (
    "FROM resources LEFT JOIN report_heads ON report_heads.serial = resources.name "
    "LEFT JOIN reports ON reports.id = report_heads.latest_id"
)
# And with its current LDevID (`ldevid.*`, NULLs when it has none): its newest issued
# certificate, read by the index on (device, issued_at) among the device's few, joined only while
# it is not revoked and does not expire by the moment given as the one parameter. How it is
# joined per device is each backend's `current_ldevid_join`, one of the two below.
_CURRENT_LDEVID_FIELDS = "ldevid.serial_number, ldevid.issuer, ldevid.not_before, ldevid.not_after"
_NEWEST_ISSUED = (
    "SELECT {columns} FROM issued_certificates AS issued "  # noqa: S608 - constants only
    "WHERE issued.device = resources.name "
    f"ORDER BY {NEWEST_ISSUED_FIRST} LIMIT 1"
)
_STILL_VALID = "ldevid.revoked_at IS NULL AND ldevid.not_after > ?"
# SQLite (no LATERAL): the newest one's key from a correlated subquery, its row by primary key.
CURRENT_LDEVID_BY_KEY = (
    "LEFT JOIN issued_certificates AS ldevid ON (ldevid.issuer, ldevid.serial_number) = "
    f"({_NEWEST_ISSUED.format(columns='issuer, serial_number')}) AND {_STILL_VALID}"
)
# PostgreSQL: the planner would hash the whole table for the form above, reading every device
# whatever the page; a lateral subquery is read for the page's devices only.
CURRENT_LDEVID_LATERAL = (
    "LEFT JOIN LATERAL ("
    f"{_NEWEST_ISSUED.format(columns='serial_number, issuer, not_before, not_after, revoked_at')}"
    f") AS ldevid ON {_STILL_VALID}"
)
_HEAD_REPORTS = "FROM report_heads JOIN reports ON reports.id = report_heads.latest_id"
_AUDIT_COLUMNS = "SELECT id, at, actor, action, kind, name, detail FROM audit"
_TOKEN_COLUMNS = "SELECT name, token_hash, role, created_at FROM tokens"  # noqa: S105
_EVENT_SELECT = f"SELECT id, {EVENT_COLUMNS} FROM device_events"  # noqa: S608 - constants only


class SqlReads(ABC):
    """`Store` reads of resources, reports, the audit log and tokens."""

    placeholder: ClassVar[str] = "?"
    # SQL reading a spec field as text; `{field}` is one of DEVICE_FILTER_FIELDS. Each field has
    # an index on (kind, this expression, name) (schema migration 5), which the database uses
    # only for this very expression.
    spec_field: ClassVar[str]
    # A datetime as the backend stores it, to compare with a stored time in SQL.
    time_parameter: ClassVar[Callable[[datetime], Any]]
    resource_from_row: ClassVar[Callable[[Row], StoredResource]]
    # The spec column as JSON text in a SELECT: decoded here rather than by the driver, which
    # costs several times more per row when the whole state is read.
    spec_text: ClassVar[str]
    report_from_row: ClassVar[Callable[[Row], ProgressRecord]]
    audit_entry_from_row: ClassVar[Callable[[Row], AuditEntry]]
    token_from_row: ClassVar[Callable[[Row], TokenRecord]]
    # A stored time as read back (text on SQLite), as a datetime.
    time_from_value: ClassVar[Callable[[Any], datetime]]
    # How a device page joins each device's current LDevID: CURRENT_LDEVID_BY_KEY or
    # CURRENT_LDEVID_LATERAL, whichever the database reads for the page's devices only.
    current_ldevid_join: ClassVar[str]

    @abstractmethod
    def _row_batches(self, statement: str) -> Iterator[Row]:
        """The rows of `statement` (no parameters), fetched a batch at a time."""

    @abstractmethod
    def revision(self) -> int:
        """The store's revision (see `Store.revision`)."""

    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A connection to read with, its errors translated to StoreError."""

    def _rows(self, statement: str, parameters: Sequence[Any] = ()) -> builtins.list[Row]:
        with self._reading() as connection:
            rows: builtins.list[Row] = connection.execute(
                statement.replace("?", self.placeholder), parameters
            ).fetchall()
        return rows

    def get(self, kind: str, name: str) -> StoredResource | None:
        rows = self._rows(f"{_RESOURCE_COLUMNS} WHERE kind = ? AND name = ?", (kind, name))
        return type(self).resource_from_row(rows[0]) if rows else None

    def list(self, kind: str | None = None) -> builtins.list[StoredResource]:
        if kind is None:
            rows = self._rows(f"{_RESOURCE_COLUMNS} ORDER BY kind, name")
        else:
            rows = self._rows(f"{_RESOURCE_COLUMNS} WHERE kind = ? ORDER BY name", (kind,))
        return [type(self).resource_from_row(row) for row in rows]

    def each_spec(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        rows = self._row_batches(
            f"SELECT kind, name, {self.spec_text} FROM resources ORDER BY kind, name"  # noqa: S608
        )
        while batch := builtins.list(islice(rows, ROW_BATCH)):
            specs = decode_stored_json_texts([spec for _kind, _name, spec in batch])
            for (kind, name, _text), spec in zip(batch, specs, strict=True):
                yield kind, name, spec

    def changes_since(self, revision: int, *, most: int) -> StateDelta | None:
        # Read one statement at a time, so the result may be newer than the revision read
        # first; a resource written and deleted both since counts by its newest revision, and
        # the next catch-up from the revision given here reads those changes again.
        current = self.revision()
        if current < revision:
            return None
        if current == revision:
            return StateDelta(current, (), ())
        # Every revision has an audit entry per change; deletions are known only while the
        # entries of every revision since are kept (pruning goes by time).
        ((kept,),) = self._rows(
            "SELECT count(DISTINCT revision) FROM audit WHERE revision > ?", (revision,)
        )
        if kept < current - revision:
            return None
        ((count,),) = self._rows("SELECT count(*) FROM resources WHERE revision > ?", (revision,))
        if count > most:
            return None
        written = tuple(
            type(self).resource_from_row(row)
            for row in self._rows(f"{_RESOURCE_COLUMNS} WHERE revision > ?", (revision,))
        )
        rewritten_at = {(resource.kind, resource.name): resource.revision for resource in written}
        deleted = tuple(
            (kind, name)
            for kind, name, deleted_at in self._rows(
                "SELECT kind, name, max(revision) FROM audit WHERE revision > ? "
                "AND action = 'delete' GROUP BY kind, name",
                (revision,),
            )
            if rewritten_at.get((kind, name), 0) < deleted_at
        )
        return StateDelta(current, written, deleted)

    def reports(
        self, serial: str, *, limit: int = 1000, before_id: int | None = None
    ) -> builtins.list[ProgressRecord]:
        check_limit(limit)
        rows = self._rows(
            f"{REPORT_SELECT} WHERE serial = ? AND id < ? ORDER BY id DESC LIMIT ?",
            (serial, UNBOUNDED_ID if before_id is None else before_id, limit),
        )
        return [type(self).report_from_row(row) for row in reversed(rows)]

    def report_summary(self, serial: str) -> ReportSummary | None:
        rows = self._rows(f"{REPORT_SUMMARY_SELECT}?", (serial,))
        if not rows:
            return None
        *report, count, size = rows[0]
        return ReportSummary(
            latest=type(self).report_from_row(tuple(report)),
            report_count=count,
            report_bytes=size,
        )

    def device_page(
        self,
        *,
        after: str | None,
        limit: int,
        spec_equals: Mapping[str, str] | None = None,
        heads: HeadFilter | None = None,
        ldevid_at: datetime | None = None,
    ) -> builtins.list[DeviceHead]:
        check_limit(limit)
        decode = type(self)
        columns = f"{_RESOURCE_FIELDS}, {REPORT_FIELDS}"
        source = _DEVICE_HEADS
        parameters: builtins.list[Any] = []
        if ldevid_at is not None:
            columns += f", {_CURRENT_LDEVID_FIELDS}"
            source += f" {decode.current_ldevid_join}"
            parameters.append(decode.time_parameter(ldevid_at))
        conditions = ["resources.kind = ?"]
        parameters.append(DEVICE)
        if after is not None:
            conditions.append("resources.name > ?")
            parameters.append(after)
        for field, value in (spec_equals or {}).items():
            if field not in DEVICE_FILTER_FIELDS:
                raise StoreError(f"devices cannot be filtered by {field!r}")
            conditions.append(f"{self.spec_field.format(field=field)} = ?")
            parameters.append(value)
        if heads is not None:
            matching, head_parameters = self._head_condition(heads, unreported=heads.unreported)
            conditions.append(matching)
            parameters += head_parameters
        rows = self._rows(
            f"SELECT {columns} {source} WHERE {' AND '.join(conditions)} "
            "ORDER BY resources.name LIMIT ?",
            (*parameters, limit),
        )
        ldevid_column = 6 + _REPORT_WIDTH
        return [
            DeviceHead(
                device=decode.resource_from_row(row[:6]),
                head=None if row[6] is None else decode.report_from_row(row[6:ldevid_column]),
                ldevid=self._current_ldevid(row[ldevid_column:]),
            )
            for row in rows
        ]

    def _current_ldevid(self, columns: Row) -> CurrentLdevid | None:
        """The current LDevID in a device page's row, from its _CURRENT_LDEVID_FIELDS (none
        when the page was read without them, or the device holds none)."""
        if not columns or columns[0] is None:
            return None
        serial_number, issuer, not_before, not_after = columns
        time = type(self).time_from_value
        return CurrentLdevid(serial_number, issuer, time(not_before), time(not_after))

    def head_reports(self, heads: HeadFilter, *, limit: int) -> builtins.list[ProgressRecord]:
        check_limit(limit)
        matching, parameters = self._head_condition(heads, unreported=False)
        rows = self._rows(
            f"SELECT {REPORT_FIELDS} {_HEAD_REPORTS} WHERE {matching} "
            "ORDER BY reports.received_at DESC, reports.id DESC LIMIT ?",
            (*parameters, limit),
        )
        return [type(self).report_from_row(row) for row in rows]

    def head_counts_by(
        self, fields: Sequence[str], stale_before: datetime
    ) -> dict[str, dict[str | None, dict[tuple[str | None, bool], int]]]:
        if not fields or any(field not in DEVICE_FILTER_FIELDS for field in fields):
            raise StoreError(f"devices are counted by {', '.join(DEVICE_FILTER_FIELDS)}")
        values = ", ".join(self.spec_field.format(field=field) for field in fields)
        # Grouped by every field at once: a row per combination of values that occurs.
        rows = self._rows(
            f"SELECT {values}, reports.progress_type, "  # noqa: S608 - declared fields only
            "reports.received_at < ?, count(*) FROM resources "
            "LEFT JOIN report_heads ON report_heads.serial = resources.name "
            "LEFT JOIN reports ON reports.id = report_heads.latest_id "
            f"WHERE resources.kind = ? GROUP BY {', '.join(map(str, range(1, len(fields) + 3)))}",
            (type(self).time_parameter(stale_before), DEVICE),
        )
        by_field: dict[str, dict[str | None, dict[tuple[str | None, bool], int]]] = {
            field: {} for field in fields
        }
        for row in rows:
            progress_type, stale, count = row[len(fields) :]
            key = (progress_type, bool(stale) if progress_type is not None else False)
            for field, value in zip(fields, row, strict=False):
                heads = by_field[field].setdefault(value, {})
                heads[key] = heads.get(key, 0) + int(count)
        return by_field

    def head_counts(self, stale_before: datetime) -> HeadCounts:
        # One statement, so both counts come from the same snapshot of the database. The
        # device count is the row without a progress type (every report has one): a UNION's
        # rows come in no set order.
        rows = self._rows(
            "SELECT NULL, NULL, count(*) FROM resources WHERE kind = ? UNION ALL "  # noqa: S608
            f"SELECT reports.progress_type, reports.received_at < ?, count(*) {_HEAD_REPORTS} "
            "GROUP BY 1, 2",
            (DEVICE, type(self).time_parameter(stale_before)),
        )
        return HeadCounts(
            devices=next(count for progress_type, _, count in rows if progress_type is None),
            heads={
                (progress_type, bool(stale)): count
                for progress_type, stale, count in rows
                if progress_type is not None
            },
        )

    def _head_condition(
        self, heads: HeadFilter, *, unreported: bool
    ) -> tuple[str, builtins.list[Any]]:
        """SQL over the joined `reports` row of the head, and its parameters."""
        alternatives = ["reports.id IS NULL"] if unreported else []
        parameters: builtins.list[Any] = []
        stale_before = type(self).time_parameter(heads.stale_before)
        for comparison, types in (("<", heads.stale_types), (">=", heads.recent_types)):
            if types:
                alternatives.append(
                    f"(reports.received_at {comparison} ? AND reports.progress_type IN "
                    f"({', '.join(['?'] * len(types))}))"
                )
                parameters += [stale_before, *sorted(types)]
        if not alternatives:
            return "1 = 0", parameters
        return f"({' OR '.join(alternatives)})", parameters

    def audit(self, *, limit: int = 100, after_id: int | None = None) -> builtins.list[AuditEntry]:
        check_limit(limit)
        if after_id is None:
            rows = self._rows(f"{_AUDIT_COLUMNS} ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._rows(
                f"{_AUDIT_COLUMNS} WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            )
            rows.reverse()
        return [type(self).audit_entry_from_row(row) for row in rows]

    def device_events(
        self,
        *,
        serial: str | None = None,
        refused: bool = False,
        before_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[DeviceEvent]:
        check_limit(limit)
        # Each choice walks an index backwards from `before_id`: by serial, the refused ones
        # (a partial index), or all by id.
        conditions = ["id < ?"]
        parameters: builtins.list[Any] = [UNBOUNDED_ID if before_id is None else before_id]
        if serial is not None:
            conditions.append("serial = ?")
            parameters.append(serial)
        if refused:
            conditions.append("refusal IS NOT NULL")
        rows = self._rows(
            f"{_EVENT_SELECT} WHERE {' AND '.join(conditions)} ORDER BY id DESC LIMIT ?",
            (*parameters, limit),
        )
        return [event_from_row(row, type(self).time_from_value) for row in rows]

    def webhook_status(self) -> builtins.list[WebhookStatus]:
        counts = self._rows(
            "SELECT webhook, "
            "sum(CASE WHEN finished_at IS NULL THEN 1 ELSE 0 END), "
            "sum(CASE WHEN delivered THEN 1 ELSE 0 END), "
            "sum(CASE WHEN finished_at IS NOT NULL AND NOT delivered THEN 1 ELSE 0 END), "
            "min(CASE WHEN finished_at IS NULL THEN created_at END), "
            "max(CASE WHEN delivered THEN finished_at END) "
            "FROM webhook_outbox GROUP BY webhook ORDER BY webhook"
        )
        errors: dict[str, str] = dict(
            self._rows(
                "SELECT webhook, last_error FROM webhook_outbox WHERE id IN "
                "(SELECT max(id) FROM webhook_outbox WHERE last_error IS NOT NULL "
                "GROUP BY webhook)"
            )
        )
        time = type(self).time_from_value
        return [
            WebhookStatus(
                webhook=webhook,
                pending=int(pending),
                delivered=int(delivered),
                given_up=int(given_up),
                oldest_pending_at=None if oldest is None else time(oldest),
                last_delivered_at=None if last is None else time(last),
                last_error=errors.get(webhook),
            )
            for webhook, pending, delivered, given_up, oldest, last in counts
        ]

    def refused_between(self, start: datetime, end: datetime) -> dict[str, int]:
        time = type(self).time_parameter
        rows = self._rows(
            "SELECT refusal, count(*) FROM device_events WHERE at >= ? AND at < ? "
            "AND refusal IS NOT NULL GROUP BY refusal",
            (time(start), time(end)),
        )
        return {refusal: int(count) for refusal, count in rows}

    def issued_certificates(
        self, *, device: str | None = None, serial_number: str | None = None, limit: int = 100
    ) -> builtins.list[IssuedCertificate]:
        check_limit(limit)
        chosen = {"device": device, "serial_number": serial_number}
        conditions = [f"{column} = ?" for column, value in chosen.items() if value is not None]
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        rows = self._rows(
            f"SELECT {ISSUED_COLUMNS} FROM issued_certificates {where}"  # noqa: S608
            f"ORDER BY {NEWEST_ISSUED_FIRST} LIMIT ?",
            (*(value for value in chosen.values() if value is not None), limit),
        )
        time = type(self).time_from_value
        return [issued_from_row(row, time) for row in rows]

    def current_ldevids(self) -> builtins.list[tuple[str, datetime]]:
        time = type(self).time_from_value
        rows = self._rows(
            "SELECT device, not_after FROM (SELECT device, not_after, revoked_at, "  # noqa: S608
            f"row_number() OVER (PARTITION BY device ORDER BY {NEWEST_ISSUED_FIRST}) AS newest "
            "FROM issued_certificates) AS issued WHERE newest = 1 AND revoked_at IS NULL"
        )
        return [(device, time(not_after)) for device, not_after in rows]

    def revoked_certificates(self, issuer: str) -> builtins.list[RevokedEntry]:
        time = type(self).time_from_value
        # Certificates revoked before reasons were kept have none: RFC 5280's `unspecified`.
        rows = self._rows(
            "SELECT serial_number, revoked_at, coalesce(revocation_reason, ?) "
            "FROM issued_certificates WHERE issuer = ? AND revoked_at IS NOT NULL "
            "ORDER BY revoked_at, serial_number",
            (DEFAULT_REVOCATION_REASON, issuer),
        )
        return [(serial_number, time(at), reason) for serial_number, at, reason in rows]

    def find_token(self, token_hash: str) -> TokenRecord | None:
        rows = self._rows(f"{_TOKEN_COLUMNS} WHERE token_hash = ?", (token_hash,))
        return type(self).token_from_row(rows[0]) if rows else None

    def tokens(self) -> builtins.list[TokenRecord]:
        return [
            type(self).token_from_row(row) for row in self._rows(f"{_TOKEN_COLUMNS} ORDER BY name")
        ]

"""The reads both SQL backends run alike, written once.

Statements are written with `?` placeholders; a backend whose driver spells them otherwise
(psycopg: `%s`) sets `placeholder`. What differs per backend is how a row decodes (SQLite keeps
timestamps and JSON as text, PostgreSQL returns typed values) and how a connection for reading
is had: each backend gives its row decoders and `_reading`.
"""

from __future__ import annotations

import builtins  # in the store classes a bare `list` would name their list() method
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar

from .base import REPORT_SELECT, REPORT_SUMMARY_SELECT, check_limit
from .model import (
    AuditEntry,
    ProgressRecord,
    ReportSummary,
    StateDelta,
    StoredResource,
    TokenRecord,
)

Row = tuple[Any, ...]
# Above every id either database hands out: "before no id" pages from the newest report.
UNBOUNDED_ID = 2**63 - 1
# Rows fetched at a time when a read streams (a million devices are never all rows at once).
ROW_BATCH = 5000

_RESOURCE_COLUMNS = "SELECT kind, name, spec, revision, created_at, updated_at FROM resources"
_AUDIT_COLUMNS = "SELECT id, at, actor, action, kind, name, detail FROM audit"
_TOKEN_COLUMNS = "SELECT name, token_hash, role, created_at FROM tokens"  # noqa: S105


class SqlReads(ABC):
    """`Store` reads of resources, reports, the audit log and tokens."""

    placeholder: ClassVar[str] = "?"
    resource_from_row: ClassVar[Callable[[Row], StoredResource]]
    spec_from_column: ClassVar[Callable[[Any], Mapping[str, Any]]]
    report_from_row: ClassVar[Callable[[Row], ProgressRecord]]
    audit_entry_from_row: ClassVar[Callable[[Row], AuditEntry]]
    token_from_row: ClassVar[Callable[[Row], TokenRecord]]

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
        decode = type(self).spec_from_column
        for kind, name, spec in self._row_batches(
            "SELECT kind, name, spec FROM resources ORDER BY kind, name"
        ):
            yield kind, name, decode(spec)

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

    def latest_reports(self) -> dict[str, ProgressRecord]:
        rows = self._rows(
            f"{REPORT_SELECT} WHERE id IN (SELECT latest_id FROM report_heads)"  # noqa: S608
        )
        return {record.serial: record for record in map(type(self).report_from_row, rows)}

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

    def find_token(self, token_hash: str) -> TokenRecord | None:
        rows = self._rows(f"{_TOKEN_COLUMNS} WHERE token_hash = ?", (token_hash,))
        return type(self).token_from_row(rows[0]) if rows else None

    def tokens(self) -> builtins.list[TokenRecord]:
        return [
            type(self).token_from_row(row) for row in self._rows(f"{_TOKEN_COLUMNS} ORDER BY name")
        ]

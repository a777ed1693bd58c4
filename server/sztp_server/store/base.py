"""The `Store` protocol every backend implements, and the logic they share.

Backends differ only in SQL dialect, locking and error translation; the rules of `apply`
(revision check, existence checks, audit rows, one revision bump per batch) live here so
SQLite and PostgreSQL cannot drift apart.
"""

from __future__ import annotations

import builtins  # in the store classes a bare `list` would name their list() method
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import groupby
from typing import Any, Protocol

from .errors import ConflictError, StoreError
from .model import AuditEntry, Change, ChangeAction, ProgressRecord, StoredResource, TokenRecord

ResourceKey = tuple[str, str]  # (kind, name)


class Store(Protocol):
    """Persistent state of one sztp-server deployment (shared by all its instances)."""

    def revision(self) -> int:
        """The number of committed `apply` batches: the ETag of the whole state."""
        ...

    def get(self, kind: str, name: str) -> StoredResource | None: ...

    def list(self, kind: str | None = None) -> builtins.list[StoredResource]:
        """Resources ordered by kind, then name; all kinds when `kind` is None."""
        ...

    def apply(
        self,
        changes: Sequence[Change],
        *,
        actor: str,
        expected_revision: int | None = None,
        audit_details: Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Commit every change, or none, in one transaction; return the new revision.

        Raises ConflictError if `expected_revision` is given and differs from the current
        revision, if a create names an existing resource, or if an update or delete names a
        missing one (changes apply in order, so create-then-update of one name is fine).
        Writes one audit row per change (`audit_details[i]`, or {}), and bumps the revision by
        exactly one. Empty `changes` write nothing and return the current revision.
        """
        ...

    def add_report(self, record: ProgressRecord, *, keep_per_device: int = 1000) -> None:
        """Store a progress report, dropping the device's oldest beyond `keep_per_device`."""
        ...

    def reports(self, serial: str, *, limit: int = 1000) -> builtins.list[ProgressRecord]:
        """The device's most recent `limit` reports, oldest first."""
        ...

    def latest_reports(self) -> dict[str, ProgressRecord]:
        """The last report of every device that has reported, keyed by serial."""
        ...

    def delete_reports(self, serial: str) -> None: ...

    def audit(self, *, limit: int = 100, after_id: int | None = None) -> builtins.list[AuditEntry]:
        """Audit entries, newest first.

        Without `after_id`: the newest `limit` entries. With it: the `limit` entries that
        directly follow `after_id`, so a poller that passes the highest id it has seen never
        skips an entry, however many were written in between.
        """
        ...

    def add_token(self, record: TokenRecord) -> None:
        """Store a token; ConflictError if its name (or its hash) is already taken."""
        ...

    def find_token(self, token_hash: str) -> TokenRecord | None: ...

    def tokens(self) -> builtins.list[TokenRecord]:
        """All tokens ordered by name."""
        ...

    def delete_token(self, name: str) -> bool:
        """Delete a token; False if there was none of that name."""
        ...

    def close(self) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Normalise to aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def encode_json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable: {exc}") from None


def encode_specs(changes: Sequence[Change]) -> list[str | None]:
    """JSON text of each change's spec, checked before any transaction starts."""
    encoded: list[str | None] = []
    for change in changes:
        if change.action not in ("create", "update", "delete"):
            raise StoreError(f"unknown change action {change.action!r}")
        if change.action == "delete":
            encoded.append(None)
            continue
        if not isinstance(change.spec, Mapping):
            raise StoreError(f"{change.action} {change.kind}/{change.name} needs a spec object")
        encoded.append(encode_json(dict(change.spec), f"spec of {change.kind}/{change.name}"))
    return encoded


def encode_audit_details(
    changes: Sequence[Change], audit_details: Sequence[Mapping[str, Any]] | None
) -> list[str]:
    if audit_details is None:
        return ["{}"] * len(changes)
    if len(audit_details) != len(changes):
        raise StoreError(
            f"got {len(audit_details)} audit details for {len(changes)} changes; "
            "pass one per change"
        )
    return [
        encode_json(dict(detail), f"audit detail of {change.kind}/{change.name}")
        for change, detail in zip(changes, audit_details, strict=True)
    ]


def check_expected_revision(current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise ConflictError(f"state changed: revision is {current}, expected {expected}")


def check_changes(changes: Sequence[Change], existing: set[ResourceKey]) -> None:
    """Replay the batch over the set of existing keys; raise at the first impossible step."""
    present = set(existing)
    for change in changes:
        key = (change.kind, change.name)
        if change.action == "create":
            if key in present:
                raise ConflictError(f"cannot create {change.kind}/{change.name}: it exists")
            present.add(key)
        else:
            if key not in present:
                raise ConflictError(
                    f"cannot {change.action} {change.kind}/{change.name}: it does not exist"
                )
            if change.action == "delete":
                present.discard(key)


def resource_rows(
    changes: Sequence[Change], specs: Sequence[str | None], revision: int, now: object
) -> Iterator[tuple[ChangeAction, list[tuple[Any, ...]]]]:
    """Statement parameters for runs of consecutive changes with the same action, so each run
    is one executemany while the batch keeps its order (delete-then-create of one name must
    stay in that order). Column order, which both backends' SQL follows:
    create (kind, name, spec, revision, created_at, updated_at); update (spec, revision,
    updated_at, kind, name); delete (kind, name)."""
    for action, run in groupby(range(len(changes)), key=lambda index: changes[index].action):
        indexes = list(run)
        rows: list[tuple[Any, ...]]
        if action == "create":
            rows = [
                (changes[i].kind, changes[i].name, specs[i], revision, now, now) for i in indexes
            ]
        elif action == "update":
            rows = [(specs[i], revision, now, changes[i].kind, changes[i].name) for i in indexes]
        else:
            rows = [(changes[i].kind, changes[i].name) for i in indexes]
        yield action, rows


def report_values(record: ProgressRecord, received_at: object) -> tuple[Any, ...]:
    """INSERT parameters of a progress report, `received_at` in the backend's time form."""
    return (
        record.serial,
        received_at,
        record.progress_type,
        record.message,
        record.source_address,
        record.attempt,
        encode_json([list(pair) for pair in record.ssh_host_keys], "ssh_host_keys"),
        encode_json(list(record.trust_anchor_certs), "trust_anchor_certs"),
    )


def check_report_bound(keep_per_device: int) -> None:
    if keep_per_device < 1:
        raise StoreError(f"keep_per_device must be at least 1, got {keep_per_device}")


def check_limit(limit: int) -> None:
    if limit < 0:
        raise StoreError(f"limit must not be negative, got {limit}")

"""The `Store` protocol every backend implements, and the logic they share.

Backends differ only in SQL dialect, locking and error translation; the rules of `apply`
(revision check, existence checks, audit rows, one revision bump per batch) live here so
SQLite and PostgreSQL cannot drift apart.
"""

from __future__ import annotations

import builtins  # in the store classes a bare `list` would name their list() method
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import groupby
from json.encoder import encode_basestring_ascii
from operator import attrgetter
from typing import Any, Protocol

from sztp.state.resources import DEVICE

from .errors import ConflictError, StoreError
from .model import (
    AuditEntry,
    Change,
    ChangeAction,
    DeviceEvent,
    DeviceHead,
    HeadCounts,
    HeadFilter,
    IssuedCertificate,
    OutboxEntry,
    ProgressRecord,
    ReportOutcome,
    ReportSummary,
    StateDelta,
    StoredResource,
    TokenRecord,
    WebhookStatus,
)

ResourceKey = tuple[str, str]  # (kind, name)
RevokedEntry = tuple[str, datetime, str]  # serial number, revoked at, reason
OutboxRow = tuple[str, str, str]  # webhook, event type, body
# Longer strings in an audit detail are stored as their digest and size.
AUDIT_INLINE_BYTES = 1024
AUDIT_PRUNE_BATCH = 5000
# The largest age, in days, a prune of the audit log takes (a timedelta holds far more).
AUDIT_MAX_AGE_DAYS = 100_000
# The `kind` of audit entries for API tokens (created, deleted), next to the resource kinds.
TOKEN_AUDIT_KIND = "token"  # noqa: S105 - a kind name, not a secret
AUDIT_AUDIT_KIND = "audit"  # an admin's prune of the audit log leaves an entry of this kind
# The spec fields `device_page` filters devices by (text equality).
DEVICE_FILTER_FIELDS = ("profile", "model", "site")


class Store(Protocol):
    """Persistent state of one sztp-server deployment (shared by all its instances)."""

    def revision(self) -> int:
        """The number of committed `apply` batches: the ETag of the whole state."""
        ...

    def get(self, kind: str, name: str) -> StoredResource | None: ...

    def list(self, kind: str | None = None) -> builtins.list[StoredResource]:
        """Resources ordered by kind, then name; all kinds when `kind` is None."""
        ...

    def each_spec(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """(kind, name, spec) of every resource, ordered by kind, then name, read a batch at
        a time: what a snapshot of the state holds."""
        ...

    def changes_since(self, revision: int, *, most: int) -> StateDelta | None:
        """What changed after `revision`, so a reader holding the state at `revision` can
        catch up without reading every resource; None when the store cannot tell (the audit
        entries of those revisions were pruned, or the store is older: restored from a
        backup), or when more than `most` resources were written since: read the whole state
        then."""
        ...

    def apply(
        self,
        changes: Sequence[Change],
        *,
        actor: str,
        expected_revision: int | None = None,
        audit_details: Iterable[Mapping[str, Any]] | None = None,
    ) -> int:
        """Commit every change, or none, in one transaction; return the new revision.

        Raises ConflictError if `expected_revision` is given and differs from the current
        revision, if a create names an existing resource, or if an update or delete names a
        missing one (changes apply in order, so create-then-update of one name is fine).
        Writes one audit row per change (its detail from `audit_details`, one per change, read
        as the rows are written; or {}), and bumps the revision by exactly one. Empty `changes`
        write nothing and return the current revision.
        """
        ...

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
        """Store a progress report of an existing device; NO_DEVICE, and nothing stored, when no
        device has that serial (deleted since the caller authenticated it).

        With `repeat_window`, a report equal to the device's newest one (type, message, host
        keys, trust anchors; not the source address or attempt, which the server assigns)
        and received within `repeat_window` of it is not stored again: REPEATED. A device
        whose answer was lost sends its report again (RFC 8572 reports carry no id); keeping
        only the newest report in the comparison means a device that really starts over
        after another report is always stored, and a dropped repeat never changes a status.

        `outbox`: webhook events the report causes, queued in the same transaction when it
        is stored (and only then), due at once.

        Then drops the device's oldest reports beyond `keep_per_device` reports or beyond
        `bytes_per_device` bytes (`report_size` summed; None: no byte bound). The new report
        is always kept, and so is the one that decides the device's status.

        `decides_status` (see `sztp.progress.decides_status`): whether the report becomes the
        one `report_summary` gives as latest; a late report only joins the history.
        """
        ...

    def reports(
        self, serial: str, *, limit: int = 1000, before_id: int | None = None
    ) -> builtins.list[ProgressRecord]:
        """The device's most recent `limit` reports (with an id below `before_id` if given),
        oldest first."""
        ...

    def report_summary(self, serial: str) -> ReportSummary | None:
        """The device's latest report and the count and size of its history; None if it has
        no report."""
        ...

    def device_page(
        self,
        *,
        after: str | None,
        limit: int,
        spec_equals: Mapping[str, str] | None = None,
        heads: HeadFilter | None = None,
        ldevid_at: datetime | None = None,
    ) -> builtins.list[DeviceHead]:
        """Up to `limit` devices whose name sorts after `after` (from the first when None), in
        name order (Python's `str` order), each with its head report: those whose spec fields
        (of DEVICE_FILTER_FIELDS) equal `spec_equals`, and that `heads` chooses. With
        `ldevid_at`, each also with its current LDevID at that moment (its newest issued
        certificate, unless revoked or expired by then).

        One statement. It reads the devices from `after` on until `limit` of them match: a spec
        filter reads only the devices it matches (an index per field), but a `heads` filter
        that few devices pass reads further per page (never a device twice over the pages of a
        listing)."""
        ...

    def head_reports(self, heads: HeadFilter, *, limit: int) -> builtins.list[ProgressRecord]:
        """The `limit` most recently received head reports that `heads` chooses, newest first
        (`heads.unreported` is moot: a device without a report has no head)."""
        ...

    def head_counts_by(
        self, fields: Sequence[str], stale_before: datetime
    ) -> dict[str, dict[str | None, dict[tuple[str | None, bool], int]]]:
        """For each of `fields` (of DEVICE_FILTER_FIELDS), the devices grouped by its value
        (None: without it), each group's head reports counted by (progress type, received
        before `stale_before`), devices without a report under (None, False): one pass over
        the devices for all the fields."""
        ...

    def head_counts(self, stale_before: datetime) -> HeadCounts:
        """How many devices there are, and their head reports counted by progress type and by
        whether they were received before `stale_before`: every device's status without
        reading any device (those without a head report have none)."""
        ...

    def delete_reports(self, serial: str) -> None:
        """Forget the device's reports (`apply` does this itself when it deletes a device)."""
        ...

    def claim_webhook_deliveries(
        self, now: datetime, lease_until: datetime, limit: int
    ) -> builtins.list[OutboxEntry]:
        """Up to `limit` outbox entries due at `now`, oldest first, each made due again only
        at `lease_until` so that no other claimer (another instance) takes them meanwhile."""
        ...

    def record_webhook_attempt(
        self, entry_id: int, now: datetime, *, error: str | None, retry_at: datetime | None
    ) -> None:
        """One delivery try of an entry: without `error` delivered; with one, tried again at
        `retry_at`, or given up when that is None."""
        ...

    def webhook_status(self) -> builtins.list[WebhookStatus]:
        """Each webhook's pending, delivered and given-up entries (as kept), by name."""
        ...

    def prune_webhook_outbox(self, before: datetime, *, marks_before: datetime) -> int:
        """Drop entries finished (delivered or given up) before `before`, and marks made
        before `marks_before`; how many entries."""
        ...

    def queue_webhook_events_once(
        self, mark: str, now: datetime, outbox: Sequence[OutboxRow]
    ) -> bool:
        """Queue `outbox` unless `mark` was queued before (by any instance): whether it was
        queued now. The mark and the entries are written in one transaction."""
        ...

    def refused_between(self, start: datetime, end: datetime) -> dict[str, int]:
        """The flight recorder's refused requests from `start` to before `end`, counted by
        refusal."""
        ...

    def add_device_events(
        self, events: Sequence[DeviceEvent], *, keep: int, before: datetime | None = None
    ) -> None:
        """Store the flight recorder's `events`, in their order; then drop the oldest events
        beyond the newest `keep` (about: ids from concurrent writers may leave gaps), and
        those that happened before `before`."""
        ...

    def device_events(
        self,
        *,
        serial: str | None = None,
        refused: bool = False,
        before_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[DeviceEvent]:
        """The most recent `limit` events with an id below `before_id` (if given), newest
        first: only those naming `serial` if given, only refused ones with `refused`."""
        ...

    def audit(self, *, limit: int = 100, after_id: int | None = None) -> builtins.list[AuditEntry]:
        """Audit entries, newest first.

        Without `after_id`: the newest `limit` entries. With it: the `limit` entries that
        directly follow `after_id`, so a poller that passes the highest id it has seen never
        skips an entry, however many were written in between.
        """
        ...

    def prune_audit(
        self, before: datetime, *, actor: str | None = None, dry_run: bool = False
    ) -> int:
        """Delete the audit entries written before `before`; return how many went, or with
        `dry_run` how many would go. A prune `actor` asked for leaves one entry saying so;
        the server's own retention (no actor) leaves none.

        Deletes in batches of AUDIT_PRUNE_BATCH, each its own short transaction, so admin
        writes are never held up for long; instances pruning at the same time share the
        work, and an interrupted prune leaves whole entries that the next one removes.
        """
        ...

    def add_token(self, record: TokenRecord, *, actor: str) -> None:
        """Store a token, and an audit entry naming `actor` (never the token or its hash);
        ConflictError if its name (or its hash) is already taken."""
        ...

    def find_token(self, token_hash: str) -> TokenRecord | None: ...

    def tokens(self) -> builtins.list[TokenRecord]:
        """All tokens ordered by name."""
        ...

    def delete_token(self, name: str, *, actor: str, keep_one_of_role: str | None = None) -> bool:
        """Delete a token with an audit entry naming `actor`; False if there was none of that
        name (and no audit entry).

        With `keep_one_of_role`, the last token of that role is kept (ConflictError): the
        check and the delete are one transaction that excludes other writers of that role's
        tokens, so instances deleting the last two at once cannot remove both.
        """
        ...

    def add_issued_certificate(self, record: IssuedCertificate) -> None:
        """Keep an LDevID issued to a device (a repeated issuer and serial number replaces
        nothing: ConflictError)."""
        ...

    def issued_certificates(
        self, *, device: str | None = None, serial_number: str | None = None, limit: int = 100
    ) -> builtins.list[IssuedCertificate]:
        """The newest issued certificates first, of one device or of all, with one serial
        number (of any issuer) or any."""
        ...

    def revoke_certificate(
        self, issuer: str, serial_number: str, at: datetime, reason: str, *, actor: str
    ) -> IssuedCertificate | None:
        """Mark a certificate revoked at `at` for `reason` (an RFC 5280 CRLReason name), with
        an audit entry naming `actor`, the device, the issuer and the serial number; the
        certificate as stored then, or None if `issuer` issued no such serial number.

        Idempotent: a certificate revoked before keeps its first time and reason, and no
        second audit entry is written (concurrent revocations by several instances too)."""
        ...

    def current_ldevids(self) -> builtins.list[tuple[str, datetime]]:
        """(device, not after) of each device's newest LDevID (NEWEST_ISSUED_FIRST), unless
        it is revoked; expired ones too."""
        ...

    def revoked_certificates(self, issuer: str) -> builtins.list[RevokedEntry]:
        """(serial number, revoked at, reason) of each certificate `issuer` issued that was
        revoked, in the order they were: what its CRL lists. Reads only the revoked ones."""
        ...

    def close(self) -> None: ...

    def reopener(self) -> Callable[[], Store]:
        """How another process opens this store (picklable; it holds the URL's password):
        the admin writer process writes through its own connections."""
        ...


ISSUED_COLUMNS = (
    "issuer, serial_number, device, profile, subject, not_before, not_after, issued_at, "
    "certificate, revoked_at, revocation_reason"
)
# The order of a device's issued certificates, newest first: the first is its current LDevID
# unless revoked (or, for the device listing, expired).
NEWEST_ISSUED_FIRST = "issued_at DESC, serial_number, issuer"
# The kind of the audit entries of revoked certificates, named `issuer/serial number`.
CERTIFICATE_AUDIT_KIND = "certificate"


ISSUED_INSERT = (
    f"INSERT INTO issued_certificates ({ISSUED_COLUMNS}) "  # noqa: S608 - constant columns
    f"VALUES ({', '.join('?' * (ISSUED_COLUMNS.count(',') + 1))}) ON CONFLICT DO NOTHING"
)


def issued_conflict(record: IssuedCertificate) -> ConflictError:
    return ConflictError(
        f"issuer {record.issuer} issued serial number {record.serial_number} before"
    )


def issued_row(record: IssuedCertificate, time: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The row of an issued certificate, its times as the backend stores them."""
    return (
        record.issuer,
        record.serial_number,
        record.device,
        record.profile,
        record.subject,
        time(record.not_before),
        time(record.not_after),
        time(record.issued_at),
        record.certificate_pem,
        None if record.revoked_at is None else time(record.revoked_at),
        record.revocation_reason,
    )


def issued_from_row(row: Sequence[Any], time: Callable[[Any], datetime]) -> IssuedCertificate:
    """The issued certificate an ISSUED_COLUMNS row holds, its times read by the backend's
    `time`."""
    issuer, serial_number, device, profile, subject, not_before, not_after = row[:7]
    issued_at, certificate, revoked_at, revocation_reason = row[7:]
    return IssuedCertificate(
        issuer=issuer,
        serial_number=serial_number,
        device=device,
        profile=profile,
        subject=subject,
        not_before=time(not_before),
        not_after=time(not_after),
        issued_at=time(issued_at),
        certificate_pem=certificate,
        revoked_at=None if revoked_at is None else time(revoked_at),
        revocation_reason=revocation_reason,
    )


# Marks a certificate revoked unless it was; parameters: revoked at, reason, issuer, serial.
REVOKE_CERTIFICATE = (
    "UPDATE issued_certificates SET revoked_at = ?, revocation_reason = ? "
    "WHERE issuer = ? AND serial_number = ? AND revoked_at IS NULL"
)
ISSUED_SELECT_ONE = (
    f"SELECT {ISSUED_COLUMNS} FROM issued_certificates "  # noqa: S608 - constants only
    "WHERE issuer = ? AND serial_number = ?"
)


def revoke_in(
    connection: Any,
    statements: tuple[str, str],
    revocation: tuple[Any, str, str, str],
    time: Callable[[Any], datetime],
) -> tuple[IssuedCertificate | None, bool]:
    """In an open transaction, revoke a certificate unless it was: `statements` are
    REVOKE_CERTIFICATE and ISSUED_SELECT_ONE in the driver's placeholders, `revocation` their
    parameters (revoked at, reason, issuer, serial number). The certificate as stored now
    (None when there is none) and whether this call revoked it."""
    revoke, select = statements
    revoked = bool(connection.execute(revoke, revocation).rowcount)
    row = connection.execute(select, revocation[2:]).fetchone()
    return (None, False) if row is None else (issued_from_row(row, time), revoked)


def revocation_audit_row(record: IssuedCertificate) -> tuple[str, str, str]:
    """(kind, name, detail JSON) of the audit entry recording a certificate's revocation."""
    detail = {
        "device": record.device,
        "issuer": record.issuer,
        "serial_number": record.serial_number,
        "reason": record.revocation_reason,
    }
    return (
        CERTIFICATE_AUDIT_KIND,
        f"{record.issuer}/{record.serial_number}",
        encode_json(detail, "revocation"),
    )


def check_not_last_of_role(name: str, role: str, others_of_role: int) -> None:
    """Refuse to delete the only token left of its role (counted under the caller's lock)."""
    if others_of_role == 0:
        raise ConflictError(f"token {name!r} is the last {role} token; create another one first")


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """Normalise to aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# One encoder for every row: json.dumps with options makes a new one per call.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _compact_encoder() -> Callable[[Any], str]:
    """`_JSON.encode`, less the encoder it makes for every value (JSONEncoder.encode builds the
    C accelerator's encoder each time): made once here when the interpreter has one. Without
    the check for circular references, which a spec decoded from JSON cannot hold."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return _JSON.encode
    # (markers, default, string encoder, indent, key separator, item separator, sort_keys,
    # skipkeys, allow_nan), as JSONEncoder.iterencode passes them.
    encode = make(None, _JSON.default, encode_basestring_ascii, None, ":", ",", False, False, False)
    return lambda value: "".join(encode(value, 0))


_encode_compact = _compact_encoder()


_JSON_DECODER = json.JSONDecoder()


def decode_stored_json(text: str) -> Any:
    """A JSON value as `encode_json` stored it: compact, nothing around it, so without the
    checks `json.loads` adds for that (a full read of the state decodes a million)."""
    return _JSON_DECODER.raw_decode(text)[0]


def decode_stored_json_texts(texts: Sequence[str]) -> builtins.list[Any]:
    """`decode_stored_json` of each text, decoded as one JSON array: one call for a batch of
    rows rather than one per row. A text that is not one JSON value would shift the values
    after it: then each is decoded alone, exactly as `decode_stored_json` decodes it."""
    try:
        values = _JSON_DECODER.raw_decode(f"[{','.join(texts)}]")[0] if texts else []
    except ValueError:
        values = None
    if values is None or len(values) != len(texts):
        return [decode_stored_json(text) for text in texts]
    return values


def encode_json(value: Any, what: str) -> str:
    try:
        return _encode_compact(value)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{what} is not JSON-serialisable: {exc}") from None


def check_change_shapes(changes: Sequence[Change]) -> None:
    """Every action known, every create and update with a spec object: checked before any
    transaction starts. Specs and audit details are encoded as their rows are written (a
    million devices' JSON is never held at once): one that cannot be rolls the write back."""
    for change in changes:
        if change.action not in ("create", "update", "delete"):
            raise StoreError(f"unknown change action {change.action!r}")
        if change.action != "delete" and not isinstance(change.spec, Mapping):
            raise StoreError(f"{change.action} {change.kind}/{change.name} needs a spec object")


def _change_json(value: Any, part: str, change: Change) -> str:
    """`encode_json` for a row of a write: the change is named only if it fails (a million
    rows are encoded per write)."""
    try:
        return _encode_compact(value)
    except (TypeError, ValueError):
        return encode_json(value, f"{part} of {change.kind}/{change.name}")


def _spec_json(change: Change) -> str:
    return _change_json(dict(change.spec or {}), "spec", change)


def _audit_detail_json(detail: Mapping[str, Any], change: Change) -> str:
    text = _change_json(dict(detail), "audit detail", change)
    # JSON text is at least as long as the UTF-8 of each string in it (non-ASCII is escaped):
    # a short text has no string to digest, which is nearly every device's.
    if len(text) <= AUDIT_INLINE_BYTES:
        return text
    return _change_json(_digest_large_strings(dict(detail)), "audit detail", change)


def _digest_large_strings(value: Any) -> Any:
    """`value` with every string longer than AUDIT_INLINE_BYTES (UTF-8), at any depth, replaced
    by {"sha256": hex digest, "size": bytes}: the log shows that a voucher, script or
    configuration changed, and to what, without holding a copy of each version."""
    if isinstance(value, str):
        # A character is at most 4 bytes: most strings are settled without encoding them.
        if len(value) * 4 <= AUDIT_INLINE_BYTES:
            return value
        encoded = value.encode("utf-8", "surrogatepass")
        if len(encoded) <= AUDIT_INLINE_BYTES:
            return value
        return {"sha256": hashlib.sha256(encoded).hexdigest(), "size": len(encoded)}
    if isinstance(value, Mapping):
        return {key: _digest_large_strings(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_digest_large_strings(item) for item in value]
    return value


def token_audit_row(record: TokenRecord) -> tuple[str, str, str]:
    """(kind, name, detail JSON) of the audit entry for a token's creation or deletion."""
    return TOKEN_AUDIT_KIND, record.name, encode_json({"role": record.role}, "token role")


def prune_audit_row(before: datetime, pruned: int) -> tuple[str, str, str]:
    """(kind, name, detail JSON) of the audit entry recording a prune of the audit log."""
    cutoff = as_utc(before).isoformat().replace("+00:00", "Z")
    return AUDIT_AUDIT_KIND, cutoff, encode_json({"before": cutoff, "entries": pruned}, "prune")


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
    changes: Sequence[Change], revision: int, now: object
) -> Iterator[tuple[ChangeAction, Iterator[tuple[Any, ...]]]]:
    """Statement parameters for runs of consecutive changes with the same action, so each run
    is one statement (executemany, or COPY) while the batch keeps its order (delete-then-create
    of one name must stay in that order); each run is to be written before the next is read.
    Column order, which both backends' SQL follows: create (kind, name, spec, revision,
    created_at, updated_at); update (spec, revision, updated_at, kind, name); delete (kind,
    name)."""
    for action, run in groupby(changes, key=attrgetter("action")):
        if action == "create":
            yield (
                action,
                (
                    (change.kind, change.name, _spec_json(change), revision, now, now)
                    for change in run
                ),
            )
        elif action == "update":
            yield (
                action,
                ((_spec_json(change), revision, now, change.kind, change.name) for change in run),
            )
        else:
            yield action, ((change.kind, change.name) for change in run)


def audit_rows(
    changes: Sequence[Change],
    audit_details: Iterable[Mapping[str, Any]] | None,
    *,
    at: object,
    actor: str,
    revision: int,
) -> Iterator[tuple[Any, ...]]:
    """Rows (at, actor, action, kind, name, detail, revision), one per change with its audit
    detail (or {}) encoded as JSON, its large strings as digests."""
    details = None if audit_details is None else iter(audit_details)
    for change in changes:
        detail = {} if details is None else next(details, None)
        if detail is None:
            raise StoreError("fewer audit details than changes; pass one per change")
        yield (
            at,
            actor,
            change.action,
            change.kind,
            change.name,
            _audit_detail_json(detail, change),
            revision,
        )
    if details is not None and next(details, None) is not None:
        raise StoreError("more audit details than changes; pass one per change")


def deleted_devices(changes: Sequence[Change]) -> list[tuple[str]]:
    """Serials of the devices `changes` delete, as statement parameters: their reports go in
    the same transaction, so a device re-created under the serial starts with no history."""
    return [
        (change.name,) for change in changes if change.action == "delete" and change.kind == DEVICE
    ]


def report_size(record: ProgressRecord) -> int:
    """The bytes a report holds that the device chose: message, host keys, trust anchors (UTF-8
    and base64 text). The per-device byte budget counts these."""
    message = len(record.message.encode()) if record.message is not None else 0
    keys = sum(len(algorithm) + len(key) for algorithm, key in record.ssh_host_keys)
    return message + keys + sum(len(cert) for cert in record.trust_anchor_certs)


def report_values(record: ProgressRecord, received_at: object) -> tuple[Any, ...]:
    """INSERT parameters of a progress report, `received_at` in the backend's time form; the
    column order of REPORT_COLUMNS."""
    return (
        record.serial,
        received_at,
        record.progress_type,
        record.message,
        record.source_address,
        record.attempt,
        encode_json([list(pair) for pair in record.ssh_host_keys], "ssh_host_keys"),
        encode_json(list(record.trust_anchor_certs), "trust_anchor_certs"),
        record.truncated,
        report_size(record),
    )


# What makes a report the same one sent again (see `Store.add_report`): all the device sent.
_REPEAT_COLUMNS = ("progress_type", "message", "ssh_host_keys", "trust_anchor_certs", "truncated")
_JSON_COLUMNS = frozenset({"ssh_host_keys", "trust_anchor_certs"})


def repeated_report_query(json_cast: str = "") -> str:
    """A row when the device's newest report but the new one is equal to it and received no
    earlier than a given time. Parameters (`?`): the serial, the new report's id, that time
    in the backend's form, then `repeat_values` of the new report. `json_cast` turns a
    parameter into the type the JSON columns have (PostgreSQL's jsonb).

    Newest by id, other than the new one's: on PostgreSQL a concurrent copy may have taken a
    higher id and committed first, and it is the one to compare with."""
    equal = " AND ".join(
        f"{column} IS NOT DISTINCT FROM ?{json_cast if column in _JSON_COLUMNS else ''}"
        for column in _REPEAT_COLUMNS
    )
    newest_other = "(SELECT max(id) FROM reports WHERE serial = ? AND id <> ?)"
    return f"SELECT 1 FROM reports WHERE id = {newest_other} AND received_at >= ? AND {equal}"  # noqa: S608 - constants only


def repeat_values(values: Sequence[Any]) -> tuple[Any, ...]:
    """The values of `report_values` that `repeated_report_query` compares, in its order."""
    return tuple(values[_REPORT_COLUMN_NAMES.index(column)] for column in _REPEAT_COLUMNS)


_TRIM_REPORTS = (
    "DELETE FROM reports WHERE id IN (SELECT id FROM ("
    "SELECT id, row_number() OVER newest_first AS position, "
    "sum(size_bytes) OVER newest_first AS kept_bytes "
    "FROM reports WHERE serial = ? AND id NOT IN (?, ?) "
    "WINDOW newest_first AS (ORDER BY id DESC)"
    ") AS ranked WHERE position > ? OR kept_bytes > ?)"
)


def trim_reports(
    run: Callable[[str, Sequence[Any]], Any],
    serial: str,
    newest_id: int,
    keep_per_device: int,
    byte_bound: int,
) -> None:
    """Drop a device's oldest reports beyond either bound, inside the caller's transaction
    (`run` executes a statement written with `?` placeholders). The newest report and the one
    that decides the status (often the same) always stay, so a device that goes on reporting
    after bootstrap-complete does not push that report out."""
    (deciding_id,) = run(
        "SELECT latest_id FROM report_heads WHERE serial = ?", (serial,)
    ).fetchone()
    (fixed_bytes,) = run(
        "SELECT coalesce(sum(size_bytes), 0) FROM reports WHERE id IN (?, ?)",
        (newest_id, deciding_id),
    ).fetchone()
    fixed = len({newest_id, deciding_id})
    run(
        _TRIM_REPORTS,
        (serial, newest_id, deciding_id, keep_per_device - fixed, byte_bound - fixed_bytes),
    )


OUTBOX_INSERT = (
    "INSERT INTO webhook_outbox (webhook, event_type, body, created_at, next_attempt_at) "
    "VALUES (?, ?, ?, ?, ?)"
)
OUTBOX_CLAIM = (
    "UPDATE webhook_outbox SET next_attempt_at = ? WHERE id IN (SELECT id FROM webhook_outbox "
    "WHERE finished_at IS NULL AND next_attempt_at <= ? ORDER BY id LIMIT ?{lock}) "
    "RETURNING id, webhook, event_type, body, created_at, attempts"
)
OUTBOX_DELIVERED = (
    "UPDATE webhook_outbox SET attempts = attempts + 1, finished_at = ?, delivered = ?, "
    "last_error = NULL WHERE id = ?"
)
OUTBOX_RETRY = (
    "UPDATE webhook_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
    "WHERE id = ?"
)
OUTBOX_GIVEN_UP = (
    "UPDATE webhook_outbox SET attempts = attempts + 1, finished_at = ?, delivered = ?, "
    "last_error = ? WHERE id = ?"
)
OUTBOX_PRUNE = "DELETE FROM webhook_outbox WHERE finished_at < ?"
MARKS_PRUNE = "DELETE FROM webhook_marks WHERE at < ?"
MARK_INSERT = "INSERT INTO webhook_marks (mark, at) VALUES (?, ?) ON CONFLICT (mark) DO NOTHING"


def outbox_rows(
    rows: Sequence[OutboxRow], created_at: object
) -> builtins.list[tuple[str, str, str, object, object]]:
    """OUTBOX_INSERT parameters of `rows`, made and due at `created_at` (the backend's form)."""
    return [(webhook, kind, body, created_at, created_at) for webhook, kind, body in rows]


def record_attempt(
    run: Callable[[str, Sequence[Any]], Any],
    entry_id: int,
    now: object,
    error: str | None,
    retry_at: object | None,
) -> None:
    """`Store.record_webhook_attempt` inside the caller's transaction (`run` executes a
    statement written with `?` placeholders; times in the backend's form)."""
    if error is None:
        run(OUTBOX_DELIVERED, (now, True, entry_id))
    elif retry_at is not None:
        run(OUTBOX_RETRY, (retry_at, error, entry_id))
    else:
        run(OUTBOX_GIVEN_UP, (now, False, error, entry_id))


EVENT_COLUMNS = (
    "at, rpc, status, serial, authenticated, refusal, remote, duration_us, profile, image, detail"
)


def event_from_row(row: Sequence[Any], decode_time: Callable[[Any], datetime]) -> DeviceEvent:
    """The event an `id, EVENT_COLUMNS` row holds, its time read by the backend's
    `decode_time`."""
    event_id, at, rpc, status, serial, authenticated, refusal, remote, duration_us = row[:9]
    profile, image, detail = row[9:]
    return DeviceEvent(
        at=decode_time(at),
        rpc=rpc,
        status=status,
        serial=serial,
        authenticated=bool(authenticated),
        refusal=refusal,
        remote=remote,
        duration_us=duration_us,
        profile=profile,
        image=image,
        detail=detail,
        id=event_id,
    )


def events_json(events: Sequence[DeviceEvent], at_text: Callable[[datetime], str]) -> str:
    """The events as one JSON array of rows in the column order of EVENT_COLUMNS, `at` as
    `at_text` writes it: inserted by one statement, the database walks the rows itself (a
    parameter bound per value, and the interpreter's lock taken back per row, cost several
    times more while devices are being served)."""
    return json.dumps(
        [
            [
                at_text(event.at),
                event.rpc,
                event.status,
                event.serial,
                event.authenticated,
                event.refusal,
                event.remote,
                event.duration_us,
                event.profile,
                event.image,
                event.detail,
            ]
            for event in events
        ],
        separators=(",", ":"),
    )


REPORT_COLUMNS = (
    "serial, received_at, progress_type, message, source_address, attempt, ssh_host_keys, "
    "trust_anchor_certs, truncated, size_bytes"
)
_REPORT_COLUMN_NAMES = REPORT_COLUMNS.split(", ")
# What the backends read back into a ProgressRecord (their `_report` unpacks this order);
# qualified, so it may be joined with report_heads.
REPORT_FIELDS = (
    "reports.id, reports.serial, received_at, progress_type, message, source_address, "
    "attempt, ssh_host_keys, trust_anchor_certs, truncated"
)
REPORT_SELECT = f"SELECT {REPORT_FIELDS} FROM reports"  # noqa: S608 - constants only
# A device's latest report, then its report count and bytes; one parameter, the serial.
REPORT_SUMMARY_SELECT = (
    f"SELECT {REPORT_FIELDS}, report_count, report_bytes FROM reports "  # noqa: S608
    "JOIN report_heads ON reports.id = report_heads.latest_id WHERE report_heads.serial = "
)


def check_report_bound(keep_per_device: int, bytes_per_device: int | None = None) -> None:
    if keep_per_device < 1:
        raise StoreError(f"keep_per_device must be at least 1, got {keep_per_device}")
    if bytes_per_device is not None and bytes_per_device < 1:
        raise StoreError(f"bytes_per_device must be at least 1, got {bytes_per_device}")


def check_limit(limit: int) -> None:
    if limit < 0:
        raise StoreError(f"limit must not be negative, got {limit}")

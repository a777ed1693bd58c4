"""Plain records exchanged with a `Store`; backends convert them to and from rows.

Every datetime handed out is timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sztp.progress import StoredReport

# The planner's change is what the store applies: one type from plan to commit.
from sztp.state.plan import Action as ChangeAction
from sztp.state.plan import Change

__all__ = [
    "AuditEntry",
    "Change",
    "ChangeAction",
    "DeviceEvent",
    "DeviceHead",
    "HeadCounts",
    "HeadFilter",
    "ProgressRecord",
    "ReportSummary",
    "StoredResource",
    "TokenRecord",
]


@dataclass(frozen=True)
class StoredResource:
    """An admin resource as stored: `spec` is a JSON object validated before it got here."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    revision: int  # store revision of the resource's last change
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StateDelta:
    """How the resources changed after some revision, up to `revision` (or a little newer):
    the resources written since, as stored now, and the (kind, name) of those deleted since."""

    revision: int
    written: tuple[StoredResource, ...]
    deleted: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ProgressRecord:
    """One `report-progress` call from a device.

    `truncated`: the server shortened the message or left out host keys or trust anchors to
    keep the report within its size cap. `id` is given by the store (0 until stored); ids grow
    with arrival, so they order a device's reports and serve as page cursors.
    """

    serial: str
    received_at: datetime
    progress_type: str
    message: str | None
    source_address: str | None
    attempt: int
    ssh_host_keys: tuple[tuple[str, str], ...] = ()  # (algorithm, base64 key-data)
    trust_anchor_certs: tuple[str, ...] = ()  # base64 DER CMS
    truncated: bool = False
    id: int = 0

    def stored_report(self) -> StoredReport:
        """What the status derivation of `sztp.progress` reads of this report."""
        return StoredReport(
            received_at=self.received_at,
            progress_type=self.progress_type,
            message=self.message,
            source_address=self.source_address,
            attempt=self.attempt,
        )


class ReportOutcome(StrEnum):
    """What `Store.add_report` did with a report."""

    STORED = "stored"
    # Equal to the device's newest report, received within the repeat window: the device sent
    # it again because the answer to the first was lost, and it is stored once.
    REPEATED = "repeated"
    NO_DEVICE = "no-device"  # deleted since the caller authenticated it; nothing stored


@dataclass(frozen=True)
class DeviceEvent:
    """One device request as the flight recorder keeps it: what was asked, by whom, and how it
    ended. `serial` is the device the request proved to be (`authenticated`), or else the one
    it claimed, if any: text from the network, bounded and never trusted. `refusal` is a
    `sztp.refusals.Refusal` value, None for a request served. `profile` and `image` name what
    a served get-bootstrapping-data came from (the operator's names, as they were then).
    `detail`, for get-bootstrapping-data: what the device said of itself (hw-model, os-name,
    os-version: its text, bounded) and why no data could be served. `id` is given by the
    store."""

    at: datetime
    rpc: str
    status: int
    serial: str | None
    authenticated: bool
    refusal: str | None
    remote: str | None
    duration_us: int
    profile: str | None = None
    image: str | None = None
    detail: str | None = None
    id: int = 0


@dataclass(frozen=True)
class OutboxEntry:
    """An event waiting in the webhook outbox: its body is sent as stored, every try."""

    id: int
    webhook: str
    event_type: str
    body: str
    created_at: datetime
    attempts: int


@dataclass(frozen=True)
class WebhookStatus:
    """One webhook's deliveries as the outbox holds them (finished ones for a while)."""

    webhook: str
    pending: int
    delivered: int
    given_up: int
    oldest_pending_at: datetime | None
    last_delivered_at: datetime | None
    last_error: str | None


@dataclass(frozen=True)
class ReportSummary:
    """The latest report that decides a device's status (`sztp.progress.decides_status`) and
    what its stored history holds, without reading it."""

    latest: ProgressRecord
    report_count: int
    report_bytes: int  # sum of `report_size` over the stored reports


@dataclass(frozen=True)
class CurrentLdevid:
    """A device's current LDevID as the device listing shows it (`sztp.current_ldevid`): its
    newest issued certificate, while that one is neither revoked nor expired."""

    serial_number: str
    issuer: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class DeviceHead:
    """A device and its head report (the one `report_summary` gives as latest), if any, and
    its current LDevID when the page was asked for it."""

    device: StoredResource
    head: ProgressRecord | None
    ldevid: CurrentLdevid | None = None


@dataclass(frozen=True)
class HeadFilter:
    """Devices chosen by their head report: those without one when `unreported`, those whose
    head report's progress type is in `recent_types` and was received at or after
    `stale_before`, and those whose head is in `stale_types` and was received before it.

    The store knows nothing of statuses: the admin API turns one into this (see
    `fleet_status.status_filter`), so the rule of what each status means stays in
    `sztp.progress`."""

    unreported: bool
    recent_types: frozenset[str]
    stale_types: frozenset[str]
    stale_before: datetime


@dataclass(frozen=True)
class HeadCounts:
    """How many devices exist, and how many head reports there are of each progress type,
    split by whether they were received before the `stale_before` the caller gave."""

    devices: int
    heads: Mapping[tuple[str, bool], int]  # (progress type, stale) -> count


@dataclass(frozen=True)
class AuditEntry:
    """One committed admin change: of a resource, an API token (kind "token") or the audit log
    itself (kind "audit", a prune); `detail` is secret-free by contract with the caller, its
    long strings stored as digests (see `encode_audit_details`)."""

    id: int
    at: datetime
    actor: str
    action: str
    kind: str
    name: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class TokenRecord:
    """An API token; only its hash is ever stored."""

    name: str
    token_hash: str
    role: str  # "admin" | "read-only"
    created_at: datetime


@dataclass(frozen=True)
class IssuedCertificate:
    """An LDevID issued to a device (RFC 9646): kept for status, expiry and revocation."""

    issuer: str  # the configured issuer's name
    serial_number: str  # the certificate's, lower-case hex
    device: str
    profile: str | None
    subject: str  # RFC 4514
    not_before: datetime
    not_after: datetime
    issued_at: datetime
    certificate_pem: str
    revoked_at: datetime | None = None
    revocation_reason: str | None = None  # an RFC 5280 CRLReason name, when revoked

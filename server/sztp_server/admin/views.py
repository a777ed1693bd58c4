"""What the admin API shows of stored things: resources (secrets hidden), progress reports,
a device's derived status, planned changes, audit entries and tokens, as JSON-ready values."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any

from sztp.state.plan import Change
from sztp.state.resources import public_fields, public_view

from ..config import Webhook
from ..expiry import ExpiringSoon
from ..store.model import (
    AuditEntry,
    CurrentLdevid,
    DeviceEvent,
    IssuedCertificate,
    ProgressRecord,
    StoredResource,
    TokenRecord,
    WebhookStatus,
)


def time_text(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def etag(revision: int) -> dict[str, str]:
    """The ETag header: the revision of the whole state."""
    return {"ETag": f'"{revision}"'}


def resource_view(resource: StoredResource) -> dict[str, Any]:
    return {
        "name": resource.name,
        "spec": public_view(resource.kind, resource.spec),
        "revision": resource.revision,
        "created_at": time_text(resource.created_at),
        "updated_at": time_text(resource.updated_at),
    }


def report_view(record: ProgressRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "serial": record.serial,
        "received_at": time_text(record.received_at),
        "progress_type": record.progress_type,
        "message": record.message,
        "source_address": record.source_address,
        "attempt": record.attempt,
        "ssh_host_keys": [
            {"algorithm": algorithm, "key_data": key} for algorithm, key in record.ssh_host_keys
        ],
        "truncated": record.truncated,
    }


def event_view(event: DeviceEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "at": time_text(event.at),
        "rpc": event.rpc,
        "status": event.status,
        "serial": event.serial,
        "authenticated": event.authenticated,
        "refusal": event.refusal,
        "remote": event.remote,
        "duration_ms": event.duration_us / 1000,
        "profile": event.profile,
        "image": event.image,
        "detail": event.detail,
    }


def audit_entry_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": time_text(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "kind": entry.kind,
        "name": entry.name,
        "detail": dict(entry.detail),
    }


def token_view(token: TokenRecord) -> dict[str, Any]:
    return {"name": token.name, "role": token.role, "created_at": time_text(token.created_at)}


def change_view(change: Change) -> dict[str, Any]:
    return {
        "action": change.action,
        "kind": change.kind,
        "name": change.name,
        "before": None if change.before is None else public_view(change.kind, change.before),
        "after": None if change.spec is None else public_view(change.kind, change.spec),
    }


def change_summary(change: Change) -> dict[str, Any]:
    """A change without its bodies: the fields it sets, changes or removes, in spec order.

    An update also carries the old and new values of its changed fields alone (secrets
    hidden), so a client can show what changed; a create or delete carries no values. A
    10,000-device plan shrinks from the whole fleet (every voucher) to its names.
    """
    summary: dict[str, Any] = {"action": change.action, "kind": change.kind, "name": change.name}
    if change.action != "update":
        summary["fields"] = list(_fields_given(change))
        return summary
    before, after = change.before or {}, change.spec or {}
    shown_before = public_view(change.kind, before)
    shown_after = public_view(change.kind, after)
    fields = [
        field for field in {**shown_before, **shown_after} if before.get(field) != after.get(field)
    ]
    summary["fields"] = fields
    summary["before"] = {field: shown_before.get(field) for field in fields}
    summary["after"] = {field: shown_after.get(field) for field in fields}
    return summary


def change_audit_detail(change: Change) -> dict[str, Any]:
    """What the audit log keeps of a change: its before and after, secrets hidden."""
    detail: dict[str, Any] = {}
    if change.before is not None:
        detail["before"] = public_view(change.kind, change.before)
    if change.spec is not None:
        detail["after"] = public_view(change.kind, change.spec)
    return detail


def change_summary_json(change: Change) -> str:
    """`change_summary` as JSON text, as `json.dumps` writes it. A create or delete is
    written directly: its fields repeat from change to change (a million-device plan is mostly
    these), so only the name is escaped each time."""
    if change.action == "update":
        return json.dumps(change_summary(change))
    return (
        f'{{"action": "{change.action}", "kind": {encode_basestring_ascii(change.kind)}, '
        f'"name": {encode_basestring_ascii(change.name)}, '
        f'"fields": {_fields_json(_fields_given(change))}}}'
    )


def _fields_given(change: Change) -> tuple[str, ...]:
    """The public fields a create sets or a delete removes (those with a value), in spec order."""
    body = change.spec if change.spec is not None else change.before or {}
    filled = tuple(field for field, value in body.items() if value is not None and value != [])
    return _public_only(filled)


# Keyed by the few combinations of fields a fleet's specs use.
@lru_cache(maxsize=256)
def _public_only(fields: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(public_fields(dict.fromkeys(fields)))


@lru_cache(maxsize=256)
def _fields_json(fields: tuple[str, ...]) -> str:
    return json.dumps(list(fields))


def _change_view_json(change: Change) -> str:
    return json.dumps(change_view(change))


# `?plan=` of POST /state, each change as JSON text: full before/after bodies (the default,
# for the Ansible modules' diffs) or a summary (what `sztpctl apply` and `diff` print).
PLAN_VIEWS: Mapping[str, Callable[[Change], str]] = {
    "full": _change_view_json,
    "summary": change_summary_json,
}


def webhook_view(name: str, hook: Webhook | None, status: WebhookStatus | None) -> dict[str, Any]:
    """A webhook as `GET /api/v1/webhooks` shows it: what it is sent (its key never) and
    how its deliveries stand."""
    status = status or WebhookStatus(name, 0, 0, 0, None, None, None)
    return {
        "name": name,
        "url": None if hook is None else hook.url,
        "events": [] if hook is None else list(hook.events),
        "configured": hook is not None,
        "pending": status.pending,
        "delivered": status.delivered,
        "given_up": status.given_up,
        "oldest_pending_at": _time_or_none(status.oldest_pending_at),
        "last_delivered_at": _time_or_none(status.last_delivered_at),
        "last_error": status.last_error,
    }


def _time_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else time_text(moment)


def expiring_view(expiring: ExpiringSoon, now: datetime, within_days: float) -> dict[str, Any]:
    """What expires within `within_days` (`GET /api/v1/status`'s `expiring`)."""
    return {
        "within_days": within_days,
        "counts": expiring.counts,
        "soonest": [
            {
                "kind": expiry.kind,
                "name": expiry.name,
                "not_after": expiry.not_after.isoformat(),
                "expired": expiry.not_after <= now,
            }
            for expiry in expiring.soonest
        ],
        "earlier": expiring.earlier,
        "calendar": [
            {"week": start.date().isoformat(), "counts": counts}
            for start, counts in expiring.calendar
        ],
    }


def current_ldevid_view(ldevid: CurrentLdevid) -> dict[str, str]:
    """A device's current LDevID as the device listing shows it: the fields of
    `sztp.current_ldevid.CURRENT_LDEVID_FIELDS`."""
    return {
        "serial_number": ldevid.serial_number,
        "issuer": ldevid.issuer,
        "not_before": time_text(ldevid.not_before),
        "not_after": time_text(ldevid.not_after),
    }


def issued_view(record: IssuedCertificate) -> dict[str, Any]:
    """An LDevID issued to a device, as the admin API shows it."""
    return {
        "issuer": record.issuer,
        "serial_number": record.serial_number,
        "device": record.device,
        "profile": record.profile,
        "subject": record.subject,
        "not_before": record.not_before.isoformat(),
        "not_after": record.not_after.isoformat(),
        "issued_at": record.issued_at.isoformat(),
        "revoked_at": None if record.revoked_at is None else record.revoked_at.isoformat(),
        "revocation_reason": record.revocation_reason,
        "certificate": record.certificate_pem,
    }

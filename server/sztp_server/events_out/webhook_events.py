"""Webhook events: their types, their JSON bodies and the signature a receiver checks.

Pure. A body is made once, when the event happens, and stored in the outbox as the bytes sent
(every retry sends the same bytes); a device's message is in it as JSON text, escaped by the
encoder, for the receiver to treat as data.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from sztp.device_status import DeviceStatus

# Event types, declared once: the config's `events`, the docs and the bodies use these.
DEVICE_STATUS_CHANGED = "device-status-changed"
DEVICE_FAILED = "device-failed"
DEVICE_COMPLETE = "device-complete"
DEVICE_STALLED = "device-stalled"
REFUSED_REQUESTS = "refused-requests"
EXPIRING = "expiring"
EVENT_TYPES: dict[str, str] = {
    DEVICE_STATUS_CHANGED: "a progress report changed a device's status (any change)",
    DEVICE_FAILED: "a device reported an error that ended its bootstrap attempt",
    DEVICE_COMPLETE: "a device reported bootstrap-complete",
    DEVICE_STALLED: "a device went silent mid-bootstrap for `stall_after_minutes` (once per "
    "report it went silent after)",
    REFUSED_REQUESTS: "the server refused at least `webhook_refused_per_minute` device requests "
    "in a minute (at most once a minute, with the count of each reason)",
    EXPIRING: "a voucher, owner certificate, trust anchor, TLS certificate or issued LDevID "
    "expires within "
    "`expiry_warning_days` (once per artifact and expiry date; the 50 soonest)",
}
SIGNATURE_HEADER = "X-Sztp-Signature"
TIMESTAMP_HEADER = "X-Sztp-Timestamp"
EVENT_HEADER = "X-Sztp-Event"
DELIVERY_HEADER = "X-Sztp-Delivery"


def status_events(
    serial: str,
    before: DeviceStatus,
    after: DeviceStatus,
    *,
    at: datetime,
    progress_type: str,
    message: str | None,
) -> list[tuple[str, bytes]]:
    """(event type, body) of what a report that moved a device from `before` to `after` is."""
    if before == after:
        return []
    found = [DEVICE_STATUS_CHANGED]
    if after == DeviceStatus.FAILED:
        found.append(DEVICE_FAILED)
    elif after == DeviceStatus.COMPLETE:
        found.append(DEVICE_COMPLETE)
    return [
        (
            kind,
            event_body(
                kind,
                at,
                serial=serial,
                status=after.value,
                previous_status=before.value,
                progress_type=progress_type,
                message=message,
            ),
        )
        for kind in found
    ]


def event_body(event_type: str, at: datetime, /, **fields: Any) -> bytes:
    """The body of an event of `event_type` that happened at `at`."""
    return _encode({"type": event_type, "at": at.isoformat(), **fields})


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """The value of SIGNATURE_HEADER: HMAC-SHA256 over the timestamp, a dot and the body, so
    that a receiver can refuse a replayed delivery by its age."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"

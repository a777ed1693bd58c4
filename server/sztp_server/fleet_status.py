"""A device's status as the store counts it: from its head report's progress type and
whether it came before the stall cutoff (`sztp.progress.derive_status` looks at nothing else),
and the windows the server's settings give."""

from __future__ import annotations

from datetime import datetime, timedelta

from sztp.device_status import DeviceStatus
from sztp.progress import StoredReport, derive_status
from sztp.protocol.restconf import PROGRESS_TYPES

from .config import ServerConfig
from .store.model import HeadFilter, ProgressRecord

# The smallest step back in time: a report this much before the stall cutoff is stale.
_JUST_BEFORE = timedelta(microseconds=1)


def stall_after(config: ServerConfig) -> timedelta:
    """How long a device may stay silent in bootstrapping before it counts as stalled."""
    return timedelta(minutes=config.stall_after_minutes)


def expiry_window(config: ServerConfig) -> timedelta:
    return timedelta(days=config.expiry_warning_days)


def derived_status(latest: ProgressRecord | None, now: datetime, stall_after: timedelta) -> str:
    """Derived status from the latest report alone (all that `derive_status` looks at)."""
    reports = [latest.stored_report()] if latest is not None else []
    return derive_status(reports, now=now, stall_after=stall_after).value


def head_status(
    progress_type: str | None, *, stale: bool, now: datetime, stall_after: timedelta
) -> DeviceStatus:
    """The status of a device whose head report has `progress_type` (None: no report) and was
    received before the stall cutoff (`stale`) or not. `derive_status` looks at nothing else
    of the head, so asking it about a report at the cutoff or just before it answers for every
    device whose head is of that type and on that side of the cutoff."""
    if progress_type is None:
        return derive_status([], now=now, stall_after=stall_after)
    at = now - stall_after - (_JUST_BEFORE if stale else timedelta(0))
    head = StoredReport(
        received_at=at, progress_type=progress_type, message=None, source_address=None, attempt=1
    )
    return derive_status([head], now=now, stall_after=stall_after)


def status_filter(status: DeviceStatus, now: datetime, stall_after: timedelta) -> HeadFilter:
    """The store's filter for devices in `status` at `now`: each progress type, fresh and
    stale, and no report at all, put to `head_status`."""

    def types(*, stale: bool) -> frozenset[str]:
        return frozenset(
            progress_type
            for progress_type in PROGRESS_TYPES
            if head_status(progress_type, stale=stale, now=now, stall_after=stall_after) == status
        )

    return HeadFilter(
        unreported=head_status(None, stale=False, now=now, stall_after=stall_after) == status,
        recent_types=types(stale=False),
        stale_types=types(stale=True),
        stale_before=now - stall_after,
    )

"""Device status derived from stored `report-progress` reports (pure; server and CLI share it).

A device's reports (oldest first) are grouped into bootstrap *attempts*. An attempt is one
journey from factory state to a final outcome, and it includes the reboot into a new boot
image: after `boot-image-installed-rebooting` the device comes back with `bootstrap-initiated`
and continues the same provisioning, so that report stays in the same attempt. (The YANG
description calls the post-reboot run a new "bootstrapping attempt"; for an operator, an
upgrade that succeeded is not a failed attempt, so we count by outcome.) A new attempt starts
with `bootstrap-initiated` after `bootstrap-complete` or an `*-error`.

Status is decided by the last report that counts: complete, failed, rebooting, or in progress.
A report that comes after the attempt ended and is not a new `bootstrap-initiated` (a retried or
delayed send) is kept in the history but leaves the outcome as it was: a device that said
`bootstrap-complete` stays complete until it starts again. A device
that is rebooting or in progress and has been silent for longer than `stall_after` is stalled
(a reboot that never comes back is stuck too). Datetimes must all be timezone-aware (or all
naive) so they can be compared.
"""

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .device_status import DeviceStatus
from .protocol.restconf import (
    BOOT_IMAGE_INSTALLED_REBOOTING,
    BOOTSTRAP_COMPLETE,
    BOOTSTRAP_INITIATED,
    ERROR_PROGRESS_TYPES,
)

# The most reports in one page of the admin API's progress endpoint (server and client).
MAX_PROGRESS_PAGE = 1000


@dataclass(frozen=True)
class StoredReport:
    """A progress report as the server stored it; `attempt` counts from 1."""

    received_at: datetime
    progress_type: str
    message: str | None
    source_address: str | None
    attempt: int


@dataclass(frozen=True)
class DeviceSummary:
    """A device's status, the latest report that decides it and how many attempts it has made
    (0: none)."""

    status: DeviceStatus
    last_report: StoredReport | None
    attempts: int


# Outcomes that end an attempt; boot-image-installed-rebooting is terminal for the device's
# run but not for the attempt (see the module docstring).
_ATTEMPT_ENDING = ERROR_PROGRESS_TYPES | {BOOTSTRAP_COMPLETE}


def derive_status(
    reports: Sequence[StoredReport], *, now: datetime, stall_after: timedelta
) -> DeviceStatus:
    """The status shown for a device with these reports (oldest first) at time `now`.

    Stalled means silent for strictly longer than `stall_after`; complete and failed never
    become stalled.
    """
    last = deciding_report(reports)
    if last is None:
        return DeviceStatus.NOT_SEEN
    if last.progress_type == BOOTSTRAP_COMPLETE:
        return DeviceStatus.COMPLETE
    if last.progress_type in ERROR_PROGRESS_TYPES:
        return DeviceStatus.FAILED
    if now - last.received_at > stall_after:
        return DeviceStatus.STALLED
    if last.progress_type == BOOT_IMAGE_INSTALLED_REBOOTING:
        return DeviceStatus.REBOOTING
    return DeviceStatus.IN_PROGRESS


def decides_status(previous: StoredReport | None, progress_type: str) -> bool:
    """Whether a new report replaces `previous` (the report that decides the device's status)
    in deciding it; False for a report after an ended attempt that does not start a new one."""
    return (
        previous is None
        or previous.progress_type not in _ATTEMPT_ENDING
        or progress_type == BOOTSTRAP_INITIATED
    )


def deciding_report(reports: Sequence[StoredReport]) -> StoredReport | None:
    """The report that decides the status of a device with these reports (oldest first)."""
    deciding = None
    for report in reports:
        if decides_status(deciding, report.progress_type):
            deciding = report
    return deciding


def assign_attempt(previous: StoredReport | None, progress_type: str) -> int:
    """The attempt number of a new report, given the report that decides the device's status
    (its previous report unless that one was late), if any."""
    if previous is None:
        return 1
    if progress_type == BOOTSTRAP_INITIATED and previous.progress_type in _ATTEMPT_ENDING:
        return previous.attempt + 1
    return previous.attempt


def group_by_attempt(reports: Sequence[StoredReport]) -> list[list[StoredReport]]:
    """Consecutive reports of the same attempt, in order."""
    return [list(group) for _, group in itertools.groupby(reports, key=lambda r: r.attempt)]


def summarize(
    reports: Sequence[StoredReport], now: datetime, stall_after: timedelta
) -> DeviceSummary:
    """Status, deciding report and attempt count of a device (reports oldest first).

    The attempt count is the deciding report's attempt number (a late report belongs to the
    attempt it came after), so it stays right when older reports have been pruned from storage.
    """
    last = deciding_report(reports)
    return DeviceSummary(
        status=derive_status(reports, now=now, stall_after=stall_after),
        last_report=last,
        attempts=last.attempt if last is not None else 0,
    )

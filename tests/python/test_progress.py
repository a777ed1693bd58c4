"""Derived device status from stored progress reports (fixed times, no clock)."""

from datetime import UTC, datetime, timedelta

import pytest

from sztp.progress import (
    DeviceStatus,
    DeviceSummary,
    StoredReport,
    assign_attempt,
    decides_status,
    deciding_report,
    derive_status,
    group_by_attempt,
    summarize,
)
from sztp.protocol.restconf import ERROR_PROGRESS_TYPES, PROGRESS_TYPES

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
STALL = timedelta(minutes=30)


def _reports(*steps: tuple[int, str]) -> list[StoredReport]:
    """Reports at T0 + minutes, numbered into attempts as the server does."""
    reports: list[StoredReport] = []
    for minutes, progress_type in steps:
        previous = deciding_report(reports)
        reports.append(
            StoredReport(
                received_at=T0 + timedelta(minutes=minutes),
                progress_type=progress_type,
                message=None,
                source_address="192.0.2.7",
                attempt=assign_attempt(previous, progress_type),
            )
        )
    return reports


def _status(reports: list[StoredReport], now_minutes: float) -> DeviceStatus:
    return derive_status(reports, now=T0 + timedelta(minutes=now_minutes), stall_after=STALL)


def test_values_are_the_api_strings() -> None:
    assert [status.value for status in DeviceStatus] == [
        "not-seen",
        "in-progress",
        "rebooting",
        "complete",
        "failed",
        "stalled",
    ]
    assert DeviceStatus("stalled") is DeviceStatus.STALLED
    assert DeviceStatus.COMPLETE == "complete"
    assert str(DeviceStatus.REBOOTING) == "rebooting"
    assert isinstance(DeviceStatus.FAILED, str)


@pytest.mark.parametrize(
    ("last", "now_minutes", "expected"),
    [
        ("bootstrap-initiated", 1, DeviceStatus.IN_PROGRESS),
        ("config-warning", 1, DeviceStatus.IN_PROGRESS),
        ("informational", 30, DeviceStatus.IN_PROGRESS),  # exactly stall_after: not yet
        ("informational", 30.01, DeviceStatus.STALLED),
        ("post-script-complete", 500, DeviceStatus.STALLED),
        ("boot-image-installed-rebooting", 5, DeviceStatus.REBOOTING),
        ("boot-image-installed-rebooting", 31, DeviceStatus.STALLED),
        ("bootstrap-complete", 1, DeviceStatus.COMPLETE),
        ("bootstrap-complete", 10_000, DeviceStatus.COMPLETE),
        ("config-error", 1, DeviceStatus.FAILED),
        ("parsing-error", 10_000, DeviceStatus.FAILED),
        ("boot-image-initiated", -5, DeviceStatus.IN_PROGRESS),  # clock skew: not stalled
    ],
)
def test_status_table(last: str, now_minutes: float, expected: DeviceStatus) -> None:
    reports = _reports((0, "bootstrap-initiated"), (0, last))
    assert _status(reports, now_minutes) is expected


def test_no_reports_is_not_seen() -> None:
    assert _status([], 0) is DeviceStatus.NOT_SEEN
    assert _status([], 10_000) is DeviceStatus.NOT_SEEN


@pytest.mark.parametrize("progress_type", PROGRESS_TYPES)
def test_every_progress_type_has_a_status(progress_type: str) -> None:
    status = _status(_reports((0, progress_type)), 1)
    if progress_type == "bootstrap-complete":
        assert status is DeviceStatus.COMPLETE
    elif progress_type in ERROR_PROGRESS_TYPES:
        assert status is DeviceStatus.FAILED
    elif progress_type == "boot-image-installed-rebooting":
        assert status is DeviceStatus.REBOOTING
    else:
        assert status is DeviceStatus.IN_PROGRESS


def test_only_the_last_report_counts() -> None:
    failed_then_retrying = _reports((0, "config-error"), (10, "bootstrap-initiated"))
    assert _status(failed_then_retrying, 11) is DeviceStatus.IN_PROGRESS
    complete_then_new = _reports((0, "bootstrap-complete"), (60, "bootstrap-initiated"))
    assert _status(complete_then_new, 200) is DeviceStatus.STALLED


@pytest.mark.parametrize(
    ("previous", "progress_type", "expected"),
    [
        (None, "bootstrap-initiated", 1),
        (None, "config-complete", 1),  # reports before this one were lost or pruned
        (("bootstrap-initiated", 1), "parsing-initiated", 1),
        (("config-warning", 2), "bootstrap-initiated", 2),  # restart mid-way: same attempt
        (("bootstrap-complete", 1), "bootstrap-initiated", 2),
        (("bootstrap-error", 3), "bootstrap-initiated", 4),
        (("boot-image-error", 1), "bootstrap-initiated", 2),
        (("boot-image-installed-rebooting", 1), "bootstrap-initiated", 1),  # the same journey
        (("bootstrap-complete", 1), "informational", 1),
        (("config-error", 5), "bootstrap-warning", 5),
    ],
)
def test_assign_attempt(
    previous: tuple[str, int] | None, progress_type: str, expected: int
) -> None:
    stored = None
    if previous is not None:
        stored = StoredReport(T0, previous[0], None, None, previous[1])
    assert assign_attempt(stored, progress_type) == expected


FLEET_DEVICE = _reports(
    (0, "bootstrap-initiated"),
    (1, "boot-image-mismatch"),
    (2, "boot-image-installed-rebooting"),
    (9, "bootstrap-initiated"),
    (10, "boot-image-complete"),
    (11, "config-error"),
    (20, "bootstrap-initiated"),
    (21, "config-complete"),
    (22, "bootstrap-complete"),
)


def test_attempts_of_a_device_that_upgraded_failed_and_recovered() -> None:
    groups = group_by_attempt(FLEET_DEVICE)
    assert [[report.progress_type for report in group] for group in groups] == [
        [
            "bootstrap-initiated",
            "boot-image-mismatch",
            "boot-image-installed-rebooting",
            "bootstrap-initiated",
            "boot-image-complete",
            "config-error",
        ],
        ["bootstrap-initiated", "config-complete", "bootstrap-complete"],
    ]
    assert [group[0].attempt for group in groups] == [1, 2]
    assert group_by_attempt([]) == []


def test_summarize() -> None:
    now = T0 + timedelta(days=3)
    assert summarize(FLEET_DEVICE, now, STALL) == DeviceSummary(
        status=DeviceStatus.COMPLETE, last_report=FLEET_DEVICE[-1], attempts=2
    )
    assert summarize([], now, STALL) == DeviceSummary(DeviceStatus.NOT_SEEN, None, 0)
    # Pruned history: the count comes from the attempt numbers, not from what is left.
    assert summarize(FLEET_DEVICE[-2:], now=now, stall_after=STALL).attempts == 2
    rebooting = FLEET_DEVICE[:3]
    at_reboot = summarize(rebooting, rebooting[-1].received_at + STALL, STALL)
    assert at_reboot.status is DeviceStatus.REBOOTING
    assert at_reboot.attempts == 1
    never_back = summarize(rebooting, rebooting[-1].received_at + 2 * STALL, STALL)
    assert never_back.status is DeviceStatus.STALLED


def test_a_late_report_after_the_outcome_changes_neither_status_nor_attempt() -> None:
    late = _reports(
        (0, "bootstrap-initiated"),
        (1, "bootstrap-complete"),
        (2, "config-complete"),  # retried or delayed
        (3, "bootstrap-error"),  # out of order: the attempt had already ended
    )
    assert [report.attempt for report in late] == [1, 1, 1, 1]
    assert deciding_report(late) == late[1]
    assert _status(late, 4) is DeviceStatus.COMPLETE
    assert _status(late, 400) is DeviceStatus.COMPLETE  # complete never stalls
    assert summarize(late, T0, STALL).last_report == late[1]
    restarted = _reports(
        (0, "bootstrap-initiated"),
        (1, "bootstrap-error"),
        (2, "config-initiated"),
        (3, "bootstrap-initiated"),
    )
    assert [report.attempt for report in restarted] == [1, 1, 1, 2]
    assert _status(restarted[:3], 3) is DeviceStatus.FAILED
    assert _status(restarted, 4) is DeviceStatus.IN_PROGRESS
    assert decides_status(None, "config-complete")
    assert not decides_status(late[1], "bootstrap-complete")
    assert decides_status(late[1], "bootstrap-initiated")

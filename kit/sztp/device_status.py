"""The statuses a device can be in, declared once: the server computes them (sztp.progress),
the API, the CLI, the modules and the inventory plugin show and filter by them. Light on
purpose: the CLI imports it at start-up."""

import enum


class DeviceStatus(enum.StrEnum):
    """Where a device is in bootstrapping, as shown to operators."""

    NOT_SEEN = "not-seen"
    IN_PROGRESS = "in-progress"
    REBOOTING = "rebooting"
    COMPLETE = "complete"
    FAILED = "failed"
    STALLED = "stalled"


STATUSES: tuple[str, ...] = tuple(status.value for status in DeviceStatus)

"""How one step of the device procedure ends (go on, abandon the source, reboot, done), and how
a failure's reason is put into words."""

from __future__ import annotations

from enum import Enum

_MESSAGE_LIMIT = 2000


class Verdict(Enum):
    CONTINUE = "continue"  # this step is done, go on with the next one
    ABANDON = "abandon"  # this source failed; try the next one
    REBOOT = "reboot"  # a new image is installed; start over
    DONE = "done"  # bootstrap-complete


class Abandon(Exception):
    """Internal: the current source failed for the reason given (never leaves the simulator)."""


class StageFailed(Exception):
    """Internal: an onboarding stage failed; the device reports `progress_type` with `reason`,
    then abandons the source (never leaves the simulator)."""

    def __init__(self, progress_type: str, reason: str) -> None:
        super().__init__(f"{progress_type}: {reason}")
        self.progress_type = progress_type
        self.reason = reason


def describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        target = f"{exc.filename}: " if exc.filename else ""
        return f"{target}{exc.strerror or exc}"
    return str(exc)


def clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"

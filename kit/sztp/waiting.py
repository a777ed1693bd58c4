"""Waiting until devices reach a bootstrapping status, shared by `sztpctl wait` and the
Ansible modules' `wait` option.

Each round asks the server once about every device still waited for: a few devices named by
serial one by one, more (or a selection by profile, model or site) through the paged device
listing. The pause between rounds grows while nothing changes, and follows the server's
Retry-After when it is busy.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .device_status import STATUSES, DeviceStatus
from .errors import ApiError, NotFoundApiError, ServerUnreachable, SztpError

if TYPE_CHECKING:
    from .client import SztpClient

# Seconds between rounds: the first pause, doubled while no status changes, up to the last.
POLL_FIRST = 1.0
POLL_MAX = 10.0
# Up to this many devices named by serial are asked about one by one; more, by the listing.
FEW_DEVICES = 10
# Devices a message names before "and N more".
NAMED_IN_MESSAGES = 20
# Answers that mean "busy or restarting, ask again later": they do not end a wait.
_TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


class WaitOutcome(enum.StrEnum):
    """How a wait ended."""

    REACHED = "reached"
    FAILED = "failed"
    TIMED_OUT = "timed-out"


@dataclass(frozen=True)
class WaitResult:
    """How a wait ended, and each device's status then (a device that reached a status
    waited for keeps the one it reached)."""

    outcome: WaitOutcome
    wanted: tuple[str, ...]
    statuses: dict[str, str]

    @property
    def pending(self) -> list[str]:
        """The devices not in a status waited for, in serial order."""
        return [serial for serial, status in self.statuses.items() if status not in self.wanted]

    @property
    def failed(self) -> list[str]:
        """The devices that failed while `failed` was not waited for."""
        if DeviceStatus.FAILED in self.wanted:
            return []
        return [serial for serial, status in self.statuses.items() if status == DeviceStatus.FAILED]

    def describe(self) -> str:
        """One line saying how the wait ended, naming the devices not there."""
        wanted = " or ".join(self.wanted)
        if self.outcome is WaitOutcome.REACHED:
            return f"{len(self.statuses)} device(s) {wanted}"
        if self.outcome is WaitOutcome.FAILED:
            return f"failed while waiting for {wanted}: {_named(self.failed)}"
        pending = [f"{serial} ({self.statuses[serial]})" for serial in self.pending]
        return (
            f"timed out: {len(pending)} of {len(self.statuses)} device(s) not {wanted}: "
            f"{_named(pending)}"
        )


def wanted_statuses(statuses: Sequence[str]) -> tuple[str, ...]:
    """The statuses to wait for, checked (each once, in the order given)."""
    unknown = [status for status in statuses if status not in STATUSES]
    if unknown or not statuses:
        raise SztpError(
            f"cannot wait for status {', '.join(unknown) or '(none)'}: use one or more of "
            f"{', '.join(STATUSES)}"
        )
    return tuple(dict.fromkeys(statuses))


def wait_for_status(
    client: SztpClient,
    wanted: Sequence[str],
    *,
    serials: Collection[str] = (),
    selector: Mapping[str, str | None] | None = None,
    timeout: float | None = None,
    on_round: Callable[[Mapping[str, str]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> WaitResult:
    """Wait until every device named by `serials`, or else every device the listing's
    `selector` (profile, model, site) matches, is in one of the `wanted` statuses. It ends
    early when a device fails (unless `failed` is wanted), and after `timeout` seconds (None:
    never). `on_round(statuses)` is called after each round with every device's status.

    A serial the server does not know, or a selector matching no device, is an error; so is
    a first round that fails. Later rounds outlast an unreachable or busy server."""
    wanted = wanted_statuses(wanted)
    if serials and selector:
        raise SztpError("wait for devices named by serial or chosen by a selector, not both")
    named = tuple(dict.fromkeys(serials))
    deadline = None if timeout is None else clock() + timeout
    reached: dict[str, str] = {}
    statuses: dict[str, str] = {}
    pause = POLL_FIRST
    first = True
    while True:
        try:
            seen = _round(client, named, selector or {}, reached)
        except (ServerUnreachable, ApiError) as exc:
            if first or not _transient(exc):
                raise
            pause = max(pause, getattr(exc, "retry_after", None) or 0.0)
        else:
            if first and not seen and not named:
                raise SztpError(_nothing_to_wait_for(selector or {}))
            first = False
            changed = seen != {serial: statuses.get(serial) for serial in seen}
            statuses = dict(sorted({**seen, **reached}.items()))
            reached.update((serial, status) for serial, status in seen.items() if status in wanted)
            if on_round is not None:
                on_round(statuses)
            result = WaitResult(WaitOutcome.REACHED, wanted, statuses)
            if result.failed:
                return WaitResult(WaitOutcome.FAILED, wanted, statuses)
            if not result.pending:
                return result
            pause = POLL_FIRST if changed else min(pause * 2, POLL_MAX)
        if deadline is not None:
            left = deadline - clock()
            if left <= 0:
                return WaitResult(WaitOutcome.TIMED_OUT, wanted, statuses)
            pause = min(pause, left)
        sleep(pause)


def _round(
    client: SztpClient,
    named: Sequence[str],
    selector: Mapping[str, str | None],
    reached: Mapping[str, str],
) -> dict[str, str]:
    """The status of each device still waited for (named ones not yet reached, or every one
    the selector matches now)."""
    if named:
        asked = [serial for serial in named if serial not in reached]
        if len(asked) <= FEW_DEVICES:
            found: dict[str, str] = {}
            unknown: list[str] = []
            for serial in asked:
                try:
                    found[serial] = client.device_status(serial)["status"]
                except NotFoundApiError:
                    unknown.append(serial)
            _no_unknown(unknown)
            return found
        listed = _listing(client, {})
        _no_unknown([serial for serial in asked if serial not in listed])
        return {serial: listed[serial] for serial in asked}
    return _listing(client, selector)


def _listing(client: SztpClient, selector: Mapping[str, str | None]) -> dict[str, str]:
    return {
        device["name"]: device["status"]
        for page in client.device_pages(**selector)
        for device in page
    }


def _named(items: Sequence[str]) -> str:
    shown = ", ".join(items[:NAMED_IN_MESSAGES])
    more = len(items) - NAMED_IN_MESSAGES
    return f"{shown} and {more} more" if more > 0 else shown


def _no_unknown(unknown: Sequence[str]) -> None:
    if unknown:
        raise SztpError(f"no device with serial number {', '.join(map(repr, unknown))}")


def _transient(error: ServerUnreachable | ApiError) -> bool:
    return isinstance(error, ServerUnreachable) or error.status in _TRANSIENT_STATUSES


def _nothing_to_wait_for(selector: Mapping[str, str | None]) -> str:
    given = [f"{key} {value!r}" for key, value in selector.items() if value is not None]
    if given:
        return f"no device matches {' and '.join(given)}"
    return "the server holds no device"

"""`sztp.waiting` against a scripted client and a manual clock: which requests each round
makes, how the pause between rounds grows and follows Retry-After, and how a wait ends."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from sztp.errors import (
    ApiError,
    AuthenticationError,
    NotFoundApiError,
    ServerUnreachable,
    SztpError,
)
from sztp.waiting import (
    FEW_DEVICES,
    NAMED_IN_MESSAGES,
    POLL_FIRST,
    POLL_MAX,
    WaitOutcome,
    wait_for_status,
)
from sztp_testing import ManualClock


class ScriptedFleet:
    """The admin API as a wait sees it: each round's statuses come from `rounds` (the last
    repeats); an entry that is an exception is raised by that round's requests."""

    def __init__(self, rounds: Sequence[Mapping[str, str] | Exception]) -> None:
        self.rounds = list(rounds)
        self.requests: list[tuple[str, Any]] = []
        self.clock = ManualClock()
        self.pauses: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.clock.now += seconds

    def _now(self) -> Mapping[str, str]:
        # Rounds are what happens between pauses.
        entry = self.rounds[min(len(self.pauses), len(self.rounds) - 1)]
        if isinstance(entry, Exception):
            raise entry
        return entry

    def device_status(self, serial: str) -> dict[str, Any]:
        self.requests.append(("status", serial))
        statuses = self._now()
        if serial not in statuses:
            raise NotFoundApiError(404, "not-found", f"no device with serial number {serial!r}")
        return {"serial": serial, "status": statuses[serial]}

    def device_pages(self, **selector: str | None) -> Iterator[list[dict[str, Any]]]:
        self.requests.append(("listing", selector))
        statuses = self._now()
        yield [{"name": name, "status": status} for name, status in sorted(statuses.items())]

    def wait(self, wanted: Sequence[str] = ("complete",), **options: Any) -> Any:
        return wait_for_status(
            self,  # type: ignore[arg-type]
            wanted,
            sleep=self.sleep,
            clock=self.clock,
            **options,
        )


def test_a_few_named_devices_are_asked_one_by_one_until_each_is_there() -> None:
    fleet = ScriptedFleet(
        [
            {"A": "not-seen", "B": "in-progress"},
            {"A": "complete", "B": "in-progress"},
            {"A": "in-progress", "B": "complete"},  # A, there already, is not asked again
        ]
    )
    result = fleet.wait(serials=["A", "B"])
    assert result.outcome is WaitOutcome.REACHED
    assert result.statuses == {"A": "complete", "B": "complete"}
    assert fleet.requests == [("status", "A"), ("status", "B")] * 2 + [("status", "B")]


def test_many_named_devices_are_read_from_one_listing_per_round() -> None:
    serials = [f"SN-{number:02d}" for number in range(FEW_DEVICES + 1)]
    fleet = ScriptedFleet([{serial: "complete" for serial in serials} | {"OTHER": "failed"}])
    result = fleet.wait(serials=serials)
    assert result.outcome is WaitOutcome.REACHED
    assert list(result.statuses) == serials  # other devices of the listing play no part
    assert fleet.requests == [("listing", {})]


def test_the_pause_grows_while_nothing_changes_and_a_timeout_ends_the_wait() -> None:
    fleet = ScriptedFleet([{"A": "in-progress"}])
    result = fleet.wait(serials=["A"], timeout=30)
    assert result.outcome is WaitOutcome.TIMED_OUT
    assert result.pending == ["A"]
    assert result.describe() == "timed out: 1 of 1 device(s) not complete: A (in-progress)"
    assert fleet.pauses[:4] == [POLL_FIRST, POLL_FIRST * 2, POLL_FIRST * 4, POLL_FIRST * 8]
    assert max(fleet.pauses) == POLL_MAX
    assert sum(fleet.pauses) == 30  # the last pause ends at the deadline, then one more round


def test_a_failed_device_ends_the_wait_unless_failed_is_waited_for() -> None:
    rounds = [{"A": "in-progress", "B": "in-progress"}, {"A": "failed", "B": "in-progress"}]
    failed = ScriptedFleet(rounds).wait(selector={"profile": "p"}, timeout=600)
    assert failed.outcome is WaitOutcome.FAILED
    assert failed.failed == ["A"]
    assert failed.describe() == "failed while waiting for complete: A"
    either = ScriptedFleet([*rounds, {"A": "failed", "B": "complete"}])
    assert either.wait(["complete", "failed"], selector={"profile": "p"}).outcome is (
        WaitOutcome.REACHED
    )
    assert either.requests[0] == ("listing", {"profile": "p"})


def test_a_busy_or_lost_server_is_waited_out_with_its_retry_after() -> None:
    busy = ApiError(503, "busy", "try later", retry_after=7)
    fleet = ScriptedFleet(
        [{"A": "in-progress"}, busy, ServerUnreachable("cannot reach it"), {"A": "complete"}]
    )
    assert fleet.wait(serials=["A"]).outcome is WaitOutcome.REACHED
    assert fleet.pauses == [POLL_FIRST, 7, 7]


@pytest.mark.parametrize(
    ("rounds", "options", "message"),
    [
        (
            [{"A": "complete"}],
            {"serials": ["A", "B", "C"]},
            "no device with serial number 'B', 'C'",
        ),
        ([{}], {"selector": {"site": "x", "model": None}}, "no device matches site 'x'"),
        ([{}], {"selector": {}}, "the server holds no device"),
        ([ServerUnreachable("cannot reach it")], {"serials": ["A"]}, "cannot reach it"),
        (
            [{"A": "in-progress"}, AuthenticationError(401, "unauthorized", "token expired")],
            {"serials": ["A"]},
            "token expired (HTTP 401)",
        ),
    ],
)
def test_what_ends_a_wait_with_an_error(
    rounds: list[Any], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(SztpError) as raised:
        ScriptedFleet(rounds).wait(**options)
    assert str(raised.value) == message


@pytest.mark.parametrize("wanted", [[], ["done"], ["complete", "bogus"]])
def test_only_known_statuses_can_be_waited_for(wanted: list[str]) -> None:
    with pytest.raises(SztpError, match="cannot wait for status"):
        ScriptedFleet([{"A": "complete"}]).wait(wanted, serials=["A"])


def test_messages_name_the_first_devices_only() -> None:
    serials = [f"SN-{number:02d}" for number in range(NAMED_IN_MESSAGES + 3)]
    result = ScriptedFleet([dict.fromkeys(serials, "stalled")]).wait(serials=serials, timeout=0)
    assert result.describe().endswith("SN-19 (stalled) and 3 more")
    assert f"{NAMED_IN_MESSAGES + 3} of {NAMED_IN_MESSAGES + 3} device(s)" in result.describe()

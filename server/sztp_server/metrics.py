"""Prometheus counters in the text exposition format, without a client library.

With device worker processes (`workers`), each process counts its own requests and they send
one another their counts (workers.py): every process's /metrics shows the whole server's.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar

from aiohttp import web

CounterKey = tuple[str, tuple[tuple[str, str], ...]]  # name, sorted labels
# Labels a device listener's /metrics leaves out: a refusal's reason tells an unknown serial
# from a wrong password, which a device must never learn (sztp.refusals).
DEVICE_HIDDEN_LABELS = {"sztp_refused_requests_total": frozenset({"reason"})}


class Metrics:
    """Labelled counters; `render()` gives the /metrics body."""

    _HELP: ClassVar[dict[str, str]] = {
        "sztp_requests_total": "Device-facing RPC requests by rpc and HTTP status.",
        "sztp_progress_reports_total": "Progress reports received, by progress type.",
        "sztp_progress_reports_truncated_total": "Progress reports cut to the stored size cap.",
        "sztp_progress_reports_repeated_total": (
            "Progress reports equal to the device's newest one within repeated_report_seconds, "
            "answered and not stored again."
        ),
        "sztp_authentication_failures_total": "Device requests refused for lack of identity.",
        "sztp_device_events_dropped_total": (
            "Device requests the flight recorder did not record, by why: refused-rate (refused "
            "requests beyond refused_events_per_second), backlog, store-error."
        ),
        "sztp_refused_requests_total": (
            "Device requests refused, by rpc and reason (sztp.refusals: the device is only told "
            "access-denied or the like)."
        ),
        "sztp_connections_refused_total": "Connections closed on arrival, by API and cap.",
        "sztp_connections_timed_out_total": (
            "Connections closed for a late request head or for idling, by API and phase."
        ),
        "sztp_accept_pauses_total": (
            "Times accepting stopped at max_connections (new connections wait in the kernel)."
        ),
        "sztp_accept_paused_seconds_total": "Seconds accepting was stopped at max_connections.",
        "sztp_tls_handshake_waits_total": (
            "TLS connections that waited for a handshake slot (max_tls_handshakes)."
        ),
    }

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[CounterKey] = Counter()  # whole numbers but for seconds
        self._elsewhere: Counter[CounterKey] = Counter()
        self._gather: Callable[[], Awaitable[None]] | None = None

    def counts(self) -> Counter[CounterKey]:
        """This process's own counts."""
        with self._lock:
            return Counter(self._counters)

    def count_elsewhere(self, counts: Mapping[CounterKey, int]) -> None:
        """The latest counts of the server's other processes, shown with this one's."""
        with self._lock:
            self._elsewhere = Counter(counts)

    def increment(self, name: str, **labels: str) -> None:
        self.add(name, 1, **labels)

    def add(self, name: str, amount: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self._counters[key] += amount  # type: ignore[assignment]

    def gather_with(self, gather: Callable[[], Awaitable[None]]) -> None:
        """Have `gather` bring the other processes' counts up to date before every page."""
        self._gather = gather

    async def page(self, _request: web.Request) -> web.Response:
        """The GET /metrics handler of the admin listener."""
        return await self._page(None)

    async def device_page(self, _request: web.Request) -> web.Response:
        """The GET /metrics handler of a device listener (`monitoring_listeners`), whose
        answers anyone on the devices' network reads: without the labels that would tell a
        device what it must not learn (`DEVICE_HIDDEN_LABELS`), their counts summed."""
        return await self._page(DEVICE_HIDDEN_LABELS)

    async def _page(self, hidden: Mapping[str, frozenset[str]] | None) -> web.Response:
        if self._gather is not None:
            await self._gather()
        return web.Response(text=self.render(hidden), content_type="text/plain")

    def render(self, hidden: Mapping[str, frozenset[str]] | None = None) -> str:
        """The page; `hidden`: by counter, labels left out (counts that differ only in them
        are summed)."""
        with self._lock:
            counts = self._counters + self._elsewhere
        if hidden:
            kept: Counter[CounterKey] = Counter()
            for (counter, labels), value in counts.items():
                left_out = hidden.get(counter, frozenset())
                kept[counter, tuple(item for item in labels if item[0] not in left_out)] += value
            counts = kept
        items = sorted(counts.items())
        lines: list[str] = []
        for name, help_text in self._HELP.items():
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
            for (counter, labels), value in items:
                if counter == name:
                    rendered = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
                    lines.append(f"{name}{{{rendered}}} {value}" if rendered else f"{name} {value}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

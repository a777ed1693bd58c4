"""Prometheus metrics: counters and histograms declared here once, rendered by prometheus_client.

Counts are kept as plain numbers per (name, labels), not as the library's metric objects:
with device worker processes (`workers`) each process counts its own requests and they send
one another their counts (workers.py), so every process's /metrics shows the whole server's,
and the numbers are then handed to the library as metric families. A histogram is kept as
counts per bucket and a sum, which add up across processes like counters.
"""

from __future__ import annotations

import platform
import threading
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import HistogramMetricFamily, InfoMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector, CollectorRegistry

import sztp

CounterKey = tuple[str, tuple[tuple[str, str], ...]]  # name, sorted labels
# Labels a device listener's /metrics leaves out: a refusal's reason tells an unknown serial
# from a wrong password, which a device must never learn (sztp.refusals).
DEVICE_HIDDEN_LABELS = {"sztp_refused_requests_total": frozenset({"reason"})}

COUNTERS: dict[str, str] = {
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
    "sztp_syslog_sent_total": "Flight recorder events sent to syslog_url.",
    "sztp_syslog_dropped_total": (
        "Flight recorder events not sent to syslog_url, by why: backlog (too many waiting), "
        "unreachable (the receiver could not be reached, or the send failed)."
    ),
    "sztp_webhook_deliveries_total": (
        "Tries to deliver a webhook event, by webhook and outcome: delivered, retry (to be "
        "tried again), given-up (after webhook_retry_hours)."
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


@dataclass(frozen=True)
class Histogram:
    help: str
    buckets: tuple[float, ...]  # upper bounds, ascending; +Inf is implied


# From a cached answer (well under a millisecond) to a password check queued behind others.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HISTOGRAMS: dict[str, Histogram] = {
    "sztp_request_duration_seconds": Histogram(
        "Device RPC requests by rpc and outcome (served, refused): seconds from the request's "
        "arrival to its answer, a refusal's Retry-After pause left out.",
        DURATION_BUCKETS,
    ),
}
# Shown only on the admin listener: they tell the devices' network nothing it should know.
BUILD_INFO = "sztp_build_info"
GAUGES: dict[str, str] = {
    "sztp_devices": "Devices by status, as sztpctl status counts them (admin listener only).",
    "sztp_expiring": (
        "Vouchers, owner certificates, trust anchors, TLS certificates and issued LDevIDs "
        "(kind) that expire "
        "within expiry_warning_days or have expired (admin listener only)."
    ),
    "sztp_webhook_backlog": ("Webhook events not delivered yet, by webhook (admin listener only)."),
    "sztp_next_expiry_timestamp_seconds": (
        "When the first of each kind of those expires, in seconds since the epoch (admin "
        "listener only)."
    ),
    BUILD_INFO: (
        "Always 1, labelled with the sztp-server version and the Python running it (admin "
        "listener only)."
    ),
}

# Keys under which a histogram's counts travel with the counters (no declared name has ":").
_BUCKET = ":bucket"
_SUM = ":sum"

# (gauge name, labels, value) of the declared GAUGES, as the admin page's source gives them.
GaugeSample = tuple[str, dict[str, str], float]
FleetGauges = Callable[[], Awaitable[Iterable[GaugeSample]]]


class Metrics:
    """Labelled counters and histograms of this process and the server's others; `page` and
    `device_page` are the /metrics handlers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[CounterKey] = Counter()  # whole numbers but for seconds
        self._elsewhere: Counter[CounterKey] = Counter()
        self._gather: Callable[[], Awaitable[None]] | None = None
        self._fleet: FleetGauges | None = None

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

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Count `value` in histogram `name` (declared in HISTOGRAMS)."""
        bounds = HISTOGRAMS[name].buckets
        position = bisect_left(bounds, value)
        bucket = str(bounds[position]) if position < len(bounds) else "+Inf"
        plain = tuple(sorted(labels.items()))
        with self._lock:
            self._counters[name + _BUCKET, (*plain, ("le", bucket))] += 1
            self._counters[name + _SUM, plain] += value  # type: ignore[assignment]

    def gather_with(self, gather: Callable[[], Awaitable[None]]) -> None:
        """Have `gather` bring the other processes' counts up to date before every page."""
        self._gather = gather

    def fleet_with(self, gauges: FleetGauges) -> None:
        """Have the admin page show `gauges()`: devices by status, expiries."""
        self._fleet = gauges

    async def page(self, request: web.Request) -> web.Response:
        """The GET /metrics handler of the admin listener."""
        fleet = None
        if self._fleet is not None:
            fleet = await self._fleet()
        return await self._page(request, None, fleet)

    async def device_page(self, request: web.Request) -> web.Response:
        """The GET /metrics handler of a device listener (`monitoring_listeners`), whose
        answers anyone on the devices' network reads: without the labels that would tell a
        device what it must not learn (`DEVICE_HIDDEN_LABELS`), their counts summed, and
        without the fleet and the build."""
        return await self._page(request, DEVICE_HIDDEN_LABELS, None)

    async def _page(
        self,
        request: web.Request,
        hidden: Mapping[str, frozenset[str]] | None,
        fleet: Iterable[GaugeSample] | None,
    ) -> web.Response:
        if self._gather is not None:
            await self._gather()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self._totals(hidden), hidden is None, fleet))
        # Negotiated here, not by the library's choose_encoder: that one fails on a version
        # it cannot compare and echoes the client's text into Content-Type.
        if "application/openmetrics-text" in request.headers.get("Accept", ""):
            body = openmetrics.generate_latest(registry)
            content_type = openmetrics.CONTENT_TYPE_LATEST
        else:
            body, content_type = generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    def render(self, hidden: Mapping[str, frozenset[str]] | None = None) -> str:
        """The page in the Prometheus text format; `hidden`: by counter, labels left out
        (counts that differ only in them are summed)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(self._totals(hidden), hidden is None, None))
        return generate_latest(registry).decode()

    def _totals(self, hidden: Mapping[str, frozenset[str]] | None) -> Counter[CounterKey]:
        with self._lock:
            counts = self._counters + self._elsewhere
        if not hidden:
            return counts
        kept: Counter[CounterKey] = Counter()
        for (counter, labels), value in counts.items():
            left_out = hidden.get(counter, frozenset())
            kept[counter, tuple(item for item in labels if item[0] not in left_out)] += value
        return kept


class _Families(Collector):
    """The counts as the library's metric families, each declared metric whether counted yet
    or not."""

    def __init__(
        self, counts: Counter[CounterKey], build: bool, fleet: Iterable[GaugeSample] | None
    ) -> None:
        self._counts = counts
        self._build = build
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        by_name: defaultdict[str, list[tuple[tuple[tuple[str, str], ...], float]]]
        by_name = defaultdict(list)
        for (name, labels), count in sorted(self._counts.items()):
            by_name[name].append((labels, count))
        for name, help_text in COUNTERS.items():
            family = Metric(name.removesuffix("_total"), help_text, "counter")
            for labels, value in by_name[name]:
                family.add_sample(name, dict(labels), value)
            yield family
        for name, histogram in HISTOGRAMS.items():
            yield _histogram(name, histogram, by_name[name + _BUCKET], by_name[name + _SUM])
        if self._fleet is not None:
            gauges = {
                name: Metric(name, meaning, "gauge")
                for name, meaning in GAUGES.items()
                if name != BUILD_INFO
            }
            for name, gauge_labels, gauge_value in self._fleet:
                gauges[name].add_sample(name, gauge_labels, gauge_value)
            yield from gauges.values()
        if self._build:
            yield InfoMetricFamily(
                BUILD_INFO.removesuffix("_info"),
                GAUGES[BUILD_INFO],
                value={"version": sztp.__version__, "python": platform.python_version()},
            )


def _histogram(
    name: str,
    histogram: Histogram,
    buckets: Iterable[tuple[tuple[tuple[str, str], ...], float]],
    sums: Iterable[tuple[tuple[tuple[str, str], ...], float]],
) -> HistogramMetricFamily:
    """One family from counts per bucket (each observation counted in its own bucket only)
    and sums, by label set; buckets made cumulative here, as the format wants them."""
    per_series: defaultdict[tuple[tuple[str, str], ...], dict[str, float]]
    per_series = defaultdict(dict)
    for labels, count in buckets:
        bound = dict(labels)["le"]
        per_series[tuple(item for item in labels if item[0] != "le")][bound] = count
    totals = dict(sums)
    label_names = sorted({key for series in per_series for key, _ in series})
    family = HistogramMetricFamily(name, histogram.help, labels=label_names)
    for series, counted in sorted(per_series.items()):
        values = dict(series)
        running = 0.0
        cumulative: list[tuple[str, float]] = []
        for bound in [*map(str, histogram.buckets), "+Inf"]:
            running += counted.get(bound, 0)
            cumulative.append((bound, running))
        family.add_metric(
            [values.get(key, "") for key in label_names],
            cumulative,
            totals.get(series, 0.0),
        )
    return family


def metric_names() -> frozenset[str]:
    """Every series name the admin page may show (for checking dashboards and alert rules)."""
    names: set[str] = set(COUNTERS) | set(GAUGES)
    for name in HISTOGRAMS:
        names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return frozenset(names)

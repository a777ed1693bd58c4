"""The flight recorder, as a process serving devices feeds it: every device request's event
(which RPC, from where, for which serial, how it ended and how long it took) waits in memory
and a background task writes them to the store a batch at a time, so that no request waits
for the database.

Everything here comes from the network, so it is bounded: the events waiting are at most
`MAX_PENDING`; refused requests are recorded at most `refused_events_per_second` a second
(a flood of bad logins would otherwise fill the recorder and push out what matters), the
rest only counted; a claimed serial is kept only if it is short printable text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from ..background import Background
from ..logs import get_logger
from ..metrics import Metrics
from ..store.errors import StoreError
from ..store.model import DeviceEvent
from .token_buckets import TokenBuckets

_LOG = get_logger()

# Events waiting to be written, at most; beyond (the store is slow or down), new ones are
# counted and dropped.
MAX_PENDING = 20_000
# How often the waiting events are written.
FLUSH_SECONDS = 0.5
# The longest claimed serial kept: serial numbers are short; anything longer is not one.
MAX_CLAIMED_SERIAL = 64

# An event as it waits: (time.time(), rpc, status, serial, authenticated, refusal, remote,
# seconds, profile, image, detail). A tuple, made on the event loop; it becomes a DeviceEvent
# in the store thread.
Pending = tuple[
    float,
    str,
    int,
    str | None,
    bool,
    str | None,
    str | None,
    float,
    str | None,
    str | None,
    str | None,
]
# The longest detail kept; a device's own words in it are bounded further (`device_said`).
MAX_DETAIL = 512
# What a device says of itself (hw-model, os-name, os-version), at most, each.
MAX_SAID = 64
WriteEvents = Callable[[list[Pending]], Awaitable[None]]


class Recorder:
    """Collects this process's device events and writes them in batches with `write`, each
    batch handed to `forward` too (which must not wait: syslog)."""

    def __init__(
        self,
        write: WriteEvents,
        metrics: Metrics,
        refused_per_second: float,
        forward: Callable[[list[Pending]], None] | None = None,
    ) -> None:
        self._write = write
        self._forward = forward
        self._metrics = metrics
        self._pending: list[Pending] = []
        burst = max(1, round(refused_per_second))
        self._refused = TokenBuckets(burst, 1 / refused_per_second, tracked=1)
        self._background = Background(self._run)

    def record(
        self,
        rpc: str,
        status: int,
        serial: str | None,
        authenticated: bool,
        refusal: str | None,
        remote: str | None,
        seconds: float,
        *,
        profile: str | None = None,
        image: str | None = None,
        detail: str | None = None,
    ) -> bool:
        """Whether the request's event will be written (else it is only counted); `profile`
        and `image` name what a served get-bootstrapping-data came from, `detail` what the
        device said and why it was not served (cut to MAX_DETAIL)."""
        if refusal is not None and not self._refused.take(None):
            self._metrics.increment("sztp_device_events_dropped_total", why="refused-rate")
            return False
        if len(self._pending) >= MAX_PENDING:
            self._metrics.increment("sztp_device_events_dropped_total", why="backlog")
            return False
        self._pending.append(
            (
                time.time(),
                rpc,
                status,
                serial,
                authenticated,
                refusal,
                remote,
                seconds,
                profile,
                image,
                None if detail is None else detail[:MAX_DETAIL],
            )
        )
        return True

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        """Stop the background writes, then write what is still waiting."""
        await self._background.stop()
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        if self._forward is not None:
            self._forward(batch)
        try:
            await self._write(batch)
        except StoreError as exc:
            # The requests were answered; only their record is lost, and counted.
            self._metrics.add("sztp_device_events_dropped_total", len(batch), why="store-error")
            _LOG.warning(
                "device events not recorded", extra={"events": len(batch), "reason": str(exc)}
            )


def device_events(batch: list[Pending]) -> list[DeviceEvent]:
    """The events `batch` holds, as the store takes them."""
    events = []
    for pending in batch:
        at, rpc, status, serial, authenticated, refusal, remote, seconds = pending[:8]
        profile, image, detail = pending[8:]
        events.append(
            DeviceEvent(
                at=datetime.fromtimestamp(at, UTC),
                rpc=rpc,
                status=status,
                serial=serial,
                authenticated=authenticated,
                refusal=refusal,
                remote=remote,
                duration_us=round(seconds * 1_000_000),
                profile=profile,
                image=image,
                detail=detail,
            )
        )
    return events


def device_said(**values: str | None) -> str | None:
    """What a device said of itself, as `name value` pairs (names with dashes), each value cut
    to MAX_SAID and anything but printable ASCII replaced: its own text, kept as text."""
    parts = [
        f"{name.replace('_', '-')} {_printable(value[:MAX_SAID])}"
        for name, value in values.items()
        if value
    ]
    return ", ".join(parts) or None


def _printable(text: str) -> str:
    return "".join(char if " " <= char <= "~" else "?" for char in text)


def claimed_serial(authorization: str | None) -> str | None:
    """The serial Basic credentials name, if they are Basic credentials and it is short
    printable ASCII; else None (the certificate of a refused client names nothing trusted)."""
    if authorization is None:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    serial, separator, _ = decoded.partition(b":")
    if not separator or not 0 < len(serial) <= MAX_CLAIMED_SERIAL:
        return None
    text = serial.decode("ascii", errors="replace")
    return text if text.isprintable() and text.isascii() else None

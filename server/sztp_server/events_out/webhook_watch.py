"""Webhook events that no request causes but time does: a device going silent, a minute of
many refused requests, an artifact coming close to its expiry. The main process of each
instance looks every WATCH_SECONDS; each event is queued once whichever instance sees it
first (a mark in the store names it).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sztp.device_status import DeviceStatus

from ..background import Background
from ..fleet_status import expiry_window, stall_after, status_filter
from ..logs import get_logger
from ..store.base import OutboxRow
from ..store.errors import StoreError
from .webhook_events import DEVICE_STALLED, EXPIRING, REFUSED_REQUESTS, event_body

if TYPE_CHECKING:
    from ..context import ServerContext

_LOG = get_logger()

WATCH_SECONDS = 30.0
# Stalled devices looked at per pass, the most recently silent first.
STALLED_PER_PASS = 10_000


class WebhookWatch:
    def __init__(self, context: ServerContext) -> None:
        self._context = context
        config = context.config
        self._wanted = {kind for hook in config.webhooks for kind in hook.events}
        self._background = Background(self._run)

    @classmethod
    def of(cls, context: ServerContext) -> WebhookWatch | None:
        watch = cls(context)
        return watch if watch._wanted & {DEVICE_STALLED, REFUSED_REQUESTS, EXPIRING} else None

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self._context.admin_store.run(self.look, datetime.now(UTC))
            except StoreError as exc:
                _LOG.warning("webhook watch not done", extra={"reason": str(exc)})
            await asyncio.sleep(WATCH_SECONDS)

    def look(self, now: datetime) -> int:
        """Queue what is due at `now`; how many events (on a store thread)."""
        queued = 0
        if DEVICE_STALLED in self._wanted:
            queued += self._stalled(now)
        if REFUSED_REQUESTS in self._wanted:
            queued += self._refused(now)
        if EXPIRING in self._wanted:
            queued += self._expiring(now)
        return queued

    def _queue(self, mark: str, kind: str, now: datetime, body: bytes) -> int:
        rows: list[OutboxRow] = [
            (hook.name, kind, body.decode())
            for hook in self._context.config.webhooks
            if kind in hook.events
        ]
        return int(self._context.store.queue_webhook_events_once(mark, now, rows))

    def _stalled(self, now: datetime) -> int:
        silent = stall_after(self._context.config)
        heads = self._context.store.head_reports(
            status_filter(DeviceStatus.STALLED, now, silent), limit=STALLED_PER_PASS
        )
        return sum(
            self._queue(
                f"stalled:{report.serial}:{report.id}",
                DEVICE_STALLED,
                now,
                event_body(
                    DEVICE_STALLED,
                    now,
                    serial=report.serial,
                    status=DeviceStatus.STALLED.value,
                    last_report_at=report.received_at.isoformat(),
                    progress_type=report.progress_type,
                    message=report.message,
                ),
            )
            for report in heads
        )

    def _refused(self, now: datetime) -> int:
        threshold = self._context.config.webhook_refused_per_minute
        # The last whole minute: each is counted once, by whichever instance looks first.
        end = now.replace(second=0, microsecond=0)
        minute = end - timedelta(minutes=1)
        counts = self._context.store.refused_between(minute, end)
        total = sum(counts.values())
        if total < threshold:
            return 0
        body = event_body(
            REFUSED_REQUESTS,
            now,
            since=minute.isoformat(),
            refused=total,
            threshold=threshold,
            reasons=dict(sorted(counts.items())),
        )
        return self._queue(f"refused:{minute.isoformat()}", REFUSED_REQUESTS, now, body)

    def _expiring(self, now: datetime) -> int:
        config = self._context.config
        soon = self._context.expiry.soon(self._context.snapshot(), now, expiry_window(config))
        return sum(
            self._queue(
                f"expiring:{expiry.kind}:{expiry.name}:{expiry.not_after.isoformat()}",
                EXPIRING,
                now,
                event_body(
                    EXPIRING,
                    now,
                    kind=expiry.kind,
                    name=expiry.name,
                    not_after=expiry.not_after.isoformat(),
                    expired=expiry.not_after <= now,
                    within_days=config.expiry_warning_days,
                ),
            )
            for expiry in soon.soonest
        )

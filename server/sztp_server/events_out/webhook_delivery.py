"""Delivers the webhook outbox: the main process of each instance claims due entries from the
store, POSTs each body signed with its webhook's key, and records the outcome. At least once:
an entry is finished only once a receiver answered 2xx, and a claim lapses (the entry is due
again) if the instance dies before recording it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import stat
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp

from sztp.errors import ValidationError

from ..background import Background
from ..logs import get_logger
from ..metrics import Metrics
from ..store.errors import StoreError
from ..store.model import OutboxEntry
from .webhook_events import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)

if TYPE_CHECKING:
    from ..config import ServerConfig, Webhook
    from ..context import ServerContext

_LOG = get_logger()

# How often the outbox is looked at when nothing wakes the sender earlier.
POLL_SECONDS = 1.0
# One try may take this long; a claim lasts longer, so a try in progress is never re-claimed.
TRY_SECONDS = 10.0
CLAIM_SECONDS = 60.0
# Entries claimed at a time, and sent at once.
CLAIM_BATCH = 100
CONCURRENT_TRIES = 8
# After a failed try the next waits 2**tries seconds, at most this long.
MAX_RETRY_SECONDS = 3600.0
# Finished entries stay visible (delivery status) this long.
KEEP_FINISHED = timedelta(days=1)
# What was queued once is remembered this long (an artifact expiring is marked by its date).
KEEP_MARKS = timedelta(days=90)
MIN_SECRET_BYTES = 16
# What a receiver's refusal shows of its answer, at most.
ERROR_TEXT = 200


def load_secrets(config: ServerConfig) -> dict[str, bytes]:
    """Each webhook's signing key; ValidationError naming a file that is missing, readable by
    others or too short."""
    secrets = {}
    for index, hook in enumerate(config.webhooks):
        field = f"webhooks[{index}].secret_file"
        try:
            mode = hook.secret_file.stat().st_mode
            secret = hook.secret_file.read_bytes().strip()
        except OSError as exc:
            raise ValidationError(
                field, f"cannot read {hook.secret_file}: {exc.strerror}"
            ) from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValidationError(
                field, f"{hook.secret_file} must be mode 0600 (others can read it)"
            )
        if len(secret) < MIN_SECRET_BYTES:
            raise ValidationError(field, f"must hold at least {MIN_SECRET_BYTES} bytes")
        secrets[hook.name] = secret
    return secrets


def _tls(hook: Webhook, index: int) -> ssl.SSLContext | None:
    if not hook.url.startswith("https:"):
        return None
    try:
        return ssl.create_default_context(cafile=str(hook.ca_file) if hook.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError(f"webhooks[{index}].ca_file", f"cannot load: {exc}") from None


class WebhookSender:
    def __init__(self, context: ServerContext, metrics: Metrics) -> None:
        config = context.config
        self._context = context
        self._metrics = metrics
        self._hooks = {hook.name: hook for hook in config.webhooks}
        self._secrets = load_secrets(config)
        self._tls = {hook.name: _tls(hook, index) for index, hook in enumerate(config.webhooks)}
        self._give_up_after = timedelta(hours=config.webhook_retry_hours)
        self._wake = asyncio.Event()
        self._background = Background(self._run)
        self._failing: set[str] = set()
        self._pruned_at = 0.0

    @classmethod
    def of(cls, context: ServerContext, metrics: Metrics) -> WebhookSender | None:
        return cls(context, metrics) if context.config.webhooks else None

    def start(self) -> None:
        self._background.start()

    async def stop(self) -> None:
        await self._background.stop()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TRY_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await self._send_while_running(session)

    async def _send_while_running(self, session: aiohttp.ClientSession) -> None:
        store = self._context.admin_store
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()
            try:
                now = datetime.now(UTC)
                claimed = await store.run(
                    self._context.store.claim_webhook_deliveries,
                    now,
                    now + timedelta(seconds=CLAIM_SECONDS),
                    CLAIM_BATCH,
                )
                slots = asyncio.Semaphore(CONCURRENT_TRIES)
                await asyncio.gather(*(self._try(session, entry, slots) for entry in claimed))
                if time.monotonic() - self._pruned_at > 3600:
                    self._pruned_at = time.monotonic()
                    await store.run(
                        self._context.store.prune_webhook_outbox,
                        now - KEEP_FINISHED,
                        marks_before=now - KEEP_MARKS,
                    )
                if len(claimed) == CLAIM_BATCH:
                    self._wake.set()  # more are waiting
            except StoreError as exc:  # the sender outlives a store outage: tried again
                _LOG.warning("webhook outbox not read", extra={"reason": str(exc)})

    async def _try(
        self, session: aiohttp.ClientSession, entry: OutboxEntry, slots: asyncio.Semaphore
    ) -> None:
        hook = self._hooks.get(entry.webhook)
        now = datetime.now(UTC)
        if hook is None:  # removed from the configuration since the event was queued
            error: str | None = "no such webhook configured"
        else:
            async with slots:
                error = await self._post(session, hook, entry)
        retry_at = None
        if error is not None and hook is not None:
            delay = min(2.0**entry.attempts, MAX_RETRY_SECONDS)
            if now + timedelta(seconds=delay) - entry.created_at < self._give_up_after:
                retry_at = now + timedelta(seconds=delay)
        outcome = "delivered" if error is None else "retry" if retry_at else "given-up"
        self._metrics.increment(
            "sztp_webhook_deliveries_total", webhook=entry.webhook, outcome=outcome
        )
        self._note(entry.webhook, error)
        await self._context.admin_store.run(
            self._context.store.record_webhook_attempt,
            entry.id,
            datetime.now(UTC),
            error=error,
            retry_at=retry_at,
        )

    async def _post(
        self, session: aiohttp.ClientSession, hook: Webhook, entry: OutboxEntry
    ) -> str | None:
        """None when the receiver took it; else why not."""
        body = entry.body.encode()
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: entry.event_type,
            DELIVERY_HEADER: str(entry.id),
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: signature(self._secrets[hook.name], timestamp, body),
        }
        tls = self._tls[hook.name]
        try:
            async with session.post(
                hook.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                ssl=tls if tls is not None else True,
            ) as response:
                if 200 <= response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError) as exc:
            return (str(exc) or type(exc).__name__)[:ERROR_TEXT]

    def _note(self, name: str, error: str | None) -> None:
        """Log a webhook's failures once per outage, and its recovery."""
        if error is not None and name not in self._failing:
            self._failing.add(name)
            _LOG.warning(
                "webhook delivery failing; retrying", extra={"webhook": name, "reason": error}
            )
        elif error is None and name in self._failing:
            self._failing.discard(name)
            _LOG.info("webhook delivering again", extra={"webhook": name})

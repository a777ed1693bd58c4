"""Run the server: open the store, start the device and admin listeners, handle signals.

Start-up order: the store is opened, the device listeners are bound, the device workers (with
`workers` above one) serve, the admin listener is bound, the trust anchors are loaded and the
signals handled, and only then is the first admin token written, so a token file means a
server that is ready (scripts wait for it) and a port in use leaves no token behind.

SIGTERM/SIGINT stop accepting connections and let requests in flight finish, in every process;
SIGHUP reloads the TLS certificates and keys of every listener from disk without dropping
connections, all or none (each worker its own). Trust anchors added through the admin API
reach the TLS layer at once (the device listener asks for client certificates and must know
which CAs to accept), in the workers before the write is answered.

Every listener accepts through a `ConnectionGuard` (connections.py): caps on the device
listeners' connections and deadlines for slow or idle clients, TLS started once admitted.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import replace
from datetime import timedelta
from functools import partial

from sztp.errors import SztpError

from .admin import build_admin_app
from .admin.handlers.devices import fleet_gauges
from .config import ServerConfig
from .connections import Listening
from .context import ServerContext
from .device_api import RateLimits, build_device_app
from .events_out.webhook_delivery import WebhookSender
from .events_out.webhook_watch import WebhookWatch
from .logs import get_logger
from .metrics import Metrics
from .secret_key import load_secret_key, seal_stored_private_keys, unopenable_owner_keys
from .serving import (
    GIL_SWITCH_INTERVAL_SECONDS,
    Api,
    TlsContexts,
    admin_guard,
    cancelled,
    device_guard,
    ensure_free,
    ignore_further,
    listening,
    open_configured_store,
    poll_revision,
)
from .store.base import utc_now
from .tokens import ensure_first_admin_token
from .workers import DeviceWorkers

_LOG = get_logger()
AUDIT_RETENTION_INTERVAL_SECONDS = 3600.0


async def serve(config: ServerConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; BindError or TlsFileError before anything is written
    (but the secret key file, created at first start, and the database)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    secret_key = load_secret_key(config)
    store = open_configured_store(config)
    try:
        seal_stored_private_keys(store, secret_key)
        for owner in unopenable_owner_keys(store, secret_key):
            _LOG.error(
                "owner private key does not open with this secret key (replaced or lost key "
                "file?); the owner cannot sign until its key is applied again",
                extra={"owner": owner},
            )
        context = ServerContext(store, config, secret_key)
        try:
            await _serve(context, ready)
        finally:
            context.close()
        _LOG.info("stopped")
    finally:
        store.close()


async def _serve(context: ServerContext, ready: asyncio.Event | None) -> None:
    config = context.config
    metrics = Metrics()
    processes = config.process_count
    if processes > 1:
        for name, listener in config.named_listeners()[:-1]:
            ensure_free(name, listener)
    tls = TlsContexts()
    # Made before any worker starts, which gets them: one set for every process.
    limits = RateLimits.of(config, shared=processes > 1)
    device_api, admin_api = _apis(context, metrics, limits)
    workers: DeviceWorkers | None = None
    # The main process alone delivers webhooks (each instance's, from the shared outbox).
    webhooks = WebhookSender.of(context, metrics)
    watch = WebhookWatch.of(context)
    try:
        # The admin listener last: its /healthz answering means devices are served everywhere.
        async with listening(config, tls, [device_api], reuse_port=processes > 1) as device_servers:
            if processes > 1:
                workers = DeviceWorkers(
                    _bound(config, device_servers), processes - 1, metrics, limits
                )
                context.on_refresh(workers.publish)
                context.add_follower(workers.caught_up)
                metrics.gather_with(workers.gather_counts)
                await workers.start()
            async with listening(config, tls, [admin_api], reuse_port=False):
                if webhooks is not None:
                    webhooks.start()
                if watch is not None:
                    watch.start()
                await _run(context, tls, workers, ready)
                _LOG.info("stopping")
                if workers is not None:
                    workers.terminate()
    finally:
        if watch is not None:
            await watch.stop()
        if webhooks is not None:
            await webhooks.stop()
        if workers is not None:
            await workers.stop()


def _apis(context: ServerContext, metrics: Metrics, limits: RateLimits) -> tuple[Api, Api]:
    """The device API on every device listener, and the admin API on its own."""
    config = context.config
    admin_app = build_admin_app(context, max_bulk_bytes=config.max_bulk_body_bytes)
    if config.monitoring_listeners in ("admin", "both"):
        admin_app.router.add_get("/metrics", metrics.page)
        metrics.fleet_with(partial(fleet_gauges, context))
    listeners = config.named_listeners()
    device_app = build_device_app(context, metrics, limits)
    return (
        Api(device_app, device_guard(config, metrics), listeners[:-1], device=True),
        Api(admin_app, admin_guard(config, metrics), listeners[-1:], device=False),
    )


def _bound(config: ServerConfig, servers: list[Listening]) -> ServerConfig:
    """`config` with each device listener's port as bound (port 0 picks one), for workers."""
    listeners = tuple(
        replace(listener, port=server.sockets[0].getsockname()[1])
        for listener, server in zip(config.device_listeners, servers, strict=True)
    )
    return replace(config, device_listeners=listeners)


async def _run(
    context: ServerContext,
    tls: TlsContexts,
    workers: DeviceWorkers | None,
    ready: asyncio.Event | None,
) -> None:
    """Serve until SIGTERM or SIGINT.

    The first admin token is written last, once devices' trust anchors are loaded and signals
    are handled: scripts take the token file as the sign that the server is ready, and a
    SIGHUP sent then must reload, not end, the server.
    """
    tls.add_anchors(context.snapshot())
    context.on_refresh(tls.add_anchors)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_tls, tls, workers)
    _write_first_admin_token(context)
    tasks = [
        asyncio.create_task(poll_revision(context)),
        asyncio.create_task(_enforce_audit_retention(context)),
    ]
    if ready is not None:
        ready.set()
    await stop.wait()
    ignore_further(loop, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
    await cancelled(*tasks)


def _write_first_admin_token(context: ServerContext) -> None:
    path = context.config.admin_token_file
    try:
        created = ensure_first_admin_token(context.store, path)
    except FileExistsError:
        raise SztpError(
            f"{path} exists but the database has no API token; remove the stale file so a "
            "new first admin token can be written"
        ) from None
    if created:
        _LOG.info("first admin token written", extra={"path": str(path)})


def _reload_tls(tls: TlsContexts, workers: DeviceWorkers | None) -> None:
    tls.reload()
    if workers is not None:
        workers.reload_tls()


async def _enforce_audit_retention(context: ServerContext) -> None:
    """Prune audit entries past `audit_retention_days`, at start and then every hour.

    Every instance sharing a database does this; their prunes share the work (see
    `Store.prune_audit`), so none needs to be chosen for it.
    """
    days = context.config.audit_retention_days
    if not days:
        return
    while True:
        try:
            before = utc_now() - timedelta(days=days)
            pruned = await context.admin_store.prune_audit(before)
            if pruned:
                _LOG.info(
                    "audit entries past retention pruned",
                    extra={"entries": pruned, "retention_days": days},
                )
        except Exception:  # a database hiccup must not end retention
            _LOG.exception("audit retention failed")
        await asyncio.sleep(AUDIT_RETENTION_INTERVAL_SECONDS)

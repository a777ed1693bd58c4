"""Run the server: open the store, start the device and admin listeners, handle signals.

Start-up order: the store is opened, every listener is bound, the trust anchors are loaded and
the signals handled, and only then is the first admin token written, so a token file means a
server that is ready (scripts wait for it) and a port in use leaves no token behind.

SIGTERM/SIGINT stop accepting connections and let requests in flight finish; SIGHUP reloads
the TLS certificates and keys of every listener from disk without dropping connections, all
or none. Trust anchors added
through the admin API reach the TLS layer at once (the device listener asks for client
certificates and must know which CAs to accept).

Every listener accepts through a `ConnectionGuard` (connections.py): caps on the device
listeners' connections and deadlines for slow or idle clients, TLS started once admitted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from sztp.errors import SztpError

from .admin import build_admin_app
from .config import Listener, ServerConfig
from .connections import ConnectionGuard, ConnectionLimits
from .context import ServerContext, Snapshot
from .device_api import build_device_app
from .logs import get_logger
from .metrics import Metrics
from .secret_key import load_secret_key, seal_stored_private_keys, unopenable_owner_keys
from .store import open_store
from .store.base import utc_now
from .tls import TlsFileError, load_chain, server_context
from .tokens import ensure_first_admin_token

_LOG = get_logger()
SHUTDOWN_GRACE_SECONDS = 10.0
AUDIT_RETENTION_INTERVAL_SECONDS = 3600.0
# How long a thread holding the GIL runs before one waiting for it gets a turn. Store calls run
# in worker threads while the event loop (and snapshot loads, spec checks) keep the GIL busy; a
# store call takes the GIL back after every statement, and at Python's default interval each
# take-back of a report, or of a bulk apply holding the database's write lock, could wait a
# whole interval (bench/RESULTS.md, "Device latency during a 10,000-device bulk apply").
GIL_SWITCH_INTERVAL_SECONDS = 0.001


class BindError(SztpError):
    """A listener cannot bind its address (in use, not local, not permitted)."""


@dataclass(frozen=True)
class _TlsListener:
    name: str  # as in the configuration, e.g. device_listeners[0]
    listener: Listener
    context: ssl.SSLContext


@dataclass
class _TlsContexts:
    """The SSL context of every TLS listener, kept so SIGHUP and new anchors can update them."""

    device: list[_TlsListener] = field(default_factory=list)
    admin: list[_TlsListener] = field(default_factory=list)
    loaded_anchors: set[bytes] = field(default_factory=set)

    def device_context(self, name: str, listener: Listener) -> ssl.SSLContext:
        context = server_context(name, listener)
        # Optional at the TLS layer: Basic-auth devices have no certificate. Whether a
        # certificate identifies a known device is decided per request.
        context.verify_mode = ssl.CERT_OPTIONAL
        self.device.append(_TlsListener(name, listener, context))
        return context

    def admin_context(self, name: str, listener: Listener) -> ssl.SSLContext:
        context = server_context(name, listener)
        self.admin.append(_TlsListener(name, listener, context))
        return context

    def reload_certificates(self) -> None:
        """Every listener's new files are loaded into a scratch context first: one bad file
        leaves every listener on its previous certificate (TlsFileError names it)."""
        listeners = [*self.device, *self.admin]
        for entry in listeners:
            server_context(entry.name, entry.listener)
        for entry in listeners:
            load_chain(entry.context, entry.name, entry.listener)

    def add_anchors(self, snapshot: Snapshot) -> None:
        """Teach the device listeners new trust anchors (removals are enforced per request)."""
        for anchor in snapshot.trust_anchors:
            for certificate in anchor.certificates:
                der = certificate.public_bytes(Encoding.DER)
                if der in self.loaded_anchors:
                    continue
                for entry in self.device:
                    entry.context.load_verify_locations(cadata=der)
                self.loaded_anchors.add(der)


async def serve(config: ServerConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT; BindError or TlsFileError before anything is written
    (but the secret key file, created at first start, and the database)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    secret_key = load_secret_key(config)
    store = open_store(
        config.database_url,
        statement_timeout=config.database_statement_timeout,
        pool_size=config.database_pool_size,
    )
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
            tls = _TlsContexts()
            async with _listening(context, tls):
                await _run(context, tls, ready)
                _LOG.info("stopping")
        finally:
            context.close()
        _LOG.info("stopped")
    finally:
        store.close()


@asynccontextmanager
async def _listening(context: ServerContext, tls: _TlsContexts) -> AsyncIterator[None]:
    """Bind every listener (devices first, then admin); on the way out, or when one fails to
    bind, close those bound."""
    config = context.config
    metrics = Metrics()
    device_app = build_device_app(context, metrics)
    admin_app = build_admin_app(context, max_bulk_bytes=config.max_bulk_body_bytes)
    if config.monitoring_listeners in ("admin", "both"):
        admin_app.router.add_get("/metrics", metrics.page)
    # Devices face an open network: only they are capped. Admin clients hold tokens.
    device_guard = ConnectionGuard(
        "device",
        ConnectionLimits(
            head_timeout=config.request_head_timeout,
            idle_timeout=config.keepalive_timeout,
            max_per_address=config.max_connections_per_address,
            max_total=config.max_connections,
            uncapped=config.trusted_proxies,
        ),
        metrics,
    )
    admin_guard = ConnectionGuard(
        "admin",
        ConnectionLimits(
            head_timeout=config.request_head_timeout, idle_timeout=config.keepalive_timeout
        ),
        metrics,
    )
    runners: list[web.AppRunner] = []
    servers: list[asyncio.Server] = []
    try:
        for app, guard in ((device_app, device_guard), (admin_app, admin_guard)):
            app.middlewares.insert(0, guard.middleware)
            runner = web.AppRunner(
                app,
                access_log=None,
                shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
                # The guard closes idle connections; aiohttp's own timer (an hour by default)
                # only backs it up, never first.
                keepalive_timeout=config.keepalive_timeout + config.request_head_timeout,
            )
            await runner.setup()
            runners.append(runner)
            handlers = cast(web.Server, runner.server)  # set by setup()
            for name, listener in config.named_listeners():
                device = name != "admin_listener"
                if device == (app is device_app):
                    servers.append(await _bind(handlers, guard, tls, name, listener, device=device))
        yield
    finally:
        for server in servers:
            server.close()
        for guard in (device_guard, admin_guard):
            guard.close_all()
        for runner in runners:
            await runner.cleanup()


async def _bind(
    handlers: web.Server,
    guard: ConnectionGuard,
    tls: _TlsContexts,
    name: str,
    listener: Listener,
    *,
    device: bool,
) -> asyncio.Server:
    """Listen on `listener` through `guard`, which starts TLS once a connection is admitted."""
    ssl_context = None
    if listener.uses_tls:
        ssl_context = (
            tls.device_context(name, listener) if device else tls.admin_context(name, listener)
        )
    elif device:
        _LOG.warning(
            "device listener without TLS: devices cannot authenticate the server or "
            "present an IDevID; use it only behind a TLS-terminating proxy",
            extra={"address": listener.address},
        )
    try:
        server = await asyncio.get_running_loop().create_server(
            guard.protocol_factory(handlers, ssl_context), listener.host, listener.port
        )
    except OSError as exc:
        # asyncio wraps the reason in a sentence naming the address: take the bare reason
        # (name-resolution errors carry negative numbers and their own text).
        reason = (os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror) or str(
            exc
        )
        raise BindError(f"{name} {listener.address}: {reason[:1].lower()}{reason[1:]}") from None
    _LOG.info(
        "listening",
        extra={
            "api": "device" if device else "admin",
            "address": listener.address,
            "tls": ssl_context is not None,
        },
    )
    return server


async def _run(context: ServerContext, tls: _TlsContexts, ready: asyncio.Event | None) -> None:
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
    loop.add_signal_handler(signal.SIGHUP, _reload_tls, tls)
    _write_first_admin_token(context)
    poller = asyncio.create_task(_poll_revision(context))
    retention = asyncio.create_task(_enforce_audit_retention(context))
    if ready is not None:
        ready.set()
    await stop.wait()
    poller.cancel()
    retention.cancel()


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


def _reload_tls(tls: _TlsContexts) -> None:
    try:
        tls.reload_certificates()
    except TlsFileError as exc:
        _LOG.error(
            "TLS reload failed; keeping the previous certificates",
            extra={"listener": exc.listener, "path": exc.path, "reason": exc.problem},
        )
        return
    _LOG.info("TLS certificates reloaded")


async def _poll_revision(context: ServerContext) -> None:
    """Pick up changes made by other server instances sharing the database."""
    while True:
        await asyncio.sleep(context.config.refresh_interval)
        try:
            await context.poll()
        except Exception:  # a database hiccup must not end the poller
            _LOG.exception("state refresh failed")


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

"""What every server process does to serve its listeners: TLS contexts that SIGHUP reloads and
new trust anchors extend, binding through a `ConnectionGuard`, and following the revision.

The main process (app.py) serves the admin listener and the device listeners; with `workers`
above one, device worker processes (workers.py) serve the device listeners beside it, each
with a socket of its own on the same address (SO_REUSEPORT), the kernel spreading the
connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import cast

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from sztp.errors import SztpError

from .config import Listener, ServerConfig
from .connections import (
    HANDSHAKE_REFUSED,
    ConnectionGuard,
    ConnectionLimits,
    Listening,
    use_smaller_tls_read_buffers,
)
from .context import ServerContext, Snapshot
from .logs import get_logger
from .metrics import Metrics
from .store import open_store
from .store.base import Store
from .tls import TlsFileError, load_chain, server_context

# How long a thread holding the GIL runs before one waiting for it gets a turn. Store calls run
# in worker threads while the event loop (and snapshot loads, spec checks) keep the GIL busy; a
# store call takes the GIL back after every statement, and at Python's default interval each
# take-back of a report, or of a bulk apply holding the database's write lock, could wait a
# whole interval (bench/RESULTS.md, "Device latency during a 10,000-device bulk apply"). Device
# workers serve the same way, so they set it too.
GIL_SWITCH_INTERVAL_SECONDS = 0.001

_LOG = get_logger()
SHUTDOWN_GRACE_SECONDS = 10.0


class BindError(SztpError):
    """A listener cannot bind its address (in use, not local, not permitted)."""


@dataclass(frozen=True)
class _TlsListener:
    name: str  # as in the configuration, e.g. device_listeners[0]
    listener: Listener
    context: ssl.SSLContext


@dataclass
class TlsContexts:
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

    def reload(self) -> None:
        """SIGHUP: new certificates for every listener, or (logged) none."""
        try:
            self.reload_certificates()
        except TlsFileError as exc:
            _LOG.error(
                "TLS reload failed; keeping the previous certificates",
                extra={"listener": exc.listener, "path": exc.path, "reason": exc.problem},
            )
            return
        _LOG.info("TLS certificates reloaded")


def device_guard(config: ServerConfig, metrics: Metrics) -> ConnectionGuard:
    """Devices face an open network: only they are capped (each server process on its own)."""
    return ConnectionGuard(
        "device",
        ConnectionLimits(
            head_timeout=config.request_head_timeout,
            idle_timeout=config.keepalive_timeout,
            max_per_address=config.max_connections_per_address,
            max_total=config.max_connections,
            max_handshakes=config.max_tls_handshakes,
            uncapped=config.trusted_proxies,
        ),
        metrics,
    )


def admin_guard(config: ServerConfig, metrics: Metrics) -> ConnectionGuard:
    """Admin clients hold tokens: deadlines, no caps."""
    return ConnectionGuard(
        "admin",
        ConnectionLimits(
            head_timeout=config.request_head_timeout, idle_timeout=config.keepalive_timeout
        ),
        metrics,
    )


@dataclass(frozen=True)
class Api:
    """One application and the listeners it is served on."""

    app: web.Application
    guard: ConnectionGuard
    listeners: Sequence[tuple[str, Listener]]
    device: bool


@asynccontextmanager
async def listening(
    config: ServerConfig, tls: TlsContexts, apis: Sequence[Api], *, reuse_port: bool
) -> AsyncIterator[list[Listening]]:
    """Bind every listener of `apis`, in order; on the way out, or when one fails to bind,
    close those bound. Yields the device listeners, in configuration order."""
    use_smaller_tls_read_buffers()
    runners: list[web.AppRunner] = []
    servers: list[Listening] = []
    device_servers: list[Listening] = []
    try:
        for api in apis:
            api.app.middlewares.insert(0, api.guard.middleware)
            api.guard.handshake_refused = api.app.get(HANDSHAKE_REFUSED)
            runner = web.AppRunner(
                api.app,
                access_log=None,
                shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
                # The guard closes idle connections; aiohttp's own timer (an hour by default)
                # only backs it up, never first.
                keepalive_timeout=config.keepalive_timeout + config.request_head_timeout,
            )
            await runner.setup()
            runners.append(runner)
            handlers = cast(web.Server, runner.server)  # set by setup()
            for name, listener in api.listeners:
                server = await _bind(
                    handlers,
                    api.guard,
                    tls,
                    name,
                    listener,
                    device=api.device,
                    reuse_port=reuse_port and api.device,
                    backlog=config.listen_backlog,
                )
                servers.append(server)
                if api.device:
                    device_servers.append(server)
        yield device_servers
    finally:
        for server in servers:
            server.close()
        for api in apis:
            api.guard.close_all()
        for runner in runners:
            await runner.cleanup()


async def _bind(
    handlers: web.Server,
    guard: ConnectionGuard,
    tls: TlsContexts,
    name: str,
    listener: Listener,
    *,
    device: bool,
    reuse_port: bool,
    backlog: int,
) -> Listening:
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
        sockets = await _listen(listener, reuse_port=reuse_port, backlog=backlog)
    except OSError as exc:
        raise BindError(f"{name} {listener.address}: {_reason(exc)}") from None
    server = Listening(sockets, guard, handlers, ssl_context)
    _LOG.info(
        "listening",
        extra={
            "api": "device" if device else "admin",
            "address": listener.address,
            "tls": ssl_context is not None,
        },
    )
    return server


async def _listen(listener: Listener, *, reuse_port: bool, backlog: int) -> list[socket.socket]:
    """Sockets bound to every address `listener`'s host resolves to, listening, as
    `loop.create_server` binds them; the guard accepts from them (it stops while at its cap,
    which asyncio's servers cannot)."""
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(
        listener.host or None,
        listener.port,
        type=socket.SOCK_STREAM,
        flags=socket.AI_PASSIVE,
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _name, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # One socket per family, as asyncio does: the IPv4 one takes IPv4.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def ensure_free(name: str, listener: Listener) -> None:
    """BindError when something already listens on `listener`'s address. Sockets that share
    a port (SO_REUSEPORT) bind beside another server's sharing ones, even a stale instance's
    of the same user: a plain bind first says whether the address is taken."""
    if listener.port == 0:
        return
    try:
        addresses = socket.getaddrinfo(
            listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise BindError(f"{name} {listener.address}: {_reason(exc)}") from None
    for family, kind, protocol, _name, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise BindError(f"{name} {listener.address}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    # asyncio wraps the reason in a sentence naming the address: take the bare reason
    # (name-resolution errors carry negative numbers and their own text).
    reason = (os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror) or str(exc)
    return f"{reason[:1].lower()}{reason[1:]}"


def open_configured_store(config: ServerConfig) -> Store:
    """The store `config` names, as every server process opens it."""
    return open_store(
        config.database_url,
        statement_timeout=config.database_statement_timeout,
        pool_size=config.database_pool_size,
    )


async def poll_revision(context: ServerContext) -> None:
    """Pick up changes made by other server instances sharing the database."""
    while True:
        await asyncio.sleep(context.config.refresh_interval)
        try:
            await context.poll()
        except Exception:  # a database hiccup must not end the poller
            _LOG.exception("state refresh failed")


async def cancelled(*tasks: asyncio.Task[None]) -> None:
    """Cancel `tasks` and wait until they are done."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def ignore_further(loop: asyncio.AbstractEventLoop, handled: Sequence[signal.Signals]) -> None:
    """Once a process is stopping, the signals it handled are ignored for the rest of its
    shutdown: another SIGTERM (a service manager signals every process of the service, and
    the main process signals its workers too) changes nothing. Left to asyncio, a signal
    arriving as the loop closed printed a traceback (the loop closes the pipe its handlers
    write to before it removes them), or ended the process with the signal's default action."""
    for number in handled:
        loop.remove_signal_handler(number)
        signal.signal(number, signal.SIG_IGN)

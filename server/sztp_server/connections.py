"""Connection limits in front of aiohttp: caps on open connections, and deadlines for a slow
or idle client.

aiohttp alone keeps a connection as long as its client trickles bytes: a few hundred half-sent
request heads use up the process's file descriptors and every device after them times out.
Each listener's sockets are therefore accepted here first:

- a connection beyond the per-address or the total cap is closed at once, before its TLS
  handshake, so the caps bound the descriptors a flood can take;
- the TLS handshake and the request head must arrive within `head_timeout` of the connection
  opening (or, on a kept-alive connection, of the first byte of the next request);
- a kept-alive connection with no request in flight is closed after `idle_timeout`.

Only then is the connection handed to aiohttp's protocol (`web.Server`), which parses HTTP as
usual; `ConnectionGuard.middleware` tells the guard when a request head has been parsed and
when its handler is done. A request body's deadline is the handler's: it reads the body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from aiohttp import web

from .logs import get_logger
from .metrics import Metrics

_LOG = get_logger()
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout: float
    idle_timeout: float
    # None: no cap (the admin listener, whose clients hold tokens).
    max_per_address: int | None = None
    max_total: int | None = None
    # Addresses the per-address cap spares: TLS-terminating proxies carry many devices.
    uncapped: Sequence[_Network] = ()


class _Phase(Enum):
    HEAD = "head"  # handshake or request head under way: head deadline
    BUSY = "busy"  # a request is being handled: the handler bounds its own body read
    IDLE = "idle"  # kept alive between requests: idle deadline


class ConnectionGuard:
    """Admits, times and counts the connections of one API (device or admin) over all of its
    listeners."""

    def __init__(self, api: str, limits: ConnectionLimits, metrics: Metrics) -> None:
        self.api = api
        self.limits = limits
        self.metrics = metrics
        self._total = 0
        self._per_address: Counter[str] = Counter()
        self._connections: set[_GuardedConnection] = set()
        self._by_transport: dict[asyncio.BaseTransport, _GuardedConnection] = {}

    def protocol_factory(
        self, server: web.Server, ssl_context: ssl.SSLContext | None
    ) -> Callable[[], asyncio.Protocol]:
        """For `loop.create_server` without `ssl`: TLS, when given, starts once admitted."""
        return lambda: _GuardedConnection(self, server, ssl_context)

    @web.middleware
    async def middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        connection = self._by_transport.get(request.transport) if request.transport else None
        if connection is not None:
            connection.request_started()
        try:
            return await handler(request)
        finally:
            if connection is not None:
                connection.request_finished()

    def close_all(self) -> None:
        """Drop connections aiohttp has not been given yet (still in their TLS handshake);
        aiohttp closes its own on shutdown."""
        for connection in list(self._connections):
            if not connection.handed_over:
                connection.abort()

    def admit(self, connection: _GuardedConnection) -> str | None:
        """Count a new connection, or say which cap refuses it."""
        limits, address = self.limits, connection.address
        if limits.max_total is not None and self._total >= limits.max_total:
            return "total"
        if (
            limits.max_per_address is not None
            and self._per_address[address] >= limits.max_per_address
            and not _within(address, limits.uncapped)
        ):
            return "per-address"
        self._total += 1
        self._per_address[address] += 1
        self._connections.add(connection)
        return None

    def watch_requests(self, connection: _GuardedConnection, transport: asyncio.Transport) -> None:
        """Let the middleware find `connection` from its requests, which know `transport`."""
        self._by_transport[transport] = connection

    def release(self, connection: _GuardedConnection) -> None:
        self._total -= 1
        self._per_address[connection.address] -= 1
        if not self._per_address[connection.address]:
            del self._per_address[connection.address]
        self._connections.discard(connection)
        if connection.app_transport is not None:
            self._by_transport.pop(connection.app_transport, None)


class _GuardedConnection(asyncio.Protocol):
    """One accepted socket: admitted or closed, its TLS started, then passed to aiohttp."""

    def __init__(
        self, guard: ConnectionGuard, server: web.Server, ssl_context: ssl.SSLContext | None
    ) -> None:
        self.guard = guard
        self.server = server
        self.ssl_context = ssl_context
        self.address = ""
        self.admitted = False
        self.handed_over = False
        self.phase = _Phase.HEAD
        self.next_request_begun = False  # bytes of a further request arrived while BUSY
        self.socket_transport: asyncio.Transport | None = None
        self.app_transport: asyncio.Transport | None = None
        self.inner: web.RequestHandler | None = None
        self.tls_task: asyncio.Task[None] | None = None
        self.early_data: list[bytes] = []
        self.deadline: asyncio.TimerHandle | None = None
        self.unsent_at_deadline = 0

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.socket_transport = transport
        self.address = _peer_address(transport)
        refused = self.guard.admit(self)
        if refused is not None:
            self.guard.metrics.increment(
                "sztp_connections_refused_total", api=self.guard.api, cap=refused
            )
            _LOG.debug("connection refused", extra={"remote": self.address, "cap": refused})
            transport.abort()
            return
        self.admitted = True
        self._arm(self.guard.limits.head_timeout)
        if self.ssl_context is None:
            self._hand_over(transport)
        else:
            # Bytes of the handshake must wait for start_tls, which runs on the next turn.
            transport.pause_reading()
            self.tls_task = asyncio.get_running_loop().create_task(
                self._start_tls(transport, self.ssl_context)
            )

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            # TLS passes on what followed the handshake before start_tls returns.
            self.early_data.append(data)
            return
        if self.phase is _Phase.IDLE:
            self.phase = _Phase.HEAD
            self._arm(self.guard.limits.head_timeout)
        elif self.phase is _Phase.BUSY:
            self.next_request_begun = True
        self.inner.data_received(data)

    def eof_received(self) -> None:
        # Returning nothing lets the transport close once the peer stops sending.
        if self.inner is not None:
            self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self._disarm()
        self.guard.release(self)
        if self.inner is not None:
            self.inner.connection_lost(exc)

    # ---- called by the guard's middleware

    def request_started(self) -> None:
        self.phase = _Phase.BUSY
        self.next_request_begun = False
        self._disarm()

    def request_finished(self) -> None:
        if not self.admitted:
            return
        if self.next_request_begun:
            self.phase = _Phase.HEAD
            self._arm(self.guard.limits.head_timeout)
        else:
            self.phase = _Phase.IDLE
            self.unsent_at_deadline = 0
            self._arm(self.guard.limits.idle_timeout)

    def abort(self) -> None:
        if self.socket_transport is not None:
            self.socket_transport.abort()

    # ---- internals

    async def _start_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        if transport.is_closing():
            return
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.guard.limits.head_timeout,
            )
        except OSError as exc:  # ssl.SSLError, resets and the handshake timeout among them
            # start_tls has closed the socket; connection_lost has released it.
            _LOG.debug("TLS handshake failed", extra={"remote": self.address, "reason": str(exc)})
            return
        if tls is not None and self.admitted:
            self._hand_over(tls)

    def _hand_over(self, transport: asyncio.Transport) -> None:
        self.app_transport = transport
        self.handed_over = True
        self.guard.watch_requests(self, transport)
        self.inner = self.server()
        self.inner.connection_made(transport)
        for data in self.early_data:
            self.data_received(data)
        self.early_data.clear()

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self.deadline = asyncio.get_running_loop().call_later(seconds, self._deadline_passed)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _deadline_passed(self) -> None:
        self.deadline = None
        if self.phase is _Phase.IDLE and self.app_transport is not None:
            # The last response may still be on its way to a slow reader: wait while it moves.
            unsent = self.app_transport.get_write_buffer_size()
            if unsent and (not self.unsent_at_deadline or unsent < self.unsent_at_deadline):
                self.unsent_at_deadline = unsent
                self._arm(self.guard.limits.idle_timeout)
                return
        self.guard.metrics.increment(
            "sztp_connections_timed_out_total", api=self.guard.api, phase=self.phase.value
        )
        _LOG.debug(
            "connection timed out", extra={"remote": self.address, "phase": self.phase.value}
        )
        self.abort()


def _peer_address(transport: asyncio.BaseTransport) -> str:
    peer: Any = transport.get_extra_info("peername")
    host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d: one client, one count.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _within(address: str, networks: Sequence[_Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)

"""Connection limits in front of aiohttp: caps on open connections, a bound on TLS handshakes
under way, and deadlines for a slow or idle client.

aiohttp alone keeps a connection as long as its client trickles bytes: a few hundred half-sent
request heads use up the process's file descriptors and every device after them times out.
And asyncio alone starts every accepted connection's TLS handshake at once: when thousands of
devices power on together, one event loop interleaves thousands of handshakes, none finishes
before its deadline, and the work is thrown away while the devices retry. Each listener socket
is therefore accepted from here (`Listening`, a task per socket), and each connection passes
through these steps before aiohttp sees it:

- *Accepting pauses at the total cap.* While `max_total` connections are open, the listener
  sockets are not accepted from: new connections wait in the kernel's queue (`listen_backlog`)
  and are accepted as others close, instead of being accepted and reset. A connection beyond
  the per-address cap is still closed at once, before its TLS handshake: one address cannot
  hold the total cap and so stop accepting for everyone.
- *First bytes.* An admitted TLS connection holds only its socket until its client's first
  bytes (the ClientHello) arrive; a silent client is closed at the head deadline, having held
  no handshake slot and no TLS state.
- *Handshake slots.* At most `max_handshakes` handshakes run at once per process, so a burst's
  handshakes complete one batch after another. A connection whose ClientHello has arrived
  waits for a slot, addresses taking turns (one address with many waiting connections does
  not delay another's first) and one address holding at most an eighth of the slots (a
  flood from one address cannot take them all); `uncapped` addresses are exempt. The wait is
  the server's doing, so it is not counted against the head deadline: the deadline's clock
  stops while the connection waits and runs on once its handshake starts. A client that
  gave up while it waited (its FIN arrived) is closed without a handshake. A slot is given
  back when the handshake ends, or after `HANDSHAKE_SLOT_SECONDS` even if it has not (the
  handshake carries on, under the head deadline): a client stalling mid-handshake holds a
  slot briefly, so stalling clients cannot keep devices' handshakes from starting.
- *Deadlines.* The TLS handshake and the request head must arrive within `head_timeout` of
  the connection being accepted (less the wait for a slot), or, on a kept-alive connection,
  of the first byte of the next request; a kept-alive connection with no request in flight is
  closed after `idle_timeout`.

Only then is the connection handed to aiohttp's protocol (`web.Server`), which parses HTTP as
usual; `ConnectionGuard.middleware` tells the guard when a request head has been parsed and
when its handler is done. A request body's deadline is the handler's: it reads the body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import sys
from asyncio import sslproto
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, cast

from aiohttp import web

from .logs import get_logger
from .metrics import Metrics

# What an application does when a TLS handshake refuses the client's certificate (the device
# API's flight recorder records it): given the client's address, OpenSSL's error and the
# seconds the handshake took. The guard finds it on the application under this key.
HandshakeRefused = Callable[[str, ssl.SSLCertVerificationError, float], None]
HANDSHAKE_REFUSED: web.AppKey[HandshakeRefused] = web.AppKey("handshake_refused")

_LOG = get_logger()
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# A handshake on a sound network takes a few round trips and a few milliseconds of CPU: one
# still under way after this long waits on its client, and gives its slot to the next.
HANDSHAKE_SLOT_SECONDS = 2.0
# Of the handshake slots, the share one address may hold (NAT gateways hold several devices).
HANDSHAKE_SLOTS_PER_ADDRESS_DIVISOR = 8
# Connections accepted in a row before other work of the event loop gets a turn.
ACCEPT_BATCH = 64
# Out of descriptors or memory: the kernel keeps the queue while the server waits.
ACCEPT_RETRY_SECONDS = 1.0
_TCP_CLOSE_WAIT = 8  # linux/tcp_states.h: the peer has sent its FIN
# asyncio's TLS transport (Python 3.11) allocates, and zeroes, a read buffer of
# `SSLProtocol.max_size` per connection, 256 KiB: 1.1 GiB for 4,096 connections. A TLS record
# is at most 16 KiB, so a quarter of it still reads four records a call.
_STDLIB_TLS_READ_BUFFER = 256 * 1024
TLS_READ_BUFFER = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout: float
    idle_timeout: float
    # None: no cap (the admin listener, whose clients hold tokens).
    max_per_address: int | None = None
    max_total: int | None = None
    # None: no bound on TLS handshakes under way.
    max_handshakes: int | None = None
    # Addresses the per-address caps spare: TLS-terminating proxies carry many devices.
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
        self._room_waiters: list[asyncio.Future[None]] = []
        self._full_since: float | None = None
        self.handshakes = _HandshakeSlots(self)
        self.handshake_refused: HandshakeRefused | None = None

    @property
    def full(self) -> bool:
        return self.limits.max_total is not None and self._total >= self.limits.max_total

    async def room(self) -> None:
        """Return once a connection may be accepted: at once unless at the total cap."""
        while self.full:
            waiter = asyncio.get_running_loop().create_future()
            self._room_waiters.append(waiter)
            await waiter

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
        """Drop connections aiohttp has not been given yet (waiting or in their TLS handshake);
        aiohttp closes its own on shutdown."""
        for connection in list(self._connections):
            if not connection.handed_over:
                connection.abort()

    def accepted(
        self, sock: socket.socket, server: web.Server, ssl_context: ssl.SSLContext | None
    ) -> None:
        """Take a socket just accepted: admit it, or close it if its address is at its cap."""
        try:
            address = _peer_address(sock.getpeername())
        except OSError:  # reset while it waited in the kernel's queue
            sock.close()
            return
        limits = self.limits
        if (
            limits.max_per_address is not None
            and self._per_address[address] >= limits.max_per_address
            and not self.uncapped(address)
        ):
            self.metrics.increment(
                "sztp_connections_refused_total", api=self.api, cap="per-address"
            )
            _LOG.debug("connection refused", extra={"remote": address, "cap": "per-address"})
            sock.close()
            return
        self._total += 1
        self._per_address[address] += 1
        if self.full and self._full_since is None:
            self._full_since = asyncio.get_running_loop().time()
            self.metrics.increment("sztp_accept_pauses_total", api=self.api)
        connection = _GuardedConnection(self, server, ssl_context, sock, address)
        self._connections.add(connection)
        connection.start()

    def uncapped(self, address: str) -> bool:
        return _within(address, self.limits.uncapped)

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
        if self._full_since is not None and not self.full:
            paused = asyncio.get_running_loop().time() - self._full_since
            self._full_since = None
            self.metrics.add("sztp_accept_paused_seconds_total", paused, api=self.api)
        if not self.full:
            waiters, self._room_waiters = self._room_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class _HandshakeSlots:
    """The bound on TLS handshakes under way: slots, and connections waiting for one, by
    address, the addresses taking turns."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        limit = guard.limits.max_handshakes
        self.limit = limit
        self.per_address = (
            None if limit is None else max(1, limit // HANDSHAKE_SLOTS_PER_ADDRESS_DIVISOR)
        )
        self.held = 0
        self.held_by: Counter[str] = Counter()
        # Insertion order is the turn order; an address served goes to the back.
        self.waiting: dict[str, deque[_GuardedConnection]] = {}

    def request(self, connection: _GuardedConnection) -> bool:
        """Whether `connection` may start its handshake now; if not, it waits, and is called
        back (`take_turn`) when it may."""
        if self._may_hold(connection.address) and connection.address not in self.waiting:
            self._take(connection.address)
            return True
        self.waiting.setdefault(connection.address, deque()).append(connection)
        self.guard.metrics.increment("sztp_tls_handshake_waits_total", api=self.guard.api)
        return False

    def withdraw(self, connection: _GuardedConnection) -> None:
        queue = self.waiting.get(connection.address)
        if queue is not None and connection in queue:
            queue.remove(connection)
            if not queue:
                del self.waiting[connection.address]

    def give_back(self, address: str) -> None:
        self._untake(address)
        self._grant()

    def _grant(self) -> None:
        # A loop, not a recursion: a long run of connections whose clients left meanwhile
        # gives the slot on and on.
        while self.waiting and (self.limit is None or self.held < self.limit):
            address = next(
                (address for address in self.waiting if self._may_hold(address, ignore_total=True)),
                None,
            )
            if address is None:  # every waiting address holds its share
                return
            queue = self.waiting.pop(address)
            connection = queue.popleft()
            if queue:
                self.waiting[address] = queue  # to the back: the next address's turn
            self._take(address)
            if not connection.take_turn():
                self._untake(address)

    def _may_hold(self, address: str, *, ignore_total: bool = False) -> bool:
        if self.limit is None:
            return True
        if not ignore_total and self.held >= self.limit:
            return False
        return (
            self.per_address is None
            or self.held_by[address] < self.per_address
            or self.guard.uncapped(address)
        )

    def _take(self, address: str) -> None:
        self.held += 1
        self.held_by[address] += 1

    def _untake(self, address: str) -> None:
        self.held -= 1
        self.held_by[address] -= 1
        if not self.held_by[address]:
            del self.held_by[address]


class _GuardedConnection(asyncio.Protocol):
    """One admitted socket: its first bytes awaited, a handshake slot, TLS, then aiohttp."""

    def __init__(
        self,
        guard: ConnectionGuard,
        server: web.Server,
        ssl_context: ssl.SSLContext | None,
        sock: socket.socket,
        address: str,
    ) -> None:
        self.guard = guard
        self.server = server
        self.ssl_context = ssl_context
        self.sock: socket.socket | None = sock  # until a transport owns it
        self.address = address
        self.admitted = True
        self.handed_over = False
        self.phase = _Phase.HEAD
        self.next_request_begun = False  # bytes of a further request arrived while BUSY
        self.app_transport: asyncio.Transport | None = None
        self.inner: web.RequestHandler | None = None
        self.connect_task: asyncio.Task[Any] | None = None
        self.given_socket: socket.socket | None = None  # to asyncio, for `connect_task`
        self.deadline: asyncio.TimerHandle | None = None
        self.deadline_at = 0.0
        self.head_time_left = 0.0  # while the deadline's clock stops (waiting for a slot)
        self.unsent_at_deadline = 0
        self.holds_slot = False
        self.slot_timer: asyncio.TimerHandle | None = None
        self.reading_first_bytes = False
        self.connect_started = 0.0

    # ---- steps before aiohttp

    def start(self) -> None:
        self._arm(self.guard.limits.head_timeout)
        if self.ssl_context is None:
            self._connect()
            return
        if self.sock is not None:
            self._await_first_bytes(self.sock)

    def _first_bytes(self) -> None:
        sock = self._stop_reading_first_bytes()
        if sock is None:
            return
        try:
            arrived = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            self._await_first_bytes(sock)
            return
        except OSError:
            arrived = b""
        if not arrived:  # closed or reset before saying anything
            self._close_socket()
            return
        if self.guard.handshakes.request(self):
            self._begin_handshake()
        else:
            # The wait is the server's, not the client's: the deadline's clock stops.
            self.head_time_left = max(0.0, self.deadline_at - asyncio.get_running_loop().time())
            self._disarm()

    def _await_first_bytes(self, sock: socket.socket) -> None:
        """Wait for the client's first bytes (the ClientHello)."""
        asyncio.get_running_loop().add_reader(sock.fileno(), self._first_bytes)
        self.reading_first_bytes = True

    def take_turn(self) -> bool:
        """Start the handshake with the slot just granted, or say the slot is not needed."""
        if not self.admitted:
            return False
        if self.sock is not None and _peer_has_left(self.sock):
            # It gave up while it waited (and will retry on a new connection): no handshake.
            self._close_socket()
            return False
        self._arm(self.head_time_left)
        self._begin_handshake()
        return True

    def _begin_handshake(self) -> None:
        self.holds_slot = True
        self.slot_timer = asyncio.get_running_loop().call_later(
            HANDSHAKE_SLOT_SECONDS, self._give_back_slot
        )
        self._connect()

    def _give_back_slot(self) -> None:
        if self.slot_timer is not None:
            self.slot_timer.cancel()
            self.slot_timer = None
        if self.holds_slot:
            self.holds_slot = False
            self.guard.handshakes.give_back(self.address)

    def _connect(self) -> None:
        """Give the socket to asyncio: TLS (its handshake) or plain, then `connection_made`."""
        sock, self.sock = self.sock, None
        if sock is None:  # closed meanwhile
            return
        loop = asyncio.get_running_loop()
        self.given_socket = sock
        self.connect_started = loop.time()
        if self.ssl_context is None:
            connecting = loop.connect_accepted_socket(lambda: self, sock)
        else:
            connecting = loop.connect_accepted_socket(
                lambda: self,
                sock,
                ssl=self.ssl_context,
                # The guard's own deadline comes first; this only backs it up.
                ssl_handshake_timeout=self.guard.limits.head_timeout * 2,
            )
        self.connect_task = loop.create_task(connecting)
        self.connect_task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        self.connect_task = None
        self._give_back_slot()
        if task.cancelled():
            # Cancelled before it ran, asyncio never took the socket; else it closed it.
            if self.given_socket is not None:
                self.given_socket.close()
            self._finish(None)
            return
        exc = task.exception()
        if exc is not None:
            # asyncio has closed the socket (ssl.SSLError, resets, the deadline among causes).
            _LOG.debug("TLS handshake failed", extra={"remote": self.address, "reason": str(exc)})
            refused = self.guard.handshake_refused
            if isinstance(exc, ssl.SSLCertVerificationError) and refused is not None:
                refused(self.address, exc, asyncio.get_running_loop().time() - self.connect_started)
            self._finish(None)

    # ---- asyncio.Protocol, once asyncio owns the socket (after the handshake, with TLS)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._give_back_slot()
        self.given_socket = None
        transport = cast(asyncio.Transport, transport)
        if not self.admitted:
            transport.abort()
            return
        self.app_transport = transport
        self.handed_over = True
        self.guard.watch_requests(self, transport)
        self.inner = self.server()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
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
        inner = self.inner
        self._finish(exc)
        if inner is not None:
            inner.connection_lost(exc)

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
        if self.app_transport is not None:
            self.app_transport.abort()
        elif self.connect_task is not None:
            self.connect_task.cancel()  # asyncio closes the socket
        else:
            self._close_socket()

    # ---- internals

    def _stop_reading_first_bytes(self) -> socket.socket | None:
        if self.reading_first_bytes and self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.reading_first_bytes = False
        return self.sock

    def _close_socket(self) -> None:
        """Close a socket asyncio does not own yet."""
        sock = self._stop_reading_first_bytes()
        if sock is not None:
            self.sock = None
            sock.close()
        self._finish(None)

    def _finish(self, _exc: BaseException | None) -> None:
        if not self.admitted:
            return
        self.admitted = False
        self._disarm()
        self._give_back_slot()
        self.guard.handshakes.withdraw(self)
        self.guard.release(self)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        loop = asyncio.get_running_loop()
        self.deadline_at = loop.time() + seconds
        self.deadline = loop.call_at(self.deadline_at, self._deadline_passed)

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


def use_smaller_tls_read_buffers() -> None:
    """Give asyncio's TLS connections `TLS_READ_BUFFER` bytes to read into instead of 256 KiB.

    `SSLProtocol.max_size` is the size of that buffer and of the largest read asked of the
    TLS object; nothing else depends on it. Changed only on the Python version whose
    sslproto.py was checked (3.11) and only while it still has the value that shipped with
    it: elsewhere asyncio keeps its own.
    """
    protocol: Any = sslproto.SSLProtocol
    if sys.version_info[:2] == (3, 11) and (
        getattr(protocol, "max_size", None) == _STDLIB_TLS_READ_BUFFER
    ):
        protocol.max_size = TLS_READ_BUFFER


class Listening:
    """Listener sockets bound and listening, accepted from by a task each through `guard`,
    which stops accepting while it is at its total cap."""

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        guard: ConnectionGuard,
        server: web.Server,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.sockets = list(sockets)
        self.guard = guard
        self.server = server
        self.ssl_context = ssl_context
        self._tasks = [
            asyncio.get_running_loop().create_task(self._accept(sock)) for sock in sockets
        ]

    def close(self) -> None:
        """Stop accepting and close the sockets (connections already accepted stay)."""
        loop = asyncio.get_running_loop()
        for task in self._tasks:
            task.cancel()
        for sock in self.sockets:
            if sock.fileno() != -1:
                loop.remove_reader(sock.fileno())
                sock.close()

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.guard.room()
            await _readable(loop, sock)
            for _ in range(ACCEPT_BATCH):
                if self.guard.full:
                    break
                try:
                    accepted, _peer = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionAbortedError:
                    continue
                except OSError as exc:
                    # Out of descriptors or memory, most likely: accepting must not end.
                    _LOG.error(
                        "cannot accept connections; trying again",
                        extra={"api": self.guard.api, "reason": exc.strerror or str(exc)},
                    )
                    await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                    break
                accepted.setblocking(False)
                self.guard.accepted(accepted, self.server, self.ssl_context)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        if sock.fileno() != -1:  # else closed by `Listening.close`, its reader with it
            loop.remove_reader(sock.fileno())


def _peer_has_left(sock: socket.socket) -> bool:
    """Whether the client closed its end (its FIN arrived) or reset it: Linux's TCP_INFO."""
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return True
        info = getattr(socket, "TCP_INFO", None)
        return (
            info is not None and sock.getsockopt(socket.IPPROTO_TCP, info, 1)[0] == _TCP_CLOSE_WAIT
        )
    except OSError:
        return True


def _peer_address(peer: Any) -> str:
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

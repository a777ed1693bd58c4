"""Sends the flight recorder's events to a syslog receiver (`syslog_url`), from a thread of its
own: a receiver that is slow, gone or unreachable holds up neither the event loop nor the
writes to the store. What waits is bounded; what cannot be sent is counted and dropped, and
the outage logged once (syslog is best effort: the store keeps every recorded event).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sztp.errors import ValidationError

from ..logs import get_logger
from ..metrics import Metrics
from .syslog_format import FACILITIES, SyslogTarget, format_message, parse_syslog_url

if TYPE_CHECKING:
    from ..config import ServerConfig
    from ..device_api.recorder import Pending

_LOG = get_logger()

# Events waiting to be sent, at most; beyond, new ones are counted and dropped.
MAX_WAITING = 20_000
# A connection or a send that takes longer has failed: the receiver is treated as down.
SEND_TIMEOUT_SECONDS = 5.0
# After a failure the next try waits this long, doubled per failure up to the maximum.
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


class SyslogSender:
    """One receiver, one connection (TCP, TLS) or socket (UDP), one thread."""

    def __init__(
        self,
        target: SyslogTarget,
        *,
        facility: int,
        tls: ssl.SSLContext | None,
        metrics: Metrics,
    ) -> None:
        self._target = target
        self._facility = facility
        self._tls = tls
        self._metrics = metrics
        self._hostname = socket.gethostname()
        self._waiting: list[Pending] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._address: tuple[Any, ...] | None = None  # UDP: the receiver's socket address
        self._down = False

    @classmethod
    def of(cls, config: ServerConfig, metrics: Metrics) -> SyslogSender | None:
        """The sender `config` asks for, or None; ValidationError naming a file that cannot
        be loaded."""
        if config.syslog_url is None:
            return None
        target = parse_syslog_url(config.syslog_url)
        tls = None
        if target.transport == "tls":
            tls = _client_context(
                config.syslog_ca_file, config.syslog_tls_cert, config.syslog_tls_key
            )
        return cls(target, facility=FACILITIES[config.syslog_facility], tls=tls, metrics=metrics)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="syslog", daemon=True)
        self._thread.start()

    def send(self, batch: Sequence[Pending]) -> None:
        """Queue `batch` (called by the recorder as it writes them; never waits)."""
        with self._condition:
            room = MAX_WAITING - len(self._waiting)
            if len(batch) > room:
                self._metrics.add("sztp_syslog_dropped_total", len(batch) - room, why="backlog")
                batch = batch[:room]
            self._waiting.extend(batch)
            self._condition.notify()

    def stop(self, timeout: float = SEND_TIMEOUT_SECONDS) -> None:
        """Send what waits (within `timeout`), then close."""
        with self._condition:
            self._stopping = True
            self._condition.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def _run(self) -> None:
        delay = RETRY_SECONDS
        while True:
            with self._condition:
                while not self._waiting and not self._stopping:
                    self._condition.wait()
                batch, self._waiting = self._waiting, []
                stopping = self._stopping
            if batch:
                procid = os.getpid()
                messages = [
                    format_message(event, facility=self._facility, hostname=self._hostname,
                                   procid=procid)
                    for event in batch
                ]  # fmt: skip
                if self._deliver(messages):
                    delay = RETRY_SECONDS
                elif not stopping:
                    with self._condition:  # wait before the next try, unless stopped
                        self._condition.wait_for(lambda: self._stopping, delay)
                    delay = min(delay * 2, MAX_RETRY_SECONDS)
            if stopping:
                return

    def _deliver(self, messages: list[bytes]) -> bool:
        try:
            if self._target.transport == "udp":
                self._send_datagrams(messages)
            else:
                # RFC 6587 §3.4.1 and RFC 5425 §4.3: each message after its length.
                framed = b"".join(b"%d %s" % (len(message), message) for message in messages)
                self._connected().sendall(framed)
        except (OSError, ssl.SSLError) as exc:
            self._close()
            self._metrics.add("sztp_syslog_dropped_total", len(messages), why="unreachable")
            if not self._down:
                self._down = True
                _LOG.warning(
                    "syslog receiver unreachable; events are dropped until it answers",
                    extra={"syslog_url": str(self._target), "reason": _reason(exc)},
                )
            return False
        self._metrics.add("sztp_syslog_sent_total", len(messages))
        if self._down:
            self._down = False
            _LOG.info("syslog receiver reachable again", extra={"syslog_url": str(self._target)})
        return True

    def _send_datagrams(self, messages: list[bytes]) -> None:
        if self._socket is None or self._address is None:
            family, kind, _, _, address = socket.getaddrinfo(
                self._target.host, self._target.port, type=socket.SOCK_DGRAM
            )[0]
            self._socket = socket.socket(family, kind)
            self._address = address
        for message in messages:
            self._socket.sendto(message, self._address)

    def _connected(self) -> socket.socket:
        # A receiver sends nothing: a connection that can be read from was closed by it (a
        # restart); sending on it would vanish in the kernel's buffer, so connect again.
        if self._socket is not None and select.select([self._socket], [], [], 0)[0]:
            self._close()
        if self._socket is None:
            connection = socket.create_connection(
                (self._target.host, self._target.port), timeout=SEND_TIMEOUT_SECONDS
            )
            if self._tls is not None:
                try:
                    connection = self._tls.wrap_socket(
                        connection, server_hostname=self._target.host
                    )
                except BaseException:
                    connection.close()
                    raise
            self._socket = connection
        return self._socket

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
            self._address = None


def _client_context(ca_file: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """TLS 1.2 or later, the receiver's certificate checked against `ca_file` (else the
    system's CAs) and its name; `cert` and `key` for a receiver that asks for a client's."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError("syslog_ca_file", f"cannot load: {_reason(exc)}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ValidationError("syslog_tls_cert", f"cannot load: {_reason(exc)}") from None
    return context


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__

"""The responder's sockets and event loop: python-zeroconf opens and joins the mDNS sockets,
the Responder decides what to send, SIGHUP reloads the records and SIGTERM stops."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import cast

from zeroconf import InterfaceChoice, IPVersion, create_sockets

from sztp.protocol.dns_records import MDNS_GROUP_V4, MDNS_GROUP_V6, MDNS_PORT

from .records import PublishedRecords, RecordsError, load_records
from .responder import Address, Responder

MDNS_GROUPS: dict[int, str] = {socket.AF_INET: MDNS_GROUP_V4, socket.AF_INET6: MDNS_GROUP_V6}


class MdnsEndpoint(asyncio.DatagramProtocol):
    """One socket: what arrives goes to the service, which answers through it."""

    def __init__(self, service: MdnsService, family: int, multicast_sender: bool) -> None:
        self.service = service
        self.family = family
        self.multicast_sender = multicast_sender
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.service.received(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier reply, say to a querier gone away: nothing to do.
        self.service.logger.debug("mdns socket error", extra={"error": str(exc)})


@dataclass
class MdnsService:
    records_path: Path
    responder: Responder
    logger: logging.Logger
    endpoints: list[MdnsEndpoint] = field(default_factory=list)

    def received(self, endpoint: MdnsEndpoint, data: bytes, source: Address) -> None:
        try:
            outcome = self.responder.handle(data, source)
        # One bad datagram must not stop the responder, whatever it trips over.
        except Exception as exc:
            self.logger.warning(
                "mdns query not answered",
                extra={"source": str(source[0]), "error": type(exc).__name__},
            )
            return
        if outcome.dropped:
            self.logger.debug(
                "mdns query dropped", extra={"source": str(source[0]), "reason": outcome.dropped}
            )
        elif outcome.replies:
            self.logger.debug(
                "mdns query answered",
                extra={"source": str(source[0]), "replies": len(outcome.replies)},
            )
        loop = asyncio.get_running_loop()
        for reply in outcome.replies:
            if reply.destination is not None:
                self._send(endpoint, reply.wire, reply.destination)
            else:
                loop.call_later(reply.delay, self._multicast, endpoint.family, reply.wire)

    def reload(self) -> None:
        try:
            records, warnings = load_records(self.records_path)
        except RecordsError as exc:
            self.logger.error(
                "mdns records not reloaded, the previous ones stay", extra={"reason": str(exc)}
            )
            return
        self.responder.records = records
        log_loaded(self.logger, self.records_path, records, warnings)

    def _multicast(self, family: int, wire: bytes) -> None:
        for endpoint in self.endpoints:
            if endpoint.family == family and endpoint.multicast_sender:
                self._send(endpoint, wire, (MDNS_GROUPS[family], MDNS_PORT))

    def _send(self, endpoint: MdnsEndpoint, wire: bytes, destination: Address) -> None:
        if endpoint.transport is None or endpoint.transport.is_closing():
            return
        try:
            endpoint.transport.sendto(wire, destination)
        except OSError as exc:
            self.logger.debug("mdns reply not sent", extra={"error": str(exc)})


def log_loaded(
    logger: logging.Logger, path: Path, records: PublishedRecords, warnings: Sequence[str]
) -> None:
    for warning in warnings:
        logger.warning("mdns records warning", extra={"detail": warning})
    logger.info(
        "mdns records loaded",
        extra={
            "file": str(path),
            "devices": records.devices,
            "servers": records.servers,
            "hosts": records.hosts,
        },
    )


def open_sockets(interfaces: Sequence[str]) -> list[tuple[socket.socket, int, bool]]:
    """(socket, family, sends multicast) for each mDNS socket: per IP version a listening socket
    on port 5353 in the group, and one per interface that multicasts through it. With no
    interfaces given, every interface of both versions; OSError when none can be used."""
    opened: list[tuple[socket.socket, int, bool]] = []
    versions = (
        (IPVersion.V4Only, socket.AF_INET, 4),
        (IPVersion.V6Only, socket.AF_INET6, 6),
    )
    for version, family, number in versions:
        chosen = [
            address for address in interfaces if ipaddress.ip_address(address).version == number
        ]
        if interfaces and not chosen:
            continue
        try:
            listener, senders = create_sockets(
                list(chosen) if interfaces else InterfaceChoice.All, ip_version=version
            )
        except RuntimeError:
            # No address of this IP version on the host: the other version may still serve.
            if interfaces:
                raise
            continue
        if listener is None or not senders:
            if listener is not None:
                listener.close()
            continue
        opened.append((listener, family, False))
        opened += [(sender, family, True) for sender in senders]
    if not opened:
        raise OSError("no interface could join the mDNS group")
    return opened


async def serve(
    records_path: Path,
    records: PublishedRecords,
    interfaces: Sequence[str],
    logger: logging.Logger,
) -> None:
    loop = asyncio.get_running_loop()
    service = MdnsService(records_path, Responder(records), logger)
    for sock, family, sender in open_sockets(interfaces):
        sock.setblocking(False)
        endpoint = MdnsEndpoint(service, family, sender)
        await loop.create_datagram_endpoint(partial(_same, endpoint), sock=sock)
        service.endpoints.append(endpoint)
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGHUP, service.reload)
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(stop_signal, stopped.set)
    logger.info(
        "mdns responder ready",
        extra={
            "interfaces": list(interfaces) or "all",
            "sockets": len(service.endpoints),
        },
    )
    try:
        await stopped.wait()
    finally:
        for endpoint in service.endpoints:
            if endpoint.transport is not None:
                endpoint.transport.close()
    logger.info("mdns responder stopped")


def _same(endpoint: MdnsEndpoint) -> MdnsEndpoint:
    return endpoint


def run(records_path: Path, interfaces: Sequence[str], logger: logging.Logger) -> None:
    """Serve until SIGTERM; RecordsError when the records cannot be published at start."""
    records, warnings = load_records(records_path)
    log_loaded(logger, records_path, records, warnings)
    asyncio.run(serve(records_path, records, interfaces, logger))

"""A stand-in for an mDNS responder, for the device side's one-shot queries (RFC 6762 §6.7):
a UDP socket on a loopback address that answers each query by unicast to the querier's port
with what `answer` makes of it, and records every query with the port it came from."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Sequence

import dns.message
import dns.rdatatype

Reply = dns.message.Message | bytes


class OneShotResponder:
    def __init__(
        self,
        answer: Callable[[dns.message.Message], Sequence[Reply]],
        family: socket.AddressFamily = socket.AF_INET,
    ) -> None:
        self.answer = answer
        self.queries: list[tuple[dns.message.Message, int]] = []
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.settimeout(0.1)
        # Where a querier sends, as it would to the mDNS group.
        self.group: tuple[str, int] = self.sock.getsockname()[:2]
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def questions(self) -> list[tuple[str, str]]:
        """Each query's (name without the root, type)."""
        return [
            (query.question[0].name.to_text(True), dns.rdatatype.to_text(query.question[0].rdtype))
            for query, _ in self.queries
        ]

    def _serve(self) -> None:
        while self.running:
            try:
                wire, sender = self.sock.recvfrom(9000)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            self.queries.append((query, sender[1]))
            for reply in self.answer(query):
                self.sock.sendto(reply if isinstance(reply, bytes) else reply.to_wire(), sender)

    def __enter__(self) -> OneShotResponder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.running = False
        self.thread.join()
        self.sock.close()

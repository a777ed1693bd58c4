"""What to send for one received datagram: the answering rules of RFC 6762, no sockets.

Every datagram is hostile until parsed: one over an mDNS message's size is dropped unread,
one dnspython cannot parse is dropped, and each source address gets a bounded rate of queries.
Responses and queries with a non-zero opcode or rcode are ignored (RFC 6762 §18.3, §18.11).

- A query from a port other than 5353 is a legacy unicast query (§6.7): the reply goes to its
  source with the query's ID and question, TTLs capped at 10 s.
- A question with the unicast-response bit (QU, §5.4) from port 5353 is answered by unicast
  to the querier.
- Otherwise (QM) the answer is multicast after a short random delay, as for shared records
  (§6), at most once a second per RRset (§6), and not at all when the query lists it as a
  known answer with at least half its TTL left (§7.1).

The records are published without the cache-flush bit: they are shared records, so two hosts
may publish the same fragment and neither flushes the other's from a device's cache.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rrset

from sztp.protocol.dns_records import MAX_MDNS_MESSAGE, MDNS_PORT

from .messages import response_wire
from .records import PublishedRecords

_UNICAST_RESPONSE = 0x8000  # the top bit of a question's class (RFC 6762 §5.4)
MULTICAST_DELAY = (0.020, 0.120)  # seconds, RFC 6762 §6
MULTICAST_INTERVAL = 1.0  # seconds between multicasts of one RRset, RFC 6762 §6
QUERIES_PER_SECOND = 20.0
QUERY_BURST = 40.0
MAX_TRACKED_SOURCES = 4096

Address = tuple[Any, ...]


@dataclass(frozen=True)
class Reply:
    """A message to send: to `destination`, or to the mDNS group after `delay` seconds."""

    wire: bytes
    destination: Address | None
    delay: float = 0.0


class SourceRateLimit:
    """A token bucket per source address; the least recently seen sources are forgotten."""

    def __init__(
        self,
        *,
        rate: float = QUERIES_PER_SECOND,
        burst: float = QUERY_BURST,
        max_sources: int = MAX_TRACKED_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._max_sources = max_sources
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str) -> bool:
        now = self._clock()
        tokens, then = self._buckets.pop(source, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        return allowed


@dataclass(frozen=True)
class Outcome:
    """The replies for a datagram, or why there are none (for the log)."""

    replies: list[Reply]
    dropped: str | None = None


class Responder:
    def __init__(
        self,
        records: PublishedRecords,
        *,
        rate_limit: SourceRateLimit | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.records = records
        self._rate_limit = rate_limit or SourceRateLimit(clock=clock)
        self._clock = clock
        # Only spreads out replies in time (RFC 6762 §6); nothing depends on it being unguessable.
        self._rng = rng or random.Random()  # noqa: S311
        self._last_multicast: dict[tuple[dns.name.Name, int], float] = {}

    def handle(self, data: bytes, source: Address) -> Outcome:
        if len(data) > MAX_MDNS_MESSAGE:
            return Outcome([], "too large")
        if not self._rate_limit.allow(str(source[0])):
            return Outcome([], "rate limited")
        try:
            query = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            return Outcome([], "malformed")
        if (
            query.flags & dns.flags.QR
            or query.opcode() != dns.opcode.QUERY
            or query.rcode() != dns.rcode.NOERROR
        ):
            return Outcome([])
        if source[1] != MDNS_PORT:
            return Outcome(self._legacy_replies(query, source))
        return Outcome(self._mdns_replies(query, source))

    def _legacy_replies(self, query: dns.message.Message, source: Address) -> list[Reply]:
        answered = [
            (question, rrsets) for question in query.question if (rrsets := self._answers(question))
        ]
        if not answered:
            return []
        together = self._legacy_wire(query, answered)
        if len(together) <= MAX_MDNS_MESSAGE:
            return [Reply(together, source)]
        # Answers to several questions that fit no single message: one reply per question.
        return [Reply(self._legacy_wire(query, [item]), source) for item in answered]

    def _legacy_wire(
        self,
        query: dns.message.Message,
        answered: Sequence[tuple[dns.rrset.RRset, list[dns.rrset.RRset]]],
    ) -> bytes:
        rrsets = [rrset for _, found in answered for rrset in found]
        return response_wire(
            rrsets,
            self._additionals(rrsets),
            legacy_query=query,
            questions=[question for question, _ in answered],
        )

    def _mdns_replies(self, query: dns.message.Message, source: Address) -> list[Reply]:
        unicast: list[dns.rrset.RRset] = []
        multicast: list[dns.rrset.RRset] = []
        now = self._clock()
        for question in query.question:
            for rrset in self._answers(question):
                if _known(rrset, query.answer):
                    continue
                if question.rdclass & _UNICAST_RESPONSE:
                    unicast.append(rrset)
                    continue
                key = (rrset.name, rrset.rdtype)
                if now - self._last_multicast.get(key, -MULTICAST_INTERVAL) < MULTICAST_INTERVAL:
                    continue
                self._last_multicast[key] = now
                multicast.append(rrset)
        replies = [Reply(wire, source) for wire in self._messages(unicast)]
        delay = self._rng.uniform(*MULTICAST_DELAY)
        replies += [Reply(wire, None, delay) for wire in self._messages(multicast)]
        return replies

    def _answers(self, question: dns.rrset.RRset) -> list[dns.rrset.RRset]:
        rdclass = question.rdclass & ~_UNICAST_RESPONSE
        if rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            return []
        return self.records.answers(question.name, question.rdtype)

    def _additionals(self, answers: Sequence[dns.rrset.RRset]) -> list[dns.rrset.RRset]:
        found: list[dns.rrset.RRset] = []
        for answer in answers:
            found += [
                rrset
                for rrset in self.records.additionals(answer)
                if rrset not in answers and rrset not in found
            ]
        return found

    def _messages(self, rrsets: list[dns.rrset.RRset]) -> list[bytes]:
        """One message with every answer, or one per RRset when they do not fit together
        (each fits alone: the records were checked at load)."""
        if not rrsets:
            return []
        together = response_wire(rrsets, self._additionals(rrsets))
        if len(together) <= MAX_MDNS_MESSAGE:
            return [together]
        return [response_wire([rrset], self._additionals([rrset])) for rrset in rrsets]


def _known(rrset: dns.rrset.RRset, known_answers: Sequence[dns.rrset.RRset]) -> bool:
    """True when the querier lists every record of `rrset` with at least half its TTL left."""
    for known in known_answers:
        if (
            known.name == rrset.name
            and known.rdtype == rrset.rdtype
            and known.ttl * 2 >= rrset.ttl
            and all(rdata in known for rdata in rrset)
        ):
            return True
    return False

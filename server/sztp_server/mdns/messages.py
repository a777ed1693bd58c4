"""mDNS response messages, built and encoded by dnspython (RFC 6762 §6, §6.7, §18)."""

from __future__ import annotations

from collections.abc import Sequence

import dns.flags
import dns.message
import dns.rrset

# RFC 6762 §6.7: records in a reply to a legacy unicast query carry a TTL of at most 10 s.
LEGACY_UNICAST_TTL = 10


def response_wire(
    answers: Sequence[dns.rrset.RRset],
    additionals: Sequence[dns.rrset.RRset],
    *,
    legacy_query: dns.message.Message | None = None,
    questions: Sequence[dns.rrset.RRset] = (),
) -> bytes:
    """A response in wire form. For a legacy unicast query (RFC 6762 §6.7) it repeats the query
    ID and `questions` and caps the TTLs; a multicast or QU response has ID 0 and no question
    (RFC 6762 §18.1, §6)."""
    message = dns.message.Message(id=0 if legacy_query is None else legacy_query.id)
    message.flags = dns.flags.QR | dns.flags.AA
    if legacy_query is not None:
        message.question = list(questions)
        answers = [_capped(rrset) for rrset in answers]
        additionals = [_capped(rrset) for rrset in additionals]
    message.answer = list(answers)
    message.additional = list(additionals)
    # Unbounded here: callers compare the length with MAX_MDNS_MESSAGE to decide what to send.
    return message.to_wire(max_size=65535)


def _capped(rrset: dns.rrset.RRset) -> dns.rrset.RRset:
    if rrset.ttl <= LEGACY_UNICAST_TTL:
        return rrset
    capped = rrset.copy()
    capped.update_ttl(LEGACY_UNICAST_TTL)
    return capped

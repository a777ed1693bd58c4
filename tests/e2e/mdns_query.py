"""Ask an mDNS question from inside a namespace, as a device would; print the replies as JSON.

    mdns_query.py MODE INTERFACE_ADDRESS NAME TYPE

MODE is `legacy` (a one-shot query from an ephemeral port, RFC 6762 §6.7), `qu` or `qm` (from
port 5353, unicast-response bit set or not), or `garbage` (NAME is sent as the raw datagram,
nothing is read). Replies are collected until the wait ends: each with its ID, its questions
and its answer and additional records, TXT strings and addresses in hex or text.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import dns.rrset

GROUP = "224.0.0.251"
PORT = 5353
WAIT = 0.5
QU_CLASS = 0x8001  # IN with the unicast-response bit


def main() -> None:
    mode, interface, name, rdtype = sys.argv[1:5]
    if mode == "garbage":
        with _socket(interface, 0) as sock:
            sock.sendto(bytes.fromhex(name), (GROUP, PORT))
        return
    query = dns.message.make_query(name, rdtype, flags=0)
    if mode == "qu":
        query.question[0].rdclass = QU_CLASS  # type: ignore[assignment]
    with _socket(interface, 0 if mode == "legacy" else PORT) as sock:
        if mode != "legacy":
            query.id = 0
        dns.query.send_udp(sock, query, (GROUP, PORT))
        replies = list(_replies(sock, query if mode == "legacy" else None))
    print(json.dumps(replies))


def _socket(interface: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)  # dnspython waits for readiness itself
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
    if port:
        sock.bind(("", port))
        membership = socket.inet_aton(GROUP) + socket.inet_aton(interface)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, struct.pack("B", 0))
    else:
        sock.bind((interface, 0))
    return sock


def _replies(sock: socket.socket, query: dns.message.Message | None) -> list[dict[str, object]]:
    deadline = time.time() + WAIT  # dnspython takes expirations in time.time()
    found: list[dict[str, object]] = []
    while True:
        try:
            message = dns.query.receive_udp(
                sock, expiration=deadline, query=query, ignore_errors=True
            )[0]
        except dns.exception.Timeout:
            return found
        if message.flags & dns.flags.QR:
            found.append(_shown(message))


def _shown(message: dns.message.Message) -> dict[str, object]:
    return {
        "id": message.id,
        "question": [f"{q.name} {dns.rdatatype.to_text(q.rdtype)}" for q in message.question],
        "answer": [_rrset(rrset) for rrset in message.answer],
        "additional": [_rrset(rrset) for rrset in message.additional],
    }


def _rrset(rrset: dns.rrset.RRset) -> dict[str, object]:
    if rrset.rdtype == dns.rdatatype.TXT:
        rdatas: list[object] = [[string.hex() for string in rdata.strings] for rdata in rrset]
    else:
        rdatas = [rdata.to_text() for rdata in rrset]
    return {
        "name": rrset.name.to_text(),
        "type": dns.rdatatype.to_text(rrset.rdtype),
        "class": int(rrset.rdclass),
        "ttl": rrset.ttl,
        "rdata": rdatas,
    }


if __name__ == "__main__":
    main()

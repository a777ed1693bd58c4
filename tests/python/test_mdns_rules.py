"""sztp-mdns without sockets: what the records file may hold, and the answering rules."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.message
import dns.opcode
import dns.rdatatype
import dns.rrset
import pytest

from sztp.protocol.dns_records import (
    MAX_MDNS_MESSAGE,
    MDNS_PORT,
    bootstrap_srv,
    device_txt,
    render_zone_fragment,
)
from sztp_server.mdns.records import RecordsError, load_records
from sztp_server.mdns.responder import Responder, SourceRateLimit

SERIAL = "SN-7"
LEGACY_SOURCE = ("10.0.0.2", 40000)
MDNS_SOURCE = ("10.0.0.2", MDNS_PORT)


def fragment(conveyed_information: bytes = b"unsigned" * 20) -> str:
    devices = {SERIAL: device_txt(SERIAL, conveyed_information=conveyed_information)}
    servers = bootstrap_srv([("boot.local", 443, 0, 0)])
    return (
        render_zone_fragment(ttl=120, devices=devices, servers=servers) + "boot 120 IN A 10.0.0.1\n"
    )


def records_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mdns.zone"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("www 120 IN CNAME boot\n", "www.local.: CNAME is not published over mDNS"),
        ("host.example.com. 120 IN A 10.0.0.9\n", "host.example.com.: not under .local"),
        ("other 120 IN A 10.0.0.9\n", "other.local.: has addresses but is not the target"),
        ('SN-8._sztp 120 IN TXT "oc=x"\n', "device 'SN-8': conveyed_information"),
        ('_sztp._tcp 120 IN TXT "x"\n', "a TXT record where only SRV belongs"),
    ],
)
def test_records_that_cannot_be_published_are_refused(
    tmp_path: Path, extra: str, message: str
) -> None:
    with pytest.raises(RecordsError, match=message):
        load_records(records_file(tmp_path, fragment() + extra))


def test_a_device_over_one_mdns_message_is_refused_with_its_size(tmp_path: Path) -> None:
    path = records_file(tmp_path, fragment(b"x" * MAX_MDNS_MESSAGE))
    with pytest.raises(RecordsError, match=r"device 'SN-7': the TXT answer takes \d+ octets"):
        load_records(path)


def test_a_target_without_addresses_is_a_warning(tmp_path: Path) -> None:
    text = fragment().replace("boot 120 IN A 10.0.0.1\n", "")
    records, warnings = load_records(records_file(tmp_path, text))
    assert (records.devices, records.servers, records.hosts) == (1, 1, 0)
    assert warnings == [
        f"{tmp_path / 'mdns.zone'}: SRV target boot.local. has no A or AAAA "
        "record here: another mDNS responder on the link must answer for it"
    ]


def responder(tmp_path: Path, **options: object) -> Responder:
    records, _ = load_records(records_file(tmp_path, fragment()))
    return Responder(records, **options)  # type: ignore[arg-type]


def query(name: str, rdtype: str) -> dns.message.Message:
    message = dns.message.make_query(name, rdtype, flags=0)
    message.id = 0
    return message


def test_a_qm_answer_is_multicast_once_a_second_and_not_when_known(tmp_path: Path) -> None:
    now = [100.0]
    answering = responder(tmp_path, clock=lambda: now[0])
    ask = query("_sztp._tcp.local.", "SRV").to_wire()
    (reply,) = answering.handle(ask, MDNS_SOURCE).replies
    assert reply.destination is None and 0.02 <= reply.delay <= 0.12
    assert answering.handle(ask, MDNS_SOURCE).replies == []
    now[0] += 1.0
    known = query("_sztp._tcp.local.", "SRV")
    srv = dns.message.from_wire(reply.wire).answer[0]
    known.answer.append(srv)
    assert answering.handle(known.to_wire(), MDNS_SOURCE).replies == []
    srv.ttl = srv.ttl // 2 - 1  # under half its TTL left: answered again (RFC 6762 §7.1)
    assert answering.handle(known.to_wire(), MDNS_SOURCE).replies


def test_responses_and_other_opcodes_are_ignored(tmp_path: Path) -> None:
    answering = responder(tmp_path)
    response = query(f"{SERIAL}._sztp.local.", "TXT")
    response.flags |= dns.flags.QR
    assert answering.handle(response.to_wire(), LEGACY_SOURCE).replies == []
    update = dns.message.make_query(f"{SERIAL}._sztp.local.", "TXT")
    update.set_opcode(dns.opcode.UPDATE)
    assert answering.handle(update.to_wire(), LEGACY_SOURCE).replies == []


def test_each_source_gets_a_bounded_rate(tmp_path: Path) -> None:
    now = [0.0]
    answering = responder(
        tmp_path, rate_limit=SourceRateLimit(rate=1.0, burst=3.0, clock=lambda: now[0])
    )
    ask = dns.message.make_query(f"{SERIAL}._sztp.local.", "TXT").to_wire()
    outcomes = [answering.handle(ask, LEGACY_SOURCE) for _ in range(4)]
    assert [outcome.dropped for outcome in outcomes] == [None, None, None, "rate limited"]
    assert answering.handle(ask, ("10.0.0.3", 40000)).replies
    now[0] += 1.0
    assert answering.handle(ask, LEGACY_SOURCE).replies


def test_the_least_recent_sources_are_forgotten() -> None:
    limit = SourceRateLimit(rate=0.0, burst=1.0, max_sources=2, clock=lambda: 0.0)
    assert limit.allow("a") and limit.allow("b") and limit.allow("c")
    assert not limit.allow("c")
    assert limit.allow("a")  # forgotten, so a full bucket again

"""The capture reader on hand-built frames (no root, no network needed)."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import dns.message
import pytest

from e2e_pcap import (
    CaptureFormatError,
    DnsQuestion,
    dhcp_messages,
    dns_questions,
    read_pcap,
    router_advertisements,
)

CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")


def _pcap(frames: list[bytes], *, big_endian: bool = False) -> bytes:
    endian = ">" if big_endian else "<"
    header = struct.pack(f"{endian}IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    records = b"".join(
        struct.pack(f"{endian}IIII", 1, 0, len(frame), len(frame)) + frame for frame in frames
    )
    return header + records


def _udp(source_port: int, destination_port: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", source_port, destination_port, 8 + len(payload), 0) + payload


def _ipv4_frame(source: str, destination: str, segment: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(segment),
        0,
        0,
        64,
        17,
        0,
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address(destination).packed,
    )
    # Ethernet pads to 60 bytes: the reader must go by the IP total length.
    frame = SERVER_MAC + CLIENT_MAC + b"\x08\x00" + header + segment
    return frame + bytes(max(0, 60 - len(frame)))


def _ipv6_frame(source: str, destination: str, segment: bytes, protocol: int = 17) -> bytes:
    header = struct.pack("!IHBB", 6 << 28, len(segment), protocol, 64)
    addresses = ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed
    return SERVER_MAC + CLIENT_MAC + b"\x86\xdd" + header + addresses + segment


def _dhcpv4_offer(options: bytes, boot_file: bytes = b"") -> bytes:
    fixed = bytearray(236)
    fixed[0], fixed[1], fixed[2] = 2, 1, 6  # BOOTREPLY, Ethernet, 6-byte address
    fixed[16:20] = ipaddress.IPv4Address("10.0.0.9").packed
    fixed[28:34] = CLIENT_MAC
    fixed[108 : 108 + len(boot_file)] = boot_file
    return bytes(fixed) + bytes([99, 130, 83, 99]) + options + b"\xff"


def test_dhcpv4_options_are_read_and_split_instances_concatenated(tmp_path: Path) -> None:
    # Option 143 in two instances, the second in the `file` field (overload = 1): RFC 3396
    # says the value is their concatenation, options field first.
    options = bytes([53, 1, 2, 52, 1, 1, 143, 3]) + b"\x00\x05h" + b"\x00"  # a PAD too
    boot_file = bytes([143, 4]) + b"ttps" + b"\xff"
    segment = _udp(67, 68, _dhcpv4_offer(options, boot_file))
    arp = SERVER_MAC + CLIENT_MAC + b"\x08\x06" + bytes(28)
    capture = tmp_path / "v4.pcap"
    capture.write_bytes(_pcap([arp, _ipv4_frame("10.0.0.1", "10.0.0.9", segment)]))

    v4, v6 = dhcp_messages(capture)

    assert v6 == []
    (offer,) = v4
    assert offer.message_type == "OFFER"
    assert offer.client_hardware_address == CLIENT_MAC
    assert offer.your_address == ipaddress.IPv4Address("10.0.0.9")
    assert offer.instances(143) == [b"\x00\x05h", b"ttps"]
    assert offer.option(143) == b"\x00\x05https"


def test_dhcpv6_options_are_read(tmp_path: Path) -> None:
    sztp = b"\x00\x13https://[2001:db8::1]"
    message = b"\x07\xab\xcd\xef" + struct.pack("!HH", 136, len(sztp)) + sztp
    frame = _ipv6_frame("fe80::1", "fe80::2", _udp(547, 546, message))
    capture = tmp_path / "v6.pcap"
    capture.write_bytes(_pcap([frame], big_endian=True))

    v4, v6 = dhcp_messages(capture)

    assert v4 == []
    (reply,) = v6
    assert (reply.message_type, reply.transaction_id) == ("REPLY", 0xABCDEF)
    assert reply.instances(136) == [sztp]


def test_truncated_capture_is_reported(tmp_path: Path) -> None:
    capture = tmp_path / "cut.pcap"
    capture.write_bytes(_pcap([bytes(60)])[:-10])
    with pytest.raises(CaptureFormatError, match="truncated frame"):
        list(read_pcap(capture))


def test_dhcpv4_without_end_option_is_reported(tmp_path: Path) -> None:
    offer = _dhcpv4_offer(bytes([53, 1, 2]))[:-1]  # drop END
    capture = tmp_path / "noend.pcap"
    capture.write_bytes(_pcap([_ipv4_frame("10.0.0.1", "10.0.0.9", _udp(67, 68, offer))]))
    with pytest.raises(CaptureFormatError, match="no END"):
        dhcp_messages(capture)


def test_router_advertisement_options_are_read(tmp_path: Path) -> None:
    # RFC 4861 §4.2: type 134, code, checksum, hop limit, flags (O = 0x40), router lifetime,
    # reachable time, retransmission timer; then options in units of 8 octets.
    fixed = struct.pack("!BBHBBHII", 134, 0, 0, 64, 0x40, 0, 0, 0)
    prefix = struct.pack("!BBBBIII", 3, 4, 64, 0xC0, 86400, 14400, 0)
    prefix += ipaddress.IPv6Address("2001:db8:1::").packed
    rdnss = struct.pack("!BBHI", 25, 5, 0, 600)
    rdnss += ipaddress.IPv6Address("2001:db8:1::53").packed
    rdnss += ipaddress.IPv6Address("2001:db8:1::54").packed
    names = b"\x04sztp\x07example\x00\x03lab\x00"
    # Padded with zeros to a multiple of 8 octets: 8 + 19 + 5.
    dnssl = struct.pack("!BBHI", 31, 4, 0, 600) + names + bytes(5)
    message = fixed + prefix + rdnss + dnssl
    frame = _ipv6_frame("fe80::1", "ff02::1", message, protocol=58)
    capture = tmp_path / "ra.pcap"
    capture.write_bytes(_pcap([frame]))

    (advertisement,) = router_advertisements(capture)

    assert advertisement.source == ipaddress.IPv6Address("fe80::1")
    assert advertisement.other_config
    assert [kind for kind, _ in advertisement.options] == [3, 25, 31]
    assert advertisement.prefixes() == [ipaddress.IPv6Network("2001:db8:1::/64")]
    assert advertisement.recursive_dns_servers() == [
        ipaddress.IPv6Address("2001:db8:1::53"),
        ipaddress.IPv6Address("2001:db8:1::54"),
    ]
    assert advertisement.search_domains() == ["sztp.example", "lab"]


def test_dns_questions_are_read_and_answers_skipped(tmp_path: Path) -> None:
    query = dns.message.make_query("SN-1._sztp.local.", "TXT")
    answer = dns.message.make_response(query)
    frames = [
        _ipv6_frame("fe80::2", "ff02::fb", _udp(40000, 5353, query.to_wire())),
        _ipv6_frame("fe80::1", "fe80::2", _udp(5353, 40000, answer.to_wire())),
        _ipv4_frame("10.0.0.9", "10.0.0.1", _udp(40001, 53, query.to_wire())),
    ]
    capture = tmp_path / "dns.pcap"
    capture.write_bytes(_pcap(frames))

    assert dns_questions(capture) == [
        DnsQuestion(ipaddress.IPv6Address("ff02::fb"), 5353, "SN-1._sztp.local", "TXT"),
        DnsQuestion(ipaddress.IPv4Address("10.0.0.1"), 53, "SN-1._sztp.local", "TXT"),
    ]

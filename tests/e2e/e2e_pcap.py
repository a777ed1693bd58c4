"""A small, independent reader for the DHCP packets in a tcpdump capture, and for the router
advertisements and DNS queries the IPv6-only site's test looks for.

Written for these tests only, from the format specifications and not from the kit's code:
classic pcap files (tcpdump -w), Ethernet (with 802.1Q tags), IPv4 and IPv6 (skipping the
usual extension headers), UDP, then DHCPv4 (RFC 2131/2132: fixed header, magic cookie,
options, with option overload and RFC 3396 concatenation) and DHCPv6 (RFC 8415: client and
server messages; relay messages are not expected on a single link and are skipped).
No scapy: the point is to check the option bytes with code that shares nothing with the
encoder under test. Router advertisements are read per RFC 4861 §4.2 (options RDNSS and DNSSL of
RFC 8106); DNS messages are decoded by dnspython, only for their question's name and type.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.rdatatype

PCAP_MAGIC_MICROSECONDS = 0xA1B2C3D4
PCAP_MAGIC_NANOSECONDS = 0xA1B23C4D
LINKTYPE_ETHERNET = 1
PCAP_HEADER_SIZE = 24
RECORD_HEADER_SIZE = 16

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = {0x8100, 0x88A8}
IP_PROTOCOL_UDP = 17
IP_PROTOCOL_ICMPV6 = 58
# IPv6 extension headers that can sit between the fixed header and UDP (hop-by-hop,
# routing, destination options); fragments (44) never carry a whole DHCP message.
IPV6_EXTENSION_HEADERS = {0, 43, 60}

DHCPV4_PORTS = {67, 68}
DHCPV6_PORTS = {546, 547}

DNS_PORTS = {53, 5353}
ICMPV6_ROUTER_ADVERTISEMENT = 134
ND_OPTION_PREFIX_INFORMATION = 3
ND_OPTION_RDNSS = 25
ND_OPTION_DNSSL = 31
RA_FIXED_PART = 16  # type, code, checksum, hop limit, flags, lifetime, reachable, retrans
RA_OTHER_CONFIG_FLAG = 0x40

DHCPV4_FIXED_HEADER = 236
DHCPV4_MAGIC_COOKIE = bytes([99, 130, 83, 99])
DHCPV4_PAD = 0
DHCPV4_END = 255
DHCPV4_OPTION_OVERLOAD = 52
DHCPV4_MESSAGE_TYPE = 53
DHCPV4_MESSAGE_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 5: "ACK", 6: "NAK", 7: "RELEASE"}
DHCPV6_MESSAGE_TYPES = {
    1: "SOLICIT",
    2: "ADVERTISE",
    3: "REQUEST",
    5: "RENEW",
    7: "REPLY",
    8: "RELEASE",
    11: "INFORMATION-REQUEST",
}
DHCPV6_RELAY_MESSAGES = {12, 13}


class CaptureFormatError(ValueError):
    """The capture is not something this reader understands (says what and where)."""


@dataclass(frozen=True)
class UdpDatagram:
    source: ipaddress.IPv4Address | ipaddress.IPv6Address
    destination: ipaddress.IPv4Address | ipaddress.IPv6Address
    source_port: int
    destination_port: int
    payload: bytes


@dataclass(frozen=True)
class Dhcpv4Message:
    op: int  # 1 BOOTREQUEST (client), 2 BOOTREPLY (server)
    message_type: str
    client_hardware_address: bytes
    your_address: ipaddress.IPv4Address
    options: tuple[tuple[int, bytes], ...]  # every instance, in RFC 3396 order

    def option(self, code: int) -> bytes | None:
        """All instances of `code` concatenated (RFC 3396), or None when absent."""
        parts = [value for option_code, value in self.options if option_code == code]
        return b"".join(parts) if parts else None

    def instances(self, code: int) -> list[bytes]:
        return [value for option_code, value in self.options if option_code == code]


@dataclass(frozen=True)
class Dhcpv6Message:
    message_type: str
    transaction_id: int
    options: tuple[tuple[int, bytes], ...]

    def option(self, code: int) -> bytes | None:
        return next((value for option_code, value in self.options if option_code == code), None)

    def instances(self, code: int) -> list[bytes]:
        return [value for option_code, value in self.options if option_code == code]


def read_pcap(path: Path) -> Iterator[bytes]:
    """The frames of a classic pcap file (either byte order, micro- or nanosecond stamps)."""
    data = path.read_bytes()
    if len(data) < PCAP_HEADER_SIZE:
        raise CaptureFormatError(f"{path}: {len(data)} bytes, shorter than a pcap header")
    for endian in ("<", ">"):
        (magic,) = struct.unpack_from(f"{endian}I", data)
        if magic in (PCAP_MAGIC_MICROSECONDS, PCAP_MAGIC_NANOSECONDS):
            break
    else:
        raise CaptureFormatError(f"{path}: not a classic pcap file (pcapng is not supported)")
    _, _, _, _, _, link_type = struct.unpack_from(f"{endian}HHiIII", data, 4)
    if link_type & 0xFFFF != LINKTYPE_ETHERNET:
        raise CaptureFormatError(f"{path}: link type {link_type}, only Ethernet (1) is read")
    offset = PCAP_HEADER_SIZE
    while offset < len(data):
        if len(data) - offset < RECORD_HEADER_SIZE:
            raise CaptureFormatError(f"{path}: truncated record header at offset {offset}")
        _, _, captured, _ = struct.unpack_from(f"{endian}IIII", data, offset)
        offset += RECORD_HEADER_SIZE
        if len(data) - offset < captured:
            raise CaptureFormatError(f"{path}: truncated frame at offset {offset}")
        yield data[offset : offset + captured]
        offset += captured


def udp_datagram(frame: bytes) -> UdpDatagram | None:
    """The UDP datagram an Ethernet frame carries, or None for anything else."""
    if len(frame) < 14:
        return None
    ethertype = int.from_bytes(frame[12:14], "big")
    offset = 14
    while ethertype in ETHERTYPE_VLAN and len(frame) >= offset + 4:
        ethertype = int.from_bytes(frame[offset + 2 : offset + 4], "big")
        offset += 4
    if ethertype == ETHERTYPE_IPV4:
        return _ipv4_udp(frame[offset:])
    if ethertype == ETHERTYPE_IPV6:
        return _ipv6_udp(frame[offset:])
    return None


def _ipv4_udp(packet: bytes) -> UdpDatagram | None:
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    header_length = (packet[0] & 0x0F) * 4
    total_length = int.from_bytes(packet[2:4], "big")
    fragment = int.from_bytes(packet[6:8], "big")
    more_fragments, fragment_offset = fragment & 0x2000, fragment & 0x1FFF
    if packet[9] != IP_PROTOCOL_UDP or more_fragments or fragment_offset:
        return None
    source = ipaddress.IPv4Address(packet[12:16])
    destination = ipaddress.IPv4Address(packet[16:20])
    # Ethernet pads short frames: the IP total length says where the packet really ends.
    return _udp(packet[header_length:total_length], source, destination)


def _ipv6_udp(packet: bytes) -> UdpDatagram | None:
    upper = _ipv6_upper_layer(packet)
    if upper is None or upper[0] != IP_PROTOCOL_UDP:
        return None
    _, source, destination, payload = upper
    return _udp(payload, source, destination)


def _ipv6_upper_layer(
    packet: bytes,
) -> tuple[int, ipaddress.IPv6Address, ipaddress.IPv6Address, bytes] | None:
    """(protocol, source, destination, payload) of an IPv6 packet, past its extension headers."""
    if len(packet) < 40 or packet[0] >> 4 != 6:
        return None
    payload_length = int.from_bytes(packet[4:6], "big")
    next_header = packet[6]
    source = ipaddress.IPv6Address(packet[8:24])
    destination = ipaddress.IPv6Address(packet[24:40])
    payload = packet[40 : 40 + payload_length]
    while next_header in IPV6_EXTENSION_HEADERS and len(payload) >= 8:
        next_header, length = payload[0], (payload[1] + 1) * 8
        payload = payload[length:]
    return next_header, source, destination, payload


def _udp(
    segment: bytes,
    source: ipaddress.IPv4Address | ipaddress.IPv6Address,
    destination: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> UdpDatagram | None:
    if len(segment) < 8:
        return None
    source_port, destination_port, length = struct.unpack_from("!HHH", segment)
    if length < 8 or length > len(segment):
        raise CaptureFormatError(f"UDP length {length} does not fit a {len(segment)}-byte segment")
    return UdpDatagram(source, destination, source_port, destination_port, segment[8:length])


def parse_dhcpv4(payload: bytes) -> Dhcpv4Message:
    if len(payload) < DHCPV4_FIXED_HEADER + len(DHCPV4_MAGIC_COOKIE):
        raise CaptureFormatError(f"DHCPv4 message of {len(payload)} bytes is too short")
    cookie = payload[DHCPV4_FIXED_HEADER : DHCPV4_FIXED_HEADER + 4]
    if cookie != DHCPV4_MAGIC_COOKIE:
        raise CaptureFormatError(f"DHCPv4 magic cookie is {cookie.hex()}, not 63825363")
    hardware_length = min(payload[2], 16)
    server_name, boot_file = payload[44:108], payload[108:236]
    options = _dhcpv4_options(payload[DHCPV4_FIXED_HEADER + 4 :], "options")
    overload = next((value for code, value in options if code == DHCPV4_OPTION_OVERLOAD), None)
    # RFC 3396: instances are concatenated in the order options, file, sname.
    if overload and overload[0] & 1:
        options += _dhcpv4_options(boot_file, "file")
    if overload and overload[0] & 2:
        options += _dhcpv4_options(server_name, "sname")
    message_type = next((value for code, value in options if code == DHCPV4_MESSAGE_TYPE), b"")
    return Dhcpv4Message(
        op=payload[0],
        message_type=DHCPV4_MESSAGE_TYPES.get(message_type[0], str(message_type[0]))
        if message_type
        else "BOOTP",
        client_hardware_address=payload[28 : 28 + hardware_length],
        your_address=ipaddress.IPv4Address(payload[16:20]),
        options=tuple(options),
    )


def _dhcpv4_options(area: bytes, where: str) -> list[tuple[int, bytes]]:
    options: list[tuple[int, bytes]] = []
    offset = 0
    while offset < len(area):
        code = area[offset]
        if code == DHCPV4_PAD:
            offset += 1
            continue
        if code == DHCPV4_END:
            return options
        if offset + 1 >= len(area):
            raise CaptureFormatError(f"DHCPv4 {where}: option {code} has no length octet")
        length = area[offset + 1]
        value = area[offset + 2 : offset + 2 + length]
        if len(value) != length:
            raise CaptureFormatError(f"DHCPv4 {where}: option {code} is truncated")
        options.append((code, value))
        offset += 2 + length
    # The options field must end with END; file and sname may simply be full.
    if where == "options":
        raise CaptureFormatError("DHCPv4 options field has no END option")
    return options


def parse_dhcpv6(payload: bytes) -> Dhcpv6Message | None:
    """A client/server DHCPv6 message; None for relay messages."""
    if len(payload) < 4:
        raise CaptureFormatError(f"DHCPv6 message of {len(payload)} bytes is too short")
    if payload[0] in DHCPV6_RELAY_MESSAGES:
        return None
    options: list[tuple[int, bytes]] = []
    offset = 4
    while offset < len(payload):
        if len(payload) - offset < 4:
            raise CaptureFormatError(f"DHCPv6 option header truncated at offset {offset}")
        code, length = struct.unpack_from("!HH", payload, offset)
        value = payload[offset + 4 : offset + 4 + length]
        if len(value) != length:
            raise CaptureFormatError(f"DHCPv6 option {code} is truncated at offset {offset}")
        options.append((code, value))
        offset += 4 + length
    return Dhcpv6Message(
        message_type=DHCPV6_MESSAGE_TYPES.get(payload[0], str(payload[0])),
        transaction_id=int.from_bytes(payload[1:4], "big"),
        options=tuple(options),
    )


def dhcp_messages(path: Path) -> tuple[list[Dhcpv4Message], list[Dhcpv6Message]]:
    """Every DHCPv4 and DHCPv6 message in the capture, in capture order."""
    v4: list[Dhcpv4Message] = []
    v6: list[Dhcpv6Message] = []
    for frame in read_pcap(path):
        datagram = udp_datagram(frame)
        if datagram is None:
            continue
        ports = {datagram.source_port, datagram.destination_port}
        if ports <= DHCPV4_PORTS and datagram.source.version == 4:
            v4.append(parse_dhcpv4(datagram.payload))
        elif ports <= DHCPV6_PORTS and datagram.source.version == 6:
            message = parse_dhcpv6(datagram.payload)
            if message is not None:
                v6.append(message)
    return v4, v6


@dataclass(frozen=True)
class RouterAdvertisement:
    """An ICMPv6 router advertisement (RFC 4861 §4.2): its flags and options."""

    source: ipaddress.IPv6Address
    other_config: bool  # the O flag: more configuration (RFC 8415 stateless DHCPv6) is offered
    options: tuple[tuple[int, bytes], ...]  # (type, body after the type and length octets)

    def prefixes(self) -> list[ipaddress.IPv6Network]:
        """The prefix information options' prefixes (RFC 4861 §4.6.2)."""
        return [
            ipaddress.IPv6Network((body[14:30], body[0]))
            for kind, body in self.options
            if kind == ND_OPTION_PREFIX_INFORMATION
        ]

    def recursive_dns_servers(self) -> list[ipaddress.IPv6Address]:
        """The RDNSS options' addresses (RFC 8106 §5.1), in order."""
        return [
            ipaddress.IPv6Address(body[offset : offset + 16])
            for kind, body in self.options
            if kind == ND_OPTION_RDNSS
            for offset in range(6, len(body) - 15, 16)
        ]

    def search_domains(self) -> list[str]:
        """The DNSSL options' domains (RFC 8106 §5.2), uncompressed names padded with zeros."""
        domains: list[str] = []
        for kind, body in self.options:
            if kind != ND_OPTION_DNSSL:
                continue
            names, offset = body[6:], 0
            labels: list[str] = []
            while offset < len(names):
                length = names[offset]
                if length == 0:
                    if labels:
                        domains.append(".".join(labels))
                    labels = []
                    offset += 1
                    continue
                labels.append(names[offset + 1 : offset + 1 + length].decode("ascii"))
                offset += 1 + length
        return domains


def router_advertisements(path: Path) -> list[RouterAdvertisement]:
    """Every router advertisement in the capture, in capture order."""
    found: list[RouterAdvertisement] = []
    for frame in read_pcap(path):
        if len(frame) < 14 or int.from_bytes(frame[12:14], "big") != ETHERTYPE_IPV6:
            continue
        upper = _ipv6_upper_layer(frame[14:])
        if upper is None or upper[0] != IP_PROTOCOL_ICMPV6:
            continue
        _, source, _, message = upper
        if len(message) < RA_FIXED_PART or message[0] != ICMPV6_ROUTER_ADVERTISEMENT:
            continue
        found.append(
            RouterAdvertisement(
                source=source,
                other_config=bool(message[5] & RA_OTHER_CONFIG_FLAG),
                options=tuple(_nd_options(message[RA_FIXED_PART:])),
            )
        )
    return found


def _nd_options(area: bytes) -> Iterator[tuple[int, bytes]]:
    """Neighbour discovery options: type, length in units of 8 octets, body (RFC 4861 §4.6)."""
    offset = 0
    while offset + 2 <= len(area):
        kind, units = area[offset], area[offset + 1]
        if units == 0:
            raise CaptureFormatError(f"neighbour discovery option {kind} has length 0")
        end = offset + units * 8
        if end > len(area):
            raise CaptureFormatError(f"neighbour discovery option {kind} is truncated")
        yield kind, area[offset + 2 : end]
        offset = end


@dataclass(frozen=True)
class DnsQuestion:
    """A DNS or mDNS query's first question, and where it went."""

    destination: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int  # 53: unicast DNS; 5353: multicast DNS
    name: str  # absolute, without the final dot
    rdtype: str  # TXT, SRV, AAAA...


def dns_questions(path: Path) -> list[DnsQuestion]:
    """The questions of the DNS and mDNS queries (not the answers) sent over UDP, in order."""
    found: list[DnsQuestion] = []
    for frame in read_pcap(path):
        datagram = udp_datagram(frame)
        if datagram is None or datagram.destination_port not in DNS_PORTS:
            continue
        try:
            message = dns.message.from_wire(datagram.payload)
        except dns.exception.DNSException as exc:
            raise CaptureFormatError(f"unreadable DNS message: {exc}") from None
        if message.flags & dns.flags.QR or not message.question:
            continue
        question = message.question[0]
        found.append(
            DnsQuestion(
                destination=datagram.destination,
                port=datagram.destination_port,
                name=question.name.to_text(omit_final_dot=True),
                rdtype=dns.rdatatype.to_text(question.rdtype),
            )
        )
    return found

"""What a DHCP lease tells a device about its bootstrap servers: the `LeaseOffer`, and the
reading of an RFC 8572 §8 option payload into URIs and problems.

Everything here comes from a DHCP server the device does not trust yet, through a client's
files: a payload that cannot be framed, or a URI that is not `https://host[:port]`, becomes a
problem on the offer, never an exception.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sztp.errors import DhcpEncodingError
from sztp.protocol.dhcp import (
    OPTION_V4_SZTP_REDIRECT,
    OPTION_V6_SZTP_REDIRECT,
    V6_OPTION_MAX,
    decode_uri_list,
    validate_bootstrap_uri,
)

# The client names an offer can carry.
DHCLIENT = "dhclient"
NETWORKD = "systemd-networkd"
NETWORKMANAGER = "NetworkManager"

# Whatever a client's file claims, no DHCP option carries more than a DHCPv6 option's 2-octet
# length allows (a DHCPv4 client joins RFC 3396 instances, still far below this).
PAYLOAD_MAX = V6_OPTION_MAX
_COLON_HEX = re.compile(r"[0-9A-Fa-f]{1,2}(?::[0-9A-Fa-f]{1,2})*")
# ASCII digits only (str.isdigit() also accepts characters such as '²' that int() refuses),
# and few enough that the number stays a plausible count of seconds.
_NUMBER = re.compile(r"[0-9]{1,12}")
# Seconds since the epoch beyond this are garbage, not a time (year 10000 and later).
_EPOCH_MAX = 253402300799
# A DHCPv4 lease time is a 32-bit count of seconds (RFC 2132 §9.2).
_LEASE_TIME_MAX = 0xFFFFFFFF
# Linux interface names are at most 15 bytes (IFNAMSIZ less the terminating NUL).
INTERFACE_NAME_MAX = 15


@dataclass(frozen=True)
class LeaseOffer:
    """One DHCP lease of one interface, as one client recorded it.

    `uris` holds only the decoded URIs that pass RFC 8572's shape check, in the server's
    order; whatever was dropped or could not be read is named in `problems`. `payload` is the
    option as received (empty when the lease carries none). `source` is the lease file, or
    the D-Bus object path for what NetworkManager reports over D-Bus. `server_id` is the
    DHCPv4 server identifier (an address) or the DHCPv6 server DUID (colon-separated hex).
    """

    interface: str
    client: str
    family: int
    uris: tuple[str, ...]
    payload: bytes
    server_id: str | None
    address: str | None
    network: str | None
    source: Path
    obtained_at: datetime | None
    problems: tuple[str, ...]


def problem_offer(
    *, interface: str, client: str, family: int, source: Path, problems: tuple[str, ...]
) -> LeaseOffer:
    """An offer that only carries problems: a lease file that could not be read at all.
    `interface` is "" when nothing tells which interface the file is for."""
    return LeaseOffer(
        interface=interface,
        client=client,
        family=family,
        uris=(),
        payload=b"",
        server_id=None,
        address=None,
        network=None,
        source=source,
        obtained_at=None,
        problems=problems,
    )


def with_problems(offer: LeaseOffer, *problems: str) -> LeaseOffer:
    """`offer` with `problems` added after its own."""
    return dataclasses.replace(offer, problems=(*offer.problems, *problems)) if problems else offer


def valid_interface_name(name: str) -> bool:
    """Whether `name` can be a Linux interface name: 1 to 15 printable ASCII characters,
    none of them a space, '/' or ':'."""
    return (
        0 < len(name) <= INTERFACE_NAME_MAX
        and name.isascii()
        and name.isprintable()
        and not any(char in name for char in " /:")
    )


def option_code(family: int) -> int:
    """The SZTP redirect option's code in this DHCP family."""
    return OPTION_V4_SZTP_REDIRECT if family == 4 else OPTION_V6_SZTP_REDIRECT


def read_uri_list(payload: bytes, family: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The valid URIs of an RFC 8572 payload and the problems found on the way.

    A framing error discards the whole payload (its entries cannot be told apart); a
    well-framed entry that is not `https://host[:port]` is dropped alone, so one bad URI
    does not hide the good ones the server listed with it.
    """
    code = option_code(family)
    if len(payload) > PAYLOAD_MAX:
        return (), (f"option {code} holds {len(payload)} bytes, more than any DHCP option can",)
    try:
        entries = decode_uri_list(payload)
    except DhcpEncodingError as error:
        return (), (f"option {code} is not an RFC 8572 URI list: {error.message}",)
    uris: list[str] = []
    problems: list[str] = []
    for entry in entries:
        try:
            uris.append(validate_bootstrap_uri(entry))
        except DhcpEncodingError as error:
            problems.append(f"option {code}: dropped {error.message}")
    return tuple(uris), tuple(problems)


def colon_hex_bytes(text: str) -> bytes | None:
    """The bytes of ISC-style colon-separated hex (`0:16:68`, octets without leading zeros),
    or None if `text` is not that."""
    if not _COLON_HEX.fullmatch(text):
        return None
    return bytes(int(octet, 16) for octet in text.split(":"))


def ipv4_network(address: str, netmask: str) -> str | None:
    """`192.0.2.0/24` from an address and a dotted netmask; None if either is not valid."""
    try:
        return str(ipaddress.IPv4Network(f"{address}/{netmask}", strict=False))
    except ValueError:
        return None


def checked_address(text: str, family: int) -> str | None:
    """`text` in canonical form if it is an address of `family`, else None."""
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(parsed) if parsed.version == family else None


def address_field(text: str | None, family: int, what: str, problems: list[str]) -> str | None:
    """A lease field that must be an address of `family`: None if absent, and None with a
    problem naming `what` if it is something else."""
    if text is None:
        return None
    address = checked_address(text, family)
    if address is None:
        problems.append(f"the {what} {text[:64]!a} is not an IPv{family} address")
    return address


def duid_field(text: str | None, problems: list[str]) -> str | None:
    """A DHCPv6 server DUID as two-digit colon-separated hex, the same whichever client
    wrote it (dhclient drops leading zeros)."""
    if text is None:
        return None
    duid = colon_hex_bytes(text)
    if duid is None:
        problems.append(f"the server DUID {text[:64]!a} is not hex octets")
        return None
    return duid.hex(":")


def number(text: str | None) -> int | None:
    """A non-negative decimal number of at most 12 digits, or None."""
    return int(text) if text is not None and _NUMBER.fullmatch(text) else None


def epoch_time(text: str | None) -> datetime | None:
    """A count of seconds since the epoch as a UTC time, or None if it is not one."""
    seconds = number(text)
    if seconds is None or seconds > _EPOCH_MAX:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def obtained_before_expiry(expires_at: datetime | None, lease_time: str | None) -> datetime | None:
    """When a DHCPv4 lease was obtained: its expiry less its lease time (in seconds), which is
    how clients compute the expiry; None unless both are known."""
    seconds = number(lease_time)
    if expires_at is None or seconds is None or seconds > _LEASE_TIME_MAX:
        return None
    return expires_at - timedelta(seconds=seconds)

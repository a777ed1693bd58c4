"""Is a host name or address this machine's loopback? Shared by the admin API client, which
sends a bearer token over plain HTTP only to loopback, and the server, which serves the admin
API over plain HTTP only on loopback, unless told otherwise."""

from __future__ import annotations

import ipaddress

PLAIN_HTTP_VARIABLE = "SZTP_ALLOW_PLAIN_HTTP"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def is_loopback(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8, ::1 (and ::ffff:127.x.y.z); brackets are ignored."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def flag(name: str, value: str) -> bool:
    """An on/off environment variable: 1/true/yes/on or 0/false/no/off (or empty)."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    from .errors import SztpError

    raise SztpError(f"{name}: must be 1 or 0 (true/false), not {value!r}")

"""RFC 5424 syslog messages of the flight recorder's events, and where to send them.

Pure: text in, bytes out. A device chose some of what an event holds (the serial it claimed,
as short printable text), so every value is escaped as RFC 5424 §6.3.3 asks inside
structured data, and anything that is not printable ASCII is replaced, so no value can end
a parameter, an element or a message early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sztp.errors import ValidationError

if TYPE_CHECKING:
    from ..device_api.recorder import Pending

# RFC 5424 §6.2.1: facility codes by the names syslog.conf uses.
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{number}": 16 + number for number in range(8)},
}  # fmt: skip
SEVERITY_WARNING = 4
SEVERITY_INFORMATIONAL = 6
APP_NAME = "sztp-server"
# The SD-ID of the event's parameters: RFC 5424 §7.2.2 wants name@<private enterprise number>;
# 32473 is the number RFC 5612 sets aside for documentation, until the project registers one.
SD_ID = "sztp@32473"
# Transports (RFC 5426 UDP, RFC 6587 TCP with octet counting, RFC 5425 TLS) and their ports.
DEFAULT_PORTS = {"udp": 514, "tcp": 601, "tls": 6514}
_NOT_TEXT = re.compile(r"[^\x20-\x7e]")  # printable ASCII and the space
_NOT_HEADER = re.compile(r"[^\x21-\x7e]")  # header fields hold no space (RFC 5424 §6)
_SD_SPECIAL = re.compile(r'(["\\\]])')


@dataclass(frozen=True)
class SyslogTarget:
    transport: str  # a key of DEFAULT_PORTS
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_syslog_url(url: str) -> SyslogTarget:
    """`udp://HOST[:PORT]`, `tcp://...` or `tls://...`; ValidationError naming the defect."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        schemes = ", ".join(f"{scheme}://" for scheme in DEFAULT_PORTS)
        raise ValidationError("syslog_url", f"must start with one of {schemes}")
    try:
        port = parts.port
    except ValueError:
        raise ValidationError("syslog_url", "the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValidationError("syslog_url", "names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValidationError("syslog_url", "must be only a scheme, a host and a port")
    return SyslogTarget(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])


def format_message(event: Pending, *, facility: int, hostname: str, procid: int) -> bytes:
    """One RFC 5424 message: a refused request at warning severity, a served one at
    informational; the fields as structured data, and a short sentence as the message."""
    at, rpc, status, serial, authenticated, refusal, remote, seconds = event[:8]
    profile, image, detail = event[8:]
    severity = SEVERITY_WARNING if refusal is not None else SEVERITY_INFORMATIONAL
    timestamp = datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")
    header = (
        f"<{facility * 8 + severity}>1 {timestamp.replace('+00:00', 'Z')} "
        f"{_header_field(hostname, 255)} {APP_NAME} {procid} {_header_field(rpc, 32)}"
    )
    parameters = {
        "rpc": rpc,
        "status": str(status),
        "serial": serial,
        "authenticated": "true" if authenticated else "false",
        "refusal": refusal,
        "remote": remote,
        "duration_ms": f"{seconds * 1000:.3f}",
        "profile": profile,
        "image": image,
        "detail": detail,
    }
    data = " ".join(
        f'{name}="{_sd_value(value)}"' for name, value in parameters.items() if value is not None
    )
    who = serial if authenticated and serial else "an unnamed client"
    if not authenticated and serial:
        who = f"claimed serial {serial}"
    outcome = f"refused ({refusal})" if refusal else "served"
    sentence = f"{rpc} {outcome} for {who} from {remote or 'unknown'}: {status}"
    return f"{header} [{SD_ID} {data}] {_NOT_TEXT.sub('?', sentence)}".encode()


def _header_field(value: str, longest: int) -> str:
    cleaned = _NOT_HEADER.sub("?", value)[:longest]
    return cleaned or "-"


def _sd_value(value: str) -> str:
    return _SD_SPECIAL.sub(r"\\\1", _NOT_TEXT.sub("?", value))

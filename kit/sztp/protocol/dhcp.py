"""DHCP options that point a device at its bootstrap servers (RFC 8572 §8).

DHCPv4 option 143 and DHCPv6 option 136 carry the same payload: a list of entries, each a
2-octet big-endian `uri-length` followed by that many URI bytes. Every URI is
`https://host[:port]` with no path: devices append the RESTCONF path themselves.

Besides the codec, this module renders the option for Kea, ISC dhcpd and dnsmasq. All three
renderings are sent to every client in scope where the server supports that ("always send"):
RFC 8572 devices list the option in their parameter request list anyway, but generic clients
used in labs and tests (busybox udhcpc, dhclient, OPI's agent) do not unless configured to,
and an unrequested option is harmless (RFC 2131 lets servers send it; clients ignore unknown
options). ISC dhcpd has no plain switch for this, so its rendering relies on the request.

The legacy text form (`OptionEncoding.LEGACY_TEXT`) is NOT RFC 8572 conformant. It exists only
for lab agents such as OPI's sztp agent, which read the whole option value as one URL that
they POST to directly. Its exact form: one URI, its raw ASCII bytes, no length prefix and no
terminator. Because that agent calls the URI as given, the URI may carry the RESTCONF
operation path; query, fragment and userinfo are still refused. Strict devices (e.g. IOS-XE)
silently drop this form, so it is never the default.

Pure code, no I/O: untrusted input raises `DhcpEncodingError` and nothing else.
"""

import enum
import ipaddress
import re
from collections.abc import Sequence

from sztp.errors import DhcpEncodingError

OPTION_V4_SZTP_REDIRECT = 143
OPTION_V6_SZTP_REDIRECT = 136
V4_OPTION_MAX = 255
# A DHCPv6 option length is 2 octets.
V6_OPTION_MAX = 65535

_URI_FIELD = "bootstrap-server-uri"
_OPTION_FIELD = "sztp-redirect"
_SCHEME_SEPARATOR = "://"
_LENGTH_OCTETS = 2
_DNS_NAME_MAX = 253
_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# RFC 3986 path characters: unreserved, sub-delims, ':', '@', '/' and percent-encodings.
_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")
_PORT_DIGITS_MAX = 5
_PORT_MAX = 65535
_SHAPE_HINT = "give only https://host[:port]"


class Family(enum.Enum):
    """DHCP protocol family; each has its own option code and size limit."""

    V4 = "v4"
    V6 = "v6"

    @property
    def option_code(self) -> int:
        return OPTION_V4_SZTP_REDIRECT if self is Family.V4 else OPTION_V6_SZTP_REDIRECT


class OptionEncoding(enum.Enum):
    """How the URI list is laid out in the option payload."""

    RFC8572 = "rfc8572"
    LEGACY_TEXT = "legacy-text"


def validate_bootstrap_uri(uri: str) -> str:
    """Return `uri` unchanged if it is `https://host[:port]` as RFC 8572 §8 requires."""
    return _check_uri(uri, allow_path=False)


def encode_uri_list(uris: Sequence[str], family: Family = Family.V4) -> bytes:
    """Encode validated URIs as RFC 8572 `uri-length` + URI entries.

    Validation bounds every URI to well under 65536 bytes (a DNS name is at most 253 octets),
    so the 2-octet length always fits.
    """
    entries = [validate_bootstrap_uri(uri).encode("ascii") for uri in _require_uri_list(uris)]
    payload = b"".join(len(entry).to_bytes(_LENGTH_OCTETS, "big") + entry for entry in entries)
    return _check_payload_size(payload, family)


def encode_legacy_text(uris: Sequence[str], family: Family = Family.V4) -> bytes:
    """Encode one URI as raw ASCII: the non-conformant form some lab agents expect.

    See the module docstring for the exact form and why it allows a path.
    """
    uri_list = _require_uri_list(uris)
    if len(uri_list) != 1:
        raise DhcpEncodingError(
            _OPTION_FIELD,
            f"the legacy text encoding carries exactly one URI, got {len(uri_list)}: "
            "agents that expect it read the whole option as a single URL",
        )
    payload = _check_uri(uri_list[0], allow_path=True).encode("ascii")
    return _check_payload_size(payload, family)


def encode_option(
    uris: Sequence[str],
    family: Family = Family.V4,
    encoding: OptionEncoding = OptionEncoding.RFC8572,
) -> bytes:
    """Encode the option payload in the chosen encoding (RFC 8572 unless asked otherwise)."""
    if encoding is OptionEncoding.LEGACY_TEXT:
        return encode_legacy_text(uris, family)
    return encode_uri_list(uris, family)


def decode_uri_list(payload: bytes, *, validate: bool = False) -> list[str]:
    """Parse an RFC 8572 payload strictly; with `validate`, also check each URI's shape."""
    if not payload:
        raise DhcpEncodingError(
            _OPTION_FIELD, "the payload is empty; it must hold at least one URI"
        )
    uris: list[str] = []
    offset = 0
    while offset < len(payload):
        remaining = len(payload) - offset
        if remaining < _LENGTH_OCTETS:
            raise DhcpEncodingError(
                _OPTION_FIELD,
                f"trailing byte at offset {offset}: a uri-length field needs 2 bytes",
            )
        length = int.from_bytes(payload[offset : offset + _LENGTH_OCTETS], "big")
        start = offset + _LENGTH_OCTETS
        if length == 0:
            raise DhcpEncodingError(_OPTION_FIELD, f"zero-length URI entry at offset {offset}")
        if length > len(payload) - start:
            raise DhcpEncodingError(
                _OPTION_FIELD,
                f"truncated URI entry at offset {offset}: it declares {length} bytes but only "
                f"{len(payload) - start} remain{_legacy_hint(payload, offset)}",
            )
        end = start + length
        _check_uri_bytes(payload[start:end], start)
        uri = payload[start:end].decode("ascii")
        uris.append(validate_bootstrap_uri(uri) if validate else uri)
        offset = end
    return uris


def to_hex(payload: bytes) -> str:
    """Upper-case hex without separators, as Kea's `data` field takes it."""
    return payload.hex().upper()


def to_colon_hex(payload: bytes) -> str:
    """Colon-separated lower-case hex octets (`68:74:...`), as ISC dhcpd and dnsmasq take it."""
    return payload.hex(":")


def split_v4_option(payload: bytes) -> list[bytes]:
    """Split a long DHCPv4 payload into option instances of at most 255 bytes (RFC 3396)."""
    return [
        payload[start : start + V4_OPTION_MAX]
        for start in range(0, max(len(payload), 1), V4_OPTION_MAX)
    ]


def join_v4_option_instances(chunks: Sequence[bytes]) -> bytes:
    """Concatenate DHCPv4 option instances back into one payload (RFC 3396)."""
    for index, chunk in enumerate(chunks):
        if len(chunk) > V4_OPTION_MAX:
            raise DhcpEncodingError(
                _OPTION_FIELD,
                f"option instance {index} is {len(chunk)} bytes; a DHCPv4 option holds at most "
                f"{V4_OPTION_MAX}",
            )
    return b"".join(chunks)


def render_kea_option_data(
    uris: Sequence[str],
    family: Family = Family.V4,
    encoding: OptionEncoding = OptionEncoding.RFC8572,
) -> dict[str, object]:
    """Render one `option-data` entry for Kea's `Dhcp4` (or `Dhcp6`) configuration.

    Raw code + hex works on Kea 2.2, which has no definition for 143/136, and unchanged on
    Kea 2.6; a `name` or a custom option-def would break one of them. Kea does not check
    the hex, which is why it comes only from the validating encoder.
    """
    payload = encode_option(uris, family, encoding)
    return {
        "code": family.option_code,
        "csv-format": False,
        "data": to_hex(payload),
        "always-send": True,
    }


def render_isc_dhcpd(
    uris: Sequence[str],
    family: Family = Family.V4,
    encoding: OptionEncoding = OptionEncoding.RFC8572,
) -> str:
    """Render the option declaration and value for ISC dhcpd (`dhcpd -4` or `dhcpd -6`)."""
    payload = encode_option(uris, family, encoding)
    name = "sztp-redirect" if family is Family.V4 else "dhcp6.sztp-redirect"
    return (
        f"# {_describe(family, encoding)}; dhcpd sends it only when the client requests it\n"
        f"option {name} code {family.option_code} = string;\n"
        f"option {name} {to_colon_hex(payload)};\n"
    )


def render_dnsmasq(
    uris: Sequence[str],
    family: Family = Family.V4,
    encoding: OptionEncoding = OptionEncoding.RFC8572,
) -> str:
    """Render a dnsmasq `dhcp-option-force` line (sent even when the client did not ask)."""
    payload = encode_option(uris, family, encoding)
    code = str(family.option_code) if family is Family.V4 else f"option6:{family.option_code}"
    return f"# {_describe(family, encoding)}\ndhcp-option-force={code},{to_colon_hex(payload)}\n"


def _describe(family: Family, encoding: OptionEncoding) -> str:
    """One-line comment for rendered configs, so a legacy payload is never mistaken."""
    protocol = "DHCPv4" if family is Family.V4 else "DHCPv6"
    form = (
        "legacy plain text, NOT RFC 8572 conformant"
        if encoding is OptionEncoding.LEGACY_TEXT
        else "RFC 8572 encoding"
    )
    return f"SZTP redirect, {protocol} option {family.option_code}, {form}"


def _require_uri_list(uris: Sequence[str]) -> list[str]:
    # A bare string is a Sequence[str] too; encoding it would yield one entry per character.
    if isinstance(uris, str):
        raise DhcpEncodingError(
            _OPTION_FIELD, "expected a list of URIs, got a single string; wrap it in a list"
        )
    uri_list = list(uris)
    if not uri_list:
        raise DhcpEncodingError(_OPTION_FIELD, "at least one bootstrap-server URI is required")
    return uri_list


def _check_payload_size(payload: bytes, family: Family) -> bytes:
    if family is Family.V4 and len(payload) > V4_OPTION_MAX:
        raise DhcpEncodingError(
            _OPTION_FIELD,
            f"the option {family.option_code} payload is {len(payload)} bytes, over the DHCPv4 "
            f"limit of {V4_OPTION_MAX}: Kea 2.2 splits it into several option instances (busybox "
            "udhcpc then gets no lease) and Kea 2.6 drops it; use fewer or shorter URIs",
        )
    if len(payload) > V6_OPTION_MAX:
        raise DhcpEncodingError(
            _OPTION_FIELD,
            f"the option {family.option_code} payload is {len(payload)} bytes, over the DHCPv6 "
            f"limit of {V6_OPTION_MAX}; use fewer URIs",
        )
    return payload


def _check_uri_bytes(raw: bytes, start: int) -> None:
    """Reject bytes no URI can contain, naming the offset within the whole payload."""
    for index, byte in enumerate(raw):
        if byte >= 0x80:
            raise DhcpEncodingError(
                _OPTION_FIELD, f"non-ASCII byte 0x{byte:02X} at offset {start + index}"
            )
        if byte <= 0x20 or byte == 0x7F:
            raise DhcpEncodingError(
                _OPTION_FIELD, f"space or control byte 0x{byte:02X} at offset {start + index}"
            )


def _legacy_hint(payload: bytes, offset: int) -> str:
    # A plain-text payload reads as a huge length ("ht" = 0x6874); say what it probably is.
    if offset == 0 and payload.startswith(b"http"):
        return " (this looks like the non-conformant plain-text form, not RFC 8572 entries)"
    return ""


def _uri_error(shown: str, problem: str) -> DhcpEncodingError:
    return DhcpEncodingError(_URI_FIELD, f"{shown} {problem}")


def _check_uri(uri: str, *, allow_path: bool) -> str:
    if not isinstance(uri, str):
        raise DhcpEncodingError(_URI_FIELD, f"expected a string, got {type(uri).__name__}")
    # ascii() escapes non-ASCII and control characters, so an error stays one readable line.
    shown = ascii(uri)
    if not uri:
        raise _uri_error(shown, f"is empty; {_SHAPE_HINT}")
    for index, char in enumerate(uri):
        if not char.isascii():
            raise _uri_error(
                shown,
                f"has non-ASCII character {char!a} at index {index}; "
                "write internationalised names in punycode (xn--)",
            )
        if char.isspace() or not char.isprintable():
            raise _uri_error(shown, f"has whitespace or a control character at index {index}")

    scheme, separator, rest = uri.partition(_SCHEME_SEPARATOR)
    if not separator:
        raise _uri_error(shown, f"has no scheme; {_SHAPE_HINT}")
    if scheme != "https":
        raise _uri_error(shown, f"uses scheme '{scheme}'; only 'https' is allowed")

    authority_end = next((i for i, char in enumerate(rest) if char in "/?#"), len(rest))
    authority, tail = rest[:authority_end], rest[authority_end:]
    if "@" in authority:
        raise _uri_error(shown, f"has userinfo; {_SHAPE_HINT} without credentials")
    _check_authority(authority, shown)

    path_end = next((i for i, char in enumerate(tail) if char in "?#"), len(tail))
    path, after_path = tail[:path_end], tail[path_end:]
    if path and not allow_path:
        raise _uri_error(
            shown,
            f"has a path '{path}'; {_SHAPE_HINT} (devices append the RESTCONF path themselves)",
        )
    if not _PATH.fullmatch(path):
        raise _uri_error(shown, f"has invalid characters in its path '{path}'")
    if after_path.startswith("?"):
        query = after_path.partition("#")[0]
        raise _uri_error(shown, f"has a query '{query}'; {_SHAPE_HINT}")
    if after_path:
        raise _uri_error(shown, f"has a fragment '{after_path}'; {_SHAPE_HINT}")
    return uri


def _check_authority(authority: str, shown: str) -> None:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise _uri_error(shown, "has an IPv6 literal without its closing ']'")
        _check_ipv6_literal(authority[1:close], shown)
        after_literal = authority[close + 1 :]
        if after_literal and not after_literal.startswith(":"):
            raise _uri_error(shown, f"has unexpected text '{after_literal}' after the IPv6 literal")
        port_text = after_literal[1:] if after_literal else None
    else:
        host, colon, port_text_or_empty = authority.partition(":")
        if ":" in port_text_or_empty:
            raise _uri_error(shown, "has an IPv6 address without brackets; write https://[addr]")
        _check_host(host, shown)
        port_text = port_text_or_empty if colon else None
    if port_text is not None:
        _check_port(port_text, shown)


def _check_ipv6_literal(literal: str, shown: str) -> None:
    # Python accepts a '%zone' suffix, but a zone is only meaningful on the device's own link.
    if "%" in literal:
        raise _uri_error(shown, "has an IPv6 zone identifier; use a global or ULA address")
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        raise _uri_error(shown, f"has an invalid IPv6 address '{literal}'") from None


def _check_host(host: str, shown: str) -> None:
    if not host:
        raise _uri_error(shown, f"has no host; {_SHAPE_HINT}")
    labels = host.split(".")
    # All-numeric dotted hosts are meant as IPv4 addresses, never as DNS names.
    if all(label.isdigit() for label in labels):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _uri_error(shown, f"has an invalid IPv4 address '{host}'") from None
        return
    if len(host) > _DNS_NAME_MAX:
        raise _uri_error(shown, f"has a host name longer than {_DNS_NAME_MAX} characters")
    for label in labels:
        if not _DNS_LABEL.fullmatch(label):
            raise _uri_error(shown, f"has an invalid host name '{host}' (bad label '{label}')")


def _check_port(port_text: str, shown: str) -> None:
    if not port_text.isdigit():
        raise _uri_error(shown, f"has a non-numeric port '{port_text}'")
    # The length check keeps int() away from absurdly long digit strings.
    if len(port_text) > _PORT_DIGITS_MAX or not 1 <= int(port_text) <= _PORT_MAX:
        raise _uri_error(shown, f"has port {port_text} outside 1..{_PORT_MAX}")
    if port_text.startswith("0"):
        raise _uri_error(shown, f"has port '{port_text}' with leading zeros")

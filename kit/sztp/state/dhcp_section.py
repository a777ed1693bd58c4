"""The fleet file's `dhcp` section: which bootstrap-server URIs DHCP hands out, and where.

    dhcp:
      encoding: rfc8572          # default; legacy-text is NOT RFC 8572 (some lab agents only)
      bootstrap_uris: [https://sztp.lab.example:8443]   # global: every client in scope
      subnets:
        - subnet: 10.0.0.0/24
          bootstrap_uris: [...]  # optional: the global list otherwise
      reservations:
        - mac: 02:00:00:00:00:01 # or client_id (DHCPv4) or duid (DHCPv6), hex
          bootstrap_uris: [...]  # optional

`render_dhcp` turns it into a fragment for Kea (option-data per scope, JSON), ISC dhcpd or
dnsmasq, with the option payloads from the validating codec (`protocol.dhcp`).
`check_dhcp_section` reports every problem with its file and line (for `sztpctl validate`).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import DhcpEncodingError
from ..protocol.dhcp import (
    Family,
    OptionEncoding,
    encode_option,
    render_kea_option_data,
    to_colon_hex,
    validate_bootstrap_uri,
)
from .fleet import FleetError, dotted
from .problem import Problem

if TYPE_CHECKING:
    from .fleet import Fleet, YamlPath

_MAC = re.compile(r"[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}")
_HEX = re.compile(r"(?:[0-9a-f]{2}){2,130}")
_IDENTIFIERS = ("mac", "client_id", "duid")
_BOTH = frozenset(Family)
# Which DHCP family a reservation identifier belongs to (a MAC serves both).
_IDENTIFIER_FAMILIES = {
    "mac": _BOTH,
    "client_id": frozenset({Family.V4}),
    "duid": frozenset({Family.V6}),
}
_KEA_IDENTIFIERS = {"mac": "hw-address", "client_id": "client-id", "duid": "duid"}


class DhcpSectionError(FleetError):
    """A malformed value in the section; `where` is `file:line: dhcp.path`."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class Scope:
    """Where an option value applies: everywhere, a subnet or one client."""

    path: YamlPath  # ("dhcp",), ("dhcp", "subnets", 0), ...
    uris: tuple[str, ...]  # its own list, or the global one
    own_uris: bool
    families: frozenset[Family]
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    identifier: tuple[str, str] | None = None  # (mac | client_id | duid, colon hex)


@dataclass(frozen=True)
class DhcpSection:
    encoding: OptionEncoding
    scopes: tuple[Scope, ...]


def parse_dhcp_section(fleet: Fleet) -> DhcpSection:
    """The section's scopes; DhcpSectionError naming the line for a malformed one."""
    section: dict[str, Any] = fleet.dhcp or {}
    encoding = OptionEncoding(section.get("encoding") or OptionEncoding.RFC8572.value)
    default = tuple(section.get("bootstrap_uris") or ())
    scopes: list[Scope] = []
    if default:
        scopes.append(Scope(("dhcp",), default, True, _BOTH))
    for index, entry in enumerate(section.get("subnets") or []):
        path: YamlPath = ("dhcp", "subnets", index)
        try:
            subnet = ipaddress.ip_network(entry["subnet"])
        except ValueError as exc:
            raise _error(fleet, (*path, "subnet"), str(exc)) from None
        family = Family.V4 if subnet.version == 4 else Family.V6
        scopes.append(_scope(fleet, path, entry, default, frozenset({family}), subnet=subnet))
    for index, entry in enumerate(section.get("reservations") or []):
        path = ("dhcp", "reservations", index)
        given = [name for name in _IDENTIFIERS if entry.get(name) is not None]
        if len(given) != 1:
            raise _error(fleet, path, "give exactly one of mac, client_id or duid")
        name = given[0]
        identifier = (name, _identifier(fleet, (*path, name), name, str(entry[name])))
        families = _IDENTIFIER_FAMILIES[name]
        scopes.append(_scope(fleet, path, entry, default, families, identifier=identifier))
    return DhcpSection(encoding, tuple(scopes))


def check_dhcp_section(fleet: Fleet) -> list[Problem]:
    """Every problem of the section: shape, each URI, and the payload size per family."""
    if fleet.dhcp is None:
        return []
    try:
        section = parse_dhcp_section(fleet)
    except DhcpSectionError as exc:
        return [Problem(exc.where, exc.message)]
    problems: list[Problem] = []
    # Inherited lists are the global one, checked (for both families) where it is written.
    for scope in (scope for scope in section.scopes if scope.own_uris):
        bad_uri = False
        if section.encoding is OptionEncoding.RFC8572:
            for index, uri in enumerate(scope.uris):
                try:
                    validate_bootstrap_uri(uri)
                except DhcpEncodingError as exc:
                    bad_uri = True
                    path = (*scope.path, "bootstrap_uris", index)
                    problems.append(Problem(where_in(fleet, path), str(exc)))
        if bad_uri:
            continue
        for family in sorted(scope.families, key=lambda family: family.value):
            try:
                encode_option(scope.uris, family, section.encoding)
            except DhcpEncodingError as exc:
                path = (*scope.path, "bootstrap_uris")
                problems.append(Problem(where_in(fleet, path), f"{family.value}: {exc}"))
                break
    return problems


def render_dhcp(
    fleet: Fleet, output_format: str, family: Family, *, legacy_text: bool = False
) -> str:
    """The section as a fragment for `output_format` (kea4, kea6, dhcpd or dnsmasq) for one
    DHCP family; DhcpSectionError names the scope whose URIs cannot be encoded."""
    section = parse_dhcp_section(fleet)
    encoding = OptionEncoding.LEGACY_TEXT if legacy_text else section.encoding
    scopes = [scope for scope in section.scopes if family in scope.families]
    if not scopes:
        raise FleetError(f"{fleet.path}: the dhcp section has nothing for DHCP{family.value}")
    payloads = [(scope, _payload(fleet, scope, family, encoding)) for scope in scopes]
    if output_format in ("kea4", "kea6"):
        return _kea([scope for scope, _ in payloads], family, encoding)
    header = _header(fleet, family, encoding)
    if output_format == "dhcpd":
        return header + _dhcpd(payloads, family)
    return header + _dnsmasq(payloads, family)


def where_in(fleet: Fleet, path: YamlPath) -> str:
    """`file:line: dhcp.subnets[0]` for a place in the section."""
    found = path
    while found and found not in fleet.lines:
        found = found[:-1]
    return f"{fleet.path}:{fleet.lines.get(found, 1)}: {dotted(path)}"


def _error(fleet: Fleet, path: YamlPath, message: str) -> DhcpSectionError:
    return DhcpSectionError(where_in(fleet, path), message)


def _scope(
    fleet: Fleet,
    path: YamlPath,
    entry: dict[str, Any],
    default: tuple[str, ...],
    families: frozenset[Family],
    **where: Any,
) -> Scope:
    own = tuple(entry.get("bootstrap_uris") or ())
    if not own and not default:
        raise _error(fleet, path, "no bootstrap_uris here, nor at dhcp.bootstrap_uris")
    return Scope(path, own or default, bool(own), families, **where)


def _identifier(fleet: Fleet, path: YamlPath, name: str, value: str) -> str:
    """Colon-separated lower-case hex, as all three DHCP servers take it."""
    text = value.strip().lower()
    if name == "mac" and not _MAC.fullmatch(text):
        raise _error(fleet, path, f"{value!r} is not a MAC address")
    digits = re.sub("[:-]", "", text)
    if not _HEX.fullmatch(digits):
        raise _error(fleet, path, f"{value!r} is not hex (2-130 bytes, colons allowed)")
    return ":".join(re.findall("..", digits))


def _payload(fleet: Fleet, scope: Scope, family: Family, encoding: OptionEncoding) -> bytes:
    try:
        return encode_option(scope.uris, family, encoding)
    except DhcpEncodingError as exc:
        where = scope.path if scope.own_uris else ("dhcp",)
        raise _error(fleet, (*where, "bootstrap_uris"), str(exc)) from None


def _kea(scopes: list[Scope], family: Family, encoding: OptionEncoding) -> str:
    body: dict[str, list[Any]] = {}
    for scope in scopes:
        # render_kea_option_data re-encodes: cheap, and keeps Kea's entry shape in one place.
        option = {"option-data": [render_kea_option_data(scope.uris, family, encoding)]}
        if scope.subnet is not None:
            body.setdefault(f"subnet{family.value[1]}", []).append(
                {"subnet": str(scope.subnet), **option}
            )
        elif scope.identifier is not None:
            name, value = scope.identifier
            body.setdefault("reservations", []).append({_KEA_IDENTIFIERS[name]: value, **option})
        else:
            body.update(option)
    return json.dumps({f"Dhcp{family.value[1]}": body}, indent=2) + "\n"


def _header(fleet: Fleet, family: Family, encoding: OptionEncoding) -> str:
    form = (
        "legacy plain text, NOT RFC 8572 conformant"
        if encoding is OptionEncoding.LEGACY_TEXT
        else "RFC 8572 encoding"
    )
    return (
        f"# SZTP redirect, DHCP{family.value} option {family.option_code}, {form}; "
        f"rendered by sztpctl from {fleet.path.name}\n"
    )


def _tag(scope: Scope) -> str:
    """A name for a scope in dhcpd host names and dnsmasq tags."""
    value = str(scope.subnet) if scope.subnet is not None else (scope.identifier or ("", ""))[1]
    return "sztp-" + re.sub(r"[^0-9A-Za-z.]", "-", value)


def _dhcpd(payloads: list[tuple[Scope, bytes]], family: Family) -> str:
    name = "sztp-redirect" if family is Family.V4 else "dhcp6.sztp-redirect"
    lines = [
        "# dhcpd sends the option only to clients that request it (RFC 8572 devices do)",
        f"option {name} code {family.option_code} = string;",
    ]
    for scope, payload in payloads:
        value = f"option {name} {to_colon_hex(payload)};"
        if scope.subnet is not None:
            net = scope.subnet
            declaration = (
                f"subnet {net.network_address} netmask {net.netmask}"
                if family is Family.V4
                else f"subnet6 {net}"
            )
            lines += [
                f"{declaration} {{  # merge into your declaration of this subnet",
                f"  {value}",
                "}",
            ]
        elif scope.identifier is not None:
            kind, identifier = scope.identifier
            match_line = {
                "mac": f"hardware ethernet {identifier};",
                "client_id": f"option dhcp-client-identifier {identifier};",
                "duid": f"host-identifier option dhcp6.client-id {identifier};",
            }[kind]
            lines += [f"host {_tag(scope)} {{", f"  {match_line}", f"  {value}", "}"]
        else:
            lines.append(value)
    return "\n".join(lines) + "\n"


def _dnsmasq(payloads: list[tuple[Scope, bytes]], family: Family) -> str:
    code = str(family.option_code) if family is Family.V4 else f"option6:{family.option_code}"
    lines: list[str] = []
    for scope, payload in payloads:
        value = f"{code},{to_colon_hex(payload)}"
        if scope.subnet is None and scope.identifier is None:
            lines.append(f"dhcp-option-force={value}")
            continue
        tag = _tag(scope)
        if scope.subnet is not None:
            lines.append(f"# subnet {scope.subnet}: add set:{tag} to that subnet's dhcp-range")
        else:
            kind, identifier = scope.identifier or ("", "")
            match = identifier if kind == "mac" else f"id:{identifier}"
            lines.append(f"dhcp-host={match},set:{tag}")
        lines.append(f"dhcp-option-force=tag:{tag},{value}")
    return "\n".join(lines) + "\n"

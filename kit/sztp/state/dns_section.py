"""The fleet file's `dns` section: the DNS records that point devices at bootstrap servers.

    dns:
      domain: sztp.example.net         # or `domains: [a.example, b.example]`: the same records
                                       # under each domain the devices search
      ttl: 300                         # default 300
      bootstrap_servers:               # SRV at _sztp._tcp.<domain>, in this order of preference
        - host: sztp1.example.net      # a host name, never an address (RFC 2782)
          port: 8443                   # default 443
          priority: 0                  # default 0; lower is tried first
          weight: 10                   # default 0; the share within one priority
          trust_anchor: {file: tls-ca.pem}  # PEM CA(s) of its TLS certificate (signed records)
        - host: sztp1.local            # a .local host, for devices on a link without DNS:
          addresses: [192.0.2.10, 2001:db8::10]  # its A/AAAA records, published over mDNS
      device_records:                  # optional: TXT at <serial>._sztp.<domain>
        devices: all                   # or [SN-1, SN-2], or {profile: NAME}
        signed: true                   # default true; false: unsigned redirect information

The SRV records are the device-independent form: unsigned, no trust anchor. A device-specific
TXT record set carries RFC 8572 redirect information to the same servers (`https://host:port`,
ordered by priority). Signed, it holds the servers' trust anchors, is signed by the owner of
the device's profile (the fleet's `owner`/`owners` entry its profiles name; the key must be a
PEM key in the file, since a PKCS#11 key is reached only by the server), and carries that
owner's certificate (`oc`) and the device's own voucher (`ov`). Unsigned, it is `ci` alone,
without trust anchors: a device discards those of redirect information it cannot verify
(RFC 8572 §5.5). `devices: {profile: NAME}` selects the devices that may be given the profile
(their `profile` or a selection rule).

The section is kept as data, its `{file: ...}` and `{env: ...}` references resolved like any
text of the fleet file. `check_dns_section` reports every problem with its file and line (for
`sztpctl validate`); `dns_records` builds the records (signing needs the owner key, so it is
done only when rendering), and `render_blocks` (per domain) or `render_dns` writes them as a
zone-file fragment or an `nsupdate` script.

`render_mdns` writes the same SRV and TXT records for `sztp-mdns` (docs/mdns.md): names relative
to `local.`, and the A/AAAA records of the `.local` hosts, which mDNS must answer for too. A
`.local` host needs its `addresses` there, and each device's TXT answer must fit one mDNS
message; the responder refuses a file that breaks either rule, so rendering refuses it first.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SztpError, ValidationError
from ..pkcs11_uri import is_pkcs11_uri
from ..protocol.dns_records import (
    MAX_MDNS_MESSAGE,
    MAX_NAME_WIRE,
    MDNS_DOMAIN,
    SZTP_NODE,
    SrvRecord,
    TxtRdata,
    bootstrap_srv,
    check_domain,
    device_txt,
    mdns_txt_answer_size,
    render_nsupdate,
    render_zone_fragment,
    serial_label,
)
from .dhcp_section import where_in
from .fleet import FleetError
from .model import DEFAULT_OWNER, DEVICE, OWNER, PROFILE
from .ownership import selectable_profiles
from .problem import Problem
from .resources import HIDDEN

if TYPE_CHECKING:
    from ..protocol.conveyed_info import Encoding
    from ..protocol.pki import Credential
    from .fleet import Fleet, YamlPath

DEFAULT_TTL = 300
DEFAULT_PORT = 443
UNICAST_FORMATS = ("zone", "nsupdate")
MDNS_FORMAT = "mdns"
FORMATS = (*UNICAST_FORMATS, MDNS_FORMAT)
_SECTION: YamlPath = ("dns",)
_SERVERS: YamlPath = ("dns", "bootstrap_servers")
_DEVICES: YamlPath = ("dns", "device_records", "devices")


class DnsSectionError(FleetError):
    """A problem of the section or of a device's records; `where` is `file:line: path`."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


@dataclass(frozen=True)
class BootstrapServer:
    srv: SrvRecord
    trust_anchor: str | None  # PEM
    addresses: tuple[str, ...]  # of a .local host, for mDNS
    entry: int  # its index in bootstrap_servers, where a problem with it is reported


@dataclass(frozen=True)
class DnsSection:
    domains: tuple[str, ...]
    ttl: int
    servers: tuple[BootstrapServer, ...]
    serials: tuple[str, ...]  # the devices that get TXT records, in file order
    signed: bool


@dataclass(frozen=True)
class DnsRecords:
    """What to publish under each of `domains`."""

    domains: tuple[str, ...]
    ttl: int
    devices: dict[str, list[TxtRdata]]
    servers: list[SrvRecord]


def parse_dns_section(fleet: Fleet) -> DnsSection:
    """The section; DnsSectionError for its first problem."""
    section, problems = _parse(fleet)
    if section is None:
        raise DnsSectionError(problems[0].where, problems[0].message)
    return section


def check_dns_section(fleet: Fleet) -> list[Problem]:
    """Every problem of the section, and what each signed device lacks: a voucher, an owner."""
    if fleet.dns is None:
        return []
    section, problems = _parse(fleet)
    if section is not None and section.signed:
        for serial in section.serials:
            try:
                _voucher(fleet, serial)
                owner = _signing_owner(fleet, serial)
            except DnsSectionError as exc:
                problems.append(Problem(exc.where, exc.message))
                continue
            key = fleet.resources[OWNER][owner].get("private_key")
            # An unset variable (--skip-unset-secrets) says nothing about the key.
            why = None if key == HIDDEN else _unusable_key(key)
            if why is not None:
                problems.append(_key_problem(fleet, owner, serial, why))
    return problems


def dns_records(fleet: Fleet) -> DnsRecords:
    """The records to publish; signing reads the owner keys. DnsSectionError names the
    device or owner whose records cannot be made."""
    return _records(fleet, parse_dns_section(fleet))


def render_mdns(fleet: Fleet, *, source: str = "") -> str:
    """The records as `sztp-mdns` reads them: the SRV records, the A/AAAA records of their
    `.local` targets and each device's TXT records, names relative to `local.`. DnsSectionError
    for a `.local` host without addresses and for a device whose answer no mDNS message holds."""
    section = parse_dns_section(fleet)
    addresses: dict[str, list[str]] = {}  # one host may serve on several ports
    for server in section.servers:
        addresses.setdefault(server.srv.target, []).extend(server.addresses)
    for server in section.servers:
        if _is_mdns_host(server.srv.target) and not addresses[server.srv.target]:
            raise DnsSectionError(
                where_in(fleet, (*_SERVERS, server.entry, "host")),
                f"{server.srv.target} has no addresses: on a link without DNS only mDNS "
                "answers for it; give its addresses",
            )
    records = _records(fleet, section)
    for serial, rdatas in records.devices.items():
        size = mdns_txt_answer_size(serial, rdatas)
        if size > MAX_MDNS_MESSAGE:
            raise _device_error(
                fleet,
                serial,
                f"its TXT answer takes {size} octets, over the {MAX_MDNS_MESSAGE} of one mDNS "
                "message (RFC 6762 §17): publish its records in unicast DNS only, or unsigned",
            )
    from_source = f", from {source}" if source else ""
    text = f"; SZTP discovery records (RFC 8572 section 4.2) for mDNS{from_source}\n"
    text += f"; names relative to {MDNS_DOMAIN}., as sztp-mdns reads them\n"
    try:
        text += render_zone_fragment(
            ttl=records.ttl, devices=records.devices, servers=records.servers
        )
    except ValidationError as exc:
        raise FleetError(f"dns: {exc.message}") from None
    for host, given in addresses.items():
        name = host[: -len(MDNS_DOMAIN) - 1]
        for address in dict.fromkeys(given):
            rdtype = "AAAA" if ":" in address else "A"
            text += f"{name} {records.ttl} IN {rdtype} {address}\n"
    return text


def _records(fleet: Fleet, section: DnsSection) -> DnsRecords:
    servers = [server.srv for server in section.servers]
    owners: dict[str, Credential] = {}  # a fleet's devices share a few owners
    devices = {
        serial: _device_records(fleet, section, serial, owners) for serial in section.serials
    }
    return DnsRecords(section.domains, section.ttl, devices, servers)


def render_dns(
    records: DnsRecords, output_format: str, *, relative: bool = False, source: str = ""
) -> str:
    """The records as `zone` text or an `nsupdate` script, every domain's (`render_blocks`)."""
    blocks = render_blocks(records, output_format, relative=relative, source=source)
    head = "; put the server, zone and key commands first\n" if output_format == "nsupdate" else ""
    return head + "".join(blocks.values())


def render_blocks(
    records: DnsRecords, output_format: str, *, relative: bool = False, source: str = ""
) -> dict[str, str]:
    """Per domain, its records as `zone` text (absolute names, or with `relative` an `$ORIGIN`
    line and names relative to it) or as an `nsupdate` update ending in `send`."""
    if output_format not in UNICAST_FORMATS:
        raise FleetError(f"{output_format!r} is not one of {', '.join(UNICAST_FORMATS)}")
    from_source = f", from {source}" if source else ""
    blocks: dict[str, str] = {}
    try:
        for domain in records.domains:
            text = f"; SZTP discovery records (RFC 8572 section 4.2) for {domain}{from_source}\n"
            if output_format == "nsupdate":
                text += render_nsupdate(
                    ttl=records.ttl, origin=domain, devices=records.devices, servers=records.servers
                )
            else:
                text += f"$ORIGIN {domain}.\n" if relative else ""
                text += render_zone_fragment(
                    ttl=records.ttl,
                    devices=records.devices,
                    servers=records.servers,
                    origin=None if relative else domain,
                )
            blocks[domain] = text
    except ValidationError as exc:
        raise FleetError(f"dns: {exc.message}") from None
    return blocks


class _Problems(list[Problem]):
    """Problems found so far, placed by their path in the document."""

    def __init__(self, fleet: Fleet) -> None:
        super().__init__()
        self.fleet = fleet

    def at(self, path: YamlPath, message: str) -> None:
        self.append(Problem(where_in(self.fleet, path), message))


def _parse(fleet: Fleet) -> tuple[DnsSection | None, list[Problem]]:
    """The section, and every problem found; the section is None when there is any."""
    section: dict[str, Any] = fleet.dns or {}
    problems = _Problems(fleet)
    domains = _domains(section, problems)
    servers = _servers(section.get("bootstrap_servers") or [], problems)
    chosen = section.get("device_records")
    if chosen is not None:
        _one_port_per_host(servers, problems)
    serials = [] if chosen is None else _serials(fleet, chosen.get("devices", "all"), problems)
    longest = max(serials, key=len, default="")
    for domain in domains:
        name = f"{longest}.{SZTP_NODE}.{domain}"
        if len(name) + 2 > MAX_NAME_WIRE:  # in wire octets: a length per label, and the root
            where = ("dns", "domains" if "domains" in section else "domain")
            problems.at(where, f"{name} is longer than a DNS name's {MAX_NAME_WIRE} octets")
    if problems:
        return None, list(problems)
    signed = chosen is not None and chosen.get("signed", True)
    ttl = section.get("ttl", DEFAULT_TTL)
    return DnsSection(tuple(domains), ttl, tuple(servers), tuple(serials), signed), []


def _domains(section: Mapping[str, Any], problems: _Problems) -> list[str]:
    if ("domain" in section) == ("domains" in section):
        problems.at(_SECTION, "give domain or domains, exactly one")
        return []
    given: list[tuple[YamlPath, Any]] = (
        [(("dns", "domain"), section["domain"])]
        if "domain" in section
        else [(("dns", "domains", index), name) for index, name in enumerate(section["domains"])]
    )
    domains: list[str] = []
    for path, name in given:
        try:
            domain = check_domain(name)
        except ValidationError as exc:
            problems.at(path, exc.message)
            continue
        if domain.lower() in (known.lower() for known in domains):
            problems.at(path, f"{domain} is listed twice")
            continue
        domains.append(domain)
    return domains


def _servers(entries: Sequence[Mapping[str, Any]], problems: _Problems) -> list[BootstrapServer]:
    indexed: list[tuple[int, BootstrapServer]] = []
    for index, entry in enumerate(entries):
        given: Any = (  # as written: the codec checks each value
            entry.get("host"),
            entry.get("port", DEFAULT_PORT),
            entry.get("priority", 0),
            entry.get("weight", 0),
        )
        try:
            (srv,) = bootstrap_srv([given])
        except ValidationError as exc:
            # The codec names `servers[0]/port`: its last step is the key of the entry.
            problems.at((*_SERVERS, index, exc.field.rpartition("/")[2]), exc.message)
            continue
        anchor = entry.get("trust_anchor")
        if anchor is not None and not _has_certificate(anchor):
            problems.at((*_SERVERS, index, "trust_anchor"), "holds no PEM certificate")
            continue
        given_addresses = entry.get("addresses")
        addresses = (
            ()
            if given_addresses is None
            else _addresses(srv.target, given_addresses, (*_SERVERS, index), problems)
        )
        if addresses is None:
            continue
        indexed.append((index, BootstrapServer(srv, anchor, addresses, index)))
    seen: dict[tuple[str, int], int] = {}
    for index, server in indexed:
        first = seen.setdefault((server.srv.target.lower(), server.srv.port), index)
        if first != index:
            problems.at(
                (*_SERVERS, index),
                f"{server.srv.target} port {server.srv.port} is listed twice (first at "
                f"bootstrap_servers[{first}])",
            )
    # Redirect information is tried in order: the SRV order of preference, lowest first.
    return sorted((server for _, server in indexed), key=lambda server: server.srv.priority)


def _one_port_per_host(servers: Sequence[BootstrapServer], problems: _Problems) -> None:
    """Device records carry redirect information, whose bootstrap servers are keyed by address
    alone (ietf-sztp-conveyed-info): a host may be listed once there, whatever its ports."""
    seen: dict[str, int] = {}
    for server in sorted(servers, key=lambda server: server.entry):
        first = seen.setdefault(server.srv.target.lower(), server.entry)
        if first != server.entry:
            problems.at(
                (*_SERVERS, server.entry),
                f"{server.srv.target} is listed again (first at bootstrap_servers[{first}]): the "
                "redirect information in device records names each host once; give one port "
                "per host, or leave device_records out",
            )


def _is_mdns_host(host: str) -> bool:
    return host.lower().endswith("." + MDNS_DOMAIN)


def _addresses(
    host: str, given: Sequence[Any], path: YamlPath, problems: _Problems
) -> tuple[str, ...] | None:
    """The A/AAAA addresses of a `.local` host, each once; None after a problem."""
    if not _is_mdns_host(host):
        problems.at(
            (*path, "addresses"),
            f"{host} is not a .local host: its addresses belong in DNS, not in this file",
        )
        return None
    addresses: list[str] = []
    for index, text in enumerate(given):
        where = (*path, "addresses", index)
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            problems.at(where, f"{text!a} is not an IPv4 or IPv6 address")
            continue
        if address.is_multicast or address.is_unspecified:
            problems.at(where, f"{address} is not the address of a host")
        elif isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
            problems.at(where, f"{text} has a zone index, which an AAAA record cannot hold")
        elif str(address) in addresses:
            problems.at(where, f"{address} is listed twice")
        else:
            addresses.append(str(address))
    return tuple(addresses) if len(addresses) == len(given) else None


def _serials(fleet: Fleet, chosen: Any, problems: _Problems) -> list[str]:
    """The serials `devices:` selects, each with the place a problem with it is reported."""
    devices = fleet.resources.get(DEVICE, {})
    picked: dict[str, str] = {}
    if chosen == "all" or isinstance(chosen, dict):
        profile = chosen["profile"] if isinstance(chosen, dict) else None
        if profile is not None and profile not in fleet.resources.get(PROFILE, {}):
            problems.at((*_DEVICES, "profile"), f"no profile {profile!r} in this fleet file")
            return []
        for serial, spec in devices.items():
            if profile is None or profile in selectable_profiles(spec):
                picked[serial] = _device_place(fleet, serial)
    else:
        for index, serial in enumerate(chosen):
            if serial not in devices:
                problems.at((*_DEVICES, index), f"no device {serial!r} in this fleet file")
            elif serial in picked:
                problems.at((*_DEVICES, index), f"{serial} is listed twice")
            else:
                picked[serial] = where_in(fleet, (*_DEVICES, index))
    serials: list[str] = []
    by_name: dict[str, str] = {}
    for serial, place in picked.items():
        try:
            serial_label(serial)
        except ValidationError as exc:
            problems.append(Problem(place, f"device {serial!a}: no DNS name: {exc.message}"))
            continue
        # DNS compares names without regard to case (RFC 4343): one name, two devices.
        first = by_name.setdefault(serial.lower(), serial)
        if first != serial:
            problems.append(
                Problem(place, f"devices {first} and {serial} are one DNS name, case aside")
            )
            continue
        serials.append(serial)
    return serials


def _device_records(
    fleet: Fleet, section: DnsSection, serial: str, owners: dict[str, Credential]
) -> list[TxtRdata]:
    from ..protocol import bootstrapping_data, cms, pki
    from ..protocol.conveyed_info import BootstrapServer as RedirectServer
    from ..protocol.conveyed_info import RedirectInformation

    servers = tuple(
        RedirectServer(
            address=server.srv.target,
            port=server.srv.port,
            trust_anchor=(
                cms.certs_only(pki.load_certificates_pem(server.trust_anchor.encode()))
                if section.signed and server.trust_anchor is not None
                else None
            ),
        )
        for server in section.servers
    )
    information = RedirectInformation(servers)
    encoding = _encoding(fleet, serial)
    if section.signed:
        voucher = _voucher(fleet, serial)
        owner = _signing_owner(fleet, serial)
        if owner not in owners:
            owners[owner] = _owner_credential(fleet, owner, serial)
        data = bootstrapping_data.build_signed(information, encoding, owners[owner], voucher)
        try:
            # As the device will check it, but for the voucher's chain to the manufacturer.
            bootstrapping_data.check_presigned(data, serial_number=serial)
        except SztpError as exc:
            raise _device_error(
                fleet, serial, f"its signed records would not verify: {exc}"
            ) from None
    else:
        data = bootstrapping_data.build_unsigned(information, encoding)
    try:
        return device_txt(
            serial,
            conveyed_information=data.conveyed_information,
            owner_certificate=data.owner_certificate,
            ownership_voucher=data.ownership_voucher,
        )
    except ValidationError as exc:
        raise _device_error(fleet, serial, exc.message) from None


def _device_place(fleet: Fleet, serial: str) -> str:
    return fleet.locate(f"{DEVICE}[{serial}]") or f"{fleet.path}: devices"


def _device_error(fleet: Fleet, serial: str, message: str) -> DnsSectionError:
    return DnsSectionError(_device_place(fleet, serial), f"device {serial}: {message}")


def _voucher(fleet: Fleet, serial: str) -> bytes:
    text = fleet.resources[DEVICE][serial].get("voucher")
    if text is None:
        raise _device_error(
            fleet,
            serial,
            "no voucher: signed records carry the device's ownership voucher (ov); add it, "
            "or render unsigned records (dns.device_records.signed: false)",
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _device_error(fleet, serial, "its voucher is not base64") from None


def _profiles(fleet: Fleet, serial: str) -> list[tuple[str, Mapping[str, Any] | None]]:
    """The device's profiles (its own, then its selection rules'), None where not in the file."""
    profiles = fleet.resources.get(PROFILE, {})
    return [
        (name, profiles.get(name)) for name in selectable_profiles(fleet.resources[DEVICE][serial])
    ]


def _encoding(fleet: Fleet, serial: str) -> Encoding:
    """The conveyed-information encoding of the device's first profile (default json)."""
    from ..protocol.conveyed_info import Encoding

    specs = [spec for _, spec in _profiles(fleet, serial) if spec is not None]
    return Encoding[str((specs[0] if specs else {}).get("encoding") or "json").upper()]


def _signing_owner(fleet: Fleet, serial: str) -> str:
    """The one owner of the device's profiles: a record carries one signature."""
    profiles = _profiles(fleet, serial)
    if not profiles:
        raise _device_error(
            fleet,
            serial,
            "no profile, so no owner signs its records; give it a profile, or render unsigned "
            "records (dns.device_records.signed: false)",
        )
    owners: dict[str, str] = {}
    for name, spec in profiles:
        if spec is None:
            raise _device_error(
                fleet,
                serial,
                f"its profile {name!r} is not in this fleet file: its owner is unknown",
            )
        owners.setdefault(spec.get("owner") or DEFAULT_OWNER, name)
    if len(owners) > 1:
        named = " and ".join(f"{owner!r} (profile {name!r})" for owner, name in owners.items())
        raise _device_error(
            fleet,
            serial,
            f"its profiles are signed by owners {named}, a DNS record carries one signature: "
            "render unsigned records (dns.device_records.signed: false) or sign with one owner",
        )
    (owner,) = owners
    if owner not in fleet.resources.get(OWNER, {}):
        raise _device_error(fleet, serial, f"its owner {owner!r} is not in this fleet file")
    return owner


def _owner_credential(fleet: Fleet, owner: str, serial: str) -> Credential:
    """The owner's certificate chain and PEM key from the file; DnsSectionError saying why
    the records of `serial` cannot be signed here otherwise."""
    from ..protocol import pki

    spec = fleet.resources[OWNER][owner]
    key = spec.get("private_key")
    why = _unusable_key(key)
    if why is not None:
        problem = _key_problem(fleet, owner, serial, why)
        raise DnsSectionError(problem.where, problem.message)
    try:
        chain = pki.load_certificates_pem(str(spec["certificate_chain"]).encode())
        return pki.Credential(
            chain[0], pki.load_private_key_pem(str(key).encode()), tuple(chain[1:])
        )
    except SztpError as exc:
        raise DnsSectionError(_owner_place(fleet, owner), f"owner {owner!r}: {exc}") from None


def _owner_place(fleet: Fleet, owner: str) -> str:
    return fleet.locate(f"{OWNER}[{owner}].private_key") or f"{fleet.path}: owner {owner}"


def _key_problem(fleet: Fleet, owner: str, serial: str, why: str) -> Problem:
    return Problem(
        _owner_place(fleet, owner),
        f"owner {owner!r} cannot sign the records of {serial}: {why}; render unsigned records "
        "(dns.device_records.signed: false) or sign where the key is",
    )


def _unusable_key(key: object) -> str | None:
    """Why an owner's `private_key` cannot sign here, or None."""
    if key is None:
        return "it has no private_key in this fleet file"
    if key == HIDDEN:
        return "its private_key variable is not set"
    if is_pkcs11_uri(key):
        return "its private_key is in a PKCS#11 token, which only the server reaches"
    return None


def _has_certificate(pem: object) -> bool:
    from ..protocol import pki

    try:
        return bool(pki.load_certificates_pem(str(pem).encode()))
    except SztpError:
        return False

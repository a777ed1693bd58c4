"""A device looking up its bootstrapping data in DNS (RFC 8572 §4.2): the network edge over
`protocol.dns_records`, which reads the answers.

The order (§4.2.1): device-specific data first, TXT at `<serial>._sztp`, then bootstrap
servers, SRV at `_sztp._tcp`; each asked over multicast DNS in `.local` first, then over
unicast DNS in each of the device's domains in turn (its search domains: configured, or the
system's, as DHCP or router advertisements (DNSSL) left them in /etc/resolv.conf). Every answer
found is a source, in that order: the TXT data of each place that had some, then the servers
of each SRV answer, ordered as RFC 2782 says.

Nothing here is trusted: DNS is an untrusted source, DNSSEC or not (§4.2). TXT data is handed
on as bootstrapping data for the device to verify like a bootstrap server's answer got over
unverified TLS; SRV records only name servers. A name that does not exist, an empty answer, a
timeout, a dead nameserver or an answer `dns_records` refuses means "nothing here": logged,
and the lookup goes on. Only a setting that cannot be used raises (`ValidationError`).

Unicast queries go over UDP and are asked again over TCP when the answer is truncated (RFC
7766): signed TXT data is kilobytes, and §4.2.4 expects TCP. mDNS queries are one-shot
queries (RFC 6762 §5.1): one datagram to 224.0.0.251 and ff02::fb port 5353 from an ephemeral
port, and the first answer that matches the question wins; responders answer such a query by
unicast to that port (§6.7). Anyone on the link may answer first: only the signatures the
device checks afterwards make the data worth anything.

A server whose SRV target is under `.local` is where mDNS says (RFC 6762 §3), not where the
system resolver says: a device without an mDNS resolver cannot ask it. Its addresses are the
A/AAAA records the SRV answer brought along for that target, else those of one-shot A and AAAA
queries for it; the device connects to them while TLS checks the certificate against the name.
An IPv6 link-local address is kept scoped to the interface the answer came in on, known when
the answer came from a link-local address, and dropped otherwise.
"""

from __future__ import annotations

import ipaddress
import random
import select
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
from dns.rdatatype import RdataType
from dns.rdtypes.IN.SRV import SRV
from dns.rdtypes.txtbase import TXTBase

from .errors import SztpError, ValidationError
from .protocol.bootstrapping_data import BootstrappingData
from .protocol.dns_records import (
    MAX_MDNS_PACKET,
    MDNS_DOMAIN,
    MDNS_GROUP_V4,
    MDNS_GROUP_V6,
    MDNS_PORT,
    SRV_OWNER,
    SZTP_NODE,
    SrvRecord,
    parse_device_txt,
    serial_label,
)
from .protocol.dns_records import srv_uris as ordered_srv_uris

MDNS_GROUPS: tuple[tuple[str, int], ...] = ((MDNS_GROUP_V4, MDNS_PORT), (MDNS_GROUP_V6, MDNS_PORT))
# RFC 6762 §11: mDNS is sent with IP TTL (hop limit) 255.
_MDNS_HOP_LIMIT = 255
DNS_PORT = 53
DEFAULT_TIMEOUT = 3.0
DEFAULT_MDNS_TIMEOUT = 1.0
TXT = dns.rdatatype.TXT
SRV_TYPE = dns.rdatatype.SRV
ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
# What one answer can make the device keep or ask: addresses of one host, and `.local` targets
# of one SRV answer looked up by follow-up queries (each may wait out the mDNS timeout; the
# device's transport asks for the others when it reaches them).
MAX_HOST_ADDRESSES = 8
MAX_TARGETS_ASKED = 4

Log = Callable[[str], None]


@dataclass(frozen=True)
class DnsSettings:
    """Where and how a device looks: `domains` (None: the system's search domains),
    `nameservers` as `address` or `address:port` (`[v6]:port`; empty: the system's), whether
    to ask over mDNS first, and how long a unicast lookup and an mDNS query may take."""

    domains: tuple[str, ...] | None = None
    nameservers: tuple[str, ...] = ()
    mdns: bool = True
    timeout: float = DEFAULT_TIMEOUT
    mdns_timeout: float = DEFAULT_MDNS_TIMEOUT


@dataclass(frozen=True)
class DnsData:
    """Bootstrapping data from TXT records, and where: `mDNS TXT SN-1._sztp.local`."""

    source: str
    data: BootstrappingData


@dataclass(frozen=True)
class DnsServer:
    """A bootstrap server from an SRV record, and where: `DNS SRV _sztp._tcp.example.net`.
    For a target under `.local`, `addresses` are where mDNS placed it (none when nothing said;
    always none for other targets)."""

    uri: str
    source: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class MdnsAnswer:
    """The first answer to a one-shot mDNS query: the records answering its question, every
    record it carries (answer and additional sections), and the interface it came in on when
    a link-local address sent it (the scope of link-local addresses in it)."""

    records: list[dns.rdata.Rdata]
    rrsets: list[dns.rrset.RRset]
    interface: str | None


DnsSource = DnsData | DnsServer


def check_settings(settings: DnsSettings) -> None:
    """Refuse settings no lookup could use, naming the setting."""
    for domain in settings.domains or ():
        _domain_name(domain)
    for nameserver in settings.nameservers:
        parse_nameserver(nameserver)
    if not settings.timeout > 0 or not settings.mdns_timeout > 0:
        raise ValidationError("timeout", "DNS timeouts must be above 0 seconds")


def parse_nameserver(text: str) -> tuple[str, int]:
    """(address, port) of `192.0.2.53`, `192.0.2.53:5300`, `2001:db8::53`, `[2001:db8::53]:53`."""
    address, port = text, DNS_PORT
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ValidationError("nameservers", f"{text!a}: expected [address]:port")
        port = _port(rest[1:], text)
    elif text.count(":") == 1:
        address, _, number = text.partition(":")
        port = _port(number, text)
    try:
        return str(ipaddress.ip_address(address)), port
    except ValueError:
        raise ValidationError("nameservers", f"{text!a} is not an IP address") from None


def system_search_domains() -> tuple[str, ...]:
    """The search domains of /etc/resolv.conf (none when it cannot be read)."""
    try:
        resolver = dns.resolver.Resolver()
    except (dns.exception.DNSException, OSError):
        return ()
    return tuple(name.to_text(omit_final_dot=True) for name in resolver.search)


def discover(
    serial: str,
    settings: DnsSettings,
    *,
    log: Log,
    rng: random.Random | None = None,
    mdns_groups: Sequence[tuple[str, int]] = MDNS_GROUPS,
) -> list[DnsSource]:
    """The sources DNS offers device `serial`, in the order to try them (module docstring)."""
    check_settings(settings)
    rng = rng or random.SystemRandom()
    local = _domain_name(MDNS_DOMAIN)
    # RFC 6762 §3: names under .local go to mDNS only.
    domains = [
        domain
        for domain in (system_search_domains() if settings.domains is None else settings.domains)
        if not _domain_name(domain).is_subdomain(local)
    ]
    resolver = _resolver(settings, log) if domains else None
    if not domains:
        log("DNS: no search domain, so no unicast DNS lookup")
    places = [("mDNS", local)] if settings.mdns else []
    if resolver is not None:
        places += [("DNS", _domain_name(domain)) for domain in domains]

    def ask(kind: str, name: dns.name.Name, rdtype: RdataType) -> list[dns.rdata.Rdata]:
        if resolver is None or kind == "mDNS":
            return mdns_query(
                name, rdtype, timeout=settings.mdns_timeout, groups=mdns_groups, log=log
            )
        return _unicast_query(resolver, name, rdtype, log=log)

    sources: list[DnsSource] = []
    try:
        label: bytes | None = serial_label(serial)
    except ValidationError as exc:
        log(f"DNS: no TXT lookup for this serial number: {exc}")
        label = None
    if label is not None:
        for kind, suffix in places:
            name = dns.name.Name((label, SZTP_NODE.encode())).concatenate(suffix)
            found = _device_data(f"{kind} TXT {_shown(name)}", ask(kind, name, TXT), log)
            if found is not None:
                sources.append(found)
    for kind, suffix in places:
        name = dns.name.from_text(SRV_OWNER, origin=suffix)
        source = f"{kind} SRV {_shown(name)}"
        answer = None
        if kind == "mDNS":
            answer = _mdns_ask(
                [(name, SRV_TYPE)], timeout=settings.mdns_timeout, groups=mdns_groups, log=log
            )
            rdatas = answer.records if answer is not None else []
        else:
            rdatas = ask(kind, name, SRV_TYPE)
        servers = _servers(source, rdatas, rng, log)
        sources += _located(servers, answer, settings, mdns_groups, log)
    return sources


def local_host(uri: str) -> str | None:
    """The host of `uri` when it is a name under `.local` (RFC 6762 §3), lower case and
    without a trailing dot; None for any other host, and for a URI that does not parse."""
    try:
        host = urlsplit(uri).hostname
    except ValueError:
        return None
    return local_name(host) if host is not None else None


def local_name(host: str) -> str | None:
    """`host`, lower case and without a trailing dot, when it is a name under `.local`."""
    name = host.lower().removesuffix(".")
    return name if name.endswith("." + MDNS_DOMAIN) else None


def mdns_addresses(
    name: dns.name.Name,
    *,
    timeout: float,
    log: Log,
    groups: Sequence[tuple[str, int]] = MDNS_GROUPS,
) -> tuple[str, ...]:
    """The addresses of host `name` from one-shot AAAA and A queries sent together: those of
    the first answer to either (with any of the other type it brings along); none when
    nothing answers within `timeout` seconds."""
    answer = _mdns_ask(
        [(name, dns.rdatatype.AAAA), (name, dns.rdatatype.A)],
        timeout=timeout,
        groups=groups,
        log=log,
    )
    return host_addresses(name, answer, log) if answer is not None else ()


def host_addresses(name: dns.name.Name, answer: MdnsAnswer, log: Log) -> tuple[str, ...]:
    """The usable addresses `answer` gives for host `name`, at most `MAX_HOST_ADDRESSES`:
    records of other names are ignored, and so are addresses no connection can go to
    (multicast, unspecified, link-local with no interface to scope it to)."""
    found: dict[str, None] = {}
    refused = 0
    for rrset in answer.rrsets:
        if (
            rrset.name != name
            or rrset.rdtype not in ADDRESS_TYPES
            or rrset.rdclass != dns.rdataclass.IN
        ):
            continue
        for rdata in rrset:
            usable = _usable_address(str(rdata.address), answer.interface)
            if usable is None:
                refused += 1
            elif len(found) < MAX_HOST_ADDRESSES:
                found[usable] = None
    if refused:
        log(f"mDNS {_shown(name)}: {refused} unusable address(es) ignored")
    return tuple(found)


def mdns_query(
    name: dns.name.Name,
    rdtype: RdataType,
    *,
    timeout: float,
    log: Log,
    groups: Sequence[tuple[str, int]] = MDNS_GROUPS,
) -> list[dns.rdata.Rdata]:
    """A one-shot mDNS query (RFC 6762 §5.1) sent to each of `groups`: the records of the first
    answer to match the question, none when nothing answers within `timeout` seconds."""
    answer = _mdns_ask([(name, rdtype)], timeout=timeout, groups=groups, log=log)
    return answer.records if answer is not None else []


# ---- mDNS


def _mdns_ask(
    questions: Sequence[tuple[dns.name.Name, RdataType]],
    *,
    timeout: float,
    log: Log,
    groups: Sequence[tuple[str, int]],
) -> MdnsAnswer | None:
    """One-shot queries, one per question, each sent to each of `groups`: the first answer to
    match its query's question, None when none does within `timeout` seconds."""
    asked: list[tuple[socket.socket, dns.message.Message]] = []
    shown = "mDNS " + ", ".join(
        f"{dns.rdatatype.to_text(rdtype)} {_shown(name)}" for name, rdtype in questions
    )
    try:
        for name, rdtype in questions:
            query = dns.message.make_query(name, rdtype)
            # RFC 6762 §18: an mDNS query has no flag set, recursion desired included.
            query.flags = 0
            wire = query.to_wire()
            for address, port in groups:
                sent = _send_datagram(wire, address, port)
                if isinstance(sent, str):
                    log(f"{shown}: not sent to {address}: {sent}")
                else:
                    asked.append((sent, query))
        return _first_answer(asked, timeout, shown, log)
    finally:
        for sock, _ in asked:
            sock.close()


def _send_datagram(wire: bytes, address: str, port: int) -> socket.socket | str:
    """A socket that sent `wire` to (address, port) from an ephemeral port, or why not."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if ipaddress.ip_address(address).is_multicast:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, _MDNS_HOP_LIMIT)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, _MDNS_HOP_LIMIT)
        sock.sendto(wire, (address, port))
    except OSError as exc:
        sock.close()
        return exc.strerror or str(exc)
    return sock


def _first_answer(
    asked: list[tuple[socket.socket, dns.message.Message]],
    timeout: float,
    shown: str,
    log: Log,
) -> MdnsAnswer | None:
    if not asked:
        return None
    queries = dict(asked)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(list(queries), [], [], left)
        for sock in readable:
            try:
                datagram, sender = sock.recvfrom(MAX_MDNS_PACKET + 1)
            except OSError:
                continue
            answer = _mdns_answer(queries[sock], datagram, shown, sender, log)
            if answer is not None:
                return answer
    log(f"{shown}: no answer within {timeout:g} s")
    return None


def _mdns_answer(
    query: dns.message.Message,
    datagram: bytes,
    shown: str,
    sender: tuple[str, int] | tuple[str, int, int, int],
    log: Log,
) -> MdnsAnswer | None:
    """One datagram as the answer to `query`; None for anything else."""
    if len(datagram) > MAX_MDNS_PACKET:
        log(f"{shown}: an answer from {sender[0]} over {MAX_MDNS_PACKET} octets ignored")
        return None
    try:
        response = dns.message.from_wire(datagram)
    except (dns.exception.DNSException, ValueError) as exc:
        log(f"{shown}: an unreadable answer from {sender[0]} ignored ({type(exc).__name__})")
        return None
    if not query.is_response(response):
        return None
    if response.flags & dns.flags.TC:
        log(f"{shown}: the answer from {sender[0]} is truncated; mDNS has no TCP to ask again")
        return None
    question = query.question[0]
    records = [
        rdata
        for rrset in response.answer
        if rrset.name == question.name
        and rrset.rdtype == question.rdtype
        and rrset.rdclass == dns.rdataclass.IN
        for rdata in rrset
    ]
    if not records:
        return None
    return MdnsAnswer(records, [*response.answer, *response.additional], _interface(sender))


def _interface(sender: tuple[str, int] | tuple[str, int, int, int]) -> str | None:
    """The interface a datagram from an IPv6 link-local address came in on (its scope)."""
    if len(sender) != 4 or not sender[3]:
        return None
    try:
        return socket.if_indextoname(sender[3])
    except OSError:
        return None


def _usable_address(text: str, interface: str | None) -> str | None:
    """`text` as an address to connect to; None for one no connection can go to."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    # IPv4's reserved block holds the broadcast address; IPv6's holds ::1, which is usable.
    if (
        address.is_multicast
        or address.is_unspecified
        or (address.version == 4 and address.is_reserved)
    ):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.is_link_local:
        # Meaningless without the link: the one the answer came over.
        return f"{address}%{interface}" if interface else None
    return str(address)


# ---- unicast DNS


def _resolver(settings: DnsSettings, log: Log) -> dns.resolver.Resolver | None:
    try:
        resolver = dns.resolver.Resolver(configure=not settings.nameservers)
    except (dns.exception.DNSException, OSError) as exc:
        log(f"DNS: no nameserver configured ({exc}), so no unicast DNS lookup")
        return None
    if settings.nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_nameserver(text)) for text in settings.nameservers
        ]
    # The whole lookup within `timeout`, each nameserver given its share: a silent first one
    # (UDP brings no refusal back) must leave the next one time to answer.
    resolver.lifetime = settings.timeout
    resolver.timeout = settings.timeout / len(resolver.nameservers)
    # EDNS(0) with the common 1232-octet buffer: a signed TXT answer, kilobytes, comes back
    # truncated over UDP and the resolver asks again over TCP.
    resolver.use_edns(0, 0, 1232)
    return resolver


def _unicast_query(
    resolver: dns.resolver.Resolver,
    name: dns.name.Name,
    rdtype: RdataType,
    *,
    log: Log,
) -> list[dns.rdata.Rdata]:
    shown = f"DNS {dns.rdatatype.to_text(rdtype)} {_shown(name)}"
    try:
        answer = resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        log(f"{shown}: no such name")
        return []
    except dns.resolver.LifetimeTimeout:
        log(f"{shown}: no answer within {resolver.lifetime:g} s")
        return []
    except dns.resolver.NoNameservers as exc:
        log(f"{shown}: no nameserver answered ({_clipped(exc)})")
        return []
    except (dns.exception.DNSException, OSError, ValueError) as exc:
        log(f"{shown}: lookup failed ({_clipped(exc)})")
        return []
    if answer.rrset is None:
        log(f"{shown}: no records")
        return []
    return list(answer.rrset)


# ---- reading the answers


def _device_data(source: str, rdatas: list[dns.rdata.Rdata], log: Log) -> DnsData | None:
    if not rdatas:
        return None
    try:
        ci, oc, ov = parse_device_txt(
            [rdata.strings for rdata in rdatas if isinstance(rdata, TXTBase)]
        )
        data = BootstrappingData(ci, oc, ov)
    except SztpError as exc:
        log(f"{source}: refused: {exc}")
        return None
    kind = "signed" if data.signed else "unsigned"
    log(f"{source}: {kind} bootstrapping data ({len(ci)} octets of conveyed information)")
    return DnsData(source, data)


def _servers(
    source: str, rdatas: list[dns.rdata.Rdata], rng: random.Random, log: Log
) -> list[DnsServer]:
    if not rdatas:
        return []
    records = [
        SrvRecord(
            priority=rdata.priority,
            weight=rdata.weight,
            port=rdata.port,
            target="." if rdata.target == dns.name.root else rdata.target.to_text(True),
        )
        for rdata in rdatas
        if isinstance(rdata, SRV)
    ]
    try:
        uris = ordered_srv_uris(records, rng)
    except SztpError as exc:
        log(f"{source}: refused: {exc}")
        return []
    log(f"{source}: " + (", ".join(uris) if uris else "no service here (target '.')"))
    return [DnsServer(uri, source) for uri in uris]


def _located(
    servers: list[DnsServer],
    answer: MdnsAnswer | None,
    settings: DnsSettings,
    groups: Sequence[tuple[str, int]],
    log: Log,
) -> list[DnsServer]:
    """`servers` with the addresses of their `.local` targets: those the SRV `answer` brought
    along, else (with `mdns`) those of follow-up queries for the first `MAX_TARGETS_ASKED`."""
    addresses: dict[str, tuple[str, ...]] = {}
    asked = 0
    for server in servers:
        host = local_host(server.uri)
        if host is None or host in addresses:
            continue
        name = dns.name.from_text(host)
        found = host_addresses(name, answer, log) if answer is not None else ()
        how = "from the SRV answer"
        if not found and settings.mdns and asked < MAX_TARGETS_ASKED:
            asked += 1
            found = mdns_addresses(name, timeout=settings.mdns_timeout, groups=groups, log=log)
            how = "asked over mDNS"
        if found:
            log(f"mDNS {host}: {', '.join(found)} ({how})")
        addresses[host] = found
    return [
        replace(server, addresses=addresses.get(local_host(server.uri) or "", ()))
        for server in servers
    ]


def _domain_name(domain: str) -> dns.name.Name:
    try:
        name = dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        raise ValidationError("domains", f"{domain!a} is not a domain name: {exc}") from None
    if name == dns.name.root:
        raise ValidationError("domains", "the root is not a search domain")
    return name


def _port(text: str, shown: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValidationError("nameservers", f"{shown!a}: the port must be 1..65535")
    return int(text)


def _shown(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True)


def _clipped(exc: BaseException, limit: int = 300) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

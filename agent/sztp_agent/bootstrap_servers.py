"""The sources a session tries, in order: the configured URIs, then those of each interface's
DHCP lease (RFC 8572 §8; the interfaces in the configured order, else by name, DHCPv4 before
DHCPv6), each URI once; then, with `dns`, what DNS offers (RFC 8572 §4.2, `sztp.dns_discovery`):
bootstrapping data from TXT records, then the servers of SRV records. Where each came from is
kept for the status and the reports; DHCP and DNS are untrusted, so nothing here decides
trust: TLS and signatures do."""

from __future__ import annotations

from collections.abc import Callable

from sztp.dns_discovery import DnsData, DnsServer, DnsSource
from sztp.dns_discovery import discover as discover_in_dns

from .config import AgentConfig
from .discovery.leases import DEFAULT_LOCATIONS, LeaseLocations, LeaseOffer, find_offers
from .status import Discovery


def discover(
    config: AgentConfig, locations: LeaseLocations = DEFAULT_LOCATIONS
) -> tuple[list[Discovery], list[str]]:
    """The servers to try and the problems met finding them (unreadable leases, bad URIs)."""
    found = [Discovery(uri, "configuration") for uri in config.bootstrap_uris]
    problems: list[str] = []
    if config.dhcp:
        offers = find_offers(locations, interfaces=config.interfaces or None)
        if config.interfaces:
            order = {name: position for position, name in enumerate(config.interfaces)}
            offers.sort(key=lambda offer: (order.get(offer.interface, len(order)), offer.family))
        for offer in offers:
            problems += [f"{offer.source}: {problem}" for problem in offer.problems]
            found += [_from_lease(uri, offer) for uri in offer.uris]
    unique: dict[str, Discovery] = {}
    for discovery in found:
        unique.setdefault(discovery.uri, discovery)
    return list(unique.values()), problems


def discover_dns(
    config: AgentConfig, serial: str, known: list[Discovery], log: Callable[[str], None]
) -> tuple[list[Discovery], list[DnsSource]]:
    """With `dns`: what DNS offers besides the `known` servers, as the status shows it and as
    the procedure takes it (data from TXT first, then servers from SRV)."""
    if not config.dns:
        return [], []
    uris = {discovery.uri for discovery in known}
    found: list[DnsSource] = []
    for source in discover_in_dns(serial, config.dns_settings, log=log):
        if isinstance(source, DnsServer) and source.uri in uris:
            continue
        if isinstance(source, DnsServer):
            uris.add(source.uri)
        found.append(source)
    shown = [
        Discovery("" if isinstance(source, DnsData) else source.uri, source.source)
        for source in found
    ]
    return shown, found


def network_identity(
    config: AgentConfig, locations: LeaseLocations = DEFAULT_LOCATIONS
) -> list[Discovery]:
    """The device's DHCP leases now (with or without SZTP options): what the `network-change`
    policy compares with those of the completed session."""
    if not config.dhcp:
        return []
    return [
        Discovery(
            "",
            f"dhcpv{offer.family}",
            offer.interface,
            offer.client,
            offer.server_id,
            offer.network,
        )
        for offer in find_offers(locations, interfaces=config.interfaces or None)
        # A file read for no interface (unreadable, too large) says nothing of the network.
        if offer.interface and (offer.server_id or offer.network)
    ]


def network_changed(before: list[Discovery], now: list[Discovery]) -> bool:
    """True when the device has leases from DHCP servers or subnets none of which it had when
    it completed: it has moved. No lease then or now tells nothing."""
    if not before or not now:
        return False

    def identities(leases: list[Discovery]) -> set[tuple[str | None, str | None]]:
        return {(lease.dhcp_server, lease.network) for lease in leases}

    return not identities(before) & identities(now)


def describe(discoveries: list[Discovery]) -> str:
    """Where the servers came from, in a few words for a report message."""
    parts = []
    for discovery in discoveries:
        if discovery.source == "configuration":
            parts.append(f"{discovery.uri} (configured)")
        elif discovery.interface is None:
            parts.append(f"{discovery.uri or 'bootstrapping data'} ({discovery.source})")
        else:
            server = f", DHCP server {discovery.dhcp_server}" if discovery.dhcp_server else ""
            parts.append(f"{discovery.uri} ({discovery.source} on {discovery.interface}{server})")
    return "; ".join(parts)


def _from_lease(uri: str, offer: LeaseOffer) -> Discovery:
    option = "option 143" if offer.family == 4 else "option 136"
    return Discovery(
        uri,
        f"DHCPv{offer.family} {option}",
        offer.interface,
        offer.client,
        offer.server_id,
        offer.network,
    )

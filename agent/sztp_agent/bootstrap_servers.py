"""The bootstrap servers a session tries, in order: the configured URIs, then those of each
interface's DHCP lease (RFC 8572 §8; the interfaces in the configured order, else by name,
DHCPv4 before DHCPv6), each URI once. Where each came from is kept for the status and the
reports; DHCP is untrusted, so nothing here decides trust: TLS and signatures do."""

from __future__ import annotations

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

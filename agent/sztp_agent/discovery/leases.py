"""Find the RFC 8572 §8 bootstrap-server lists (DHCPv4 option 143, DHCPv6 option 136) in the
leases of every DHCP client a device may run, per interface.

`find_offers` reads what is there, where each client keeps it (`LeaseLocations`):

- ISC dhclient: `dhclient*.leases` under /var/lib/dhcp (Debian) and /var/lib/dhclient
  (Red Hat); see `dhclient` for the format. The names a configuration
  (`dhclient*.conf` in /etc/dhcp, and NetworkManager's generated ones) declares for the
  options are learned from it, so leases written under them are read too.
- systemd-networkd: /run/systemd/netif/leases/<ifindex>; it cannot store option 143, so its
  offers carry the lease's identity and a problem saying so (see `networkd`).
- NetworkManager: its lease files under /run/NetworkManager and /var/lib/NetworkManager, and
  its D-Bus DHCP4Config/DHCP6Config `Options` through `busctl` (see `networkmanager`).
  Without busctl or NetworkManager there is simply nothing from D-Bus.

Offers come sorted by interface, then family, then most recently obtained first. Every
file is untrusted input: one that is not a regular file, cannot be read or is over
`LEASE_FILE_MAX` is skipped with a problem (on an offer whose interface is "" when nothing
tells which it is for), and whatever is wrong inside a file becomes a problem on its offers.
Nothing here raises on what it reads.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .dhclient import (
    V4_OPTION_NAMES,
    V6_OPTION_NAMES,
    declared_option_names,
    file_name_hint,
    parse_dhclient_leases,
)
from .networkd import parse_networkd_lease
from .networkmanager import (
    LEASE_FILE_NAME,
    busctl_runner,
    dbus_offers,
    parse_internal_lease,
)
from .offer import (
    DHCLIENT,
    NETWORKD,
    NETWORKMANAGER,
    LeaseOffer,
    problem_offer,
    with_problems,
)

# Real lease files are a few kilobytes; dhclient's grows to about twenty leases before it
# rewrites it.
LEASE_FILE_MAX = 1 << 20
_DHCLIENT_LEASES = ("dhclient*.leases",)
_DHCLIENT_CONFIGS = "dhclient*.conf"


@dataclass(frozen=True)
class LeaseLocations:
    """Where each client keeps its leases (and dhclient its configuration); `busctl` is the
    command that reads NetworkManager's D-Bus state, None to leave D-Bus alone."""

    dhclient: tuple[Path, ...] = (Path("/var/lib/dhcp"), Path("/var/lib/dhclient"))
    dhclient_configs: tuple[Path, ...] = (
        Path("/etc/dhcp"),
        Path("/run/NetworkManager"),
        Path("/var/lib/NetworkManager"),
    )
    networkd: Path = Path("/run/systemd/netif/leases")
    networkmanager: tuple[Path, ...] = (
        Path("/run/NetworkManager"),
        Path("/var/lib/NetworkManager"),
    )
    busctl: str | None = "busctl"


DEFAULT_LOCATIONS = LeaseLocations()


def find_offers(
    roots: LeaseLocations = DEFAULT_LOCATIONS, *, interfaces: Sequence[str] | None = None
) -> list[LeaseOffer]:
    """Every lease offer on this device, by interface name, then family (4 before 6), then
    most recently obtained first; only `interfaces`' when given."""
    v4_names, v6_names = _option_names(roots)
    offers = [
        *_dhclient_offers(roots, v4_names, v6_names),
        *_networkd_offers(roots.networkd),
        *_networkmanager_file_offers(roots, v4_names, v6_names),
    ]
    busctl = shutil.which(roots.busctl) if roots.busctl else None
    if busctl:
        offers.extend(
            dbus_offers(busctl_runner(busctl), v4_option_names=v4_names, v6_option_names=v6_names)
        )
    if interfaces is not None:
        wanted = {interfaces} if isinstance(interfaces, str) else set(interfaces)
        offers = [offer for offer in offers if offer.interface in wanted]
    return sorted(offers, key=_order)


def _order(offer: LeaseOffer) -> tuple[str, int, bool, float, str, str]:
    obtained = offer.obtained_at
    return (
        offer.interface,
        offer.family,
        obtained is None,
        -obtained.timestamp() if obtained else 0.0,
        str(offer.source),
        offer.client,
    )


def _option_names(roots: LeaseLocations) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Our names and dhclient's `unknown-` names, plus those the configurations declare."""
    v4, v6 = set(V4_OPTION_NAMES), set(V6_OPTION_NAMES)
    for directory in roots.dhclient_configs:
        for path in _files(directory, (_DHCLIENT_CONFIGS,)):
            text, _ = read_bounded(path)
            if text is not None:
                declared_v4, declared_v6 = declared_option_names(text)
                v4 |= declared_v4
                v6 |= declared_v6
    return tuple(sorted(v4)), tuple(sorted(v6))


def _dhclient_offers(
    roots: LeaseLocations, v4_names: tuple[str, ...], v6_names: tuple[str, ...]
) -> Iterator[LeaseOffer]:
    for directory in roots.dhclient:
        for path in _files(directory, _DHCLIENT_LEASES):
            yield from _dhclient_file(path, DHCLIENT, v4_names, v6_names)


def _dhclient_file(
    path: Path, client: str, v4_names: tuple[str, ...], v6_names: tuple[str, ...]
) -> list[LeaseOffer]:
    text, problem = read_bounded(path)
    if text is None:
        interface, family = file_name_hint(path)
        return [_unreadable(path, interface, client, family, problem)]
    return parse_dhclient_leases(
        text, source=path, client=client, v4_option_names=v4_names, v6_option_names=v6_names
    )


def _networkd_offers(directory: Path) -> Iterator[LeaseOffer]:
    # networkd names each file after its interface's index.
    for path in _files(directory, ("[0-9]*",)):
        interface, index_problem = _interface_of_index(path.name)
        text, problem = read_bounded(path)
        if text is None:
            yield _unreadable(path, interface, NETWORKD, 4, problem)
            continue
        offer = parse_networkd_lease(text, interface=interface, source=path)
        yield with_problems(offer, index_problem) if index_problem else offer


def _networkmanager_file_offers(
    roots: LeaseLocations, v4_names: tuple[str, ...], v6_names: tuple[str, ...]
) -> Iterator[LeaseOffer]:
    for directory in roots.networkmanager:
        for path in _files(directory, ("*.lease",)):
            match = LEASE_FILE_NAME.fullmatch(path.name)
            if match is None:
                continue
            if match.group("client") == "dhclient":
                yield from _dhclient_file(path, NETWORKMANAGER, v4_names, v6_names)
                continue
            interface = match.group("interface")
            text, problem = read_bounded(path)
            if text is None:
                yield _unreadable(path, interface, NETWORKMANAGER, 4, problem)
            else:
                yield parse_internal_lease(text, interface=interface, source=path)


def _interface_of_index(name: str) -> tuple[str, str | None]:
    """The interface with index `name`, or "" and why not."""
    if not name.isascii() or not name.isdigit() or len(name) > 10:
        return "", f"{name!a} is not an interface index"
    try:
        return socket.if_indextoname(int(name)), None
    except (OSError, OverflowError, ValueError):
        return "", f"no interface has index {name} (the lease may be left from an earlier boot)"


def _files(directory: Path, patterns: tuple[str, ...]) -> list[Path]:
    """The entries of `directory` matching any pattern, sorted; none if it does not exist."""
    try:
        return sorted({path for pattern in patterns for path in directory.glob(pattern)})
    except OSError:
        return []


def read_bounded(path: Path) -> tuple[str | None, str | None]:
    """The text of a regular file of at most `LEASE_FILE_MAX` bytes (one character per
    byte), or None and why not.

    Opened non-blocking and checked after opening, so a FIFO or device put where a lease
    file was expected neither blocks nor is read.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        return None, f"cannot be opened: {error.strerror}"
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            return None, "is not a regular file"
        if info.st_size > LEASE_FILE_MAX:
            return None, f"holds {info.st_size} bytes, over the {LEASE_FILE_MAX}-byte limit"
        data = _read_at_most(descriptor, LEASE_FILE_MAX + 1)
    except OSError as error:
        return None, f"cannot be read: {error.strerror}"
    finally:
        os.close(descriptor)
    if len(data) > LEASE_FILE_MAX:
        return None, f"grew over the {LEASE_FILE_MAX}-byte limit while it was read"
    return data.decode("latin-1"), None


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(descriptor, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _unreadable(
    path: Path, interface: str, client: str, family: int, problem: str | None
) -> LeaseOffer:
    return problem_offer(
        interface=interface,
        client=client,
        family=family,
        source=path,
        problems=(f"the lease file {problem}; it was skipped",),
    )

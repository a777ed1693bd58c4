"""NetworkManager's DHCP leases: its lease files, and what it reports over D-Bus (read with the
`busctl` command, so the agent needs no D-Bus library).

Established from NetworkManager's source (src/core/dhcp/, introspection/):

- Lease files are `<client><6?>-<connection uuid>-<interface>.lease` under /run/NetworkManager
  or /var/lib/NetworkManager. The internal client (nettools, the default for DHCPv4 since
  1.20) writes `internal-*.lease` holding only `ADDRESS=` in networkd's format (before 1.20
  systemd's client wrote a full networkd lease there); its DHCPv6 client writes no file. With
  `dhcp=dhclient`, NetworkManager runs dhclient, whose `dhclient-*.lease` and
  `dhclient6-*.lease` are ISC dhclient lease files.
- The internal client cannot pass option 143 on: it reports only the options it knows
  (not 143 or 136) and the private ones (224-254, as `private_224` ...).
- The D-Bus `Options` of `org.freedesktop.NetworkManager.DHCP4Config` / `DHCP6Config` map
  names to strings. With the dhclient backend they are dhclient's script variables without
  `new_`: an option's dhclient name with `-` and `.` turned into `_` (`sztp_redirect` when
  declared as `sztp-redirect`, `unknown_143` when undeclared; `dhcp6_sztp_redirect`,
  `dhcp6_unknown_136`), its value as dhclient prints it unquoted: colon-separated hex, or
  the text itself when every byte is printable. NetworkManager's own keys give the lease's
  identity: `ip_address`, `subnet_mask`, `dhcp_server_identifier`, `expiry` (seconds since
  the epoch) and `dhcp_lease_time`; `ip6_address`, `dhcp6_server_id`, `starts` (seconds
  since the epoch). The dhclient variable names were checked by running dhclient (tests/e2e).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .dhclient import V4_OPTION_NAMES, V6_OPTION_NAMES
from .networkd import identity_offer
from .offer import (
    NETWORKMANAGER,
    LeaseOffer,
    address_field,
    colon_hex_bytes,
    duid_field,
    epoch_time,
    ipv4_network,
    obtained_before_expiry,
    option_code,
    read_uri_list,
    valid_interface_name,
)

NO_OPTION_IN_INTERNAL_CLIENT = (
    f"NetworkManager's internal DHCP client cannot pass option {option_code(4)} on (it keeps "
    "only the options it knows and private ones, 224-254); set dhcp=dhclient in "
    "NetworkManager.conf and declare the option as dhclient-sztp.conf does"
)
# `<client><6?>-<uuid>-<interface>.lease`; the interface may itself contain '-'.
LEASE_FILE_NAME = re.compile(
    r"(?P<client>internal|dhclient)(?P<six>6?)-"
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}-"
    r"(?P<interface>.+)\.lease"
)

_SERVICE = "org.freedesktop.NetworkManager"
_ROOT = "/org/freedesktop/NetworkManager"
_DEVICE = f"{_SERVICE}.Device"
_CONFIG_INTERFACE = {4: f"{_SERVICE}.DHCP4Config", 6: f"{_SERVICE}.DHCP6Config"}
_OBJECT_PATH = re.compile(r"/[A-Za-z0-9_/]{1,255}")
# A device has a few dozen interfaces at most; more answers than this are not believed.
DEVICES_MAX = 256
BUSCTL_TIMEOUT = 5.0
BUSCTL_OUTPUT_MAX = 1 << 20

# Runs busctl with these arguments; its standard output, or None if it failed.
BusctlRunner = Callable[[Sequence[str]], str | None]


def parse_internal_lease(text: str, *, interface: str, source: Path) -> LeaseOffer:
    """An internal client's lease file: its identity, and no URIs (it cannot have any)."""
    return identity_offer(
        text,
        interface=interface,
        source=source,
        client=NETWORKMANAGER,
        why=NO_OPTION_IN_INTERNAL_CLIENT,
    )


def option_keys(dhclient_names: Iterable[str]) -> frozenset[str]:
    """The D-Bus option keys NetworkManager gives options dhclient knows by these names."""
    return frozenset(name.replace(".", "_").replace("-", "_") for name in dhclient_names)


def parse_dhcp_options(
    options: Mapping[str, str],
    *,
    interface: str,
    family: int,
    source: Path,
    option_names: Iterable[str] | None = None,
) -> LeaseOffer:
    """An offer from a DHCP4Config / DHCP6Config `Options` map.

    `option_names` are the dhclient names option 143 / 136 may have (default: ours and
    dhclient's `unknown-` name for the family).
    """
    names = option_names or (V4_OPTION_NAMES if family == 4 else V6_OPTION_NAMES)
    problems: list[str] = []
    payload = b""
    uris: tuple[str, ...] = ()
    found = sorted(key for key in option_keys(names) if key in options)
    if found:
        value = options[found[0]]
        # dhclient prints a payload with an unprintable byte (every RFC 8572 one) as hex.
        hex_payload = colon_hex_bytes(value)
        payload = hex_payload if hex_payload is not None else value.encode("ascii", "replace")
        uris, option_problems = read_uri_list(payload, family)
        problems.extend(option_problems)
    else:
        problems.append(
            f"NetworkManager reports no option {option_code(family)}: its internal DHCP "
            "client cannot; with dhcp=dhclient, declare the option as dhclient-sztp.conf does"
        )
    if family == 4:
        address = address_field(options.get("ip_address"), 4, "leased address", problems)
        mask = options.get("subnet_mask")
        network = ipv4_network(address, mask) if address and mask else None
        server_id = address_field(
            options.get("dhcp_server_identifier"), 4, "server identifier", problems
        )
        obtained_at = obtained_before_expiry(
            epoch_time(options.get("expiry")), options.get("dhcp_lease_time")
        )
    else:
        address = address_field(options.get("ip6_address"), 6, "leased address", problems)
        network = None
        server_id = duid_field(options.get("dhcp6_server_id"), problems)
        obtained_at = epoch_time(options.get("starts"))
    return LeaseOffer(
        interface=interface,
        client=NETWORKMANAGER,
        family=family,
        uris=uris,
        payload=payload,
        server_id=server_id,
        address=address,
        network=network,
        source=source,
        obtained_at=obtained_at,
        problems=tuple(problems),
    )


def dbus_offers(
    run: BusctlRunner,
    *,
    v4_option_names: Iterable[str] = V4_OPTION_NAMES,
    v6_option_names: Iterable[str] = V6_OPTION_NAMES,
) -> list[LeaseOffer]:
    """An offer for every DHCP configuration of every NetworkManager device.

    Nothing at all (not an error) when busctl fails: NetworkManager is simply not running.
    """
    devices = _property(run, _ROOT, _SERVICE, "Devices", "ao")
    if not isinstance(devices, list):
        return []
    names = {4: tuple(v4_option_names), 6: tuple(v6_option_names)}
    offers: list[LeaseOffer] = []
    for device in devices[:DEVICES_MAX]:
        if not isinstance(device, str) or not _OBJECT_PATH.fullmatch(device):
            continue
        values = _properties(
            run, device, _DEVICE, ("IpInterface", "Interface", "Dhcp4Config", "Dhcp6Config")
        )
        if values is None:
            continue
        ip_interface, interface, *configs = values
        name = ip_interface or interface
        if not isinstance(name, str) or not valid_interface_name(name):
            continue
        for family, config in zip((4, 6), configs, strict=True):
            if not isinstance(config, str) or not _OBJECT_PATH.fullmatch(config):
                continue  # "/" means the device has no DHCP configuration of this family
            options = _property(run, config, _CONFIG_INTERFACE[family], "Options", "a{sv}")
            if isinstance(options, dict):
                strings = {
                    key: value["data"]
                    for key, value in options.items()
                    if isinstance(value, dict)
                    and value.get("type") == "s"
                    and isinstance(value.get("data"), str)
                }
                offers.append(
                    parse_dhcp_options(
                        strings,
                        interface=name,
                        family=family,
                        source=Path(config),
                        option_names=names[family],
                    )
                )
    return offers


def busctl_runner(executable: str) -> BusctlRunner:
    """Runs `executable` (busctl) on the system bus with JSON output, bounded in time and
    size; any failure is None."""

    def run(arguments: Sequence[str]) -> str | None:
        try:
            result = subprocess.run(  # noqa: S603 - a fixed program, arguments built here
                [executable, "--system", "--json=short", *arguments],
                capture_output=True,
                timeout=BUSCTL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if result.returncode != 0 or len(result.stdout) > BUSCTL_OUTPUT_MAX:
            return None
        return result.stdout.decode("utf-8", "replace")

    return run


def _property(run: BusctlRunner, path: str, interface: str, name: str, kind: str) -> Any:
    values = _properties(run, path, interface, (name,), kind)
    return values[0] if values else None


def _properties(
    run: BusctlRunner,
    path: str,
    interface: str,
    names: Sequence[str],
    kind: str | None = None,
) -> list[Any] | None:
    """The properties' values, one JSON document per line as busctl prints them; None if
    busctl failed or printed something else. `kind` checks every value's D-Bus type."""
    output = run(["get-property", _SERVICE, path, interface, *names])
    if output is None:
        return None
    lines = output.splitlines()
    if len(lines) != len(names):
        return None
    values = []
    for line in lines:
        try:
            document = json.loads(line)
        except ValueError:
            return None
        if not isinstance(document, dict) or "data" not in document:
            return None
        if kind is not None and document.get("type") != kind:
            return None
        values.append(document["data"])
    return values

"""systemd-networkd's DHCPv4 lease files (/run/systemd/netif/leases/<ifindex>), and the same
format in NetworkManager's internal client lease files.

Established from systemd's source (src/libsystemd-network/sd-dhcp-lease.c) and by running
networkd 252 (Debian 12) against Kea:

- networkd cannot store option 143. When it reads a lease it keeps the options it uses, and
  of all the others only those in the private range 224-254 (`OPTION_224=` ... in the file);
  any other option is dropped: networkd 252 logs "Ignoring DHCP option 143 while parsing."
  and writes no trace of it, even with `RequestOptions=143`, which only asks the server for
  it. So a device that needs option 143 must run a client that keeps it (dhclient with the
  agent's `dhclient-sztp.conf`).
- Released systemd (252 included) writes `KEY=VALUE` lines after a `# This is private
  data. Do not parse.` comment: `ADDRESS=`, `NETMASK=`, `SERVER_ADDRESS=` (the server
  identifier), `ROUTER=`, lifetimes in seconds, ... and no time the lease was obtained.
  systemd's development tree (2026) writes a JSON object instead (`"Address": [a, b, c, d]`,
  `"Netmask"` and `"Server_Address"` likewise, private options under `"Private_Options"`);
  both forms are read.
- networkd writes no lease file for DHCPv6.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .offer import (
    NETWORKD,
    LeaseOffer,
    address_field,
    ipv4_network,
    option_code,
)

NO_OPTION_IN_NETWORKD = (
    f"systemd-networkd cannot keep option {option_code(4)}: it stores only the options it "
    "uses and private ones (224-254); run dhclient with dhclient-sztp.conf to get the "
    "bootstrap servers"
)
_KEY = re.compile(r"[A-Z0-9_]{1,64}")
# The JSON form's nesting is shallow; deeper input is garbage and json's recursion is bounded.
_JSON_DEPTH_MAX = 16


@dataclass(frozen=True)
class LeaseIdentity:
    """What a networkd-format lease file says about where the lease came from."""

    address: str | None
    network: str | None
    server_id: str | None
    problems: tuple[str, ...]


def parse_networkd_lease(text: str, *, interface: str, source: Path) -> LeaseOffer:
    """The lease's identity and, as networkd cannot store option 143, no URIs."""
    return identity_offer(
        text, interface=interface, source=source, client=NETWORKD, why=NO_OPTION_IN_NETWORKD
    )


def identity_offer(text: str, *, interface: str, source: Path, client: str, why: str) -> LeaseOffer:
    """An offer of a networkd-format lease file: where the lease came from and no URIs,
    `why` naming the reason there can be none."""
    identity = read_lease_identity(text)
    return LeaseOffer(
        interface=interface,
        client=client,
        family=4,
        uris=(),
        payload=b"",
        server_id=identity.server_id,
        address=identity.address,
        network=identity.network,
        source=source,
        obtained_at=None,
        problems=(*identity.problems, why),
    )


def read_lease_identity(text: str) -> LeaseIdentity:
    """Address, network and server identifier from either form of the file."""
    if text.lstrip().startswith("{"):
        fields, problems = _json_fields(text)
    else:
        fields, problems = _key_value_fields(text), []
    address = address_field(fields.get("ADDRESS"), 4, "leased address", problems)
    netmask = address_field(fields.get("NETMASK"), 4, "netmask", problems)
    server_id = address_field(fields.get("SERVER_ADDRESS"), 4, "server identifier", problems)
    return LeaseIdentity(
        address=address,
        network=ipv4_network(address, netmask) if address and netmask else None,
        server_id=server_id,
        problems=tuple(problems),
    )


def _key_value_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition("=")
        if separator and _KEY.fullmatch(key):
            fields[key] = value.strip()
    return fields


# The JSON form's keys for the fields the KEY=VALUE form names.
_JSON_KEYS = {"Address": "ADDRESS", "Netmask": "NETMASK", "Server_Address": "SERVER_ADDRESS"}


def _json_fields(text: str) -> tuple[dict[str, str], list[str]]:
    """The JSON form's addresses (arrays of four octets) under the KEY=VALUE names."""
    if _nesting(text) > _JSON_DEPTH_MAX:
        return {}, [f"the JSON lease nests deeper than {_JSON_DEPTH_MAX}"]
    try:
        # The text starts with "{": whatever json accepts is an object.
        document: dict[str, Any] = json.loads(text)
    except ValueError as error:
        return {}, [f"the JSON lease is malformed: {error}"]
    fields: dict[str, str] = {}
    for json_key, key in _JSON_KEYS.items():
        octets = document.get(json_key)
        if octets is None:
            continue
        if (
            isinstance(octets, list)
            and len(octets) == 4
            and all(type(octet) is int and 0 <= octet <= 255 for octet in octets)
        ):
            fields[key] = str(ipaddress.IPv4Address(bytes(octets)))
        else:
            fields[key] = ascii(octets)[:64]
    return fields, []


def _nesting(text: str) -> int:
    """An upper bound on the JSON text's nesting depth (brackets inside strings count too)."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest

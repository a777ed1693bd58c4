"""ISC dhclient lease files (`dhclient -4` and `dhclient -6`, also run by NetworkManager's
dhclient backend), read into `LeaseOffer`s.

What dhclient 4.4 writes, as established by running it against Kea (tests/e2e) and from its
source (client/dhclient.c, common/options.c, common/print.c):

- A `lease { ... }` block per DHCPv4 lease and a `lease6 { ... }` block per DHCPv6 lease,
  appended as leases come and rewritten now and then; the last block for an interface is the
  current one.
- v4: `interface "eth0";`, `fixed-address A;`, `option NAME VALUE;` for every option the
  server sent, then `renew`, `rebind` and `expire` times: `W YYYY/MM/DD HH:MM:SS;` in UTC, or
  `epoch N; # ...` with `db-time-format local`, or `never;`. There is no start time; the
  lease was obtained at `expire` minus `option dhcp-lease-time`, as dhclient computes expiry.
- v6: `interface "eth0";`, `ia-na IAID { starts N; ... iaaddr A { ... } }` (N is seconds
  since the epoch), `option dhcp6.NAME VALUE;`.
- An option is named as declared in the configuration (`option sztp-redirect code 143 =
  string;` makes it `sztp-redirect`; in the DHCPv6 space `dhcp6.sztp-redirect`); an
  undeclared option the server sent anyway is `unknown-143` / `dhcp6.unknown-136`.
- A `string` option (and an undeclared one) is written as colon-separated hex octets without
  leading zeros (`0:16:68:...`) unless every byte is printable, then as a quoted string; a
  `text` option always as a quoted string with `\\ooo` escapes. An RFC 8572 payload starts
  with a zero length octet, so it is hex; a quoted value is usually the non-conformant plain
  URI form, which the RFC 8572 decoder then names as such.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from .isc_syntax import Statement, Word, parse_statements
from .offer import (
    DHCLIENT,
    LeaseOffer,
    address_field,
    colon_hex_bytes,
    duid_field,
    epoch_time,
    ipv4_network,
    number,
    obtained_before_expiry,
    option_code,
    problem_offer,
    read_uri_list,
    valid_interface_name,
    with_problems,
)

# The names our shipped snippets declare (agent/sztp_agent/data/), and dhclient's names for
# the options when nothing declares them.
V4_OPTION_NAMES = ("sztp-redirect", "unknown-143")
V6_OPTION_NAMES = ("dhcp6.sztp-redirect", "dhcp6.unknown-136")
_V6_SPACE = "dhcp6."
_TIME_FORMAT = "%Y/%m/%d %H:%M:%S"
_FILE_NAME = re.compile(
    r"dhclient(?P<six>6?)(?:[.-](?:[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}-)?"
    r"(?P<interface>.+?))?\.leases?"
)


def parse_dhclient_leases(
    text: str,
    *,
    source: Path,
    client: str = DHCLIENT,
    v4_option_names: Iterable[str] = V4_OPTION_NAMES,
    v6_option_names: Iterable[str] = V6_OPTION_NAMES,
) -> list[LeaseOffer]:
    """One offer per interface and family: the last `lease`/`lease6` block for it.

    `v4_option_names` / `v6_option_names` are the names option 143 / 136 may be written
    under (v6 names with their `dhcp6.` prefix). A problem with the file as a whole (a syntax
    error, a block naming no usable interface) is added to every offer from it.
    """
    parsed = parse_statements(text)
    file_problems = [parsed.problem] if parsed.problem else []
    names = {4: frozenset(v4_option_names), 6: frozenset(v6_option_names)}
    latest: dict[tuple[str, int], LeaseOffer] = {}
    for statement in parsed.statements:
        family = {"lease": 4, "lease6": 6}.get(statement.keyword)
        # Exactly `lease {`: ISC dhcpd's server leases are `lease ADDRESS {`.
        if family is None or statement.block is None or len(statement.words) != 1:
            continue
        interface = _interface(statement.block)
        if interface is None:
            file_problems.append(
                f"line {statement.line}: the lease block names no usable interface"
            )
            continue
        reader = _read_v4_lease if family == 4 else _read_v6_lease
        latest[(interface, family)] = reader(
            statement.block, interface, client, source, names[family]
        )
    offers = [with_problems(offer, *file_problems) for offer in latest.values()]
    if offers or not file_problems:
        return offers
    interface, family = file_name_hint(source)
    return [
        problem_offer(
            interface=interface,
            client=client,
            family=family,
            source=source,
            problems=tuple(file_problems),
        )
    ]


def declared_option_names(text: str) -> tuple[set[str], set[str]]:
    """The names a dhclient configuration declares for option 143 and for DHCPv6 option 136
    (`option NAME code 143 = TYPE;`), so leases written under them are recognised too."""
    v4: set[str] = set()
    v6: set[str] = set()
    for statement in parse_statements(text).statements:
        words = [word.text for word in statement.words]
        if len(words) >= 4 and words[0] == "option" and words[2] == "code":
            name, code = words[1], words[3]
            if name.startswith(_V6_SPACE) and code == str(option_code(6)):
                v6.add(name)
            elif "." not in name and code == str(option_code(4)):
                v4.add(name)
    return v4, v6


def file_name_hint(path: Path) -> tuple[str, int]:
    """The interface ("" if none) and family a dhclient lease file's name suggests:
    `dhclient6.eth0.leases` (Debian's ifupdown), `dhclient-eth0.leases` (Red Hat),
    `dhclient6-<uuid>-eth0.lease` (NetworkManager); `dhclient.leases` names no interface."""
    match = _FILE_NAME.fullmatch(path.name)
    if match is None:
        return "", 4
    interface = match.group("interface") or ""
    return (interface if valid_interface_name(interface) else ""), 6 if match.group("six") else 4


def _interface(block: tuple[Statement, ...]) -> str | None:
    for statement in block:
        if statement.keyword == "interface" and len(statement.words) == 2:
            name = statement.words[1].text
            if valid_interface_name(name):
                return name
    return None


def _options(block: tuple[Statement, ...]) -> dict[str, tuple[Word, ...]]:
    """The value words of each `option NAME ...;` (the last statement for a name wins)."""
    return {
        statement.words[1].text: statement.words[2:]
        for statement in block
        if statement.keyword == "option" and len(statement.words) >= 2 and statement.block is None
    }


def _argument(block: tuple[Statement, ...], keyword: str) -> str | None:
    """The single word after `keyword` in the last such simple statement."""
    found = [
        statement.words[1:]
        for statement in block
        if statement.keyword == keyword and statement.block is None
    ]
    return _single(found[-1]) if found else None


def _single(words: tuple[Word, ...] | None) -> str | None:
    return words[0].text if words is not None and len(words) == 1 else None


def _option_payload(
    options: dict[str, tuple[Word, ...]], names: frozenset[str], family: int
) -> tuple[bytes, tuple[str, ...], tuple[str, ...]]:
    """The option's bytes, its valid URIs and the problems found reading it."""
    code = option_code(family)
    found = sorted(name for name in names if name in options)
    if not found:
        return b"", (), (f"the lease carries no option {code}",)
    # Two names for one code only when a configuration declared it twice; any will do.
    name = found[0]
    words = options[name]
    if len(words) != 1:
        return b"", (), (f"option {code} ({name}) is not a single value",)
    word = words[0]
    payload = word.text.encode("latin-1") if word.quoted else colon_hex_bytes(word.text)
    if payload is None:
        return b"", (), (f"option {code} ({name}) is neither hex octets nor a quoted string",)
    uris, problems = read_uri_list(payload, family)
    return payload, uris, problems


def _read_v4_lease(
    block: tuple[Statement, ...],
    interface: str,
    client: str,
    source: Path,
    names: frozenset[str],
) -> LeaseOffer:
    options = _options(block)
    problems: list[str] = []
    address = address_field(_argument(block, "fixed-address"), 4, "leased address", problems)
    mask = _single(options.get("subnet-mask"))
    server_id = address_field(
        _single(options.get("dhcp-server-identifier")), 4, "server identifier", problems
    )
    payload, uris, option_problems = _option_payload(options, names, 4)
    return LeaseOffer(
        interface=interface,
        client=client,
        family=4,
        uris=uris,
        payload=payload,
        server_id=server_id,
        address=address,
        network=ipv4_network(address, mask) if address and mask else None,
        source=source,
        obtained_at=_v4_obtained_at(block, _single(options.get("dhcp-lease-time"))),
        problems=(*problems, *option_problems),
    )


def _read_v6_lease(
    block: tuple[Statement, ...],
    interface: str,
    client: str,
    source: Path,
    names: frozenset[str],
) -> LeaseOffer:
    options = _options(block)
    problems: list[str] = []
    # The device's own address is in an IA_NA (or IA_TA); an IA_PD prefix is delegated to
    # networks behind it. DHCPv6 conveys no prefix length for it, so no network either.
    identity_associations = [
        statement.block
        for statement in block
        if statement.keyword in ("ia-na", "ia-ta") and statement.block is not None
    ]
    address = None
    obtained_at = None
    if identity_associations:
        association = identity_associations[0]
        obtained_at = epoch_time(_argument(association, "starts"))
        addresses = [
            statement.words[1].text
            for statement in association
            if statement.keyword == "iaaddr" and len(statement.words) == 2
        ]
        if addresses:
            address = address_field(addresses[0], 6, "leased address", problems)
    server_id = duid_field(_single(options.get("dhcp6.server-id")), problems)
    if any(statement.keyword == "released" for statement in block):
        problems.append("dhclient released this lease")
    payload, uris, option_problems = _option_payload(options, names, 6)
    return LeaseOffer(
        interface=interface,
        client=client,
        family=6,
        uris=uris,
        payload=payload,
        server_id=server_id,
        address=address,
        network=None,
        source=source,
        obtained_at=obtained_at,
        problems=(*problems, *option_problems),
    )


def _v4_obtained_at(block: tuple[Statement, ...], lease_time: str | None) -> datetime | None:
    expire = [
        statement.words[1:]
        for statement in block
        if statement.keyword == "expire" and statement.block is None
    ]
    return obtained_before_expiry(_dhclient_time(expire[-1]) if expire else None, lease_time)


def _dhclient_time(words: tuple[Word, ...]) -> datetime | None:
    """A dhclient time: `W YYYY/MM/DD HH:MM:SS` (UTC) or `epoch N`; None for `never` or
    anything unreadable."""
    texts = [word.text for word in words]
    if len(texts) == 2 and texts[0] == "epoch":
        return epoch_time(texts[1])
    if len(texts) == 3 and number(texts[0]) is not None:
        try:
            return datetime.strptime(f"{texts[1]} {texts[2]}", _TIME_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return None
    return None

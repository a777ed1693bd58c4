"""The agent's DHCP lease discovery (agent/sztp_agent/discovery): every client's lease format
read into offers, and everything malformed, oversized or hostile turned into problems, never
into exceptions. Real clients write the fixtures below; tests/e2e/test_agent_leases_e2e.py
runs dhclient itself."""

from __future__ import annotations

import json
import os
import random
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sztp.protocol.dhcp import encode_uri_list
from sztp_agent.discovery import DEFAULT_LOCATIONS, LeaseLocations, LeaseOffer, find_offers
from sztp_agent.discovery.dhclient import (
    V4_OPTION_NAMES,
    V6_OPTION_NAMES,
    declared_option_names,
    file_name_hint,
    parse_dhclient_leases,
)
from sztp_agent.discovery.isc_syntax import (
    MAX_DEPTH,
    MAX_STATEMENTS,
    MAX_WORDS,
    parse_statements,
)
from sztp_agent.discovery.leases import LEASE_FILE_MAX, read_bounded
from sztp_agent.discovery.networkd import NO_OPTION_IN_NETWORKD, parse_networkd_lease
from sztp_agent.discovery.networkmanager import (
    NO_OPTION_IN_INTERNAL_CLIENT,
    BusctlRunner,
    busctl_runner,
    dbus_offers,
    parse_dhcp_options,
    parse_internal_lease,
)
from sztp_agent.discovery.offer import read_uri_list

SOURCE = Path("/var/lib/dhcp/dhclient.leases")
URIS_V4 = ("https://10.77.0.1:8443", "https://[fd00:77::1]:8443")
URIS_V6 = URIS_V4[::-1]
PAYLOAD_V4 = encode_uri_list(list(URIS_V4))
PAYLOAD_V6 = encode_uri_list(list(URIS_V6))
HEX_V4 = (
    "0:16:68:74:74:70:73:3a:2f:2f:31:30:2e:37:37:2e:30:2e:31:3a:38:34:34:33:0:19:68:74:74:70:"
    "73:3a:2f:2f:5b:66:64:30:30:3a:37:37:3a:3a:31:5d:3a:38:34:34:33"
)
HEX_V6 = (
    "0:19:68:74:74:70:73:3a:2f:2f:5b:66:64:30:30:3a:37:37:3a:3a:31:5d:3a:38:34:34:33:0:16:68:"
    "74:74:70:73:3a:2f:2f:31:30:2e:37:37:2e:30:2e:31:3a:38:34:34:33"
)
KEA_DUID = "00:01:00:01:32:a6:48:42:a6:d5:f0:6a:b7:98"
UUID = "0f6a4b2c-1111-2222-3333-444455556666"

# What ISC dhclient 4.4.3-P1 (Debian 12) wrote with agent/sztp_agent/data/dhclient-sztp.conf
# and dhclient6-sztp.conf against Kea 2.2 in the e2e lab (tests/e2e/test_agent_leases_e2e.py,
# kept with SZTP_E2E_KEEP=1), pasted unchanged.
REAL_DHCLIENT4 = """\
lease {
  interface "sztpd-12a837";
  fixed-address 10.77.0.100;
  option subnet-mask 255.255.255.0;
  option sztp-redirect 0:16:68:74:74:70:73:3a:2f:2f:31:30:2e:37:37:2e:30:2e:31:3a:38:34:34:33:0:19:68:74:74:70:73:3a:2f:2f:5b:66:64:30:30:3a:37:37:3a:3a:31:5d:3a:38:34:34:33;
  option dhcp-lease-time 600;
  option dhcp-message-type 5;
  option dhcp-server-identifier 10.77.0.1;
  option dhcp-renewal-time 300;
  option dhcp-rebinding-time 500;
  renew 6 2026/12/05 04:02:54;
  rebind 6 2026/12/05 04:06:15;
  expire 6 2026/12/05 04:07:55;
}
"""  # noqa: E501 - as dhclient wrote it
REAL_DHCLIENT6 = """\
default-duid "\\000\\001\\000\\0012\\246HC\\3268r\\373\\023\\250";
lease6 {
  interface "sztpd-12a837";
  ia-na 72:fb:13:a8 {
    starts 1796443076;
    renew 300;
    rebind 500;
    iaaddr fd00:77::100 {
      starts 1796443076;
      preferred-life 500;
      max-life 600;
    }
  }
  option dhcp6.client-id 0:1:0:1:32:a6:48:43:d6:38:72:fb:13:a8;
  option dhcp6.server-id 0:1:0:1:32:a6:48:42:a6:d5:f0:6a:b7:98;
  option dhcp6.sztp-redirect 0:19:68:74:74:70:73:3a:2f:2f:5b:66:64:30:30:3a:37:37:3a:3a:31:5d:3a:38:34:34:33:0:16:68:74:74:70:73:3a:2f:2f:31:30:2e:37:37:2e:30:2e:31:3a:38:34:34:33;
}
"""  # noqa: E501 - as dhclient wrote it
# What systemd-networkd 252 (Debian 12) wrote to /run/systemd/netif/leases/2 against the same
# Kea, which sent option 143 (and networkd logged "Ignoring DHCP option 143 while parsing.").
REAL_NETWORKD = """\
# This is private data. Do not parse.
ADDRESS=10.77.0.100
NETMASK=255.255.255.0
SERVER_ADDRESS=10.77.0.1
T1=300
T2=500
LIFETIME=600
HOSTNAME=vm
CLIENTID=ffff4c8e6d00020000ab110033bdebf95e192c
"""
# dhclient's script variables in the same run (`new_` cut off, as NetworkManager's dhclient
# backend publishes them on D-Bus).
REAL_DHCLIENT4_VARIABLES = {
    "network_number": "10.77.0.0",
    "ip_address": "10.77.0.100",
    "dhcp_message_type": "5",
    "sztp_redirect": HEX_V4,
    "expiry": "1796443675",
    "subnet_mask": "255.255.255.0",
    "dhcp_server_identifier": "10.77.0.1",
    "broadcast_address": "10.77.0.255",
    "dhcp_renewal_time": "300",
    "dhcp_rebinding_time": "500",
    "next_server": "0.0.0.0",  # noqa: S104 - an address dhclient reported, not a bind
    "dhcp_lease_time": "600",
}
REAL_DHCLIENT6_VARIABLES = {
    "renew": "300",
    "rebind": "500",
    "dhcp6_server_id": "0:1:0:1:32:a6:48:42:a6:d5:f0:6a:b7:98",
    "starts": "1796443076",
    "ip6_prefixlen": "128",
    "life_starts": "1796443076",
    "ip6_address": "fd00:77::100",
    "iaid": "72:fb:13:a8",
    "max_life": "600",
    "dhcp6_client_id": "0:1:0:1:32:a6:48:43:d6:38:72:fb:13:a8",
    "dhcp6_sztp_redirect": HEX_V6,
    "preferred_life": "500",
}


def v4_lease(interface: str = "eth0", *lines: str, option: str | None = None) -> str:
    """A dhclient v4 lease block shaped like REAL_DHCLIENT4, with extra `lines`."""
    body = [
        f'interface "{interface}";',
        "fixed-address 192.0.2.10;",
        "option subnet-mask 255.255.255.0;",
        f"option sztp-redirect {HEX_V4};" if option is None else option,
        "option dhcp-lease-time 600;",
        "option dhcp-server-identifier 192.0.2.1;",
        *lines,
        "expire 6 2026/12/05 04:07:55;",
    ]
    return "lease {\n" + "".join(f"  {line}\n" for line in body if line) + "}\n"


def only(offers: list[LeaseOffer]) -> LeaseOffer:
    assert len(offers) == 1, offers
    return offers[0]


def problems_of(offers: list[LeaseOffer]) -> str:
    return " | ".join(problem for offer in offers for problem in offer.problems)


# --------------------------------------------------------------------------- option payload


def test_payload_yields_its_uris_in_order() -> None:
    assert read_uri_list(PAYLOAD_V4, 4) == (URIS_V4, ())
    assert read_uri_list(PAYLOAD_V6, 6) == (URIS_V6, ())


def test_payload_drops_an_invalid_uri_and_keeps_the_others() -> None:
    with_path = b"https://b.example/restconf"
    payload = encode_uri_list(["https://a.example"]) + len(with_path).to_bytes(2, "big") + with_path
    uris, problems = read_uri_list(payload, 6)
    assert uris == ("https://a.example",)
    assert len(problems) == 1
    assert problems[0].startswith("option 136: dropped 'https://b.example/restconf' has a path")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "the payload is empty"),
        (b"\x00", "trailing byte at offset 0"),
        (b"\x00\x00", "zero-length URI entry"),
        (b"\x00\x30https://a.example", "truncated URI entry"),
        (b"https://a.example", "plain-text form"),
        (b"\x00\x03\xff\xfe\xfd", "non-ASCII byte 0xFF"),
        (bytes(70000), "70000 bytes, more than any DHCP option can"),
    ],
)
def test_unreadable_payload_is_a_problem(payload: bytes, expected: str) -> None:
    uris, problems = read_uri_list(payload, 4)
    assert uris == ()
    assert len(problems) == 1 and expected in problems[0], problems
    assert problems[0].startswith("option 143")


# --------------------------------------------------------------------------- ISC syntax


def test_quoted_strings_are_unescaped_byte_for_byte() -> None:
    parsed = parse_statements(r'default-duid "\000\001\0012\246H\"\\\x41\t\q";')
    assert parsed.problem is None
    word = parsed.statements[0].words[1]
    assert word.quoted
    assert word.text.encode("latin-1") == b'\x00\x01\x012\xa6H"\\A\tq'


def test_comments_lines_and_empty_statements() -> None:
    parsed = parse_statements(
        '# comment\n;\nexpire epoch 1796443675; # Sat Dec  5\n\nx "a\nb";\ny {\n ;\n z;\n}'
    )
    assert parsed.problem is None
    assert [[word.text for word in s.words] for s in parsed.statements] == [
        ["expire", "epoch", "1796443675"],
        ["x", "a\nb"],
        ["y"],
    ]
    assert [statement.line for statement in parsed.statements] == [3, 5, 7]
    block = parsed.statements[2].block
    assert block is not None and [statement.keyword for statement in block] == ["z"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a;\nb "never closed;\n', "line 2: a quoted string is never closed"),
        ("a;\nlease {\n  b;\n", "line 2: this block is never closed"),
        ("a;\n}\n", "line 2: '}' without a matching '{'"),
        ("a;\nb c", "line 2: the text ends inside this statement"),
        (
            "a;\n" + "x {" * (MAX_DEPTH + 1) + "}" * (MAX_DEPTH + 1),
            "line 2: blocks nest deeper than 8",
        ),
        ("a;\nb {" + "x;" * MAX_STATEMENTS + "}", f"line 2: more than {MAX_STATEMENTS} statements"),
        ("a;\nb" + " x" * MAX_WORDS + ";", f"line 2: a statement of more than {MAX_WORDS} words"),
    ],
)
def test_syntax_errors_stop_the_parse_and_keep_what_came_before(text: str, expected: str) -> None:
    parsed = parse_statements(text)
    assert parsed.problem == expected
    assert [statement.keyword for statement in parsed.statements] == ["a"]


# --------------------------------------------------------------------------- dhclient


def test_real_dhclient4_lease() -> None:
    offer = only(parse_dhclient_leases(REAL_DHCLIENT4, source=SOURCE))
    assert offer == LeaseOffer(
        interface="sztpd-12a837",
        client="dhclient",
        family=4,
        uris=URIS_V4,
        payload=PAYLOAD_V4,
        server_id="10.77.0.1",
        address="10.77.0.100",
        network="10.77.0.0/24",
        source=SOURCE,
        # expire less dhcp-lease-time: dhclient computes expiry as the ACK's time plus it.
        obtained_at=datetime(2026, 12, 5, 3, 57, 55, tzinfo=UTC),
        problems=(),
    )


def test_real_dhclient6_lease() -> None:
    source = Path("/var/lib/dhcp/dhclient6.leases")
    offer = only(parse_dhclient_leases(REAL_DHCLIENT6, source=source))
    assert offer == LeaseOffer(
        interface="sztpd-12a837",
        client="dhclient",
        family=6,
        uris=URIS_V6,
        payload=PAYLOAD_V6,
        server_id=KEA_DUID,
        address="fd00:77::100",
        network=None,
        source=source,
        obtained_at=datetime.fromtimestamp(1796443076, UTC),
        problems=(),
    )


def test_v4_and_v6_leases_in_one_file_give_one_offer_each() -> None:
    offers = parse_dhclient_leases(REAL_DHCLIENT4 + REAL_DHCLIENT6, source=SOURCE)
    assert [(offer.interface, offer.family) for offer in offers] == [
        ("sztpd-12a837", 4),
        ("sztpd-12a837", 6),
    ]


def test_the_last_lease_of_an_interface_wins() -> None:
    older = v4_lease("eth0").replace("192.0.2.10", "192.0.2.11")
    other = v4_lease("eth1")
    newer = v4_lease("eth0", option=f"option sztp-redirect {HEX_V6};")
    offers = parse_dhclient_leases(older + other + newer, source=SOURCE)
    assert [(offer.interface, offer.address, offer.uris) for offer in offers] == [
        ("eth0", "192.0.2.10", URIS_V6),
        ("eth1", "192.0.2.10", URIS_V4),
    ]


def test_undeclared_options_are_read_under_dhclients_numbered_names() -> None:
    v4 = v4_lease(option=f"option unknown-143 {HEX_V4};")
    v6 = REAL_DHCLIENT6.replace("dhcp6.sztp-redirect", "dhcp6.unknown-136")
    offers = parse_dhclient_leases(v4 + v6, source=SOURCE)
    assert [offer.uris for offer in offers] == [URIS_V4, URIS_V6]
    assert "unknown-143" in V4_OPTION_NAMES and "dhcp6.unknown-136" in V6_OPTION_NAMES


def test_a_name_the_configuration_declared_is_read_when_passed() -> None:
    text = v4_lease(option=f"option ztp-servers {HEX_V4};")
    assert only(parse_dhclient_leases(text, source=SOURCE)).uris == ()
    offer = only(parse_dhclient_leases(text, source=SOURCE, v4_option_names=["ztp-servers"]))
    assert offer.uris == URIS_V4


def test_declared_option_names_come_from_the_configuration() -> None:
    configuration = """
        option ztp-servers code 143 = string;   # ours
        option dhcp6.ztp code 136 = string;
        option dhcp6.other code 143 = string;
        option other code 136 = string;
        option broken code;
        also request ztp-servers;
    """
    assert declared_option_names(configuration) == ({"ztp-servers"}, {"dhcp6.ztp"})


def test_a_quoted_text_option_is_unescaped() -> None:
    # `option sztp-redirect code 143 = text;` makes dhclient write the payload quoted.
    quoted = "".join(
        chr(byte) if 0x20 < byte < 0x7F and chr(byte) not in '"\\' else f"\\{byte:03o}"
        for byte in PAYLOAD_V4
    )
    offer = only(
        parse_dhclient_leases(v4_lease(option=f'option sztp-redirect "{quoted}";'), source=SOURCE)
    )
    assert (offer.uris, offer.payload, offer.problems) == (URIS_V4, PAYLOAD_V4, ())


def test_the_plain_text_form_is_named_as_such() -> None:
    # A printable payload (the non-conformant plain URI) is what dhclient writes quoted.
    text = v4_lease(option='option sztp-redirect "https://10.77.0.1:8443";')
    offer = only(parse_dhclient_leases(text, source=SOURCE))
    assert offer.uris == ()
    assert offer.payload == b"https://10.77.0.1:8443"
    assert "plain-text form" in problems_of([offer])


def test_an_invalid_uri_is_dropped_and_named() -> None:
    payload = encode_uri_list([URIS_V4[0]]) + b"\x00\x13http://192.0.2.1:80"
    hex_text = payload.hex(":")
    offer = only(
        parse_dhclient_leases(v4_lease(option=f"option sztp-redirect {hex_text};"), source=SOURCE)
    )
    assert offer.uris == (URIS_V4[0],)
    assert offer.payload == payload
    assert "uses scheme 'http'" in problems_of([offer])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("", "the lease carries no option 143"),
        ("option sztp-redirect 0:16:zz;", "neither hex octets nor a quoted string"),
        ("option sztp-redirect 0:16 0:17;", "is not a single value"),
        ("option sztp-redirect 0:5:68;", "truncated URI entry"),
        ("option sztp-redirect 123:4;", "neither hex octets nor a quoted string"),
    ],
)
def test_a_missing_or_unreadable_option_is_a_problem(option: str, expected: str) -> None:
    offer = only(parse_dhclient_leases(v4_lease(option=option), source=SOURCE))
    assert offer.uris == ()
    assert expected in problems_of([offer])
    assert (offer.address, offer.server_id) == ("192.0.2.10", "192.0.2.1")


def test_bad_identity_fields_are_problems() -> None:
    text = (
        v4_lease()
        .replace("192.0.2.10", "fd00::1")
        .replace("option dhcp-server-identifier 192.0.2.1", "option dhcp-server-identifier x")
    )
    offer = only(parse_dhclient_leases(text, source=SOURCE))
    assert (offer.address, offer.server_id, offer.network) == (None, None, None)
    assert offer.uris == URIS_V4
    assert "the leased address 'fd00::1' is not an IPv4 address" in offer.problems
    assert "the server identifier 'x' is not an IPv4 address" in offer.problems


@pytest.mark.parametrize(
    ("expire", "lease_time", "obtained"),
    [
        (
            "epoch 1796443675; # Sat Dec  5 04:07:55 2026",
            "600",
            datetime.fromtimestamp(1796443075, UTC),
        ),
        ("never;", "600", None),
        ("6 2026/13/45 04:07:55;", "600", None),
        ("6 2026/12/05 04:07:55;", "²", None),
        ("6 2026/12/05 04:07:55;", "99999999999", None),
        ("epoch 999999999999;", "600", None),
        ("someday;", "600", None),
    ],
)
def test_lease_times(expire: str, lease_time: str, obtained: datetime | None) -> None:
    text = v4_lease().replace("expire 6 2026/12/05 04:07:55;", f"expire {expire}")
    text = text.replace("dhcp-lease-time 600", f"dhcp-lease-time {lease_time}")
    assert only(parse_dhclient_leases(text, source=SOURCE)).obtained_at == obtained


def test_a_released_v6_lease_says_so() -> None:
    text = REAL_DHCLIENT6.replace(
        "  option dhcp6.client-id", "  released;\n  option dhcp6.client-id"
    )
    offer = only(parse_dhclient_leases(text, source=SOURCE))
    assert "dhclient released this lease" in offer.problems
    assert offer.uris == URIS_V6


def test_a_v6_lease_without_address_or_server() -> None:
    text = 'lease6 {\n  interface "eth0";\n  option dhcp6.server-id 0:zz;\n}\n'
    offer = only(parse_dhclient_leases(text, source=SOURCE))
    assert (offer.family, offer.address, offer.server_id, offer.obtained_at) == (
        6,
        None,
        None,
        None,
    )
    assert "the server DUID '0:zz' is not hex octets" in offer.problems
    assert "the lease carries no option 136" in offer.problems


def test_a_truncated_last_lease_leaves_the_earlier_ones_with_a_problem() -> None:
    truncated = REAL_DHCLIENT4[: REAL_DHCLIENT4.index("option dhcp-lease-time")]
    offer = only(parse_dhclient_leases(v4_lease("eth0") + truncated, source=SOURCE))
    assert offer.interface == "eth0"
    assert offer.uris == URIS_V4
    assert offer.problems == ("line 10: this block is never closed",)


@pytest.mark.parametrize(
    "interface", ["", "a-name-longer-than-15", "eth 0", "eth/0", "eth:0", "é", "\\001"]
)
def test_a_lease_without_a_usable_interface_is_a_problem(interface: str) -> None:
    source = Path("/var/lib/dhcp/dhclient6.leases")
    offer = only(parse_dhclient_leases(v4_lease(interface), source=source))
    assert (offer.interface, offer.family, offer.uris) == ("", 6, ())
    assert offer.problems == ("line 1: the lease block names no usable interface",)


def test_no_leases_no_offers() -> None:
    assert parse_dhclient_leases("", source=SOURCE) == []
    assert parse_dhclient_leases('default-duid "\\000";\n', source=SOURCE) == []


def test_a_dhcp_servers_lease_file_is_no_client_lease() -> None:
    # ISC dhcpd's own leases are `lease ADDRESS { ... }`; dhclient's are `lease { ... }`.
    text = "lease 192.0.2.1 {\n  starts 1 2026/01/01 00:00:00;\n}\n"
    assert parse_dhclient_leases(text, source=SOURCE) == []


@pytest.mark.parametrize("seed", range(40))
def test_garbage_never_raises(seed: int) -> None:
    """Random corruptions of real leases (bytes dropped, swapped, inserted) and random bytes."""
    generator = random.Random(seed)  # noqa: S311 - reproducible fuzzing
    text = list(REAL_DHCLIENT4 + REAL_DHCLIENT6)
    for _ in range(generator.randint(1, 30)):
        position = generator.randrange(len(text))
        action = generator.choice(("drop", "insert", "replace"))
        character = chr(generator.randrange(256))
        if action == "drop":
            del text[position]
        elif action == "insert":
            text.insert(position, character)
        else:
            text[position] = character
    noise = "".join(chr(generator.randrange(256)) for _ in range(generator.randint(0, 400)))
    for sample in ("".join(text), noise, "lease {" * 50, '"' + noise):
        for offer in parse_dhclient_leases(sample, source=SOURCE):
            assert offer.family in (4, 6)
            assert all(isinstance(problem, str) for problem in offer.problems)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("dhclient.leases", ("", 4)),
        ("dhclient6.leases", ("", 6)),
        ("dhclient.eth0.leases", ("eth0", 4)),
        ("dhclient6.eth0.leases", ("eth0", 6)),
        ("dhclient-eth0.leases", ("eth0", 4)),
        (f"dhclient6-{UUID}-br-lan.lease", ("br-lan", 6)),
        ("dhclient-a-name-longer-than-15.leases", ("", 4)),
        ("dhcpd.leases", ("", 4)),
    ],
)
def test_file_name_hint(name: str, hint: tuple[str, int]) -> None:
    assert file_name_hint(Path(name)) == hint


# --------------------------------------------------------------------------- systemd-networkd


def test_real_networkd_lease_has_its_identity_and_no_uris() -> None:
    source = Path("/run/systemd/netif/leases/2")
    offer = parse_networkd_lease(REAL_NETWORKD, interface="eth0", source=source)
    assert offer == LeaseOffer(
        interface="eth0",
        client="systemd-networkd",
        family=4,
        uris=(),
        payload=b"",
        server_id="10.77.0.1",
        address="10.77.0.100",
        network="10.77.0.0/24",
        source=source,
        obtained_at=None,
        problems=(NO_OPTION_IN_NETWORKD,),
    )
    assert "224-254" in NO_OPTION_IN_NETWORKD and "dhclient" in NO_OPTION_IN_NETWORKD


def test_networkd_json_lease() -> None:
    # systemd's development tree writes the lease as JSON, addresses as arrays of octets.
    text = json.dumps(
        {
            "Address": [10, 77, 0, 100],
            "Netmask": [255, 255, 255, 0],
            "Server_Address": [10, 77, 0, 1],
            "Private_Options": [{"Option": 224, "Data": "00"}],
        }
    )
    offer = parse_networkd_lease(text, interface="eth0", source=Path("2"))
    assert (offer.address, offer.network, offer.server_id) == (
        "10.77.0.100",
        "10.77.0.0/24",
        "10.77.0.1",
    )
    assert offer.problems == (NO_OPTION_IN_NETWORKD,)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ADDRESS=10.0.0.300\nNETMASK=255.255.255.0\n",
            "the leased address '10.0.0.300' is not an IPv4 address",
        ),
        (
            "ADDRESS=10.0.0.3\nSERVER_ADDRESS=fd00::1\n",
            "the server identifier 'fd00::1' is not an IPv4 address",
        ),
        (
            '{"Address": [10, 0, 0], "Server_Address": "x"}',
            "the leased address '[10, 0, 0]' is not an IPv4 address",
        ),
        ('{"Address": [10, 0, 0, true]}', "is not an IPv4 address"),
        ("{ not json", "the JSON lease is malformed"),
        ('{"Address": 1} trailing', "the JSON lease is malformed"),
        ("{" + "[" * 40 + "]" * 40 + "}", "the JSON lease nests deeper than 16"),
    ],
)
def test_bad_networkd_leases_are_problems(text: str, expected: str) -> None:
    offer = parse_networkd_lease(text, interface="eth0", source=Path("2"))
    assert offer.uris == ()
    assert any(expected in problem for problem in offer.problems), offer.problems
    assert offer.problems[-1] == NO_OPTION_IN_NETWORKD


def test_networkd_garbage_never_raises() -> None:
    generator = random.Random(7)  # noqa: S311 - reproducible fuzzing
    for _ in range(200):
        noise = "".join(chr(generator.randrange(256)) for _ in range(generator.randint(0, 200)))
        for text in (noise, "{" + noise, "ADDRESS=" + noise):
            assert parse_networkd_lease(text, interface="eth0", source=Path("2")).uris == ()


# --------------------------------------------------------------------------- NetworkManager


def test_networkmanager_internal_lease_holds_only_the_address() -> None:
    # What nettools-based NetworkManager (1.20 and later) writes.
    text = "# This is private data. Do not parse.\nADDRESS=192.0.2.10\n"
    source = Path(f"/var/lib/NetworkManager/internal-{UUID}-eth0.lease")
    offer = parse_internal_lease(text, interface="eth0", source=source)
    assert (offer.client, offer.family, offer.address, offer.network, offer.server_id) == (
        "NetworkManager",
        4,
        "192.0.2.10",
        None,
        None,
    )
    assert offer.uris == ()
    assert offer.problems == (NO_OPTION_IN_INTERNAL_CLIENT,)
    # Older NetworkManager wrote networkd's full format there: its identity is read too.
    older = parse_internal_lease(REAL_NETWORKD, interface="eth0", source=source)
    assert (older.server_id, older.network) == ("10.77.0.1", "10.77.0.0/24")


def test_dhcp4config_options_of_the_dhclient_backend() -> None:
    source = Path("/org/freedesktop/NetworkManager/DHCP4Config/3")
    offer = parse_dhcp_options(REAL_DHCLIENT4_VARIABLES, interface="eth0", family=4, source=source)
    assert offer == LeaseOffer(
        interface="eth0",
        client="NetworkManager",
        family=4,
        uris=URIS_V4,
        payload=PAYLOAD_V4,
        server_id="10.77.0.1",
        address="10.77.0.100",
        network="10.77.0.0/24",
        source=source,
        obtained_at=datetime.fromtimestamp(1796443675 - 600, UTC),
        problems=(),
    )


def test_dhcp6config_options_of_the_dhclient_backend() -> None:
    source = Path("/org/freedesktop/NetworkManager/DHCP6Config/3")
    offer = parse_dhcp_options(REAL_DHCLIENT6_VARIABLES, interface="eth0", family=6, source=source)
    assert (offer.uris, offer.payload, offer.server_id, offer.address, offer.problems) == (
        URIS_V6,
        PAYLOAD_V6,
        KEA_DUID,
        "fd00:77::100",
        (),
    )
    assert offer.obtained_at == datetime.fromtimestamp(1796443076, UTC)


def test_dhcp_options_under_other_names() -> None:
    undeclared = {"unknown_143": HEX_V4, "ip_address": "192.0.2.10"}
    assert parse_dhcp_options(undeclared, interface="e", family=4, source=SOURCE).uris == URIS_V4
    declared = {"ztp_servers": HEX_V4}
    offer = parse_dhcp_options(
        declared, interface="e", family=4, source=SOURCE, option_names=["ztp-servers"]
    )
    assert offer.uris == URIS_V4
    legacy = {"sztp_redirect": "https://10.77.0.1:8443"}
    offer = parse_dhcp_options(legacy, interface="e", family=4, source=SOURCE)
    assert offer.payload == b"https://10.77.0.1:8443"
    assert "plain-text form" in problems_of([offer])


def test_internal_client_options_carry_no_option() -> None:
    # What the internal client publishes: its own keys only, never option 143.
    options = {
        "ip_address": "192.0.2.10",
        "subnet_mask": "255.255.255.0",
        "dhcp_server_identifier": "192.0.2.1",
        "expiry": "not a number",
        "dhcp_lease_time": "600",
        "private_224": "01:02",
    }
    offer = parse_dhcp_options(options, interface="eth0", family=4, source=SOURCE)
    assert (offer.uris, offer.network, offer.server_id, offer.obtained_at) == (
        (),
        "192.0.2.0/24",
        "192.0.2.1",
        None,
    )
    assert offer.problems[0].startswith("NetworkManager reports no option 143")
    bad = parse_dhcp_options(
        {"ip6_address": "10.0.0.1", "dhcp6_server_id": "x"}, interface="e", family=6, source=SOURCE
    )
    assert "the leased address '10.0.0.1' is not an IPv6 address" in bad.problems
    assert "the server DUID 'x' is not hex octets" in bad.problems


def busctl_answers(properties: dict[tuple[str, str], dict[str, object]]) -> BusctlRunner:
    """A BusctlRunner answering `get-property` from `properties[(path, property)]`."""

    def run(arguments: Sequence[str]) -> str | None:
        assert list(arguments[:2]) == ["get-property", "org.freedesktop.NetworkManager"]
        path, names = arguments[2], arguments[4:]
        found = [properties.get((path, name)) for name in names]
        if any(value is None for value in found):
            return None
        return "".join(json.dumps(value) + "\n" for value in found)

    return run


def networkmanager_bus(options: object) -> dict[tuple[str, str], dict[str, object]]:
    """NetworkManager's devices: eth0 with DHCPv4 and DHCPv6, lo with neither, and one gone."""
    root = "/org/freedesktop/NetworkManager"
    ethernet, loopback = f"{root}/Devices/1", f"{root}/Devices/2"
    # Devices/3 has vanished (busctl fails on it); the last two are no object paths.
    devices = [ethernet, loopback, f"{root}/Devices/3", "not a path", 7]
    return {
        (root, "Devices"): {"type": "ao", "data": devices},
        (ethernet, "IpInterface"): {"type": "s", "data": "eth0"},
        (ethernet, "Interface"): {"type": "s", "data": "eth0"},
        (ethernet, "Dhcp4Config"): {"type": "o", "data": f"{root}/DHCP4Config/4"},
        (ethernet, "Dhcp6Config"): {"type": "o", "data": f"{root}/DHCP6Config/5"},
        (loopback, "IpInterface"): {"type": "s", "data": ""},
        (loopback, "Interface"): {"type": "s", "data": "lo"},
        (loopback, "Dhcp4Config"): {"type": "o", "data": "/"},
        (loopback, "Dhcp6Config"): {"type": "o", "data": "/"},
        (f"{root}/DHCP4Config/4", "Options"): {"type": "a{sv}", "data": options},
        (f"{root}/DHCP6Config/5", "Options"): {
            "type": "a{sv}",
            "data": {
                key: {"type": "s", "data": value} for key, value in REAL_DHCLIENT6_VARIABLES.items()
            },
        },
    }


def test_dbus_offers_from_networkmanager() -> None:
    options: dict[str, object] = {
        key: {"type": "s", "data": value} for key, value in REAL_DHCLIENT4_VARIABLES.items()
    }
    options["weird"] = {"type": "u", "data": 5}
    run = busctl_answers(networkmanager_bus(options))
    offers = dbus_offers(run)
    assert [(o.interface, o.family, o.uris, o.source.name) for o in offers] == [
        ("eth0", 4, URIS_V4, "4"),
        ("eth0", 6, URIS_V6, "5"),
    ]
    assert all(offer.client == "NetworkManager" and offer.problems == () for offer in offers)


@pytest.mark.parametrize(
    "change",
    [
        {("/org/freedesktop/NetworkManager", "Devices"): {"type": "s", "data": "x"}},
        {("/org/freedesktop/NetworkManager", "Devices"): {"data": 1}},
        {
            ("/org/freedesktop/NetworkManager/Devices/1", "IpInterface"): {"type": "s", "data": ""},
            ("/org/freedesktop/NetworkManager/Devices/1", "Interface"): {"type": "s", "data": 3},
        },
        {
            ("/org/freedesktop/NetworkManager/Devices/1", "IpInterface"): {
                "type": "s",
                "data": "a b",
            }
        },
        {
            ("/org/freedesktop/NetworkManager/DHCP4Config/4", "Options"): {
                "type": "a{sv}",
                "data": [],
            }
        },
    ],
)
def test_dbus_answers_of_the_wrong_shape_are_skipped(
    change: dict[tuple[str, str], dict[str, object]],
) -> None:
    properties = {**networkmanager_bus({}), **change}
    offers = dbus_offers(busctl_answers(properties))
    assert all(offer.family == 6 for offer in offers)


def test_no_networkmanager_no_dbus_offers() -> None:
    assert dbus_offers(lambda arguments: None) == []
    assert dbus_offers(lambda arguments: "not json\n") == []
    assert dbus_offers(lambda arguments: '{"type":"ao","data":[]}\n{"extra":1}\n') == []
    assert dbus_offers(lambda arguments: "[1]\n") == []


def fake_busctl(directory: Path, body: str) -> Path:
    script = directory / "busctl"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def test_busctl_runner_runs_the_command(tmp_path: Path) -> None:
    script = fake_busctl(tmp_path, 'echo "$@"\n')
    assert busctl_runner(str(script))(["get-property", "a"]) == (
        "--system --json=short get-property a\n"
    )
    assert busctl_runner(str(fake_busctl(tmp_path, "exit 1\n")))(["x"]) is None
    assert busctl_runner(str(tmp_path / "missing"))(["x"]) is None
    huge = fake_busctl(tmp_path, "head -c 2000000 /dev/zero\n")
    assert busctl_runner(str(huge))(["x"]) is None


# --------------------------------------------------------------------------- find_offers


def locations(tmp_path: Path, busctl: str | None = None) -> LeaseLocations:
    """Every location under `tmp_path`, none of them there yet; D-Bus left alone unless a
    `busctl` is given."""
    return LeaseLocations(
        dhclient=(tmp_path / "var/lib/dhcp", tmp_path / "var/lib/dhclient"),
        dhclient_configs=(tmp_path / "etc/dhcp",),
        networkd=tmp_path / "run/systemd/netif/leases",
        networkmanager=(tmp_path / "run/NetworkManager", tmp_path / "var/lib/NetworkManager"),
        busctl=busctl,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="latin-1")
    return path


def test_default_locations() -> None:
    assert DEFAULT_LOCATIONS.dhclient == (Path("/var/lib/dhcp"), Path("/var/lib/dhclient"))
    assert DEFAULT_LOCATIONS.networkd == Path("/run/systemd/netif/leases")
    assert Path("/var/lib/NetworkManager") in DEFAULT_LOCATIONS.networkmanager
    assert Path("/etc/dhcp") in DEFAULT_LOCATIONS.dhclient_configs
    assert DEFAULT_LOCATIONS.busctl == "busctl"


def test_nothing_there_no_offers(tmp_path: Path) -> None:
    assert find_offers(locations(tmp_path)) == []
    assert find_offers(locations(tmp_path, busctl="no-such-busctl-anywhere")) == []


def test_find_offers_reads_every_client_in_order(tmp_path: Path) -> None:
    roots = locations(tmp_path)
    dhcp = tmp_path / "var/lib/dhcp"
    write(dhcp / "dhclient.leases", v4_lease("eth1") + v4_lease("eth0"))
    write(dhcp / "dhclient6.eth0.leases", REAL_DHCLIENT6.replace("sztpd-12a837", "eth0"))
    write(dhcp / "dhcpd.leases", "lease 192.0.2.1 {\n}\n")  # a DHCP server's, not read
    write(tmp_path / "var/lib/dhclient/dhclient-eth0.leases", v4_lease("eth0", option=""))
    # networkd names its files after interface indexes; 1 is the loopback's everywhere.
    write(roots.networkd / "1", REAL_NETWORKD)
    nm = tmp_path / "var/lib/NetworkManager"
    write(nm / f"internal-{UUID}-eth2.lease", "ADDRESS=192.0.2.20\n")
    write(nm / f"dhclient-{UUID}-eth3.lease", v4_lease("eth3"))
    write(nm / "timestamps", "[timestamps]\n")
    offers = find_offers(roots)
    assert [(o.interface, o.family, o.client, o.source.name) for o in offers] == [
        ("eth0", 4, "dhclient", "dhclient-eth0.leases"),
        ("eth0", 4, "dhclient", "dhclient.leases"),
        ("eth0", 6, "dhclient", "dhclient6.eth0.leases"),
        ("eth1", 4, "dhclient", "dhclient.leases"),
        ("eth2", 4, "NetworkManager", f"internal-{UUID}-eth2.lease"),
        ("eth3", 4, "NetworkManager", f"dhclient-{UUID}-eth3.lease"),
        ("lo", 4, "systemd-networkd", "1"),
    ]
    assert [offer.uris for offer in offers] == [(), URIS_V4, URIS_V6, URIS_V4, (), URIS_V4, ()]
    chosen = find_offers(roots, interfaces=["eth0", "lo"])
    assert [(o.interface, o.family) for o in chosen] == [
        ("eth0", 4),
        ("eth0", 4),
        ("eth0", 6),
        ("lo", 4),
    ]
    assert [o.interface for o in find_offers(roots, interfaces="eth1")] == ["eth1"]


def test_newer_leases_come_first(tmp_path: Path) -> None:
    roots = locations(tmp_path)
    dhcp = tmp_path / "var/lib/dhcp"
    write(dhcp / "dhclient-a.leases", v4_lease("eth0").replace("2026/12/05", "2026/12/01"))
    write(dhcp / "dhclient-b.leases", v4_lease("eth0"))
    write(dhcp / "dhclient-c.leases", v4_lease("eth0").replace("expire 6 2026/12/05 04:07:55;", ""))
    assert [o.source.name for o in find_offers(roots)] == [
        "dhclient-b.leases",
        "dhclient-a.leases",
        "dhclient-c.leases",
    ]


def test_names_declared_in_dhclient_configuration_are_read(tmp_path: Path) -> None:
    roots = locations(tmp_path)
    write(tmp_path / "etc/dhcp/dhclient.conf", "option ztp-servers code 143 = string;\n")
    write(tmp_path / "etc/dhcp/dhclient.conf.bak", "option ignored code 143 = string;\n")
    write(
        tmp_path / "var/lib/dhcp/dhclient.leases", v4_lease(option=f"option ztp-servers {HEX_V4};")
    )
    assert only(find_offers(roots)).uris == URIS_V4


def test_a_networkd_lease_of_a_missing_interface(tmp_path: Path) -> None:
    roots = locations(tmp_path)
    write(roots.networkd / "999999", REAL_NETWORKD)
    write(roots.networkd / "99999999999999999999", REAL_NETWORKD)
    offers = find_offers(roots)
    assert [offer.interface for offer in offers] == ["", ""]
    assert "no interface has index 999999" in problems_of(offers)
    assert "is not an interface index" in problems_of(offers)


def test_oversized_and_odd_files_are_skipped_with_a_problem(tmp_path: Path) -> None:
    roots = locations(tmp_path)
    dhcp = tmp_path / "var/lib/dhcp"
    big = write(dhcp / "dhclient.eth0.leases", v4_lease("eth0"))
    with big.open("a") as handle:
        handle.write("#" * LEASE_FILE_MAX)
    os.mkfifo(dhcp / "dhclient6.eth1.leases")
    (dhcp / "dhclient-eth2.leases").mkdir()
    write(tmp_path / "run/NetworkManager" / f"internal-{UUID}-eth3.lease", "\x00garbage")
    (tmp_path / "run/NetworkManager" / f"internal-{UUID}-eth4.lease").mkdir()
    write(tmp_path / "run/NetworkManager" / "not-a-lease-of-ours.lease", v4_lease("eth5"))
    (roots.networkd / "1").mkdir(parents=True)
    (tmp_path / "etc/dhcp/dhclient-odd.conf").mkdir(parents=True)
    offers = find_offers(roots)
    assert [(o.interface, o.family, o.client, o.uris) for o in offers] == [
        ("eth0", 4, "dhclient", ()),
        ("eth1", 6, "dhclient", ()),
        ("eth2", 4, "dhclient", ()),
        ("eth3", 4, "NetworkManager", ()),
        ("eth4", 4, "NetworkManager", ()),
        ("lo", 4, "systemd-networkd", ()),
    ]
    assert offers[4].problems == offers[5].problems == offers[1].problems
    assert f"over the {LEASE_FILE_MAX}-byte limit; it was skipped" in offers[0].problems[0]
    assert offers[1].problems == ("the lease file is not a regular file; it was skipped",)
    assert offers[2].problems == ("the lease file is not a regular file; it was skipped",)


def test_read_bounded_knows_no_size_in_advance(monkeypatch: pytest.MonkeyPatch) -> None:
    # procfs files claim to be empty: the limit holds while reading, not only by their size.
    monkeypatch.setattr("sztp_agent.discovery.leases.LEASE_FILE_MAX", 10)
    assert read_bounded(Path("/proc/self/status")) == (
        None,
        "grew over the 10-byte limit while it was read",
    )
    # A regular file that fails to read.
    assert read_bounded(Path("/proc/self/mem")) == (None, "cannot be read: Input/output error")


def test_a_directory_that_cannot_be_listed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def failing_glob(self: Path, pattern: str) -> list[Path]:
        raise OSError(5, "Input/output error")

    write(tmp_path / "var/lib/dhcp/dhclient.leases", v4_lease())
    monkeypatch.setattr(Path, "glob", failing_glob)
    assert find_offers(locations(tmp_path)) == []


def test_read_bounded(tmp_path: Path) -> None:
    exact = write(tmp_path / "exact", "")
    exact.write_bytes(b"\xff" * LEASE_FILE_MAX)
    text, problem = read_bounded(exact)
    assert problem is None and text is not None and len(text) == LEASE_FILE_MAX
    assert read_bounded(tmp_path / "missing") == (
        None,
        "cannot be opened: No such file or directory",
    )
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path / "locked", "x")
        locked.chmod(0)
        assert read_bounded(locked)[0] is None
        locked.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_dbus_offers_join_the_files(tmp_path: Path) -> None:
    # busctl's arguments: --system --json=short get-property SERVICE PATH INTERFACE NAME...;
    # this one answers from a file named after the first property asked for.
    answers = tmp_path / "answers"
    root = "/org/freedesktop/NetworkManager"
    replies: dict[str, list[dict[str, object]]] = {
        "Devices": [{"type": "ao", "data": [f"{root}/Devices/2"]}],
        "IpInterface": [
            {"type": "s", "data": "eth9"},
            {"type": "s", "data": "eth9"},
            {"type": "o", "data": f"{root}/DHCP4Config/1"},
            {"type": "o", "data": "/"},
        ],
        "Options": [{"type": "a{sv}", "data": {"sztp_redirect": {"type": "s", "data": HEX_V4}}}],
    }
    for name, lines in replies.items():
        write(answers / name, "".join(json.dumps(line) + "\n" for line in lines))
    script = fake_busctl(tmp_path, f'exec cat "{answers}/$7"\n')
    roots = locations(tmp_path, busctl=str(script))
    write(tmp_path / "var/lib/dhcp/dhclient.leases", v4_lease("eth0"))
    offers = find_offers(roots)
    assert [(o.interface, o.client, o.uris) for o in offers] == [
        ("eth0", "dhclient", URIS_V4),
        ("eth9", "NetworkManager", URIS_V4),
    ]
    assert offers[1].source == Path(f"{root}/DHCP4Config/1")


# --------------------------------------------------------------------------- shipped snippets


@pytest.mark.parametrize(
    ("name", "declared"),
    [
        ("dhclient-sztp.conf", ({"sztp-redirect"}, set())),
        ("dhclient6-sztp.conf", (set(), {"dhcp6.sztp-redirect"})),
    ],
)
def test_shipped_snippets_declare_the_names_the_agent_reads(
    name: str, declared: tuple[set[str], set[str]]
) -> None:
    from importlib import resources

    text = (resources.files("sztp_agent") / "data" / name).read_text()
    assert declared_option_names(text) == declared
    assert declared[0] <= set(V4_OPTION_NAMES) and declared[1] <= set(V6_OPTION_NAMES)
    requested = [s for s in parse_statements(text).statements if s.keyword == "also"]
    assert [[word.text for word in s.words] for s in requested] == [
        ["also", "request", *declared[0], *declared[1]]
    ]

"""DNS discovery records (RFC 8572 §4.2): what an operator publishes, what a device makes of an
answer, and BIND's own tools reading the rendered zone."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from sztp.errors import ValidationError
from sztp.protocol.dns_records import (
    MAX_CHARACTER_STRING,
    MAX_RDATA,
    MAX_TCP_MESSAGE,
    SrvRecord,
    TxtRdata,
    bootstrap_srv,
    device_txt,
    order_srv,
    parse_device_txt,
    render_nsupdate,
    render_zone_fragment,
    serial_label,
    srv_uris,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS_PAGE = ROOT / "docs" / "dns-discovery.md"
# Random bytes of the sizes a signed device's artifacts have.
SIGNED_SIZES = {"conveyed_information": 6144, "owner_certificate": 1800, "ownership_voucher": 2500}


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - reproducible draws


def signed_artifacts(seed: int) -> dict[str, bytes]:
    rng = seeded(seed)
    return {name: rng.randbytes(size) for name, size in SIGNED_SIZES.items()}


# ---- publish, then read back


def test_small_unsigned_round_trip() -> None:
    rdatas = device_txt("SN-1", conveyed_information=b"\x30\x03ci=")
    assert rdatas == [(b"ci=\x30\x03ci=",)]
    assert parse_device_txt(rdatas) == (b"\x30\x03ci=", None, None)


def test_signed_artifacts_are_split_into_full_strings_and_read_back() -> None:
    artifacts = signed_artifacts(1)
    rdatas = device_txt("SN-1", **artifacts)
    assert [rdata[0][:3] for rdata in rdatas] == [b"ci=", b"oc=", b"ov="]
    for rdata, value in zip(rdatas, artifacts.values(), strict=True):
        assert all(len(string) == MAX_CHARACTER_STRING for string in rdata[:-1])
        assert 0 < len(rdata[-1]) <= MAX_CHARACTER_STRING
        assert len(rdata) == -(-(3 + len(value)) // MAX_CHARACTER_STRING)
    assert parse_device_txt(rdatas) == tuple(artifacts.values())
    # An RRset has no order: any order reads the same.
    assert parse_device_txt(rdatas[::-1]) == tuple(artifacts.values())


def test_the_largest_value_is_what_one_tcp_message_holds() -> None:
    def fits(size: int) -> bool:
        try:
            device_txt("SN-1", conveyed_information=b"\xff" * size)
        except ValidationError:
            return False
        return True

    low, high = 1, MAX_RDATA
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    rdata = device_txt("SN-1", conveyed_information=b"\xff" * low)[0]
    # Header, the longest question (a 255-octet name, type and class), then one answer
    # (compressed owner, type, class, TTL, RDLENGTH) and its RDATA.
    message = 12 + 255 + 4 + 2 + 10 + sum(1 + len(string) for string in rdata)
    assert MAX_TCP_MESSAGE - 1 <= message <= MAX_TCP_MESSAGE
    assert parse_device_txt([rdata])[0] == b"\xff" * low
    with pytest.raises(ValidationError) as refused:
        device_txt("SN-1", conveyed_information=b"\xff" * (low + 1))
    assert refused.value.field == "conveyed_information"
    assert refused.value.message.startswith("the answer would take 65536 octets, over the 65535")


# ---- refusals when publishing


@pytest.mark.parametrize(
    ("serial", "message"),
    [
        ("", "serial: must not be empty"),
        ("SN.1", r"serial: 'SN.1' has a '.', which would split <serial>._sztp into two labels"),
        ("S" * 64, r"serial: 'S{64}' is longer than a DNS label's 63 octets"),
        ("SN\u00e91", r"serial: 'SN\\xe91' has characters outside printable ASCII"),
        ("SN\t1", r"serial: 'SN\\t1' has characters outside printable ASCII"),
        (7, "serial: must be a string, not int"),
    ],
)
def test_serials_no_label_can_hold_are_refused(serial: object, message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{message}$"):
        device_txt(serial, conveyed_information=b"x")  # type: ignore[arg-type]


def test_a_serial_of_63_printable_characters_is_one_label() -> None:
    assert serial_label("A" * 62 + "(") == b"A" * 62 + b"("


@pytest.mark.parametrize(
    ("artifacts", "message"),
    [
        ({"conveyed_information": None}, "conveyed_information: is required"),
        ({"conveyed_information": b""}, "conveyed_information: must not be empty"),
        ({"conveyed_information": "text"}, "conveyed_information: must be bytes, not str"),
        (
            {"conveyed_information": b"x", "owner_certificate": b"oc"},
            "owner_certificate: owner_certificate and ownership_voucher go together",
        ),
        (
            {"conveyed_information": b"x", "ownership_voucher": b"ov"},
            "owner_certificate: owner_certificate and ownership_voucher go together",
        ),
        (
            {"conveyed_information": b"x", "owner_certificate": b"", "ownership_voucher": b"v"},
            "owner_certificate: must not be empty",
        ),
    ],
)
def test_artifact_refusals(artifacts: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{message}$"):
        device_txt("SN-1", **artifacts)  # type: ignore[arg-type]


def test_an_answer_over_one_tcp_message_is_refused() -> None:
    each = 30_000
    with pytest.raises(ValidationError) as refused:
        device_txt(
            "SN-1",
            conveyed_information=b"c" * each,
            owner_certificate=b"o" * each,
            ownership_voucher=b"v" * each,
        )
    assert refused.value.field == "conveyed_information"
    assert f"over the {MAX_TCP_MESSAGE} of a DNS message over TCP" in refused.value.message


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        ([], "servers: at least one bootstrap server is required"),
        ("sztp.example.com", r"servers: expected a list of \(host, port, priority, weight\)"),
        (
            [("sztp.example.com", 443, 0)],
            r"servers\[0\]: expected \(host, port, priority, weight\)",
        ),
        (
            [("192.0.2.1", 443, 0, 0)],
            r"servers\[0\]/host: '192.0.2.1' is an address or ends in a numeric label; "
            "SRV targets are host names",
        ),
        (
            [("2001:db8::1", 443, 0, 0)],
            r"servers\[0\]/host: '2001:db8::1' is not a host name: "
            "labels are 1-63 letters, digits or hyphens",
        ),
        (
            [("bad_name.example.com", 443, 0, 0)],
            r"servers\[0\]/host: 'bad_name.example.com' is not a host name: "
            "labels are 1-63 letters, digits or hyphens",
        ),
        (
            [("a..example.com", 443, 0, 0)],
            r"servers\[0\]/host: 'a..example.com' is not a host name: "
            "labels are 1-63 letters, digits or hyphens",
        ),
        ([(".", 443, 0, 0)], r"servers\[0\]/host: '.' is not a host name"),
        (
            [("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62, 443, 0, 0)],
            r"servers\[0\]/host: 'a+\.b+\.c+\.d+' is longer than a DNS name's 255 octets",
        ),
        ([("sztp.example.com", 0, 0, 0)], r"servers\[0\]/port: 0 is outside 1..65535"),
        ([("sztp.example.com", 65536, 0, 0)], r"servers\[0\]/port: 65536 is outside 1..65535"),
        ([("sztp.example.com", True, 0, 0)], r"servers\[0\]/port: must be an integer, not bool"),
        ([("sztp.example.com", 443, -1, 0)], r"servers\[0\]/priority: -1 is outside 0..65535"),
        ([("sztp.example.com", 443, 0, 65536)], r"servers\[0\]/weight: 65536 is outside 0..65535"),
        ([("sztp.example.com", 443, 0, "1")], r"servers\[0\]/weight: must be an integer, not str"),
        ([(7, 443, 0, 0)], r"servers\[0\]/host: must be a string, not int"),
        (
            [("sztp.example.com", 443, 0, 0), ("SZTP.example.com.", 443, 1, 0)],
            r"servers\[1\]: SZTP.example.com port 443 is listed twice",
        ),
    ],
)
def test_srv_refusals(servers: object, message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{message}$"):
        bootstrap_srv(servers)  # type: ignore[arg-type]


def test_a_longest_host_name_is_accepted() -> None:
    longest = "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61
    assert bootstrap_srv([(longest + ".", 443, 0, 0)]) == [SrvRecord(0, 0, 443, longest)]


# ---- master-file text and nsupdate

GOLDEN_DEVICES = {
    "SN(1)": device_txt(
        "SN(1)",
        conveyed_information=b'\x00"\\;\x7f' + b"z" * 251 + b"\xff",
        owner_certificate=b"oc",
        ownership_voucher=b"ov",
    )
}
GOLDEN_SERVERS = bootstrap_srv(
    [("sztp1.example.com", 443, 0, 5), ("sztp2.example.com.", 8443, 1, 0)]
)
GOLDEN_RELATIVE = (
    "SN\\(1\\)._sztp 3600 IN TXT (\n"
    '    "ci=\\000\\"\\\\;\\127' + "z" * 247 + '"\n'
    '    "zzzz\\255"\n'
    "    )\n"
    'SN\\(1\\)._sztp 3600 IN TXT "oc=oc"\n'
    'SN\\(1\\)._sztp 3600 IN TXT "ov=ov"\n'
    "_sztp._tcp 3600 IN SRV 0 5 443 sztp1.example.com.\n"
    "_sztp._tcp 3600 IN SRV 1 0 8443 sztp2.example.com.\n"
)
GOLDEN_NSUPDATE = (
    "update delete SN\\(1\\)._sztp.example.com. TXT\n"
    'update add SN\\(1\\)._sztp.example.com. 300 TXT "ci=\\000\\"\\\\;\\127'
    + "z"
    * 247
    + '" "zzzz\\255"\n'
    'update add SN\\(1\\)._sztp.example.com. 300 TXT "oc=oc"\n'
    'update add SN\\(1\\)._sztp.example.com. 300 TXT "ov=ov"\n'
    "update delete _sztp._tcp.example.com. SRV\n"
    "update add _sztp._tcp.example.com. 300 SRV 0 5 443 sztp1.example.com.\n"
    "update add _sztp._tcp.example.com. 300 SRV 1 0 8443 sztp2.example.com.\n"
    "send\n"
)


def test_zone_fragment_golden_relative() -> None:
    rendered = render_zone_fragment(ttl=3600, devices=GOLDEN_DEVICES, servers=GOLDEN_SERVERS)
    assert rendered == GOLDEN_RELATIVE


def test_zone_fragment_absolute_names_under_the_origin() -> None:
    rendered = render_zone_fragment(
        ttl=3600, devices=GOLDEN_DEVICES, servers=GOLDEN_SERVERS, origin="example.com."
    )
    expected = GOLDEN_RELATIVE.replace("._sztp ", "._sztp.example.com. ").replace(
        "_sztp._tcp ", "_sztp._tcp.example.com. "
    )
    assert rendered == expected


def test_nsupdate_golden() -> None:
    rendered = render_nsupdate(
        ttl=300, origin="example.com", devices=GOLDEN_DEVICES, servers=GOLDEN_SERVERS
    )
    assert rendered == GOLDEN_NSUPDATE


def test_rendered_text_decodes_to_the_published_octets() -> None:
    rng = seeded(7)
    for _ in range(50):
        value = rng.randbytes(rng.randrange(1, 2000))
        rdatas = device_txt("SN-1", conveyed_information=value)
        text = render_zone_fragment(ttl=60, devices={"SN-1": rdatas})
        assert decode_master_strings(text) == [rdatas[0]]


def test_a_signed_record_renders_in_lines_of_bounded_length() -> None:
    rdatas = device_txt("SN-1", **signed_artifacts(2))
    text = render_zone_fragment(ttl=60, devices={"SN-1": rdatas})
    # At worst every octet of a 255-octet string is written as \DDD.
    assert max(len(line) for line in text.splitlines()) <= 4 + 2 + 4 * MAX_CHARACTER_STRING


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"ttl": -1, "servers": GOLDEN_SERVERS}, "ttl: -1 is outside 0..2147483647"),
        ({"ttl": 2**31, "servers": GOLDEN_SERVERS}, "ttl: 2147483648 is outside 0..2147483647"),
        ({"ttl": 60}, "devices: nothing to render: give devices or servers"),
        ({"ttl": 60, "devices": {"SN-1": []}}, "devices/SN-1: expected a list of TXT records"),
        (
            {"ttl": 60, "devices": {"SN-1": [(b"x" * 256,)]}},
            "devices/SN-1: a character-string of 256 octets; at most 255",
        ),
        (
            {"ttl": 60, "devices": {"SN-1": [(b"x" * 255,) * 200] * 2}},
            "devices/SN-1: the answer would take 102695 octets, over the 65535 of a message",
        ),
        (
            {"ttl": 60, "devices": {"SN-1": [("ci=x",)]}},
            "devices/SN-1: a character-string must be bytes, not str",
        ),
        (
            {"ttl": 60, "devices": {"SN.1": [(b"ci=x",)]}},
            "serial: 'SN.1' has a '.', which would split <serial>._sztp into two labels",
        ),
        (
            {"ttl": 60, "servers": GOLDEN_SERVERS, "origin": "exa mple.com"},
            "origin: 'exa mple.com' is not a domain name",
        ),
        ({"ttl": 60, "servers": GOLDEN_SERVERS, "origin": "."}, "origin: '.' is not a domain name"),
        (
            {"ttl": 60, "servers": [SrvRecord(0, 0, 0, ".")]},
            "servers: a target '.' is not published; leave servers out",
        ),
    ],
)
def test_rendering_refusals(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{re.escape(message)}$"):
        render_zone_fragment(**arguments)  # type: ignore[arg-type]


def test_an_nsupdate_command_longer_than_nsupdate_reads_is_refused() -> None:
    rdatas = device_txt("SN-1", conveyed_information=b"\x00" * 40_000)
    with pytest.raises(ValidationError, match=r"^devices: an nsupdate command would be 160\d{3} "):
        render_nsupdate(ttl=60, origin="example.com", devices={"SN-1": rdatas})


# ---- reading an answer on the device


def test_other_keys_and_empty_records_are_ignored() -> None:
    rdatas = [
        (b"v=spf1 -all",),
        (b"=ci",),
        (),
        (b"ci", b"=", b"value"),
        (b"\xff\xfe",),
        (b"x=ci=1",),
    ]
    assert parse_device_txt(rdatas) == (b"value", None, None)


def test_keys_are_read_without_regard_to_case() -> None:
    assert parse_device_txt([(b"CI=a",), (b"Oc=b",), (b"oV=c",)]) == (b"a", b"b", b"c")


@pytest.mark.parametrize(
    ("rdatas", "message"),
    [
        ([(b"ci=a",), (b"ci=b",)], "conveyed_information: the key 'ci' comes in two records"),
        ([(b"ci=a",), (b"CI=a",)], "conveyed_information: the key 'ci' comes in two records"),
        ([(b"ci",)], "conveyed_information: the record 'ci' has no '=' and no value"),
        ([(b"ci=",)], "conveyed_information: the record 'ci=' has an empty value"),
        ([(b"ci=a",), (b"ov",)], "ownership_voucher: the record 'ov' has no '=' and no value"),
        ([(b"oc=a",), (b"ov=b",)], "conveyed_information: the answer has no 'ci' record"),
        ([], "conveyed_information: the answer has no 'ci' record"),
        (
            [(b"ci=a",), (b"oc=b",)],
            "owner_certificate: the answer has only one of 'oc' and 'ov'; they go together",
        ),
        ([(b"x" * 256,)], "txt[0]: a character-string of 256 octets; at most 255"),
        ([(b"ci=a",), ("oc=b",)], "txt[1]: a character-string must be bytes, not str"),
        ([b"ci=a"], "txt[0]: a TXT record is a non-empty list of byte strings"),
        ([None], "txt[0]: a TXT record is a non-empty list of byte strings"),
        (b"ci=a", "txt: expected a list of TXT records"),
        ([(b"x" * 255,) * 258], "txt[0]: a TXT record over 65535 octets"),
        (
            [(b"x" * 255,) * 255] * 2,
            "txt: the records take over 65535 octets, more than any DNS message holds",
        ),
        (
            [()] * 1_000_000,
            "txt: the records take over 65535 octets, more than any DNS message holds",
        ),
    ],
)
def test_hostile_answers_are_refused(rdatas: object, message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{re.escape(message)}$"):
        parse_device_txt(rdatas)  # type: ignore[arg-type]


def test_fuzzed_answers_raise_only_validation_errors() -> None:
    rng = seeded(8572)
    prefixes = [b"ci=", b"oc=", b"ov=", b"CI=", b"ci", b"=", b"", b"x="]
    outcomes: Counter[str] = Counter()
    for _ in range(3000):
        rdatas: list[object] = []
        for _ in range(rng.randrange(0, 5)):
            shape = rng.random()
            if shape < 0.05:
                rdatas.append(rng.choice([None, "ci=x", b"ci=x", 3, (b"a", "b")]))
                continue
            content = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 600))
            size = rng.choice([1, 7, 255, 256]) if shape < 0.1 else MAX_CHARACTER_STRING
            rdatas.append(tuple(content[i : i + size] for i in range(0, len(content), size)))
        try:
            parse_device_txt(rdatas)  # type: ignore[arg-type]
            outcomes["read"] += 1
        except ValidationError:
            outcomes["refused"] += 1
    assert outcomes["read"] > 100 and outcomes["refused"] > 100, outcomes


# ---- SRV order on the device


def first_targets(records: list[SrvRecord], draws: int, seed: int) -> Counter[str]:
    rng = seeded(seed)
    return Counter(order_srv(records, rng)[0].target for _ in range(draws))


def test_priority_is_strict_and_every_record_is_ordered_once() -> None:
    records = [
        SrvRecord(2, 100, 443, "c.example.com"),
        SrvRecord(0, 1, 443, "a1.example.com"),
        SrvRecord(1, 0, 443, "b.example.com"),
        SrvRecord(0, 50, 443, "a2.example.com"),
    ]
    rng = seeded(1)
    for _ in range(500):
        ordered = order_srv(records, rng)
        assert sorted(ordered, key=lambda r: r.target) == sorted(records, key=lambda r: r.target)
        assert [record.priority for record in ordered] == [0, 0, 1, 2]


@pytest.mark.parametrize(("light", "heavy", "expected"), [(1, 3, 0.70), (100, 300, 0.7494)])
def test_weights_set_the_share_of_first_picks(light: int, heavy: int, expected: float) -> None:
    # RFC 2782 draws in 0..sum inclusive, which gives whichever record is listed first one
    # extra chance in sum + 1; over both list orders the heavy record goes first with
    # (heavy + heavy + 1) / 2 / (sum + 1): 0.70 for 1:3, close to 3/4 once weights are large.
    records = [
        SrvRecord(0, light, 443, "light.example.com"),
        SrvRecord(0, heavy, 443, "heavy.example.com"),
    ]
    share = first_targets(records, 20000, seed=2)["heavy.example.com"] / 20000
    assert expected - 0.015 < share < expected + 0.015


def test_weight_zero_goes_first_only_when_the_draw_is_zero() -> None:
    records = [SrvRecord(0, 0, 443, "zero.example.com"), SrvRecord(0, 10, 443, "ten.example.com")]
    # RFC 2782: a draw in 0..10, and only 0 selects the weight-0 record first.
    share = first_targets(records, 11000, seed=3)["zero.example.com"] / 11000
    assert 0.07 < share < 0.11


def test_all_zero_weights_share_the_first_place() -> None:
    records = [SrvRecord(0, 0, 443, f"s{index}.example.com") for index in range(3)]
    counts = first_targets(records, 3000, seed=4)
    assert all(800 < count < 1200 for count in counts.values()), counts


def test_srv_uris_in_order_and_a_lone_root_target_means_no_service() -> None:
    records = [SrvRecord(1, 0, 8443, "b.example.com."), SrvRecord(0, 0, 443, "a.example.com")]
    assert srv_uris(records, seeded(5)) == [
        "https://a.example.com:443",
        "https://b.example.com:8443",
    ]
    assert srv_uris([SrvRecord(0, 0, 0, ".")], seeded(5)) == []


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [SrvRecord(0, 0, 0, "."), SrvRecord(0, 0, 443, "a.example.com")],
            "srv: a target '.' (no service) among other records",
        ),
        (
            [SrvRecord(0, 0, 443, "10.0.0.1")],
            "srv[0]/target: '10.0.0.1' is an address or ends in a numeric label; "
            "SRV targets are host names",
        ),
        (
            [SrvRecord(0, 0, 443, "[::1]")],
            "srv[0]/target: '[::1]' is not a host name: labels are 1-63 letters, digits or hyphens",
        ),
        ([SrvRecord(0, 0, 0, "a.example.com")], "srv[0]/port: 0 is outside 1..65535"),
        ([SrvRecord(0, -1, 443, "a.example.com")], "srv[0]/weight: -1 is outside 0..65535"),
        ([SrvRecord(70000, 0, 443, "a.example.com")], "srv[0]/priority: 70000 is outside 0..65535"),
        ([("a.example.com", 443, 0, 0)], "srv[0]: expected an SrvRecord, not tuple"),
        ("a.example.com", "srv: expected a list of SRV records"),
        (
            [SrvRecord(0, 0, 443, "a" * 63 + ".example.com")] * 3000,
            "srv: more records than a 65535-octet message holds",
        ),
    ],
)
def test_hostile_srv_answers_are_refused(records: object, message: str) -> None:
    with pytest.raises(ValidationError, match=f"^{re.escape(message)}$"):
        srv_uris(records, seeded(0))  # type: ignore[arg-type]


def test_fuzzed_srv_answers_raise_only_validation_errors() -> None:
    rng = seeded(2782)
    targets = ["a.example.com", ".", "", "1.2.3.4", "x_y.example", "ok-host", None, "é.example"]
    numbers: list[object] = [0, 1, 443, 65535, 65536, -1, True, "1", None]
    for _ in range(2000):
        records = [
            SrvRecord(
                rng.choice(numbers), rng.choice(numbers), rng.choice(numbers), rng.choice(targets)
            )  # type: ignore[arg-type]
            for _ in range(rng.randrange(0, 4))
        ]
        with contextlib.suppress(ValidationError):
            srv_uris(records, rng)


# ---- BIND reads what we render

NAMED_CHECKZONE = shutil.which("named-checkzone")
NAMED_COMPILEZONE = shutil.which("named-compilezone")
ZONE_HEAD = """\
$ORIGIN example.com.
$TTL 3600
@ IN SOA ns.example.com. hostmaster.example.com. 1 3600 600 86400 300
@ IN NS ns.example.com.
ns IN A 192.0.2.53
sztp1 IN A 192.0.2.1
sztp2 IN AAAA 2001:db8::2
"""
_TXT_LINE = re.compile(r"^(\S+)\s+\d+\s+IN\s+TXT\s+(.*)$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(\d{3}|.)", re.DOTALL)


def unescape(text: str) -> bytes:
    """Master-file escapes (RFC 1035 §5.1) to octets: `\\DDD` and `\\X`."""

    def octet(found: re.Match[bytes]) -> bytes:
        escaped = found.group(1)
        return bytes([int(escaped)]) if escaped.isdigit() else escaped

    return _ESCAPE.sub(octet, text.encode("latin-1"))


def decode_master_strings(text: str) -> list[TxtRdata]:
    """The TXT RDATAs of a rendered fragment, each record's quoted strings in order."""
    records: list[TxtRdata] = []
    current: list[bytes] | None = None
    for line in text.splitlines():
        strings = [unescape(found) for found in _QUOTED.findall(line)]
        if " TXT (" in line:
            current = []
        elif current is not None and line.strip() == ")":
            records.append(tuple(current))
            current = None
        elif current is not None:
            current += strings
        elif " TXT " in line:
            records.append(tuple(strings))
    return records


needs_bind = pytest.mark.skipif(
    NAMED_CHECKZONE is None or NAMED_COMPILEZONE is None,
    reason="named-checkzone is not installed (make test installs the bind9-utils package)",
)


@needs_bind
@pytest.mark.parametrize("origin", [None, "example.com"])
def test_named_checkzone_accepts_the_fragment_and_reads_back_the_octets(
    tmp_path: Path, origin: str | None
) -> None:
    serial = "SN(7)+:=?'"
    artifacts = signed_artifacts(3)
    rdatas = device_txt(serial, **artifacts)
    fragment = render_zone_fragment(
        ttl=600, devices={serial: rdatas}, servers=GOLDEN_SERVERS, origin=origin
    )
    zone = tmp_path / "example.com.zone"
    zone.write_text(ZONE_HEAD + fragment, encoding="ascii")

    checked = subprocess.run(
        [str(NAMED_CHECKZONE), "-k", "fail", "-i", "full", "example.com", str(zone)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.rstrip().endswith("OK"), checked.stdout

    compiled = subprocess.run(
        [
            str(NAMED_COMPILEZONE),
            "-q",
            "-f",
            "text",
            "-F",
            "text",
            "-o",
            "-",
            "example.com",
            str(zone),
        ],
        capture_output=True,
        check=True,
    ).stdout.decode("ascii")
    answers: list[TxtRdata] = []
    for line in compiled.splitlines():
        found = _TXT_LINE.match(line)
        if found:
            assert unescape(found.group(1)) == serial_label(serial) + b"._sztp.example.com."
            answers.append(tuple(unescape(text) for text in _QUOTED.findall(found.group(2))))
    assert sorted(answers) == sorted(rdatas)
    assert parse_device_txt(answers) == tuple(artifacts.values())
    srv_lines = [line.split() for line in compiled.splitlines() if " SRV" in line]
    assert sorted(fields[-4:] for fields in srv_lines) == [
        ["0", "5", "443", "sztp1.example.com."],
        ["1", "0", "8443", "sztp2.example.com."],
    ]


# ---- the documentation's example is what the code renders


def test_the_docs_example_is_the_rendered_fragment() -> None:
    page = DOCS_PAGE.read_text(encoding="utf-8")
    program = re.search(r"```python\n(.*?)```", page, re.DOTALL)
    shown = re.search(r"```dns-zone\n(.*?)```", page, re.DOTALL)
    assert program and shown, "docs/dns-discovery.md lost its python or dns-zone block"
    run = subprocess.run(
        [sys.executable, "-c", program.group(1)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "kit")},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == shown.group(1)

"""A devices list read without the YAML parser: what it reads must be what the parser reads,
value for value and type for type; anything else it leaves to the parser (None)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sztp.state import fleet_yaml, fleet_yaml_parts, fleet_yaml_simple
from sztp.state.fleet_yaml import YamlRefused, parse_strict, parse_yaml
from sztp.state.fleet_yaml_simple import simple_items

# Values as they could be written after `key: `, many of them what a YAML 1.1 parser reads as
# something other than text, or refuses, or reads up to a comment or over the next line.
TRICKY_VALUES = [
    "",
    "~",
    "null",
    "yes",
    "No",
    "on",
    "1",
    "-1",
    "+1",
    "0x1f",
    "017",
    "1:20",
    "1.5",
    ".inf",
    ".5",
    "-1.5e3",
    "2024-05-01",
    "=",
    "02:00:00:00:00:01",
    "a:",
    "a:b",
    "a::b",
    "-",
    "-x",
    "--",
    "- x",
    "?x",
    ":x",
    "&a x",
    "*a",
    "!x y",
    "!!str 1",
    "|",
    ">",
    "[1]",
    "{}",
    "{file: a}",
    "{file: a, file: b}",
    "{file: 'a, b'}",
    '{file: "x"}',
    "{yes: a}",
    "{file: 1}",
    "{file: a:b}",
    "x #c",
    "x#c",
    "'it''s'",
    "'open",
    "''",
    '""',
    '"a\\tb"',
    '"a"b"',
    "'a'b'",
    "@x",
    "`x",
    "%x",
    "x\t",
    "é",
    "a\x85b",
    "'a\x85b'",  # a line break to YAML 1.1, folded to a space
    '"a\u2028b"',
    "'\x07'",  # not printable: refused
    "'a\tb'",
    "SN-1",
    "day0",
    "/a/b.vcj",
    "_x",
]
KEYS = ["serial", "profile", "mac", "model", "yes", "1", "null", "a-b", "_k", "x y", "-k", "'q'"]


Written = str | None | list[tuple[str, str | None]]  # a value, none, or a mapping below


def rendered(
    items: list[list[tuple[str, Written]]], indent: int, extra: str = "", step: int = 2
) -> str:
    """A block list of `items` (each its (key, value written) lines; None: no value; a list:
    a mapping written below the key, `step` further in) at `indent`, each item's first key
    `step` characters from its dash; `extra` inserted after the first line of the first item."""
    lines = []
    for item in items:
        for number, (key, value) in enumerate(item):
            start = " " * indent + ("-" + " " * (step - 1) if number == 0 else " " * step)
            if isinstance(value, list):
                lines.append(f"{start}{key}:")
                for inner, written in value:
                    below = " " * (indent + 2 * step)
                    lines.append(f"{below}{inner}:" + ("" if written is None else f" {written}"))
            else:
                lines.append(f"{start}{key}:" + ("" if value is None else f" {value}"))
    if extra and lines:
        lines.insert(1, extra)
    return "".join(f"{line}\n" for line in lines)


def parsed(text: str) -> str | None:
    """What the parser reads `text` as, typed (repr), or None if it refuses it."""
    try:
        return repr(parse_strict(text, depth=2))
    except (yaml.YAMLError, YamlRefused, RecursionError):
        return None


@contextmanager
def small_chunks() -> Iterator[None]:
    """Chunks of a few items: several shapes and chunk ends in a short list."""
    with (
        mock.patch.object(fleet_yaml_simple, "_PROBE", 16),
        mock.patch.object(fleet_yaml_simple, "_CHUNK", 60),
    ):
        yield


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_each_value_is_read_as_the_parser_reads_it_or_left_to_it(value: str) -> None:
    text = f"  - serial: {value}\n    profile: {{file: {value}}}\n  - serial: {value}\n"
    below = f"- serial: {value}\n  voucher:\n    file: {value}\n    env: {value}\n"
    for lines in (text, text.split("\n", 1)[0] + "\n", below, below.replace("\n  ", "\n    ")):
        read = simple_items(lines)
        assert read is None or repr(read) == parsed(lines), lines


simple_texts = st.text(alphabet="abcdeSN0123456789-_./:", max_size=8).map(lambda text: "x" + text)
simple_values = (
    simple_texts.filter(lambda text: not text.endswith(":"))
    | st.text(alphabet=' ab#:-{}"', max_size=6).map(lambda text: f"'{text}'")
    | st.text(alphabet=" ab#:-{}'", max_size=6).map(lambda text: f'"{text}"')
    | st.integers(-1000, 1000).map(str)
    | st.sampled_from(["yes", "off", "~", "null", "1.5", "{file: a/b.vcj}", "{a: 1, b: 'x, y'}"])
)
written_values = (
    st.sampled_from(TRICKY_VALUES)
    | st.text(alphabet="aYn0:-#.'\" ~=@{},_/\\\t", max_size=6)
    | st.text(alphabet="ab'\\\" #:", max_size=4).map(lambda text: f"'{text}'")
    | st.text(alphabet="ab'\\\" #:", max_size=4).map(lambda text: f'"{text}"')
    | simple_values
)
any_fields = st.lists(
    st.tuples(st.sampled_from(KEYS), st.none() | written_values), min_size=1, max_size=2
)
any_items = st.lists(
    st.lists(
        st.tuples(st.sampled_from(KEYS), st.none() | written_values | any_fields),
        min_size=1,
        max_size=2,
    ),
    min_size=1,
    max_size=3,
)


@settings(max_examples=2000, derandomize=True, database=None)
@given(
    items=any_items,
    indent=st.sampled_from([0, 1, 2, 4]),
    step=st.sampled_from([2, 4]),
    extra=st.sampled_from(
        ["", "", "", "  # a comment", "", "      more", "    -", "\t", "   x: 1"]
    ),
)
def test_what_it_reads_is_what_the_parser_reads(
    items: list[list[tuple[str, Written]]], indent: int, step: int, extra: str
) -> None:
    text = rendered(items, indent, extra, step)
    with small_chunks():
        read = simple_items(text)
    if read is not None:
        assert repr(read) == parsed(text), text


simple_mapping = st.dictionaries(
    st.sampled_from(["file", "env", "x"]), st.none() | simple_values, min_size=1
).map(lambda mapping: list(mapping.items()))
simple_item = st.dictionaries(
    st.sampled_from(["serial", "profile", "mac", "model", "voucher", "selection"]),
    st.none() | simple_values | st.just("[]") | st.just("{}") | simple_mapping,
    min_size=1,
)


@settings(max_examples=300, derandomize=True, database=None)
@given(
    items=st.lists(simple_item, min_size=1, max_size=30),
    indent=st.sampled_from([0, 1, 2, 6]),
    step=st.sampled_from([2, 3, 4]),
)
def test_a_simple_list_is_read_as_the_parser_reads_it(
    items: list[dict[str, Written]], indent: int, step: int
) -> None:
    text = rendered([list(item.items()) for item in items], indent, step=step)
    with small_chunks():
        read = simple_items(text)
    assert read is not None, text
    assert repr(read) == parsed(text)


def test_items_alike_are_read_by_their_shape_and_others_line_by_line() -> None:
    alike = [("serial", "SN-{n}"), ("profile", "day0"), ("mac", "'02:00:00:00:00:{n:02x}'")]
    other = [("serial", "SN-{n}"), ("model", '"m 1"'), ("port", "8080")]
    items = [alike if n < 20 or n % 3 else other for n in range(40)]
    text = rendered(
        [[(key, value.format(n=n)) for key, value in item] for n, item in enumerate(items)], 2
    )
    with (
        small_chunks(),
        mock.patch.object(
            fleet_yaml_simple._Reader,
            "_read_lines",
            autospec=True,
            side_effect=fleet_yaml_simple._Reader._read_lines,
        ) as line_by_line,
    ):
        read = simple_items(text)
    assert read is not None and repr(read) == parsed(text)
    assert read[0] == {"serial": "SN-0", "profile": "day0", "mac": "02:00:00:00:00:00"}
    assert read[21]["port"] == 8080
    # The first chunks (alike items) by their shape; only chunks holding the others by line.
    chunks = [call.args[1] for call in line_by_line.call_args_list]
    assert chunks and all("model" in chunk for chunk in chunks)
    # Keys are shared between items, not a copy each.
    assert read[0].keys() is not read[1].keys()
    assert all(a is b for a, b in zip(read[0], read[1], strict=True))


@pytest.mark.parametrize(
    "text",
    [
        "  - serial: a\n    serial: b\n",  # a repeated key: the parser says where
        "  - yes: a\n",  # a boolean key
        "  - serial: =\n",  # the parser refuses `=`
        "  - serial: a\n\n  - serial: b\n",  # a blank line between items
        "  - serial: a  # comment\n",
        "  - serial: a\n      b\n",  # a value carried on to the next line
        "  - serial: 'it''s'\n",  # an escaped quote
        '  - serial: "a\\tb"\n',  # an escape
        "  - serial: é\n",
        "  -\n    serial: a\n",
        "  - serial: a\n      file: b\n",  # a mapping below a field that has a value
        "  - voucher:\n      file: b\n        x: c\n",  # nested deeper than one mapping
        "  - voucher:\n       file: b\n",  # a mapping below, not `step` further in
    ],
)
def test_what_it_does_not_read_is_left_to_the_parser(text: str) -> None:
    assert simple_items(text) is None


def test_a_value_typed_as_the_parser_types_it() -> None:
    text = "  - a: 1:20\n    b: 0x1f\n    c: yes\n    d: ~\n    e:\n    f: 2024-05-01\n    g: ''\n"
    read = simple_items(text)
    assert read == [{"a": 80, "b": 31, "c": True, "d": None, "e": None, "f": "2024-05-01", "g": ""}]
    assert repr(read) == parsed(text)


def test_a_simple_fleet_file_is_read_without_the_parser_and_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    items = "".join(
        f"  - serial: SN-{n}\n    profile: day0\n    voucher: {{file: v/SN-{n}.vcj}}\n"
        for n in range(200)
    )
    text = "profiles:\n  - name: day0\n    type: onboarding\ndevices:\n" + items + "dhcp: {}\n"
    # Far too small to be parsed in parts: read apart from the rest only because it is simple.
    quickly = fleet_yaml_parts.parse_in_parts(text)
    assert quickly is not None
    monkeypatch.setattr(fleet_yaml, "parse_in_parts", lambda text: None)
    assert quickly == parse_yaml(text, Path("fleet.yaml"))
    assert len(quickly["devices"]) == 200 and quickly["dhcp"] == {}
    assert quickly["devices"][7]["voucher"] == {"file": "v/SN-7.vcj"}


def test_a_list_not_simple_is_parsed_whole_once() -> None:
    text = "devices:\n  - serial: a  # a comment\n"
    assert fleet_yaml_parts.parse_in_parts(text) is None
    assert parse_yaml(text, Path("fleet.yaml")) == {"devices": [{"serial": "a"}]}


FLEET_VALUES = ["SN-1", "yes", "1:20", "a: b", "it's", "#x", "-", "02:00:5e:00:53:01", "", "x y"]


@pytest.mark.parametrize("sort_keys", [False, True])
@pytest.mark.parametrize("indent", [2, 4])
def test_a_fleet_pyyaml_dumps_is_read_as_the_parser_reads_it(sort_keys: bool, indent: int) -> None:
    devices = [
        {
            "serial": f"SN-{n}",
            "profile": "day0",
            "mac": f"02:00:00:00:00:{n:02x}",
            "model": FLEET_VALUES[n % len(FLEET_VALUES)],
            "voucher": {"file": f"v/SN-{n}.vcj"},
            "selection": [],
            "password": None,
        }
        for n in range(50)
    ]
    document = {"profiles": [{"name": "day0", "type": "onboarding"}], "devices": devices}
    text = yaml.safe_dump(document, sort_keys=sort_keys, indent=indent)
    read = fleet_yaml_parts.parse_in_parts(text)
    assert read is not None, text  # read without the parser, `devices:` first or not
    loaded = yaml.safe_load(text)
    assert read == loaded == document
    assert repr(read["devices"]) == repr(loaded["devices"])  # types and order too

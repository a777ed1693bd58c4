"""A large fleet file's devices parsed in parts by several processes: the same document as the
whole-text parse, or no answer at all (then the file is parsed whole, errors included)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sztp.state import fleet_yaml, fleet_yaml_parts
from sztp.state.fleet import load_fleet
from sztp.state.fleet_yaml import FleetError, parse_yaml

HEAD = """\
# a fleet
trust_anchors: []
profiles:
  - name: day0
    type: onboarding
    configuration: |
      hostname lab
      - not an item: a line of the configuration
devices:
"""

ITEMS = [
    "  - serial: SN-{n}\n    profile: day0\n    mac: '02:00:00:00:00:{n:02x}'\n",
    '  - {{serial: SN-{n}, profile: day0, model: "- quoted, with a dash"}}\n',
    "  # a comment between items\n  - serial: SN-{n}\n\n    model: x{n}  # trailing\n",
    "  - serial: SN-{n}\n    selection:\n      - {{hw_model: m, profile: day0}}\n"
    "      - hw_model: n\n        profile: day0\n",
    "  - serial: SN-{n}\n    model: >\n      folded\n      text\n# at column 0, a comment\n",
    "  - serial: \"SN-{n}\"\n    model: 'it''s'\n    profile: null\n",
]
TAIL = "dhcp:\n  bootstrap_uris: [https://sztp.lab:8443]\n"


def fleet_text(devices: int, *, tail: str = TAIL, at_key_column: bool = False) -> str:
    """The fleet with `devices` items of each kind in turn; `at_key_column`: the items at the
    `devices:` key's own column, as PyYAML writes a list."""
    items = "".join(ITEMS[n % len(ITEMS)].format(n=n) for n in range(devices))
    if at_key_column:
        items = re.sub(r"(?m)^  ", "", items)
    return HEAD + items + tail


@pytest.fixture(autouse=True)
def small_files_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_yaml_parts, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(fleet_yaml_parts, "_cores", lambda: 3)


def whole(text: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(fleet_yaml, "parse_in_parts", lambda text: None)
        return parse_yaml(text, Path("fleet.yaml"))


@pytest.mark.parametrize("at_key_column", [False, True])
@pytest.mark.parametrize("tail", [TAIL, "", "# nothing after the devices\n"])
def test_a_fleet_parsed_in_parts_is_the_fleet_parsed_whole(
    monkeypatch: pytest.MonkeyPatch, tail: str, at_key_column: bool
) -> None:
    text = fleet_text(60, tail=tail, at_key_column=at_key_column)
    cut = fleet_yaml_parts._cut(text)
    assert cut is not None and len(fleet_yaml_parts._split(cut[1], cut[2], 3)) == 3
    in_parts = fleet_yaml_parts.parse_in_parts(text)
    assert in_parts is not None
    expected = whole(text, monkeypatch)
    assert in_parts == expected and list(in_parts) == list(expected)
    assert [device["serial"] for device in in_parts["devices"]] == [f"SN-{n}" for n in range(60)]


def test_a_large_fleet_file_loads_the_same_in_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text(fleet_text(30, tail=""))
    in_parts = load_fleet(path, environ={})
    monkeypatch.setattr(fleet_yaml, "parse_in_parts", lambda text: None)
    assert in_parts.resources == load_fleet(path, environ={}).resources


@pytest.mark.parametrize(
    "text",
    [
        fleet_text(9).replace("profiles:", "profiles: &shared"),  # an anchor
        fleet_text(9) + "extra: *shared\n",  # an alias
        "%YAML 1.1\n---\n" + fleet_text(9),  # a directive
        fleet_text(9) + "---\nsecond: document\n",
        fleet_text(9).replace("\n", "\r\n"),
        fleet_text(9).replace("devices:", "hosts:"),  # no devices
        fleet_text(9) + "devices: []\n",  # two keys (YAML refuses it; the whole parse says so)
        HEAD + "".join(f"  -\n    serial: SN-{n}\n" for n in range(9)),  # a dash alone
    ],
    ids=[
        "anchor",
        "alias",
        "directive",
        "two documents",
        "CRLF",
        "no devices",
        "two devices keys",
        "dash alone",
    ],
)
def test_text_that_cutting_could_change_is_parsed_whole(text: str) -> None:
    assert fleet_yaml_parts.parse_in_parts(text) is None


@pytest.mark.parametrize(
    "broken",
    [
        # A key repeated inside a device of the second part.
        lambda text: text.replace("model: x50", "model: x50\n    model: y"),
        # A quote left open across the place the text is cut.
        lambda text: text.replace("model: x26", 'model: "x26'),
        # A part nested deeper than a fleet file may be.
        lambda text: text.replace("model: x44", "model: " + "[" * 40 + "]" * 40),
    ],
    ids=["repeated key", "open quote", "too deep"],
)
def test_a_part_that_does_not_parse_leaves_the_error_to_the_whole_parse(
    monkeypatch: pytest.MonkeyPatch, broken: Any
) -> None:
    text = broken(fleet_text(60))
    assert fleet_yaml_parts.parse_in_parts(text) is None
    with pytest.raises(FleetError) as in_parts:
        parse_yaml(text, Path("fleet.yaml"))
    with pytest.raises(FleetError) as at_once:
        whole(text, monkeypatch)
    assert str(in_parts.value) == str(at_once.value)


@pytest.mark.parametrize(
    "executable",
    ["/bin/false", "/nonexistent/python"],
    ids=["helper fails", "helper cannot start"],
)
def test_a_helper_that_does_not_answer_costs_its_speed_not_the_result(
    monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    # A helper that fails (here: no Python at all) or cannot be started answers nothing; the
    # file is then parsed whole, with the same result.
    text = fleet_text(60)
    monkeypatch.setattr(fleet_yaml_parts.sys, "executable", executable)
    assert fleet_yaml_parts.parse_in_parts(text) is None
    assert parse_yaml(text, Path("fleet.yaml")) == whole(text, monkeypatch)

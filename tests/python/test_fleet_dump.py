"""The fleet file's YAML writer (sztp.state.fleet_dump): whatever text a spec holds, the
fleet loader reads back exactly the values written, and a streamed export is the same text
as the document written at once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sztp.state.fleet import dump_fleet, fleet_document, fleet_sections, load_fleet
from sztp.state.fleet_dump import yaml_text
from sztp.state.fleet_yaml import parse_yaml
from sztp.state.model import KINDS

# Text YAML could read as something else, or change on the way back.
AWKWARD = [
    "",
    " ",
    " leading space",
    "trailing space ",
    "yes",
    "No",
    "off",
    "y",
    "null",
    "~",
    "true",
    "0",
    "-1",
    "0x1F",
    "1e3",
    ".inf",
    "12:30:45",
    "2024-05-01",
    "- dash",
    "#comment",
    "key: value",
    "&anchor",
    "<<",
    "<hidden>",
    "<a b>",
    "*alias",
    "!tag",
    "%directive",
    "@at",
    "`tick",
    "{flow}",
    "[list]",
    "'single'",
    '"double"',
    "back\\slash",
    "tab\there",
    "é unicode ü",
    "emoji 😀",
    "\u2028line separator",
    "next\x85line",
    "bom\ufeff",
    "del\x7f",
    "bell\x07",
    "\n",
    "\n\n",
    "one line\n",
    "no final newline\nsecond",
    "two final newlines\n\n",
    "\nleading newline\n",
    "  indented first line\nsecond\n",
    "trailing spaces  \nnext\n",
    "---\n...\n",
    "line\r\nwindows\r\n",
    "hostname lab\ninterface eth0\n  ip address dhcp\n!\n",
]
TEXT = st.text() | st.sampled_from(AWKWARD)
SCALARS = st.none() | st.booleans() | st.integers() | TEXT
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
ENTRIES = st.lists(st.dictionaries(TEXT, VALUES, min_size=1, max_size=4), max_size=3)


def read_back(text: str) -> Any:
    return parse_yaml(text, Path("exported.yaml"))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(TEXT, VALUES, max_size=4), ENTRIES)
def test_any_values_read_back_the_same(document: dict[str, Any], entries: list[Any]) -> None:
    streamed: Iterator[Any] = iter(entries)
    text = "".join(yaml_text([*document.items(), ("streamed", streamed)]))
    assert read_back(text) == {**document, "streamed": entries}


@pytest.mark.parametrize("value", AWKWARD)
def test_each_awkward_text_reads_back_as_a_value_and_in_a_list(value: str) -> None:
    document = {"key": value, value: "as a key", "list": [value, {"in": value}]}
    assert read_back(dump_fleet(document)) == document


def test_multi_line_text_is_a_literal_block() -> None:
    text = dump_fleet({"profiles": [{"name": "day0", "configuration": "hostname lab\n!\n"}]})
    assert text == "profiles:\n- name: day0\n  configuration: |\n    hostname lab\n    !\n"


def test_a_fleet_with_awkward_values_loads_back_as_exported(tmp_path: Path) -> None:
    resources: dict[str, dict[str, dict[str, Any]]] = {
        "trust-anchor": {},
        "owner": {"default": {"certificate_chain": "-----BEGIN X-----\nAA==\n-----END X-----\n"}},
        "image": {
            "os-1": {
                "os_name": "yes",
                "os_version": "1.10",
                "download_uris": ["https://example.com/a b.img", "null"],
                "sha256": "0" * 64,
            }
        },
        "profile": {
            "day0": {
                "type": "onboarding",
                "image": "os-1",
                "configuration": "  leading\n\ttab\n\n",
                "pre_configuration_script": '#!/bin/sh\necho "hi: there" # no\n',
            }
        },
        "device": {
            "SN 0001": {
                "model": " on ",
                "selection": [{"profile": "day0", "hw_model": "No", "os_version": "1.0"}],
            },
            "SN-0002": {"model": "", "password_hash": "<hidden>"},
        },
    }
    path = tmp_path / "exported.yaml"
    path.write_text(dump_fleet(fleet_document(resources)))
    assert load_fleet(path).resources == resources


def test_the_streamed_export_is_the_document_written_at_once() -> None:
    resources: dict[str, dict[str, dict[str, Any]]] = {
        "owner": {"default": {"certificate_chain": "PEM\n", "private_key": "<hidden>"}},
        "profile": {"day0": {"type": "onboarding", "configuration": None, "image": "os"}},
        "device": {f"SN-{index}": {"profile": "day0", "selection": []} for index in range(3)},
    }
    streamed = (
        (kind, iter(sorted(resources.get(kind, {}).items()))) for kind in [*KINDS, "unknown"]
    )
    assert "".join(yaml_text(fleet_sections(streamed))) == dump_fleet(fleet_document(resources))
    assert "owner:\n  certificate_chain: |\n    PEM\n" in dump_fleet(fleet_document(resources))

"""The chunked JSON reader behind the streamed state (sztp.json_stream): the same values
whatever the chunks' boundaries, and an error for every text that is cut short."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sztp.json_stream import JsonStream, JsonStreamError

AWKWARD_TEXT = st.text() | st.sampled_from(["", "é€😀", '"quoted"', "back\\slash", "\n\t"])
LEAVES = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | AWKWARD_TEXT
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(AWKWARD_TEXT, inner, max_size=3),
)
# The state's shape: {"revision", "resources": {kind: {name: spec}}}.
STATES = st.fixed_dictionaries(
    {
        "revision": st.integers(min_value=0),
        "resources": st.dictionaries(
            AWKWARD_TEXT,
            st.dictionaries(AWKWARD_TEXT, st.dictionaries(AWKWARD_TEXT, VALUES, max_size=3)),
            max_size=4,
        ),
    }
)
ENCODINGS = st.sampled_from(
    [
        {"separators": (",", ":")},
        {},
        {"indent": 2, "ensure_ascii": False},
    ]
)


def read_state(stream: JsonStream) -> dict[str, Any]:
    """The document walked as the client walks the state: objects member by member down to
    each spec, read whole."""
    document: dict[str, Any] = {}
    for key in stream.members():
        if key != "resources":
            document[key] = stream.value()
            continue
        resources = document[key] = {}
        for kind in stream.members():
            specs = resources[kind] = {}
            for name in stream.members():
                specs[name] = stream.value()
    stream.end()
    return document


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    """`data` cut at `cuts` (anywhere, through multi-byte characters too)."""
    start = 0
    for cut in sorted({cut % (len(data) + 1) for cut in cuts}):
        yield data[start:cut]
        start = cut
    yield data[start:]


@settings(max_examples=300)
@given(STATES, ENCODINGS, st.lists(st.integers(min_value=0), max_size=40))
def test_any_chunk_boundaries_give_the_same_document(
    state: dict[str, Any], encoding: dict[str, Any], cuts: list[int]
) -> None:
    data = json.dumps(state, **encoding).encode()
    assert read_state(JsonStream(chunked(data, cuts))) == json.loads(data)


def test_one_byte_chunks_and_a_number_cut_in_two() -> None:
    data = b'{"revision": 1234, "resources": {"device": {"SN-1": {"n": 56789, "t": "\xc3\xa9"}}}}'
    document = read_state(JsonStream(bytes([byte]) for byte in data))
    assert document == {"revision": 1234, "resources": {"device": {"SN-1": {"n": 56789, "t": "é"}}}}


@given(STATES, st.data())
@settings(max_examples=100)
def test_a_text_cut_short_is_an_error(state: dict[str, Any], data: st.DataObject) -> None:
    text = json.dumps(state).encode()
    end = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    with pytest.raises(JsonStreamError):
        read_state(JsonStream(iter([text[:end]])))


@pytest.mark.parametrize(
    "text",
    [
        b'{"revision": 1, "resources": {}} trailing',
        b'{"revision": 1 "resources": {}}',
        b"{1: 2}",
        b'["not", "an", "object"]',
        b'{"revision": 1, "resources": {"device": {"SN-1": {"a": "\xff"}}}}',
    ],
)
def test_what_is_not_the_expected_json_is_an_error(text: bytes) -> None:
    with pytest.raises(JsonStreamError):
        read_state(JsonStream(iter([text[:7], text[7:]])))


def test_a_value_cut_by_many_chunks_is_read_once_they_are_all_there() -> None:
    spec = {"configuration": "x" * 100_000}
    data = json.dumps({"revision": 1, "resources": {"profile": {"big": spec}}}).encode()
    chunks = (data[start : start + 1000] for start in range(0, len(data), 1000))
    assert read_state(JsonStream(chunks))["resources"]["profile"]["big"] == spec

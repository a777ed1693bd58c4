"""The compact forms of the state a server process holds: CompactSpecs (devices) and the
ChangedResources view a write is checked against; each must read exactly as plain dicts do."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sztp.state.plan import Change, apply_changes
from sztp.state.resources import DEVICE, IMAGE, KINDS
from sztp_server.compact_specs import _MAX_LOOKUPS, CompactSpecs, same_fields

DEVICE_SPEC = {
    "profile": "day0",
    "selection": [],
    "model": None,
    "mac": "02:00:00:00:00:01",
    "duid": None,
    "password_hash": None,
    "voucher": None,
    "presigned": None,
}
ODD_SPEC = {"selection": [{"os_name": "x", "profile": "p"}], "profile": "", "extra": [[]], "n": 1}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=6,
)
specs = st.dictionaries(
    st.sampled_from(["profile", "model", "mac", "selection", "voucher", "other"]), json_values
)


def test_specs_read_back_as_the_dicts_they_were() -> None:
    compact = CompactSpecs.of([("SN-1", DEVICE_SPEC), ("SN-2", ODD_SPEC)])
    assert compact["SN-1"] == DEVICE_SPEC and list(compact["SN-1"]) == list(DEVICE_SPEC)
    assert compact["SN-2"] == ODD_SPEC
    assert dict(compact) == {"SN-1": DEVICE_SPEC, "SN-2": ODD_SPEC}
    assert ("SN-1" in compact, "SN-9" in compact, len(compact)) == (True, False, 2)
    # A reader that changes what it got changes nothing stored.
    compact["SN-1"]["selection"].append("x")  # type: ignore[attr-defined]
    assert compact["SN-1"]["selection"] == []


def test_a_fleet_shares_its_field_names_and_repeated_values() -> None:
    fleet = CompactSpecs.of(
        (f"SN-{i}", {**DEVICE_SPEC, "profile": "".join(["day", "0"]), "mac": f"02:{i:02x}"})
        for i in range(3)
    )
    rows = [fleet._rows[f"SN-{i}"] for i in range(3)]
    assert rows[0][0] is rows[1][0] is rows[2][0]  # one tuple of field names
    assert rows[0][1] is rows[1][1] is rows[2][1]  # one "day0"


def test_updated_leaves_the_original_as_it_was() -> None:
    before = CompactSpecs.of([("SN-1", DEVICE_SPEC), ("SN-2", DEVICE_SPEC)])
    after = before.updated([("SN-3", ODD_SPEC), ("SN-1", {"profile": "p"})], ["SN-2"])
    assert dict(after) == {"SN-1": {"profile": "p"}, "SN-3": ODD_SPEC}
    assert dict(before) == {"SN-1": DEVICE_SPEC, "SN-2": DEVICE_SPEC}


@given(st.dictionaries(st.text(max_size=4), specs, max_size=6))
def test_any_json_spec_reads_back_equal(fleet: dict[str, dict[str, Any]]) -> None:
    assert dict(CompactSpecs.of(fleet.items())) == fleet


@given(
    st.dictionaries(st.sampled_from("abcdef"), specs, max_size=6),
    st.lists(st.tuples(st.sampled_from("abcdefgh"), st.none() | specs), max_size=8),
)
def test_changed_resources_read_as_a_changed_copy(
    base: dict[str, dict[str, Any]], edits: list[tuple[str, dict[str, Any] | None]]
) -> None:
    changes = [
        Change("delete" if spec is None else "update", DEVICE, name, spec) for name, spec in edits
    ]
    expected = dict(base)
    for name, spec in edits:
        if spec is None:
            expected.pop(name, None)
        else:
            expected[name] = spec
    for devices in (base, CompactSpecs.of(base.items())):
        state = {DEVICE: devices, IMAGE: {"os": {"os_name": "x"}}}
        after = apply_changes(state, changes)
        assert set(after) == set(KINDS)
        assert after[IMAGE] is state[IMAGE]  # an untouched kind is the same object
        changed = after[DEVICE]
        assert dict(changed) == expected and len(changed) == len(expected)
        assert sorted(changed) == sorted(expected)
        for name in "abcdefgh":
            assert (name in changed) == (name in expected)


IGNORED = frozenset({"other"})


@st.composite
def compared(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """A stored spec, and a spec to compare with it: each field kept, left out or changed,
    perhaps a field added, an empty list perhaps written as null."""
    stored = draw(specs)
    wanted: dict[str, Any] = {}
    for field, value in stored.items():
        how = draw(st.sampled_from(["keep", "keep", "leave out", "change", "null"]))
        if how == "keep":
            wanted[field] = value
        elif how == "change":
            wanted[field] = draw(json_values)
        elif how == "null":
            wanted[field] = None
    extra = draw(st.sampled_from([None, "profile", "model", "other", "new"]))
    if extra is not None and extra not in stored:
        wanted[extra] = draw(json_values)
    fields = draw(st.permutations(list(wanted)))
    return stored, {field: wanted[field] for field in fields}


@given(compared())
def test_a_spec_holds_what_same_fields_finds_in_its_items(
    pair: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    stored, wanted = pair
    compact = CompactSpecs.of([("SN-1", stored)])
    expected = same_fields(wanted, stored.items(), IGNORED)
    assert compact.holds("SN-1", wanted, IGNORED) is expected
    assert compact.holds("SN-1", wanted, IGNORED) is expected  # the remembered lookup too
    assert compact.holds("SN-2", wanted, IGNORED) is False


def test_a_spec_holds_its_fields_in_full_or_without_the_empty_ones() -> None:
    compact = CompactSpecs.of([("SN-1", {**DEVICE_SPEC, "other": "server's own"})])
    full = {field: value for field, value in DEVICE_SPEC.items()}
    assert compact.holds("SN-1", full, IGNORED)  # an empty list written as []
    assert compact.holds("SN-1", {"mac": "02:00:00:00:00:01", "profile": "day0"}, IGNORED)
    assert not compact.holds("SN-1", {"profile": "day0"}, IGNORED)  # mac left out
    assert not compact.holds("SN-1", {**full, "selection": None}, IGNORED)
    assert not compact.holds("SN-1", {**full, "other": "server's own"}, IGNORED)
    assert not compact.holds("SN-1", {**full, "mac": "02:00:00:00:00:02"}, IGNORED)


def test_the_lookups_a_process_remembers_are_bounded() -> None:
    fields = [f"f{number}" for number in range(6)]
    compact = CompactSpecs.of([("SN-1", {field: "x" for field in fields})])
    orders = list(itertools.islice(itertools.permutations(fields), 2 * _MAX_LOOKUPS))
    for order in orders:
        assert compact.holds("SN-1", {field: "x" for field in order}, IGNORED)
        assert not compact.holds("SN-1", {field: "y" for field in order}, IGNORED)
    assert len(compact._lookups) == _MAX_LOOKUPS

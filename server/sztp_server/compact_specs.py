"""The specs of a fleet's devices, kept compactly in every server process.

Each process holds the whole state in memory, and devices are nearly all of it. A spec decoded
from JSON is a dict with its own copy of every key; a million of them cost about a kilobyte
each. Here a spec is a tuple: its field names, shared by every spec with the same fields in the
same order, then its values, with an empty list kept as the shared empty tuple (JSON has no
tuples, so nothing else is one) and the values that repeat across a fleet (profile, model)
shared too. A spec is a dict again when it is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from operator import itemgetter
from typing import Any

Spec = Mapping[str, Any]
Row = tuple[Any, ...]

# Distinct (row's fields, compared fields) pairs remembered; a fleet has a handful, and a
# request that writes its specs' fields in ever new orders must not grow a process without end.
_MAX_LOOKUPS = 256
_UNKNOWN: Any = object()

# Fields whose values most devices share with others: one string object each serves them all.
_SHARED_VALUE_FIELDS = frozenset({"profile", "model", "site"})


class CompactSpecs(Mapping[str, Spec]):
    """name → spec, immutable; `updated` makes a changed copy."""

    __slots__ = ("_lookups", "_rows", "_shapes", "_values")

    def __init__(
        self,
        rows: dict[str, Row],
        shapes: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[int, ...]]],
        values: dict[str, str],
    ) -> None:
        self._rows = rows
        self._shapes = shapes
        self._values = values
        self._lookups: dict[tuple[tuple[str, ...], tuple[str, ...], frozenset[str]], _Lookup] = {}

    @classmethod
    def of(cls, specs: Iterable[tuple[str, Spec]]) -> CompactSpecs:
        compact = cls({}, {}, {})
        for name, spec in specs:
            compact._rows[name] = compact._row(spec)
        return compact

    def updated(self, written: Iterable[tuple[str, Spec]], deleted: Iterable[str]) -> CompactSpecs:
        """A copy with `written` put in and then `deleted` taken out; this one is unchanged."""
        changed = CompactSpecs(dict(self._rows), self._shapes, self._values)
        for name, spec in written:
            changed._rows[name] = changed._row(spec)
        for name in deleted:
            changed._rows.pop(name, None)
        return changed

    def __getitem__(self, name: str) -> Spec:
        return _spec(self._rows[name])

    def values_of(self, field: str) -> Iterator[tuple[str, Any]]:
        """(name, value of `field`) of every spec that has the field, without making specs."""
        positions: dict[tuple[str, ...], int | None] = {}
        for name, row in self._rows.items():
            fields = row[0]
            if fields not in positions:
                positions[fields] = fields.index(field) + 1 if field in fields else None
            position = positions[fields]
            if position is not None:
                yield name, row[position]

    def get(self, name: str, default: Any = None) -> Any:  # without Mapping's try/except
        row = self._rows.get(name)
        return default if row is None else _spec(row)

    @staticmethod
    def _items(row: Row) -> Iterable[tuple[str, Any]]:
        values = row[1:]
        if () not in values:
            return zip(row[0], values, strict=True)
        return (
            (field, [] if value == () else value)
            for field, value in zip(row[0], values, strict=True)
        )

    def holds(self, name: str, wanted: Mapping[str, Any], ignored: frozenset[str]) -> bool:
        """`same_fields(wanted, <name's spec>.items(), ignored)`, False when there is no such
        spec. A re-apply compares a million specs this way: the fields `wanted` names are
        found in the row by positions worked out once per (row's fields, wanted's fields),
        and compared as tuples."""
        row = self._rows.get(name)
        if row is None:
            return False
        key = (row[0], tuple(wanted), ignored)
        lookup = self._lookups.get(key, _UNKNOWN)
        if lookup is _UNKNOWN:
            lookup = _lookup(*key)
            if len(self._lookups) < _MAX_LOOKUPS:
                self._lookups[key] = lookup
        if lookup is None:
            return False  # wanted names a field the spec lacks, or one the comparison ignores
        given, others = lookup
        if tuple(wanted.values()) != given(row):
            # Either a value differs, or wanted writes an empty list the row keeps as ().
            return [] in wanted.values() and same_fields(wanted, self._items(row), ignored)
        rest = others(row)
        return rest.count(None) + rest.count(()) == len(rest)

    def __contains__(self, name: object) -> bool:
        return name in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def _row(self, spec: Spec) -> Row:
        fields = tuple(spec)
        shape = self._shapes.get(fields)
        if shape is None:
            shape = self._shapes[fields] = (fields, _shared_value_positions(fields))
        values = list(spec.values())
        for _empty in range(values.count([])):  # without a Python step per value
            values[values.index([])] = ()
        for position in shape[1]:
            value = values[position]
            if isinstance(value, str):
                values[position] = self._values.setdefault(value, value)
        return (shape[0], *values)


def same_fields(
    wanted: Mapping[str, Any], current: Iterable[tuple[str, Any]], ignored: frozenset[str]
) -> bool:
    """`wanted` holds the fields `current` lists, apart from `ignored` ones, with equal values;
    it may leave out those whose value is empty (None or an empty list), and names no other."""
    matched = 0
    for field, value in current:
        if field in ignored:
            continue
        if field in wanted:
            if wanted[field] != value:
                return False
            matched += 1
        elif value is not None and value != []:
            return False
    return matched == len(wanted)


# For a row's field names and the field names a spec compared with it gives: the values of
# those fields, in the order given, and the values of the others, which must be empty.
_Lookup = tuple[Callable[[Row], tuple[Any, ...]], Callable[[Row], tuple[Any, ...]]] | None


def _lookup(fields: tuple[str, ...], given: tuple[str, ...], ignored: frozenset[str]) -> _Lookup:
    positions = {field: position for position, field in enumerate(fields, start=1)}
    if any(field in ignored or field not in positions for field in given):
        return None
    others = [positions[field] for field in fields if field not in ignored and field not in given]
    return _getter([positions[field] for field in given]), _getter(others)


def _getter(positions: list[int]) -> Callable[[Row], tuple[Any, ...]]:
    if len(positions) > 1:
        return itemgetter(*positions)
    if positions:
        (position,) = positions
        return lambda row: (row[position],)
    return lambda row: ()


def _spec(row: Row) -> dict[str, Any]:
    spec = dict(zip(row[0], row[1:], strict=True))
    if () in row:
        for field, value in spec.items():
            if value == ():
                spec[field] = []
    return spec


def _shared_value_positions(fields: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(position for position, field in enumerate(fields) if field in _SHARED_VALUE_FIELDS)

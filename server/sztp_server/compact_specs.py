"""The specs of a fleet's devices, kept compactly in every server process.

Each process holds the whole state in memory, and devices are nearly all of it. A spec decoded
from JSON is a dict with its own copy of every key; a million of them cost about a kilobyte
each. Here a spec is a tuple: its field names, shared by every spec with the same fields in the
same order, then its values, with an empty list kept as the shared empty tuple (JSON has no
tuples, so nothing else is one) and the values that repeat across a fleet (profile, model)
shared too. A spec is a dict again when it is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

Spec = Mapping[str, Any]
Row = tuple[Any, ...]

# Fields whose values most devices share with others: one string object each serves them all.
_SHARED_VALUE_FIELDS = frozenset({"profile", "model"})


class CompactSpecs(Mapping[str, Spec]):
    """name → spec, immutable; `updated` makes a changed copy."""

    __slots__ = ("_rows", "_shapes", "_values")

    def __init__(
        self,
        rows: dict[str, Row],
        shapes: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[int, ...]]],
        values: dict[str, str],
    ) -> None:
        self._rows = rows
        self._shapes = shapes
        self._values = values

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

    def get(self, name: str, default: Any = None) -> Any:  # without Mapping's try/except
        row = self._rows.get(name)
        return default if row is None else _spec(row)

    def items_of(self, name: str) -> Iterable[tuple[str, Any]] | None:
        """The (field, value) pairs of `name`'s spec without making it a dict (None when there
        is no such spec): comparing a million specs with what a client sent is then cheaper."""
        row = self._rows.get(name)
        if row is None:
            return None
        values = row[1:]
        if () not in values:
            return zip(row[0], values, strict=True)
        return (
            (field, [] if value == () else value)
            for field, value in zip(row[0], values, strict=True)
        )

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
        values = [() if value == [] else value for value in spec.values()]
        for position in shape[1]:
            value = values[position]
            if isinstance(value, str):
                values[position] = self._values.setdefault(value, value)
        return (shape[0], *values)


def _spec(row: Row) -> dict[str, Any]:
    spec = dict(zip(row[0], row[1:], strict=True))
    if () in row:
        for field, value in spec.items():
            if value == ():
                spec[field] = []
    return spec


def _shared_value_positions(fields: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(position for position, field in enumerate(fields) if field in _SHARED_VALUE_FIELDS)

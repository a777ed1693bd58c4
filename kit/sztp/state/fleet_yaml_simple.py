"""A fleet's devices written a value a line, read without a YAML parser.

A generated fleet writes every device the same plain way: `- serial: SN-1`, then a
`key: value` line a field, each value plain text, text in quotes without escapes, `[]`, or a
mapping of such values on its line (`voucher: {file: SN-1.vcj}`) or below its key
(`voucher:`, then `file: SN-1.vcj` further in), as PyYAML's `safe_dump` writes it. Regular
expressions read such a list several times faster than PyYAML's composer, which makes a node
and two marks a value. Every line must be one of those lines (printable ASCII, no comment, no
blank line, no value carried on to the next line), or the list is left to the YAML parser:
this only ever reads sooner what the parser would read the same way. A plain value is typed
as the parser types it (`plain_scalar`), and a repeated key, a key that is not text or a value
the parser would refuse sends the list to the parser too, which says what is wrong and where.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache, lru_cache
from itertools import repeat
from typing import Any

_KEY = r"[A-Za-z_][A-Za-z0-9_-]*"
# Printable ASCII but the quote that ends the text (and, in double quotes, the backslash that
# starts an escape).
_SINGLE = r"'([\x20-\x26\x28-\x7e]*)'"
_DOUBLE = r'"([\x20\x21\x23-\x5b\x5d-\x7e]*)"'
# A plain value's first character: one that no implicit YAML type (number, boolean, null,
# merge key, `=`) starts with, so the value is text; or one that may start such a type (a
# dash only before more of the value: `- ` starts a list item), typed by `plain_scalar`.
_TEXT_FIRST = "A-EG-MPQSUVWXZa-eg-mpqsuvwxz_/"
_TYPED_FIRST = r"(?:[0-9+.~=FNOTYfnoty]|-(?=[^ \n]))"
# After its first character plain text may hold any printable character: a colon ends it
# where a space or the line's end follows (`a:b` is text), a space before `#` starts a comment,
# and spaces at the line's end are not part of it.
_PLAIN_REST = r"(?:[!-9;-~]+|:(?=[^ \n])| +(?=[!-\"$-9;-~]))*"
# Inside braces a colon, a comma and a brace end plain text: none are allowed in it.
_FLOW_PLAIN = r"[A-Za-z0-9_./+=~][A-Za-z0-9_./+=~@-]*"
_FLOW_VALUE = rf"'[\x20-\x26\x28-\x7e]*'|\"[\x20\x21\x23-\x5b\x5d-\x7e]*\"|{_FLOW_PLAIN}"
_FLOW_MAPPING = rf"\{{{_KEY}: (?:{_FLOW_VALUE})(?:, {_KEY}: (?:{_FLOW_VALUE}))*\}}"
_FLOW_PAIR = re.compile(rf"({_KEY}): ({_FLOW_VALUE})")


# How much of a list is read first, to tell quickly that it is not simple; then how much at a
# time (the matches of a chunk are held at once).
_PROBE = 4096
_CHUNK = 1 << 20
# Item shapes remembered: a file has a few; a hostile one could have a new one a chunk.
_SHAPES = 64

# What a value of each kind is written as, in an item's shape: its text in the only group.
_PLAIN_TEXT = rf"([{_TEXT_FIRST}]{_PLAIN_REST})"
_KIND_PATTERNS = {"plain": _PLAIN_TEXT, "single": _SINGLE, "double": _DOUBLE}
_VALUE_PATTERNS = {**_KIND_PATTERNS, "typed": f"({_TYPED_FIRST}{_PLAIN_REST})"}

# The first item's start: its indentation, and the spaces between its dash and its first key.
_LAYOUT = re.compile(r"( *)-( +)[A-Za-z_]")

# (line start, key, space, single, double, plain text, typed, flow collection)
_Line = tuple[str, str, str, str, str, str, str, str]


class _NotSimple(Exception):
    """The list holds something this reader does not read as the YAML parser would."""


def simple_items(text: str) -> list[dict[str, Any]] | None:
    """The devices of `text`, a block list of mappings as the `devices:` key holds it
    (every item `- key: value` at one indentation), or None when some line of it is not
    of the simple kind this reader reads."""
    import yaml

    layout = _LAYOUT.match(text)
    if layout is None:
        return None
    # Spaces at the end of a line, and blank lines after the last, are nothing to YAML.
    body = "\n" + text.rstrip(" \n")
    reader = _Reader(len(layout.group(1)), 1 + len(layout.group(2)))
    start, size = 0, _PROBE  # a small first chunk: a list not simple from its start fails fast
    try:
        while start < len(body):
            end = body.find(reader.item_start, start + size)  # chunks of whole items
            end = len(body) if end < 0 else end
            if not reader.read(body[start:end]):
                return None
            start, size = end, _CHUNK
    except (_NotSimple, yaml.YAMLError, ValueError):
        return None
    return reader.items


class _Reader:
    """Reads a list chunk by chunk, each chunk whole items starting with a newline.

    An item is `indent` spaces, a dash and spaces up to its first key (`step` characters
    from the dash: `- ` as PyYAML writes by default, `-   ` with `indent=4`), its other keys
    at the first key's column, and the keys of a field's mapping (`voucher:` and below it
    `file: x`) `step` further in.

    A generated list writes its items alike: the same keys in the same order, each value
    quoted the same way. A chunk whose items all have the shape of its first item is read by
    one expression for that shape, a match an item (the values in its groups); any other
    chunk line by line."""

    def __init__(self, indent: int, step: int) -> None:
        self.indent = indent
        self.step = step
        self.item_start = "\n" + " " * indent + "-" + " " * (step - 1)
        self.line = _line(indent, step)
        self.items: list[dict[str, Any]] = []
        self.keys: dict[str, str] = {}  # each key's text once, shared by every item

    def read(self, chunk: str) -> bool:
        """Whether every line of `chunk` is simple; its items are then added."""
        next_item = chunk.find(self.item_start, 1)
        shape = self._shape(chunk if next_item < 0 else chunk[:next_item])
        if shape is not None:
            found = shape.pattern.findall(chunk)
            # Each match starts at a newline and holds as many as its item has lines.
            if len(found) * shape.lines == chunk.count("\n"):
                if shape.flat:  # a group a key, and the empty one: zip stops at the keys
                    self.items.extend(map(dict, map(zip, repeat(shape.keys), found)))
                else:
                    self.items.extend(map(shape.build, found))
                return True
        return self._read_lines(chunk)

    def _lines(self, chunk: str) -> list[_Line] | None:
        found = self.line.findall(chunk)
        # Matches start at a newline and end before the next: one per newline, every line.
        return found if len(found) == chunk.count("\n") else None

    def _read_lines(self, chunk: str) -> bool:
        lines = self._lines(chunk)
        if lines is None:
            return False
        items: list[dict[str, Any]] = []
        append = items.append
        item: dict[str, Any] = {}
        keys = self.keys
        step = self.step
        # The mapping the lines further in fill: that of the last field written without a
        # value; each such field's item, name and mapping.
        field: dict[str, Any] | None = None
        fields: list[tuple[dict[str, Any], str, dict[str, Any]]] = []
        for mark, key, spaced, single, double, text_value, typed, flow in lines:
            name = keys.get(key) or self._key(key)
            value = text_value or single or double or _other(spaced, typed, flow)
            if len(mark) > step:  # a key of the mapping of the field above
                if field is None:
                    return False  # the field above has a value already: not valid YAML
                field[name] = value
                continue
            if mark[0] == "-":
                item = {}
                append(item)
            if spaced:
                item[name] = value
                field = None
            else:  # no value: null, unless keys further in follow
                item[name] = field = {}
                fields.append((item, name, field))
        # Each line is a key: fewer keys than lines means a key repeated, which the parser
        # refuses, with its line.
        if sum(map(len, items)) + sum(len(mapping) for _, _, mapping in fields) != len(lines):
            return False
        for owner, name, mapping in fields:
            if not mapping:
                owner[name] = None
        self.items.extend(items)
        return True

    def _key(self, key: str) -> str:
        name = self.keys[key] = _text_key(key)
        return name

    def _shape(self, item: str) -> _Shape | None:
        """The shape of items like `item`, if each of its values is plain or quoted text, a
        typed plain value, or a mapping of such values below its key; else None."""
        lines = self._lines(item)
        if lines is None:
            return None
        fields: list[_Field] = []
        for mark, key, spaced, single, double, text_value, typed, _ in lines:
            kind = (
                "plain" if text_value else "single" if single else "double" if double else
                "typed" if typed else "" if spaced else "mapping"
            )  # fmt: skip
            if not kind:
                return None  # a flow collection, or empty quotes
            name = self.keys.get(key) or self._key(key)
            if len(mark) <= self.step:
                fields.append((name, kind, ()))
            elif fields and fields[-1][1] == "mapping" and kind != "mapping":
                field_name, _, below = fields[-1]
                fields[-1] = (field_name, "mapping", (*below, (name, kind, ())))
            else:
                return None
        keys = [name for name, _, _ in fields]
        for _, kind, below in fields:
            if kind == "mapping" and not below:
                return None  # null
            keys.extend(inner for inner, _, _ in below)
        if len(set(keys)) != len(keys):
            return None  # a repeated key (or a key of a mapping named as a field: not worth it)
        return _shape_of(self.indent, self.step, tuple(fields))


# (key, kind of value, the fields of a mapping below it)
_Field = tuple[str, str, tuple[Any, ...]]


@lru_cache(maxsize=_SHAPES)
def _shape_of(indent: int, step: int, fields: tuple[_Field, ...]) -> _Shape:
    return _Shape(indent, step, fields)


class _Shape:
    """Items whose lines are `fields`, in that order: the expression for such an item (a
    group a value) and how an item is made from its match."""

    def __init__(self, indent: int, step: int, fields: tuple[_Field, ...]) -> None:
        self.fields = fields
        self.keys = tuple(name for name, _, _ in fields)
        self.flat = all(kind in _KIND_PATTERNS for _, kind, _ in fields)
        lines: list[str] = []
        for number, (name, kind, below) in enumerate(fields):
            start = f"\\n {{{indent}}}{'-' if number == 0 else ' '} {{{step - 1}}}"
            if kind != "mapping":
                lines.append(f"{start}{re.escape(name)}: {_VALUE_PATTERNS[kind]}")
                continue
            lines.append(f"{start}{re.escape(name)}:")
            lines.extend(
                f"\\n {{{indent + 2 * step}}}{re.escape(inner)}: {_VALUE_PATTERNS[inner_kind]}"
                for inner, inner_kind, _ in below
            )
        self.lines = len(lines)
        # An empty group last: findall then gives tuples however few values an item has.
        self.pattern = re.compile("".join(lines) + r"(?![^\n])()")

    def build(self, values: tuple[str, ...]) -> dict[str, Any]:
        """The item whose values `values` are, as matched."""
        item: dict[str, Any] = {}
        taken = iter(values)
        for name, kind, below in self.fields:
            if kind == "mapping":
                item[name] = {
                    inner: _plain(next(taken)) if inner_kind == "typed" else next(taken)
                    for inner, inner_kind, _ in below
                }
            else:
                item[name] = _plain(next(taken)) if kind == "typed" else next(taken)
        return item


@cache
def _line(indent: int, step: int) -> re.Pattern[str]:
    """A line of the list, newline first (the search then skips to the next line at C
    speed): its start (an item's dash, or spaces up to a field's key or further in to a key of
    a field's mapping), the key, and the value in the group of its kind; no value at all
    leaves the space group empty."""
    return re.compile(
        rf"\n {{{indent}}}(- {{{step - 1}}}| {{{2 * step}}}| {{{step}}})({_KEY}):"
        rf"(?:( )(?:{_SINGLE}|{_DOUBLE}|{_PLAIN_TEXT}|({_TYPED_FIRST}{_PLAIN_REST})"
        rf"|({_FLOW_MAPPING}|\[\]|\{{\}})))?(?![^\n])"
    )


def _other(spaced: str, typed: str, flow: str) -> Any:
    """A value that is not plain text: no value at all (null), a typed plain value, a flow
    mapping, or '' (empty quotes)."""
    if not spaced:
        return None
    if typed:
        return _plain(typed)
    if flow:
        return _flow_collection(flow)
    return ""


def _plain(text: str) -> Any:
    return _plain_scalar()(text)


@cache
def _plain_scalar() -> Callable[[str], Any]:
    from .fleet_yaml import plain_scalar  # not at the top: fleet_yaml imports this module

    return plain_scalar


def _text_key(key: str) -> str:
    """`key` if the parser reads it as text (`yes:` is a boolean key, `1:` a number)."""
    value = _plain(key)
    if not isinstance(value, str):
        raise _NotSimple
    return value


def _flow_collection(text: str) -> dict[str, Any] | list[Any]:
    if text == "[]":
        return []
    pairs = _FLOW_PAIR.findall(text)
    mapping = {
        _text_key(key): value[1:-1] if value[0] in "'\"" else _plain(value) for key, value in pairs
    }
    if len(mapping) != len(pairs):
        raise _NotSimple
    return mapping

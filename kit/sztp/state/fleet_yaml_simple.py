"""A fleet's devices written a value a line, read without a YAML parser.

A generated fleet writes every device the same plain way: `- serial: SN-1`, then a
`key: value` line a field, each value plain text, text in quotes without escapes, or a flow
mapping of such values (`voucher: {file: SN-1.vcj}`). A regular expression reads such a list
several times faster than PyYAML's composer, which makes a node and two marks a value. Every
line must be one of those lines (printable ASCII, no comment, no blank line, no value carried
on to the next line), or the list is left to the YAML parser: this only ever reads sooner
what the parser would read the same way. A plain value is typed as the parser types it
(`plain_scalar`), and a repeated key, a key that is not text or a value the parser would
refuse sends the list to the parser too, which says what is wrong and where.
"""

from __future__ import annotations

import re
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
# A colon ends plain text where a space or the line's end follows it (`a:b` is text).
_PLAIN_REST = r"[A-Za-z0-9_./+=~:@-]*(?<!:)"
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

# (an item's first field or not, key, space, single, double, plain text, typed, flow mapping)
_Line = tuple[str, str, str, str, str, str, str, str]


class _NotSimple(Exception):
    """The list holds something this reader does not read as the YAML parser would."""


def simple_items(text: str) -> list[dict[str, Any]] | None:
    """The devices of `text`, a block list of mappings as the `devices:` key holds it
    (every item `- key: value` at one indentation), or None when some line of it is not
    of the simple kind this reader reads."""
    import yaml

    indent = len(text) - len(text.lstrip(" "))
    # Spaces at the end of a line, and blank lines after the last, are nothing to YAML.
    body = "\n" + text.rstrip(" \n")
    reader = _Reader(indent)
    if not indent or not body.startswith(reader.item_start):
        return None
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

    A generated list writes its items alike: the same keys in the same order, each value
    quoted the same way. A chunk whose items all have the shape of its first item is read by
    one expression for that shape, a match an item (the values in its groups); any other
    chunk line by line."""

    def __init__(self, indent: int) -> None:
        self.indent = indent
        self.item_start = "\n" + " " * indent + "- "
        self.line = _line(indent)
        self.items: list[dict[str, Any]] = []
        self.keys: dict[str, str] = {}  # each key's text once, shared by every item

    def read(self, chunk: str) -> bool:
        """Whether every line of `chunk` is simple; its items are then added."""
        next_item = chunk.find(self.item_start, 1)
        shape = self._shape(chunk if next_item < 0 else chunk[:next_item])
        if shape is not None:
            keys, pattern = shape
            found = pattern.findall(chunk)
            # Each match starts at a newline and holds as many as its item has lines.
            if len(found) * len(keys) == chunk.count("\n"):
                if len(keys) == 1:
                    self.items.extend({keys[0]: value} for value in found)
                else:  # a group a key: zip needs no check
                    self.items.extend(map(dict, map(zip, repeat(keys), found)))
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
        for mark, key, spaced, single, double, text_value, typed, flow in lines:
            if mark == "-":
                item = {}
                append(item)
            value = text_value or single or double
            item[keys.get(key) or self._key(key)] = value or _other(spaced, typed, flow)
        if sum(map(len, items)) != len(lines):
            return False  # a key repeated in some item: the parser refuses it, with its line
        self.items.extend(items)
        return True

    def _key(self, key: str) -> str:
        name = self.keys[key] = _text_key(key)
        return name

    def _shape(self, item: str) -> tuple[tuple[str, ...], re.Pattern[str]] | None:
        """(the keys, the expression) for items like `item`, if each of its values is text,
        plain or quoted; else None."""
        lines = self._lines(item)
        if lines is None:
            return None
        fields = []
        for _, key, _, single, double, text_value, _, _ in lines:
            kind = "plain" if text_value else "single" if single else "double" if double else ""
            if not kind:
                return None  # null, typed, a flow mapping, or empty quotes
            fields.append((self.keys.get(key) or self._key(key), kind))
        keys = tuple(key for key, _ in fields)
        if len(set(keys)) != len(keys):
            return None
        return keys, _shape_pattern(self.indent, tuple(fields))


@cache
def _line(indent: int) -> re.Pattern[str]:
    """A line of the list, newline first (the search then skips to the next line at C
    speed): an item's first field (`-`) or another of its fields (` `), the key, and the
    value in the group of its kind; no value at all (null) leaves the space group empty."""
    return re.compile(
        rf"\n {{{indent}}}([- ]) ({_KEY}):(?:( )(?:{_SINGLE}|{_DOUBLE}"
        rf"|{_PLAIN_TEXT}|({_TYPED_FIRST}{_PLAIN_REST})|({_FLOW_MAPPING})))?"
        r"(?![^\n])"
    )


@lru_cache(maxsize=_SHAPES)
def _shape_pattern(indent: int, fields: tuple[tuple[str, str], ...]) -> re.Pattern[str]:
    """An item whose lines are `fields` (key, kind of value), in that order."""
    lines = (
        f"\\n {{{indent}}}{'-' if number == 0 else ' '} {re.escape(key)}: {_KIND_PATTERNS[kind]}"
        for number, (key, kind) in enumerate(fields)
    )
    return re.compile("".join(lines) + r"(?![^\n])")


def _other(spaced: str, typed: str, flow: str) -> Any:
    """A value that is not plain text: no value at all (null), a typed plain value, a flow
    mapping, or '' (empty quotes)."""
    if not spaced:
        return None
    if typed:
        return _plain(typed)
    if flow:
        return _flow_mapping(flow)
    return ""


def _plain(text: str) -> Any:
    from .fleet_yaml import plain_scalar

    return plain_scalar(text)


def _text_key(key: str) -> str:
    """`key` if the parser reads it as text (`yes:` is a boolean key, `1:` a number)."""
    value = _plain(key)
    if not isinstance(value, str):
        raise _NotSimple
    return value


def _flow_mapping(text: str) -> dict[str, Any]:
    pairs = _FLOW_PAIR.findall(text)
    mapping = {
        _text_key(key): value[1:-1] if value[0] in "'\"" else _plain(value) for key, value in pairs
    }
    if len(mapping) != len(pairs):
        raise _NotSimple
    return mapping

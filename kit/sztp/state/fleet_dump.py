"""YAML text of a fleet document, written entry by entry (an export of a million devices
starts at once and is never held whole).

Only what the admin API holds is written: mappings, lists, text, integers, booleans and null,
in block style, the way `sztpctl apply -f` reads them back (`fleet_yaml.yaml_loaders`, YAML
1.1 without timestamps). Text that could be read as anything else is double-quoted with every
character YAML could misread escaped; multi-line text (PEM, scripts) is a literal block where
that keeps it exactly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import Any

# Text left plain: it starts with a letter or '_' and holds no space, ':' or '#', so it is
# never a number, a date, a key, a comment or a tag; or it is a word in angle brackets, as
# the marker of a hidden secret is. Words YAML 1.1 reads as booleans or null are quoted.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*|<[A-Za-z_]+>")
_NOT_TEXT = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
# What YAML reads as itself inside double quotes or a literal block: not the control characters
# (json.dumps escapes those), DEL and the C1 controls, the BOM, non-characters, lone surrogates,
# nor the Unicode line breaks (U+0085, U+2028, U+2029), which a reader would fold like newlines.
_PRINTABLE = "\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff"
_NEEDS_ESCAPE = re.compile(f"[^{_PRINTABLE}]")
# Text a literal block keeps exactly: printable lines (no tabs: PyYAML writes none in blocks
# either) without trailing spaces. It must also hold a line that is not empty (`_literal`).
_LITERAL = re.compile(f"(?:[{_PRINTABLE}]*(?<! )\n)*[{_PRINTABLE}]*(?<! )")
_INDENT = 2


def yaml_text(sections: Iterable[tuple[str, Any]]) -> Iterator[str]:
    """The YAML document of `sections` (top-level key, value), a piece per entry: a section
    that is an iterator is written as a list, entry by entry as they arrive."""
    for key, value in sections:
        if not isinstance(value, Iterator):
            yield _mapping_block({key: value}, 0)
            continue
        header = f"{_key(key)}:"
        for item in value:
            if header:
                yield header + "\n"
                header = ""
            yield "-" + _sequence_item(item, 0)
        if header:
            yield header + " []\n"


def _mapping_block(mapping: Mapping[str, Any], indent: int) -> str:
    pad = " " * indent
    return "".join(
        f"{pad}{_key(key)}:{_mapping_value(value, indent)}" for key, value in mapping.items()
    )


def _mapping_value(value: Any, indent: int) -> str:
    """What follows a key's colon; a list is not indented under its key, as PyYAML writes it."""
    # Text first: most values are (and a str is never a mapping or a list).
    if isinstance(value, str):
        if "\n" in value and value.strip("\n") and _LITERAL.fullmatch(value):
            return " " + _literal(value, indent + _INDENT)
        return " " + _text(value) + "\n"
    if isinstance(value, Mapping) and value:
        return "\n" + _mapping_block(value, indent + _INDENT)
    if isinstance(value, list) and value:
        return "\n" + _sequence_block(value, indent)
    return " " + _scalar(value) + "\n"


def _sequence_block(items: list[Any], indent: int) -> str:
    pad = " " * indent
    return "".join(f"{pad}-{_sequence_item(item, indent)}" for item in items)


def _sequence_item(item: Any, indent: int) -> str:
    """What follows an item's dash: a mapping's first key on the dash's line."""
    if isinstance(item, str):
        return " " + _text(item) + "\n"
    if isinstance(item, Mapping) and item:
        return " " + _mapping_block(item, indent + _INDENT)[indent + _INDENT :]
    if isinstance(item, list) and item:
        return "\n" + _sequence_block(item, indent + _INDENT)
    return " " + _scalar(item) + "\n"


@lru_cache(maxsize=1024)
def _key(key: str) -> str:
    """A key as written: a fleet file has few distinct keys, each written once per entry."""
    return _text(key)


def _text(value: str) -> str:
    if _PLAIN.fullmatch(value) and value.lower() not in _NOT_TEXT:
        return value
    return _NEEDS_ESCAPE.sub(_escape, json.dumps(value, ensure_ascii=False))


def _scalar(value: Any) -> str:
    """Anything but a non-empty mapping or list, on one line."""
    if isinstance(value, str):
        return _text(value)
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    # The admin API holds no fractions (and JSON's exponents read back as text in YAML 1.1).
    raise TypeError(f"a fleet file holds no {type(value).__name__} values")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _literal(text: str, indent: int) -> str:
    """A literal block (`|`): its chomping keeps exactly the final line breaks `text` has, and
    its indentation is given when the first line starts with a space or is empty."""
    lines = text.split("\n")
    if not text.endswith("\n"):
        chomping = "-"
    else:
        lines.pop()
        chomping = "+" if text.endswith("\n\n") else ""
    indentation = str(_INDENT) if text[0] in " \n" else ""
    pad = " " * indent
    body = "".join(f"{pad}{line}\n" if line else "\n" for line in lines)
    return f"|{indentation}{chomping}\n{body}"

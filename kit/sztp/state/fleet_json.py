"""A fleet file written as JSON (`*.json`): the same document as the YAML one.

JSON is what a program that generates a fleet of hundreds of thousands of devices writes most
easily, and the standard library's C decoder reads it many times faster than a YAML parser
builds the same document. It is refused as the YAML is (`fleet_yaml`): a repeated key, a value
nested deeper than MAX_NESTING; JSON has no aliases to expand. NaN and Infinity, which Python's
decoder would accept, are not JSON and are refused too.
"""

from __future__ import annotations

import json
from itertools import chain
from pathlib import Path
from typing import Any, NoReturn

from .fleet_yaml import MAX_NESTING, FleetError, YamlPath, _too_deep


class _RepeatedKey(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


class _NotJson(Exception):
    def __init__(self, constant: str) -> None:
        self.constant = constant


def parse_json(text: str, path: Path) -> Any:
    """The document in `text`; FleetError naming the file (and the line, for a syntax error)
    if it is not JSON, repeats a key in an object or nests deeper than MAX_NESTING."""
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise FleetError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except _RepeatedKey as exc:
        raise FleetError(f"{path}: an object repeats the key {exc.key!r}") from None
    except _NotJson as exc:
        raise FleetError(f"{path}: {exc.constant} is not a JSON number") from None
    except RecursionError:
        raise FleetError(_too_deep(str(path), ())) from None
    too_deep = _first_too_deep(document)
    if too_deep is not None:
        raise FleetError(_too_deep(str(path), too_deep))
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return members


def _refuse_constant(constant: str) -> NoReturn:
    raise _NotJson(constant)


def _first_too_deep(document: Any) -> YamlPath | None:
    """Where a list or an object sits deeper than MAX_NESTING, or None; without recursion,
    and keeping only depths until there is something to name."""
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if depth >= MAX_NESTING:
            return _path_to_depth(document, MAX_NESTING)
        if type(value) is list and _objects_of_plain_values(value):
            # A section of entries holding only text and numbers (a million devices): their
            # depth is known without visiting each of them.
            if value and depth + 1 >= MAX_NESTING:
                return _path_to_depth(document, MAX_NESTING)
            continue
        items = value.values() if type(value) is dict else value
        pending.extend((item, depth + 1) for item in items if type(item) in _CONTAINERS)
    return None


def _objects_of_plain_values(items: list[Any]) -> bool:
    """Every item is an object whose values are neither lists nor objects (found without a
    Python loop over the items)."""
    if not set(map(type, items)) <= {dict}:
        return False
    values = chain.from_iterable(map(dict.values, items))
    return set(map(type, values)).isdisjoint(_CONTAINERS)


def _path_to_depth(document: Any, depth: int) -> YamlPath:
    """The path of the first list or object found `depth` levels down."""
    pending: list[tuple[Any, YamlPath]] = [(document, ())]
    while True:
        value, where = pending.pop()
        if len(where) == depth:
            return where
        steps = value.items() if type(value) is dict else enumerate(value)
        pending.extend(
            (item, (*where, step))
            for step, item in reversed(list(steps))
            if type(item) in _CONTAINERS
        )


# What json.loads makes of arrays and objects (the hook above makes plain dicts).
_CONTAINERS = (dict, list)

"""A fleet file's YAML, parsed as if it were hostile: it may come from a pull request.

A YAML parser on its own accepts what a fleet file must not be: a repeated key (PyYAML keeps
the last, silently), nesting deep enough to exhaust the parser or Python's recursion limit, and
aliases that expand a few lines into a billion values ("billion laughs"). This module refuses
each of those with the file, the line and the key, before anything walks the document; and
keeps every value's line so that later checks can name it too (`index_lines`, `line_of`).

It also holds what the rest of the loader shares for its messages: `FleetError`, `YamlPath`
and `dotted`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..errors import SztpError
from .fleet_yaml_parts import parse_in_parts

YamlPath = tuple[str | int, ...]
# Values in the document once every alias is expanded (10,000 devices come to about 100,000).
MAX_VALUES = 5_000_000
# A fleet file nests about six levels (devices, an entry, its selection rules, a rule, a field);
# deeper input is refused in this loader's own words before any parser limit or recursion.
MAX_NESTING = 32


class FleetError(SztpError):
    """The fleet file is malformed; the message names the file, the line and the field."""


def dotted(path: YamlPath) -> str:
    """`devices[2].voucher` for ("devices", 2, "voucher")."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or "(document)"


def line_of(path: YamlPath, lines: Mapping[YamlPath, int]) -> int:
    """The line of `path`, else of the nearest value holding it that `lines` knows."""
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"


class YamlRefused(Exception):
    """The loader refuses what it builds; `parse_yaml` finds the place for the message."""


class _DuplicateKeys(YamlRefused):
    """Some mapping repeats a key; `index_lines` finds the first one for the message."""


class _TooDeep(YamlRefused):
    """Some value is nested deeper than MAX_NESTING; `_nesting_error` finds where."""


@cache
def yaml_loaders() -> tuple[type, type]:
    """(the loader, the same without its duplicate-key check)."""
    import yaml

    # libyaml parses a 10,000-device fleet ten times faster than the pure-Python parser.
    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    # libyaml calls back into Python to tag every node (90,000 calls for 10,000 devices);
    # without path resolvers or catch-all implicit resolvers (none in the safe loader), a
    # scalar's tag depends only on its text, so the callbacks can be this short.
    direct = not base.yaml_path_resolvers and None not in implicit_resolvers

    class Loader(base):  # type: ignore[misc, valid-type]
        """Without implicit timestamps: `2024-05-01` stays text (JSON has no dates, and an
        OS version must not turn into a date)."""

        yaml_implicit_resolvers = implicit_resolvers

        if direct:

            def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> str:
                # PyYAML's Resolver.resolve, less the parts that cannot apply here.
                if kind is yaml.ScalarNode:
                    return _implicit_tag(value, implicit_resolvers) if implicit[0] else _STR_TAG
                return super().resolve(kind, value, implicit)

            def descend_resolver(self, current_node: Any, current_index: Any) -> None:
                pass  # only path resolvers need the path

            def ascend_resolver(self) -> None:
                pass

    class StrictLoader(Loader):
        """Refuses duplicate keys, which PyYAML would resolve silently by keeping the last."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
            # Counted while building (here and in `_build`), it costs nothing next to a
            # separate walk over every node. Keys compare as text, as in `index_lines`.
            if len({str(key.value) for key, _ in node.value}) != len(node.value):
                raise _DuplicateKeys
            return super().construct_mapping(node, deep)

    return StrictLoader, Loader


def _implicit_tag(value: str, resolvers: Mapping[str, list[tuple[str, Any]]]) -> str:
    for tag, regexp in resolvers.get(value[:1], ()):
        if regexp.match(value):
            return tag
    return _STR_TAG


def plain_scalar(text: str) -> Any:
    """The value of `text` written plain (unquoted), as the fleet's loader reads it: text, or
    a number, a boolean or null by YAML 1.1's implicit types (dates stay text); YAMLError for
    what the loader refuses (`=`)."""
    import yaml

    typed = _any_implicit_type(text[:1])
    if typed is None or not typed.match(text):
        return text
    loader = _scalar_loader()
    tag = _implicit_tag(text, loader.yaml_implicit_resolvers)
    constructors = loader.yaml_constructors
    # Called directly: the loader's construct_object would remember every node it was given.
    construct = constructors.get(tag, constructors[None])
    return construct(loader, yaml.ScalarNode(tag, text))


@cache
def _any_implicit_type(first: str) -> re.Pattern[str] | None:
    """One expression for every implicit type a plain scalar starting with `first` may have
    (one match instead of one per type, for text that has none)."""
    patterns = _scalar_loader().yaml_implicit_resolvers.get(first)
    if not patterns:
        return None
    return re.compile(
        "|".join(
            f"(?{'x' if regexp.flags & re.VERBOSE else ''}:{regexp.pattern})"
            for _, regexp in patterns
        )
    )


@cache
def _scalar_loader() -> Any:
    strict, _ = yaml_loaders()
    return strict("")


def parse_yaml(text: str, path: Path) -> Any:
    """The document in `text`, refused (FleetError) if it is not valid YAML, repeats a key or
    nests deeper than MAX_NESTING."""
    import yaml

    document = parse_in_parts(text)  # a large fleet's devices, by several processes at once
    if document is not None:
        return document
    _, lenient = yaml_loaders()
    try:
        try:
            return parse_strict(text, depth=1)
        except _DuplicateKeys:
            # Construction expands merge keys (`<<: *anchor`) in place, which repeats keys
            # legitimately: look again, in document order, at an untouched tree.
            index_lines(compose(text), (), {}, path, set())
            return _construct(text, lenient)
    except (_TooDeep, RecursionError):
        raise _nesting_error(text, path) or FleetError(_too_deep(str(path), ())) from None
    except yaml.YAMLError as exc:
        # A parser may have its own nesting limit (libyaml's is 1,000 levels): if that is what
        # stopped it, say so in this loader's own words, with the line and the key.
        too_deep = _nesting_error(text, path)
        if too_deep is not None:
            raise too_deep from None
        if isinstance(exc, yaml.MarkedYAMLError):
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = ", ".join(part for part in (exc.context, exc.problem) if part) or "malformed"
            raise FleetError(f"{path}{line}: not valid YAML: {problem}") from None
        raise FleetError(f"{path}: not valid YAML: {exc}") from None


def _nesting_error(text: str, path: Path) -> FleetError | None:
    """The error for the first value nested deeper than MAX_NESTING, or None if there is none
    before the text's first YAML error.

    Walks the parser's events: no recursion, nothing built. libyaml's events come first. Its
    scanner reads ahead of the last event by at most one line or 1,024 characters (the most a
    simple key may span), so if it failed before the limit, its own nesting limit can only have
    been the cause when that stretch holds enough brackets: only then is the pure-Python parser,
    which has no such limit but is slower, run as well.
    """
    import yaml

    strict, _ = yaml_loaders()
    walk = _NestingWalk(path)
    try:
        return walk.run(text, strict)
    except yaml.YAMLError:
        libyaml = getattr(yaml, "CSafeLoader", None)
        if libyaml is None or not issubclass(strict, libyaml) or not walk.brackets_ahead(text):
            return None
    try:
        return _NestingWalk(path).run(text, yaml.SafeLoader)
    except yaml.YAMLError:
        return None


@dataclass
class _Level:
    """An open collection in `_NestingWalk`: the key or index of the value being read."""

    step: str | int
    mapping: bool
    at_key: bool = False


class _NestingWalk:
    """Follows the key path through a stream of parser events, up to MAX_NESTING levels."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.levels: list[_Level] = []
        self.last_index = 0

    def run(self, text: str, loader_class: type) -> FleetError | None:
        import yaml

        for event in yaml.parse(text, Loader=loader_class):
            # Both parsers mark every event; the stubs allow None.
            start, end = event.start_mark, event.end_mark
            self.last_index = end.index if end is not None else self.last_index
            if isinstance(event, yaml.CollectionStartEvent):
                if len(self.levels) >= MAX_NESTING:
                    where = tuple(level.step for level in self.levels)
                    line = f":{start.line + 1}" if start is not None else ""
                    return FleetError(_too_deep(f"{self.path}{line}", where))
                if self.levels and self.levels[-1].at_key:
                    self.levels[-1].step = "?"  # a collection as a key has no name to show
                mapping = isinstance(event, yaml.MappingStartEvent)
                self.levels.append(_Level("" if mapping else 0, mapping, at_key=mapping))
            elif isinstance(event, yaml.CollectionEndEvent):
                self.levels.pop()
                self._node_done()
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                if self.levels and self.levels[-1].at_key:
                    self.levels[-1].step = getattr(event, "value", "*")
                self._node_done()
        return None

    def brackets_ahead(self, text: str) -> bool:
        ahead = text[self.last_index : self.last_index + 2 * 1024]
        return ahead.count("[") + ahead.count("{") >= MAX_NESTING - len(self.levels)

    def _node_done(self) -> None:
        if not self.levels:
            return
        level = self.levels[-1]
        if level.mapping:
            level.at_key = not level.at_key
        else:
            level.step = int(level.step) + 1


def _too_deep(place: str, where: YamlPath) -> str:
    key = f"{dotted(where)}: " if where else ""
    return f"{place}: {key}nested more than {MAX_NESTING} levels deep, too deep for a fleet file"


def parse_strict(text: str, *, depth: int) -> Any:
    """The value `text` holds, read as the value `depth` levels down a fleet document (1: the
    document itself); YamlRefused for a repeated key or a value nested too deep, YAMLError for
    anything else."""
    strict, _ = yaml_loaders()
    loader = strict(text)
    try:
        root = loader.get_single_node()
        return None if root is None else _build(root, loader, {}, depth)
    finally:
        loader.dispose()


def _build(node: Any, loader: Any, built: dict[int, Any], depth: int) -> Any:
    """The Python value of `node`, as `loader` would construct it.

    Plain text, lists and maps with text keys, nearly all of a fleet file, are built here:
    PyYAML's generic constructor (a generator per collection, dispatch per node) takes four
    times as long for them. Anything else (numbers, booleans, merge keys, explicit tags) is
    left to `loader`. `built` keeps each collection built once, so aliases share it.
    """
    if node.tag == _STR_TAG and node.id == "scalar":
        return node.value
    done = built.get(id(node))
    if done is not None:
        return done
    if depth > MAX_NESTING and node.id != "scalar":
        raise _TooDeep
    if node.tag == _SEQ_TAG and node.id == "sequence":
        items: list[Any] = []
        built[id(node)] = items
        items.extend(_build(item, loader, built, depth + 1) for item in node.value)
        return items
    if (
        node.tag == _MAP_TAG
        and node.id == "mapping"
        and all(key.tag == _STR_TAG and key.id == "scalar" for key, _ in node.value)
    ):
        mapping: dict[str, Any] = {}
        built[id(node)] = mapping
        for key, value in node.value:
            mapping[key.value] = _build(value, loader, built, depth + 1)
        if len(mapping) != len(node.value):
            raise _DuplicateKeys
        return mapping
    _check_depth(node, depth)
    return loader.construct_object(node, deep=True)


def _check_depth(node: Any, depth: int) -> None:
    """Raise _TooDeep if `node` (at `depth`) holds collections nested deeper than allowed."""
    pending = [(node, depth)]
    seen: set[int] = set()  # aliases: each node once
    while pending:
        node, depth = pending.pop()
        if not isinstance(node.value, list) or id(node) in seen:
            continue
        if depth > MAX_NESTING:
            raise _TooDeep
        seen.add(id(node))
        for item in node.value:  # a mapping's items are (key, value) pairs
            parts = item if isinstance(item, tuple) else (item,)
            pending.extend((part, depth + 1) for part in parts)


def _construct(text: str, loader_class: type) -> Any:
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def compose(text: str) -> Any:
    """The node tree of `text`, which knows the line of each value."""
    _, lenient = yaml_loaders()
    loader = lenient(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def index_lines(
    node: Any, path: YamlPath, lines: dict[YamlPath, int], file: Path, seen: set[int]
) -> None:
    """Record each value's line; refuse duplicate keys (PyYAML would keep the last silently)."""
    import yaml

    lines[path] = node.start_mark.line + 1
    if id(node) in seen:  # an alias: indexed where its anchor is (and no endless recursion)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in keys:
                raise FleetError(
                    f"{file}:{key_node.start_mark.line + 1}: {dotted((*path, key))}: duplicate key"
                )
            keys.add(key)
            index_lines(value_node, (*path, key), lines, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            index_lines(item, (*path, index), lines, file, seen)


class _TooLarge(Exception):
    """Aliases expand the document beyond MAX_VALUES values; `where` is the first such value."""

    def __init__(self, where: YamlPath) -> None:
        self.where = where


class _Cycle(Exception):
    """An alias refers to a collection that contains it; `where` is the alias."""

    def __init__(self, where: YamlPath) -> None:
        self.where = where


def check_expansion(document: Any, path: Path, lines: Mapping[YamlPath, int]) -> None:
    """Refuse a document whose aliases make it, expanded, larger than MAX_VALUES values, or
    endless, or nested too deep.

    `_build` shares an aliased collection instead of copying it, so loading is cheap; but the
    schema check, the resolver, `sztpctl dhcp` and the JSON sent to the server all walk the
    expanded tree: ten aliases of ten aliases, nine levels deep, are a billion values. Sizes
    are counted once per collection, so this costs one walk over what the file spells out.
    """
    sizes: dict[int, int] = {}
    open_now: set[int] = set()

    def size(value: Any, where: YamlPath) -> int:
        if isinstance(value, dict):
            items: Iterable[tuple[str | int, Any]] = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            return 1
        known = sizes.get(id(value))
        if known is not None:
            return known
        if id(value) in open_now:
            raise _Cycle(where)
        if len(where) > MAX_NESTING:
            raise _TooDeep
        open_now.add(id(value))
        total = 1
        for key, item in items:
            total += size(item, (*where, key))
            if total > MAX_VALUES:
                raise _TooLarge(where)
        open_now.discard(id(value))
        sizes[id(value)] = total
        return total

    try:
        size(document, ())
    except _TooLarge as exc:
        place = f"{path}:{line_of(exc.where, lines)}: {dotted(exc.where)}"
        raise FleetError(
            f"{place}: expands to more than {MAX_VALUES:,} values through aliases (*name), "
            "too many for a fleet file"
        ) from None
    except _Cycle as exc:
        place = f"{path}:{line_of(exc.where, lines)}: {dotted(exc.where)}"
        raise FleetError(
            f"{place}: an alias (*name) refers to a collection that holds it"
        ) from None
    except _TooDeep:
        raise FleetError(_too_deep(str(path), ()) + " once aliases are expanded") from None

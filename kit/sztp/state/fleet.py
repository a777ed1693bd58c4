"""The fleet file: the desired state as one YAML document (docs/fleet-file.md).

    trust_anchors: [{name, certificates, serial_pattern}]
    owner: {name (default "default"), certificate_chain, private_key}   # or owners: [...]
    images: [{name, os_name, os_version, download_uris, sha256}]
    profiles: [{name, type, ...}]
    devices: [{serial, profile, model, mac, duid, password, voucher, selection}]
    dhcp: {...}                                   # kept as data; `sztpctl dhcp` renders it

Field names are those of the admin API (`state/resources.py`). Any text field may be
`{file: path}` (relative to the fleet file; a list of paths is concatenated) or `{env: VAR}`.
A `voucher` file is base64-encoded, a `sha256` file is hashed; other files are UTF-8 text.

A fleet file may come from a pull request, so what it can reach is confined: a file must be a
regular file, no larger than MAX_FILE_BYTES (MAX_HASHED_FILE_BYTES for `sha256`), that resolves
(symbolic links followed) inside the fleet file's directory or SZTP_FLEET_FILE_ROOT; an
`{env: VAR}` outside the secret fields, whose values never reach a device, must name a variable
the operator allowed (SZTP_FLEET_ALLOW_ENV); and aliases may not expand the document beyond
MAX_VALUES values (a "billion laughs" file is refused in a fraction of a second).

The structure is checked against `fleet.schema.json` (published for editors and pipelines);
the meaning of each spec is checked by the server (or `normalize_spec`), and `Fleet.locate`
turns the field the server names back into a line of the file. Only the sections present in
the file are managed: a missing `devices:` key leaves devices alone even with `--prune`.
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import gc
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as package_files
from pathlib import Path
from typing import Any, TypeVar

from ..errors import SztpError
from .model import COLLECTIONS, DEFAULT_OWNER, DEVICE, KINDS, OWNER, SECRET_FIELDS
from .resources import HIDDEN

SECTIONS: Mapping[str, str] = {
    collection.replace("-", "_"): kind for kind, collection in COLLECTIONS.items()
}
SECTION_OF_KIND: Mapping[str, str] = {kind: section for section, kind in SECTIONS.items()}
YamlPath = tuple[str | int, ...]
_CHUNK = 1024 * 1024
_T = TypeVar("_T")
# What a {file: ...} reference may read: the largest admin API field is 4 MiB (`presigned`),
# so 16 MiB (for a list of files, in total) is ample; a `sha256` file is hashed in chunks,
# never held, and may be a whole boot image.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_HASHED_FILE_BYTES = 64 * 1024 * 1024 * 1024
# Values in the document once every alias is expanded (10,000 devices come to about 100,000).
MAX_VALUES = 5_000_000
# The operator's settings, from the environment of the process that loads the file: a pull
# request can change the fleet file, not these.
FILE_ROOT_VARIABLE = "SZTP_FLEET_FILE_ROOT"
ALLOW_ENV_VARIABLE = "SZTP_FLEET_ALLOW_ENV"
# A fleet file nests about six levels (devices, an entry, its selection rules, a rule, a field);
# deeper input is refused in this loader's own words before any parser limit or recursion.
MAX_NESTING = 32
# Schema messages quote the offending value: not for these. `validate --skip-unset-secrets`
# may leave these alone, and only these, when their {env: ...} variable is unset.
_SECRET_FIELDS = frozenset(field for fields in SECRET_FIELDS.values() for field in fields)
_API_FIELD = re.compile(r"(?P<kind>[a-z-]+)\[(?P<name>[^\]]*)\](?P<rest>.*)")
_FIELD_PART = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


class FleetError(SztpError):
    """The fleet file is malformed; the message names the file, the line and the field."""


@dataclass(frozen=True)
class SkippedSecret:
    """A secret field given as `{env: VARIABLE}` whose variable is not set, loaded with
    `skip_unset_secrets`: its value is unknown, so nothing about it was checked."""

    where: str  # "fleet.yaml:7: owner.private_key"
    variable: str

    def __str__(self) -> str:
        return f"{self.where}: {{env: {self.variable}}} not set; value not checked"


@dataclass(frozen=True)
class Fleet:
    """A loaded fleet file: the resources (kind → name → spec, as the admin API takes them)
    and the `dhcp` section, plus where each value came from for error messages."""

    path: Path
    resources: dict[str, dict[str, dict[str, Any]]]
    dhcp: dict[str, Any] | None = None
    lines: Mapping[YamlPath, int] = field(default_factory=dict, repr=False)
    origins: Mapping[tuple[str, str], YamlPath] = field(default_factory=dict, repr=False)
    skipped_secrets: tuple[SkippedSecret, ...] = ()

    def locate(self, api_field: str | None) -> str | None:
        """`file:line: path` for a field the admin API names (`device[SN-1].voucher`)."""
        match = _API_FIELD.fullmatch(api_field or "")
        if match is None:
            return None
        origin = self.origins.get((match["kind"], match["name"]))
        if origin is None:
            return None
        path = origin
        for name, index in _FIELD_PART.findall(match["rest"].split(" ", 1)[0]):
            step: str | int = int(index) if index else name
            if (*path, step) not in self.lines:
                break
            path = (*path, step)
        return f"{self.path}:{self.lines[path]}: {dotted(path)}"


def load_fleet(
    path: Path,
    environ: Mapping[str, str] | None = None,
    *,
    skip_unset_secrets: bool = False,
    file_root: Path | None = None,
    allow_env: Iterable[str] = (),
) -> Fleet:
    """Read, check and resolve a fleet file; every error is a FleetError naming its place.

    With `skip_unset_secrets` (for offline checks only), a secret field whose `{env: ...}`
    variable is unset reads as HIDDEN and is listed in `Fleet.skipped_secrets` instead of
    being an error; such a fleet says nothing about those secrets and must not be applied.

    `{file: ...}` references must resolve inside the fleet file's directory, or inside
    `file_root` (default: `environ[SZTP_FLEET_FILE_ROOT]`) when given. Outside the secret
    fields, `{env: VAR}` must name a variable `allow_env` or `environ[SZTP_FLEET_ALLOW_ENV]`
    (names or shell patterns, separated by commas or spaces) allows.
    """
    environ = os.environ if environ is None else environ
    if file_root is None and environ.get(FILE_ROOT_VARIABLE, "").strip():
        file_root = Path(environ[FILE_ROOT_VARIABLE].strip()).expanduser()
    allowed = (*allow_env, *re.split(r"[\s,]+", environ.get(ALLOW_ENV_VARIABLE, "")))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise FleetError(f"cannot read fleet file {path}: {reason}") from None
    lines = _LineIndex(text, path)
    with _cyclic_gc_paused():
        document = _parse_yaml(text, path)
        if document is None:
            document = {}
        if "&" in text:  # without an anchor there is no alias: the document is a plain tree
            _check_expansion(document, path, lines)
        _check_schema(document, path, lines)
        resolver = _Resolver(
            path,
            lines,
            environ,
            skip_unset_secrets=skip_unset_secrets,
            file_root=file_root,
            allow_env=[name for name in allowed if name],
        )
        resources, origins = _resolve_entries(document, resolver)
    for section in SECTIONS:  # a present but empty section still counts as managed
        if section in document:
            resources.setdefault(SECTIONS[section], {})
    if "owner" in document:
        resources.setdefault(OWNER, {})
    ordered: dict[str, dict[str, dict[str, Any]]] = {
        kind: resources[kind] for kind in KINDS if kind in resources
    }
    skipped = tuple(resolver.skipped)
    return Fleet(path, ordered, document.get("dhcp"), lines, origins, skipped)


def _resolve_entries(
    document: Mapping[str, Any], resolver: _Resolver
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[tuple[str, str], YamlPath]]:
    """Resources by kind and name, with their references resolved, and where each entry is."""
    path, lines = resolver.path, resolver.lines
    resources: dict[str, dict[str, dict[str, Any]]] = {}
    origins: dict[tuple[str, str], YamlPath] = {}
    for section, entry_path, entry in _entries(document):
        kind = OWNER if section == "owner" else SECTIONS[section]
        key = "serial" if kind == DEVICE else "name"
        name = entry.get(key, DEFAULT_OWNER if section == "owner" else None)
        if not isinstance(name, str):  # the schema requires it; this keeps the types honest
            raise FleetError(f"{path}:{lines[entry_path]}: {dotted(entry_path)}: {key} is required")
        specs = resources.setdefault(kind, {})
        if name in specs:
            first = origins[(kind, name)]
            raise FleetError(
                f"{path}:{lines[entry_path]}: {dotted(entry_path)}: duplicate {kind} {name!r} "
                f"(first at line {lines[first]})"
            )
        spec = {
            field_name: resolver.resolve(value, (*entry_path, field_name))
            for field_name, value in entry.items()
            if field_name != key
        }
        specs[name] = spec
        origins[(kind, name)] = entry_path
    return resources, origins


def fleet_document(resources: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """A fleet document for `resources` (as `GET /state` returns them): empty values left out,
    secrets kept as the server's "<hidden>" marker, which means "keep" when applied back."""
    document: dict[str, Any] = {}
    owners = resources.get(OWNER, {})
    for kind in KINDS:
        specs = resources.get(kind, {})
        if kind == OWNER and set(owners) == {DEFAULT_OWNER}:
            document["owner"] = _compact(owners[DEFAULT_OWNER])
            continue
        key = "serial" if kind == DEVICE else "name"
        document[SECTION_OF_KIND[kind]] = [
            {key: name, **_compact(spec)} for name, spec in sorted(specs.items())
        ]
    return document


def dump_fleet(document: Mapping[str, Any]) -> str:
    """YAML text of a fleet document; multi-line text (PEM, scripts) as literal blocks."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(dict(document), Dumper=Dumper, sort_keys=False, allow_unicode=True)


def dotted(path: YamlPath) -> str:
    """`devices[2].voucher` for ("devices", 2, "voucher")."""
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text or "(document)"


@cache
def fleet_schema() -> dict[str, Any]:
    """The published JSON Schema of the fleet file."""
    source = package_files.files(__package__).joinpath("fleet.schema.json")
    return json.loads(source.read_text(encoding="utf-8"))


def _compact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: _compact(item) for key, item in value.items() if item is not None and item != []
        }
    if isinstance(value, list):
        return [_compact(item) for item in value]
    return value


def _entries(document: Mapping[str, Any]) -> Iterator[tuple[str, YamlPath, dict[str, Any]]]:
    if document.get("owner") is not None:
        yield "owner", ("owner",), document["owner"]
    for section in SECTIONS:
        for index, entry in enumerate(document.get(section) or []):
            yield section, (section, index), entry


# ---- YAML with line numbers


_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"


class _DuplicateKeys(Exception):
    """Some mapping repeats a key; `_index_lines` finds the first one for the message."""


class _TooDeep(Exception):
    """Some value is nested deeper than MAX_NESTING; `_nesting_error` finds where."""


@cache
def _yaml_loaders() -> tuple[type, type]:
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
                    if implicit[0]:
                        for tag, regexp in implicit_resolvers.get(value[:1], ()):
                            if regexp.match(value):
                                return tag
                    return _STR_TAG
                return super().resolve(kind, value, implicit)

            def descend_resolver(self, current_node: Any, current_index: Any) -> None:
                pass  # only path resolvers need the path

            def ascend_resolver(self) -> None:
                pass

    class StrictLoader(Loader):
        """Refuses duplicate keys, which PyYAML would resolve silently by keeping the last."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
            # Counted while building (here and in `_build`), it costs nothing next to a
            # separate walk over every node. Keys compare as text, as in `_index_lines`.
            if len({str(key.value) for key, _ in node.value}) != len(node.value):
                raise _DuplicateKeys
            return super().construct_mapping(node, deep)

    return StrictLoader, Loader


def _parse_yaml(text: str, path: Path) -> Any:
    import yaml

    strict, lenient = _yaml_loaders()
    try:
        try:
            loader = strict(text)
            try:
                root = loader.get_single_node()
                return None if root is None else _build(root, loader, {}, 1)
            finally:
                loader.dispose()
        except _DuplicateKeys:
            # Construction expands merge keys (`<<: *anchor`) in place, which repeats keys
            # legitimately: look again, in document order, at an untouched tree.
            _index_lines(_compose(text), (), {}, path, set())
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

    strict, _ = _yaml_loaders()
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


def _compose(text: str) -> Any:
    _, lenient = _yaml_loaders()
    loader = lenient(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


class _LineIndex(Mapping[YamlPath, int]):
    """The line of every value of a fleet file, built on first use: only error messages need
    it, and indexing a 10,000-device file costs as much as constructing it."""

    def __init__(self, text: str, path: Path) -> None:
        self._text = text
        self._path = path
        self._lines: dict[YamlPath, int] | None = None

    def _index(self) -> dict[YamlPath, int]:
        if self._lines is None:
            lines: dict[YamlPath, int] = {}
            root = _compose(self._text)  # parsed once already: no YAML error here
            if root is not None:
                _index_lines(root, (), lines, self._path, set())
            self._lines = lines
        return self._lines

    def __getitem__(self, path: YamlPath) -> int:
        return self._index()[path]

    def __iter__(self) -> Iterator[YamlPath]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Without the cycle collector while a large file becomes objects: it would walk every
    object made so far, again and again, for nothing (YAML data has no reference cycles to
    free); that doubles the time to load 10,000 devices."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _index_lines(
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
            _index_lines(value_node, (*path, key), lines, file, seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines, file, seen)


class _TooLarge(Exception):
    """Aliases expand the document beyond MAX_VALUES values; `where` is the first such value."""

    def __init__(self, where: YamlPath) -> None:
        self.where = where


class _Cycle(Exception):
    """An alias refers to a collection that contains it; `where` is the alias."""

    def __init__(self, where: YamlPath) -> None:
        self.where = where


def _check_expansion(document: Any, path: Path, lines: Mapping[YamlPath, int]) -> None:
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
        place = f"{path}:{_line_of(exc.where, lines)}: {dotted(exc.where)}"
        raise FleetError(
            f"{place}: expands to more than {MAX_VALUES:,} values through aliases (*name), "
            "too many for a fleet file"
        ) from None
    except _Cycle as exc:
        place = f"{path}:{_line_of(exc.where, lines)}: {dotted(exc.where)}"
        raise FleetError(
            f"{place}: an alias (*name) refers to a collection that holds it"
        ) from None
    except _TooDeep:
        raise FleetError(_too_deep(str(path), ()) + " once aliases are expanded") from None


def _check_schema(document: Any, path: Path, lines: Mapping[YamlPath, int]) -> None:
    import jsonschema_rs

    try:
        errors = list(jsonschema_rs.validator_for(fleet_schema()).iter_errors(document))
    except ValueError as exc:  # a YAML value JSON cannot hold (binary, a set)
        raise FleetError(f"{path}: {exc}") from None
    if not errors:
        return
    # Report the error that comes first in the file, at the deepest line we know.
    first = min(errors, key=lambda error: _line_of(tuple(error.instance_path), lines))
    where: YamlPath = tuple(first.instance_path)
    message = first.message
    if first.kind.name == "additionalProperties":
        # jsonschema-rs's type stubs lack the per-kind attributes its objects carry.
        where, message = (*where, first.kind.unexpected[0]), "unknown field"  # type: ignore[attr-defined]
    elif first.kind.name == "required":
        message = f"{first.kind.property!r} is required"  # type: ignore[attr-defined]
    elif isinstance(first.instance, int | float) and "string" in message:
        message += "; quote it to make it text"
    if _SECRET_FIELDS.intersection(step for step in where if isinstance(step, str)):
        message = "must be a string, {file: path} or {env: VARIABLE} (value not shown)"
    raise FleetError(f"{path}:{_line_of(where, lines)}: {dotted(where)}: {message}")


def _line_of(path: YamlPath, lines: Mapping[YamlPath, int]) -> int:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path, 1)


# ---- {file: ...} and {env: ...}


class _Resolver:
    """Replaces file and environment references; the schema allows them only in text fields."""

    def __init__(
        self,
        path: Path,
        lines: Mapping[YamlPath, int],
        environ: Mapping[str, str],
        *,
        skip_unset_secrets: bool = False,
        file_root: Path | None = None,
        allow_env: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.base = path.parent
        # Compared with each file's real path: symbolic links resolved on both sides.
        self.root = os.path.realpath(file_root if file_root is not None else self.base)
        self.root_named = "SZTP_FLEET_FILE_ROOT" if file_root is not None else "the fleet file's"
        self.lines = lines
        self.environ = environ
        self.allow_env = tuple(allow_env)
        self.skip_unset_secrets = skip_unset_secrets
        self.skipped: list[SkippedSecret] = []
        # The real path of each directory files are referenced in: a fleet's many voucher
        # files usually share one, and resolving it per file would repeat its lookups.
        self._real_directories: dict[str, str] = {}

    def resolve(self, value: Any, where: YamlPath) -> Any:
        if isinstance(value, dict) and set(value) == {"file"}:
            return self._file(value["file"], where)
        if isinstance(value, dict) and set(value) == {"env"}:
            variable = value["env"]
            self._check_variable(variable, where)
            if variable in self.environ:
                return self.environ[variable]
            # Only secrets: any other value changes what devices get, so it must be known.
            if self.skip_unset_secrets and where[-1] in _SECRET_FIELDS:
                self.skipped.append(SkippedSecret(self._place(where), variable))
                return HIDDEN  # what validation already leaves unchecked: a value not at hand
            raise self._error(where, f"environment variable {variable} is not set")
        if isinstance(value, dict):
            return {key: self.resolve(item, (*where, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item, (*where, index)) for index, item in enumerate(value)]
        return value

    def _check_variable(self, variable: str, where: YamlPath) -> None:
        """A secret field may read any variable: its value stays on the server, hidden. Any
        other value reaches devices (or the API's views): only variables the operator allowed.
        """
        if self._field_of(where) in _SECRET_FIELDS:
            return
        if any(fnmatch.fnmatchcase(variable, pattern) for pattern in self.allow_env):
            return
        raise self._error(
            where,
            f"{{env: {variable}}} is not allowed: outside the secret fields "
            f"({', '.join(sorted(_SECRET_FIELDS))}) the operator must allow the variable, e.g. "
            f"{ALLOW_ENV_VARIABLE}={variable} in the environment that loads the file",
        )

    def _file(self, names: str | list[str], where: YamlPath) -> str:
        given = [names] if isinstance(names, str) else list(names)
        paths = [self._path(name, where) for name in given]
        field_name = where[-1] if isinstance(where[-1], str) else self._field_of(where)
        try:
            if field_name == "sha256":
                if len(paths) != 1:
                    raise self._error(where, "hash one file, not a list")
                return self._followed(_sha256_file, paths[0], given[0], where)
            data = b""
            for path, name in zip(paths, given, strict=True):
                data += self._followed(_read_file, path, name, where, MAX_FILE_BYTES - len(data))
        except _FileRefused as exc:
            raise self._error(where, str(exc)) from None
        except _SymbolicLink:  # a link's target replaced by another link while it was read
            raise self._error(where, "a symbolic link changed while it was read") from None
        except OSError as exc:
            target = exc.filename or paths[0]
            raise self._error(where, f"cannot read {target}: {exc.strerror or exc}") from None
        if field_name == "voucher":
            return base64.b64encode(data).decode()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error(where, "the file is not UTF-8 text") from None

    @staticmethod
    def _field_of(where: YamlPath) -> str:
        return next(step for step in reversed(where) if isinstance(step, str))

    def _path(self, name: str, where: YamlPath) -> str:
        """`name` in the real path of its directory, refused unless it lies inside the root
        (a last component that is a link is checked when it is opened: `_followed`)."""
        # Plain strings, not Path objects, here and in _read_file: a third less time for a
        # fleet of 10,000 voucher files.
        if name.startswith("~"):
            name = os.path.expanduser(name)  # noqa: PTH111
        joined = os.path.join(self.base, name)  # noqa: PTH118
        directory, leaf = os.path.split(joined)
        if leaf in ("", ".", ".."):
            real = os.path.realpath(joined)
        else:
            # realpath(dir/leaf) is realpath(dir)/leaf unless leaf itself is a link.
            real_directory = self._real_directories.get(directory)
            if real_directory is None:
                real_directory = self._real_directories[directory] = os.path.realpath(directory)
            # A leaf that is itself a link is opened with O_NOFOLLOW, refused, and followed by
            # `_followed`: no lstat for every file that is not one.
            real = os.path.join(real_directory, leaf)  # noqa: PTH118
        return self._confined(real, name, where)

    def _followed(
        self, read: Callable[..., _T], path: str, name: str, where: YamlPath, *args: int
    ) -> _T:
        """`read(path, *args)`; if the file is a symbolic link, its target, once checked."""
        try:
            return read(path, *args)
        except _SymbolicLink:
            return read(self._confined(os.path.realpath(path), name, where), *args)

    def _confined(self, real: str, name: str, where: YamlPath) -> str:
        if real != self.root and not real.startswith(self.root.rstrip(os.sep) + os.sep):
            shown = name if real == name else f"{name} (resolves to {real})"
            raise self._error(
                where,
                f"{shown} is outside {self.root_named} directory {self.root}; keep referenced "
                f"files beside the fleet file, or set {FILE_ROOT_VARIABLE} to a directory "
                "holding them",
            )
        return real

    def _place(self, where: YamlPath) -> str:
        return f"{self.path}:{_line_of(where, self.lines)}: {dotted(where)}"

    def _error(self, where: YamlPath, message: str) -> FleetError:
        return FleetError(f"{self._place(where)}: {message}")


class _FileRefused(Exception):
    """A referenced file is not a regular file, or is too large; the message says which."""


class _SymbolicLink(Exception):
    """The path opened is a symbolic link: its target must be checked against the root."""


def _open_regular(path: str, limit: int) -> int:
    """A descriptor of `path`, a regular file of at most `limit` bytes (else _FileRefused).

    O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _SymbolicLink from None
        raise
    try:
        mode = os.fstat(descriptor)
        if stat.S_ISDIR(mode.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode.st_mode):
            raise _FileRefused(f"{path} is not a regular file (a device, FIFO or socket)")
        if mode.st_size > limit:
            raise _FileRefused(_too_large(path, limit))
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _too_large(path: str, limit: int) -> str:
    if limit == MAX_HASHED_FILE_BYTES:
        return f"{path} is larger than {_size(limit)}, the most a sha256 file may be"
    return (
        f"{path} is larger than the {_size(MAX_FILE_BYTES)} a file reference may read"
        " (in total, for a list)"
    )


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2)):
        if count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count:,} bytes"


def _read_file(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    # os.read on a descriptor, not a buffered file object: setting one up costs more than
    # reading a voucher (half the time for 10,000 voucher files).
    descriptor = _open_regular(path, max(limit, 0))
    try:
        chunks = []
        size = 0
        while chunk := os.read(descriptor, _CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew after fstat
                raise _FileRefused(_too_large(path, limit))
    finally:
        os.close(descriptor)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    descriptor = _open_regular(path, MAX_HASHED_FILE_BYTES)
    with os.fdopen(descriptor, "rb") as stream:
        size = 0
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > MAX_HASHED_FILE_BYTES:
                raise _FileRefused(_too_large(path, MAX_HASHED_FILE_BYTES))
            digest.update(chunk)
    return digest.hexdigest()

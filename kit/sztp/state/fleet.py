"""The fleet file: the desired state as one YAML document (docs/fleet-file.md).

    trust_anchors: [{name, certificates, serial_pattern}]
    owner: {name (default "default"), certificate_chain, private_key}   # or owners: [...]
    images: [{name, os_name, os_version, download_uris, sha256}]
    profiles: [{name, type, ...}]
    devices: [{serial, profile, model, mac, duid, password, voucher, selection}]
    dhcp: {...}                                   # kept as data; `sztpctl dhcp` renders it
    dns: {...}                                    # kept as data; `sztpctl dns` renders it

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

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as package_files
from pathlib import Path
from typing import Any

from ..collector import cyclic_gc_paused
from .fleet_dump import yaml_text
from .fleet_files import (
    ALLOW_ENV_VARIABLE,
    FILE_ROOT_VARIABLE,
    SECRET_FIELD_NAMES,
    Resolver,
    SkippedSecret,
)
from .fleet_json import parse_json
from .fleet_yaml import MAX_VALUES as MAX_VALUES
from .fleet_yaml import (
    FleetError,
    YamlPath,
    check_expansion,
    compose,
    dotted,
    index_lines,
    line_of,
    parse_yaml,
)
from .model import COLLECTIONS, DEFAULT_OWNER, DEVICE, KINDS, OWNER

SECTIONS: Mapping[str, str] = {
    collection.replace("-", "_"): kind for kind, collection in COLLECTIONS.items()
}
SECTION_OF_KIND: Mapping[str, str] = {kind: section for section, kind in SECTIONS.items()}
# What a {file: ...} reference may read: the largest admin API field is 4 MiB (`presigned`),
# so 16 MiB (for a list of files, in total) is ample; a `sha256` file is hashed in chunks,
# never held, and may be a whole boot image. `load_fleet` hands them to the resolver.
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_HASHED_FILE_BYTES = 64 * 1024 * 1024 * 1024
_API_FIELD = re.compile(r"(?P<kind>[a-z-]+)\[(?P<name>[^\]]*)\](?P<rest>.*)")
_FIELD_PART = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


@dataclass(frozen=True)
class Fleet:
    """A loaded fleet file: the resources (kind → name → spec, as the admin API takes them)
    and the `dhcp` and `dns` sections, plus where each value came from for error messages."""

    path: Path
    resources: dict[str, dict[str, dict[str, Any]]]
    dhcp: dict[str, Any] | None = None
    lines: Mapping[YamlPath, int] = field(default_factory=dict, repr=False)
    origins: Mapping[tuple[str, str], YamlPath] = field(default_factory=dict, repr=False)
    skipped_secrets: tuple[SkippedSecret, ...] = ()
    dns: dict[str, Any] | None = None

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
    with cyclic_gc_paused():
        written_as_json = path.suffix.lower() == ".json"
        document = parse_json(text, path) if written_as_json else parse_yaml(text, path)
        if document is None:
            document = {}
        # Without an anchor there is no alias: the document is a plain tree (JSON has none).
        aliased = not written_as_json and "&" in text
        if aliased:
            check_expansion(document, path, lines)
        _check_schema(document, path, lines)
        resolver = Resolver(
            path,
            lines,
            environ,
            skip_unset_secrets=skip_unset_secrets,
            file_root=file_root,
            allow_env=[name for name in allowed if name],
            max_file_bytes=MAX_FILE_BYTES,
            max_hashed_file_bytes=MAX_HASHED_FILE_BYTES,
        )
        resources = _resolve_entries(document, resolver, shared=aliased)
        dns = resolver.resolve(document["dns"], ("dns",)) if "dns" in document else None
    for section in SECTIONS:  # a present but empty section still counts as managed
        if section in document:
            resources.setdefault(SECTIONS[section], {})
    if "owner" in document:
        resources.setdefault(OWNER, {})
    ordered: dict[str, dict[str, dict[str, Any]]] = {
        kind: resources[kind] for kind in KINDS if kind in resources
    }
    skipped = tuple(resolver.skipped)
    origins = _Origins(resources, owner_mapping=document.get("owner") is not None)
    return Fleet(path, ordered, document.get("dhcp"), lines, origins, skipped, dns)


def _resolve_entries(
    document: Mapping[str, Any], resolver: Resolver, *, shared: bool
) -> dict[str, dict[str, dict[str, Any]]]:
    """Resources by kind and name, with their references resolved.

    Each entry of `document` becomes its spec once its key (serial or name) is taken out, or a
    copy of it does when entries may be `shared` (aliases); a million devices' entries are
    not copied, and only a map or a list can hold a reference to resolve.
    """
    path, lines = resolver.path, resolver.lines
    resources: dict[str, dict[str, dict[str, Any]]] = {}
    owner_mapping = document.get("owner") is not None
    for section, entries in _sections(document):
        if not entries:
            continue
        kind = OWNER if section == "owner" else SECTIONS[section]
        key = "serial" if kind == DEVICE else "name"
        default = DEFAULT_OWNER if section == "owner" else None
        specs = resources.setdefault(kind, {})
        for index, entry in enumerate(entries):
            spec = dict(entry) if shared else entry
            name = spec.pop(key, default)
            if not isinstance(name, str):  # the schema requires it; this keeps the types honest
                where = _entry_path(section, index)
                raise FleetError(f"{path}:{lines[where]}: {dotted(where)}: {key} is required")
            if name in specs:
                where = _entry_path(section, index)
                first = _Origins(resources, owner_mapping=owner_mapping)[(kind, name)]
                raise FleetError(
                    f"{path}:{lines[where]}: {dotted(where)}: duplicate {kind} {name!r} "
                    f"(first at line {lines[first]})"
                )
            for field_name, value in spec.items():
                if isinstance(value, dict | list):
                    where = (*_entry_path(section, index), field_name)
                    spec[field_name] = resolver.resolve(value, where)
            specs[name] = spec
    return resources


def fleet_document(resources: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """A fleet document for `resources` (as `GET /state` returns them): empty values left out,
    secrets kept as the server's "<hidden>" marker, which means "keep" when applied back."""
    return {
        section: entries if isinstance(entries, dict) else list(entries)
        for section, entries in fleet_sections(
            (kind, sorted(resources.get(kind, {}).items())) for kind in KINDS
        )
    }


def fleet_sections(
    kinds: Iterable[tuple[str, Iterable[tuple[str, Mapping[str, Any]]]]],
) -> Iterator[tuple[str, Any]]:
    """(section, entries) of the fleet document for resources by kind, (name, spec) in the
    order given; the entries are made as they are read, so a streamed state stays streamed.
    A default owner alone is the `owner` section (a mapping); unknown kinds are left out."""
    for kind, specs in kinds:
        if kind not in SECTION_OF_KIND:
            continue
        if kind == OWNER:
            owners = dict(specs)
            if set(owners) == {DEFAULT_OWNER}:
                yield "owner", _compact(owners[DEFAULT_OWNER])
                continue
            specs = owners.items()
        yield SECTION_OF_KIND[kind], _fleet_entries("serial" if kind == DEVICE else "name", specs)


def _fleet_entries(
    key: str, specs: Iterable[tuple[str, Mapping[str, Any]]]
) -> Iterator[dict[str, Any]]:
    for name, spec in specs:
        yield {key: name, **_compact(spec)}


def dump_fleet(document: Mapping[str, Any]) -> str:
    """YAML text of a fleet document; multi-line text (PEM, scripts) as literal blocks."""
    return "".join(yaml_text(document.items()))


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


def _sections(document: Mapping[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(section, its entries) in the order `_Origins` counts them: the `owner` mapping first."""
    if document.get("owner") is not None:
        yield "owner", [document["owner"]]
    for section in SECTIONS:
        yield section, document.get(section) or []


def _entry_path(section: str, index: int) -> YamlPath:
    return ("owner",) if section == "owner" else (section, index)


class _Origins(Mapping[tuple[str, str], YamlPath]):
    """Where each resource's entry is in the document, by (kind, name), worked out on first
    use: each kind's specs are its section's entries in order, after the `owner` mapping's
    for owners. Only error messages need it."""

    def __init__(self, resources: Mapping[str, Mapping[str, Any]], *, owner_mapping: bool) -> None:
        self._resources = resources
        self._owner_mapping = owner_mapping
        self._origins: dict[tuple[str, str], YamlPath] | None = None

    def _index(self) -> dict[tuple[str, str], YamlPath]:
        if self._origins is None:
            origins: dict[tuple[str, str], YamlPath] = {}
            for kind, specs in self._resources.items():
                names = iter(specs)
                if kind == OWNER and self._owner_mapping:
                    origins[(kind, next(names))] = ("owner",)
                for index, name in enumerate(names):
                    origins[(kind, name)] = (SECTION_OF_KIND[kind], index)
            self._origins = origins
        return self._origins

    def __getitem__(self, key: tuple[str, str]) -> YamlPath:
        return self._index()[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())


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
            root = compose(self._text)  # parsed once already: no YAML error here
            if root is not None:
                index_lines(root, (), lines, self._path, set())
            self._lines = lines
        return self._lines

    def __getitem__(self, path: YamlPath) -> int:
        return self._index()[path]

    def __iter__(self) -> Iterator[YamlPath]:
        return iter(self._index())

    def __len__(self) -> int:
        return len(self._index())


def _check_schema(document: Any, path: Path, lines: Mapping[YamlPath, int]) -> None:
    import jsonschema_rs

    try:
        errors = list(jsonschema_rs.validator_for(fleet_schema()).iter_errors(document))
    except ValueError as exc:  # a YAML value JSON cannot hold (binary, a set)
        raise FleetError(f"{path}: {exc}") from None
    if not errors:
        return
    # Report the error that comes first in the file, at the deepest line we know.
    first = min(errors, key=lambda error: line_of(tuple(error.instance_path), lines))
    where: YamlPath = tuple(first.instance_path)
    message = first.message
    if first.kind.name == "additionalProperties":
        # jsonschema-rs's type stubs lack the per-kind attributes its objects carry.
        where, message = (*where, first.kind.unexpected[0]), "unknown field"  # type: ignore[attr-defined]
    elif first.kind.name == "required":
        message = f"{first.kind.property!r} is required"  # type: ignore[attr-defined]
    elif isinstance(first.instance, int | float) and "string" in message:
        message += "; quote it to make it text"
    if SECRET_FIELD_NAMES.intersection(step for step in where if isinstance(step, str)):
        message = "must be a string, {file: path} or {env: VARIABLE} (value not shown)"
    raise FleetError(f"{path}:{line_of(where, lines)}: {dotted(where)}: {message}")

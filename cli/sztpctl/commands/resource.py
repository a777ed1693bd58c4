"""What the resource nouns (trust-anchor, owner, image, profile, device) share.

`command_group(noun, help)` is a noun's command group with `list`, `show` and `delete` built
from its description (table columns, filters); every noun's `add` collects its own flags and
hands them to `add_resource`, which merges them over an optional `-f` file and creates (or
with `--replace`, replaces) the resource. The flags' help and choices, and the columns that
show a field, come from the resource model (`sztp.state.model`), which the fleet file and the
API share.

No `from __future__ import annotations` here: the commands are built in closures, and Typer
evaluates their annotations, which must therefore be real objects.
"""

import dataclasses
import enum
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sztp.state.model import MODEL, Field, FieldType

from .remote import (
    OutputFormat,
    connect,
    console,
    emit,
)

if TYPE_CHECKING:
    from sztp.state.fleet import Fleet


class ListFormat(enum.StrEnum):
    TABLE = "table"
    WIDE = "wide"
    JSON = "json"
    YAML = "yaml"


class ShowFormat(enum.StrEnum):
    YAML = "yaml"
    JSON = "json"


ListOutputOption = Annotated[
    ListFormat,
    typer.Option(
        "--output", "-o", help="Output format (wide: more columns).", case_sensitive=False
    ),
]
SpecFileOption = Annotated[
    Path | None,
    typer.Option(
        "--filename",
        "-f",
        help="The resource in fleet-file syntax (as `show` prints it); flags override its fields.",
    ),
]
ReplaceOption = Annotated[
    bool,
    typer.Option("--replace", help="Replace the whole spec if the resource exists already."),
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


@dataclass(frozen=True)
class Column:
    """A table column: its header and how to show a resource ({name, spec, ...}) in it."""

    header: str
    value: Callable[[Mapping[str, Any]], str]
    wide: bool = False  # only with --output wide
    narrow: bool = False  # only without it (a shorter form of a wide column)


@dataclass(frozen=True)
class Filter:
    """A `list` option `--NAME VALUE` keeping resources whose spec field NAME equals VALUE;
    `server_side` filters are sent as query parameters instead (the server derives them)."""

    name: str
    help: str
    choices: tuple[str, ...] = ()
    server_side: bool = False

    @property
    def option(self) -> str:
        return f"--{self.name.replace('_', '-')}"


@dataclass(frozen=True)
class Flag:
    """The spec field an `add` option sets, when the option is not simply that field under
    its name; with `help` when it sets the field from something else (a file to hash, ...)."""

    field: str  # dotted for a field of a list's entries: bootstrap_servers.trust_anchor
    help: str | None = None


@dataclass(frozen=True)
class Noun:
    kind: str  # as in state.resources: "trust-anchor", "device", ...
    key: str  # "name", or "serial" for devices (also the key in the fleet file)
    columns: tuple[Column, ...]  # the kind's own: `table_columns` frames them
    filters: tuple[Filter, ...] = ()
    # Listed with each one's status and last report (devices: one request for the fleet).
    with_status: bool = False
    # `add`'s options (by parameter name) that `flag` cannot tell from their name alone.
    flags: Mapping[str, Flag] = dataclasses.field(default_factory=dict)

    @property
    def table_columns(self) -> tuple[Column, ...]:
        """Every kind's table: its key (NAME, SERIAL), its own columns, then when it was
        created (wide) and last updated."""
        key = Column(self.key.upper(), lambda item: item["name"])
        return (key, *self.columns, _CREATED, _UPDATED)

    @property
    def argument(self) -> Any:
        return typer.Argument(metavar=self.key.upper(), help=f"The {self.kind}'s {self.key}.")

    def flag(self, parameter: str) -> Flag:
        """What `add`'s option `parameter` sets: as declared, else the field of its name."""
        return self.flags.get(parameter) or Flag(parameter)

    def option(self, parameter: str, *names: str) -> Any:
        """The typer.Option of `add`'s `parameter`: the model's help for its field (unless the
        flag has its own) and, for a field of choices, the model's choices."""
        flag = self.flag(parameter)
        declared = model_field(self.kind, flag.field)
        help_text = flag.help or declared.help
        if declared.type is not FieldType.CHOICE:
            return typer.Option(*names, help=help_text)
        # Typer takes choices only from an Enum or Literal annotation, which would copy the
        # model's list into the source; a callback checks against the model instead.
        return typer.Option(
            *names,
            help=help_text,
            metavar=f"<{'|'.join(declared.choices)}>",
            callback=one_of(declared.choices),
        )


# `--var NAME=VALUE`, repeated: template variables (devices and profiles).
VARIABLE_FLAG = Flag(
    "vars",
    "Template variable NAME=VALUE (repeat for several; the value is text, -f gives others).",
)


def variables(pairs: list[str] | None) -> dict[str, str] | None:
    """`--var` options as a vars map; None when none is given, so -f's vars stay."""
    if not pairs:
        return None
    found: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise typer.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--var")
        found[name] = value
    return found


def model_field(kind: str, path: str) -> Field:
    """The field the model declares for `kind` at `path` (`name`, or `name.sub` for a field
    of a list's entries); a name it does not declare fails when the CLI loads."""
    entry = MODEL[kind].entry
    *outer, last = path.split(".")
    for name in outer:
        nested = entry.field(name).entry
        if nested is None:
            raise LookupError(f"{kind} field {name!r} has no fields of its own ({path})")
        entry = nested
    return entry.field(last)


def one_of(choices: tuple[str, ...]) -> Callable[..., str | None]:
    """An option's callback that takes only `choices`."""

    def check(param: typer.CallbackParam, value: str | None) -> str | None:
        if value is not None and value not in choices:
            raise _not_one_of(value, choices, param.opts[0])
        return value

    return check


def _not_one_of(value: str, choices: tuple[str, ...], option: str) -> typer.BadParameter:
    return typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)


def command_group(noun: Noun, help_text: str) -> typer.Typer:
    """`noun`'s command group, with `list`, `show` and `delete` (its module adds `add`)."""
    app = typer.Typer(help=help_text, no_args_is_help=True)
    app.command("list")(_list_command(noun))
    app.command("show")(_show_command(noun))
    app.command("delete")(_delete_command(noun))
    return app


# ---- list


def _list_command(noun: Noun) -> Callable[..., None]:
    def list_resources(**options: Any) -> None:
        wanted = {item: options[item.name] for item in noun.filters if options[item.name]}
        for item, value in wanted.items():
            if item.choices and value not in item.choices:
                raise _not_one_of(value, item.choices, item.option)
        query = {item.name: value for item, value in wanted.items() if item.server_side}
        local = {item.name: value for item, value in wanted.items() if not item.server_side}
        output: ListFormat = options["output"]

        def kept(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [
                item
                for item in items
                if all(item["spec"].get(key) == value for key, value in local.items())
            ]

        with connect() as client:
            if noun.with_status:
                # A fleet can be a million devices: each page is shown as it arrives.
                pages = (kept(page) for page in client.device_pages(**query))
                _print_pages(noun, pages, output)
                return
            found = kept(client.list(noun.kind, **query))
        if output is ListFormat.WIDE:
            _table(noun, found, wide=True)
        else:
            emit(found, OutputFormat(output.value), lambda: _table(noun, found, wide=False))

    # Typer reads the options from the signature: build it from the noun's filters.
    parameters: list[tuple[str, Any, Any]] = [
        (item.name, Annotated[str | None, typer.Option(item.option, help=item.help)], None)
        for item in noun.filters
    ]
    parameters += [
        ("output", ListOutputOption, ListFormat.TABLE),
    ]
    list_resources.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind
            )
            for name, kind, default in parameters
        ]
    )
    list_resources.__doc__ = f"List {noun.kind}s (secrets hidden)."
    return list_resources


def _table(noun: Noun, found: list[dict[str, Any]], *, wide: bool, count: bool = True) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    columns = _columns(noun, wide=wide)
    table = Table(*(column.header for column in columns), box=box.SIMPLE_HEAD)
    for item in found:
        # Text, not markup: names and models come from users and may hold '[...]'.
        table.add_row(*(Text(column.value(item)) for column in columns))
    console().print(table)
    if count:
        typer.echo(f"{len(found)} {noun.kind}(s)")


def _columns(noun: Noun, *, wide: bool) -> list[Column]:
    return [column for column in noun.table_columns if not (column.narrow if wide else column.wide)]


def _print_pages(noun: Noun, pages: Iterator[list[dict[str, Any]]], output: ListFormat) -> None:
    """Print a listing page by page as one document: a JSON array, a YAML sequence, or a
    table (on a terminal, one per page; off it, lines laid out as that table under one header),
    ending with the count."""
    count = 0
    if output in (ListFormat.TABLE, ListFormat.WIDE):
        wide = output is ListFormat.WIDE
        on_terminal = console().is_terminal
        widths: list[int] = []
        for page in pages:
            if on_terminal:
                _table(noun, page, wide=wide, count=False)
            else:
                widths = _print_lines(_columns(noun, wide=wide), page, widths)
            count += len(page)
        if not on_terminal and not widths:
            _print_lines(_columns(noun, wide=wide), [], widths)
        typer.echo(f"{count} {noun.kind}(s)")
    elif output is ListFormat.JSON:
        import json

        for page in pages:
            # json.dumps(listing, indent=2), one item at a time.
            items = ",\n  ".join(json.dumps(item, indent=2).replace("\n", "\n  ") for item in page)
            sys.stdout.write(("[\n  " if count == 0 else ",\n  ") + items)
            sys.stdout.flush()
            count += len(page)
        sys.stdout.write("[]\n" if count == 0 else "\n]\n")
    else:
        import yaml

        # libyaml's emitter, where PyYAML has it: the same text, many times faster.
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        for page in pages:
            sys.stdout.write(yaml.dump(page, Dumper=dumper, sort_keys=False, allow_unicode=True))
            sys.stdout.flush()
            count += len(page)
        if count == 0:
            sys.stdout.write("[]\n")


def _print_lines(
    columns: list[Column], items: list[dict[str, Any]], widths: list[int]
) -> list[int]:
    """`items` as lines laid out as rich lays out `_table`'s table: left-aligned columns three
    spaces apart, indented by two. Without `widths` (the first page) the header and its rule
    come first, the columns as wide as the header or the page's widest value. Returns the
    widths, for the next page's lines to line up with these (a wider value pushes its line's
    next columns right)."""

    def line(cells: list[str]) -> str:
        aligned = "   ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return f"  {aligned}".rstrip() + "\n"

    rows = [[column.value(item) for column in columns] for item in items]
    lines = []
    if not widths:
        headers = [column.header for column in columns]
        widths = [max(len(cell) for cell in cells) for cells in zip(headers, *rows, strict=True)]
        lines += [line(headers), " " + "─" * (sum(widths) + 3 * len(widths) - 1) + "\n"]
    lines += [line(row) for row in rows]
    sys.stdout.write("".join(lines))
    sys.stdout.flush()
    return widths


# ---- show


def _show_command(noun: Noun) -> Callable[..., None]:
    def show(
        name: Annotated[str, noun.argument],
        output: Annotated[
            ShowFormat, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
        ] = ShowFormat.YAML,
    ) -> None:
        from sztp.state.fleet import dump_fleet, fleet_document

        with connect() as client:
            resource = client.get(noun.kind, name)
        # Fleet-file syntax, so the output is valid input for `add -f` and `apply -f`.
        document = {
            section: entries
            for section, entries in fleet_document({noun.kind: {name: resource["spec"]}}).items()
            if entries
        }
        if output is ShowFormat.JSON:
            import json

            typer.echo(json.dumps(document, indent=2))
            return
        typer.echo(
            f"# {noun.kind} {name}: revision {resource['revision']}, "
            f"updated {resource['updated_at']}"
        )
        typer.echo(dump_fleet(document), nl=False)

    show.__doc__ = f"Print a {noun.kind} in fleet-file syntax (secrets hidden)."
    return show


# ---- delete


def _delete_command(noun: Noun) -> Callable[..., None]:
    def delete(
        name: Annotated[str, noun.argument],
        yes: YesOption = False,
    ) -> None:
        confirm(f"delete {noun.kind} {name!r}?", yes)
        with connect() as client:
            client.delete(noun.kind, name)
        typer.echo(f"{noun.kind} {name} deleted")

    delete.__doc__ = f"Delete a {noun.kind} (asks first unless --yes)."
    return delete


def confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; without one, only --yes goes ahead (a script must say so)."""
    from sztp.errors import SztpError

    if yes:
        return
    if not sys.stdin.isatty():
        raise SztpError(
            f"not confirmed: {question.rstrip('?')}: pass --yes to do it without a terminal"
        )
    typer.confirm(question, abort=True)


# ---- add


def add_resource(
    noun: Noun,
    name: str | None,
    flags: Mapping[str, Any],
    spec_file: Path | None,
    replace: bool,
) -> None:
    """Create `noun` NAME from the `-f` file's spec with the flags given (not None) on top."""
    from sztp.errors import ApiConflictError, ApiValidationError, SztpError
    from sztp.state.fleet import FleetError

    spec: dict[str, Any] = {}
    fleet = None
    if spec_file is not None:
        fleet, file_name, spec = _load_one(noun.kind, spec_file)
        if name is not None and name != file_name:
            raise SztpError(f"{spec_file} describes {noun.kind} {file_name!r}, not {name!r}")
        name = file_name
    if name is None:
        raise typer.BadParameter(f"give the {noun.key} or -f FILE", param_hint=noun.key.upper())
    spec.update({field: value for field, value in flags.items() if value is not None})
    with connect() as client:
        try:
            if replace:
                client.put(noun.kind, name, spec)
            else:
                client.create(noun.kind, name, spec)
        except ApiConflictError:
            if replace:
                raise
            raise SztpError(
                f"{noun.kind} {name!r} exists already; pass --replace to replace its spec"
            ) from None
        except ApiValidationError as exc:
            where = fleet.locate(exc.field) if fleet is not None else None
            if where is None:
                raise
            raise FleetError(f"{where}: {exc.message}") from None
    typer.echo(f"{noun.kind} {name} {'saved' if replace else 'added'}")


def _load_one(kind: str, path: Path) -> tuple["Fleet", str, dict[str, Any]]:
    """The one resource of `kind` a fleet-syntax file holds (file references resolved)."""
    from sztp.errors import SztpError
    from sztp.state.fleet import load_fleet

    fleet = load_fleet(path)
    found = [
        (found_kind, name, spec)
        for found_kind, specs in fleet.resources.items()
        for name, spec in specs.items()
    ]
    if len(found) != 1 or found[0][0] != kind:
        held = ", ".join(f"{found_kind} {name}" for found_kind, name, _ in found) or "nothing"
        raise SztpError(
            f"{path} must hold exactly one {kind} (it holds {held}); "
            "use sztpctl apply -f for several resources"
        )
    return fleet, found[0][1], found[0][2]


def read_text(path: Path | None) -> str | None:
    """A file given to a flag, as text (certificates, scripts, configuration)."""
    from sztp.errors import SztpError

    from .output import read_bytes

    if path is None:
        return None
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise SztpError(f"{path} is not UTF-8 text") from None


# ---- column helpers


def field_column(kind: str, name: str, header: str | None = None, *, wide: bool = False) -> Column:
    """A column showing `kind`'s spec field `name` ("-" when empty), headed by the field's name
    (os_name: OS NAME) unless `header` reads better."""
    model_field(kind, name)  # a field the model lacks fails when the CLI loads, not in a table

    def value(item: Mapping[str, Any]) -> str:
        shown = item["spec"].get(name)
        return "-" if shown in (None, "", []) else str(shown)

    return Column(header or name.replace("_", " ").upper(), value, wide=wide)


def present(name: str) -> Callable[[Mapping[str, Any]], str]:
    """A yes/no column: is spec field `name` set (secrets show as set, never their value)."""
    return lambda item: "yes" if item["spec"].get(name) else "no"


_UPDATED = Column("UPDATED", lambda item: item["updated_at"])
_CREATED = Column("CREATED", lambda item: item["created_at"], wide=True)

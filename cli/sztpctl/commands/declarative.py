"""`sztpctl apply | diff | export | status`: the fleet file against a server, in one round trip.

The server plans (and, for apply, commits) the whole fleet atomically through its bulk
endpoint; these commands only load the file and show what changed. Secrets never appear:
the server hides them in every change it reports.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from .output import ExitStatus, exit_statuses_help
from .remote import (
    OutputFormat,
    OutputOption,
    TimeoutOption,
    connect,
    console,
    emit,
    exit_with,
    working,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from sztp.client import ApplyResult, ResourceChange
    from sztp.state.fleet import Fleet

app = typer.Typer()

FileOption = Annotated[Path, typer.Option("--filename", "-f", help="The fleet file (YAML).")]
PruneOption = Annotated[
    bool,
    typer.Option("--prune", help="Delete resources the file does not list (only in its sections)."),
]
# `diff` exits 1 when the server differs, so its own failures exit 2 (ExitStatus.USAGE).
EXIT_DIFFERENT = 1
PlanOutputOption = Annotated[
    OutputFormat,
    typer.Option(
        "--output",
        "-o",
        case_sensitive=False,
        help="Output format: the plan as the server sends it in JSON or YAML ({revision, "
        "dry_run, changes}), for pipelines; table is the text for people.",
    ),
]
_SYMBOLS = {"create": ("+", "green"), "update": ("~", "yellow"), "delete": ("-", "red")}
_SHORT_TEXT = 60
# Characters of fleet file written at a time by `export`.
EXPORT_BATCH = 256 * 1024


_APPLY_HELP = f"""Make the server's state match the fleet file, atomically, and show what changed.

The server runs a large write as a job, which goes on whatever happens to this command.
Interrupted (exit {ExitStatus.INTERRUPTED:d}) or past --timeout (exit {ExitStatus.TIMED_OUT:d}),
the command names the job; `sztpctl job wait ID` then shows what the write changed once it
ends.

{exit_statuses_help(status for status in ExitStatus if status is not ExitStatus.DEVICE_FAILED)}

Examples:

    sztpctl apply -f fleet.yaml --prune

    sztpctl apply -f fleet.yaml --if-revision 42 -o json
"""

_DIFF_HELP = f"""Show how the server differs from the fleet file.

The last line names the revision of the server's state compared against (with -o json or
yaml, the plan's `revision`); with it, `apply --if-revision` applies only if nothing has
changed since.

Exit status: 0 no difference; {EXIT_DIFFERENT} differences; {ExitStatus.USAGE:d} error;
{ExitStatus.CONFLICT:d} {ExitStatus.CONFLICT.meaning}; {ExitStatus.REFUSED:d}
{ExitStatus.REFUSED.meaning}.

Example:

    sztpctl diff -f fleet.yaml --prune -o json
"""


@app.command("apply", help=_APPLY_HELP)
def apply(
    ctx: typer.Context,
    filename: FileOption,
    prune: PruneOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
    if_revision: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Apply only if the server is still at this revision (as `diff` printed it); "
            f"otherwise fail (exit {ExitStatus.CONFLICT:d}) without changing anything.",
        ),
    ] = None,
    timeout: TimeoutOption = None,
    output: PlanOutputOption = OutputFormat.TABLE,
) -> None:
    try:
        result = _submit(filename, prune, dry_run, if_revision, timeout)
    except Exception as exc:  # each failure with the exit status a pipeline acts on
        exit_with(ctx, exc, failure_status(exc, ExitStatus.ERROR))
    emit(result.document(), output, lambda: show_result(result, "applied"))


@app.command("diff", help=_DIFF_HELP)
def diff(
    ctx: typer.Context,
    filename: FileOption,
    prune: PruneOption = False,
    output: PlanOutputOption = OutputFormat.TABLE,
) -> None:
    try:
        result = _submit(filename, prune, True)
    except Exception as exc:  # every failure, even a bug, must not look like "differs" (1)
        exit_with(ctx, exc, failure_status(exc, ExitStatus.USAGE))
    emit(result.document(), output, lambda: _show_diff(result))
    if result.changes:
        raise typer.Exit(EXIT_DIFFERENT)


def _show_diff(result: ApplyResult) -> None:
    _show_changes(result.changes)
    if result.changes:
        typer.echo(f"differences: {_counts(result.changes)} (server at revision {result.revision})")
    else:
        typer.echo(f"no differences (server at revision {result.revision})")


def failure_status(error: BaseException, other: ExitStatus) -> ExitStatus:
    """The exit status of a write (or its plan) that failed with `error`: what a pipeline
    does next depends on it (plan again and retry, fix the file, or look); `other` for the
    rest."""
    from sztp.errors import ApiConflictError, ApiValidationError, JobStillRunning
    from sztp.state.fleet import FleetError

    if isinstance(error, JobStillRunning):
        return ExitStatus.INTERRUPTED if error.interrupted else ExitStatus.TIMED_OUT
    if isinstance(error, ApiConflictError):
        return ExitStatus.CONFLICT
    if isinstance(error, ApiValidationError | FleetError):
        return ExitStatus.REFUSED
    return other


@app.command("export")
def export(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (default: standard output)."),
    ] = None,
) -> None:
    """Write the server's state as a fleet file.

    Secrets are exported as "<hidden>", which keeps the stored secret when the file is
    applied again: `export` then `diff` shows no difference.

    The file is written as the server sends it, devices last, so a large fleet starts at
    once. A file named with --output appears only once it is whole; if the export fails
    half-way, the command exits non-zero and leaves that file as it was.
    """
    import sys

    from sztp.files import atomic_writer

    with connect() as client, client.stream_state() as state:
        header = f"# exported from {client.server} at revision {state.revision}\n"
        if output is None:
            _write_fleet(header, state.kinds, sys.stdout.buffer)
            return
        # 0600: configurations and scripts may be confidential even with secrets hidden.
        with atomic_writer(output, mode=0o600) as file:
            total = _write_fleet(header, state.kinds, file)
    typer.echo(f"{total} resource(s) at revision {state.revision} written to {output}", err=True)


def _write_fleet(
    header: str, kinds: Iterator[tuple[str, Iterator[tuple[str, dict[str, Any]]]]], out: BinaryIO
) -> int:
    """Write the fleet file of `kinds` as they arrive, in batches of about EXPORT_BATCH
    characters; the number of resources written."""
    from sztp.state.fleet import fleet_sections
    from sztp.state.fleet_dump import yaml_text

    out.write(header.encode())
    out.flush()  # the first line at once, however large the fleet
    total = 0

    def counted(entries: Iterator[tuple[str, dict[str, Any]]]) -> Iterator[tuple[str, Any]]:
        nonlocal total
        for entry in entries:
            total += 1
            yield entry

    batch: list[str] = []
    size = 0
    for text in yaml_text(fleet_sections((kind, counted(entries)) for kind, entries in kinds)):
        batch.append(text)
        size += len(text)
        if size >= EXPORT_BATCH:
            out.write("".join(batch).encode())
            batch.clear()
            size = 0
    out.write("".join(batch).encode())
    out.flush()
    return total


@app.command("status")
def status(
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Fleet overview: devices by status, stalled devices, recent errors."""
    with connect() as client:
        summary = client.fleet_status()
    emit(summary, output, lambda: _status_tables(summary))


def _submit(
    filename: Path,
    prune: bool,
    dry_run: bool,
    if_revision: int | None = None,
    wait: float | None = None,
) -> ApplyResult:
    from sztp.state.fleet import load_fleet

    with _collected_never():
        with working(f"reading {filename}"):
            fleet = load_fleet(filename)
        return _apply(fleet, prune, dry_run, if_revision, wait)


def _apply(
    fleet: Fleet, prune: bool, dry_run: bool, if_revision: int | None, wait: float | None
) -> ApplyResult:
    from sztp.errors import ApiValidationError
    from sztp.state.fleet import FleetError

    count = sum(len(specs) for specs in fleet.resources.values())
    verb = "planning" if dry_run else "applying"
    with connect() as client, working(f"{verb} {count} resources") as say:
        try:
            # The display needs names and changed fields, not the bodies of every change.
            result = client.apply_state(
                fleet.resources,
                prune=prune,
                dry_run=dry_run,
                if_match=if_revision,
                summary=True,
                on_progress=lambda done, total: say(f"{verb}: {done}/{total} resources checked"),
                wait=wait,
            )
        except ApiValidationError as exc:
            where = fleet.locate(exc.field)
            if where is None:
                raise
            raise FleetError(f"{where}: {exc.message}") from None
    return result


@contextmanager
def _collected_never() -> Iterator[None]:
    """Keeps what is loaded meanwhile (the fleet, and the plan the server answers) out of
    every cycle collection: this process holds them until it exits, and walking a large
    fleet's objects again and again (while they are made, when the collector is switched
    back on, and at exit) would only cost time."""
    import gc

    from sztp.collector import cyclic_gc_paused

    with cyclic_gc_paused():
        try:
            yield
        finally:
            gc.freeze()


def show_result(result: ApplyResult, done: str) -> None:
    """The changes of an apply, then one line: none, a dry run's counts, or what was `done`."""
    _show_changes(result.changes)
    if not result.changes:
        typer.echo(f"no changes; the server is at revision {result.revision}")
    elif result.dry_run:
        typer.echo(f"dry run, nothing changed: {_counts(result.changes)}")
    else:
        typer.echo(
            f"{done}: {_counts(result.changes, done=True)}; now at revision {result.revision}"
        )


def _counts(changes: Sequence[ResourceChange], *, done: bool = False) -> str:
    actions = [change.action for change in changes]
    return ", ".join(
        f"{actions.count(action)} {f'{action}d' if done else f'to {action}'}"
        for action in ("create", "update", "delete")
    )


def _show_changes(changes: Sequence[ResourceChange]) -> None:
    lines: list[tuple[str, str]] = []  # (text, colour)
    for change in changes:
        symbol, colour = _SYMBOLS.get(change.action, ("?", "default"))
        lines.append((f"{symbol} {change.kind}/{change.name}\n", colour))
        if change.action == "update":
            fields = _field_changes(change.before or {}, change.after or {})
            lines.extend((f"    {line}\n", "") for line in fields)
    if not lines:
        return
    out = console()
    if out.color_system is None:
        # Nothing to colour (not a terminal, or NO_COLOR): rich would only cut the text
        # into lines and glue them back, a quarter of a second for 10,000 devices.
        out.file.write("".join(text for text, _ in lines))
        out.file.flush()
        return
    from rich.text import Text

    # One Text printed once: per-line prints cost seconds for a 10,000-device plan.
    plan_text = Text()
    for text, colour in lines:
        plan_text.append(text, style=colour)
    plan_text.rstrip()
    out.print(plan_text, soft_wrap=True)


def _field_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = [
        f"{field}: {_brief(before.get(field))} → {_brief(after.get(field))}"
        for field in [*before, *(field for field in after if field not in before)]
        if before.get(field) != after.get(field)
    ]
    # Both sides of a changed secret read "<hidden>", so the field itself shows no change.
    return lines or ["a secret changed"]


def _brief(value: Any) -> str:
    """A value short enough for one line; long text is named by size and a hash prefix."""
    import hashlib
    import json

    if value is None:
        return "(none)"
    if isinstance(value, str) and ("\n" in value or len(value) > _SHORT_TEXT):
        digest = hashlib.sha256(value.encode()).hexdigest()[:12]
        shape = f"{value.count(chr(10)) + 1} lines" if "\n" in value else f"{len(value)} chars"
        return f"<text, {shape}, sha256 {digest}…>"
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _SHORT_TEXT * 2 else text[: _SHORT_TEXT * 2] + "…"


def _status_tables(summary: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from .output import report_message

    out = console()
    counts = Table("STATUS", "DEVICES", box=box.SIMPLE_HEAD)
    for name, count in summary["counts"].items():
        counts.add_row(name, str(count))
    counts.add_row("total", str(summary["devices"]), style="bold")
    out.print(counts)
    if summary["stalled"]:
        stalled = Table("STALLED", "LAST REPORT", "AT", box=box.SIMPLE_HEAD)
        for entry in summary["stalled"]:
            report = entry["last_report"]
            stalled.add_row(
                Text(entry["serial"]), Text(report["progress_type"]), report["received_at"]
            )
        out.print(stalled)
        # The server names the first of them in name order; the count is of all.
        unnamed = summary["counts"]["stalled"] - len(summary["stalled"])
        if unnamed > 0:
            out.print(f"and {unnamed} more stalled: sztpctl device list --status stalled")
    if summary["recent_errors"]:
        errors = Table("FAILED", "REPORT", "AT", "MESSAGE", box=box.SIMPLE_HEAD)
        for report in summary["recent_errors"]:
            errors.add_row(
                Text(report["serial"]),
                Text(report["progress_type"]),
                report["received_at"],
                Text(report_message(report)),
            )
        out.print(errors)
    expiring = summary.get("expiring")  # a server older than this client sends none
    if expiring and expiring["soonest"]:
        days = f"{expiring['within_days']:g}"
        soon = Table(f"EXPIRES WITHIN {days} DAYS", "NAME", "NOT AFTER", box=box.SIMPLE_HEAD)
        for expiry in expiring["soonest"]:
            when = expiry["not_after"] + (" (expired)" if expiry["expired"] else "")
            soon.add_row(expiry["kind"], Text(expiry["name"]), when)
        out.print(soon)
        unnamed = sum(expiring["counts"].values()) - len(expiring["soonest"])
        if unnamed > 0:
            out.print(f"and {unnamed} more expiring within {days} days")

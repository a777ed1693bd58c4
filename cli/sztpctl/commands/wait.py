"""`sztpctl wait`: until devices reach a bootstrapping status, for scripts and pipelines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from sztp.device_status import STATUSES

from .output import ExitStatus, exit_statuses_help
from .remote import OutputFormat, OutputOption, connect, emit, stderr_is_terminal

if TYPE_CHECKING:
    from sztp.waiting import WaitResult

app = typer.Typer()

_WAIT_HELP = f"""Wait until devices reach a bootstrapping status: the devices named, or every
device of a profile, model or site (the selector options combine).

--for status=S[,S...] names the statuses that end the wait for a device (default
status=complete; statuses: {", ".join(STATUSES)}). The wait ends once every device is in one
of them, at once when a device fails (unless failed is one of them), or when --timeout runs
out. A device that reached a status waited for counts as there, whatever it does next.

Progress goes to standard error: counts by status, updated in place on a terminal, one line
per change otherwise. -o json or yaml prints how the wait ended and each device's status.

{
    exit_statuses_help(
        [
            ExitStatus.OK,
            ExitStatus.ERROR,
            ExitStatus.USAGE,
            ExitStatus.TIMED_OUT,
            ExitStatus.DEVICE_FAILED,
            ExitStatus.INTERRUPTED,
        ]
    )
}

Examples:

    sztpctl wait SN-0001 SN-0002 --timeout 900

    sztpctl wait --profile dpu-day0 --site fra1 --for status=complete -o json

    sztpctl wait SN-0001 --for status=complete,failed
"""


@app.command("wait", help=_WAIT_HELP)
def wait(
    serials: Annotated[
        list[str] | None,
        typer.Argument(metavar="SERIAL", help="Serial numbers of the devices to wait for."),
    ] = None,
    profile: Annotated[
        str | None, typer.Option("--profile", help="Every device with this profile.")
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Every device of this model.")
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="Every device installed at this site.")
    ] = None,
    condition: Annotated[
        str,
        typer.Option(
            "--for",
            metavar="status=S[,S...]",
            help="The statuses that end the wait for a device.",
        ),
    ] = "status=complete",
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0,
            metavar="<seconds>",
            help=f"Give up after this long (exit {ExitStatus.TIMED_OUT:d}); default: no limit.",
        ),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    from sztp.waiting import WaitOutcome, wait_for_status

    wanted = _wanted(condition)
    selector = {"profile": profile, "model": model, "site": site}
    if serials and any(selector.values()):
        raise typer.BadParameter(
            "name devices or select them with --profile, --model or --site, not both",
            param_hint="'SERIAL'",
        )
    if not serials and not any(selector.values()):
        raise typer.BadParameter(
            "name the devices to wait for, or select them with --profile, --model or --site",
            param_hint="'SERIAL'",
        )
    with connect() as client, _progress(wanted) as show:
        try:
            result = wait_for_status(
                client,
                wanted,
                serials=serials or (),
                selector=None if serials else selector,
                timeout=timeout,
                on_round=show,
            )
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(ExitStatus.INTERRUPTED) from None
    emit(_document(result), output, lambda: _summary(result))
    if result.outcome is WaitOutcome.FAILED:
        raise typer.Exit(ExitStatus.DEVICE_FAILED)
    if result.outcome is WaitOutcome.TIMED_OUT:
        raise typer.Exit(ExitStatus.TIMED_OUT)


def _wanted(condition: str) -> tuple[str, ...]:
    """The statuses of `--for status=S[,S...]`."""
    from sztp.errors import SztpError
    from sztp.waiting import wanted_statuses

    key, equals, values = condition.partition("=")
    if key.strip() != "status" or not equals:
        raise typer.BadParameter(
            f"{condition!r}: expected status=S[,S...], e.g. status=complete", param_hint="'--for'"
        )
    try:
        return wanted_statuses([value.strip() for value in values.split(",") if value.strip()])
    except SztpError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--for'") from None


@contextmanager
def _progress(wanted: tuple[str, ...]) -> Iterator[Callable[[Mapping[str, str]], None]]:
    """A function showing each round's counts on stderr: in place on a terminal, else a
    line whenever they change."""
    started = time.monotonic()
    heading = f"waiting for {' or '.join(wanted)}"

    def line(statuses: Mapping[str, str]) -> str:
        return f"{heading}: {_counts(statuses)} ({time.monotonic() - started:.0f} s)"

    if stderr_is_terminal():
        from rich.console import Console

        with Console(stderr=True).status(heading) as status:
            yield lambda statuses: status.update(line(statuses))
        return
    shown = ""

    def plain(statuses: Mapping[str, str]) -> None:
        nonlocal shown
        if _counts(statuses) != shown:
            shown = _counts(statuses)
            typer.echo(line(statuses), err=True)

    yield plain


def _counts(statuses: Mapping[str, str]) -> str:
    values = list(statuses.values())
    return ", ".join(f"{values.count(status)} {status}" for status in STATUSES if status in values)


def _document(result: WaitResult) -> dict[str, object]:
    values = list(result.statuses.values())
    return {
        "outcome": str(result.outcome),
        "for": list(result.wanted),
        "counts": {status: values.count(status) for status in STATUSES},
        "devices": result.statuses,
    }


def _summary(result: WaitResult) -> None:
    from sztp.waiting import WaitOutcome

    if result.outcome is WaitOutcome.REACHED:
        typer.echo(result.describe())
        return
    hint = (
        "; `sztpctl device history SERIAL` shows why"
        if result.outcome is WaitOutcome.FAILED
        else ""
    )
    typer.echo(f"error: {result.describe()}{hint}", err=True)

"""What the commands that talk to an sztp-server share: connection options (given once, to
the root command: `sztpctl --server URL status`), output formats and error exits."""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from .output import ExitStatus, fail_with

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from sztp.client import SztpClient

ContextOption = Annotated[
    str | None,
    typer.Option(
        "--context", help="Context from the config file (env SZTP_CONTEXT; default: current)."
    ),
]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="Admin API URL, e.g. https://sztp.lab:7080 (env SZTP_SERVER)."),
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option(
        "--token-file", help="File holding the API token (env SZTP_TOKEN_FILE or SZTP_TOKEN)."
    ),
]


_WIDE = 1000


class OutputFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="Output format.", case_sensitive=False)
]
# How long to follow a write the server runs as a job; what is still running then goes on.
TimeoutOption = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=0,
        metavar="<seconds>",
        help="Follow the write at most this long (default: until it ends; 0: return once the "
        "server has it). A write still running then goes on on the server, and the command "
        f"exits {ExitStatus.TIMED_OUT:d} naming its job for `sztpctl job wait`.",
    ),
]


@dataclass
class ConnectionOptions:
    """What the root command was given; set by its callback before any command runs."""

    context: str | None = None
    server: str | None = None
    token_file: Path | None = None


given_connection = ConnectionOptions()


def connect() -> SztpClient:
    """A client for the server that the root command's connection options, the environment
    and the config file name."""
    from sztp.config import resolve_connection

    return resolve_connection(
        context=given_connection.context,
        server=given_connection.server,
        token_file=given_connection.token_file,
    ).client()


@contextmanager
def working(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while a long request runs, with a function that changes its text;
    nothing when stderr is not a terminal (pipelines keep clean logs)."""
    if not stderr_is_terminal():
        yield _ignore
        return
    from rich.console import Console

    with Console(stderr=True).status(message) as status:
        yield status.update


def stderr_is_terminal() -> bool:
    """Whether rich would draw live progress on stderr (a terminal, or forced to)."""
    if not _may_be_terminal(sys.stderr):
        return False  # what rich would decide too, without importing it (a tenth of `apply`)
    from rich.console import Console

    return Console(stderr=True).is_terminal


def _ignore(_text: str) -> None:
    pass


def _may_be_terminal(stream: Any) -> bool:
    """False only where rich's `Console.is_terminal` is certainly False: no FORCE_COLOR or
    TTY_COMPATIBLE in the environment, and `stream` is not a terminal."""
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return True
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def console() -> Console:
    """A rich console; off a terminal, tables keep their natural width instead of 80."""
    from rich.console import Console

    plain = Console(highlight=False)
    return plain if plain.is_terminal else Console(highlight=False, width=_WIDE)


def emit(data: Any, output: OutputFormat, table: Callable[[], None]) -> None:
    """Print `data` as JSON or YAML, or call `table` to draw it for people."""
    if output is OutputFormat.JSON:
        import json

        typer.echo(json.dumps(data, indent=2))
    elif output is OutputFormat.YAML:
        import yaml

        typer.echo(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), nl=False)
    else:
        table()


def exit_with(ctx: typer.Context, error: BaseException, status: int) -> NoReturn:
    """`fail_with`'s one line, but with exit `status` (for `diff`, where 1 means "differs");
    with --debug the traceback is shown instead."""
    if ctx.find_root().params.get("debug"):
        raise error
    try:
        fail_with(error)
    except SystemExit:
        raise typer.Exit(status) from None

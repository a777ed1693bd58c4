"""Console output, file I/O and error reporting shared by the commands."""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import typer

from sztp.errors import SztpError


class ExitStatus(enum.IntEnum):
    """How an sztpctl command ended, declared once: the commands exit with these, and their
    help and docs/gitops.md name them."""

    OK = 0
    ERROR = 1
    # click's own status for a usage error; also `diff`'s for any failure, its 1 meaning
    # "differs".
    USAGE = 2
    TIMED_OUT = 3
    CONFLICT = 4
    REFUSED = 5
    DEVICE_FAILED = 6
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """What the status tells a script, in a few words."""
        return _MEANINGS[self]


_MEANINGS = {
    ExitStatus.OK: "success",
    ExitStatus.ERROR: "any other error (an unreachable server, a refused token)",
    ExitStatus.USAGE: "usage error (for `diff`: any error, since its 1 means differences)",
    ExitStatus.TIMED_OUT: (
        "--timeout ran out: a write goes on on the server as a job, or devices did not reach "
        "the status waited for"
    ),
    ExitStatus.CONFLICT: (
        "conflict, retry: the server's state changed meanwhile (HTTP 409, or 412 for a stale "
        "--if-revision); plan again and retry"
    ),
    ExitStatus.REFUSED: (
        "refused: the fleet file cannot be read or is invalid, or the server refused the "
        "change (HTTP 400, 413, 415 or 422); retrying the same file fails the same way"
    ),
    ExitStatus.DEVICE_FAILED: "a device waited for reached the status failed",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
}


def exit_statuses_help(statuses: Iterable[ExitStatus]) -> str:
    """A help paragraph naming `statuses` and their meanings."""
    return (
        "Exit status: " + "; ".join(f"{int(status)} {status.meaning}" for status in statuses) + "."
    )


def report_message(report: Mapping[str, Any]) -> str:
    """A progress report's message, marked when the server cut it (or left out keys or trust
    anchors) to keep within its size cap."""
    message = report.get("message") or ""
    return f"{message} [truncated by the server]" if report.get("truncated") else message


def fail_with(error: BaseException) -> NoReturn:
    """Print one line naming the problem and exit non-zero."""
    if isinstance(error, SztpError):
        message = str(error)
    elif isinstance(error, OSError):
        target = f" {error.filename}" if error.filename else ""
        message = f"cannot access{target}: {error.strerror or error}"
    else:
        message = f"unexpected {type(error).__name__}: {error} (run with --debug for details)"
    typer.echo(f"error: {message}", err=True)
    sys.exit(ExitStatus.ERROR)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SztpError(f"cannot read {path}: {exc.strerror or exc}") from None

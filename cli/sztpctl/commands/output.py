"""Console output, file I/O and error reporting shared by the commands."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

import typer

from sztp.errors import SztpError

EXIT_ERROR = 1


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
    sys.exit(EXIT_ERROR)


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SztpError(f"cannot read {path}: {exc.strerror or exc}") from None

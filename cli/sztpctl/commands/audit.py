"""`sztpctl audit`: the server's audit log of admin changes."""

from __future__ import annotations

from typing import Annotated

import typer

from .remote import (
    OutputFormat,
    OutputOption,
    connect,
    emit,
)

app = typer.Typer(help="The server's audit log of admin changes.", no_args_is_help=True)


@app.command("prune")
def prune(
    older_than_days: Annotated[
        float | None,
        typer.Option(
            "--older-than-days",
            help="Delete entries older than this many days (default: the server's "
            "audit_retention_days).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count the entries that would go.")
    ] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Delete old audit entries now (needs an admin token).

    The server prunes by itself too when its `audit_retention_days` is set.

    A prune made here is itself recorded in the log, with the name of the token used.
    """
    with connect() as client:
        result = client.prune_audit(older_than_days, dry_run=dry_run)
    verb = "would prune" if result["dry_run"] else "pruned"
    emit(
        result,
        output,
        lambda: typer.echo(
            f"{verb} {result['entries']} audit entries from before {result['before']}"
        ),
    )

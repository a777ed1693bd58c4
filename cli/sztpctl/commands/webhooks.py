"""`sztpctl webhooks`: where device events go, and how their deliveries stand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import typer

from .remote import OutputFormat, OutputOption, connect, console, emit

app = typer.Typer()


@app.command("webhooks")
def webhooks(output: OutputOption = OutputFormat.TABLE) -> None:
    """The server's webhooks: where each sends which events, how many wait, how many were
    delivered or given up (of the last day), and the newest failure.

    The webhooks are set in the server's configuration (docs/server.md, "Webhooks"). Example:
    has the ops receiver missed anything?

        sztpctl webhooks
    """
    with connect() as client:
        found = client.webhooks()["webhooks"]
    emit(found, output, lambda: _table(found))


def _table(found: list[Mapping[str, Any]]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    if not found:
        typer.echo("no webhooks configured")
        return
    table = Table(
        "WEBHOOK", "URL", "PENDING", "OLDEST PENDING", "DELIVERED", "GIVEN UP", "LAST ERROR",
        box=box.SIMPLE_HEAD,
    )  # fmt: skip
    for hook in found:
        table.add_row(
            hook["name"],
            Text(hook["url"] or "(no longer configured)"),
            str(hook["pending"]),
            hook["oldest_pending_at"] or "",
            str(hook["delivered"]),
            str(hook["given_up"]),
            Text(hook["last_error"] or ""),
        )
    console().print(table)

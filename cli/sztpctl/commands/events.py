"""`sztpctl events`: the flight recorder, every device request served or refused and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .remote import OutputFormat, OutputOption, connect, console, emit

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer()

# The most events one listing asks for; the server keeps `device_events_kept` in all.
MOST = 1000


@app.command("events")
def events(
    serial: Annotated[
        str | None,
        typer.Option(
            "--serial",
            help="Only requests naming this serial (it need not be a device: a refused "
            "request names the serial it claimed).",
        ),
    ] = None,
    refused: Annotated[
        bool, typer.Option("--refused", help="Only refused requests, with the reason.")
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=MOST, help="How many, newest first.")
    ] = 20,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Device requests as the server recorded them, newest first: which RPC, for which serial,
    from where, how it ended and why a refused one was refused.

    A device is only ever told `access-denied` or the like; the reason is here (and in the
    server's log and metrics). Example: why can SN-0001 not log in?

        sztpctl events --serial SN-0001 --refused
    """
    with connect() as client:
        page = client.device_events(serial=serial, refused=refused, limit=limit)
    emit(page["events"], output, lambda: _table(page["events"]))


def _table(events: list[Mapping[str, Any]]) -> None:
    if not events:
        typer.echo("no device requests recorded")
        return
    console().print(events_table(events))


def events_table(events: list[Mapping[str, Any]], title: str | None = None) -> Table:
    """Events as rows, text from the network shown as text."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        "TIME", "RPC", "SERIAL", "FROM", "STATUS", "MS", "OUTCOME", box=box.SIMPLE_HEAD,
        title=title, title_justify="left",
    )  # fmt: skip
    for event in events:
        # A refused request's serial is what it claimed: text from the network, shown as text.
        serial = event["serial"] or ""
        claimed = serial and not event["authenticated"]
        outcome = served(event) if event["refusal"] is None else why(event["refusal"])
        # What the device said, and why it was not served (an older server sends none).
        if event.get("detail"):
            outcome = f"{outcome} ({event['detail']})" if outcome else event["detail"]
        table.add_row(
            event["at"],
            event["rpc"],
            Text(f"{serial} (claimed)" if claimed else serial),
            Text(event["remote"] or ""),
            str(event["status"]),
            f"{event['duration_ms']:.1f}",
            Text(outcome),
        )
    return table


def served(event: Mapping[str, Any]) -> str:
    """What a served request was answered from: its profile and image (a server older than
    this client does not say)."""
    parts = []
    if event.get("profile"):
        parts.append(f"profile {event['profile']}")
    if event.get("image"):
        parts.append(f"image {event['image']}")
    return ", ".join(parts)


def why(refusal: str) -> str:
    """The refusal and what it means."""
    from sztp.refusals import Refusal

    try:
        return f"{refusal}: {Refusal(refusal).meaning}"
    except ValueError:  # a reason only a newer server knows
        return refusal

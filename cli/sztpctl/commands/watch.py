"""`sztpctl watch`: a live view of the fleet (counts by status, devices needing attention)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .remote import connect, console

if TYPE_CHECKING:
    from rich.console import RenderableType

app = typer.Typer()

_STYLES = {
    "complete": "green",
    "failed": "red",
    "stalled": "yellow",
    "in-progress": "cyan",
    "rebooting": "cyan",
}


@app.command("watch")
def watch(
    interval: Annotated[
        float, typer.Option("--interval", "-n", min=0.5, help="Seconds between refreshes.")
    ] = 2.0,
    once: Annotated[bool, typer.Option("--once", help="Draw the view once and exit.")] = False,
) -> None:
    """Follow the fleet live: devices by status, stalled devices and recent failures.

    Stop with Ctrl-C. If the server stops answering, the view says so and keeps trying.
    """
    import time

    from rich.live import Live

    from sztp.errors import SztpError

    with connect() as client:
        view = _view(client.server, client.fleet_status())  # a first failure is an error
        if once:
            console().print(view)
            return
        try:
            with Live(view, console=console(), auto_refresh=False) as live:
                while True:
                    time.sleep(interval)
                    try:
                        view = _view(client.server, client.fleet_status())
                    except SztpError as exc:
                        view = _view(client.server, None, problem=str(exc))
                    live.update(view, refresh=True)
        except KeyboardInterrupt:  # the normal way out of a live view
            return


def _view(
    server: str, summary: dict[str, Any] | None, problem: str | None = None
) -> RenderableType:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from .output import report_message

    stamp = datetime.now(UTC).strftime("%H:%M:%S UTC")
    if summary is None:
        return Group(Text(f"{server} at {stamp}: {problem} (retrying)", style="red"))
    parts: list[RenderableType] = [
        Text(f"{server}: {summary['devices']} device(s) at {stamp}", style="bold")
    ]
    counts = Table(*summary["counts"], box=box.SIMPLE_HEAD)
    counts.add_row(
        *(
            Text(str(count), style=_STYLES.get(status, "") if count else "dim")
            for status, count in summary["counts"].items()
        )
    )
    parts.append(counts)
    attention = Table("DEVICE", "STATUS", "LAST REPORT", "AT", "MESSAGE", box=box.SIMPLE_HEAD)
    # Stalled devices first, then recent failures, each with the report that puts it here.
    needing_attention = [
        (entry["serial"], "stalled", entry["last_report"]) for entry in summary["stalled"]
    ] + [(report["serial"], "failed", report) for report in summary["recent_errors"]]
    for serial, status, report in needing_attention:
        attention.add_row(
            Text(serial),
            Text(status, style=_STYLES[status]),
            Text(report["progress_type"]),
            report["received_at"],
            Text(report_message(report)),
        )
    parts.append(attention if attention.rows else Text("no stalled or failed devices"))
    return Group(*parts)

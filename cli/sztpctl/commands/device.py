"""`sztpctl device`: devices known to the server and their bootstrap progress."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .remote import (
    ContextOption,
    OutputFormat,
    OutputOption,
    ServerOption,
    TokenFileOption,
    connect,
    console,
    emit,
)

app = typer.Typer(help="Devices and their bootstrap progress.", no_args_is_help=True)

STATUSES = ("not-seen", "in-progress", "rebooting", "complete", "failed", "stalled")


@app.command("list")
def list_devices(
    status: Annotated[
        str | None, typer.Option(help=f"Only devices in this status: {', '.join(STATUSES)}.")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="Only devices with this profile.")] = None,
    model: Annotated[str | None, typer.Option(help="Only devices of this model.")] = None,
    output: OutputOption = OutputFormat.TABLE,
    context: ContextOption = None,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """List devices (secrets hidden)."""
    from ..state.resources import DEVICE

    if status is not None and status not in STATUSES:
        raise typer.BadParameter(f"{status!r} is not one of {', '.join(STATUSES)}")
    with connect(context, server, token_file) as client:
        devices = client.list(DEVICE, status=status, profile=profile, model=model)
    emit(devices, output, lambda: _device_table(devices))


@app.command("status")
def device_status(
    serial: Annotated[str, typer.Argument(help="The device's serial number.")],
    output: OutputOption = OutputFormat.TABLE,
    context: ContextOption = None,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
) -> None:
    """A device's status and the timeline of its progress reports, attempt by attempt."""
    with connect(context, server, token_file) as client:
        summary = client.device_status(serial)
        progress = client.device_progress(serial)
    data = {**summary, "history": progress["attempts"]}
    emit(data, output, lambda: _timeline(data))


def _device_table(devices: list[dict[str, Any]]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(
        "SERIAL", "PROFILE", "MODEL", "MAC", "VOUCHER", "PASSWORD", "UPDATED", box=box.SIMPLE_HEAD
    )
    for device in devices:
        spec = device["spec"]
        table.add_row(
            Text(device["name"]),
            Text(spec.get("profile") or ("(selection)" if spec.get("selection") else "-")),
            Text(spec.get("model") or "-"),
            spec.get("mac") or "-",
            "yes" if spec.get("voucher") else "no",
            "yes" if spec.get("password_hash") else "no",
            device["updated_at"],
        )
    console().print(table)
    typer.echo(f"{len(devices)} device(s)")


def _timeline(data: dict[str, Any]) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    out = console()
    out.print(
        Text(f"{data['serial']}: {data['status']} ({data['attempts']} attempt(s))"),
        style="bold",
    )
    for attempt in data["history"]:
        table = Table(
            "TIME", "PROGRESS", "MESSAGE", "FROM", box=box.SIMPLE_HEAD,
            title=f"attempt {attempt['attempt']}", title_justify="left",
        )  # fmt: skip
        for report in attempt["reports"]:
            table.add_row(
                report["received_at"],
                Text(report["progress_type"]),
                Text(report["message"] or ""),
                report["source_address"] or "",
            )
        out.print(table)
    if not data["history"]:
        typer.echo("no progress reports yet")

"""`sztpctl pki`: a lab PKI (manufacturer, MASA, owner, bootstrap-server TLS, device IDevIDs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

if TYPE_CHECKING:
    from sztp.protocol.pki import KeyType

app = typer.Typer(
    help="Create a lab PKI for trying sztp without a manufacturer.", no_args_is_help=True
)

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072")


@app.command("init")
def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the PKI in.")],
    serial: Annotated[
        list[str],
        typer.Option("--serial", "-s", help="Device serial number (repeat for several devices)."),
    ],
    server_name: Annotated[
        list[str] | None,
        typer.Option(
            "--server-name",
            help="DNS name or IP address for the bootstrap-server TLS certificate (repeatable).",
        ),
    ] = None,
    key_type: Annotated[
        str, typer.Option(help=f"Key type for every key: {', '.join(KEY_TYPES)}.")
    ] = "ec-p256",
    hw_model: Annotated[
        str | None, typer.Option(help="Hardware model written into the IDevID certificates.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing PKI in DIRECTORY.")] = False,
) -> None:
    """Create manufacturer CA, MASA, owner CA and certificate, server TLS and device IDevIDs.

    Private keys are written with mode 0600. Example:

        sztpctl pki init lab-pki --serial SN-0001 --serial SN-0002 --server-name sztp.lab
    """
    from sztp.labpki import write_lab_pki

    if key_type not in KEY_TYPES:
        raise typer.BadParameter(
            f"{key_type!r} is not one of {', '.join(KEY_TYPES)}", param_hint="--key-type"
        )
    names = tuple(server_name) if server_name else ("localhost", "127.0.0.1")
    lab = write_lab_pki(
        directory,
        serial,
        server_names=names,
        key_type=cast("KeyType", key_type),  # checked against KEY_TYPES above
        hw_model=hw_model,
        force=force,
    )
    typer.echo(f"lab PKI for {len(serial)} device(s) written to {lab.directory}")

"""`sztpctl validate`: check a fleet file offline, as far as it can be without a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command("validate")
def validate(
    filename: Annotated[Path, typer.Option("--filename", "-f", help="The fleet file (YAML).")],
    masa_ca: Annotated[
        list[Path] | None,
        typer.Option(
            help="PEM trust anchor(s) the vouchers' MASA signatures must chain to "
            "(default: check each signature only)."
        ),
    ] = None,
) -> None:
    """Check a fleet file offline: schema, files, specs, references, vouchers and DHCP.

    Beyond the schema and the referenced files, each spec is checked as the server would,
    references must resolve, every voucher must name its device and pin the certificate of
    the owner that signs for it, and the DHCP section must encode.

    Each problem is printed as FILE:LINE: FIELD: MESSAGE; the exit status is 1 if there is
    any, 0 otherwise.
    """
    from ..protocol import pki
    from ..state.fleet import load_fleet
    from ..state.validate import validate_fleet
    from .output import read_bytes

    anchors = (
        [cert for path in masa_ca for cert in pki.load_certificates_pem(read_bytes(path))]
        if masa_ca
        else None
    )
    fleet = load_fleet(filename)  # a schema or file problem stops here: one line, exit 1
    result = validate_fleet(fleet, anchors)
    for problem in result.problems:
        typer.echo(f"error: {problem}", err=True)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    if result.problems:
        typer.echo(f"{filename}: {len(result.problems)} problem(s)", err=True)
        raise typer.Exit(1)
    counts = ", ".join(f"{len(specs)} {kind}(s)" for kind, specs in fleet.resources.items())
    masa = ", MASA chains included" if anchors else ""
    typer.echo(
        f"{filename}: valid ({counts or 'no resources'}; {result.vouchers_checked} voucher(s) "
        f"checked{masa}{'; dhcp section checked' if fleet.dhcp is not None else ''})"
    )

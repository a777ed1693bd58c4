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
    skip_unset_secrets: Annotated[
        bool,
        typer.Option(
            "--skip-unset-secrets",
            help="A secret (password, password_hash, private_key) given as {env: VAR} with VAR "
            "unset is reported and left unchecked instead of failing, e.g. in a pull-request "
            "job without secrets. Any other unset variable is still an error.",
        ),
    ] = False,
) -> None:
    """Check a fleet file offline: schema, files, specs, references, vouchers, DHCP and DNS.

    Beyond the schema and the referenced files, each spec is checked as the server would,
    references must resolve, every voucher must name its device and pin the certificate of
    the owner that signs for it, the DHCP section must encode, and the DNS section must name
    valid servers and devices whose records can be made (signed: a voucher, one owner with a
    key in the file).

    Each problem is printed as FILE:LINE: FIELD: MESSAGE; the exit status is 1 if there is
    any, 0 otherwise. Every variable an {env: VAR} reference names must be set, except, with
    --skip-unset-secrets, a secret's: `apply` and `diff` need them all.
    """
    from sztp.protocol import pki
    from sztp.state.fleet import load_fleet
    from sztp.state.validate import validate_fleet

    from .output import read_bytes

    anchors = (
        [cert for path in masa_ca for cert in pki.load_certificates_pem(read_bytes(path))]
        if masa_ca
        else None
    )
    # A schema or file problem stops here: one line, exit 1.
    fleet = load_fleet(filename, skip_unset_secrets=skip_unset_secrets)
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
    dhcp = "; dhcp section checked" if fleet.dhcp is not None else ""
    dns = "; dns section checked" if fleet.dns is not None else ""
    # In the summary too, so a green job's log says what it did not check.
    skipped = len(fleet.skipped_secrets)
    secrets = f"; {skipped} secret(s) not checked: variable unset" if skipped else ""
    typer.echo(
        f"{filename}: valid ({counts or 'no resources'}; {result.vouchers_checked} voucher(s) "
        f"checked{masa}{dhcp}{dns}{secrets})"
    )

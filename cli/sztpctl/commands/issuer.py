"""`sztpctl issuer`: the server's LDevID issuers, and the CRLs of the builtin ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .remote import connect

app = typer.Typer(help="The server's LDevID issuers and their CRLs.", no_args_is_help=True)


@app.command("crl")
def crl(
    name: Annotated[str, typer.Argument(help="The issuer's name (in ldevid_issuers).")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="CRL file to write (DER unless --pem).")
    ],
    pem: Annotated[bool, typer.Option("--pem", help="Write the CRL as PEM.")] = False,
) -> None:
    """Fetch a builtin issuer's CRL, signed by its CA now and current for the issuer's
    crl_validity_days (a week unless set): every LDevID of the issuer revoked so far
    (`sztpctl device revoke`). An external CA (cmp, hook) publishes its own.

    The file appears whole or not at all, so a file server may publish it as it is written;
    run this at least daily. Example:

        sztpctl issuer crl lab-ldevid -o /srv/files/lab-ldevid.crl
    """
    from sztp.files import write_atomically

    with connect() as client:
        signed = client.issuer_crl(name, pem=pem)
    write_atomically(output, signed, mode=0o644)
    typer.echo(f"CRL of {name} written to {output}")

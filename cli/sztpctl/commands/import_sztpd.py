"""`sztpctl import sztpd`: an sztpd running configuration, converted into a fleet file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .output import ExitStatus

app = typer.Typer(
    name="import",
    help="Convert another bootstrap server's configuration into a fleet file.",
    no_args_is_help=True,
)


_SZTPD_HELP = f"""Convert an sztpd running configuration into a fleet file (YAML).

Devices, their activation codes (those in clear, $0$, as stored hashes), boot images, scripts,
configurations, responses and device types (as profiles, selection rules and models), owner
certificates and the CAs of device identities are carried. What a fleet has no place for
(server settings, admin accounts, callouts, private keys, crypt hashes, match criteria other
than on hw-model, os-name and os-version) is left out, with a note on stderr naming its path
in the sztpd document and why; no note shows a secret. The fleet holds the devices' password
hashes: keep it out of version control, or move them to {{env: ...}}.

Exit status: {ExitStatus.OK:d} converted; {ExitStatus.ERROR:d} the file cannot be read or is
not an sztpd running configuration; {ExitStatus.REFUSED:d} with --strict, something would be
left out (nothing is written).

Examples:

    sztpctl import sztpd running.json -o fleet.yaml

    sztpctl import sztpd running.json --strict > fleet.yaml
"""


@app.command("sztpd", help=_SZTPD_HELP)
def sztpd(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="The sztpd running configuration (JSON): sztpd 0.0.15's wn-sztpd-1 layout, or "
            "0.0.46's sztpd/yangcore layout with ietf-keystore and ietf-truststore.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write the fleet file here (mode 0600) instead of to stdout."
        ),
    ] = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help=f"If anything is left out, write nothing and exit {ExitStatus.REFUSED:d} (the "
            "notes say what and why).",
        ),
    ] = False,
) -> None:
    from sztp.errors import SztpError
    from sztp.files import write_atomically
    from sztp.state.fleet import SECTIONS, dump_fleet
    from sztp.state.fleet_json import parse_json
    from sztp.state.sztpd_import import convert_sztpd

    from .output import fail_with, read_bytes

    try:
        data = read_bytes(file)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SztpError(f"{file} is not UTF-8 text") from None
        conversion = convert_sztpd(parse_json(text, file))
    except SztpError as exc:
        fail_with(exc)
    for note in conversion.notes:
        typer.echo(str(note), err=True)
    left_out = len(conversion.left_out)
    counts = ", ".join(
        f"{len(entries)} {SECTIONS[section]}(s)" for section, entries in conversion.fleet.items()
    )
    summary = (
        f"{file}: {conversion.layout.value}: {counts or 'nothing to carry'}; "
        f"{left_out} thing(s) left out, {len(conversion.notes) - left_out} changed"
    )
    if strict and left_out:
        typer.echo(f"{summary}: nothing written (--strict)", err=True)
        raise typer.Exit(ExitStatus.REFUSED)
    fleet = (
        f"# Converted by `sztpctl import sztpd` from {file.name}, "
        f"a running configuration of {conversion.layout.value}.\n"
    )
    fleet += dump_fleet(conversion.fleet)
    if output is None:
        typer.echo(fleet, nl=False)
    else:
        # Device password hashes are secrets.
        write_atomically(output, fleet.encode(), mode=0o600)
    typer.echo(summary, err=True)

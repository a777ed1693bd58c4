"""`sztpctl dhcp render`: the fleet file's dhcp section as DHCP server configuration."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from sztp.protocol.dhcp import Family


class RenderFormat(enum.StrEnum):
    KEA4 = "kea4"
    KEA6 = "kea6"
    DHCPD = "dhcpd"
    DNSMASQ = "dnsmasq"


def render(
    filename: Annotated[Path, typer.Option("--filename", "-f", help="The fleet file (YAML).")],
    output_format: Annotated[
        RenderFormat, typer.Option("--format", help="DHCP server.", case_sensitive=False)
    ] = RenderFormat.KEA4,
    family: Annotated[
        Family, typer.Option(help="For dhcpd and dnsmasq (kea4/kea6 imply it).")
    ] = Family.V4,
    legacy_text: Annotated[
        bool,
        typer.Option(help="Plain-text URI for lab agents that expect it. NOT RFC 8572 conformant."),
    ] = False,
) -> None:
    """Render the fleet file's dhcp section (global, per subnet, per reservation).

    kea4/kea6 print a JSON fragment (option-data per scope; reservations are global ones,
    used with "reservations-global": true) to merge into Kea's Dhcp4/Dhcp6 configuration;
    dhcpd and dnsmasq print configuration lines, with comments saying where they go.

    Example:

        sztpctl dhcp render -f fleet.yaml --format kea4
    """
    from sztp.errors import SztpError
    from sztp.state.dhcp_section import render_dhcp
    from sztp.state.fleet import load_fleet

    implied = {RenderFormat.KEA4: Family.V4, RenderFormat.KEA6: Family.V6}
    chosen = implied.get(output_format, family)
    fleet = load_fleet(filename)
    if fleet.dhcp is None:
        raise SztpError(f"{filename} has no dhcp section")
    typer.echo(render_dhcp(fleet, output_format.value, chosen, legacy_text=legacy_text), nl=False)

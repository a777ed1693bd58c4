"""`sztpctl dhcp`: the DHCP option that points devices at bootstrap servers (143 / 136)."""

from __future__ import annotations

from typing import Annotated

import typer

from .dhcp_render import render

app = typer.Typer(
    help="DHCP option 143 (v4) / 136 (v6) for bootstrap-server URIs.", no_args_is_help=True
)

FORMATS = ("hex", "kea", "dhcpd", "dnsmasq")
app.command("render")(render)


@app.command("encode")
def encode(
    uris: Annotated[list[str], typer.Argument(help="Bootstrap-server URIs: https://host[:port].")],
    family: Annotated[str, typer.Option(help="v4 (option 143) or v6 (option 136).")] = "v4",
    output_format: Annotated[
        str, typer.Option("--format", "-f", help=f"One of {', '.join(FORMATS)}.")
    ] = "kea",
    legacy_text: Annotated[
        bool,
        typer.Option(help="Plain-text URI for lab agents that expect it. NOT RFC 8572 conformant."),
    ] = False,
) -> None:
    """Encode bootstrap-server URIs as the option payload, for a given DHCP server.

    Example:

        sztpctl dhcp encode https://sztp.lab.example:8443 --format kea
    """
    import json

    from sztp.protocol import dhcp

    if family not in ("v4", "v6"):
        raise typer.BadParameter(f"{family!r} is not v4 or v6", param_hint="--family")
    if output_format not in FORMATS:
        raise typer.BadParameter(
            f"{output_format!r} is not one of {', '.join(FORMATS)}", param_hint="--format"
        )
    chosen_family = dhcp.Family(family)
    encoding = dhcp.OptionEncoding.LEGACY_TEXT if legacy_text else dhcp.OptionEncoding.RFC8572
    if output_format == "hex":
        typer.echo(dhcp.to_hex(dhcp.encode_option(uris, chosen_family, encoding)))
    elif output_format == "kea":
        option = dhcp.render_kea_option_data(uris, chosen_family, encoding)
        typer.echo(json.dumps(option, indent=2))
    elif output_format == "dhcpd":
        typer.echo(dhcp.render_isc_dhcpd(uris, chosen_family, encoding).rstrip("\n"))
    else:
        typer.echo(dhcp.render_dnsmasq(uris, chosen_family, encoding).rstrip("\n"))


@app.command("decode")
def decode(
    payload_hex: Annotated[str, typer.Argument(help="Option payload as hex (colons allowed).")],
) -> None:
    """Decode an option 143/136 payload (e.g. from a packet capture) into its URIs."""
    from sztp.protocol import dhcp

    from .loading import parse_hex

    for uri in dhcp.decode_uri_list(parse_hex(payload_hex, "PAYLOAD_HEX")):
        typer.echo(uri)

"""`sztpctl dns`: the DNS records that point devices at bootstrap servers (RFC 8572 §4.2)."""

from __future__ import annotations

import enum
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from sztp.files import write_atomically

app = typer.Typer(
    help="DNS records (SRV, and TXT per device) for discovery without DHCP.", no_args_is_help=True
)

# The master file a fragment is checked in: the domain as a zone of its own. The SRV targets
# are outside it, so the checker is asked to look at in-zone names only (no lookups).
_CHECK_ZONE_HEAD = """\
$TTL {ttl}
@ IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 300
@ IN NS ns.invalid.
"""
_CHECKERS = {
    "named-checkzone": ("-k", "fail", "-i", "local", "{domain}", "{file}"),
    "kzonecheck": ("-o", "{domain}", "{file}"),
}


class RenderFormat(enum.StrEnum):
    ZONE = "zone"
    NSUPDATE = "nsupdate"
    MDNS = "mdns"


@app.command("render")
def render(
    filename: Annotated[Path, typer.Option("--filename", "-f", help="The fleet file (YAML).")],
    output_format: Annotated[
        RenderFormat,
        typer.Option(
            "--format",
            help="zone (master-file text), nsupdate (a script), or mdns (the records file of "
            "sztp-mdns, names relative to local.).",
            case_sensitive=False,
        ),
    ] = RenderFormat.ZONE,
    relative: Annotated[
        bool,
        typer.Option(
            "--origin/--absolute",
            help="zone: an $ORIGIN line per domain and names relative to it (for $INCLUDE), "
            "or fully qualified names.",
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of to stdout.")
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            help="Check the records in a zone of each domain with named-checkzone (BIND) or, "
            "without it, kzonecheck (Knot); mdns: with sztp-mdns check."
        ),
    ] = False,
) -> None:
    """Render the fleet file's dns section: SRV records and each device's TXT records.

    The TXT records of a device carry redirect information to the section's bootstrap
    servers, signed by the owner of the device's profile with the device's voucher (the
    owner's PEM private key must be in the fleet file), or unsigned with `signed: false`.
    The nsupdate script replaces each record set; put the server, zone and key commands
    first. Signed records are several kilobytes: the DNS server must answer over TCP.
    The mdns format is the records file of sztp-mdns, for links without DNS: the same
    records under local., with the A/AAAA records of the .local servers' addresses.

    Examples:

        sztpctl dns render -f fleet.yaml --check -o sztp-records.zone
        sztpctl dns render -f fleet.yaml --format mdns --check -o mdns.zone
    """
    from sztp.errors import SztpError
    from sztp.state.dns_section import dns_records, render_blocks, render_dns, render_mdns
    from sztp.state.fleet import load_fleet

    fleet = load_fleet(filename)
    if fleet.dns is None:
        raise SztpError(f"{filename} has no dns section")
    if output_format is RenderFormat.MDNS:
        text = render_mdns(fleet, source=filename.name)
        if check:
            _check_mdns(text)
        _write(text, output, f"mdns records written to {output}")
        return
    # Signed once: the text written and the zones checked hold the same signatures.
    records = dns_records(fleet)
    text = render_dns(records, output_format.value, relative=relative, source=filename.name)
    if check:
        zones = render_blocks(records, RenderFormat.ZONE.value, relative=relative)
        for domain, block in zones.items():
            _check_zone(domain, _CHECK_ZONE_HEAD.format(ttl=records.ttl) + block)
    _write(
        text, output, f"{output_format.value} for {', '.join(records.domains)} written to {output}"
    )


def _write(text: str, output: Path | None, done: str) -> None:
    if output is None:
        typer.echo(text, nl=False)
    else:
        write_atomically(output, text.encode("ascii"), mode=0o644)
        typer.echo(done)


def _check_mdns(text: str) -> None:
    """Run `sztp-mdns check` on the records; SztpError if it refuses them."""
    from sztp.errors import SztpError

    binary = shutil.which("sztp-mdns")
    if binary is None:
        raise SztpError("--check of mdns records needs sztp-mdns (the server extra) on PATH")
    with tempfile.TemporaryDirectory(prefix="sztp-mdns-") as directory:
        path = Path(directory) / "mdns.zone"
        path.write_text(text, encoding="ascii")
        result = subprocess.run(  # noqa: S603 - sztp-mdns found on PATH, our own records file
            [binary, "check", str(path)], capture_output=True, text=True, check=False
        )
    verdict = (result.stdout + result.stderr).strip().replace(str(path), "<mdns records>")
    if result.returncode != 0:
        raise SztpError(f"sztp-mdns refuses the records:\n{verdict}")
    typer.echo("sztp-mdns accepts the records", err=True)
    for line in verdict.splitlines():
        typer.echo(f"  {line}", err=True)


def _check_zone(domain: str, zone: str) -> None:
    """Run the first checker found on `zone`, as the zone of `domain`; SztpError if it fails."""
    from sztp.errors import SztpError

    found = next(((name, shutil.which(name)) for name in _CHECKERS if shutil.which(name)), None)
    if found is None:
        raise SztpError(
            "--check needs named-checkzone (Debian/Ubuntu: bind9-utils) or kzonecheck "
            "(knot); neither is on PATH"
        )
    name, binary = found
    with tempfile.TemporaryDirectory(prefix="sztp-dns-") as directory:
        path = Path(directory) / f"{domain}.zone"
        path.write_text(zone, encoding="ascii")
        arguments = [part.format(domain=domain, file=path) for part in _CHECKERS[name]]
        result = subprocess.run(  # noqa: S603 - a zone checker found on PATH, our own zone file
            [str(binary), *arguments], capture_output=True, text=True, check=False
        )
    verdict = (result.stdout + result.stderr).strip().replace(str(path), f"<{domain} zone>")
    if result.returncode != 0:
        raise SztpError(f"{name} refuses the records for {domain}:\n{verdict}")
    typer.echo(f"{name} accepts the records for {domain}", err=True)
    for line in verdict.splitlines():
        typer.echo(f"  {line}", err=True)

"""`sztpctl voucher`: create (lab MASA), show, verify and import RFC 8366 ownership vouchers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sztp.files import write_atomically

from .loading import SerialOption, parse_hex
from .output import read_bytes
from .remote import connect

app = typer.Typer(help="Ownership vouchers (RFC 8366).", no_args_is_help=True)

ASSERTIONS = ("verified", "logged", "proximity")
VoucherFileArgument = Annotated[Path, typer.Argument(help="Voucher file (DER CMS).")]


@app.command("create")
def create(
    serial: Annotated[str, typer.Option("--serial", "-s", help="Device serial number.")],
    pinned_cert: Annotated[
        Path,
        typer.Option(help="PEM certificate to pin: the owner certificate or a CA above it."),
    ],
    masa_cert: Annotated[
        Path, typer.Option(help="PEM MASA signing certificate, optionally followed by its chain.")
    ],
    masa_key: Annotated[Path, typer.Option(help="PEM private key of the MASA certificate.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Voucher file to write (DER CMS).")
    ],
    expires_in_days: Annotated[
        int | None,
        typer.Option(min=1, help="Validity in days (omit for a voucher without expiry)."),
    ] = None,
    nonce_hex: Annotated[
        str | None,
        typer.Option(help="Nonce sent by the device (8..32 bytes, hex); excludes expiry."),
    ] = None,
    assertion: Annotated[str, typer.Option(help="verified, logged or proximity.")] = "verified",
) -> None:
    """Create a voucher signed by a (lab) MASA that pins an owner certificate to a device.

    Example:

        sztpctl voucher create --serial SN-0001 --pinned-cert lab-pki/owner/ca.pem
        --masa-cert lab-pki/manufacturer/masa.pem --masa-key lab-pki/manufacturer/masa.key
        -o SN-0001.vcj
    """
    from datetime import UTC, datetime, timedelta

    from sztp.labpki import load_credential
    from sztp.protocol import pki
    from sztp.protocol.voucher import create_voucher, sign_voucher

    if assertion not in ASSERTIONS:
        raise typer.BadParameter(f"{assertion!r} is not one of {', '.join(ASSERTIONS)}")
    if nonce_hex is not None and expires_in_days is not None:
        raise typer.BadParameter("a voucher has a nonce or an expiry, not both (RFC 8366)")
    masa = load_credential(masa_cert, masa_key)
    pinned = pki.load_certificates_pem(read_bytes(pinned_cert))[0]
    now = datetime.now(UTC).replace(microsecond=0)
    voucher = create_voucher(
        serial,
        pinned,
        assertion=assertion,  # type: ignore[arg-type]  # checked above
        expires_on=now + timedelta(days=expires_in_days) if expires_in_days else None,
        nonce=parse_hex(nonce_hex, "--nonce-hex") if nonce_hex else None,
        now=now,
    )
    write_atomically(output, sign_voucher(voucher, masa), mode=0o644)
    typer.echo(f"voucher for {serial} written to {output}")


@app.command("show")
def show(voucher_file: VoucherFileArgument) -> None:
    """Print a voucher's content as JSON (its signature is checked, its signer is not)."""
    import json

    from sztp.protocol.voucher import encode_voucher_json, read_voucher

    voucher = read_voucher(read_bytes(voucher_file))
    typer.echo(json.dumps(json.loads(encode_voucher_json(voucher)), indent=2))


@app.command("verify")
def verify(
    voucher_file: VoucherFileArgument,
    serial: SerialOption,
    owner_cert: Annotated[
        Path, typer.Option(help="PEM owner certificate, optionally followed by its chain.")
    ],
    trust_anchor: Annotated[
        Path, typer.Option(help="PEM manufacturer trust anchor(s) for the MASA signature.")
    ],
) -> None:
    """Check a voucher as the device would: MASA signature, serial, expiry, pinned owner."""
    from sztp.protocol import pki
    from sztp.protocol.voucher import verify_voucher

    owner_chain = pki.load_certificates_pem(read_bytes(owner_cert))
    voucher = verify_voucher(
        read_bytes(voucher_file),
        serial_number=serial,
        owner_certificate=owner_chain[0],
        owner_intermediates=owner_chain[1:],
        masa_trust_anchors=pki.load_certificates_pem(read_bytes(trust_anchor)),
    )
    expiry = voucher.expires_on.isoformat() if voucher.expires_on else "never"
    typer.echo(
        f"voucher valid: serial {voucher.serial_number}, assertion {voucher.assertion}, "
        f"expires {expiry}"
    )


@app.command("import")
def import_voucher(
    voucher_file: VoucherFileArgument,
    serial: SerialOption,
    owner_cert: Annotated[
        Path | None,
        typer.Option(help="PEM owner certificate (and chain) the voucher must authorise."),
    ] = None,
    trust_anchor: Annotated[
        Path | None,
        typer.Option(help="PEM manufacturer trust anchor(s) the MASA signature must chain to."),
    ] = None,
) -> None:
    """Check a voucher locally, then store it on the server for its device.

    Always checked: the signature, the serial number, the expiry and that it carries no nonce
    (the server stores only what it can serve); with --owner-cert, that it pins that owner;
    with --trust-anchor, that the MASA chains to it. A voucher that fails is never sent.

    Example:

        sztpctl voucher import SN-0001.vcj --serial SN-0001 --owner-cert owner-chain.pem
        --trust-anchor masa-ca.pem
    """
    from sztp.protocol import pki
    from sztp.state.validate import check_pins_owner, read_voucher_for

    der = read_bytes(voucher_file)
    anchors = pki.load_certificates_pem(read_bytes(trust_anchor)) if trust_anchor else None
    voucher = read_voucher_for(der, serial, masa_anchors=anchors)
    checked = ["signature", "serial number", "expiry", "no nonce"]
    if anchors is not None:
        checked.append("MASA chain")
    if owner_cert is not None:
        check_pins_owner(voucher, pki.load_certificates_pem(read_bytes(owner_cert)))
        checked.append("pinned owner")
    with connect() as client:
        client.put_voucher(serial, der)
    typer.echo(f"voucher for {serial} imported (checked: {', '.join(checked)})")

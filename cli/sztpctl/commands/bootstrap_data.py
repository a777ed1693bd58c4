"""`sztpctl bootstrap-data`: sign bootstrapping data offline and verify it as a device would.

Signing offline is how the owner key stays off the bootstrap server: the signed artifacts are
uploaded instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sztp.files import write_atomically

from .loading import SerialOption, parse_hex
from .output import read_bytes

if TYPE_CHECKING:
    from sztp.protocol.conveyed_info import BootstrapServer

app = typer.Typer(
    help="Build, sign and verify get-bootstrapping-data output (RFC 8572).", no_args_is_help=True
)

ENCODINGS = ("json", "xml")
HANDLINGS = ("merge", "replace")


@app.command("sign")
def sign(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the RPC output (JSON).")
    ],
    owner_cert: Annotated[
        Path | None,
        typer.Option(help="PEM owner certificate, followed by its chain up to the pinned cert."),
    ] = None,
    owner_key: Annotated[Path | None, typer.Option(help="PEM owner private key.")] = None,
    voucher: Annotated[Path | None, typer.Option(help="Ownership voucher for the device.")] = None,
    unsigned: Annotated[
        bool, typer.Option(help="Produce unsigned conveyed information (no owner key needed).")
    ] = False,
    encoding: Annotated[
        str, typer.Option(help="Conveyed-information encoding: json or xml.")
    ] = "json",
    os_name: Annotated[str | None, typer.Option(help="Boot image OS name.")] = None,
    os_version: Annotated[str | None, typer.Option(help="Boot image OS version.")] = None,
    image_uri: Annotated[
        list[str] | None, typer.Option(help="Boot image download URI (repeatable, in order).")
    ] = None,
    image_sha256: Annotated[
        str | None, typer.Option(help="SHA-256 of the boot image (hex, colons optional).")
    ] = None,
    image_file: Annotated[
        Path | None, typer.Option(help="Local copy of the boot image, hashed for you.")
    ] = None,
    configuration: Annotated[Path | None, typer.Option(help="Configuration file.")] = None,
    configuration_handling: Annotated[str, typer.Option(help="merge or replace.")] = "merge",
    pre_script: Annotated[Path | None, typer.Option(help="Pre-configuration script.")] = None,
    post_script: Annotated[Path | None, typer.Option(help="Post-configuration script.")] = None,
    redirect: Annotated[
        list[str] | None,
        typer.Option(help="Redirect to bootstrap server HOST[:PORT] instead (repeatable)."),
    ] = None,
) -> None:
    """Build onboarding (or redirect) information and sign it with the owner key.

    Example:

        sztpctl bootstrap-data sign --owner-cert lab-pki/owner/owner.pem
        --owner-key lab-pki/owner/owner.key --voucher SN-0001.vcj --os-name LabOS
        --os-version 1.2 --image-uri https://files.lab/labos-1.2.img --image-file labos-1.2.img
        --configuration day0.cfg -o SN-0001.json
    """
    import hashlib

    from sztp.labpki import load_credential
    from sztp.protocol import bootstrapping_data, conveyed_info
    from sztp.protocol.conveyed_info import (
        BootImage,
        OnboardingInformation,
        RedirectInformation,
    )

    if encoding not in ENCODINGS:
        raise typer.BadParameter(f"{encoding!r} is not json or xml", param_hint="--encoding")
    if configuration_handling not in HANDLINGS:
        raise typer.BadParameter(
            f"{configuration_handling!r} is not merge or replace",
            param_hint="--configuration-handling",
        )
    if image_sha256 and image_file:
        raise typer.BadParameter("give --image-sha256 or --image-file, not both")
    onboarding_given = any((os_name, os_version, image_uri, configuration, pre_script, post_script))
    if redirect and onboarding_given:
        raise typer.BadParameter("--redirect excludes the onboarding options")
    if not redirect and not onboarding_given:
        raise typer.BadParameter("give onboarding options (e.g. --image-uri) or --redirect")

    information: conveyed_info.ConveyedInformation
    if redirect:
        information = RedirectInformation(tuple(_bootstrap_server(item) for item in redirect))
    else:
        digest = None
        if image_file:
            digest = hashlib.sha256(read_bytes(image_file)).digest()
        elif image_sha256:
            digest = parse_hex(image_sha256, "--image-sha256")
        boot_image = None
        if os_name or os_version or image_uri:
            boot_image = BootImage(
                os_name=os_name,
                os_version=os_version,
                download_uris=tuple(image_uri or ()),
                sha256=digest,
            )
        information = OnboardingInformation(
            boot_image=boot_image,
            configuration_handling=configuration_handling if configuration else None,  # type: ignore[arg-type]
            pre_configuration_script=read_bytes(pre_script) if pre_script else None,
            configuration=read_bytes(configuration) if configuration else None,
            post_configuration_script=read_bytes(post_script) if post_script else None,
        )
    conveyed_info.validate(information)
    chosen = conveyed_info.Encoding[encoding.upper()]
    if unsigned:
        data = bootstrapping_data.build_unsigned(information, chosen)
    else:
        if not (owner_cert and owner_key and voucher):
            raise typer.BadParameter(
                "signing needs --owner-cert, --owner-key and --voucher (or pass --unsigned)"
            )
        owner = load_credential(owner_cert, owner_key)
        data = bootstrapping_data.build_signed(information, chosen, owner, read_bytes(voucher))
    write_atomically(output, bootstrapping_data.encode_output_json(data, indent=2), mode=0o644)
    kind = "unsigned" if unsigned else "signed"
    typer.echo(f"{kind} bootstrapping data written to {output}")


def _bootstrap_server(text: str) -> BootstrapServer:
    """HOST[:PORT], with an IPv6 address in brackets."""
    from urllib.parse import urlsplit

    from sztp.protocol.conveyed_info import BootstrapServer

    try:
        parts = urlsplit(f"//{text}")
        port = parts.port
    except ValueError:
        port, parts = None, None
    if parts is None or not parts.hostname or parts.path:
        raise typer.BadParameter(f"{text!r} is not HOST[:PORT]", param_hint="--redirect")
    return BootstrapServer(address=parts.hostname, port=port or 443)


@app.command("verify")
def verify(
    data_file: Annotated[Path, typer.Argument(help="get-bootstrapping-data output (JSON).")],
    serial: SerialOption,
    trust_anchor: Annotated[
        Path, typer.Option(help="PEM manufacturer trust anchor(s) the device holds.")
    ],
    server_trusted: Annotated[
        bool, typer.Option(help="Act as a device that authenticated the server over TLS.")
    ] = False,
    nonce_hex: Annotated[str | None, typer.Option(help="Nonce the device sent (hex).")] = None,
) -> None:
    """Verify bootstrapping data as the device would, then print the conveyed information.

    Order of checks (RFC 8572 §5.4): voucher signed by the manufacturer's MASA and issued for
    this serial; owner certificate pinned by the voucher; conveyed information signed by the
    owner certificate.
    """
    import json

    from sztp.protocol import bootstrapping_data, conveyed_info, pki, restconf

    data = restconf.parse_get_bootstrapping_data_output(
        read_bytes(data_file), restconf.WireFormat.JSON
    )
    verified = bootstrapping_data.verify_bootstrapping_data(
        data,
        serial_number=serial,
        trust_anchors=pki.load_certificates_pem(read_bytes(trust_anchor)),
        server_trusted=server_trusted,
        nonce=parse_hex(nonce_hex, "--nonce-hex") if nonce_hex else None,
    )
    if verified.signed and verified.owner_certificate is not None:
        owner = verified.owner_certificate.subject.rfc4514_string()
        typer.echo(f"verified: voucher for {serial} pins the owner; signed by {owner}", err=True)
    else:
        typer.echo("accepted unsigned conveyed information", err=True)
    body = conveyed_info.encode(verified.information, conveyed_info.Encoding.JSON)
    typer.echo(json.dumps(json.loads(body), indent=2))

"""`sztpctl trust-anchor | owner | image | profile`: add, list, show, delete.

Each noun describes its table and filters for the shared `list|show|delete` (resource.py)
and collects its `add` flags into a spec; the fields are those of the admin API and the
fleet file, and the flags take their help and choices from the model that declares them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from .resource import (
    VARIABLE_FLAG,
    Column,
    Filter,
    Flag,
    Noun,
    ReplaceOption,
    SpecFileOption,
    add_resource,
    command_group,
    field_column,
    model_field,
    read_text,
    variables,
)

NameArgument = Annotated[
    str | None, typer.Argument(help="The resource's name (or take it from -f FILE).")
]


def _certificates(pem: str) -> list[Any]:
    from sztp.protocol import pki

    return pki.load_certificates_pem(pem.encode())


def _subject(spec_field: str) -> Callable[[Mapping[str, Any]], str]:
    """The first certificate's subject, e.g. `CN=Lab Owner`."""

    def value(item: Mapping[str, Any]) -> str:
        from sztp.protocol.certs import describe

        return describe(_certificates(item["spec"][spec_field])[0])

    return value


def _count(spec_field: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda item: str(len(_certificates(item["spec"][spec_field])))


def _not_after(spec_field: str) -> Callable[[Mapping[str, Any]], str]:
    """When the first of the certificates expires."""

    def value(item: Mapping[str, Any]) -> str:
        expiry = min(cert.not_valid_after_utc for cert in _certificates(item["spec"][spec_field]))
        return expiry.isoformat().replace("+00:00", "Z")

    return value


# ---- trust-anchor

TRUST_ANCHOR = Noun(
    kind="trust-anchor",
    key="name",
    columns=(
        Column("SUBJECT", _subject("certificates")),
        Column("CERTIFICATES", _count("certificates")),
        field_column("trust-anchor", "serial_pattern"),
        Column("NOT AFTER", _not_after("certificates"), wide=True),
    ),
)
trust_anchor_app = command_group(TRUST_ANCHOR, "Manufacturer CAs that issue device IDevIDs.")


@trust_anchor_app.command("add")
def add_trust_anchor(
    name: NameArgument = None,
    certificates: Annotated[Path | None, TRUST_ANCHOR.option("certificates")] = None,
    serial_pattern: Annotated[str | None, TRUST_ANCHOR.option("serial_pattern")] = None,
    filename: SpecFileOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a manufacturer trust anchor.

    Example:

        sztpctl trust-anchor add lab-manufacturer --certificates pki/manufacturer/ca.pem
    """
    flags = {"certificates": read_text(certificates), "serial_pattern": serial_pattern}
    add_resource(TRUST_ANCHOR, name, flags, filename, replace)


# ---- owner

OWNER = Noun(
    kind="owner",
    key="name",
    columns=(
        Column("SUBJECT", _subject("certificate_chain")),
        Column("CHAIN", _count("certificate_chain"), wide=True),
        Column(
            "SIGNING KEY", lambda item: "stored" if item["spec"].get("private_key") else "offline"
        ),
        Column("NOT AFTER", _not_after("certificate_chain"), wide=True),
    ),
)
owner_app = command_group(OWNER, "Owner certificates (and signing keys) for conveyed information.")


@owner_app.command("add")
def add_owner(
    name: Annotated[
        str | None, typer.Argument(help="The owner's name (default: default, or from -f FILE).")
    ] = None,
    certificate_chain: Annotated[Path | None, OWNER.option("certificate_chain")] = None,
    private_key: Annotated[Path | None, OWNER.option("private_key")] = None,
    filename: SpecFileOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add an owner: the certificate that signs conveyed information, and optionally its key.

    Example:

        sztpctl owner add --certificate-chain owner-chain.pem --private-key owner.key
    """
    if name is None and filename is None:
        name = "default"
    flags = {
        "certificate_chain": read_text(certificate_chain),
        "private_key": read_text(private_key),
    }
    add_resource(OWNER, name, flags, filename, replace)


# ---- image

IMAGE = Noun(
    kind="image",
    key="name",
    columns=(
        field_column("image", "os_name", "OS"),
        field_column("image", "os_version", "VERSION"),
        Column("SHA256", lambda item: item["spec"]["sha256"][:16] + "…", narrow=True),
        field_column("image", "sha256", wide=True),
        Column("URIS", lambda item: " ".join(item["spec"]["download_uris"]), wide=True),
    ),
    filters=(
        Filter("os_name", "Only images of this OS."),
        Filter("os_version", "Only images of this OS version."),
    ),
    flags={
        "file": Flag("sha256", "The image file: its SHA-256 is computed."),
        # The model's help names the fleet file's {file: image}; here --file does that.
        "sha256": Flag("sha256", "The image's SHA-256 (hex), instead of --file."),
        "uri": Flag("download_uris", "Download URI (repeat for mirrors)."),
    },
)
image_app = command_group(IMAGE, "Boot images devices download and install.")


@image_app.command("add")
def add_image(
    name: NameArgument = None,
    file: Annotated[Path | None, IMAGE.option("file", "--file")] = None,
    sha256: Annotated[str | None, IMAGE.option("sha256")] = None,
    uri: Annotated[list[str] | None, IMAGE.option("uri", "--uri")] = None,
    os_name: Annotated[str | None, IMAGE.option("os_name")] = None,
    os_version: Annotated[str | None, IMAGE.option("os_version")] = None,
    filename: SpecFileOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a boot image; with --file its SHA-256 is computed locally (the file is not uploaded).

    Example:

        sztpctl image add labos-1.2 --file labos-1.2.img --os-name LabOS --os-version 1.2
        --uri https://files.lab.example/labos-1.2.img
    """
    if file is not None and sha256 is not None:
        raise typer.BadParameter("give --file or --sha256, not both", param_hint="--sha256")
    flags = {
        "sha256": _sha256_of(file) if file is not None else sha256,
        "download_uris": uri or None,
        "os_name": os_name,
        "os_version": os_version,
    }
    add_resource(IMAGE, name, flags, filename, replace)


def _sha256_of(path: Path) -> str:
    import hashlib

    from sztp.errors import SztpError

    try:
        with path.open("rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError as exc:
        raise SztpError(f"cannot read {path}: {exc.strerror or exc}") from None


# ---- profile


def _profile_target(item: Mapping[str, Any]) -> str:
    """What the device gets: the image (onboarding) or the servers (redirect)."""
    spec = item["spec"]
    if spec["type"] == "redirect":
        return " ".join(_host_port(s["address"], s["port"]) for s in spec["bootstrap_servers"])
    return spec.get("image") or ("(configuration only)" if spec.get("configuration") else "-")


def _host_port(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _scripts(item: Mapping[str, Any]) -> str:
    spec = item["spec"]
    names = [
        label
        for label, key in (
            ("pre", "pre_configuration_script"),
            ("post", "post_configuration_script"),
        )
        if spec.get(key)
    ]
    return ",".join(names) or "-"


PROFILE = Noun(
    kind="profile",
    key="name",
    columns=(
        field_column("profile", "type"),
        Column("IMAGE / SERVERS", _profile_target),
        field_column("profile", "owner"),
        field_column("profile", "signing"),
        field_column("profile", "encoding", wide=True),
        field_column("profile", "configuration_handling", "CONFIGURATION", wide=True),
        Column("SCRIPTS", _scripts, wide=True),
        field_column("profile", "reporting_level", "REPORTING", wide=True),
    ),
    filters=(
        Filter(
            "type", "Only profiles of this type.", choices=model_field("profile", "type").choices
        ),
        Filter("image", "Only profiles that install this image."),
        Filter("owner", "Only profiles signed by this owner."),
    ),
    flags={
        "profile_type": Flag("type"),
        "var": VARIABLE_FLAG,
        "ldevid_key": Flag(
            "ldevid_keys", "Key algorithm a device may make its LDevID key with (repeat)."
        ),
        "pre_script": Flag("pre_configuration_script"),
        "post_script": Flag("post_configuration_script"),
        "bootstrap_server": Flag(
            "bootstrap_servers", "HOST[:PORT] to redirect to (redirect; repeat for several)."
        ),
        "server_trust_anchor": Flag(
            "bootstrap_servers.trust_anchor",
            "PEM CA of the redirect servers' TLS certificates (redirect).",
        ),
    },
)
profile_app = command_group(PROFILE, "Profiles: what a device receives (onboarding or redirect).")


@profile_app.command("add")
def add_profile(
    name: NameArgument = None,
    profile_type: Annotated[str | None, PROFILE.option("profile_type", "--type")] = None,
    image: Annotated[str | None, PROFILE.option("image")] = None,
    configuration: Annotated[Path | None, PROFILE.option("configuration")] = None,
    configuration_handling: Annotated[str | None, PROFILE.option("configuration_handling")] = None,
    templating: Annotated[str | None, PROFILE.option("templating")] = None,
    var: Annotated[list[str] | None, PROFILE.option("var", "--var")] = None,
    ldevid_issuer: Annotated[str | None, PROFILE.option("ldevid_issuer")] = None,
    ldevid_key: Annotated[list[str] | None, PROFILE.option("ldevid_key", "--ldevid-key")] = None,
    pre_script: Annotated[Path | None, PROFILE.option("pre_script")] = None,
    post_script: Annotated[Path | None, PROFILE.option("post_script")] = None,
    bootstrap_server: Annotated[list[str] | None, PROFILE.option("bootstrap_server")] = None,
    server_trust_anchor: Annotated[Path | None, PROFILE.option("server_trust_anchor")] = None,
    owner: Annotated[str | None, PROFILE.option("owner")] = None,
    signing: Annotated[str | None, PROFILE.option("signing")] = None,
    encoding: Annotated[str | None, PROFILE.option("encoding")] = None,
    reporting_level: Annotated[str | None, PROFILE.option("reporting_level")] = None,
    filename: SpecFileOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a profile. The server checks the combination (e.g. no image on a redirect).

    Example:

        sztpctl profile add dpu-day0 --type onboarding --image labos-1.2
        --configuration day0.cfg.j2 --templating jinja2 --var domain=lab.example
    """
    trust_anchor = read_text(server_trust_anchor)
    flags = {
        "type": profile_type,
        "image": image,
        "configuration": read_text(configuration),
        "configuration_handling": configuration_handling,
        "templating": templating,
        "vars": variables(var),
        "ldevid_issuer": ldevid_issuer,
        "ldevid_keys": ldevid_key or None,
        "pre_configuration_script": read_text(pre_script),
        "post_configuration_script": read_text(post_script),
        "bootstrap_servers": [_bootstrap_server(entry, trust_anchor) for entry in bootstrap_server]
        if bootstrap_server
        else None,
        "owner": owner,
        "signing": signing,
        "encoding": encoding,
        "reporting_level": reporting_level,
    }
    add_resource(PROFILE, name, flags, filename, replace)


def _bootstrap_server(entry: str, trust_anchor: str | None) -> dict[str, Any]:
    """`host`, `host:port` or `[v6]:port` as a bootstrap_servers entry."""
    host, port = entry, None
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":") or None
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    if port is not None and not port.isdigit():
        raise typer.BadParameter(
            f"{entry!r}: the port must be a number", param_hint="--bootstrap-server"
        )
    return {"address": host, "port": int(port) if port else None, "trust_anchor": trust_anchor}

"""What `simulate()` refuses before the device starts: no usable bootstrap-server URI (configured,
or from a DHCP option 143/136 payload, RFC 8572 §8), an unusable IDevID or configuration. These
raise `SimulationError`; what servers do is never checked here."""

from __future__ import annotations

from pathlib import Path

from ..errors import SimulationError, SztpError
from ..protocol import dhcp, pki
from .model import DeviceIdentity, SimulatorConfig
from .verdicts import describe


def bootstrap_uris(config: SimulatorConfig) -> list[str]:
    """The bootstrap-server URIs the device starts from (configured, or from DHCP)."""
    if config.bootstrap_uris and config.dhcp_option is not None:
        raise SimulationError("give bootstrap URIs or a DHCP option payload, not both")
    if config.dhcp_option is not None:
        try:
            return dhcp.decode_uri_list(config.dhcp_option, validate=True)
        except SztpError as exc:
            raise SimulationError(f"DHCP option payload: {exc}") from None
    if not config.bootstrap_uris:
        raise SimulationError("no bootstrap server: give a URI or a DHCP option payload")
    uris = []
    for uri in config.bootstrap_uris:
        try:
            uris.append(dhcp.validate_bootstrap_uri(uri))
        except SztpError as exc:
            raise SimulationError(f"bootstrap URI: {exc}") from None
    return uris


def check_identity(identity: DeviceIdentity) -> None:
    if not identity.serial_number or not identity.serial_number.strip():
        raise SimulationError("the device needs a serial number")
    for what, path in (
        ("IDevID certificate", identity.idevid_certificate),
        ("IDevID key", identity.idevid_key),
    ):
        if not Path(path).is_file():
            raise SimulationError(f"{what} {path} is not a readable file")
    try:
        certificates = pki.load_certificates_pem(Path(identity.idevid_certificate).read_bytes())
        pki.load_private_key_pem(Path(identity.idevid_key).read_bytes())
    except (OSError, SztpError) as exc:
        raise SimulationError(f"IDevID: {describe(exc)}") from None
    try:
        serial_in_certificate = pki.serial_from_certificate(certificates[0])
    except SztpError:
        return
    if serial_in_certificate != identity.serial_number:
        raise SimulationError(
            f"serial number {identity.serial_number!r} differs from the IDevID's "
            f"serialNumber {serial_in_certificate!r}"
        )


def check_config(config: SimulatorConfig) -> None:
    if not config.trust_anchors:
        raise SimulationError("no manufacturer trust anchor: vouchers could not be verified")
    for what, path in (("server CA", config.server_ca), ("file-server CA", config.file_server_ca)):
        if path is None:
            continue
        try:
            pki.load_certificates_pem(Path(path).read_bytes())
        except (OSError, SztpError) as exc:
            raise SimulationError(f"{what} {path}: {describe(exc)}") from None
    for name in ("max_redirects", "max_reboots"):
        if getattr(config, name) < 0:
            raise SimulationError(f"{name} cannot be negative")
    if config.timeout <= 0 or config.script_timeout <= 0 or config.max_image_size <= 0:
        raise SimulationError("timeouts and the image size limit must be positive")

"""What `simulate()` refuses before the device starts: no usable bootstrap-server URI (configured,
or from a DHCP option 143/136 payload, RFC 8572 §8) and no DNS lookup either, an unusable IDevID
or configuration. These raise `SimulationError`; what servers do is never checked here."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import NoReturn

from ..dns_discovery import check_settings
from ..errors import SimulationError, SztpError
from ..protocol import dhcp, pki
from .model import DeviceIdentity, SimulatorConfig
from .verdicts import describe


def bootstrap_uris(config: SimulatorConfig) -> list[str]:
    """The bootstrap-server URIs the device starts from (configured, or from DHCP); none
    when it looks only in DNS."""
    if config.bootstrap_uris and config.dhcp_option is not None:
        raise SimulationError("give bootstrap URIs or a DHCP option payload, not both")
    if config.dhcp_option is not None:
        try:
            return dhcp.decode_uri_list(config.dhcp_option, validate=True)
        except SztpError as exc:
            raise SimulationError(f"DHCP option payload: {exc}") from None
    if not config.bootstrap_uris and config.dns is None:
        raise SimulationError(
            "no bootstrap server: give a URI, a DHCP option payload or a DNS lookup"
        )
    uris = []
    for uri in config.bootstrap_uris:
        try:
            uris.append(dhcp.validate_bootstrap_uri(uri))
        except SztpError as exc:
            raise SimulationError(f"bootstrap URI: {exc}") from None
    return uris


def check_identity(identity: DeviceIdentity) -> None:
    """The serial number, the certificate and the key: a key in a file is read here; a key in a
    TPM never is (its blob means nothing outside OpenSSL's tpm2 provider), OpenSSL loads it
    with the certificate as the TLS connection will."""
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
        if identity.idevid_key_store == "file":
            pki.load_private_key_pem(Path(identity.idevid_key).read_bytes())
    except (OSError, SztpError) as exc:
        raise SimulationError(f"IDevID: {describe(exc)}") from None
    if identity.idevid_key_store == "tpm2":
        _check_key_in_openssl(identity)
    try:
        serial_in_certificate = pki.serial_from_certificate(certificates[0])
    except SztpError:
        return
    if serial_in_certificate != identity.serial_number:
        raise SimulationError(
            f"serial number {identity.serial_number!r} differs from the IDevID's "
            f"serialNumber {serial_in_certificate!r}"
        )


class _KeyNeedsPassword(Exception):
    """OpenSSL asked for the key's password (a TPM key's authorization value)."""


def _refuse_password() -> NoReturn:
    raise _KeyNeedsPassword


def _check_key_in_openssl(identity: DeviceIdentity) -> None:
    """Load the IDevID into an OpenSSL context as the TLS connection will: OpenSSL refuses a
    key that does not match the certificate, and one it cannot use (for a key in a TPM: the
    tpm2 provider not active, or the TPM out of reach). Never a password prompt: the device has
    no one to answer it."""
    key = identity.idevid_key
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        context.load_cert_chain(identity.idevid_certificate, key, password=_refuse_password)
    except _KeyNeedsPassword:
        raise SimulationError(
            f"IDevID key {key} needs a password (authorization value), which the device cannot "
            "give: use a key without one"
        ) from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise SimulationError(
                f"IDevID key {key} does not match the certificate {identity.idevid_certificate}"
            ) from None
        # OpenSSL's text ends with where in CPython it was raised: nothing for the operator.
        reason = re.sub(r"\s*\(_ssl\.c:\d+\)$", "", str(exc.args[-1]))
        raise SimulationError(
            f"IDevID key {key}: OpenSSL cannot use it ({reason}); for a key in a TPM, OpenSSL's "
            "tpm2 provider must be active (OPENSSL_CONF) and reach the TPM (TPM2OPENSSL_TCTI)"
        ) from None
    except OSError as exc:
        raise SimulationError(f"IDevID: {describe(exc)}") from None


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
    if config.dns is not None:
        try:
            check_settings(config.dns)
        except SztpError as exc:
            raise SimulationError(f"DNS discovery: {exc}") from None

"""Writes and reads a complete lab PKI as PEM files (the file-system edge of protocol.pki).

Layout under the lab directory:

    manufacturer/ca.pem ca.key      manufacturer root: issues IDevIDs and the MASA certificate
    manufacturer/masa.pem masa.key  voucher signer
    devices/<serial>/idevid.pem idevid.key idevid-chain.pem   (chain = leaf + manufacturer CA)
    owner/ca.pem ca.key             owner root CA, the certificate vouchers pin
    owner/owner.pem owner.key       owner certificate, signs conveyed information
    owner/ldevid-ca.pem ldevid-ca.key   the owner's LDevID CA (under the owner CA): issues LDevIDs
    tls/ca.pem ca.key               bootstrap-server TLS CA
    tls/server.pem server.key       bootstrap-server TLS certificate

Private keys are created with mode 0600 from the start; nothing is chmod-ed afterwards.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from sztp.errors import PkiError, ValidationError
from sztp.protocol import pki

_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644
_AREAS = ("manufacturer", "devices", "owner", "tls")
_DEVICE_FILES = ("idevid.pem", "idevid.key", "idevid-chain.pem")


@dataclass(frozen=True)
class CredentialFiles:
    """Where a certificate and its key live, plus the issuer certificates up to the root."""

    certificate: Path
    private_key: Path
    issuers: tuple[Path, ...] = ()

    def load(self) -> pki.Credential:
        chain = tuple(cert for path in self.issuers for cert in _read_certificates(path))
        return load_credential(self.certificate, self.private_key, chain)


@dataclass(frozen=True)
class DeviceFiles:
    serial: str
    idevid: CredentialFiles
    chain: Path  # idevid-chain.pem: the IDevID followed by the manufacturer CA


@dataclass(frozen=True)
class LabPki:
    directory: Path
    manufacturer_ca: CredentialFiles
    masa: CredentialFiles
    owner_ca: CredentialFiles
    owner: CredentialFiles
    ldevid_ca: CredentialFiles
    tls_ca: CredentialFiles
    server: CredentialFiles
    devices: Mapping[str, DeviceFiles]

    def trust_resources(self) -> dict[str, dict[str, dict[str, str]]]:
        """Admin-API resources trusting this lab: its manufacturer CA as the trust anchor
        `manufacturer`, its owner (chain and private key) as the owner `default`."""
        return {
            "trust-anchor": {
                "manufacturer": {"certificates": self.manufacturer_ca.certificate.read_text()}
            },
            "owner": {
                "default": {
                    "certificate_chain": self.owner.certificate.read_text()
                    + self.owner_ca.certificate.read_text(),
                    "private_key": self.owner.private_key.read_text(),
                }
            },
        }


def write_lab_pki(
    directory: Path,
    serials: Sequence[str],
    server_names: Sequence[str] = ("localhost", "127.0.0.1"),
    key_type: pki.KeyType = "ec-p256",
    hw_model: str | None = None,
    *,
    force: bool = False,
) -> LabPki:
    """Generate a lab PKI for the devices `serials` and write it under `directory`.

    Refuses to touch a directory that already holds a lab PKI unless `force` is set; then the
    files are replaced and the device directories this layout wrote earlier are removed.
    """
    _check_serials(serials)
    existing = [area for area in _AREAS if (directory / area).exists()]
    if existing and not force:
        raise PkiError(
            f"{directory} already holds a lab PKI ({', '.join(existing)}); "
            "pass --force to replace it"
        )
    # Everything is generated before anything is written, so bad input leaves no half PKI.
    manufacturer_ca = pki.create_root_ca("SZTP Lab Manufacturer CA", key_type=key_type)
    masa = pki.issue_signing_certificate(manufacturer_ca, "SZTP Lab MASA", key_type=key_type)
    idevids = {
        serial: pki.issue_idevid(manufacturer_ca, serial, hw_model=hw_model, key_type=key_type)
        for serial in serials
    }
    owner_ca = pki.create_root_ca("SZTP Lab Owner CA", key_type=key_type)
    owner = pki.issue_signing_certificate(owner_ca, "SZTP Lab Owner", key_type=key_type)
    ldevid_ca = pki.issue_intermediate_ca(owner_ca, "SZTP Lab LDevID CA", key_type=key_type)
    tls_ca = pki.create_root_ca("SZTP Lab TLS CA", key_type=key_type)
    server = pki.issue_server_certificate(tls_ca, server_names, key_type=key_type)

    layout = _layout(directory, serials)
    if force:
        _remove_devices(directory / "devices")
    _write_credential(layout.manufacturer_ca, manufacturer_ca)
    _write_credential(layout.masa, masa)
    _write_credential(layout.owner_ca, owner_ca)
    _write_credential(layout.owner, owner)
    _write_credential(layout.ldevid_ca, ldevid_ca)
    _write_credential(layout.tls_ca, tls_ca)
    _write_credential(layout.server, server)
    for serial, idevid in idevids.items():
        files = layout.devices[serial]
        _write_credential(files.idevid, idevid)
        _write_file(files.chain, _pem(idevid.certificates), _PUBLIC_MODE)
    return layout


def load_lab_pki(directory: Path) -> LabPki:
    """The paths of a lab PKI written by `write_lab_pki` (checks that the files exist)."""
    devices_dir = directory / "devices"
    serials = (
        sorted(path.name for path in devices_dir.iterdir() if path.is_dir())
        if devices_dir.is_dir()
        else []
    )
    layout = _layout(directory, serials)
    files = [
        path
        for credential in (
            layout.manufacturer_ca,
            layout.masa,
            layout.owner_ca,
            layout.owner,
            layout.ldevid_ca,
            layout.tls_ca,
            layout.server,
            *(device.idevid for device in layout.devices.values()),
        )
        for path in (credential.certificate, credential.private_key)
    ]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise PkiError(f"incomplete lab PKI in {directory}: missing {', '.join(missing)}")
    return layout


def load_credential(
    certificate_path: Path,
    key_path: Path,
    chain: Sequence[x509.Certificate] | None = None,
) -> pki.Credential:
    """A Credential from a PEM certificate file and a PEM key file.

    The first certificate in the file is the credential's; without an explicit `chain`, the
    certificates after it form the chain (the usual "leaf first" bundle).
    """
    certificates = _read_certificates(certificate_path)
    try:
        key_pem = key_path.read_bytes()
    except OSError as error:
        raise PkiError(f"cannot read private key {key_path}: {error.strerror}") from None
    try:
        key = pki.load_private_key_pem(key_pem)
        issuers = tuple(certificates[1:]) if chain is None else tuple(chain)
        return pki.Credential(certificates[0], key, issuers)
    except PkiError as error:
        raise PkiError(f"{key_path}: {error}") from None


def _layout(directory: Path, serials: Sequence[str]) -> LabPki:
    manufacturer, owner, tls = (directory / "manufacturer", directory / "owner", directory / "tls")
    manufacturer_ca = CredentialFiles(manufacturer / "ca.pem", manufacturer / "ca.key")
    devices = {}
    for serial in serials:
        device_dir = directory / "devices" / serial
        idevid = CredentialFiles(
            device_dir / "idevid.pem", device_dir / "idevid.key", (manufacturer_ca.certificate,)
        )
        devices[serial] = DeviceFiles(serial, idevid, device_dir / "idevid-chain.pem")
    owner_ca = CredentialFiles(owner / "ca.pem", owner / "ca.key")
    tls_ca = CredentialFiles(tls / "ca.pem", tls / "ca.key")
    return LabPki(
        directory=directory,
        manufacturer_ca=manufacturer_ca,
        masa=CredentialFiles(
            manufacturer / "masa.pem", manufacturer / "masa.key", (manufacturer_ca.certificate,)
        ),
        owner_ca=owner_ca,
        owner=CredentialFiles(owner / "owner.pem", owner / "owner.key", (owner_ca.certificate,)),
        ldevid_ca=CredentialFiles(
            owner / "ldevid-ca.pem", owner / "ldevid-ca.key", (owner_ca.certificate,)
        ),
        tls_ca=tls_ca,
        server=CredentialFiles(tls / "server.pem", tls / "server.key", (tls_ca.certificate,)),
        devices=devices,
    )


def _check_serials(serials: Sequence[str]) -> None:
    if isinstance(serials, str):
        raise ValidationError("serials", "give a list of serial numbers, not one string")
    seen: set[str] = set()
    for serial in serials:
        # Serials name directories: no separators, no dot names, nothing hidden.
        if not serial or serial.startswith(".") or "/" in serial or "\\" in serial:
            raise ValidationError(
                "serials", f"{serial!r} cannot be a directory name (empty, '/', '\\' or '.')"
            )
        if serial in seen:
            raise ValidationError("serials", f"{serial!r} is listed twice")
        seen.add(serial)


def _remove_devices(devices_dir: Path) -> None:
    """Remove device directories that hold only files this module writes."""
    if not devices_dir.is_dir():
        return
    for device_dir in devices_dir.iterdir():
        if device_dir.is_dir() and all(p.name in _DEVICE_FILES for p in device_dir.iterdir()):
            for name in _DEVICE_FILES:
                (device_dir / name).unlink(missing_ok=True)
            device_dir.rmdir()


def _write_credential(files: CredentialFiles, credential: pki.Credential) -> None:
    _write_file(files.certificate, pki.certificate_to_pem(credential.certificate), _PUBLIC_MODE)
    _write_file(files.private_key, pki.private_key_to_pem(credential.private_key), _PRIVATE_MODE)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A replaced file is removed first: O_CREAT keeps an existing file's (maybe wider) mode.
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)


def _read_certificates(path: Path) -> list[x509.Certificate]:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise PkiError(f"cannot read certificate {path}: {error.strerror}") from None
    try:
        return pki.load_certificates_pem(data)
    except PkiError as error:
        raise PkiError(f"{path}: {error}") from None


def _pem(certificates: Sequence[x509.Certificate]) -> bytes:
    return b"".join(pki.certificate_to_pem(cert) for cert in certificates)

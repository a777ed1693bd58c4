"""Certificate authorities that issue LDevIDs, behind one interface.

An issuer turns a checked PKCS#10 request (`IssueRequest`) into a certificate and its chain
(`Issued`), or raises IssuerError with a reason for the log. Issuing blocks (a signature, a
CMP round trip, an executable), so the server calls `issue` in a thread, a bounded number at
a time, and gives up on it after the issuer's timeout (`IssuerPool`).
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from sztp.errors import SztpError
from sztp.protocol import pki

from ..config import LdevidIssuer

# The longest certificate chain an external issuer may answer with.
MAX_CHAIN_BYTES = 256 * 1024
_ISSUABLE_KEYS = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)
# Tolerate devices whose clock is a little behind this server's.
_CLOCK_SKEW = timedelta(minutes=5)


class IssuerError(SztpError):
    """An issuance that did not happen; the message is for the log, never for the device."""


@dataclass(frozen=True)
class IssueRequest:
    serial: str  # the serial number the device authenticated as
    profile: str
    csr: x509.CertificateSigningRequest  # proof of possession and subject checked already


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # its issuers, nearest first

    @property
    def chain_pem(self) -> str:
        return b"".join(map(pki.certificate_to_pem, (self.certificate, *self.chain))).decode()


class Issuer(Protocol):
    name: str

    def issue(self, request: IssueRequest) -> Issued:
        """Blocking; IssuerError when the CA refuses or cannot be reached."""
        ...


class BuiltinIssuer:
    """This server signs, with a CA key read from a file at start."""

    def __init__(self, config: LdevidIssuer) -> None:
        if config.certificate_file is None or config.private_key_file is None:
            raise IssuerError(f"issuer {config.name}: certificate_file and private_key_file")
        self.name = config.name
        self.validity = timedelta(days=config.validity_days)
        certificates = pki.load_certificates_pem(read_file(config.certificate_file, config.name))
        key = pki.load_private_key_pem(read_secret_file(config.private_key_file, config.name))
        # The key must be the first certificate's (Credential checks) and that one a CA.
        self.ca = pki.Credential(certificates[0], key, tuple(certificates[1:]))
        constraints = certificates[0].extensions.get_extension_for_class(x509.BasicConstraints)
        if not constraints.value.ca:
            raise IssuerError(f"issuer {config.name}: {config.certificate_file} is not a CA")

    def issue(self, request: IssueRequest) -> Issued:
        now = datetime.now(UTC)
        ca_certificate = self.ca.certificate
        public_key = request.csr.public_key()
        if not isinstance(
            public_key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
        ):
            raise IssuerError(f"issuer {self.name}: unsupported key type")
        key_usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=False,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(request.csr.subject)
            .issuer_name(ca_certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(min(now + self.validity, ca_certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(key_usage, critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.ca.private_key.public_key()
                ),
                critical=False,
            )
        )
        certificate = builder.sign(self.ca.private_key, pki.signature_hash(self.ca.private_key))
        return Issued(certificate, self.ca.certificates)


class HookIssuer:
    """An executable issues: the CSR (PEM) on its standard input, the device's serial number
    and profile in its environment, the certificate and its issuers (PEM) on its standard
    output, exit status 0; anything else is a refusal whose first line of standard error is
    logged."""

    def __init__(self, config: LdevidIssuer) -> None:
        self.name = config.name
        self.command = list(config.command)
        self.timeout = config.timeout

    def issue(self, request: IssueRequest) -> Issued:
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "SZTP_SERIAL": request.serial,
            "SZTP_PROFILE": request.profile,
        }
        csr_pem = request.csr.public_bytes(serialization.Encoding.PEM)
        try:
            done = subprocess.run(  # noqa: S603 - the operator's configured command
                self.command,
                input=csr_pem,
                capture_output=True,
                env=environment,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise IssuerError(f"issuer {self.name}: no answer within {self.timeout} s") from None
        except OSError as exc:
            raise IssuerError(f"issuer {self.name}: cannot run {self.command[0]}: {exc}") from None
        if done.returncode != 0:
            reason = next(iter(done.stderr.decode(errors="replace").splitlines()), "")
            raise IssuerError(f"issuer {self.name}: exit status {done.returncode}: {reason[:200]}")
        if len(done.stdout) > MAX_CHAIN_BYTES:
            raise IssuerError(f"issuer {self.name}: answer larger than {MAX_CHAIN_BYTES} bytes")
        return checked_answer(self.name, done.stdout, request)


def checked_answer(name: str, pem: bytes, request: IssueRequest) -> Issued:
    """An external CA's PEM answer, once its first certificate is for the requested key and
    subject: a CA that answers with something else must not reach the device."""
    try:
        certificates = pki.load_certificates_pem(pem)
    except SztpError as exc:
        raise IssuerError(f"issuer {name}: answer is not PEM certificates: {exc}") from None
    certificate = certificates[0]
    if certificate.public_key() != request.csr.public_key():
        raise IssuerError(f"issuer {name}: the certificate is not for the requested key")
    if certificate.subject != request.csr.subject:
        raise IssuerError(f"issuer {name}: the certificate's subject is not the requested one")
    return Issued(certificate, tuple(certificates[1:]))


def build_issuer(config: LdevidIssuer) -> Issuer:
    if config.type == "builtin":
        return BuiltinIssuer(config)
    if config.type == "hook":
        return HookIssuer(config)
    from .cmp_issuer import CmpIssuer

    return CmpIssuer(config)


class IssuerPool:
    """The configured issuers, each called in a thread, at most its `concurrency` at once, and
    abandoned (IssuerError) after its `timeout`."""

    def __init__(self, configs: Sequence[LdevidIssuer]) -> None:
        self._issuers: Mapping[str, Issuer] = {
            config.name: build_issuer(config) for config in configs
        }
        self._limits = {config.name: asyncio.Semaphore(config.concurrency) for config in configs}
        self._timeouts = {config.name: config.timeout for config in configs}

    def __contains__(self, name: object) -> bool:
        return name in self._issuers

    async def issue(self, name: str, request: IssueRequest) -> Issued:
        issuer = self._issuers.get(name)
        if issuer is None:
            raise IssuerError(f"no LDevID issuer named {name!r} is configured")
        timeout = self._timeouts[name]
        try:
            async with asyncio.timeout(timeout):
                async with self._limits[name]:
                    return await asyncio.to_thread(issuer.issue, request)
        except TimeoutError:
            raise IssuerError(f"issuer {name}: no certificate within {timeout} s") from None


def read_file(path: Path, issuer: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise IssuerError(f"issuer {issuer}: cannot read {path}: {exc.strerror}") from None


def read_secret_file(path: Path, issuer: str) -> bytes:
    """A key file nobody but its owner may read."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise IssuerError(f"issuer {issuer}: cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise IssuerError(f"issuer {issuer}: {path} must be mode 0600 (it is {mode & 0o777:04o})")
    return read_file(path, issuer)

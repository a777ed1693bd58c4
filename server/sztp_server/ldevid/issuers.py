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
from ..pkcs11_keys import Pkcs11Keys, TokenError

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
    """This server signs, with a CA key read from a file at start or held in a PKCS#11 token
    (opened at the first signature, in the process that signs: see pkcs11_keys)."""

    def __init__(self, config: LdevidIssuer, tokens: Pkcs11Keys | None) -> None:
        if config.certificate_file is None:
            raise IssuerError(f"issuer {config.name}: certificate_file is required")
        self.name = config.name
        self.validity = timedelta(days=config.validity_days)
        self.certificates = pki.load_certificates_pem(
            read_file(config.certificate_file, config.name)
        )
        constraints = self.certificates[0].extensions.get_extension_for_class(x509.BasicConstraints)
        if not constraints.value.ca:
            raise IssuerError(f"issuer {config.name}: {config.certificate_file} is not a CA")
        self._key_uri = config.private_key_uri
        self._tokens = tokens
        self._ca: pki.Credential | pki.SignerCredential | None = None
        if config.private_key_file is not None:
            key = _load_key(config, config.private_key_file)
            # The key must be the first certificate's (Credential checks).
            self._ca = pki.Credential(self.certificates[0], key, tuple(self.certificates[1:]))

    @property
    def ca(self) -> pki.Credential | pki.SignerCredential:
        """The CA's credential; blocking the first time for a key in a token, whose failures
        (TokenError, logged by pkcs11_keys) are an IssuerError."""
        if self._ca is None:
            if self._tokens is None or self._key_uri is None:
                raise IssuerError(f"issuer {self.name}: its key is in a token, out of reach")
            try:
                self._ca = self._tokens.credential(self._key_uri, self.certificates)
            except TokenError as exc:
                raise IssuerError(f"issuer {self.name}: {exc}") from None
        return self._ca

    def issue(self, request: IssueRequest) -> Issued:
        ca = self.ca
        now = datetime.now(UTC)
        ca_certificate = ca.certificate
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
            .add_extension(authority_key_identifier(ca), critical=False)
        )
        return Issued(pki.sign_certificate(builder, ca), ca.certificates)


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


def authority_key_identifier(
    ca: pki.Credential | pki.SignerCredential,
) -> x509.AuthorityKeyIdentifier:
    """The CA certificate's own key identifier when it has one (a relying party matches the
    two), else the one computed from its key."""
    try:
        subject_key = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        key = (
            ca.private_key.public_key()
            if isinstance(ca, pki.Credential)
            else ca.signer.public_key()
        )
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(subject_key.value)


def build_issuer(config: LdevidIssuer, tokens: Pkcs11Keys | None) -> Issuer:
    if config.type == "builtin":
        return BuiltinIssuer(config, tokens)
    if config.type == "hook":
        return HookIssuer(config)
    from .cmp_issuer import CmpIssuer

    return CmpIssuer(config)


class IssuerPool:
    """The configured issuers, each called in a thread, at most its `concurrency` at once, and
    abandoned (IssuerError) after its `timeout`."""

    def __init__(self, configs: Sequence[LdevidIssuer], tokens: Pkcs11Keys | None) -> None:
        self._issuers: Mapping[str, Issuer] = {
            config.name: build_issuer(config, tokens) for config in configs
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


def _load_key(config: LdevidIssuer, path: Path) -> pki.PrivateKey:
    """The CA key from its 0600 file, decrypted with the passphrase file when it has one."""
    pem = read_secret_file(path, config.name)
    password_file = config.private_key_password_file
    encrypted = b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem
    if encrypted and password_file is None:
        raise IssuerError(
            f"issuer {config.name}: {path} is encrypted: set private_key_password_file"
        )
    if password_file is not None and not encrypted:
        raise IssuerError(
            f"issuer {config.name}: {path} is not an encrypted PKCS#8 key, but "
            "private_key_password_file is set"
        )
    password = None
    if password_file is not None:
        password = read_secret_file(password_file, config.name).rstrip(b"\r\n")
    try:
        return pki.load_private_key_pem(pem, password)
    except SztpError as exc:
        raise IssuerError(f"issuer {config.name}: {path}: {exc}") from None


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

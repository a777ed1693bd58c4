"""The device side of RFC 9646: offer to make a key, answer the server's csr-request with a CSR
for a new key, and accept the certificate that comes back only if it is for that key and,
when the data is signed, chains to the owner the voucher names.

The certificate reaches the device inside its configuration (the owner decides the format), so
the device looks there for PEM certificates: the one for its key is its LDevID, the others
may be the issuers between it and the owner's certificate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import SztpError
from ..protocol import csr, pki
from ..protocol.bootstrapping_data import VerifiedBootstrappingData
from ..protocol.conveyed_info import OnboardingInformation
from ..protocol.restconf import RestconfError
from .model import DeviceIdentity, Log
from .verdicts import Abandon
from .workdir import WorkDirectory

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE-----"
)
LDEVID_CERTIFICATE = "ldevid.pem"
LDEVID_KEY = "ldevid.key"

NewKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def new_key(algorithm: str) -> NewKey:
    """A fresh key of one of `csr.KEY_ALGORITHMS`."""
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    curves = {"ec-p256": ec.SECP256R1(), "ec-p384": ec.SECP384R1(), "ec-p521": ec.SECP521R1()}
    return ec.generate_private_key(curves[algorithm])


class LdevidEnrollment:
    """One session's LDevID: the key made for the CSR, until its certificate is accepted."""

    def __init__(
        self, algorithms: Sequence[str], identity: DeviceIdentity, work_dir: WorkDirectory, log: Log
    ) -> None:
        self.algorithms = tuple(algorithms)
        self.identity = identity
        self.work_dir = work_dir
        self.log = log
        self.key: NewKey | None = None
        self.accepted: Path | None = None

    def support(self) -> csr.CsrSupport:
        return csr.CsrSupport(
            key_algorithms=tuple(csr.KEY_ALGORITHMS[name] for name in self.algorithms),
            formats=(csr.P10_CSR,),
        )

    def answer(self, errors: Sequence[RestconfError]) -> csr.Csr | None:
        """The CSR the server's csr-request asks for (a new key each time: RFC 9646 has the
        device drop the key of an earlier request), or None when it asked for none."""
        asked = next((error.csr_request for error in errors if error.csr_request), None)
        if asked is None:
            return None
        if asked.format != csr.P10_CSR:
            raise Abandon(f"server asked for a {asked.format} CSR; this device makes p10-csr")
        if asked.key_algorithm is None:
            raise Abandon("server asked for a CSR with the IDevID key; this device makes a new key")
        algorithm = csr.key_algorithm_name(asked.key_algorithm)
        if algorithm not in self.algorithms:
            raise Abandon(f"server asked for a {algorithm or 'unknown'} key, which was not offered")
        self.key = new_key(algorithm)
        subject = pki.load_certificates_pem(self.identity.idevid_certificate.read_bytes())[
            0
        ].subject
        der = csr.sign_cert_req_info(asked.cert_req_info, subject, self.key)
        self.log(f"server asked for a CSR: new {algorithm} key, CSR sent")
        return csr.Csr(csr.P10_CSR, der)

    def accept(
        self, information: OnboardingInformation, verified: VerifiedBootstrappingData
    ) -> str:
        """The LDevID in the configuration, checked and kept (certificate and key in the work
        directory); Abandon when there is none for the key, or it does not chain to the owner."""
        if self.key is None:
            raise Abandon("onboarding information came without a CSR having been asked for")
        texts = (
            information.pre_configuration_script,
            information.configuration,
            information.post_configuration_script,
        )
        certificates = [
            certificate for text in texts if text for certificate in _certificates_in(text)
        ]
        public_key = self.key.public_key()
        mine = [
            certificate for certificate in certificates if certificate.public_key() == public_key
        ]
        if not mine:
            raise Abandon("LDevID: the configuration holds no certificate for the key made for it")
        ldevid = mine[0]
        issuers = [certificate for certificate in certificates if certificate is not ldevid]
        chained = _chain_to_owner(ldevid, issuers, verified)
        chain = [ldevid, *_path(ldevid, issuers)]
        self.accepted = self.work_dir.write(
            LDEVID_CERTIFICATE, b"".join(map(pki.certificate_to_pem, chain)), mode=0o644
        )
        key_pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.work_dir.write(LDEVID_KEY, key_pem, mode=0o600)
        until = f"{ldevid.not_valid_after_utc:%Y-%m-%d}"
        described = f"LDevID {ldevid.subject.rfc4514_string()} until {until}, {chained}"
        self.log(described)
        return described


def _certificates_in(text: bytes) -> list[x509.Certificate]:
    found = []
    for match in _PEM_CERTIFICATE.finditer(text):
        try:
            found.append(x509.load_pem_x509_certificate(match.group(0)))
        except ValueError:
            continue  # a placeholder or text that only looks like PEM
    return found


def _path(
    certificate: x509.Certificate, issuers: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """The issuers above `certificate`, nearest first, as far as `issuers` go."""
    path: list[x509.Certificate] = []
    current = certificate
    while len(path) <= len(issuers):
        issuer = next((candidate for candidate in issuers if _issued(current, candidate)), None)
        if issuer is None or issuer in path or issuer is current:
            break
        path.append(issuer)
        current = issuer
    return path


def _issued(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chain_to_owner(
    ldevid: x509.Certificate,
    issuers: Sequence[x509.Certificate],
    verified: VerifiedBootstrappingData,
) -> str:
    """How the LDevID is anchored: to the voucher's pinned-domain-cert (the owner's trust
    anchor) when the data is signed, else only to the trusted server that sent it."""
    if verified.voucher is None:
        return "from a trusted server (unsigned data: not checked against an owner)"
    try:
        anchor = verified.voucher.pinned_certificate
    except SztpError as exc:
        raise Abandon(f"LDevID: the voucher's pinned-domain-cert is unusable: {exc}") from None
    for certificate in (ldevid, *_path(ldevid, issuers)):
        if certificate == anchor or _issued(certificate, anchor):
            return "chains to the owner's certificate the voucher pins"
    raise Abandon(
        "LDevID: the certificate does not chain to the owner's certificate the voucher pins"
    )

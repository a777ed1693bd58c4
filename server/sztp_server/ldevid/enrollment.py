"""What the server does with a device whose profile issues LDevIDs (RFC 9646), decided from
the request alone: ask for a CSR, refuse, or have a checked CSR certified.

The exchange keeps no state between the device's two requests. The CertificationRequestInfo
the server asks the device to sign is a function of the device's serial number and the key
algorithm chosen, so when the CSR comes back the server builds it again and compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography import x509
from cryptography.x509.oid import NameOID

from sztp.errors import ValidationError
from sztp.protocol import csr, pki
from sztp.protocol.restconf import GetBootstrappingDataInput

from ..store.model import IssuedCertificate
from .issuers import Issued, IssueRequest

# The key algorithms a profile accepts when it names none, in order of preference.
DEFAULT_KEY_ALGORITHMS: Final = ("ec-p256", "ec-p384", "rsa")

Spec = Mapping[str, Any]


@dataclass(frozen=True)
class AskForCsr:
    """Answer 400 missing-attribute with this csr-request."""

    request: csr.CsrRequest
    algorithm: str


@dataclass(frozen=True)
class Refused:
    """No LDevID for this request: `message` goes to the device, `reason` to the log."""

    status: int
    error_tag: str
    message: str
    reason: str


def key_algorithms(profile: Spec) -> tuple[str, ...]:
    return tuple(profile.get("ldevid_keys") or DEFAULT_KEY_ALGORITHMS)


def ldevid_subject(serial: str) -> x509.Name:
    """The subject of a device's LDevID: its serial number, as in its IDevID, and as name."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
            x509.NameAttribute(NameOID.COMMON_NAME, serial),
        ]
    )


def cert_req_info(serial: str, algorithm: str) -> bytes:
    return csr.build_cert_req_info(ldevid_subject(serial), csr.KEY_ALGORITHMS[algorithm])


def next_step(
    serial: str,
    profile_name: str,
    profile: Spec,
    rpc_input: GetBootstrappingDataInput,
    *,
    by_certificate: bool,
) -> AskForCsr | Refused | IssueRequest:
    """What to do for a device whose profile issues LDevIDs."""
    if not by_certificate:
        return Refused(
            403,
            "access-denied",
            "an LDevID is issued only to a device that authenticates with its IDevID",
            f"profile {profile_name} issues LDevIDs; device {serial} authenticated by password",
        )
    if rpc_input.signed_data_preferred:
        return Refused(
            404,
            "data-missing",
            "an LDevID is issued only over a connection the device trusts",
            f"profile {profile_name} issues LDevIDs; device {serial} does not trust this "
            "server (signed-data-preferred)",
        )
    if rpc_input.csr is not None:
        return _checked_csr(serial, profile_name, profile, rpc_input.csr)
    if rpc_input.csr_support is None:
        return Refused(
            404,
            "data-missing",
            "this device's profile issues an LDevID: send csr-support (RFC 9646)",
            f"profile {profile_name} issues LDevIDs; device {serial} sent no csr-support",
        )
    return _ask(serial, profile_name, profile, rpc_input.csr_support)


def _ask(
    serial: str, profile_name: str, profile: Spec, support: csr.CsrSupport
) -> AskForCsr | Refused:
    if support.key_algorithms is None:
        return Refused(
            400,
            "invalid-value",
            "this server issues LDevIDs for new keys only: the device must generate one",
            f"device {serial} cannot generate a key (no key-generation in csr-support)",
        )
    offered = {csr.key_algorithm_name(der) for der in support.key_algorithms}
    chosen = next((name for name in key_algorithms(profile) if name in offered), None)
    if chosen is None:
        return Refused(
            400,
            "invalid-value",
            "none of the device's key algorithms is allowed for its LDevID",
            f"profile {profile_name} allows {', '.join(key_algorithms(profile))}; device "
            f"{serial} offers {', '.join(sorted(filter(None, offered))) or 'none known'}",
        )
    if csr.P10_CSR not in support.formats:
        return Refused(
            400,
            "invalid-value",
            "this server takes PKCS#10 CSRs (ietf-ztp-types:p10-csr) only",
            f"device {serial} offers {', '.join(support.formats)}, not p10-csr",
        )
    request = csr.CsrRequest(
        key_algorithm=csr.KEY_ALGORITHMS[chosen],
        format=csr.P10_CSR,
        cert_req_info=cert_req_info(serial, chosen),
    )
    return AskForCsr(request, chosen)


def _checked_csr(
    serial: str, profile_name: str, profile: Spec, given: csr.Csr
) -> IssueRequest | Refused:
    if given.format != csr.P10_CSR:
        return Refused(
            400,
            "invalid-value",
            "this server takes PKCS#10 CSRs (p10-csr) only",
            f"device {serial} sent a {given.format}",
        )
    allowed = key_algorithms(profile)
    try:
        request = csr.check_p10_csr(
            given.der, serial=serial, allowed_algorithms=allowed, cert_req_info=None
        )
        algorithm = csr.key_algorithm_of(request.public_key())
        csr.check_p10_csr(
            given.der,
            serial=serial,
            allowed_algorithms=allowed,
            cert_req_info=cert_req_info(serial, algorithm),
        )
    except ValidationError as exc:
        return Refused(
            400,
            "invalid-value",
            f"the CSR is not acceptable: {exc.message}",
            f"device {serial}: CSR refused: {exc.message}",
        )
    return IssueRequest(serial=serial, profile=profile_name, csr=request)


def ldevid_variables(issued: Issued) -> dict[str, str]:
    """The issued certificate as a template reads it (`ldevid.certificate`, ...)."""
    certificate = issued.certificate
    return {
        "certificate": pki.certificate_to_pem(certificate).decode(),
        "chain": issued.chain_pem,
        "serial_number": format(certificate.serial_number, "x"),
        "subject": certificate.subject.rfc4514_string(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
    }


def issued_record(issuer: str, request: IssueRequest, issued: Issued) -> IssuedCertificate:
    certificate = issued.certificate
    return IssuedCertificate(
        issuer=issuer,
        serial_number=format(certificate.serial_number, "x"),
        device=request.serial,
        profile=request.profile,
        subject=certificate.subject.rfc4514_string(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issued_at=datetime.now(UTC),
        certificate_pem=pki.certificate_to_pem(certificate).decode(),
    )

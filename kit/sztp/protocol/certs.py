"""Certificate path validation (RFC 5280 subset) for CMS signers, vouchers and owner certificates.

The checks are what SZTP needs and devices enforce: signatures, validity at a given time,
issuers being CAs allowed to sign certificates, path length constraints, and what a leaf's
key may be used for (`check_client_auth`, `check_signer`). Revocation is out of scope
(RFC 8366 `domain-cert-revocation-checks` is left to the caller).
"""

import datetime as dt
import functools
from collections.abc import Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID

from sztp.errors import ChainError, ValidationError

# Longer paths than this are certainly a loop or an attack, never a real SZTP PKI. Also the
# most certificates a peer may present for one path (leaf and intermediates).
MAX_PATH_LENGTH = 8

# For messages: "SERVER_AUTH" reads better than 1.3.6.1.5.5.7.3.1.
_EXTENDED_USAGE_NAMES = {
    oid: name
    for name, oid in vars(ExtendedKeyUsageOID).items()
    if isinstance(oid, x509.ObjectIdentifier)
}
_ExtensionT = TypeVar("_ExtensionT", bound=x509.ExtensionType)
# Memo sizes: a batch of vouchers from a few MASAs, or the devices of one lab, share a handful of
# certificates and chains; the bound only keeps a long-running process from growing.
MEMO_SIZE = 256


@functools.lru_cache(maxsize=MEMO_SIZE)
def load_der_certificate(der: bytes) -> x509.Certificate:
    """`x509.load_der_x509_certificate`, memoised on the exact DER bytes.

    The same bytes always give the same (immutable) certificate, so vouchers from one MASA
    share one parsed signer certificate. Raises ValueError for bytes that are not a certificate.
    """
    return x509.load_der_x509_certificate(der)


def verify_chain(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate] = (),
    trust_anchors: Sequence[x509.Certificate],
    at: dt.datetime | None = None,
) -> list[x509.Certificate]:
    """Validate `leaf` up to one of `trust_anchors`; return the path, leaf first, anchor last.

    A leaf that is itself a trust anchor is accepted (a voucher may pin the owner certificate).
    Raises ChainError naming the certificate at fault and the reason.
    """
    if at is None:
        at = dt.datetime.now(dt.UTC)
    elif at.tzinfo is None:
        raise ValidationError("at", "must be timezone-aware")
    if not trust_anchors:
        raise ChainError("no trust anchors given")
    try:
        return _validate(leaf, list(intermediates), list(trust_anchors), at)
    except (UnsupportedAlgorithm, ValueError, TypeError) as error:
        # cryptography decodes certificate fields lazily: a malformed one fails here.
        raise ChainError(f"malformed certificate in the path: {error}") from None


def _validate(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    trust_anchors: list[x509.Certificate],
    at: dt.datetime,
) -> list[x509.Certificate]:
    if leaf in trust_anchors:
        _check_validity(leaf, at)
        return [leaf]
    path = _build_path(leaf, tuple(intermediates), tuple(trust_anchors))
    for certificate in path:
        _check_validity(certificate, at)
    for index, issuer in enumerate(path[1:], start=1):
        _check_issuer(issuer, list(path[1:index]))
    return list(path)


def check_client_auth(certificate: x509.Certificate) -> None:
    """The certificate's key may authenticate a TLS client (a device's IDevID); else ChainError.

    RFC 5280 §4.2.1.12: without an extended key usage extension the key may serve any
    purpose; with one, it must list clientAuth (or anyExtendedKeyUsage).
    """
    _check_digital_signature(certificate, "a TLS client")
    extended = _extension(certificate, x509.ExtendedKeyUsage)
    if extended is not None and not {
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
    } & set(extended):
        listed = ", ".join(
            _EXTENDED_USAGE_NAMES.get(usage, usage.dotted_string) for usage in extended
        )
        raise ChainError(
            f"{describe(certificate)}: extended key usage does not allow clientAuth "
            f"(it lists {listed})"
        )


def check_signer(certificate: x509.Certificate) -> None:
    """The certificate's key may sign CMS content (a MASA's voucher, an owner's conveyed
    information); else ChainError."""
    _check_digital_signature(certificate, "a CMS signer")


def _check_digital_signature(certificate: x509.Certificate, role: str) -> None:
    # RFC 5280 §4.2.1.3: without a key usage extension the key is not restricted.
    key_usage = _extension(certificate, x509.KeyUsage)
    if key_usage is not None and not key_usage.digital_signature:
        raise ChainError(
            f"{describe(certificate)}: key usage does not allow digitalSignature, "
            f"which {role} needs"
        )


def describe(certificate: x509.Certificate) -> str:
    """A certificate's subject for messages (or its serial number if the subject is empty)."""
    try:
        subject = certificate.subject.rfc4514_string()
    except ValueError:  # decoded lazily: a corrupted subject only fails here
        return f"<malformed subject, serial {certificate.serial_number:x}>"
    return subject or f"<empty subject, serial {certificate.serial_number:x}>"


@functools.lru_cache(maxsize=MEMO_SIZE)
def _build_path(
    leaf: x509.Certificate,
    intermediates: tuple[x509.Certificate, ...],
    anchors: tuple[x509.Certificate, ...],
) -> tuple[x509.Certificate, ...]:
    """Depth-first search for a path whose signatures verify, ending at an anchor.

    Memoised: certificates hash and compare by their full DER, and whether those exact
    certificates form a path whose signatures verify never changes, so a batch of vouchers
    signed by one MASA verifies its chain once. Failures are not memoised (they raise), and
    what depends on the moment or the path's use (validity, CA flags, path length) is checked
    on every call by `_validate`.
    """
    failures: list[str] = []

    def extend(path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        current = path[-1]
        if _is_self_signed(current):
            # A root that is not an anchor: trying anchors that share its name only confuses.
            failures.append(f"{describe(current)}: self-signed and not a trust anchor")
            return None
        if len(path) > MAX_PATH_LENGTH:
            failures.append(f"{describe(leaf)}: path longer than {MAX_PATH_LENGTH}")
            return None
        candidates = [(cert, True) for cert in anchors] + [(cert, False) for cert in intermediates]
        found_issuer = False
        for candidate, is_anchor in candidates:
            if candidate in path or not _may_have_issued(candidate, current):
                continue
            found_issuer = True
            try:
                current.verify_directly_issued_by(candidate)
            except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError) as error:
                reason = str(error) or "signature does not verify"
                failures.append(
                    f"{describe(current)}: bad signature (issuer {describe(candidate)}: {reason})"
                )
                continue
            if is_anchor:
                return [*path, candidate]
            complete = extend([*path, candidate])
            if complete is not None:
                return complete
        if not found_issuer:
            failures.append(
                f"{describe(current)}: untrusted issuer {current.issuer.rfc4514_string()} "
                "(not a trust anchor nor a known intermediate)"
            )
        return None

    path = extend([leaf])
    if path is None:
        # The first failure is the one nearest the leaf, the most useful to report.
        raise ChainError(failures[0])
    return tuple(path)


def _is_self_signed(certificate: x509.Certificate) -> bool:
    if certificate.subject != certificate.issuer:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _may_have_issued(issuer: x509.Certificate, subject: x509.Certificate) -> bool:
    if issuer.subject != subject.issuer:
        return False
    authority_key_id = _extension(subject, x509.AuthorityKeyIdentifier)
    subject_key_id = _extension(issuer, x509.SubjectKeyIdentifier)
    if (
        authority_key_id is None
        or subject_key_id is None
        or authority_key_id.key_identifier is None
    ):
        return True
    return authority_key_id.key_identifier == subject_key_id.digest


def _check_validity(certificate: x509.Certificate, at: dt.datetime) -> None:
    if at < certificate.not_valid_before_utc:
        raise ChainError(
            f"{describe(certificate)}: not yet valid (valid from "
            f"{certificate.not_valid_before_utc.isoformat()}, checked at {at.isoformat()})"
        )
    if at > certificate.not_valid_after_utc:
        raise ChainError(
            f"{describe(certificate)}: expired on {certificate.not_valid_after_utc.isoformat()} "
            f"(checked at {at.isoformat()})"
        )


def _check_issuer(issuer: x509.Certificate, below: list[x509.Certificate]) -> None:
    """`below` are the intermediates between `issuer` and the leaf (for pathLenConstraint)."""
    constraints = _extension(issuer, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise ChainError(f"{describe(issuer)}: not a CA (basicConstraints cA is not set)")
    key_usage = _extension(issuer, x509.KeyUsage)
    if key_usage is not None and not key_usage.key_cert_sign:
        raise ChainError(f"{describe(issuer)}: key usage does not allow keyCertSign")
    # Self-issued intermediates do not count towards the limit (RFC 5280 §4.2.1.9).
    counted = sum(1 for certificate in below if certificate.subject != certificate.issuer)
    if constraints.path_length is not None and counted > constraints.path_length:
        raise ChainError(
            f"{describe(issuer)}: path length constraint {constraints.path_length} exceeded "
            f"by {counted} intermediate CA certificate(s) below it"
        )


def _extension(
    certificate: x509.Certificate, extension_type: type[_ExtensionT]
) -> _ExtensionT | None:
    try:
        return certificate.extensions.get_extension_for_class(extension_type).value
    except x509.ExtensionNotFound:
        return None
    # Duplicate or undecodable extensions in an untrusted certificate.
    except (ValueError, x509.DuplicateExtension) as error:
        raise ChainError(f"{describe(certificate)}: malformed extensions: {error}") from None

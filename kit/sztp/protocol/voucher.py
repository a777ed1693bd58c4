"""Ownership vouchers (RFC 8366, `ietf-voucher@2018-05-09`) as used by RFC 8572.

A voucher is signed by the manufacturer's MASA and pins the owner's certificate (or a CA above
it) for one device serial number. The device trusts the MASA through its manufacturer trust
anchors, and through the voucher it learns which owner may sign its conveyed information.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..errors import CmsError, ValidationError, VoucherError
from . import certs, cms, strict_json
from .oids import ID_CT_ANIMA_JSON_VOUCHER
from .pki import Credential

Assertion = Literal["verified", "logged", "proximity"]
ASSERTIONS: tuple[str, ...] = get_args(Assertion)

VOUCHER_MEMBER = "ietf-voucher:voucher"
NONCE_MIN_BYTES = 8
NONCE_MAX_BYTES = 32
# A device's clock may be a little behind the MASA's: tolerate that much for `created-on`.
CLOCK_SKEW = timedelta(minutes=5)

# RFC 3339 date-and-time as constrained by `yang:date-and-time`.
_DATE_AND_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})\Z", re.IGNORECASE
)
_KNOWN_MEMBERS = frozenset(
    {
        "created-on",
        "expires-on",
        "assertion",
        "serial-number",
        "idevid-issuer",
        "pinned-domain-cert",
        "domain-cert-revocation-checks",
        "nonce",
        "last-renewal-date",
    }
)


@dataclass(frozen=True)
class Voucher:
    """The content of an ownership voucher; `pinned_domain_cert` is DER."""

    created_on: datetime
    assertion: Assertion
    serial_number: str
    pinned_domain_cert: bytes
    expires_on: datetime | None = None
    idevid_issuer: bytes | None = None
    domain_cert_revocation_checks: bool | None = None
    nonce: bytes | None = None
    last_renewal_date: datetime | None = None

    def __post_init__(self) -> None:
        _check_rules(self)

    @property
    def pinned_certificate(self) -> x509.Certificate:
        return load_pinned_certificate(self.pinned_domain_cert)


def load_pinned_certificate(pinned_domain_cert: bytes) -> x509.Certificate:
    """A voucher's pinned-domain-cert (DER) as a certificate; VoucherError if it is not one."""
    try:
        # Memoised on the DER: a fleet's vouchers usually pin the same owner CA.
        return certs.load_der_certificate(pinned_domain_cert)
    except ValueError as exc:
        raise VoucherError("pinned-domain-cert: not a DER X.509 certificate") from exc


def _check_rules(voucher: Voucher) -> None:
    if voucher.assertion not in ASSERTIONS:
        raise VoucherError(
            f"assertion: {voucher.assertion!r} is not one of {', '.join(ASSERTIONS)}"
        )
    if not voucher.serial_number:
        raise VoucherError("serial-number: must not be empty")
    if not voucher.pinned_domain_cert:
        raise VoucherError("pinned-domain-cert: must not be empty")
    if voucher.nonce is not None and voucher.expires_on is not None:
        raise VoucherError("nonce and expires-on are mutually exclusive (RFC 8366)")
    if voucher.last_renewal_date is not None and voucher.expires_on is None:
        raise VoucherError("last-renewal-date requires expires-on (RFC 8366)")
    if voucher.nonce is not None and not NONCE_MIN_BYTES <= len(voucher.nonce) <= NONCE_MAX_BYTES:
        raise VoucherError(
            f"nonce: {len(voucher.nonce)} bytes, must be {NONCE_MIN_BYTES}..{NONCE_MAX_BYTES}"
        )
    for name in ("created_on", "expires_on", "last_renewal_date"):
        value = getattr(voucher, name)
        if value is not None and value.tzinfo is None:
            raise VoucherError(f"{name.replace('_', '-')}: needs a time zone")


def create_voucher(
    serial_number: str,
    pinned_certificate: x509.Certificate,
    *,
    assertion: Assertion = "verified",
    expires_on: datetime | None = None,
    nonce: bytes | None = None,
    idevid_issuer: bytes | None = None,
    domain_cert_revocation_checks: bool | None = None,
    now: datetime | None = None,
) -> Voucher:
    """Build a voucher pinning `pinned_certificate` (owner certificate or owner CA)."""
    created_on = (now or datetime.now(UTC)).replace(microsecond=0)
    return Voucher(
        created_on=created_on,
        assertion=assertion,
        serial_number=serial_number,
        pinned_domain_cert=pinned_certificate.public_bytes(Encoding.DER),
        expires_on=expires_on,
        idevid_issuer=idevid_issuer,
        domain_cert_revocation_checks=domain_cert_revocation_checks,
        nonce=nonce,
    )


def _format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_voucher_json(voucher: Voucher) -> bytes:
    """RFC 7951 JSON of the voucher, members in YANG order."""
    body: dict[str, Any] = {"created-on": _format_time(voucher.created_on)}
    if voucher.expires_on is not None:
        body["expires-on"] = _format_time(voucher.expires_on)
    body["assertion"] = voucher.assertion
    body["serial-number"] = voucher.serial_number
    if voucher.idevid_issuer is not None:
        body["idevid-issuer"] = base64.b64encode(voucher.idevid_issuer).decode()
    body["pinned-domain-cert"] = base64.b64encode(voucher.pinned_domain_cert).decode()
    if voucher.domain_cert_revocation_checks is not None:
        body["domain-cert-revocation-checks"] = voucher.domain_cert_revocation_checks
    if voucher.nonce is not None:
        body["nonce"] = base64.b64encode(voucher.nonce).decode()
    if voucher.last_renewal_date is not None:
        body["last-renewal-date"] = _format_time(voucher.last_renewal_date)
    return json.dumps({VOUCHER_MEMBER: body}, separators=(",", ":")).encode()


def decode_voucher_json(data: bytes) -> Voucher:
    """Parse and check voucher JSON; any defect raises VoucherError naming the member."""
    try:
        document = strict_json.loads(data.decode("utf-8"), "voucher")
    except UnicodeDecodeError as exc:
        raise VoucherError(f"voucher is not valid UTF-8 JSON: {exc}") from None
    except ValidationError as exc:  # a repeated member makes the voucher ambiguous: refused
        raise VoucherError(str(exc)) from None
    if not isinstance(document, dict) or set(document) != {VOUCHER_MEMBER}:
        raise VoucherError(f"voucher JSON must be one object with the member {VOUCHER_MEMBER!r}")
    body = document[VOUCHER_MEMBER]
    if not isinstance(body, dict):
        raise VoucherError(f"{VOUCHER_MEMBER}: must be an object")
    unknown = sorted(set(body) - _KNOWN_MEMBERS)
    if unknown:
        raise VoucherError(f"unknown voucher member(s): {', '.join(unknown)}")
    for mandatory in ("created-on", "assertion", "serial-number", "pinned-domain-cert"):
        if mandatory not in body:
            raise VoucherError(f"{mandatory}: missing (mandatory in RFC 8366)")
    revocation_checks = body.get("domain-cert-revocation-checks")
    if revocation_checks is not None and not isinstance(revocation_checks, bool):
        raise VoucherError("domain-cert-revocation-checks: must be true or false")
    return Voucher(
        created_on=_parse_time(body, "created-on"),
        assertion=_parse_string(body, "assertion"),  # type: ignore[arg-type]  # checked by Voucher
        serial_number=_parse_string(body, "serial-number"),
        pinned_domain_cert=_parse_binary(body, "pinned-domain-cert"),
        expires_on=_parse_optional_time(body, "expires-on"),
        idevid_issuer=_parse_optional_binary(body, "idevid-issuer"),
        domain_cert_revocation_checks=revocation_checks,
        nonce=_parse_optional_binary(body, "nonce"),
        last_renewal_date=_parse_optional_time(body, "last-renewal-date"),
    )


def _parse_string(body: dict[str, Any], member: str) -> str:
    value = body[member]
    if not isinstance(value, str):
        raise VoucherError(f"{member}: must be a string")
    return value


def _parse_time(body: dict[str, Any], member: str) -> datetime:
    text = _parse_string(body, member)
    if not _DATE_AND_TIME.match(text):
        raise VoucherError(f"{member}: {text!r} is not an RFC 3339 date-and-time")
    try:
        return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise VoucherError(f"{member}: {text!r} is not a valid date-and-time") from None


def _parse_optional_time(body: dict[str, Any], member: str) -> datetime | None:
    return _parse_time(body, member) if member in body else None


def _parse_binary(body: dict[str, Any], member: str) -> bytes:
    text = _parse_string(body, member)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VoucherError(f"{member}: not valid base64") from None


def _parse_optional_binary(body: dict[str, Any], member: str) -> bytes | None:
    return _parse_binary(body, member) if member in body else None


def sign_voucher(voucher: Voucher, masa: Credential) -> bytes:
    """The voucher as CMS SignedData (eContentType id-ct-animaJSONVoucher) signed by the MASA.

    The MASA certificate and its intermediates travel inside; the root stays out because the
    device must already hold it as a trust anchor.
    """
    intermediates = [cert for cert in masa.chain if not _is_self_signed(cert)]
    return cms.sign(encode_voucher_json(voucher), ID_CT_ANIMA_JSON_VOUCHER, masa, intermediates)


def _is_self_signed(certificate: x509.Certificate) -> bool:
    return certificate.issuer == certificate.subject


def read_voucher(
    signed_voucher: bytes,
    *,
    masa_trust_anchors: Sequence[x509.Certificate] | None = None,
    at: datetime | None = None,
) -> Voucher:
    """Parse a signed voucher once its signature verifies; with `masa_trust_anchors`, the
    signer must also chain to them. Without, it suits display and pre-checks before upload;
    devices use `verify_voucher`."""
    try:
        verified = cms.verify_signed(
            signed_voucher,
            allowed_econtent_types={ID_CT_ANIMA_JSON_VOUCHER},
            trust_anchors=masa_trust_anchors,
            at=at,
        )
    except CmsError as exc:
        raise VoucherError(f"ownership voucher: {exc}") from None
    return decode_voucher_json(verified.content)


def read_stored_voucher(signed_voucher: bytes) -> Voucher:
    """The content of a voucher whose signature was verified when it was stored; the
    signature is not checked again (cross-resource checks read every stored voucher)."""
    try:
        content = cms.content_verified_before(
            signed_voucher, allowed_econtent_types={ID_CT_ANIMA_JSON_VOUCHER}
        )
    except CmsError as exc:
        raise VoucherError(f"ownership voucher: {exc}") from None
    return decode_voucher_json(content)


def verify_voucher(
    signed_voucher: bytes,
    *,
    serial_number: str,
    owner_certificate: x509.Certificate,
    owner_intermediates: Sequence[x509.Certificate] = (),
    masa_trust_anchors: Sequence[x509.Certificate],
    nonce: bytes | None = None,
    at: datetime | None = None,
) -> Voucher:
    """Check a voucher as a device does and return it; VoucherError says which check failed.

    Checks: MASA signature chaining to the device's trust anchors, the serial number, the
    validity window (or the nonce the device sent), and that the owner certificate is the
    pinned-domain-cert or chains to it.
    """
    now = at or datetime.now(UTC)
    voucher = read_voucher(signed_voucher, masa_trust_anchors=masa_trust_anchors, at=now)
    check_serial(voucher, serial_number)
    check_current(voucher, now)
    if voucher.nonce is not None and voucher.nonce != nonce:
        raise VoucherError("ownership voucher nonce does not match the nonce this device sent")
    check_owner_pinned(voucher, owner_certificate, owner_intermediates, at=now)
    return voucher


def check_serial(voucher: Voucher, serial_number: str) -> None:
    """The voucher names this device; VoucherError otherwise."""
    if voucher.serial_number != serial_number:
        raise VoucherError(
            f"ownership voucher is for serial number {voucher.serial_number!r}, "
            f"not this device ({serial_number!r})"
        )


def check_storable(voucher: Voucher, serial_number: str, at: datetime) -> None:
    """A bootstrap server may hold this voucher for device `serial_number`: it names the
    device, is current at `at`, and carries no nonce; VoucherError otherwise.

    A nonce binds a voucher to one request of the device (RFC 8366); a voucher obtained
    in advance and served from storage cannot answer it, so the device would refuse it.
    """
    check_serial(voucher, serial_number)
    check_current(voucher, at)
    if voucher.nonce is not None:
        raise VoucherError(
            "ownership voucher carries a nonce: it answers one request of the device, so a "
            "bootstrap server cannot serve it from storage; obtain a nonceless voucher"
        )


def check_current(voucher: Voucher, at: datetime) -> None:
    """Created no later than `at` (give or take clock skew) and not expired."""
    if voucher.created_on > at + CLOCK_SKEW:
        raise VoucherError(f"ownership voucher created-on {voucher.created_on} is in the future")
    if voucher.expires_on is not None and voucher.expires_on < at:
        raise VoucherError(f"ownership voucher expired on {_format_time(voucher.expires_on)}")


def check_owner_pinned(
    voucher: Voucher,
    owner_certificate: x509.Certificate,
    owner_intermediates: Sequence[x509.Certificate] = (),
    *,
    at: datetime | None = None,
) -> None:
    """The owner certificate is the voucher's pinned-domain-cert or chains to it."""
    check_pin_authorises(voucher.pinned_domain_cert, owner_certificate, owner_intermediates, at=at)


def check_pin_authorises(
    pinned_domain_cert: bytes,
    owner_certificate: x509.Certificate,
    owner_intermediates: Sequence[x509.Certificate] = (),
    *,
    at: datetime | None = None,
) -> None:
    """The owner certificate is `pinned_domain_cert` (a voucher's, DER) or chains to it;
    for callers that hold the pin without the rest of the voucher."""
    try:
        certs.verify_chain(
            owner_certificate,
            intermediates=owner_intermediates,
            trust_anchors=[load_pinned_certificate(pinned_domain_cert)],
            at=at,
        )
    except CmsError as exc:
        raise VoucherError(
            f"owner certificate {certs.describe(owner_certificate)} is not authorised by the "
            f"voucher's pinned-domain-cert: {exc}"
        ) from None

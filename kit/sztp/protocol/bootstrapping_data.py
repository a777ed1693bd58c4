"""The `get-bootstrapping-data` output: build it as an owner does, verify it as a device does.

RFC 8572 §3 defines three artifacts: conveyed information (CMS, signed or not), the owner
certificate (degenerate CMS SignedData) and the ownership voucher (CMS signed by the MASA).
A device trusts signed conveyed information only through the chain
manufacturer trust anchor → voucher → owner certificate → signature (RFC 8572 §5.4).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from cryptography import x509

from ..errors import CmsError, TrustError, ValidationError
from . import cms, conveyed_info
from .conveyed_info import ConveyedInformation, Encoding, OnboardingInformation
from .oids import ID_SIGNED_DATA
from .pki import Credential, SignerCredential
from .voucher import Voucher, check_owner_pinned, check_serial, read_voucher, verify_voucher

OUTPUT_MEMBER = "ietf-sztp-bootstrap-server:output"
ReportingLevel = Literal["minimal", "verbose"]
_ENCODING_BY_OID = {encoding.content_type_oid: encoding for encoding in Encoding}


@dataclass(frozen=True)
class BootstrappingData:
    """The three RFC 8572 artifacts as DER bytes, as carried in the RPC output."""

    conveyed_information: bytes
    owner_certificate: bytes | None = None
    ownership_voucher: bytes | None = None
    reporting_level: ReportingLevel | None = None

    def __post_init__(self) -> None:
        if (self.owner_certificate is None) != (self.ownership_voucher is None):
            raise ValidationError(
                "owner-certificate", "owner-certificate and ownership-voucher go together"
            )

    @property
    def signed(self) -> bool:
        return self.ownership_voucher is not None


@dataclass(frozen=True)
class VerifiedBootstrappingData:
    """What a device may act on after verification."""

    information: ConveyedInformation
    encoding: Encoding
    signed: bool
    voucher: Voucher | None = None
    owner_certificate: x509.Certificate | None = None


def build_unsigned(information: ConveyedInformation, encoding: Encoding) -> BootstrappingData:
    """Unsigned conveyed information: only for a device that trusts the server, or a redirect."""
    body = conveyed_info.encode(information, encoding)
    return BootstrappingData(cms.wrap_unsigned(body, encoding.content_type_oid))


def build_signed(
    information: ConveyedInformation,
    encoding: Encoding,
    owner: Credential | SignerCredential,
    signed_voucher: bytes,
    *,
    reporting_level: ReportingLevel | None = None,
) -> BootstrappingData:
    """Conveyed information signed by the owner key (in memory or in a token), with owner
    certificate and voucher.

    The owner-certificate artifact carries the owner certificate and the chain above it; the
    voucher's pinned-domain-cert anchors that chain on the device.
    """
    body = conveyed_info.encode(information, encoding)
    return BootstrappingData(
        conveyed_information=cms.sign(body, encoding.content_type_oid, owner),
        owner_certificate=cms.certs_only([owner.certificate, *owner.chain]),
        ownership_voucher=signed_voucher,
        reporting_level=reporting_level,
    )


def verify_bootstrapping_data(
    data: BootstrappingData,
    *,
    serial_number: str,
    trust_anchors: Sequence[x509.Certificate],
    server_trusted: bool = False,
    nonce: bytes | None = None,
    at: datetime | None = None,
) -> VerifiedBootstrappingData:
    """Verify the artifacts as the device `serial_number` does (RFC 8572 §5.4, §5.5).

    `trust_anchors` are the manufacturer anchors the device uses for vouchers. Unsigned
    onboarding information is accepted only when `server_trusted` (the device authenticated the
    server over TLS); an unsigned redirect is always returned, for provisional use.
    """
    if cms.content_info_type(data.conveyed_information) != ID_SIGNED_DATA:
        return _accept_unsigned(data, server_trusted=server_trusted)
    if data.owner_certificate is None or data.ownership_voucher is None:
        raise TrustError(
            "signed conveyed information arrived without owner-certificate and ownership-voucher"
        )
    owner_certificate, intermediates = _owner_certificate_chain(data.owner_certificate)
    voucher = verify_voucher(
        data.ownership_voucher,
        serial_number=serial_number,
        owner_certificate=owner_certificate,
        owner_intermediates=intermediates,
        masa_trust_anchors=trust_anchors,
        nonce=nonce,
        at=at,
    )
    verified = cms.verify_signed(
        data.conveyed_information,
        allowed_econtent_types=set(_ENCODING_BY_OID),
        signer_certificate=owner_certificate,
        at=at,
    )
    encoding = _ENCODING_BY_OID[verified.econtent_type]
    return VerifiedBootstrappingData(
        information=conveyed_info.decode(verified.content, encoding),
        encoding=encoding,
        signed=True,
        voucher=voucher,
        owner_certificate=owner_certificate,
    )


def check_presigned(
    data: BootstrappingData, *, serial_number: str, at: datetime | None = None
) -> ConveyedInformation:
    """What a server can check of artifacts signed offline, without the device's trust anchors.

    The voucher must be intact and name `serial_number`, the owner certificate must chain to
    its pinned-domain-cert, and the conveyed information must be signed by that owner
    certificate. Only the MASA signature's chain to the manufacturer is left to the device.
    """
    if cms.content_info_type(data.conveyed_information) != ID_SIGNED_DATA:
        content_type, content = cms.unwrap_unsigned(
            data.conveyed_information, set(_ENCODING_BY_OID)
        )
        return conveyed_info.decode(content, _ENCODING_BY_OID[content_type])
    if data.owner_certificate is None or data.ownership_voucher is None:
        raise TrustError(
            "signed conveyed information arrived without owner-certificate and ownership-voucher"
        )
    owner_certificate, intermediates = _owner_certificate_chain(data.owner_certificate)
    voucher = read_voucher(data.ownership_voucher)
    check_serial(voucher, serial_number)
    check_owner_pinned(voucher, owner_certificate, intermediates, at=at)
    verified = cms.verify_signed(
        data.conveyed_information,
        allowed_econtent_types=set(_ENCODING_BY_OID),
        signer_certificate=owner_certificate,
        at=at,
    )
    return conveyed_info.decode(verified.content, _ENCODING_BY_OID[verified.econtent_type])


def _accept_unsigned(data: BootstrappingData, *, server_trusted: bool) -> VerifiedBootstrappingData:
    content_type, content = cms.unwrap_unsigned(data.conveyed_information, set(_ENCODING_BY_OID))
    encoding = _ENCODING_BY_OID[content_type]
    information = conveyed_info.decode(content, encoding)
    if isinstance(information, OnboardingInformation) and not server_trusted:
        raise TrustError(
            "unsigned onboarding information from a bootstrap server this device does not "
            "trust is refused (RFC 8572 §5.5)"
        )
    return VerifiedBootstrappingData(information=information, encoding=encoding, signed=False)


def _owner_certificate_chain(
    artifact: bytes,
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """Split the owner-certificate artifact into the signing certificate and the rest.

    The signing certificate is the one that issued no other certificate in the bag.
    """
    try:
        certificates = cms.read_certs_only(artifact)
    except CmsError as exc:
        raise TrustError(f"owner-certificate: {exc}") from None
    issuers = {cert.issuer for cert in certificates if cert.issuer != cert.subject}
    leaves = [cert for cert in certificates if cert.subject not in issuers]
    if len(leaves) != 1:
        raise TrustError(
            f"owner-certificate must hold exactly one end-entity certificate, found {len(leaves)}"
        )
    leaf = leaves[0]
    return leaf, [cert for cert in certificates if cert is not leaf]


def encode_output_json(data: BootstrappingData, *, indent: int | None = None) -> bytes:
    """The RPC output as RFC 8040 JSON (`ietf-sztp-bootstrap-server:output`).

    Compact by default, for the wire (and the C encoder's speed); `indent` for files people
    read.
    """
    body: dict[str, Any] = {
        "conveyed-information": base64.b64encode(data.conveyed_information).decode()
    }
    if data.owner_certificate is not None and data.ownership_voucher is not None:
        body["owner-certificate"] = base64.b64encode(data.owner_certificate).decode()
        body["ownership-voucher"] = base64.b64encode(data.ownership_voucher).decode()
    if data.reporting_level is not None:
        body["reporting-level"] = data.reporting_level
    separators = (",", ":") if indent is None else None
    return json.dumps({OUTPUT_MEMBER: body}, indent=indent, separators=separators).encode()

"""CMS (RFC 5652) encoding and verification of SZTP artifacts.

RFC 8572 wraps every artifact in a CMS ContentInfo: unsigned conveyed information (the raw
JSON/XML in an OCTET STRING under an id-ct-sztpConveyedInfo* content type), SignedData for
signed conveyed information and vouchers, and degenerate SignedData ("certs-only") for owner
certificates and trust anchors. asn1crypto does the ASN.1, cryptography the signatures.
"""

import datetime as dt
import hmac
import re
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from asn1crypto import algos, cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sztpctl.errors import CmsError, SignatureError, ValidationError
from sztpctl.protocol import certs
from sztpctl.protocol.oids import ID_DATA, ID_SIGNED_DATA
from sztpctl.protocol.pki import Credential, PrivateKey, signature_hash

_DOTTED_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# CMS-level names of the content types, for messages.
_TYPE_NAMES = {
    ID_DATA: "id-data",
    ID_SIGNED_DATA: "id-signedData",
    "1.2.840.113549.1.7.3": "id-envelopedData",
    "1.2.840.113549.1.9.16.1.40": "id-ct-animaJSONVoucher",
    "1.2.840.113549.1.9.16.1.42": "id-ct-sztpConveyedInfoXML",
    "1.2.840.113549.1.9.16.1.43": "id-ct-sztpConveyedInfoJSON",
}
# UTCTime only covers 1950..2049 (RFC 5652 §11.3).
_LAST_UTCTIME_YEAR = 2049


class _UnsignedContentInfo(core.Sequence):
    """ContentInfo whose content is a plain OCTET STRING (RFC 8572 unsigned artifacts)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("content_type", cms.ContentType),
        ("content", core.OctetString, {"explicit": 0}),
    ]


@dataclass(frozen=True)
class VerifiedContent:
    """The encapsulated content of a SignedData whose signature (and chain) verified."""

    content: bytes
    econtent_type: str
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]


def wrap_unsigned(content: bytes, content_type: str) -> bytes:
    """ContentInfo{content_type, OCTET STRING content}, e.g. unsigned conveyed information."""
    _check_oid("content_type", content_type)
    _check_bytes("content", content)
    return _UnsignedContentInfo({"content_type": content_type, "content": content}).dump()


def unwrap_unsigned(der: bytes, expected_types: Collection[str]) -> tuple[str, bytes]:
    """The (content type, content) of an unsigned ContentInfo made by `wrap_unsigned`."""
    content_type = content_info_type(der)
    _check_type(content_type, expected_types, "content type")
    with _decoding("unsigned ContentInfo"):
        content_info = _UnsignedContentInfo.load(der, strict=True)
        content = content_info["content"].native
    if content is None:
        raise CmsError(f"{_type_name(content_type)} ContentInfo has no content")
    return content_type, content


def content_info_type(der: bytes) -> str:
    """The dotted contentType OID of a DER ContentInfo."""
    with _decoding("ContentInfo"):
        return _load_content_info(der)["content_type"].dotted


def sign(
    content: bytes,
    econtent_type: str,
    signer: Credential | tuple[x509.Certificate, PrivateKey],
    extra_certs: Sequence[x509.Certificate] = (),
    *,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """SignedData with attached `content`, signed attributes and issuerAndSerialNumber.

    The certificates field holds the signer certificate then `extra_certs` (pass the chain
    explicitly: what a peer needs depends on the artifact).
    """
    _check_bytes("content", content)
    _check_oid("econtent_type", econtent_type)
    if not isinstance(signer, Credential):
        signer = Credential(*signer)
    if signing_time is None:
        signing_time = dt.datetime.now(dt.UTC)
    elif signing_time.tzinfo is None:
        raise ValidationError("signing_time", "must be timezone-aware")
    key = signer.private_key
    digest = signature_hash(key)
    signer_cert = _to_asn1(signer.certificate)

    signed_attrs = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": [econtent_type]}),
            cms.CMSAttribute({"type": "message_digest", "values": [_digest(digest, content)]}),
            cms.CMSAttribute({"type": "signing_time", "values": [_time(signing_time)]}),
        ]
    )
    if isinstance(key, rsa.RSAPrivateKey):
        signature_algorithm = "rsassa_pkcs1v15"  # rsaEncryption, as OpenSSL writes it
    else:
        signature_algorithm = f"{digest.name}_ecdsa"
    signer_info = cms.SignerInfo(
        {
            "version": "v1",  # v1 <=> issuerAndSerialNumber (RFC 5652 §5.3)
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={
                    "issuer": signer_cert.issuer,
                    "serial_number": signer_cert.serial_number,
                },
            ),
            "digest_algorithm": _digest_algorithm(digest),
            "signed_attrs": signed_attrs,
            "signature_algorithm": {"algorithm": signature_algorithm},
            "signature": b"",
        }
    )
    to_be_signed = _signed_attrs_as_set(signer_info)
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(to_be_signed, padding.PKCS1v15(), digest)
    else:
        signature = key.sign(to_be_signed, ec.ECDSA(digest))
    signer_info["signature"] = signature

    certificates = list(dict.fromkeys([signer.certificate, *extra_certs]))
    signed_data = cms.SignedData(
        {
            # v3 when eContentType is not id-data, else v1 (RFC 5652 §5.1).
            "version": "v1" if econtent_type == ID_DATA else "v3",
            "digest_algorithms": [_digest_algorithm(digest)],
            "encap_content_info": {"content_type": econtent_type, "content": content},
            "certificates": [_certificate_choice(cert) for cert in certificates],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """Degenerate SignedData (id-data, no content, no signers) carrying `certificates`."""
    if not certificates:
        raise ValidationError("certificates", "a certs-only CMS needs at least one certificate")
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data"},
            "certificates": [_certificate_choice(cert) for cert in certificates],
            "signer_infos": [],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def read_certs_only(der: bytes) -> list[x509.Certificate]:
    """The X.509 certificates of any SignedData (signers, if any, are not checked)."""
    with _decoding("SignedData"):
        return _embedded_certificates(_load_signed_data(der))


def verify_signed(
    der: bytes,
    *,
    allowed_econtent_types: Collection[str],
    trust_anchors: Sequence[x509.Certificate] | None = None,
    signer_certificate: x509.Certificate | None = None,
    extra_intermediates: Sequence[x509.Certificate] = (),
    at: dt.datetime | None = None,
) -> VerifiedContent:
    """Verify a single-signer SignedData and return its content.

    The signer must be `signer_certificate` if given, and must chain to `trust_anchors` (via
    the embedded certificates and `extra_intermediates`) if given. With neither, only the
    integrity of the content is proven, not who signed it.
    """
    with _decoding("SignedData"):
        signed_data = _load_signed_data(der)
        econtent_type = signed_data["encap_content_info"]["content_type"].dotted
        _check_type(econtent_type, allowed_econtent_types, "eContentType")
        content = signed_data["encap_content_info"]["content"].native
        embedded = _embedded_certificates(signed_data)
        signer_infos = list(signed_data["signer_infos"])
        if len(signer_infos) != 1:
            raise CmsError(f"SignedData has {len(signer_infos)} signers, expected exactly one")
        signer_info = signer_infos[0]
        signer = _find_signer(signer_info["sid"], embedded, signer_certificate)
        digest = _hash(signer_info["digest_algorithm"]["algorithm"].native)
        signature_algorithm = signer_info["signature_algorithm"]
        signature = signer_info["signature"].native
        attributes = None
        if not isinstance(signer_info["signed_attrs"], core.Void):
            attributes = _attribute_values(signer_info["signed_attrs"])
            signed_bytes = _signed_attrs_as_set(signer_info)
    if content is None:
        raise CmsError("SignedData has no encapsulated content (detached signatures unsupported)")
    if attributes is not None:
        _check_signed_attributes(attributes, econtent_type, _digest(digest, content))
    elif econtent_type == ID_DATA:
        signed_bytes = content  # without signed attributes the content itself is signed
    else:
        raise SignatureError(
            f"no signed attributes: RFC 5652 requires them for {_type_name(econtent_type)}"
        )
    _verify_signature(signer, signature_algorithm, digest, signature, signed_bytes)
    if trust_anchors is not None:
        intermediates = [*embedded, *extra_intermediates]
        certs.verify_chain(signer, intermediates=intermediates, trust_anchors=trust_anchors, at=at)
    return VerifiedContent(content, econtent_type, signer, tuple(embedded))


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turn asn1crypto/cryptography parse errors (raised lazily) into CmsError."""
    try:
        yield
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        UnsupportedAlgorithm,
        x509.InvalidVersion,
    ) as error:
        raise CmsError(f"malformed {what}: {error}") from None


def _load_content_info(der: bytes) -> cms.ContentInfo:
    if not isinstance(der, bytes | bytearray):
        raise CmsError(f"CMS must be DER bytes, got {type(der).__name__}")
    if not der:
        raise CmsError("CMS is empty")
    return cms.ContentInfo.load(bytes(der), strict=True)


def _load_signed_data(der: bytes) -> cms.SignedData:
    content_info = _load_content_info(der)
    content_type = content_info["content_type"].dotted
    if content_type != ID_SIGNED_DATA:
        raise CmsError(f"content type {_type_name(content_type)}, expected id-signedData")
    signed_data = content_info["content"]
    if not isinstance(signed_data, cms.SignedData):
        raise CmsError("SignedData ContentInfo has no content")
    return signed_data


def _embedded_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    choices = signed_data["certificates"]
    # An absent OPTIONAL field is a Void; testing `.native` would decode every certificate.
    if isinstance(choices, core.Void):
        return []
    # Attribute and other certificate types carry no keys usable here.
    return [
        x509.load_der_x509_certificate(choice.chosen.dump())
        for choice in choices
        if choice.name == "certificate"
    ]


def _find_signer(
    sid: cms.SignerIdentifier,
    embedded: list[x509.Certificate],
    expected: x509.Certificate | None,
) -> x509.Certificate:
    if expected is not None:
        if _identifies(sid, expected):
            return expected
        found = next((cert for cert in embedded if _identifies(sid, cert)), None)
        actual = certs.describe(found) if found is not None else _describe_sid(sid)
        raise SignatureError(f"signed by {actual}, expected {certs.describe(expected)}")
    for cert in embedded:
        if _identifies(sid, cert):
            return cert
    raise SignatureError(f"signer certificate ({_describe_sid(sid)}) is not in the CMS")


def _identifies(sid: cms.SignerIdentifier, cert: x509.Certificate) -> bool:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"]
        if cert.serial_number != sid.chosen["serial_number"].native:
            return False
        # Identical DER is the common case and far cheaper than asn1crypto's RFC 5280 name
        # comparison, which stays as the fallback.
        return cert.issuer.public_bytes() == issuer.dump() or _to_asn1(cert).issuer == issuer
    try:
        identifier = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False
    return identifier.digest == sid.chosen.native


def _describe_sid(sid: cms.SignerIdentifier) -> str:
    if sid.name == "issuer_and_serial_number":
        issuer = sid.chosen["issuer"].human_friendly
        return f"issuer {issuer}, serial {sid.chosen['serial_number'].native:x}"
    return f"subject key identifier {sid.chosen.native.hex(':')}"


def _attribute_values(signed_attrs: cms.CMSAttributes) -> dict[str, list[core.Asn1Value]]:
    values: dict[str, list[core.Asn1Value]] = {}
    for attribute in signed_attrs:
        values.setdefault(attribute["type"].dotted, []).extend(attribute["values"])
    return values


def _check_signed_attributes(
    attributes: dict[str, list[core.Asn1Value]], econtent_type: str, content_digest: bytes
) -> None:
    content_types = attributes.get("1.2.840.113549.1.9.3", [])
    digests = attributes.get("1.2.840.113549.1.9.4", [])
    if len(content_types) != 1 or len(digests) != 1:
        raise SignatureError(
            "signed attributes need exactly one content-type and one message-digest value"
        )
    signed_type = content_types[0].dotted
    if signed_type != econtent_type:
        raise SignatureError(
            f"signed content-type {_type_name(signed_type)} does not match eContentType "
            f"{_type_name(econtent_type)}"
        )
    if not hmac.compare_digest(digests[0].native, content_digest):
        raise SignatureError("message-digest does not match the content (content was altered)")


def _verify_signature(
    signer: x509.Certificate,
    signature_algorithm: algos.SignedDigestAlgorithm,
    digest: hashes.HashAlgorithm,
    signature: bytes,
    signed_bytes: bytes,
) -> None:
    with _decoding("signature algorithm"):
        algorithm = signature_algorithm.signature_algo
        algorithm_hash = _algorithm_hash(signature_algorithm)
    if algorithm_hash is not None and algorithm_hash != digest.name:
        raise SignatureError(
            f"signature algorithm hash {algorithm_hash} differs from digest {digest.name}"
        )
    try:
        public_key = signer.public_key()
    except (UnsupportedAlgorithm, ValueError) as error:
        raise SignatureError(f"unusable public key in {certs.describe(signer)}: {error}") from None
    try:
        if algorithm == "rsassa_pkcs1v15" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, signed_bytes, padding.PKCS1v15(), digest)
        elif algorithm == "ecdsa" and isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, signed_bytes, ec.ECDSA(digest))
        else:
            raise SignatureError(
                f"unsupported signature algorithm {algorithm} for the "
                f"{type(public_key).__name__} of {certs.describe(signer)}"
            )
    except InvalidSignature:
        raise SignatureError(f"signature by {certs.describe(signer)} does not verify") from None


def _algorithm_hash(signature_algorithm: algos.SignedDigestAlgorithm) -> str | None:
    """The hash named by a combined OID like ecdsa-with-SHA256; None for rsaEncryption."""
    try:
        return signature_algorithm.hash_algo
    except ValueError:
        return None


def _hash(name: str) -> hashes.HashAlgorithm:
    if name not in _HASHES:
        raise SignatureError(f"unsupported digest algorithm {name}, expected one of {[*_HASHES]}")
    return _HASHES[name]()


def _digest(algorithm: hashes.HashAlgorithm, content: bytes) -> bytes:
    hasher = hashes.Hash(algorithm)
    hasher.update(content)
    return hasher.finalize()


def _digest_algorithm(digest: hashes.HashAlgorithm) -> algos.DigestAlgorithm:
    # SHA-2 parameters are absent, not NULL (RFC 5754 §2), as OpenSSL writes them.
    return algos.DigestAlgorithm({"algorithm": digest.name, "parameters": None})


def _signed_attrs_as_set(signer_info: cms.SignerInfo) -> bytes:
    """The signed attributes as signed: the received encoding re-tagged [0] -> SET (§5.4)."""
    encoded = signer_info["signed_attrs"].dump()
    return b"\x31" + encoded[1:]


def _time(moment: dt.datetime) -> cms.Time:
    moment = moment.astimezone(dt.UTC).replace(microsecond=0)
    if moment.year > _LAST_UTCTIME_YEAR:
        return cms.Time(name="generalized_time", value=moment)
    return cms.Time(name="utc_time", value=moment)


def _certificate_choice(certificate: x509.Certificate) -> cms.CertificateChoices:
    return cms.CertificateChoices(name="certificate", value=_to_asn1(certificate))


def _to_asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))


def _check_type(actual: str, allowed: Collection[str], what: str) -> None:
    if actual not in allowed:
        expected = " or ".join(_type_name(oid) for oid in allowed) or "(none allowed)"
        raise CmsError(f"{what} {_type_name(actual)}, expected {expected}")


def _type_name(oid: str) -> str:
    name = _TYPE_NAMES.get(oid)
    return f"{name} ({oid})" if name else oid


def _check_oid(field: str, oid: str) -> None:
    if not isinstance(oid, str) or not _DOTTED_OID.fullmatch(oid):
        raise ValidationError(field, f"{oid!r} is not a dotted object identifier")


def _check_bytes(field: str, value: bytes) -> None:
    if not isinstance(value, bytes):
        raise ValidationError(field, f"must be bytes, got {type(value).__name__}")

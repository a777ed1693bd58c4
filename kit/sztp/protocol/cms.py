"""CMS (RFC 5652) encoding and verification of SZTP artifacts.

RFC 8572 wraps every artifact in a CMS ContentInfo: unsigned conveyed information (the raw
JSON/XML in an OCTET STRING under an id-ct-sztpConveyedInfo* content type), SignedData for
signed conveyed information and vouchers, and degenerate SignedData ("certs-only") for owner
certificates and trust anchors. asn1crypto does the ASN.1, cryptography the signatures.

Over 500 lines on purpose: building and verifying are two halves of one format, and each check
on the verifying side answers a construct of the building side; kept together they read as one.
"""

import datetime as dt
import functools
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
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from sztp.errors import CmsError, SignatureError, ValidationError
from sztp.protocol import certs
from sztp.protocol.der import tlv
from sztp.protocol.oids import ID_DATA, ID_SIGNED_DATA
from sztp.protocol.pki import Credential, PrivateKey, Signer, SignerCredential, signature_hash

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
    signer: Credential | SignerCredential | tuple[x509.Certificate, PrivateKey | Signer],
    extra_certs: Sequence[x509.Certificate] = (),
    *,
    signing_time: dt.datetime | None = None,
) -> bytes:
    """SignedData with attached `content`, signed attributes and issuerAndSerialNumber.

    The key is a private key in memory or a `Signer` (a key in a token); both give the same
    structure. The certificates field holds the signer certificate then `extra_certs` (pass
    the chain explicitly: what a peer needs depends on the artifact).
    """
    _check_bytes("content", content)
    _check_oid("econtent_type", econtent_type)
    if isinstance(signer, tuple):
        certificate, given = signer
        if isinstance(given, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            signer = Credential(certificate, given)
        else:
            signer = SignerCredential(certificate, given)
    if signing_time is None:
        signing_time = dt.datetime.now(dt.UTC)
    elif signing_time.tzinfo is None:
        raise ValidationError("signing_time", "must be timezone-aware")
    key = signer.private_key if isinstance(signer, Credential) else signer.signer
    digest = signature_hash(key)
    is_rsa = isinstance(key, rsa.RSAPrivateKey) or (
        not isinstance(key, ec.EllipticCurvePrivateKey)
        and isinstance(key.public_key(), rsa.RSAPublicKey)
    )
    # rsassa_pkcs1v15 is rsaEncryption, as OpenSSL writes it.
    signature_algorithm = "rsassa_pkcs1v15" if is_rsa else f"{digest.name}_ecdsa"
    certificates = tuple(
        certificate.public_bytes(serialization.Encoding.DER)
        for certificate in dict.fromkeys([signer.certificate, *extra_certs])
    )
    parts = _signer_parts(certificates, digest.name, signature_algorithm)
    # A SET, as it is signed (RFC 5652 §5.4); DER orders a SET OF by its elements' encodings.
    attributes = (
        _attribute(_CONTENT_TYPE, _oid_encoding(econtent_type)),
        _attribute(_MESSAGE_DIGEST, tlv(_OCTET_STRING, _digest(digest, content))),
        _attribute(_SIGNING_TIME, _time_encoding(signing_time)),
    )
    signed_attrs = tlv(_SET, b"".join(sorted(attributes)))
    if isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(signed_attrs, padding.PKCS1v15(), digest)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(signed_attrs, ec.ECDSA(digest))
    else:
        signature = key.sign(signed_attrs, digest)
    # The structure around them is written from DER encoded once per signer: building it with
    # asn1crypto for every message cost several times the signature.
    signer_info = tlv(
        _SEQUENCE,
        _VERSION_1  # v1 <=> issuerAndSerialNumber (RFC 5652 §5.3)
        + parts.signer_identifier
        + parts.digest_algorithm
        + bytes([_CONTEXT_0])
        + signed_attrs[1:]  # [0] IMPLICIT SET
        + parts.signature_algorithm
        + tlv(_OCTET_STRING, signature),
    )
    encapsulated = tlv(
        _SEQUENCE,
        _oid_encoding(econtent_type) + tlv(_CONTEXT_0, tlv(_OCTET_STRING, content)),
    )
    signed_data = tlv(
        _SEQUENCE,
        # v3 when eContentType is not id-data, else v1 (RFC 5652 §5.1).
        (_VERSION_1 if econtent_type == ID_DATA else _VERSION_3)
        + tlv(_SET, parts.digest_algorithm)
        + encapsulated
        + parts.certificates
        + tlv(_SET, signer_info),
    )
    return tlv(_SEQUENCE, _oid_encoding(ID_SIGNED_DATA) + tlv(_CONTEXT_0, signed_data))


_VERSION_1 = b"\x02\x01\x01"
_VERSION_3 = b"\x02\x01\x03"


@dataclass(frozen=True)
class _SignerEncoding:
    """DER of what a SignedData holds for one signer, whatever it signs."""

    certificates: bytes  # [0] IMPLICIT CertificateSet
    signer_identifier: bytes  # issuerAndSerialNumber
    digest_algorithm: bytes
    signature_algorithm: bytes


@functools.lru_cache(maxsize=64)
def _signer_parts(
    certificates: tuple[bytes, ...], digest_name: str, signature_algorithm: str
) -> _SignerEncoding:
    """`certificates`: the signer's first, DER."""
    signer = asn1_x509.Certificate.load(certificates[0])
    certificate_set = cms.CertificateSet(
        [
            cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(der))
            for der in certificates
        ]
    ).dump()
    identifier = cms.SignerIdentifier(
        name="issuer_and_serial_number",
        value={"issuer": signer.issuer, "serial_number": signer.serial_number},
    ).dump()
    return _SignerEncoding(
        certificates=bytes([_CONTEXT_0]) + certificate_set[1:],
        signer_identifier=identifier,
        # SHA-2 parameters are absent, not NULL (RFC 5754 §2), as OpenSSL writes them.
        digest_algorithm=algos.DigestAlgorithm(
            {"algorithm": digest_name, "parameters": None}
        ).dump(),
        signature_algorithm=algos.SignedDigestAlgorithm({"algorithm": signature_algorithm}).dump(),
    )


@functools.lru_cache(maxsize=32)
def _oid_encoding(dotted: str) -> bytes:
    return core.ObjectIdentifier(dotted).dump()


def _attribute(attribute_type: str, value: bytes) -> bytes:
    """An Attribute with one value (already DER)."""
    return tlv(_SEQUENCE, _oid_encoding(attribute_type) + tlv(_SET, value))


def _time_encoding(moment: dt.datetime) -> bytes:
    """UTCTime up to 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), whole seconds, Z."""
    moment = moment.astimezone(dt.UTC)
    if moment.year > _LAST_UTCTIME_YEAR:
        return tlv(_GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())
    return tlv(_UTC_TIME, moment.strftime("%y%m%d%H%M%SZ").encode())


def certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """Degenerate SignedData (id-data, no content, no signers) carrying `certificates`."""
    if not certificates:
        raise ValidationError("certificates", "a certs-only CMS needs at least one certificate")
    return _certs_only(
        tuple(cert.public_bytes(serialization.Encoding.DER) for cert in certificates)
    )


# A server sends one owner's chain to every device it signs for, one device at a time when
# its profile is templated: encoded once per chain.
@functools.lru_cache(maxsize=64)
def _certs_only(certificates: tuple[bytes, ...]) -> bytes:
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [],
            "encap_content_info": {"content_type": "data"},
            "certificates": [
                cms.CertificateChoices(name="certificate", value=asn1_x509.Certificate.load(der))
                for der in certificates
            ],
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
    parts = _read_signed_data(der)
    _check_type(parts.econtent_type, allowed_econtent_types, "eContentType")
    if parts.signer is None:
        raise CmsError(f"SignedData has {parts.signer_count} signers, expected exactly one")
    signer_info = parts.signer
    with _decoding("SignedData"):
        embedded = [certs.load_der_certificate(cert) for cert in parts.certificates]
        signer = _find_signer(signer_info, embedded, signer_certificate)
        digest = _hash(_digest_algorithm_name(signer_info.digest_algorithm))
    content = parts.content
    if content is None:
        raise CmsError("SignedData has no encapsulated content (detached signatures unsupported)")
    if signer_info.signed_attrs is not None:
        _check_signed_attributes(signer_info, parts.econtent_type, _digest(digest, content))
        signed_bytes = signer_info.signed_attrs
    elif parts.econtent_type == ID_DATA:
        signed_bytes = content  # without signed attributes the content itself is signed
    else:
        raise SignatureError(
            f"no signed attributes: RFC 5652 requires them for {_type_name(parts.econtent_type)}"
        )
    _verify_signature(signer, signer_info, digest, signed_bytes)
    certs.check_signer(signer)
    if trust_anchors is not None:
        intermediates = [*embedded, *extra_intermediates]
        certs.verify_chain(signer, intermediates=intermediates, trust_anchors=trust_anchors, at=at)
    return VerifiedContent(content, parts.econtent_type, signer, tuple(embedded))


def content_verified_before(der: bytes, *, allowed_econtent_types: Collection[str]) -> bytes:
    """The encapsulated content of a SignedData, its signature NOT checked: only for content
    verified with `verify_signed` when it was accepted (a stored voucher), read again."""
    parts = _read_signed_data(der)
    _check_type(parts.econtent_type, allowed_econtent_types, "eContentType")
    if parts.content is None:
        raise CmsError("SignedData has no encapsulated content (detached signatures unsupported)")
    return parts.content


# --- reading SignedData -------------------------------------------------------------------------
#
# Verification needs a few fields of a SignedData, as plain values: `_SignedParts`. A short DER
# walker reads them from the structures SZTP peers (this module, OpenSSL without -stream) write;
# anything else (BER, unusual choices, garbage) goes to asn1crypto, which also words the errors.
# Both give the same values, and everything that is checked is checked on those values.


@dataclass(frozen=True)
class _SignerParts:
    """What verification needs of a SignerInfo, however it was decoded."""

    # issuerAndSerialNumber (the issuer's DER Name and the serial) or subjectKeyIdentifier.
    issuer: bytes | None
    serial_number: int | None
    key_identifier: bytes | None
    digest_algorithm: bytes  # DER AlgorithmIdentifier
    signature_algorithm: bytes  # DER AlgorithmIdentifier
    signature: bytes
    # The signed attributes re-tagged [0] -> SET OF, as received: the bytes that were signed
    # (RFC 5652 §5.4). None when there are none.
    signed_attrs: bytes | None
    content_types: tuple[str, ...]  # values of the content-type signed attribute
    message_digests: tuple[bytes, ...]  # values of the message-digest signed attribute


@dataclass(frozen=True)
class _SignedParts:
    econtent_type: str
    content: bytes | None
    certificates: tuple[bytes, ...]  # DER of the embedded X.509 certificates
    signer_count: int
    signer: _SignerParts | None  # when there is exactly one


def _read_signed_data(der: bytes) -> _SignedParts:
    if isinstance(der, bytes | bytearray):
        try:
            return _walk_signed_data(bytes(der))
        except _NotPlainDer:
            pass
    with _decoding("SignedData"):
        return _decode_signed_data(_load_signed_data(der))


def _decode_signed_data(signed_data: cms.SignedData) -> _SignedParts:
    """`_SignedParts` by asn1crypto: any BER, and errors that say what is malformed."""
    encap_content_info = signed_data["encap_content_info"]
    certificates = signed_data["certificates"]
    signer_infos = list(signed_data["signer_infos"])
    signer = None
    if len(signer_infos) == 1:
        signer_info = signer_infos[0]
        sid = signer_info["sid"]
        attributes: dict[str, list[core.Asn1Value]] = {}
        signed_attrs = None
        if not isinstance(signer_info["signed_attrs"], core.Void):
            attributes = _attribute_values(signer_info["signed_attrs"])
            signed_attrs = _signed_attrs_as_set(signer_info)
        by_issuer = sid.name == "issuer_and_serial_number"
        signer = _SignerParts(
            issuer=sid.chosen["issuer"].dump() if by_issuer else None,
            serial_number=sid.chosen["serial_number"].native if by_issuer else None,
            key_identifier=None if by_issuer else sid.chosen.native,
            digest_algorithm=signer_info["digest_algorithm"].dump(),
            signature_algorithm=signer_info["signature_algorithm"].dump(),
            signature=signer_info["signature"].native,
            signed_attrs=signed_attrs,
            content_types=tuple(value.dotted for value in attributes.get(_CONTENT_TYPE, [])),
            message_digests=tuple(value.native for value in attributes.get(_MESSAGE_DIGEST, [])),
        )
    return _SignedParts(
        econtent_type=encap_content_info["content_type"].dotted,
        content=encap_content_info["content"].native,
        # An absent OPTIONAL field is a Void; testing `.native` would decode every certificate.
        certificates=()
        if isinstance(certificates, core.Void)
        else tuple(choice.chosen.dump() for choice in certificates if choice.name == "certificate"),
        signer_count=len(signer_infos),
        signer=signer,
    )


class _NotPlainDer(Exception):
    """Not the DER the walker knows: asn1crypto decodes it instead."""


# DER identifier octets (class, constructed bit and tag number in one byte).
_INTEGER = 0x02
_OCTET_STRING = 0x04
_OBJECT_IDENTIFIER = 0x06
_SEQUENCE = 0x30
_SET = 0x31
_CONTEXT_0 = 0xA0  # [0], constructed
_CONTEXT_1 = 0xA1  # [1], constructed
_CONTEXT_0_PRIMITIVE = 0x80  # [0] IMPLICIT OCTET STRING (subjectKeyIdentifier)
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_SIGNING_TIME = "1.2.840.113549.1.9.5"


class _DerFields:
    """The elements of one DER constructed value, read in order like the fields of an ASN.1
    SEQUENCE; an element is (offset of its identifier, start of its contents, end of its
    contents). Only definite lengths in their shortest form and one-byte identifiers: DER as
    this module and OpenSSL write it. Anything else raises _NotPlainDer."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data = data
        self._offset = start
        self._end = end

    def at(self, tag: int) -> bool:
        """Whether the next element has identifier `tag` (an OPTIONAL field is present)."""
        return self._offset < self._end and self.data[self._offset] == tag

    def take(self, tag: int) -> tuple[int, int, int]:
        """The next element, which must have identifier `tag`."""
        if not self.at(tag):
            raise _NotPlainDer
        offset = self._offset
        start, self._offset = _der_contents(self.data, offset, self._end)
        return offset, start, self._offset

    def optional(self, tag: int) -> tuple[int, int, int] | None:
        """The next element if it has identifier `tag` (an OPTIONAL field), else None."""
        return self.take(tag) if self.at(tag) else None

    def rest(self, tag: int) -> list[tuple[int, int, int]]:
        """All remaining elements (the items of a SET OF or SEQUENCE OF), each with `tag`."""
        elements = []
        while self._offset < self._end:
            elements.append(self.take(tag))
        return elements

    def inside(self, tag: int) -> "_DerFields":
        """The fields of the next element, which must have identifier `tag`."""
        _, start, end = self.take(tag)
        return _DerFields(self.data, start, end)

    def value(self, tag: int) -> bytes:
        """The contents of the next element, which must have identifier `tag`."""
        _, start, end = self.take(tag)
        return self.data[start:end]

    def encoding(self, tag: int) -> bytes:
        """The whole encoding (identifier, length, contents) of the next element."""
        offset, _, end = self.take(tag)
        return self.data[offset:end]

    def done(self) -> None:
        """There must be nothing left (no unknown fields, no trailing bytes)."""
        if self._offset != self._end:
            raise _NotPlainDer


def _der_contents(data: bytes, offset: int, end: int) -> tuple[int, int]:
    """(start, end) of the contents of the element at `offset`, which must end by `end`."""
    if end - offset < 2 or data[offset] & 0x1F == 0x1F:  # too short, or a multi-byte tag
        raise _NotPlainDer
    length, start = data[offset + 1], offset + 2
    if length & 0x80:
        size = length & 0x7F
        # Size 0 is BER's indefinite length; DER uses as few length octets as possible.
        if not 1 <= size <= 4 or end - start < size or data[start] == 0:
            raise _NotPlainDer
        length = int.from_bytes(data[start : start + size], "big")
        start += size
        if length < 0x80:
            raise _NotPlainDer
    if end - start < length:
        raise _NotPlainDer
    return start, start + length


def _walk_signed_data(der: bytes) -> _SignedParts:
    """`_SignedParts` of a DER ContentInfo holding SignedData (RFC 5652 §3, §5)."""
    outer = _DerFields(der, 0, len(der))
    content_info = outer.inside(_SEQUENCE)
    outer.done()  # nothing may follow the ContentInfo
    if _oid(content_info.encoding(_OBJECT_IDENTIFIER)) != ID_SIGNED_DATA:
        raise _NotPlainDer  # asn1crypto names the wrong content type
    explicit = content_info.inside(_CONTEXT_0)
    content_info.done()
    signed_data = explicit.inside(_SEQUENCE)
    explicit.done()
    signed_data.take(_INTEGER)  # version
    signed_data.take(_SET)  # digestAlgorithms
    encap_content_info = signed_data.inside(_SEQUENCE)
    econtent_type = _oid(encap_content_info.encoding(_OBJECT_IDENTIFIER))
    content = None
    if encap_content_info.at(_CONTEXT_0):
        econtent = encap_content_info.inside(_CONTEXT_0)
        content = econtent.value(_OCTET_STRING)  # BER may split it in pieces: not here
        econtent.done()
    encap_content_info.done()
    certificates: tuple[bytes, ...] = ()
    if signed_data.at(_CONTEXT_0):
        choices = signed_data.inside(_CONTEXT_0)
        # Only plain X.509 certificates (the other CertificateChoices are tagged [1]..[4]).
        certificates = tuple(der[offset:end] for offset, _, end in choices.rest(_SEQUENCE))
    signed_data.optional(_CONTEXT_1)  # crls: not used
    signer_infos = signed_data.inside(_SET).rest(_SEQUENCE)
    signed_data.done()
    signer = None
    if len(signer_infos) == 1:
        _, start, end = signer_infos[0]
        signer = _walk_signer_info(_DerFields(der, start, end))
    return _SignedParts(econtent_type, content, certificates, len(signer_infos), signer)


def _walk_signer_info(fields: _DerFields) -> _SignerParts:
    """RFC 5652 §5.3."""
    data = fields.data
    fields.take(_INTEGER)  # version
    issuer: bytes | None = None
    serial_number: int | None = None
    key_identifier: bytes | None = None
    if fields.at(_SEQUENCE):
        issuer_and_serial = fields.inside(_SEQUENCE)
        issuer = issuer_and_serial.encoding(_SEQUENCE)
        serial = issuer_and_serial.value(_INTEGER)
        issuer_and_serial.done()
        if not serial:
            raise _NotPlainDer
        serial_number = int.from_bytes(serial, "big", signed=True)
    else:
        key_identifier = fields.value(_CONTEXT_0_PRIMITIVE)
    digest_algorithm = fields.encoding(_SEQUENCE)
    signed_attrs = None
    content_types: list[str] = []
    message_digests: list[bytes] = []
    attributes = fields.optional(_CONTEXT_0)
    if attributes is not None:
        offset, start, end = attributes
        signed_attrs = b"\x31" + data[offset + 1 : end]
        for _, attribute_start, attribute_end in _DerFields(data, start, end).rest(_SEQUENCE):
            attribute = _DerFields(data, attribute_start, attribute_end)
            attribute_type = _oid(attribute.encoding(_OBJECT_IDENTIFIER))
            values = attribute.inside(_SET)
            attribute.done()
            if attribute_type == _CONTENT_TYPE:
                content_types.extend(
                    _oid(data[value_offset:value_end])
                    for value_offset, _, value_end in values.rest(_OBJECT_IDENTIFIER)
                )
            elif attribute_type == _MESSAGE_DIGEST:
                message_digests.extend(
                    data[value_start:value_end]
                    for _, value_start, value_end in values.rest(_OCTET_STRING)
                )
    signature_algorithm = fields.encoding(_SEQUENCE)
    signature = fields.value(_OCTET_STRING)
    fields.optional(_CONTEXT_1)  # unsignedAttrs: not used
    fields.done()
    return _SignerParts(
        issuer=issuer,
        serial_number=serial_number,
        key_identifier=key_identifier,
        digest_algorithm=digest_algorithm,
        signature_algorithm=signature_algorithm,
        signature=signature,
        signed_attrs=signed_attrs,
        content_types=tuple(content_types),
        message_digests=tuple(message_digests),
    )


@functools.lru_cache(maxsize=64)
def _oid(encoding: bytes) -> str:
    """The dotted form of a DER OBJECT IDENTIFIER (memoised: a CMS uses few distinct ones)."""
    try:
        return core.ObjectIdentifier.load(encoding, strict=True).dotted
    except ValueError:
        raise _NotPlainDer from None


@functools.lru_cache(maxsize=32)
def _digest_algorithm_name(encoding: bytes) -> str:
    """asn1crypto's name for a DER DigestAlgorithm ("sha256"; the dotted OID if unknown)."""
    name: str = algos.DigestAlgorithm.load(encoding, strict=True)["algorithm"].native
    return name


@functools.lru_cache(maxsize=32)
def _signature_scheme(encoding: bytes) -> tuple[str, str | None]:
    """(signature algorithm, hash or None) of a DER SignatureAlgorithmIdentifier: ("ecdsa",
    "sha256") for ecdsa-with-SHA256, ("rsassa_pkcs1v15", None) for rsaEncryption."""
    algorithm = algos.SignedDigestAlgorithm.load(encoding, strict=True)
    return algorithm.signature_algo, _algorithm_hash(algorithm)


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
        certs.load_der_certificate(choice.chosen.dump())
        for choice in choices
        if choice.name == "certificate"
    ]


def _find_signer(
    sid: _SignerParts,
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


def _identifies(sid: _SignerParts, cert: x509.Certificate) -> bool:
    if sid.issuer is not None:
        if cert.serial_number != sid.serial_number:
            return False
        # Identical DER is the common case and far cheaper than asn1crypto's RFC 5280 name
        # comparison, which stays as the fallback.
        return _issuer_der(cert) == sid.issuer or _to_asn1(cert).issuer == asn1_x509.Name.load(
            sid.issuer
        )
    try:
        identifier = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False
    return identifier.digest == sid.key_identifier


@functools.lru_cache(maxsize=certs.MEMO_SIZE)
def _issuer_der(cert: x509.Certificate) -> bytes:
    return cert.issuer.public_bytes()


def _describe_sid(sid: _SignerParts) -> str:
    if sid.issuer is not None:
        issuer = asn1_x509.Name.load(sid.issuer).human_friendly
        return f"issuer {issuer}, serial {sid.serial_number:x}"
    return f"subject key identifier {(sid.key_identifier or b'').hex(':')}"


def _attribute_values(signed_attrs: cms.CMSAttributes) -> dict[str, list[core.Asn1Value]]:
    values: dict[str, list[core.Asn1Value]] = {}
    for attribute in signed_attrs:
        values.setdefault(attribute["type"].dotted, []).extend(attribute["values"])
    return values


def _check_signed_attributes(
    signer_info: _SignerParts, econtent_type: str, content_digest: bytes
) -> None:
    content_types = signer_info.content_types
    digests = signer_info.message_digests
    if len(content_types) != 1 or len(digests) != 1:
        raise SignatureError(
            "signed attributes need exactly one content-type and one message-digest value"
        )
    if content_types[0] != econtent_type:
        raise SignatureError(
            f"signed content-type {_type_name(content_types[0])} does not match eContentType "
            f"{_type_name(econtent_type)}"
        )
    if not hmac.compare_digest(digests[0], content_digest):
        raise SignatureError("message-digest does not match the content (content was altered)")


def _verify_signature(
    signer: x509.Certificate,
    signer_info: _SignerParts,
    digest: hashes.HashAlgorithm,
    signed_bytes: bytes,
) -> None:
    with _decoding("signature algorithm"):
        algorithm, algorithm_hash = _signature_scheme(signer_info.signature_algorithm)
    if algorithm_hash is not None and algorithm_hash != digest.name:
        raise SignatureError(
            f"signature algorithm hash {algorithm_hash} differs from digest {digest.name}"
        )
    try:
        public_key = _public_key(signer)
    except (UnsupportedAlgorithm, ValueError) as error:
        raise SignatureError(f"unusable public key in {certs.describe(signer)}: {error}") from None
    signature = signer_info.signature
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


@functools.lru_cache(maxsize=certs.MEMO_SIZE)
def _public_key(cert: x509.Certificate) -> CertificatePublicKeyTypes:
    return cert.public_key()


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

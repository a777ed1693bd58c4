"""RFC 9646: a certificate signing request (CSR) conveyed in `get-bootstrapping-data`.

The values of modules ietf-sztp-csr@2024-10-10 and ietf-ztp-types@2024-10-10 that `restconf`
puts on the wire: what a device can generate (`CsrSupport`, in its request), what the server
asks for (`CsrRequest`, the `csr-request` structure in the error-info of its 400
missing-attribute answer) and the CSR the device then sends (`Csr`). Then the PKCS#10 (RFC 2986)
work of both sides: the server's CertificationRequestInfo for the device to sign
(`build_cert_req_info`), the device's signature over it (`sign_cert_req_info`), and the server's
checks of what comes back (`check_p10_csr`).

Key algorithms travel as DER AlgorithmIdentifiers; `KEY_ALGORITHMS` names the ones this kit
makes and checks. Format identities are in their JSON form, `ietf-ztp-types:p10-csr`.

Pure: no I/O. asn1crypto does the ASN.1, cryptography the keys and signatures. Checks raise
ValidationError whose field is the path of the node at fault, as `restconf` names them.
"""

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from ..errors import PkiError, ValidationError

CSR_MODULE = "ietf-sztp-csr"
CSR_NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-sztp-csr"
ZTP_TYPES_MODULE = "ietf-ztp-types"
ZTP_TYPES_NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-ztp-types"

# The identities derived from ietf-ztp-types:certificate-request-format.
P10_CSR = f"{ZTP_TYPES_MODULE}:p10-csr"
CMP_CSR = f"{ZTP_TYPES_MODULE}:cmp-csr"
CMC_CSR = f"{ZTP_TYPES_MODULE}:cmc-csr"
# In the order of the `csr-type` choice, whose leaves are named like the identities.
FORMATS: tuple[str, ...] = (P10_CSR, CMC_CSR, CMP_CSR)

# A PKCS#10 request is a name, a key and a few extensions: a few KiB even with an RSA-4096 key.
MAX_CSR_SIZE = 64 * 1024

_INPUT_PATH = "ietf-sztp-bootstrap-server:input"
CSR_SUPPORT_PATH = f"{_INPUT_PATH}/{CSR_MODULE}:csr-support"
# The structure's own path; `restconf` puts the error it sits in before it.
CSR_REQUEST_PATH = f"{CSR_MODULE}:csr-request"
_CERT_REQ_INFO_PATH = f"{CSR_REQUEST_PATH}/cert-req-info"

_ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_ID_ED25519 = "1.3.101.112"
_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
# RFC 5480 named curves, by this kit's name and by cryptography's.
_CURVES = {
    "ec-p256": ("1.2.840.10045.3.1.7", "secp256r1"),
    "ec-p384": ("1.3.132.0.34", "secp384r1"),
    "ec-p521": ("1.3.132.0.35", "secp521r1"),
}
_NAME_OF_CURVE = {curve: name for name, (_, curve) in _CURVES.items()}

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


# --------------------------------------------------------------------------- ASN.1


class _AlgorithmIdentifier(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class _SubjectPublicKeyInfo(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("algorithm", _AlgorithmIdentifier),
        ("subject_public_key", core.OctetBitString),
    ]


class _Extension(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("extn_id", core.ObjectIdentifier),
        ("critical", core.Boolean, {"default": False}),
        ("extn_value", core.OctetString),
    ]


class _Extensions(core.SequenceOf):
    _child_spec = _Extension


class _AttributeValues(core.SetOf):
    _child_spec = core.Any


class _Attribute(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("type", core.ObjectIdentifier),
        ("values", _AttributeValues),
    ]


class _Attributes(core.SetOf):
    _child_spec = _Attribute


class _CertificationRequestInfo(core.Sequence):
    # Attribute values stay undecoded (Any): they are compared and carried over as bytes.
    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("version", core.Integer),
        ("subject", asn1_x509.Name),
        ("subject_pk_info", _SubjectPublicKeyInfo),
        ("attributes", _Attributes, {"implicit": 0}),
    ]


class _CertificationRequest(core.Sequence):
    _fields = [  # noqa: RUF012 - asn1crypto's declarative schema
        ("certification_request_info", _CertificationRequestInfo),
        ("signature_algorithm", _AlgorithmIdentifier),
        ("signature", core.OctetBitString),
    ]


def _algorithm(oid: str, parameters: core.Asn1Value | None = None) -> bytes:
    fields: dict[str, object] = {"algorithm": oid}
    if parameters is not None:
        fields["parameters"] = parameters
    return bytes(_AlgorithmIdentifier(fields).dump())


# DER AlgorithmIdentifier of each key algorithm (RFC 5480, RFC 3279, RFC 8410).
KEY_ALGORITHMS: Mapping[str, bytes] = MappingProxyType(
    {
        **{
            name: _algorithm(_ID_EC_PUBLIC_KEY, core.ObjectIdentifier(oid))
            for name, (oid, _) in _CURVES.items()
        },
        "rsa": _algorithm(_RSA_ENCRYPTION, core.Null()),
        "ed25519": _algorithm(_ID_ED25519),
    }
)
_NAME_OF_ALGORITHM = {der: name for name, der in KEY_ALGORITHMS.items()}
# The signature AlgorithmIdentifier of a CSR for each kind of key: ECDSA's digest grows with
# the curve (RFC 5480 §4), RSA signs PKCS#1 v1.5 with SHA-256, Ed25519 hashes by itself.
_SIGNATURE_ALGORITHMS: Mapping[str, bytes] = MappingProxyType(
    {
        "ec-p256": _algorithm("1.2.840.10045.4.3.2"),
        "ec-p384": _algorithm("1.2.840.10045.4.3.3"),
        "ec-p521": _algorithm("1.2.840.10045.4.3.4"),
        "rsa": _algorithm("1.2.840.113549.1.1.11", core.Null()),
        "ed25519": _algorithm(_ID_ED25519),
    }
)
_DIGESTS: Mapping[str, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = MappingProxyType(
    {"ec-p256": hashes.SHA256, "ec-p384": hashes.SHA384, "ec-p521": hashes.SHA512}
)

_Asn1T = TypeVar("_Asn1T", bound=core.Asn1Value)


def _load_der(spec: type[_Asn1T], der: bytes, path: str, what: str) -> _Asn1T:
    """`der` decoded as `spec`, every field read: refused unless it is exactly DER."""
    if not isinstance(der, bytes):
        raise ValidationError(path, f"must be bytes, not {type(der).__name__}")
    try:
        value = spec.load(der, strict=True)
        value.native  # noqa: B018 - asn1crypto decodes lazily: reach every field now
        # Encoding again from the decoded values gives DER; anything else (BER lengths,
        # unsorted sets, non-minimal integers) comes out different.
        canonical = value.dump(force=True) == der
    # asn1crypto reports some malformed input with AttributeError (an unexpected universal
    # type where it wants a value), not only ValueError.
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError) as error:
        raise ValidationError(path, f"not a DER {what}: {str(error).splitlines()[0]}") from None
    if not canonical:
        raise ValidationError(path, f"not a DER {what}: not in distinguished encoding")
    return value


def _check_algorithm_identifier(der: bytes, path: str) -> _AlgorithmIdentifier:
    return _load_der(_AlgorithmIdentifier, der, path, "AlgorithmIdentifier")


def _load_request_info(der: bytes, path: str) -> _CertificationRequestInfo:
    info = _load_der(_CertificationRequestInfo, der, path, "CertificationRequestInfo")
    if info["version"].native != 0:
        raise ValidationError(path, f"version must be 0 (v1), not {info['version'].native}")
    return info


# --------------------------------------------------------------------------- wire values


def csr_path(format: str) -> str:
    """The path of the input leaf that carries a CSR of `format` (the identity's name)."""
    return f"{_INPUT_PATH}/{CSR_MODULE}:{format.rpartition(':')[2]}"


def _check_format(value: str, path: str) -> None:
    if value not in FORMATS:
        raise ValidationError(
            path,
            f"unknown certificate request format {value!r}; expected one of {', '.join(FORMATS)}",
        )


def _require_some(values: tuple[object, ...], path: str) -> None:
    if not values:
        raise ValidationError(path, "needs at least one value (min-elements 1)")


@dataclass(frozen=True)
class CsrSupport:
    """RFC 9646 `csr-support`: the CSRs a device can generate.

    `key_algorithms` are DER AlgorithmIdentifiers of the keys it can generate; None when it
    cannot generate a key (no `key-generation` node): a CSR is then for its IDevID's key.
    `formats` are the request formats it can produce, e.g. `P10_CSR`.
    """

    key_algorithms: tuple[bytes, ...] | None
    formats: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.key_algorithms is not None:
            path = f"{CSR_SUPPORT_PATH}/key-generation/supported-algorithms/algorithm-identifier"
            _require_some(self.key_algorithms, path)
            for index, der in enumerate(self.key_algorithms, start=1):
                _check_algorithm_identifier(der, f"{path}[{index}]")
        path = f"{CSR_SUPPORT_PATH}/csr-generation/supported-formats/format-identifier"
        _require_some(self.formats, path)
        for index, value in enumerate(self.formats, start=1):
            _check_format(value, f"{path}[{index}]")


@dataclass(frozen=True)
class CsrRequest:
    """RFC 9646 `csr-request`: the CSR a server asks a device for.

    `key_algorithm`: DER AlgorithmIdentifier of the key to generate (one the device said it
    supports); None: no new key, the CSR is for the IDevID's key. `format`: the request format.
    `cert_req_info`: a DER CertificationRequestInfo for the device to sign as it is, but for
    its key; None: the device fills in its IDevID's subject.
    """

    key_algorithm: bytes | None
    format: str
    cert_req_info: bytes | None = None

    def __post_init__(self) -> None:
        if self.key_algorithm is not None:
            _check_algorithm_identifier(
                self.key_algorithm,
                f"{CSR_REQUEST_PATH}/key-generation/selected-algorithm/algorithm-identifier",
            )
        _check_format(
            self.format, f"{CSR_REQUEST_PATH}/csr-generation/selected-format/format-identifier"
        )
        if self.cert_req_info is not None:
            _load_request_info(self.cert_req_info, _CERT_REQ_INFO_PATH)


@dataclass(frozen=True)
class Csr:
    """A CSR as a device conveys it: `der` in `format` (a PKCS#10 CertificationRequest for
    `P10_CSR`, a CMP PKIMessage, a CMC Full PKI Request), not checked here."""

    format: str
    der: bytes

    def __post_init__(self) -> None:
        _check_format(self.format, csr_path(self.format))


# --------------------------------------------------------------------------- key algorithms


def key_algorithm_name(der: bytes) -> str | None:
    """The `KEY_ALGORITHMS` name of a DER AlgorithmIdentifier; None for any other."""
    return _NAME_OF_ALGORITHM.get(bytes(der))


def key_algorithm_of(public_key: PublicKeyTypes) -> str:
    """The `KEY_ALGORITHMS` name of a public key (RSA of any size is "rsa"); PkiError for
    other kinds of key and other curves."""
    name = None
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        name = _NAME_OF_CURVE.get(public_key.curve.name)
    elif isinstance(public_key, rsa.RSAPublicKey):
        name = "rsa"
    elif isinstance(public_key, ed25519.Ed25519PublicKey):
        name = "ed25519"
    if name is None:
        curve = getattr(getattr(public_key, "curve", None), "name", None)
        kind = type(public_key).__name__ + (f" ({curve})" if curve else "")
        raise PkiError(f"unsupported key {kind}; expected one of {', '.join(KEY_ALGORITHMS)}")
    return name


def signature_hash_of(public_key: PublicKeyTypes) -> hashes.HashAlgorithm | None:
    """The digest a CSR for this key is signed with: SHA-256 (P-256, RSA with PKCS#1 v1.5
    padding), SHA-384 (P-384), SHA-512 (P-521); None for Ed25519, which hashes by itself."""
    name = key_algorithm_of(public_key)
    if name == "ed25519":
        return None
    return _DIGESTS.get(name, hashes.SHA256)()


# --------------------------------------------------------------------------- PKCS#10


def build_cert_req_info(
    subject: x509.Name,
    key_algorithm: bytes,
    extensions: Sequence[x509.Extension[x509.ExtensionType]] = (),
) -> bytes:
    """A DER CertificationRequestInfo for a `csr-request`: version 0, `subject`, a
    SubjectPublicKeyInfo of `key_algorithm` whose key (an empty BIT STRING) the device
    replaces with its own, and an extensionRequest attribute with `extensions` if any."""
    algorithm = _check_algorithm_identifier(key_algorithm, "key_algorithm")
    attributes = []
    if extensions:
        if len({extension.oid for extension in extensions}) != len(extensions):
            raise ValidationError("extensions", "an extension appears more than once")
        try:
            requested = _Extensions(
                [
                    _Extension(
                        {
                            "extn_id": extension.oid.dotted_string,
                            "critical": extension.critical,
                            "extn_value": extension.value.public_bytes(),
                        }
                    )
                    for extension in extensions
                ]
            )
        except (NotImplementedError, ValueError) as error:
            raise ValidationError("extensions", f"cannot be encoded: {error}") from None
        attributes.append(
            _Attribute({"type": _EXTENSION_REQUEST, "values": [core.Any.load(requested.dump())]})
        )
    info = _CertificationRequestInfo(
        {
            "version": 0,
            "subject": asn1_x509.Name.load(subject.public_bytes()),
            "subject_pk_info": _SubjectPublicKeyInfo(
                {"algorithm": algorithm, "subject_public_key": b""}
            ),
            "attributes": attributes,
        }
    )
    return bytes(info.dump())


def request_info_for_key(
    cert_req_info: bytes | None, subject_fallback: x509.Name, public_key: PublicKeyTypes
) -> bytes:
    """The DER CertificationRequestInfo a device signs: `cert_req_info` with `public_key`
    in it, its subject and attributes unchanged to the byte; without one, `subject_fallback`
    and no attributes. For a key that signs elsewhere (a TPM): sign these bytes with
    `signature_hash_of(public_key)`, then `assemble_p10`."""
    spki = _SubjectPublicKeyInfo.load(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    name = key_algorithm_of(public_key)
    if cert_req_info is None:
        info = _CertificationRequestInfo(
            {
                "version": 0,
                "subject": asn1_x509.Name.load(subject_fallback.public_bytes()),
                "subject_pk_info": spki,
                "attributes": [],
            }
        )
        return bytes(info.dump())
    info = _load_request_info(cert_req_info, _CERT_REQ_INFO_PATH)
    wanted = info["subject_pk_info"]["algorithm"].dump()
    if wanted != KEY_ALGORITHMS[name]:
        raise ValidationError(
            _CERT_REQ_INFO_PATH,
            f"asks for a {key_algorithm_name(wanted) or 'unknown'} key, not the device's {name}",
        )
    # Only the key changes: the subject and attributes are re-used as decoded, so as received.
    info["subject_pk_info"] = spki
    return bytes(info.dump())


def assemble_p10(request_info: bytes, public_key: PublicKeyTypes, signature: bytes) -> bytes:
    """The DER PKCS#10 CertificationRequest of `request_info` (from `request_info_for_key`)
    and the `signature` over it by the private key of `public_key`."""
    algorithm = _SIGNATURE_ALGORITHMS[key_algorithm_of(public_key)]
    request = _CertificationRequest(
        {
            "certification_request_info": _CertificationRequestInfo.load(request_info),
            "signature_algorithm": _AlgorithmIdentifier.load(algorithm),
            "signature": signature,
        }
    )
    return bytes(request.dump())


def sign_cert_req_info(
    cert_req_info: bytes | None, subject_fallback: x509.Name, private_key: SigningKey
) -> bytes:
    """The device's PKCS#10 CertificationRequest (DER) for a `csr-request`: `cert_req_info`
    (or, when the server sent none, `subject_fallback`, e.g. the IDevID's subject) with the
    key of `private_key`, signed by it. ValidationError when `cert_req_info` is malformed or
    asks for another kind of key."""
    public_key = private_key.public_key()
    info = request_info_for_key(cert_req_info, subject_fallback, public_key)
    name = key_algorithm_of(public_key)
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature = private_key.sign(info, ec.ECDSA(_DIGESTS[name]()))
    elif isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(info, padding.PKCS1v15(), hashes.SHA256())
    else:
        signature = private_key.sign(info)
    return assemble_p10(info, public_key, signature)


def check_p10_csr(
    der: bytes,
    *,
    serial: str,
    allowed_algorithms: Collection[str],
    cert_req_info: bytes | None,
) -> x509.CertificateSigningRequest:
    """A device's `p10-csr`, checked: DER PKCS#10 without trailing bytes, at most
    `MAX_CSR_SIZE` octets; its signature verifies (proof of possession of the key); the key is
    of one of `allowed_algorithms` (`KEY_ALGORITHMS` names); the subject's serialNumber (or,
    without one, its CN) is `serial`; and when the server sent `cert_req_info`, the subject,
    attributes and key algorithm are the ones it asked for. ValidationError otherwise."""
    path = csr_path(P10_CSR)
    if len(der) > MAX_CSR_SIZE:
        raise ValidationError(path, f"larger than {MAX_CSR_SIZE} octets")
    # Strict DER by asn1crypto too: cryptography takes a signature BIT STRING with unused bits
    # (the same signature, another encoding), which DER and RFC 5480 leave no room for.
    request = _load_der(_CertificationRequest, der, path, "PKCS#10 CertificationRequest")
    try:
        csr = x509.load_der_x509_csr(der)
        # cryptography decodes these fields lazily: a malformed one fails here, not later.
        subject = csr.subject
        public_key = csr.public_key()
        _ = csr.attributes
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as error:
        raise ValidationError(path, f"not a DER PKCS#10 CertificationRequest: {error}") from None
    try:
        name = key_algorithm_of(public_key)
    except PkiError as error:
        raise ValidationError(path, str(error)) from None
    try:
        signed = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as error:
        raise ValidationError(path, f"signature cannot be checked: {error}") from None
    if not signed:
        raise ValidationError(path, "signature does not verify: no proof of possession of the key")
    if name not in allowed_algorithms:
        allowed = ", ".join(sorted(allowed_algorithms)) or "none"
        raise ValidationError(path, f"key algorithm {name} is not allowed here ({allowed})")
    _check_subject_serial(subject, serial, path)
    if cert_req_info is not None:
        asked = _load_request_info(cert_req_info, "cert_req_info")
        _check_as_asked(request["certification_request_info"], asked, path)
    return csr


def _check_subject_serial(subject: x509.Name, serial: str, path: str) -> None:
    attribute, oid = "serialNumber", NameOID.SERIAL_NUMBER
    if not subject.get_attributes_for_oid(oid):
        attribute, oid = "CN", NameOID.COMMON_NAME
    values = sorted({str(each.value) for each in subject.get_attributes_for_oid(oid)})
    if not values:
        raise ValidationError(path, f"subject has no serialNumber nor CN; expected {serial!r}")
    if values != [serial]:
        shown = ", ".join(repr(value) for value in values)
        raise ValidationError(path, f"subject {attribute} {shown} is not the serial {serial!r}")


def _check_as_asked(
    signed: _CertificationRequestInfo, asked: _CertificationRequestInfo, path: str
) -> None:
    # Bytes, not values: the device was to sign exactly what it was sent.
    if signed["subject"].dump() != asked["subject"].dump():
        raise ValidationError(path, "its subject is not the one of the cert-req-info sent")
    if signed["attributes"].dump() != asked["attributes"].dump():
        raise ValidationError(path, "its attributes are not those of the cert-req-info sent")
    key = signed["subject_pk_info"]["algorithm"].dump()
    wanted = asked["subject_pk_info"]["algorithm"].dump()
    if key != wanted:
        raise ValidationError(
            path,
            f"key algorithm {key_algorithm_name(key)} is not the cert-req-info's "
            f"{key_algorithm_name(wanted) or 'unknown'}",
        )

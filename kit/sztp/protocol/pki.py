"""Key and certificate generation for lab and test PKIs (pure: returns objects, writes nothing).

A lab needs four kinds of certificate: CA certificates, device IDevIDs (subject `serialNumber`
= device serial, used as TLS client certificate), signing certificates (MASA voucher signer,
owner certificate for conveyed information) and bootstrap-server TLS certificates.
"""

import datetime as dt
import functools
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeVar, get_args

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sztp.errors import PkiError, ValidationError
from sztp.protocol import der

KeyType = Literal["ec-p256", "ec-p384", "rsa-2048", "rsa-3072"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

KEY_TYPES: tuple[str, ...] = get_args(KeyType)
DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 825

# Tolerate devices whose clock is a little behind the machine that issued the certificate.
_CLOCK_SKEW = dt.timedelta(minutes=5)
# X.520 upper bounds (RFC 5280 appendix A.1).
_MAX_COMMON_NAME = 64
_MAX_SERIAL_NUMBER = 64
# serialNumber is a PrintableString (X.520): letters, digits, space and '()+,-./:=?.
_PRINTABLE_STRING = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


@dataclass(frozen=True)
class Credential:
    """A certificate, its private key and its issuers (issuer first, root last)."""

    certificate: x509.Certificate
    private_key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if self.certificate.public_key() != self.private_key.public_key():
            subject = self.certificate.subject.rfc4514_string()
            raise PkiError(f"private key does not match certificate {subject}")

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The certificate followed by its chain, as sent to a peer."""
        return (self.certificate, *self.chain)


class Signer(Protocol):
    """A private key held elsewhere (a PKCS#11 token): it signs, it is never read.

    `sign` hashes `data` with `hash` and signs as a cryptography private key of the same type
    does: ECDSA signatures DER-encoded, RSA ones PKCS#1 v1.5.
    """

    def public_key(self) -> PublicKey: ...

    def sign(self, data: bytes, hash: hashes.HashAlgorithm) -> bytes: ...


@dataclass(frozen=True)
class SignerCredential:
    """A certificate whose private key is a `Signer`, and its issuers (issuer first, root
    last): what signs where a `Credential` would, without the key ever being in memory."""

    certificate: x509.Certificate
    signer: Signer = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if self.certificate.public_key() != self.signer.public_key():
            subject = self.certificate.subject.rfc4514_string()
            raise PkiError(f"the signer's key does not match certificate {subject}")

    @property
    def certificates(self) -> tuple[x509.Certificate, ...]:
        """The certificate followed by its chain, as sent to a peer."""
        return (self.certificate, *self.chain)


def generate_key(key_type: KeyType = "ec-p256") -> PrivateKey:
    """Generate a fresh private key of the given type."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValidationError("key_type", f"unknown key type {key_type!r}, expected one of {KEY_TYPES}")


def signature_hash(key: PrivateKey | Signer) -> hashes.SHA256 | hashes.SHA384:
    """The digest that matches the key's strength (SHA-384 for P-384, else SHA-256)."""
    # A key in memory knows its curve; a signer tells it through its public key.
    known = (
        key if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key.public_key()
    )
    if isinstance(known, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) and (
        known.curve.key_size >= 384
    ):
        return hashes.SHA384()
    return hashes.SHA256()


def sign_certificate(
    builder: x509.CertificateBuilder, issuer: Credential | SignerCredential
) -> x509.Certificate:
    """`builder`'s certificate signed by `issuer`, whose key may be held elsewhere."""
    return _signed(
        builder, issuer, lambda made: made.tbs_certificate_bytes, x509.load_der_x509_certificate
    )


def sign_crl(
    builder: x509.CertificateRevocationListBuilder, issuer: Credential | SignerCredential
) -> x509.CertificateRevocationList:
    """`builder`'s CRL signed by `issuer`, whose key may be held elsewhere."""
    return _signed(builder, issuer, lambda made: made.tbs_certlist_bytes, x509.load_der_x509_crl)


class _Signed(Protocol):
    def public_bytes(self, encoding: serialization.Encoding) -> bytes: ...


_SignedT = TypeVar("_SignedT", bound=_Signed)
_BuiltT = TypeVar("_BuiltT", bound=_Signed, covariant=True)


class _Builder(Protocol[_BuiltT]):
    def sign(
        self, private_key: PrivateKey, algorithm: hashes.SHA256 | hashes.SHA384
    ) -> _BuiltT: ...


def _signed(
    builder: _Builder[_SignedT],
    issuer: Credential | SignerCredential,
    to_be_signed: Callable[[_SignedT], bytes],
    load: Callable[[bytes], _SignedT],
) -> _SignedT:
    if isinstance(issuer, Credential):
        return builder.sign(issuer.private_key, signature_hash(issuer.private_key))
    # cryptography signs only with keys it holds: a stand-in key of the same type writes the
    # to-be-signed part (whose signature algorithm names only the key type and the hash),
    # which the signer then signs.
    signer = issuer.signer
    stand_in = builder.sign(_stand_in_key(signer.public_key()), signature_hash(signer))
    der_signed = stand_in.public_bytes(serialization.Encoding.DER)
    return load(_signed_again(der_signed, to_be_signed(stand_in), signer))


def _stand_in_key(public_key: PublicKey) -> PrivateKey:
    """A key of `public_key`'s type, made once a type, that signs nothing anybody keeps."""
    return _made_once("rsa-2048" if isinstance(public_key, rsa.RSAPublicKey) else "ec-p256")


@functools.cache
def _made_once(key_type: KeyType) -> PrivateKey:
    return generate_key(key_type)


def _signed_again(stand_in: bytes, to_be_signed: bytes, signer: Signer) -> bytes:
    """The DER of a signed X.509 object (RFC 5280: a SEQUENCE of the to-be-signed part, the
    signature algorithm and the signature as a BIT STRING), signed by `signer` instead of the
    stand-in key."""
    algorithm_start = der.element_bounds(stand_in, 0)[0] + len(to_be_signed)
    algorithm = stand_in[algorithm_start : der.element_bounds(stand_in, algorithm_start)[1]]
    signature = signer.sign(to_be_signed, signature_hash(signer))
    return der.tlv(
        der.SEQUENCE, to_be_signed + algorithm + der.tlv(der.BIT_STRING, b"\0" + signature)
    )


def create_root_ca(
    common_name: str,
    *,
    key_type: KeyType = "ec-p256",
    days: int = DEFAULT_CA_DAYS,
    now: dt.datetime | None = None,
) -> Credential:
    """A self-signed root CA (basicConstraints cA, keyCertSign + cRLSign)."""
    key = generate_key(key_type)
    subject = _name(common_name=common_name)
    builder = _builder(subject, key.public_key(), days=days, now=now, issuer=None)
    builder = _add_ca_extensions(builder, path_length=None)
    certificate = builder.sign(key, signature_hash(key))
    return Credential(certificate, key, ())


def issue_intermediate_ca(
    issuer: Credential,
    common_name: str,
    *,
    key_type: KeyType = "ec-p256",
    days: int = DEFAULT_CA_DAYS,
    path_length: int | None = 0,
    now: dt.datetime | None = None,
) -> Credential:
    """A CA certificate issued by `issuer`; `path_length` 0 means it may only issue leaves."""
    if path_length is not None and path_length < 0:
        raise ValidationError("path_length", f"must be >= 0, got {path_length}")
    key = generate_key(key_type)
    builder = _builder(
        _name(common_name=common_name), key.public_key(), days=days, now=now, issuer=issuer
    )
    builder = _add_ca_extensions(builder, path_length=path_length)
    return _sign_with(issuer, builder, key)


def issue_idevid(
    ca: Credential,
    serial_number: str,
    *,
    hw_model: str | None = None,
    key_type: KeyType = "ec-p256",
    days: int = DEFAULT_CA_DAYS,
    now: dt.datetime | None = None,
) -> Credential:
    """A device identity certificate: subject CN and serialNumber = serial (OU = hw_model).

    Key usage also allows keyEncipherment (RSA) or keyAgreement (EC) so that conveyed
    information can be encrypted to the device.
    """
    _check_serial(serial_number)
    key = generate_key(key_type)
    subject = _name(common_name=serial_number, serial_number=serial_number, unit=hw_model)
    builder = _builder(subject, key.public_key(), days=days, now=now, issuer=ca)
    is_rsa = isinstance(key, rsa.RSAPrivateKey)
    builder = _add_leaf_extensions(
        builder,
        _key_usage(key_encipherment=is_rsa, key_agreement=not is_rsa),
        [ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    return _sign_with(ca, builder, key)


def issue_signing_certificate(
    ca: Credential,
    common_name: str,
    *,
    key_type: KeyType = "ec-p256",
    days: int = DEFAULT_LEAF_DAYS,
    now: dt.datetime | None = None,
) -> Credential:
    """A CMS signing certificate (MASA voucher signer, owner certificate): digitalSignature only."""
    key = generate_key(key_type)
    builder = _builder(
        _name(common_name=common_name), key.public_key(), days=days, now=now, issuer=ca
    )
    builder = _add_leaf_extensions(builder, _key_usage(), None)
    return _sign_with(ca, builder, key)


def issue_server_certificate(
    ca: Credential,
    names: Sequence[str],
    *,
    key_type: KeyType = "ec-p256",
    days: int = DEFAULT_LEAF_DAYS,
    now: dt.datetime | None = None,
) -> Credential:
    """A TLS server certificate whose SANs are `names` (DNS names or IP addresses)."""
    if isinstance(names, str) or not names:
        raise ValidationError("names", "give at least one DNS name or IP address as a list")
    alt_names = [_general_name(name) for name in dict.fromkeys(names)]
    key = generate_key(key_type)
    first = names[0]
    subject = _name(common_name=first) if len(first) <= _MAX_COMMON_NAME else x509.Name([])
    builder = _builder(subject, key.public_key(), days=days, now=now, issuer=ca)
    builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    key_usage = _key_usage(key_encipherment=isinstance(key, rsa.RSAPrivateKey))
    builder = _add_leaf_extensions(builder, key_usage, [ExtendedKeyUsageOID.SERVER_AUTH])
    return _sign_with(ca, builder, key)


def serial_from_certificate(certificate: x509.Certificate, pattern: str | None = None) -> str:
    """The device serial from the subject's serialNumber attribute.

    `pattern` is a regular expression with a named group `serial` for vendors that put more
    into the attribute, e.g. `SN:(?P<serial>\\S+)` for `PID:C9300 SN:FOC123`.
    """
    subject = certificate.subject.rfc4514_string()
    values = {
        str(attribute.value)
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    }
    if not values:
        raise PkiError(f"certificate {subject} has no serialNumber attribute in its subject")
    if len(values) > 1:
        raise PkiError(f"certificate {subject} has several different serialNumber attributes")
    value = values.pop()
    if pattern is None:
        return value
    try:
        regex = re.compile(pattern)
    except re.error as error:
        raise ValidationError("pattern", f"invalid regular expression: {error}") from None
    if "serial" not in regex.groupindex:
        raise ValidationError("pattern", "needs a named group (?P<serial>...)")
    match = regex.search(value)
    if match is None or not match.group("serial"):
        raise PkiError(f"serialNumber {value!r} of {subject} does not match pattern {pattern!r}")
    return match.group("serial")


def certificate_to_pem(certificate: x509.Certificate) -> bytes:
    """PEM encoding of one certificate."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def private_key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM encoding of a private key (protect the file that holds it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_certificates_pem(data: bytes) -> list[x509.Certificate]:
    """All certificates of a PEM bundle (at least one)."""
    try:
        return x509.load_pem_x509_certificates(data)
    except (ValueError, TypeError) as error:
        raise PkiError(f"not a PEM certificate bundle: {error}") from None


def load_private_key_pem(data: bytes, password: bytes | None = None) -> PrivateKey:
    """An EC or RSA private key from PEM (PKCS#8 or traditional, optionally encrypted)."""
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        # The library's messages describe the format or password problem, never key bytes.
        raise PkiError(f"cannot load PEM private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"unsupported private key type {type(key).__name__}, expected EC or RSA")
    return key


def _check_serial(serial_number: str) -> None:
    if not serial_number or not serial_number.strip():
        raise ValidationError("serial_number", "must not be empty")
    if len(serial_number) > _MAX_SERIAL_NUMBER:
        raise ValidationError("serial_number", f"longer than {_MAX_SERIAL_NUMBER} characters")
    if not _PRINTABLE_STRING.fullmatch(serial_number):
        raise ValidationError(
            "serial_number",
            f"{serial_number!r} has characters outside letters, digits and  '()+,-./:=?",
        )


def _name(
    *, common_name: str, serial_number: str | None = None, unit: str | None = None
) -> x509.Name:
    if not common_name or not common_name.strip():
        raise ValidationError("common_name", "must not be empty")
    if len(common_name) > _MAX_COMMON_NAME:
        raise ValidationError("common_name", f"longer than {_MAX_COMMON_NAME} characters")
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if unit is not None:
        if not unit.strip() or len(unit) > _MAX_COMMON_NAME:
            raise ValidationError("hw_model", f"must be 1..{_MAX_COMMON_NAME} characters")
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    if serial_number is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number))
    return x509.Name(attributes)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        pass
    labels = name.split(".")
    if labels[0] == "*":  # a wildcard is only allowed as the whole left-most label
        labels = labels[1:]
    if (
        not name.isascii()
        or len(name) > 253
        or not labels
        or not all(_DNS_LABEL.fullmatch(label) for label in labels)
    ):
        raise ValidationError(
            "names", f"{name!r} is neither an IP address nor a DNS name (use xn-- for IDNs)"
        )
    return x509.DNSName(name)


def _builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey,
    *,
    days: int,
    now: dt.datetime | None,
    issuer: Credential | None,
) -> x509.CertificateBuilder:
    if days <= 0:
        raise ValidationError("days", f"must be positive, got {days}")
    if now is None:
        now = dt.datetime.now(dt.UTC)
    elif now.tzinfo is None:
        raise ValidationError("now", "must be timezone-aware")
    not_before = now - _CLOCK_SKEW
    not_after = now + dt.timedelta(days=days)
    issuer_name = subject  # a root names itself as issuer
    if issuer is not None:
        # A certificate cannot outlive its issuer.
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
        issuer_name = issuer.certificate.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.private_key.public_key()),
            critical=False,
        )
    return builder


def _add_ca_extensions(
    builder: x509.CertificateBuilder, *, path_length: int | None
) -> x509.CertificateBuilder:
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    ).add_extension(_key_usage(digital_signature=False, cert_sign=True), critical=True)


def _add_leaf_extensions(
    builder: x509.CertificateBuilder,
    key_usage: x509.KeyUsage,
    extended_key_usage: list[x509.ObjectIdentifier] | None,
) -> x509.CertificateBuilder:
    builder = builder.add_extension(
        x509.BasicConstraints(ca=False, path_length=None), critical=True
    ).add_extension(key_usage, critical=True)
    if extended_key_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_key_usage), critical=False)
    return builder


def _key_usage(
    *,
    digital_signature: bool = True,
    key_encipherment: bool = False,
    key_agreement: bool = False,
    cert_sign: bool = False,
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _sign_with(issuer: Credential, builder: x509.CertificateBuilder, key: PrivateKey) -> Credential:
    certificate = builder.sign(issuer.private_key, signature_hash(issuer.private_key))
    return Credential(certificate, key, issuer.certificates)

"""Key and certificate generation (protocol.pki)."""

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sztp.errors import PkiError, ValidationError
from sztp.protocol import pki


def ext(certificate, extension_type):
    return certificate.extensions.get_extension_for_class(extension_type).value


@pytest.mark.parametrize(
    ("key_type", "kind", "size"),
    [
        ("ec-p256", ec.EllipticCurvePrivateKey, 256),
        ("ec-p384", ec.EllipticCurvePrivateKey, 384),
        ("rsa-2048", rsa.RSAPrivateKey, 2048),
        ("rsa-3072", rsa.RSAPrivateKey, 3072),
    ],
)
def test_generate_key_gives_the_requested_type(key_type, kind, size):
    key = pki.generate_key(key_type)
    assert isinstance(key, kind)
    assert key.key_size == size


def test_unknown_key_type_is_refused():
    with pytest.raises(ValidationError, match="unknown key type 'dsa-1024'"):
        pki.generate_key("dsa-1024")


def test_root_ca_is_a_self_signed_ca(ec_lab):
    root = ec_lab.manufacturer_ca.certificate
    assert root.subject == root.issuer
    root.verify_directly_issued_by(root)
    assert ext(root, x509.BasicConstraints).ca is True
    usage = ext(root, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert ext(root, x509.SubjectKeyIdentifier).digest
    assert ec_lab.manufacturer_ca.chain == ()


def test_validity_starts_in_the_past_and_is_timezone_aware():
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    root = pki.create_root_ca("Clock CA", days=10, now=now).certificate
    assert root.not_valid_before_utc < now
    assert now - root.not_valid_before_utc <= dt.timedelta(minutes=10)
    assert root.not_valid_after_utc == now + dt.timedelta(days=10)


def test_leaf_does_not_outlive_its_issuer():
    ca = pki.create_root_ca("Short CA", days=2)
    leaf = pki.issue_signing_certificate(ca, "Long leaf", days=400)
    assert leaf.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_idevid_carries_the_serial_and_client_auth(ec_lab):
    idevid = ec_lab.idevids[0]
    cert = idevid.certificate
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN-0001"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SN-0001"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        "lab-x1"
    )
    assert ext(cert, x509.ExtendedKeyUsage) == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    assert ext(cert, x509.KeyUsage).digital_signature
    assert ext(cert, x509.BasicConstraints).ca is False
    ca = ec_lab.manufacturer_ca.certificate
    assert (
        ext(cert, x509.AuthorityKeyIdentifier).key_identifier
        == ext(ca, x509.SubjectKeyIdentifier).digest
    )
    cert.verify_directly_issued_by(ca)
    assert idevid.chain == (ca,)
    assert idevid.certificates == (cert, ca)


@pytest.mark.parametrize(
    ("serial", "message"),
    [
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("A" * 65, "longer than 64"),
        ("SN\n1", "characters outside"),
        ("séri", "characters outside"),
    ],
)
def test_bad_serials_are_refused(ec_lab, serial, message):
    with pytest.raises(ValidationError, match=message) as raised:
        pki.issue_idevid(ec_lab.manufacturer_ca, serial)
    assert raised.value.field == "serial_number"


@pytest.mark.parametrize("days", [0, -1])
def test_non_positive_days_are_refused(days):
    with pytest.raises(ValidationError, match="days: must be positive"):
        pki.create_root_ca("CA", days=days)


def test_naive_now_is_refused():
    with pytest.raises(ValidationError, match="timezone-aware"):
        pki.create_root_ca("CA", now=dt.datetime(2030, 1, 1))


@pytest.mark.parametrize("name", ["", "x" * 65])
def test_bad_common_names_are_refused(name):
    with pytest.raises(ValidationError, match="common_name"):
        pki.create_root_ca(name)


def test_signing_certificate_allows_digital_signature_only(ec_lab):
    cert = ec_lab.owner.certificate
    usage = ext(cert, x509.KeyUsage)
    assert usage.digital_signature
    assert not (usage.key_cert_sign or usage.key_encipherment or usage.key_agreement)
    assert ext(cert, x509.BasicConstraints).ca is False
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)


def test_intermediate_ca_has_a_path_length(ec_lab):
    intermediate = pki.issue_intermediate_ca(ec_lab.owner_ca, "Sub CA", path_length=0)
    assert ext(intermediate.certificate, x509.BasicConstraints).path_length == 0
    assert intermediate.chain == (ec_lab.owner_ca.certificate,)
    with pytest.raises(ValidationError, match="path_length"):
        pki.issue_intermediate_ca(ec_lab.owner_ca, "Sub CA", path_length=-1)


@pytest.mark.parametrize(("key_type", "encipherment"), [("ec-p256", False), ("rsa-2048", True)])
def test_server_certificate_names_and_usage(ec_lab, key_type, encipherment):
    server = pki.issue_server_certificate(
        ec_lab.owner_ca,
        ["sztp.example.net", "10.1.1.3", "2001:db8::1", "*.lab.example", "sztp.example.net"],
        key_type=key_type,
    )
    cert = server.certificate
    names = ext(cert, x509.SubjectAlternativeName)
    assert names.get_values_for_type(x509.DNSName) == ["sztp.example.net", "*.lab.example"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("10.1.1.3"),
        ipaddress.ip_address("2001:db8::1"),
    ]
    assert ext(cert, x509.ExtendedKeyUsage) == x509.ExtendedKeyUsage(
        [ExtendedKeyUsageOID.SERVER_AUTH]
    )
    usage = ext(cert, x509.KeyUsage)
    assert usage.digital_signature
    assert usage.key_encipherment is encipherment
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "sztp.example.net"


@pytest.mark.parametrize(
    "names", [[], "localhost", ["bad name"], ["-x.example"], ["a..b"], ["xn--bcher-kva.ch", "ü.de"]]
)
def test_bad_server_names_are_refused(ec_lab, names):
    with pytest.raises(ValidationError, match="names"):
        pki.issue_server_certificate(ec_lab.owner_ca, names)


def test_serial_from_certificate(ec_lab):
    assert pki.serial_from_certificate(ec_lab.idevids[1].certificate) == "SN-0002"


def test_serial_pattern_extracts_vendor_formats(ec_lab):
    cisco = pki.issue_idevid(ec_lab.manufacturer_ca, "PID:C9300-24T SN:FOC1234X0AB")
    assert pki.serial_from_certificate(cisco.certificate) == "PID:C9300-24T SN:FOC1234X0AB"
    assert pki.serial_from_certificate(cisco.certificate, r"SN:(?P<serial>\S+)") == "FOC1234X0AB"
    with pytest.raises(PkiError, match="does not match pattern"):
        pki.serial_from_certificate(cisco.certificate, r"XYZ:(?P<serial>\S+)")


def test_serial_pattern_must_be_a_regex_with_a_serial_group(ec_lab):
    cert = ec_lab.idevids[0].certificate
    with pytest.raises(ValidationError, match="invalid regular expression"):
        pki.serial_from_certificate(cert, "SN:(")
    with pytest.raises(ValidationError, match=r"\(\?P<serial>"):
        pki.serial_from_certificate(cert, "SN:(.*)")


def test_certificate_without_serial_attribute_is_refused(ec_lab):
    with pytest.raises(PkiError, match="CN=Test Owner has no serialNumber"):
        pki.serial_from_certificate(ec_lab.owner.certificate)


def test_credential_repr_hides_the_private_key(rsa_lab):
    credential = rsa_lab.owner
    text = repr(credential)
    assert "private_key" not in text
    key_pem = pki.private_key_to_pem(credential.private_key).decode()
    assert key_pem.splitlines()[1] not in text
    assert "Test Owner" in text


def test_credential_refuses_a_key_that_does_not_match(ec_lab):
    with pytest.raises(PkiError, match="does not match certificate CN=Test Owner"):
        pki.Credential(ec_lab.owner.certificate, ec_lab.masa.private_key)


def test_pem_round_trip_of_certificates_and_keys(any_lab):
    bundle = b"".join(pki.certificate_to_pem(cert) for cert in any_lab.owner.certificates)
    assert pki.load_certificates_pem(bundle) == list(any_lab.owner.certificates)
    key_pem = pki.private_key_to_pem(any_lab.owner.private_key)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = pki.load_private_key_pem(key_pem)
    assert key.public_key() == any_lab.owner.private_key.public_key()


def test_encrypted_private_key_needs_the_right_password(ec_lab):
    encrypted = ec_lab.owner.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    key = pki.load_private_key_pem(encrypted, password=b"secret")
    assert key.public_key() == ec_lab.owner.private_key.public_key()
    with pytest.raises(PkiError, match="cannot load PEM private key"):
        pki.load_private_key_pem(encrypted, password=b"wrong")
    with pytest.raises(PkiError, match="cannot load PEM private key"):
        pki.load_private_key_pem(encrypted)


@pytest.mark.parametrize("data", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_garbage_pem_is_refused(data):
    with pytest.raises(PkiError, match="not a PEM certificate bundle"):
        pki.load_certificates_pem(data)
    with pytest.raises(PkiError, match="cannot load PEM private key"):
        pki.load_private_key_pem(data)


def test_unsupported_key_type_is_refused():
    ed_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(PkiError, match="unsupported private key type"):
        pki.load_private_key_pem(ed_key)

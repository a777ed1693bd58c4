"""Certificate path validation (protocol.certs)."""

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from sztp.errors import ChainError, ValidationError
from sztp.protocol import certs, pki


@pytest.fixture(scope="module")
def three_levels():
    root = pki.create_root_ca("Chain Root")
    intermediate = pki.issue_intermediate_ca(root, "Chain Intermediate", path_length=0)
    leaf = pki.issue_signing_certificate(intermediate, "Chain Leaf")
    return root, intermediate, leaf


def test_valid_path_is_returned_leaf_first(three_levels):
    root, intermediate, leaf = three_levels
    path = certs.verify_chain(
        leaf.certificate,
        intermediates=[intermediate.certificate],
        trust_anchors=[root.certificate],
    )
    assert path == [leaf.certificate, intermediate.certificate, root.certificate]


def test_path_is_found_among_unrelated_certificates(three_levels, ec_lab):
    root, intermediate, leaf = three_levels
    path = certs.verify_chain(
        leaf.certificate,
        intermediates=[ec_lab.owner.certificate, intermediate.certificate],
        trust_anchors=[ec_lab.owner_ca.certificate, root.certificate],
    )
    assert path[-1] == root.certificate


def test_leaf_that_is_a_trust_anchor_is_accepted(ec_lab):
    owner = ec_lab.owner.certificate
    assert certs.verify_chain(owner, trust_anchors=[owner]) == [owner]


def test_missing_intermediate_is_an_untrusted_issuer(three_levels):
    root, _, leaf = three_levels
    with pytest.raises(ChainError, match="CN=Chain Leaf: untrusted issuer CN=Chain Intermediate"):
        certs.verify_chain(leaf.certificate, trust_anchors=[root.certificate])


def test_other_anchor_is_refused(three_levels, ec_lab):
    _, intermediate, leaf = three_levels
    with pytest.raises(ChainError, match="CN=Chain Intermediate: untrusted issuer CN=Chain Root"):
        certs.verify_chain(
            leaf.certificate,
            intermediates=[intermediate.certificate],
            trust_anchors=[ec_lab.owner_ca.certificate],
        )


def test_anchor_with_the_same_name_but_another_key_is_refused(ec_lab):
    impostor = pki.create_root_ca("Test Owner CA")
    with pytest.raises(ChainError, match="untrusted issuer CN=Test Owner CA"):
        certs.verify_chain(ec_lab.owner.certificate, trust_anchors=[impostor.certificate])


def test_bad_signature_is_refused(ec_lab):
    der = bytearray(ec_lab.owner.certificate.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature value
    tampered = x509.load_der_x509_certificate(bytes(der))
    with pytest.raises(ChainError, match="CN=Test Owner: bad signature"):
        certs.verify_chain(tampered, trust_anchors=[ec_lab.owner_ca.certificate])


def test_expired_certificate_is_refused(ec_lab):
    later = ec_lab.owner.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(ChainError, match="CN=Test Owner: expired on"):
        certs.verify_chain(
            ec_lab.owner.certificate, trust_anchors=[ec_lab.owner_ca.certificate], at=later
        )


def test_not_yet_valid_certificate_is_refused(ec_lab):
    earlier = ec_lab.owner.certificate.not_valid_before_utc - dt.timedelta(seconds=1)
    with pytest.raises(ChainError, match="CN=Test Owner: not yet valid"):
        certs.verify_chain(
            ec_lab.owner.certificate, trust_anchors=[ec_lab.owner_ca.certificate], at=earlier
        )


def test_expired_anchor_is_refused():
    now = dt.datetime.now(dt.UTC)
    old_root = pki.create_root_ca("Old Root", days=10, now=now - dt.timedelta(days=20))
    leaf = pki.issue_signing_certificate(old_root, "Old Leaf", now=now - dt.timedelta(days=20))
    with pytest.raises(ChainError, match="expired on"):
        certs.verify_chain(leaf.certificate, trust_anchors=[old_root.certificate])


def test_issuer_that_is_not_a_ca_is_refused(ec_lab):
    # pki lets any credential issue; the validator must catch a leaf acting as a CA.
    fake = pki.issue_signing_certificate(ec_lab.owner, "Issued by a leaf")
    with pytest.raises(ChainError, match="CN=Test Owner: not a CA"):
        certs.verify_chain(
            fake.certificate,
            intermediates=[ec_lab.owner.certificate],
            trust_anchors=[ec_lab.owner_ca.certificate],
        )


def test_ca_without_key_cert_sign_is_refused():
    key = pki.generate_key()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "No CertSign CA")])
    now = dt.datetime.now(dt.UTC)
    root_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    root = pki.Credential(root_cert, key)
    leaf = pki.issue_signing_certificate(root, "Leaf")
    with pytest.raises(ChainError, match="CN=No CertSign CA: key usage does not allow keyCertSign"):
        certs.verify_chain(leaf.certificate, trust_anchors=[root_cert])


def test_path_length_constraint_is_enforced(three_levels):
    root, intermediate, _ = three_levels
    sub = pki.issue_intermediate_ca(intermediate, "Too Deep CA")
    leaf = pki.issue_signing_certificate(sub, "Too Deep Leaf")
    with pytest.raises(ChainError, match="CN=Chain Intermediate: path length constraint 0"):
        certs.verify_chain(
            leaf.certificate,
            intermediates=[intermediate.certificate, sub.certificate],
            trust_anchors=[root.certificate],
        )


def test_arguments_are_checked(ec_lab):
    with pytest.raises(ChainError, match="no trust anchors"):
        certs.verify_chain(ec_lab.owner.certificate, trust_anchors=[])
    with pytest.raises(ValidationError, match="timezone-aware"):
        certs.verify_chain(
            ec_lab.owner.certificate,
            trust_anchors=[ec_lab.owner_ca.certificate],
            at=dt.datetime(2030, 1, 1),
        )


# --- memos --------------------------------------------------------------------------------------


def test_certificates_are_memoised_on_their_exact_der(ec_lab):
    der = ec_lab.owner.certificate.public_bytes(serialization.Encoding.DER)
    assert certs.load_der_certificate(der) is certs.load_der_certificate(bytes(der))
    assert certs.load_der_certificate(der) == ec_lab.owner.certificate
    with pytest.raises(ValueError):
        certs.load_der_certificate(der[:-1])


def test_memoised_path_is_checked_again_for_validity_and_signatures(three_levels):
    root, intermediate, leaf = three_levels
    arguments = {"intermediates": [intermediate.certificate], "trust_anchors": [root.certificate]}
    path = certs.verify_chain(leaf.certificate, **arguments)
    path.clear()  # the caller's list: the memo keeps its own
    assert len(certs.verify_chain(leaf.certificate, **arguments)) == 3
    later = leaf.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(ChainError, match="CN=Chain Leaf: expired"):
        certs.verify_chain(leaf.certificate, at=later, **arguments)
    der = bytearray(leaf.certificate.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the signature value: another certificate to the memo
    with pytest.raises(ChainError, match="CN=Chain Leaf: bad signature"):
        certs.verify_chain(x509.load_der_x509_certificate(bytes(der)), **arguments)


def test_malformed_subject_is_described_not_raised(ec_lab):
    der = bytearray(ec_lab.owner.certificate.public_bytes(serialization.Encoding.DER))
    subject = der.rindex(b"Test Owner")  # the subject's UTF8String comes after the issuer's
    der[subject] = 0xFF  # not UTF-8: the subject only fails to decode when it is read
    corrupted = x509.load_der_x509_certificate(bytes(der))
    assert certs.describe(corrupted).startswith("<malformed subject, serial ")

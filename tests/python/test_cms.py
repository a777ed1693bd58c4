"""CMS encoding and verification (protocol.cms), including interoperability with OpenSSL."""

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from sztp.errors import ChainError, CmsError, PkiError, SignatureError, ValidationError
from sztp.protocol import cms, pki
from sztp.protocol.oids import (
    ID_CT_ANIMA_JSON_VOUCHER,
    ID_CT_SZTP_CONVEYED_INFO_JSON,
    ID_CT_SZTP_CONVEYED_INFO_XML,
    ID_DATA,
    ID_SIGNED_DATA,
)

JSON = ID_CT_SZTP_CONVEYED_INFO_JSON
CONTENT = b'{"ietf-sztp-conveyed-info:redirect-information": {"bootstrap-server": []}}'


def sign_owner(lab, content=CONTENT, econtent_type=JSON):
    return cms.sign(content, econtent_type, lab.owner, lab.owner.chain)


def verify_owner(lab, der, **overrides):
    arguments = {"allowed_econtent_types": {JSON}, "trust_anchors": [lab.owner_ca.certificate]}
    arguments.update(overrides)
    return cms.verify_signed(der, **arguments)


def flip_byte(der, position):
    changed = bytearray(der)
    changed[position] ^= 0x01
    return bytes(changed)


def rewrite_signed_data(der, change):
    """Decode our SignedData, let `change` edit it, and re-encode (for malformed variants)."""
    content_info = asn1_cms.ContentInfo.load(der)
    signed_data = content_info["content"]
    change(signed_data)
    return asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump(
        force=True
    )


# --- unsigned ContentInfo ---------------------------------------------------------------------


def test_unsigned_wrap_is_content_type_and_octet_string():
    der = cms.wrap_unsigned(b'{"a":1}', JSON)
    # SEQUENCE { OID .43, [0] EXPLICIT OCTET STRING }
    oid = bytes.fromhex("060b2a864886f70d010910012b")
    assert der == bytes.fromhex("3018") + oid + bytes.fromhex("a009" + "0407") + b'{"a":1}'
    assert cms.content_info_type(der) == JSON
    assert cms.unwrap_unsigned(der, {JSON, ID_CT_SZTP_CONVEYED_INFO_XML}) == (JSON, b'{"a":1}')


def test_unwrap_refuses_an_unexpected_type():
    der = cms.wrap_unsigned(b"<x/>", ID_CT_SZTP_CONVEYED_INFO_XML)
    with pytest.raises(CmsError, match=r"content type id-ct-sztpConveyedInfoXML .* expected"):
        cms.unwrap_unsigned(der, {JSON})


def test_unwrap_refuses_signed_data(ec_lab):
    with pytest.raises(CmsError, match="content type id-signedData"):
        cms.unwrap_unsigned(sign_owner(ec_lab), {JSON})


def test_wrap_checks_its_arguments():
    with pytest.raises(ValidationError, match="not a dotted object identifier"):
        cms.wrap_unsigned(b"x", "json")
    with pytest.raises(ValidationError, match="must be bytes"):
        cms.wrap_unsigned("text", JSON)


# --- signed round trips and structure ---------------------------------------------------------


def test_sign_and_verify_round_trip(any_lab):
    der = sign_owner(any_lab)
    verified = verify_owner(any_lab, der)
    assert verified.content == CONTENT
    assert verified.econtent_type == JSON
    assert verified.signer == any_lab.owner.certificate
    assert set(verified.certificates) == {any_lab.owner.certificate, any_lab.owner_ca.certificate}
    assert cms.content_info_type(der) == ID_SIGNED_DATA


def test_signed_data_structure_follows_rfc5652(any_lab):
    der = sign_owner(any_lab)
    signed_data = asn1_cms.ContentInfo.load(der)["content"]
    assert signed_data["version"].native == "v3"
    assert signed_data["encap_content_info"]["content_type"].dotted == JSON
    signer_info = signed_data["signer_infos"][0]
    assert signer_info["version"].native == "v1"
    assert signer_info["sid"].name == "issuer_and_serial_number"
    assert signer_info["sid"].chosen["serial_number"].native == (
        any_lab.owner.certificate.serial_number
    )
    expected_digest = "sha384" if any_lab.key_type == "ec-p384" else "sha256"
    assert signer_info["digest_algorithm"]["algorithm"].native == expected_digest
    attributes = {attr["type"].native: attr["values"] for attr in signer_info["signed_attrs"]}
    assert set(attributes) == {"content_type", "message_digest", "signing_time"}
    assert attributes["content_type"][0].dotted == JSON
    # DER SET OF: the attributes are sorted by their encoding.
    encoded = [attr.dump() for attr in signer_info["signed_attrs"]]
    assert encoded == sorted(encoded)


def test_id_data_content_gives_version_1(ec_lab):
    der = cms.sign(b"plain", ID_DATA, ec_lab.owner)
    assert asn1_cms.ContentInfo.load(der)["content"]["version"].native == "v1"
    verified = cms.verify_signed(der, allowed_econtent_types={ID_DATA})
    assert verified.content == b"plain"
    assert verified.certificates == (ec_lab.owner.certificate,)


def test_sign_accepts_a_certificate_and_key_pair(ec_lab):
    der = cms.sign(b"x", JSON, (ec_lab.owner.certificate, ec_lab.owner.private_key))
    assert cms.verify_signed(der, allowed_econtent_types={JSON}).content == b"x"


def test_sign_refuses_a_mismatched_key_and_bad_arguments(ec_lab):
    with pytest.raises(pki.PkiError, match="does not match"):
        cms.sign(b"x", JSON, (ec_lab.owner.certificate, ec_lab.masa.private_key))
    with pytest.raises(ValidationError, match="econtent_type"):
        cms.sign(b"x", "not-an-oid", ec_lab.owner)
    with pytest.raises(ValidationError, match="signing_time"):
        cms.sign(b"x", JSON, ec_lab.owner, signing_time=dt.datetime(2030, 1, 1))


def test_signer_may_be_pinned(ec_lab):
    der = sign_owner(ec_lab)
    verified = cms.verify_signed(
        der, allowed_econtent_types={JSON}, signer_certificate=ec_lab.owner.certificate
    )
    assert verified.content == CONTENT


def test_intermediates_may_come_from_outside_the_cms():
    root = pki.create_root_ca("Outer Root")
    intermediate = pki.issue_intermediate_ca(root, "Outer Intermediate")
    owner = pki.issue_signing_certificate(intermediate, "Outer Owner")
    der = cms.sign(CONTENT, JSON, owner)  # signer certificate only
    with pytest.raises(ChainError, match="untrusted issuer CN=Outer Intermediate"):
        cms.verify_signed(der, allowed_econtent_types={JSON}, trust_anchors=[root.certificate])
    verified = cms.verify_signed(
        der,
        allowed_econtent_types={JSON},
        trust_anchors=[root.certificate],
        extra_intermediates=[intermediate.certificate],
    )
    assert verified.content == CONTENT


# --- verification failures --------------------------------------------------------------------


def test_tampered_content_is_refused(any_lab):
    der = sign_owner(any_lab)
    with pytest.raises(SignatureError, match="message-digest does not match"):
        verify_owner(any_lab, flip_byte(der, der.index(b"redirect")))


def test_tampered_signature_is_refused(any_lab):
    der = sign_owner(any_lab)
    # The signature is the last field of the last SignerInfo, so the last byte is in it.
    with pytest.raises(SignatureError, match="signature by CN=Test Owner does not verify"):
        verify_owner(any_lab, flip_byte(der, len(der) - 1))


def test_unexpected_signer_is_refused(ec_lab):
    der = sign_owner(ec_lab)
    with pytest.raises(SignatureError, match="signed by CN=Test Owner, expected CN=Test MASA"):
        cms.verify_signed(
            der, allowed_econtent_types={JSON}, signer_certificate=ec_lab.masa.certificate
        )


def test_wrong_econtent_type_is_refused(ec_lab):
    voucher = cms.sign(b"{}", ID_CT_ANIMA_JSON_VOUCHER, ec_lab.masa)
    with pytest.raises(CmsError, match="eContentType id-ct-animaJSONVoucher") as raised:
        verify_owner(ec_lab, voucher)
    assert "expected id-ct-sztpConveyedInfoJSON (1.2.840.113549.1.9.16.1.43)" in str(raised.value)
    assert not isinstance(raised.value, SignatureError)


def test_econtent_type_must_match_the_signed_content_type_attribute(ec_lab):
    def relabel(signed_data):
        signed_data["encap_content_info"]["content_type"] = ID_CT_SZTP_CONVEYED_INFO_XML

    der = rewrite_signed_data(sign_owner(ec_lab), relabel)
    with pytest.raises(SignatureError, match="does not match eContentType"):
        verify_owner(ec_lab, der, allowed_econtent_types={ID_CT_SZTP_CONVEYED_INFO_XML})


def test_untrusted_anchor_is_refused(ec_lab, rsa_lab):
    # The embedded owner CA has the anchor's name but is another, untrusted, root.
    with pytest.raises(ChainError, match="CN=Test Owner CA: self-signed and not a trust anchor"):
        verify_owner(ec_lab, sign_owner(ec_lab), trust_anchors=[rsa_lab.owner_ca.certificate])


def test_expired_signer_is_refused(ec_lab):
    later = ec_lab.owner.certificate.not_valid_after_utc + dt.timedelta(days=1)
    with pytest.raises(ChainError, match="CN=Test Owner: expired"):
        verify_owner(ec_lab, sign_owner(ec_lab), at=later)


def test_two_signers_are_refused(ec_lab):
    other = asn1_cms.ContentInfo.load(cms.sign(CONTENT, JSON, ec_lab.masa))
    other_signer = other["content"]["signer_infos"][0]

    def add_signer(signed_data):
        signed_data["signer_infos"] = [signed_data["signer_infos"][0], other_signer]

    der = rewrite_signed_data(sign_owner(ec_lab), add_signer)
    with pytest.raises(CmsError, match="2 signers, expected exactly one"):
        verify_owner(ec_lab, der)


def test_signer_missing_from_the_cms_is_refused(ec_lab):
    def drop_certificates(signed_data):
        signed_data["certificates"] = []

    der = rewrite_signed_data(sign_owner(ec_lab), drop_certificates)
    with pytest.raises(
        SignatureError, match=r"issuer Common Name: Test Owner CA.* is not in the CMS"
    ):
        verify_owner(ec_lab, der)


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"garbage",
        b"\x30\x03\x06\x01",
        bytes.fromhex("3080"),
        b"\x30" + b"\xff" * 20,
    ],
)
def test_garbage_is_a_cms_error(der):
    with pytest.raises(CmsError):
        cms.verify_signed(der, allowed_econtent_types={JSON})
    with pytest.raises(CmsError):
        cms.read_certs_only(der)
    with pytest.raises(CmsError):
        cms.content_info_type(der)
    with pytest.raises(CmsError):
        cms.unwrap_unsigned(der, {JSON})


# Corrupted embedded certificates may carry non-positive serial numbers.
@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_truncated_and_corrupted_cms_never_leak_library_errors(ec_lab):
    der = sign_owner(ec_lab)
    for cut in range(1, len(der), 7):
        with pytest.raises(CmsError):
            verify_owner(ec_lab, der[:cut])
    for position in range(len(der)):
        for mask in (0x01, 0x80):
            changed = bytearray(der)
            changed[position] ^= mask
            try:
                verified = verify_owner(ec_lab, bytes(changed))
            except CmsError:
                continue
            # Only bytes nobody relies on may change (the unused embedded CA copy, or the
            # unused-bits count of the certificate signature): content and identity stay.
            assert verified.content == CONTENT
            owner = ec_lab.owner.certificate
            assert verified.signer.tbs_certificate_bytes == owner.tbs_certificate_bytes


def test_non_bytes_input_is_a_cms_error():
    with pytest.raises(CmsError, match="must be DER bytes"):
        cms.verify_signed("text", allowed_econtent_types={JSON})


# --- certs-only -------------------------------------------------------------------------------


def test_certs_only_round_trip(ec_lab):
    chain = list(ec_lab.owner.certificates)
    der = cms.certs_only(chain)
    signed_data = asn1_cms.ContentInfo.load(der)["content"]
    assert signed_data["version"].native == "v1"
    assert signed_data["encap_content_info"]["content_type"].dotted == ID_DATA
    assert signed_data["encap_content_info"]["content"].native is None
    assert len(signed_data["signer_infos"]) == 0
    assert set(cms.read_certs_only(der)) == set(chain)


def test_read_certs_only_accepts_signed_data_with_signers(ec_lab):
    certificates = cms.read_certs_only(sign_owner(ec_lab))
    assert set(certificates) == {ec_lab.owner.certificate, ec_lab.owner_ca.certificate}


def test_certs_only_is_not_signed_content(ec_lab):
    with pytest.raises(CmsError, match="0 signers"):
        cms.verify_signed(
            cms.certs_only([ec_lab.owner.certificate]), allowed_econtent_types={ID_DATA}
        )


def test_certs_only_needs_certificates_and_signed_data(ec_lab):
    with pytest.raises(ValidationError, match="at least one certificate"):
        cms.certs_only([])
    with pytest.raises(CmsError, match=r"content type id-ct-sztpConveyedInfoJSON .* expected"):
        cms.read_certs_only(cms.wrap_unsigned(b"{}", JSON))


# --- OpenSSL interoperability -----------------------------------------------------------------


def openssl(*arguments, stdin=b""):
    return subprocess.run(["openssl", *arguments], input=stdin, capture_output=True, check=False)


def write_credential(directory: Path, name, credential):
    cert = directory / f"{name}.pem"
    key = directory / f"{name}.key"
    cert.write_bytes(pki.certificate_to_pem(credential.certificate))
    key.write_bytes(pki.private_key_to_pem(credential.private_key))
    return cert, key


def openssl_verify_owner_signature(lab, anchor, tmp_path):
    """OpenSSL's `cms -verify` of content signed by `lab`'s owner, with `anchor` as its CA file;
    returns the signed file and OpenSSL's run."""
    signed = tmp_path / "signed.cms"
    signed.write_bytes(sign_owner(lab))
    ca_file, _ = write_credential(tmp_path, "anchor", anchor)
    result = openssl(
        "cms", "-verify", "-inform", "DER", "-in", str(signed),
        "-CAfile", str(ca_file), "-binary", "-purpose", "any",
    )  # fmt: skip
    return signed, result


def test_openssl_verifies_our_signature(any_lab, tmp_path):
    signed, result = openssl_verify_owner_signature(any_lab, any_lab.owner_ca, tmp_path)
    assert result.returncode == 0, result.stderr
    assert b"Verification successful" in result.stderr
    assert result.stdout == CONTENT

    result = openssl("cms", "-verify", "-noverify", "-inform", "DER", "-in", str(signed), "-binary")
    assert result.returncode == 0, result.stderr
    assert result.stdout == CONTENT


def test_openssl_rejects_our_signature_with_another_anchor(ec_lab, rsa_lab, tmp_path):
    _, result = openssl_verify_owner_signature(ec_lab, rsa_lab.owner_ca, tmp_path)
    assert result.returncode != 0
    assert result.stdout == b""


def test_openssl_prints_the_sztp_econtent_type(ec_lab, tmp_path):
    signed = tmp_path / "signed.cms"
    signed.write_bytes(sign_owner(ec_lab))
    result = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", str(signed))
    assert result.returncode == 0, result.stderr
    # OpenSSL 3.0 has no name for the SZTP OID: it prints "undefined (1.2.840...1.43)".
    assert b"eContentType: undefined (1.2.840.113549.1.9.16.1.43)" in result.stdout
    assert b"contentType: pkcs7-signedData (1.2.840.113549.1.7.2)" in result.stdout


@pytest.mark.parametrize("extra", [[], ["-stream"], ["-keyid"]], ids=["der", "ber", "keyid"])
def test_we_verify_openssl_signatures(any_lab, tmp_path, extra):
    signed = openssl_signed(any_lab, tmp_path, *extra)
    verified = verify_owner(any_lab, signed)
    assert verified.content == CONTENT
    assert verified.econtent_type == JSON
    assert verified.signer == any_lab.owner.certificate
    with pytest.raises(SignatureError):
        verify_owner(any_lab, signed.replace(b"redirect", b"Redirect"))


def test_openssl_signature_without_signed_attributes(ec_lab, tmp_path):
    owner_cert, owner_key = write_credential(tmp_path, "owner", ec_lab.owner)
    content = tmp_path / "content.json"
    content.write_bytes(CONTENT)
    common = [
        "cms", "-sign", "-nodetach", "-binary", "-noattr", "-outform", "DER",
        "-signer", str(owner_cert), "-inkey", str(owner_key), "-in", str(content),
    ]  # fmt: skip
    sztp = openssl(*common, "-econtent_type", JSON)
    assert sztp.returncode == 0, sztp.stderr
    with pytest.raises(SignatureError, match="RFC 5652 requires them"):
        verify_owner(ec_lab, sztp.stdout)
    plain = openssl(*common)
    assert plain.returncode == 0, plain.stderr
    assert verify_owner(ec_lab, plain.stdout, allowed_econtent_types={ID_DATA}).content == CONTENT


def test_detached_openssl_signature_is_refused(ec_lab, tmp_path):
    owner_cert, owner_key = write_credential(tmp_path, "owner", ec_lab.owner)
    content = tmp_path / "content.json"
    content.write_bytes(CONTENT)
    result = openssl(
        "cms", "-sign", "-binary", "-econtent_type", JSON, "-outform", "DER",
        "-signer", str(owner_cert), "-inkey", str(owner_key), "-in", str(content),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with pytest.raises(CmsError, match="no encapsulated content"):
        verify_owner(ec_lab, result.stdout)


def test_openssl_reads_our_certs_only(ec_lab, tmp_path):
    bundle = tmp_path / "owner-certificate.cms"
    bundle.write_bytes(cms.certs_only(list(ec_lab.owner.certificates)))
    result = openssl("pkcs7", "-inform", "DER", "-in", str(bundle), "-print_certs")
    assert result.returncode == 0, result.stderr
    printed = pki.load_certificates_pem(result.stdout)
    assert set(printed) == set(ec_lab.owner.certificates)
    assert b"subject=CN = Test Owner\n" in result.stdout


def test_we_read_openssl_certs_only(ec_lab, tmp_path):
    bundle = tmp_path / "chain.pem"
    bundle.write_bytes(b"".join(pki.certificate_to_pem(c) for c in ec_lab.owner.certificates))
    result = openssl("crl2pkcs7", "-nocrl", "-certfile", str(bundle), "-outform", "DER")
    assert result.returncode == 0, result.stderr
    assert set(cms.read_certs_only(result.stdout)) == set(ec_lab.owner.certificates)


def test_private_key_never_appears_in_errors(ec_lab):
    der_key = ec_lab.owner.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(pki.PkiError) as raised:
        cms.sign(b"x", JSON, (ec_lab.masa.certificate, ec_lab.owner.private_key))
    assert der_key.hex() not in str(raised.value)
    assert "PRIVATE KEY" not in str(raised.value)


# --- the DER walker and its asn1crypto fallback -----------------------------------------------


def openssl_signed(lab, tmp_path, *extra):
    owner_cert, owner_key = write_credential(tmp_path, "owner", lab.owner)
    content = tmp_path / "content.json"
    content.write_bytes(CONTENT)
    result = openssl(
        "cms", "-sign", "-nodetach", "-binary", "-econtent_type", JSON, "-outform", "DER",
        "-signer", str(owner_cert), "-inkey", str(owner_key), "-md", "sha256",
        "-in", str(content), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


def decoded_both_ways(der):
    return cms._walk_signed_data(der), cms._decode_signed_data(cms._load_signed_data(der))


@pytest.mark.parametrize("extra", [[], ["-keyid"], ["-noattr"]], ids=["der", "keyid", "noattr"])
def test_der_walker_reads_what_asn1crypto_reads(any_lab, tmp_path, extra):
    for der in (sign_owner(any_lab), openssl_signed(any_lab, tmp_path, *extra)):
        walked, decoded = decoded_both_ways(der)
        assert walked == decoded
        assert walked.content == CONTENT
        assert walked.signer is not None
    signer = walked.signer
    if extra == ["-keyid"]:
        assert signer.key_identifier is not None
        assert signer.issuer is None
    if extra == ["-noattr"]:
        assert signer.signed_attrs is None
    else:
        # The signed attributes as signed: the received [0] IMPLICIT encoding as a SET OF.
        assert signer.signed_attrs is not None
        assert signer.signed_attrs[0] == 0x31
        assert signer.signed_attrs[1:] in der


def test_der_walker_reads_certs_only_and_several_signers(ec_lab):
    certs_only = cms.certs_only(list(ec_lab.owner.certificates))
    walked, decoded = decoded_both_ways(certs_only)
    assert walked == decoded
    assert walked.signer_count == 0
    assert walked.content is None


def test_ber_goes_to_asn1crypto(ec_lab, tmp_path):
    ber = openssl_signed(ec_lab, tmp_path, "-stream")  # indefinite lengths
    with pytest.raises(cms._NotPlainDer):
        cms._walk_signed_data(ber)
    assert verify_owner(ec_lab, ber).content == CONTENT


def test_trailing_data_is_refused(ec_lab):
    changed = sign_owner(ec_lab) + b"\x00"
    with pytest.raises(cms._NotPlainDer):
        cms._walk_signed_data(changed)
    with pytest.raises(CmsError, match="malformed SignedData"):
        verify_owner(ec_lab, changed)


def test_ber_lengths_are_left_to_asn1crypto(ec_lab):
    der = sign_owner(ec_lab)
    assert der[1] == 0x82  # SEQUENCE with a two-byte length: re-encode it with four
    changed = der[:1] + b"\x84" + (len(der) - 4).to_bytes(4, "big") + der[4:]
    with pytest.raises(cms._NotPlainDer):
        cms._walk_signed_data(changed)
    assert verify_owner(ec_lab, changed).content == CONTENT


# --- a signer that is not a key in memory (the seam a PKCS#11 token plugs into) ----------------


class KeyElsewhere:
    """A `pki.Signer` over a key in memory, as a token's signer presents itself."""

    def __init__(self, key):
        self._key = key

    def public_key(self):
        return self._key.public_key()

    def sign(self, data, hash):
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), hash)
        return self._key.sign(data, ec.ECDSA(hash))


def test_a_signer_signs_as_the_key_in_memory_does(any_lab, tmp_path):
    at = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    owner = any_lab.owner
    in_memory = cms.sign(CONTENT, JSON, owner, owner.chain, signing_time=at)
    credential = pki.SignerCredential(owner.certificate, KeyElsewhere(owner.private_key))
    elsewhere = cms.sign(CONTENT, JSON, credential, owner.chain, signing_time=at)
    assert verify_owner(any_lab, elsewhere).content == CONTENT
    if isinstance(owner.private_key, rsa.RSAPrivateKey):
        # PKCS#1 v1.5 is deterministic: the whole structure is the same, byte for byte.
        assert elsewhere == in_memory
    else:
        # ECDSA is not: everything but the signature is.
        def unsigned(der):
            return rewrite_signed_data(
                der, lambda data: data["signer_infos"][0].__setitem__("signature", b"")
            )

        assert unsigned(elsewhere) == unsigned(in_memory)
    pair = cms.sign(CONTENT, JSON, (owner.certificate, KeyElsewhere(owner.private_key)))
    assert verify_owner(any_lab, pair).content == CONTENT
    signed = tmp_path / "signed.cms"
    signed.write_bytes(elsewhere)
    ca_file, _ = write_credential(tmp_path, "anchor", any_lab.owner_ca)
    result = openssl(
        "cms", "-verify", "-inform", "DER", "-in", str(signed),
        "-CAfile", str(ca_file), "-binary", "-purpose", "any",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()


def test_a_signer_for_another_key_is_refused(ec_lab):
    with pytest.raises(PkiError, match="does not match certificate"):
        pki.SignerCredential(ec_lab.owner.certificate, KeyElsewhere(pki.generate_key()))


# --- the DER writer against asn1crypto ---------------------------------------------------------


def asn1crypto_signed(content, econtent_type, credential, extra_certs, signing_time):
    """The same SignedData built field by field with asn1crypto: the oracle `cms.sign`'s
    DER writer must match byte for byte (RSA PKCS#1 v1.5 signatures are deterministic)."""
    from asn1crypto import algos, core
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import hashes

    def asn1(certificate):
        return asn1_x509.Certificate.load(certificate.public_bytes(serialization.Encoding.DER))

    digest = pki.signature_hash(credential.private_key)
    utc = signing_time.astimezone(dt.UTC)
    hasher = hashes.Hash(digest)
    hasher.update(content)
    signer = asn1(credential.certificate)
    attributes = asn1_cms.CMSAttributes(
        [
            asn1_cms.CMSAttribute({"type": "content_type", "values": [econtent_type]}),
            asn1_cms.CMSAttribute({"type": "message_digest", "values": [hasher.finalize()]}),
            asn1_cms.CMSAttribute(
                {
                    "type": "signing_time",
                    "values": [
                        asn1_cms.Time(
                            name="generalized_time" if utc.year > 2049 else "utc_time",
                            value=utc.replace(microsecond=0),
                        )
                    ],
                }
            ),
        ]
    )
    signature = credential.private_key.sign(attributes.dump(), padding.PKCS1v15(), digest)
    algorithm = algos.DigestAlgorithm({"algorithm": digest.name, "parameters": None})
    signer_info = asn1_cms.SignerInfo(
        {
            "version": "v1",
            "sid": asn1_cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={"issuer": signer.issuer, "serial_number": signer.serial_number},
            ),
            "digest_algorithm": algorithm,
            "signed_attrs": attributes,
            "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
            "signature": core.OctetString(signature),
        }
    )
    certificates = dict.fromkeys([credential.certificate, *extra_certs])
    signed_data = asn1_cms.SignedData(
        {
            "version": "v1" if econtent_type == ID_DATA else "v3",
            "digest_algorithms": [algorithm],
            "encap_content_info": {"content_type": econtent_type, "content": content},
            "certificates": [
                asn1_cms.CertificateChoices(name="certificate", value=asn1(certificate))
                for certificate in certificates
            ],
            "signer_infos": [signer_info],
        }
    )
    return asn1_cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


@pytest.mark.parametrize("size", [10, 200, 70_000, 1_100_000])
@pytest.mark.parametrize("econtent_type", [JSON, ID_DATA])
@pytest.mark.parametrize(
    "at",
    [
        dt.datetime(2026, 12, 5, 8, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2051, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC),  # GeneralizedTime
        dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.timezone(dt.timedelta(hours=-2))),
    ],
)
def test_the_der_writer_writes_what_asn1crypto_writes(rsa_lab, size, econtent_type, at):
    content = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    owner = rsa_lab.owner
    ours = cms.sign(content, econtent_type, owner, owner.chain, signing_time=at)
    assert ours == asn1crypto_signed(content, econtent_type, owner, owner.chain, at)

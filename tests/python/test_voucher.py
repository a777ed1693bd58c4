"""Ownership vouchers: encoding rules and device-side verification (RFC 8366 / RFC 8572)."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

import yang_modules
from sztp.errors import VoucherError
from sztp.protocol import cms, pki
from sztp.protocol.oids import ID_CT_ANIMA_JSON_VOUCHER
from sztp.protocol.voucher import (
    Voucher,
    create_voucher,
    decode_voucher_json,
    encode_voucher_json,
    read_voucher,
    sign_voucher,
    verify_voucher,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SERIAL = "SN-0001"


@pytest.fixture(scope="module")
def parties() -> dict[str, pki.Credential]:
    manufacturer = pki.create_root_ca("Voucher Test Manufacturer CA", now=NOW - timedelta(days=1))
    owner_ca = pki.create_root_ca("Voucher Test Owner CA", now=NOW - timedelta(days=1))
    rogue_ca = pki.create_root_ca("Voucher Test Rogue CA", now=NOW - timedelta(days=1))
    return {
        "manufacturer": manufacturer,
        "masa": pki.issue_signing_certificate(manufacturer, "MASA", now=NOW - timedelta(days=1)),
        "owner_ca": owner_ca,
        "owner": pki.issue_signing_certificate(owner_ca, "Owner", now=NOW - timedelta(days=1)),
        "rogue_ca": rogue_ca,
        "rogue_masa": pki.issue_signing_certificate(rogue_ca, "Rogue", now=NOW - timedelta(days=1)),
        "rogue_owner": pki.issue_signing_certificate(
            rogue_ca, "Rogue Owner", now=NOW - timedelta(days=1)
        ),
    }


def make_voucher(parties: dict[str, pki.Credential], **changes: object) -> Voucher:
    voucher = create_voucher(
        SERIAL, parties["owner_ca"].certificate, expires_on=NOW + timedelta(days=30), now=NOW
    )
    return replace(voucher, **changes)  # type: ignore[arg-type]


def verify(parties: dict[str, pki.Credential], signed: bytes, **overrides: object) -> Voucher:
    arguments: dict[str, object] = {
        "serial_number": SERIAL,
        "owner_certificate": parties["owner"].certificate,
        "masa_trust_anchors": [parties["manufacturer"].certificate],
        "at": NOW,
    }
    arguments.update(overrides)
    return verify_voucher(signed, **arguments)  # type: ignore[arg-type]


def test_json_round_trip_keeps_every_member(parties: dict[str, pki.Credential]) -> None:
    voucher = replace(
        make_voucher(parties, expires_on=None),
        nonce=b"\x01" * 16,
        idevid_issuer=b"issuer-kid",
        domain_cert_revocation_checks=False,
    )
    assert decode_voucher_json(encode_voucher_json(voucher)) == voucher


def test_json_uses_rfc8366_member_names(parties: dict[str, pki.Credential]) -> None:
    document = json.loads(encode_voucher_json(make_voucher(parties)))
    body = document["ietf-voucher:voucher"]
    assert body["serial-number"] == SERIAL
    assert body["assertion"] == "verified"
    assert body["created-on"] == "2026-06-01T12:00:00Z"
    assert body["expires-on"] == "2026-07-01T12:00:00Z"
    pinned = base64.b64decode(body["pinned-domain-cert"])
    assert pinned == parties["owner_ca"].certificate.public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nonce": b"\x00" * 16}, "mutually exclusive"),
        ({"expires_on": None, "last_renewal_date": NOW}, "requires expires-on"),
        ({"expires_on": None, "nonce": b"short"}, "must be 8..32"),
        ({"assertion": "trusted"}, "not one of"),
        ({"serial_number": ""}, "serial-number"),
        ({"created_on": datetime(2026, 1, 1)}, "time zone"),
    ],
)
def test_rfc8366_rules_are_enforced(
    parties: dict[str, pki.Credential], changes: dict[str, object], message: str
) -> None:
    with pytest.raises(VoucherError, match=message):
        make_voucher(parties, **changes)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"\xff\xfe", "UTF-8 JSON"),
        (b"[]", "one object"),
        (b'{"voucher": {}}', "one object"),
        (b'{"ietf-voucher:voucher": []}', "must be an object"),
        (b'{"ietf-voucher:voucher": {"assertion": "verified"}}', "created-on: missing"),
    ],
)
def test_malformed_json_is_refused(document: bytes, message: str) -> None:
    with pytest.raises(VoucherError, match=message):
        decode_voucher_json(document)


@pytest.mark.parametrize(
    ("member", "value", "message"),
    [
        ("created-on", "yesterday", "RFC 3339"),
        ("created-on", "2026-02-30T00:00:00Z", "valid date-and-time"),
        ("pinned-domain-cert", "not base64!", "base64"),
        ("serial-number", 7, "must be a string"),
        ("domain-cert-revocation-checks", "yes", "true or false"),
        ("surprise", "x", "unknown voucher member"),
    ],
)
def test_bad_members_are_named(
    parties: dict[str, pki.Credential], member: str, value: object, message: str
) -> None:
    document = json.loads(encode_voucher_json(make_voucher(parties)))
    document["ietf-voucher:voucher"][member] = value
    with pytest.raises(VoucherError, match=message):
        decode_voucher_json(json.dumps(document).encode())


def test_repeated_members_are_refused_even_when_signed(parties: dict[str, pki.Credential]) -> None:
    """A MASA-signed voucher naming two serial numbers must not pass as the last one's."""
    text = encode_voucher_json(make_voucher(parties)).decode()
    member = f'"serial-number":"{SERIAL}"'
    doubled = text.replace(member, f'"serial-number":"SN-9999",{member}').encode()
    signed = cms.sign(doubled, ID_CT_ANIMA_JSON_VOUCHER, parties["masa"], [])
    with pytest.raises(VoucherError, match="duplicate JSON member 'serial-number'"):
        read_voucher(signed)
    with pytest.raises(VoucherError, match="duplicate JSON member 'serial-number'"):
        verify(parties, signed)
    nested = text.replace('{"created-on"', '{"assertion":"verified","created-on"').encode()
    with pytest.raises(VoucherError, match="duplicate JSON member 'assertion'"):
        decode_voucher_json(nested)


def test_signed_voucher_has_the_voucher_content_type(parties: dict[str, pki.Credential]) -> None:
    signed = sign_voucher(make_voucher(parties), parties["masa"])
    verified = cms.verify_signed(signed, allowed_econtent_types={ID_CT_ANIMA_JSON_VOUCHER})
    assert verified.econtent_type == ID_CT_ANIMA_JSON_VOUCHER
    assert read_voucher(signed) == make_voucher(parties)


def test_device_accepts_a_good_voucher(parties: dict[str, pki.Credential]) -> None:
    voucher = make_voucher(parties)
    assert verify(parties, sign_voucher(voucher, parties["masa"])) == voucher


def test_owner_certificate_may_be_the_pinned_certificate_itself(
    parties: dict[str, pki.Credential],
) -> None:
    voucher = make_voucher(
        parties,
        pinned_domain_cert=parties["owner"].certificate.public_bytes(Encoding.DER),
    )
    assert verify(parties, sign_voucher(voucher, parties["masa"])).serial_number == SERIAL


def test_voucher_for_another_serial_is_refused(parties: dict[str, pki.Credential]) -> None:
    signed = sign_voucher(make_voucher(parties, serial_number="SN-9999"), parties["masa"])
    with pytest.raises(VoucherError, match="'SN-9999', not this device"):
        verify(parties, signed)


def test_expired_voucher_is_refused(parties: dict[str, pki.Credential]) -> None:
    signed = sign_voucher(make_voucher(parties), parties["masa"])
    with pytest.raises(VoucherError, match="expired"):
        verify(parties, signed, at=NOW + timedelta(days=31))


def test_voucher_from_the_future_is_refused(parties: dict[str, pki.Credential]) -> None:
    signed = sign_voucher(
        make_voucher(parties, created_on=NOW + timedelta(hours=2)), parties["masa"]
    )
    with pytest.raises(VoucherError, match="in the future"):
        verify(parties, signed)


def test_pinned_certificate_mismatch_is_refused(parties: dict[str, pki.Credential]) -> None:
    signed = sign_voucher(make_voucher(parties), parties["masa"])
    with pytest.raises(VoucherError, match="not authorised by the voucher"):
        verify(parties, signed, owner_certificate=parties["rogue_owner"].certificate)


def test_voucher_from_an_untrusted_masa_is_refused(parties: dict[str, pki.Credential]) -> None:
    signed = sign_voucher(make_voucher(parties), parties["rogue_masa"])
    with pytest.raises(VoucherError, match="ownership voucher"):
        verify(parties, signed)


def test_tampered_voucher_is_refused(parties: dict[str, pki.Credential]) -> None:
    signed = bytearray(sign_voucher(make_voucher(parties), parties["masa"]))
    position = bytes(signed).index(SERIAL.encode())
    signed[position + len(SERIAL) - 1] ^= 0x01  # SN-0001 -> SN-0000 inside the signed content
    with pytest.raises(VoucherError):
        verify(parties, bytes(signed))


def test_garbage_is_refused_as_voucher_error() -> None:
    with pytest.raises(VoucherError):
        read_voucher(b"\x30\x03\x02\x01\x00")


def test_nonce_must_match_what_the_device_sent(parties: dict[str, pki.Credential]) -> None:
    nonce = bytes(range(16))
    signed = sign_voucher(make_voucher(parties, expires_on=None, nonce=nonce), parties["masa"])
    assert verify(parties, signed, nonce=nonce).nonce == nonce
    with pytest.raises(VoucherError, match="nonce"):
        verify(parties, signed, nonce=bytes(16))
    with pytest.raises(VoucherError, match="nonce"):
        verify(parties, signed)


# --- memoised certificates and chains ---------------------------------------------------------
# A batch of vouchers from one MASA shares its certificates: their parsing and the chain's
# signatures are memoised on the exact DER. Everything else is checked for every voucher.


def test_memos_never_let_a_bad_voucher_follow_a_good_one(
    parties: dict[str, pki.Credential],
) -> None:
    good = sign_voucher(make_voucher(parties), parties["masa"])
    assert verify(parties, good).serial_number == SERIAL
    # Same MASA certificate and chain as the good voucher, altered signature (its last byte).
    with pytest.raises(VoucherError, match="does not verify"):
        verify(parties, good[:-1] + bytes([good[-1] ^ 0x01]))
    # Same signer, other content.
    position = good.index(SERIAL.encode()) + len(SERIAL) - 1
    altered = good[:position] + bytes([good[position] ^ 0x01]) + good[position + 1 :]
    with pytest.raises(VoucherError, match="message-digest does not match"):
        verify(parties, altered)
    # The same voucher, checked again for another device, later, or with another owner.
    with pytest.raises(VoucherError, match="not this device"):
        verify(parties, good, serial_number="SN-0002")
    with pytest.raises(VoucherError, match="expired"):
        verify(parties, good, at=NOW + timedelta(days=31))
    masa_expiry = parties["masa"].certificate.not_valid_after_utc
    with pytest.raises(VoucherError, match="CN=MASA: expired"):
        verify(parties, good, at=masa_expiry + timedelta(days=1))
    with pytest.raises(VoucherError, match="not authorised by the voucher"):
        verify(parties, good, owner_certificate=parties["rogue_owner"].certificate)
    assert verify(parties, good).serial_number == SERIAL


def test_impostor_masa_with_the_same_names_is_refused_after_the_real_one(
    parties: dict[str, pki.Credential],
) -> None:
    assert verify(parties, sign_voucher(make_voucher(parties), parties["masa"]))
    impostor_ca = pki.create_root_ca("Voucher Test Manufacturer CA", now=NOW - timedelta(days=1))
    impostor = pki.issue_signing_certificate(impostor_ca, "MASA", now=NOW - timedelta(days=1))
    with pytest.raises(VoucherError, match="CN=MASA: untrusted issuer"):
        verify(parties, sign_voucher(make_voucher(parties), impostor))


def test_masa_trust_anchor_is_required_after_a_good_voucher(
    parties: dict[str, pki.Credential],
) -> None:
    signed = sign_voucher(make_voucher(parties), parties["masa"])
    assert verify(parties, signed)
    with pytest.raises(VoucherError, match="CN=MASA: untrusted issuer"):
        verify(parties, signed, masa_trust_anchors=[parties["rogue_ca"].certificate])


# --------------------------------------------------------------------------- YANG conformance

_VOUCHER_YANG_DATA = "rc:yang-data voucher-artifact {\n    uses voucher-artifact-grouping;\n  }"


@pytest.fixture(scope="module")
def voucher_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    """yangson model of ietf-voucher, its `yang-data` template turned into top-level data
    (yangson ignores RFC 8040's extension); the imported modules are unmodified."""
    return yang_modules.data_model(
        tmp_path_factory.mktemp("yang"),
        implemented=(yang_modules.VOUCHER,),
        imported=(yang_modules.YANG_TYPES, yang_modules.RESTCONF),
        derive=((yang_modules.VOUCHER, _VOUCHER_YANG_DATA, "uses voucher-artifact-grouping;"),),
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"expires_on": None, "nonce": bytes(range(16))},
        {
            "assertion": "logged",
            "idevid_issuer": b"\x04\x03abc",
            "domain_cert_revocation_checks": True,
            "last_renewal_date": NOW + timedelta(days=400),
        },
    ],
    ids=["expiring", "nonced", "every-member"],
)
def test_voucher_json_conforms_to_yang(
    voucher_model: object, parties: dict[str, pki.Credential], changes: dict[str, object]
) -> None:
    from yangson.enumerations import ContentType
    from yangson.exceptions import ValidationError

    document = json.loads(encode_voucher_json(make_voucher(parties, **changes)))
    instance = voucher_model.from_raw(document)  # type: ignore[attr-defined]
    instance.validate(ctype=ContentType.all)
    # The model is strict enough to notice a wrong or a missing member.
    body = document["ietf-voucher:voucher"]
    without_serial = {key: value for key, value in body.items() if key != "serial-number"}
    for wrong, problem in (
        ({**body, "assertion": "trusted"}, "assertion"),
        (without_serial, "serial-number"),
    ):
        with pytest.raises(ValidationError, match=problem):
            instance = voucher_model.from_raw({"ietf-voucher:voucher": wrong})  # type: ignore[attr-defined]
            instance.validate(ctype=ContentType.all)

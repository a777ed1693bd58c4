"""Bootstrapping data end to end: built as an owner does, verified as a device does."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sztp.errors import SignatureError, TrustError, ValidationError, VoucherError
from sztp.protocol import cms, pki
from sztp.protocol.bootstrapping_data import (
    BootstrappingData,
    build_signed,
    build_unsigned,
    encode_output_json,
    verify_bootstrapping_data,
)
from sztp.protocol.conveyed_info import (
    BootImage,
    BootstrapServer,
    Encoding,
    OnboardingInformation,
    RedirectInformation,
)
from sztp.protocol.oids import ID_CT_SZTP_CONVEYED_INFO_JSON, ID_CT_SZTP_CONVEYED_INFO_XML
from sztp.protocol.restconf import WireFormat, parse_get_bootstrapping_data_output
from sztp.protocol.voucher import create_voucher, sign_voucher

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SERIAL = "SN-0001"
ONBOARDING = OnboardingInformation(
    boot_image=BootImage(
        os_name="LabOS",
        os_version="1.2",
        download_uris=("https://files.lab.example/labos-1.2.img",),
        sha256=bytes(range(32)),
    ),
    configuration_handling="merge",
    configuration=b"hostname dpu-1\n",
)
REDIRECT = RedirectInformation((BootstrapServer("sztp2.lab.example", 8443),))


@pytest.fixture(scope="module")
def lab() -> dict[str, pki.Credential]:
    issued = NOW - timedelta(days=1)
    manufacturer = pki.create_root_ca("BD Test Manufacturer CA", now=issued)
    owner_ca = pki.create_root_ca("BD Test Owner CA", now=issued)
    other_ca = pki.create_root_ca("BD Test Other Owner CA", now=issued)
    return {
        "manufacturer": manufacturer,
        "masa": pki.issue_signing_certificate(manufacturer, "BD MASA", now=issued),
        "owner_ca": owner_ca,
        "owner": pki.issue_signing_certificate(owner_ca, "BD Owner", now=issued),
        "other_owner": pki.issue_signing_certificate(other_ca, "BD Other Owner", now=issued),
    }


def voucher_for(lab: dict[str, pki.Credential], serial: str = SERIAL) -> bytes:
    voucher = create_voucher(
        serial, lab["owner_ca"].certificate, expires_on=NOW + timedelta(days=30), now=NOW
    )
    return sign_voucher(voucher, lab["masa"])


def device_verify(lab: dict[str, pki.Credential], data: BootstrappingData, **overrides: object):
    arguments: dict[str, object] = {
        "serial_number": SERIAL,
        "trust_anchors": [lab["manufacturer"].certificate],
        "at": NOW,
    }
    arguments.update(overrides)
    return verify_bootstrapping_data(data, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("encoding", list(Encoding))
def test_signed_onboarding_verifies_for_its_device(
    lab: dict[str, pki.Credential], encoding: Encoding
) -> None:
    data = build_signed(ONBOARDING, encoding, lab["owner"], voucher_for(lab))
    verified = device_verify(lab, data)
    assert verified.information == ONBOARDING
    assert verified.signed
    assert verified.encoding is encoding
    assert verified.owner_certificate == lab["owner"].certificate
    assert verified.voucher is not None and verified.voucher.serial_number == SERIAL


@pytest.mark.parametrize(
    ("encoding", "oid"),
    [(Encoding.JSON, ID_CT_SZTP_CONVEYED_INFO_JSON), (Encoding.XML, ID_CT_SZTP_CONVEYED_INFO_XML)],
)
def test_signed_conveyed_information_carries_the_sztp_content_type(
    lab: dict[str, pki.Credential], encoding: Encoding, oid: str
) -> None:
    data = build_signed(ONBOARDING, encoding, lab["owner"], voucher_for(lab))
    verified = cms.verify_signed(
        data.conveyed_information,
        allowed_econtent_types={oid},
        signer_certificate=lab["owner"].certificate,
    )
    assert verified.econtent_type == oid


def test_owner_certificate_artifact_holds_the_owner_chain(lab: dict[str, pki.Credential]) -> None:
    data = build_signed(ONBOARDING, Encoding.JSON, lab["owner"], voucher_for(lab))
    assert data.owner_certificate is not None
    bundled = cms.read_certs_only(data.owner_certificate)
    assert lab["owner"].certificate in bundled


def test_data_for_another_device_is_refused(lab: dict[str, pki.Credential]) -> None:
    data = build_signed(ONBOARDING, Encoding.JSON, lab["owner"], voucher_for(lab))
    with pytest.raises(VoucherError, match="not this device"):
        device_verify(lab, data, serial_number="SN-0002")


def test_data_signed_by_an_owner_the_voucher_does_not_pin_is_refused(
    lab: dict[str, pki.Credential],
) -> None:
    data = build_signed(ONBOARDING, Encoding.JSON, lab["other_owner"], voucher_for(lab))
    with pytest.raises(VoucherError, match="pinned-domain-cert"):
        device_verify(lab, data)


def test_signature_by_a_key_other_than_the_owner_certificate_is_refused(
    lab: dict[str, pki.Credential],
) -> None:
    honest = build_signed(ONBOARDING, Encoding.JSON, lab["owner"], voucher_for(lab))
    forged = build_signed(ONBOARDING, Encoding.JSON, lab["other_owner"], voucher_for(lab))
    spliced = replace(honest, conveyed_information=forged.conveyed_information)
    with pytest.raises(SignatureError):
        device_verify(lab, spliced)


def test_tampered_conveyed_information_is_refused(lab: dict[str, pki.Credential]) -> None:
    data = build_signed(ONBOARDING, Encoding.JSON, lab["owner"], voucher_for(lab))
    tampered = bytearray(data.conveyed_information)
    position = bytes(tampered).index(b"LabOS")
    tampered[position] ^= 0x20  # LabOS -> labOS inside the signed content
    with pytest.raises(SignatureError):
        device_verify(lab, replace(data, conveyed_information=bytes(tampered)))


def test_untrusted_manufacturer_anchor_is_refused(lab: dict[str, pki.Credential]) -> None:
    data = build_signed(ONBOARDING, Encoding.JSON, lab["owner"], voucher_for(lab))
    with pytest.raises(VoucherError):
        device_verify(lab, data, trust_anchors=[lab["owner_ca"].certificate])


def test_signed_data_without_voucher_is_refused(lab: dict[str, pki.Credential]) -> None:
    data = build_signed(ONBOARDING, Encoding.JSON, lab["owner"], voucher_for(lab))
    with pytest.raises(TrustError, match="without owner-certificate"):
        device_verify(lab, BootstrappingData(data.conveyed_information))


def test_owner_certificate_and_voucher_go_together(lab: dict[str, pki.Credential]) -> None:
    with pytest.raises(ValidationError, match="go together"):
        BootstrappingData(b"x", ownership_voucher=voucher_for(lab))


def test_unsigned_onboarding_needs_a_trusted_server(lab: dict[str, pki.Credential]) -> None:
    data = build_unsigned(ONBOARDING, Encoding.JSON)
    with pytest.raises(TrustError, match="does not trust"):
        device_verify(lab, data)
    verified = device_verify(lab, data, server_trusted=True)
    assert verified.information == ONBOARDING
    assert not verified.signed


def test_unsigned_redirect_is_accepted_provisionally(lab: dict[str, pki.Credential]) -> None:
    verified = device_verify(lab, build_unsigned(REDIRECT, Encoding.XML))
    assert verified.information == REDIRECT
    assert verified.encoding is Encoding.XML
    assert not verified.signed


def test_rpc_output_json_round_trip(lab: dict[str, pki.Credential]) -> None:
    data = build_signed(
        ONBOARDING, Encoding.JSON, lab["owner"], voucher_for(lab), reporting_level="verbose"
    )
    document = json.loads(encode_output_json(data))
    body = document["ietf-sztp-bootstrap-server:output"]
    assert set(body) == {
        "conveyed-information",
        "owner-certificate",
        "ownership-voucher",
        "reporting-level",
    }
    assert base64.b64decode(body["conveyed-information"]) == data.conveyed_information
    assert parse_get_bootstrapping_data_output(encode_output_json(data), WireFormat.JSON) == data


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (b"not json", "ietf-sztp-bootstrap-server:output"),
        (b"{}", "ietf-sztp-bootstrap-server:output"),
        (b'{"ietf-sztp-bootstrap-server:output": {}}', "conveyed-information"),
        (
            b'{"ietf-sztp-bootstrap-server:output": {"conveyed-information": "@@"}}',
            "conveyed-information",
        ),
        (
            b'{"ietf-sztp-bootstrap-server:output": {"conveyed-information": 5}}',
            "conveyed-information",
        ),
        (
            b'{"ietf-sztp-bootstrap-server:output": {"conveyed-information": "", "x": 1}}',
            "output/x",
        ),
        (
            b'{"ietf-sztp-bootstrap-server:output": {"conveyed-information": "",'
            b' "reporting-level": "loud"}}',
            "reporting-level",
        ),
        (
            b'{"ietf-sztp-bootstrap-server:output": {"conveyed-information": "",'
            b' "owner-certificate": ""}}',
            "owner-certificate",
        ),
    ],
)
def test_malformed_rpc_output_names_the_member(document: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as raised:
        parse_get_bootstrapping_data_output(document, WireFormat.JSON)
    assert field in raised.value.field

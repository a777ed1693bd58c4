from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from ansible_collections.sztp.bootstrap.plugins.modules import owner, trust_anchor, voucher

from sztp.protocol import pki
from sztp.protocol import voucher as vouchers

SERIAL = "SN-OV-1"
PROFILE = {"type": "onboarding", "signing": "when-requested"}


def pem(*certificates):
    return b"".join(pki.certificate_to_pem(cert) for cert in certificates).decode()


@pytest.fixture(scope="module")
def lab():
    """A small lab PKI: a manufacturer CA with its MASA, an owner CA with its owner
    certificate, a second owner unrelated to the first, and a stranger CA."""
    vendor = pki.create_root_ca("Vendor Root")
    masa = pki.issue_signing_certificate(vendor, "Vendor MASA")
    owner_ca = pki.create_root_ca("Owner Root")
    owner_cert = pki.issue_signing_certificate(owner_ca, "Owner Signer")
    other_ca = pki.create_root_ca("Other Owner Root")
    other_cert = pki.issue_signing_certificate(other_ca, "Other Signer")
    stranger = pki.create_root_ca("Stranger Root")

    def signed(serial, pinned=owner_ca.certificate, **kwargs):
        content = vouchers.create_voucher(serial, pinned, **kwargs)
        return vouchers.sign_voucher(content, masa)

    return SimpleNamespace(
        vendor=vendor,
        masa=masa,
        owner_ca=owner_ca,
        owner=owner_cert,
        other=other_cert,
        stranger=stranger,
        signed=signed,
        owner_chain=pem(owner_cert.certificate, owner_ca.certificate),
        owner_key=pki.private_key_to_pem(owner_cert.private_key).decode(),
        other_chain=pem(other_cert.certificate, other_ca.certificate),
        other_key=pki.private_key_to_pem(other_cert.private_key).decode(),
    )


@pytest.fixture
def device(fake):
    fake.seed("profile", "day0", PROFILE)
    fake.seed("device", SERIAL, {"profile": "day0", "model": "DPU-1"})
    return fake


def b64(der):
    return base64.b64encode(der).decode("ascii")


# ---- voucher


def test_voucher_check_mode_then_apply_then_idempotent(run_module, device, lab, tmp_path):
    fake = device
    src = tmp_path / "voucher.cms"
    src.write_bytes(lab.signed(SERIAL))
    args = {
        "serial": SERIAL,
        "src": str(src),
        "owner_certificate": lab.owner_chain,
        "masa_trust_anchor": pem(lab.vendor.certificate),
    }
    check = run_module(voucher.main, args, check_mode=True)
    assert check["changed"] is True
    assert check["checked"] == [
        "signature",
        "serial number",
        "expiry",
        "MASA chain",
        "pinned owner",
    ]
    assert check["diff"]["before"].get("voucher") is None
    assert check["diff"]["after"]["voucher"] == b64(src.read_bytes())
    assert fake.methods() == ["get", "apply_state"]
    assert fake.calls[-1][1]["dry_run"] is True
    assert fake.state["device"][SERIAL]["voucher"] is None

    first = run_module(voucher.main, args)
    assert first["changed"] is True
    assert fake.state["device"][SERIAL]["voucher"] == b64(src.read_bytes())
    # The rest of the device is kept, not replaced.
    assert fake.state["device"][SERIAL]["model"] == "DPU-1"
    assert first["device"]["name"] == SERIAL

    again = run_module(voucher.main, args)
    assert again["changed"] is False
    assert again["diff"]["before"] == again["diff"]["after"]
    assert run_module(voucher.main, args, check_mode=True)["changed"] is False


def test_voucher_from_content_replaces_the_stored_one(run_module, device, lab):
    fake = device
    old = lab.signed(SERIAL)
    fake.seed("device", SERIAL, {"profile": "day0", "voucher": b64(old)})
    new = lab.signed(SERIAL, pinned=lab.other.certificate)
    result = run_module(voucher.main, {"serial": SERIAL, "content": b64(new)})
    assert result["changed"] is True
    assert result["checked"] == ["signature", "serial number", "expiry"]
    assert result["diff"]["before"]["voucher"] == b64(old)
    assert result["diff"]["after"]["voucher"] == b64(new)
    assert fake.state["device"][SERIAL]["voucher"] == b64(new)


def test_voucher_for_another_serial_is_refused_before_any_call(run_module, device, lab):
    fake = device
    result = run_module(voucher.main, {"serial": SERIAL, "content": b64(lab.signed("SN-OTHER"))})
    assert result["failed"] is True
    assert "SN-OTHER" in result["msg"] and SERIAL in result["msg"]
    assert fake.calls == []
    assert fake.state["device"][SERIAL]["voucher"] is None


@pytest.mark.parametrize(
    "case, expected",
    [
        ("wrong owner", "not authorised by the voucher's pinned-domain-cert"),
        ("wrong MASA anchor", "ownership voucher"),
        ("expired", "expired"),
        ("not base64", "content must be the voucher in base64"),
        ("not a voucher", "ownership voucher"),
    ],
)
def test_voucher_local_checks_refuse_before_any_call(run_module, device, lab, case, expected):
    fake = device
    args = {"serial": SERIAL, "content": b64(lab.signed(SERIAL))}
    if case == "wrong owner":
        args["owner_certificate"] = lab.other_chain
    elif case == "wrong MASA anchor":
        args["masa_trust_anchor"] = pem(lab.stranger.certificate)
    elif case == "expired":
        past = datetime.now(UTC) - timedelta(days=30)
        expired = lab.signed(SERIAL, now=past, expires_on=past + timedelta(days=1))
        args["content"] = b64(expired)
    elif case == "not base64":
        args["content"] = "*** not base64 ***"
    else:
        args["content"] = b64(b"\x30\x03\x02\x01\x00")
    result = run_module(voucher.main, args)
    assert result["failed"] is True
    assert expected in result["msg"]
    assert fake.calls == []


def test_voucher_needs_the_device(run_module, fake, lab):
    result = run_module(voucher.main, {"serial": SERIAL, "content": b64(lab.signed(SERIAL))})
    assert result["failed"] is True
    assert "create it first" in result["msg"]
    assert fake.methods() == ["get"]


def test_voucher_unreadable_src(run_module, device, tmp_path):
    result = run_module(voucher.main, {"serial": SERIAL, "src": str(tmp_path / "missing.cms")})
    assert result["failed"] is True
    assert "cannot read src" in result["msg"]
    assert device.calls == []


def test_voucher_argument_rules(run_module, device, lab):
    both = run_module(voucher.main, {"serial": SERIAL, "src": "/x", "content": "eA=="})
    assert both["failed"] is True and "mutually exclusive" in both["msg"]
    neither = run_module(voucher.main, {"serial": SERIAL})
    assert neither["failed"] is True and "src" in neither["msg"]
    assert device.calls == []


def test_voucher_absent(run_module, device, lab):
    fake = device
    der = lab.signed(SERIAL)
    fake.seed("device", SERIAL, {"profile": "day0", "model": "DPU-1", "voucher": b64(der)})
    args = {"serial": SERIAL, "state": "absent"}

    check = run_module(voucher.main, args, check_mode=True)
    assert check["changed"] is True
    assert check["diff"]["before"]["voucher"] == b64(der)
    assert check["diff"]["after"]["voucher"] is None
    assert fake.state["device"][SERIAL]["voucher"] == b64(der)

    removed = run_module(voucher.main, args)
    assert removed["changed"] is True
    assert fake.state["device"][SERIAL]["voucher"] is None
    assert fake.state["device"][SERIAL]["model"] == "DPU-1"  # the device stays
    assert "delete" not in fake.methods()

    assert run_module(voucher.main, args)["changed"] is False


def test_voucher_absent_without_device_is_no_change(run_module, fake):
    result = run_module(voucher.main, {"serial": "SN-NONE", "state": "absent"})
    assert result["changed"] is False
    assert result["device"] is None
    assert fake.methods() == ["get"]


# ---- owner


def test_owner_check_mode_then_create_with_key_hidden(run_module, fake, lab):
    args = {"name": "default", "certificate_chain": lab.owner_chain, "private_key": lab.owner_key}
    check = run_module(owner.main, args, check_mode=True)
    assert check["changed"] is True
    assert check["diff"]["before"] == {}
    assert check["diff"]["after"]["private_key"] == "<hidden>"
    assert fake.calls[-1][1]["dry_run"] is True
    assert fake.state["owner"] == {}

    first = run_module(owner.main, args)
    assert first["changed"] is True
    assert first["owner"]["spec"]["private_key"] == "<hidden>"
    assert first["diff"]["after"]["private_key"] == "<hidden>"
    assert first["owner"]["spec"]["certificate_chain"] == lab.owner_chain
    assert "PRIVATE KEY" not in json.dumps(first)
    assert fake.secret("owner", "default").startswith("-----BEGIN PRIVATE KEY")

    # The same key again, spelled differently (trailing blank lines), is no change.
    again = run_module(owner.main, {**args, "private_key": lab.owner_key + "\n\n"})
    assert again["changed"] is False
    assert "PRIVATE KEY" not in json.dumps(again)
    assert run_module(owner.main, args, check_mode=True)["changed"] is False


def test_owner_left_out_key_is_kept(run_module, fake, lab):
    fake.seed(
        "owner", "default", {"certificate_chain": lab.owner_chain, "private_key": lab.owner_key}
    )
    stored = fake.secret("owner", "default")
    result = run_module(owner.main, {"name": "default", "certificate_chain": lab.owner_chain})
    assert result["changed"] is False
    assert fake.secret("owner", "default") == stored
    sent = fake.calls[-1][1]["resources"]["owner"]["default"]
    assert sent["private_key"] == "<hidden>"  # the stored key is kept by the server


def test_owner_key_rotation_shows_only_hidden_values(run_module, fake, lab):
    fake.seed(
        "owner", "default", {"certificate_chain": lab.owner_chain, "private_key": lab.owner_key}
    )
    args = {"name": "default", "certificate_chain": lab.other_chain, "private_key": lab.other_key}
    result = run_module(owner.main, args)
    assert result["changed"] is True
    assert result["diff"]["before"]["certificate_chain"] == lab.owner_chain
    assert result["diff"]["after"]["certificate_chain"] == lab.other_chain
    assert result["diff"]["before"]["private_key"] == "<hidden>"
    assert result["diff"]["after"]["private_key"] == "<hidden>"
    assert "PRIVATE KEY" not in json.dumps(result)
    stored = pki.load_private_key_pem(fake.secret("owner", "default").encode())
    assert stored.public_key() == lab.other.private_key.public_key()


def test_owner_empty_key_removes_it(run_module, fake, lab):
    fake.seed(
        "owner", "default", {"certificate_chain": lab.owner_chain, "private_key": lab.owner_key}
    )
    result = run_module(owner.main, {"name": "default", "private_key": ""})
    assert result["changed"] is True
    assert result["diff"]["before"]["private_key"] == "<hidden>"
    assert result["diff"]["after"]["private_key"] is None
    assert fake.secret("owner", "default") is None


def test_owner_key_not_matching_the_certificate_is_refused(run_module, fake, lab):
    args = {"name": "default", "certificate_chain": lab.owner_chain, "private_key": lab.other_key}
    result = run_module(owner.main, args)
    assert result["failed"] is True
    assert "private_key" in result["msg"]
    assert "PRIVATE KEY" not in json.dumps(result)
    assert fake.state["owner"] == {}


def test_owner_absent(run_module, fake, lab):
    fake.seed("owner", "spare", {"certificate_chain": lab.owner_chain})
    check = run_module(owner.main, {"name": "spare", "state": "absent"}, check_mode=True)
    assert check["changed"] is True
    assert check["owner"] is None
    assert check["diff"]["after"] == {}
    assert "spare" in fake.state["owner"]
    assert "delete" not in fake.methods()

    gone = run_module(owner.main, {"name": "spare", "state": "absent"})
    assert gone["changed"] is True
    assert fake.methods()[-1] == "delete"
    assert fake.state["owner"] == {}
    assert run_module(owner.main, {"name": "spare", "state": "absent"})["changed"] is False


def test_owner_in_use_is_not_deleted(run_module, fake, lab):
    fake.seed("owner", "default", {"certificate_chain": lab.owner_chain})
    fake.seed("profile", "day0", {**PROFILE, "signing": "required", "owner": "default"})
    result = run_module(owner.main, {"name": "default", "state": "absent"})
    assert result["failed"] is True
    assert "still in use" in result["msg"]
    assert "default" in fake.state["owner"]


# ---- trust anchor


def test_trust_anchor_check_mode_create_idempotent(run_module, fake, lab):
    args = {"name": "vendor", "certificates": pem(lab.vendor.certificate)}
    check = run_module(trust_anchor.main, args, check_mode=True)
    assert check["changed"] is True
    assert check["trust_anchor"]["spec"]["certificates"] == pem(lab.vendor.certificate)
    assert fake.state["trust-anchor"] == {}

    first = run_module(trust_anchor.main, args)
    assert first["changed"] is True
    assert first["diff"]["before_header"] == "trust anchor vendor"
    assert fake.state["trust-anchor"]["vendor"]["serial_pattern"] is None

    # Re-encoded by the server: CRLF line endings and surrounding blanks are no change.
    spelled = "\n" + pem(lab.vendor.certificate).replace("\n", "\r\n") + "\n"
    again = run_module(trust_anchor.main, {"name": "vendor", "certificates": spelled})
    assert again["changed"] is False
    assert run_module(trust_anchor.main, args, check_mode=True)["changed"] is False


def test_trust_anchor_serial_pattern_update_and_removal(run_module, fake, lab):
    fake.seed("trust-anchor", "vendor", {"certificates": pem(lab.vendor.certificate)})
    pattern = r"^PID:\S+ SN:(?P<serial>\S+)$"
    added = run_module(trust_anchor.main, {"name": "vendor", "serial_pattern": pattern})
    assert added["changed"] is True
    assert added["diff"]["after"]["serial_pattern"] == pattern
    assert added["diff"]["after"]["certificates"] == pem(lab.vendor.certificate)
    again = run_module(trust_anchor.main, {"name": "vendor", "serial_pattern": pattern})
    assert again["changed"] is False

    removed = run_module(trust_anchor.main, {"name": "vendor", "serial_pattern": ""})
    assert removed["changed"] is True
    assert fake.state["trust-anchor"]["vendor"]["serial_pattern"] is None


@pytest.mark.parametrize(
    "fields, expected",
    [
        ({"serial_pattern": "(unclosed"}, "not a regular expression"),
        ({"serial_pattern": "SN:(\\S+)"}, "(?P<serial>...)"),
        ({}, "certificates"),
    ],
)
def test_trust_anchor_invalid_is_reported(run_module, fake, lab, fields, expected):
    args = {"name": "vendor", **fields}
    if fields:
        args["certificates"] = pem(lab.vendor.certificate)
    result = run_module(trust_anchor.main, args)
    assert result["failed"] is True
    assert expected in result["msg"]
    assert fake.state["trust-anchor"] == {}


def test_trust_anchor_leaf_certificate_is_refused(run_module, fake, lab):
    args = {"name": "vendor", "certificates": pem(lab.masa.certificate)}
    result = run_module(trust_anchor.main, args)
    assert result["failed"] is True
    assert fake.state["trust-anchor"] == {}


def test_trust_anchor_absent(run_module, fake, lab):
    fake.seed("trust-anchor", "vendor", {"certificates": pem(lab.vendor.certificate)})
    check = run_module(trust_anchor.main, {"name": "vendor", "state": "absent"}, check_mode=True)
    assert check["changed"] is True
    assert check["diff"]["before"]["certificates"] == pem(lab.vendor.certificate)
    assert "vendor" in fake.state["trust-anchor"]

    gone = run_module(trust_anchor.main, {"name": "vendor", "state": "absent"})
    assert gone["changed"] is True
    assert gone["trust_anchor"] is None
    assert fake.state["trust-anchor"] == {}
    again = run_module(trust_anchor.main, {"name": "vendor", "state": "absent"})
    assert again["changed"] is False
    assert fake.methods()[-1] == "get"


def test_unreachable_server_is_one_clear_message(run_module, fake, unreachable, lab):
    fake.fail_with = unreachable
    result = run_module(
        trust_anchor.main, {"name": "vendor", "certificates": pem(lab.vendor.certificate)}
    )
    assert result["failed"] is True
    assert "cannot read trust anchor 'vendor'" in result["msg"]
    assert "Connection refused" in result["msg"]

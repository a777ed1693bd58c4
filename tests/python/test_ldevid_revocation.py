"""Revoking LDevIDs on a real server (test_ldevid's, with a builtin issuer and a hook issuer):
a device gets its LDevID from the simulator, an admin revokes it over the API or with
`sztpctl`, and the issuer's CRL, as a file server would publish it, makes OpenSSL refuse the
certificate; every revocation is audited once, and whatever names no certificate of the
device, or an issuer without a CRL here, is refused."""

from __future__ import annotations

import dataclasses
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sztp.labpki import LabPki, write_lab_pki
from sztp.revocation import REVOCATION_REASONS
from sztp_server.config import LdevidIssuer
from sztp_server.ldevid.crl import REASON_FLAGS, CrlSigners
from sztp_server.ldevid.issuers import BuiltinIssuer, IssuerError
from sztp_testing import RunningServer, run_sztpctl, simulate_lab_device
from test_ldevid import issued, lab, server  # noqa: F401 - fixtures, asked for by name

LDEVID_ISSUER = "lab-ldevid"


@pytest.fixture
def running(request: pytest.FixtureRequest) -> RunningServer:
    """test_ldevid's server (module-scoped: one for this module)."""
    found: RunningServer = request.getfixturevalue("server")
    return found


@pytest.fixture
def pki(request: pytest.FixtureRequest) -> LabPki:
    """test_ldevid's lab, whose devices and LDevID CA the server knows."""
    found: LabPki = request.getfixturevalue("lab")
    return found


def call(running: RunningServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method,
        f"{running.admin_url}/api/v1{path}",
        headers={"Authorization": f"Bearer {running.token}"},
        timeout=30,
        **kwargs,
    )


def revoke(running: RunningServer, serial: str, number: str, **body: Any) -> requests.Response:
    return call(running, "POST", f"/devices/{serial}/certificates/{number}/revoke", json=body)


def ldevid_of(pki: LabPki, running: RunningServer, serial: str, work: Path) -> Path:
    """Bootstrap `serial` with the simulator, which makes a key and gets its LDevID."""
    result = simulate_lab_device(pki, running.device_url, serial, work, ldevid_keys=("ec-p256",))
    assert result.succeeded and result.ldevid is not None, result.reason
    return result.ldevid


def serial_number_of(path: Path) -> int:
    return x509.load_pem_x509_certificates(path.read_bytes())[0].serial_number


def openssl(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, arguments)], capture_output=True, text=True, check=False
    )


def revocations(running: RunningServer) -> list[dict[str, Any]]:
    entries = call(running, "GET", "/audit", params={"limit": 1000}).json()["entries"]
    return [entry for entry in entries if entry["action"] == "revoke"]


def test_a_revoked_ldevid_is_on_its_issuers_crl(
    pki: LabPki,
    running: RunningServer,
    tmp_path: Path,
) -> None:
    ldevid = ldevid_of(pki, running, "SN-L1", tmp_path / "device")
    number = serial_number_of(ldevid)
    # As `openssl x509 -serial` shows it: upper case.
    answer = revoke(running, "SN-L1", format(number, "X"), reason="keyCompromise")
    assert answer.status_code == 200, answer.text
    revoked = answer.json()
    assert revoked["serial_number"] == format(number, "x") and revoked["device"] == "SN-L1"
    assert revoked["revocation_reason"] == "keyCompromise" and revoked["revoked_at"]
    # Again, for another reason: nothing changes.
    again = revoke(running, "SN-L1", format(number, "x"), reason="superseded")
    assert again.status_code == 200 and again.json() == revoked
    [listed] = [
        r for r in issued(running, "SN-L1") if r["serial_number"] == revoked["serial_number"]
    ]
    assert listed["revoked_at"] == revoked["revoked_at"]
    assert listed["revocation_reason"] == "keyCompromise"

    der = call(running, "GET", f"/issuers/{LDEVID_ISSUER}/crl")
    assert der.status_code == 200 and der.headers["Content-Type"] == "application/pkix-crl"
    (tmp_path / "crl.der").write_bytes(der.content)
    shown = openssl(
        "crl", "-inform", "DER", "-in", tmp_path / "crl.der",
        "-CAfile", pki.ldevid_ca.certificate, "-noout", "-text",
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "verify OK" in shown.stdout + shown.stderr
    text = shown.stdout
    shown_number = format(number, "X")  # OpenSSL's: whole bytes, upper case
    shown_number = shown_number.zfill(len(shown_number) + len(shown_number) % 2)
    assert f"Serial Number: {shown_number}" in text
    assert "Key Compromise" in text
    assert "X509v3 CRL Number" in text and "X509v3 Authority Key Identifier" in text

    crl = x509.load_der_x509_crl(der.content)
    assert crl.next_update_utc is not None
    default = LdevidIssuer(name="any", type="builtin").crl_validity_days
    assert crl.next_update_utc - crl.last_update_utc == timedelta(days=default)
    entry = crl.get_revoked_certificate_by_serial_number(number)
    assert entry is not None
    assert entry.revocation_date_utc.isoformat() == revoked["revoked_at"].split(".")[0] + "+00:00"

    pem = call(running, "GET", f"/issuers/{LDEVID_ISSUER}/crl", params={"format": "pem"})
    assert pem.status_code == 200 and pem.headers["Content-Type"] == "application/x-pem-file"
    assert pem.text.startswith("-----BEGIN X509 CRL-----")
    (tmp_path / "crl.pem").write_text(pem.text)
    verified = openssl(
        "verify", "-crl_check", "-CRLfile", tmp_path / "crl.pem",
        "-partial_chain", "-CAfile", pki.ldevid_ca.certificate, ldevid,
    )  # fmt: skip
    assert verified.returncode != 0
    assert "certificate revoked" in verified.stdout + verified.stderr
    # Its number grows with each CRL signed.
    newer = x509.load_pem_x509_crl(pem.content)
    assert newer.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > (
        crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )

    [entry_audited] = [e for e in revocations(running) if e["detail"]["device"] == "SN-L1"]
    assert entry_audited["actor"] == "admin" and entry_audited["kind"] == "certificate"
    assert entry_audited["name"] == f"{LDEVID_ISSUER}/{format(number, 'x')}"
    assert entry_audited["detail"] == {
        "device": "SN-L1",
        "issuer": LDEVID_ISSUER,
        "serial_number": format(number, "x"),
        "reason": "keyCompromise",
    }
    assert any(
        record.get("event") == "LDevID revoked" and record.get("serial") == "SN-L1"
        for record in running.log_records()
    )


def test_sztpctl_revokes_and_fetches_the_crl(
    pki: LabPki,
    running: RunningServer,
    tmp_path: Path,
) -> None:
    ldevid = ldevid_of(pki, running, "SN-L2", tmp_path / "device")
    number = format(serial_number_of(ldevid), "x")
    env = running.cli_env(tmp_path)
    unconfirmed = run_sztpctl("device", "revoke", "SN-L2", number, env=env, expect=1)
    assert "pass --yes" in unconfirmed.stderr
    assert [r["revoked_at"] for r in issued(running, "SN-L2") if r["serial_number"] == number] == [
        None
    ]
    wrong = run_sztpctl(
        "device", "revoke", "SN-L2", number, "--reason", "lost", "--yes", env=env, expect=2
    )
    assert "'lost' is not one of unspecified, keyCompromise" in wrong.stderr
    done = run_sztpctl(
        "device", "revoke", "SN-L2", number, "--reason", "cessationOfOperation", "--yes", env=env
    )
    assert done.stdout.startswith(f"LDevID {number} of SN-L2 (issuer {LDEVID_ISSUER}) revoked")
    assert done.stdout.rstrip().endswith(": cessationOfOperation")
    shown = run_sztpctl("device", "certificates", "SN-L2", env=env)
    assert number in shown.stdout and " - " not in shown.stdout.split(number)[1].split("\n")[0]

    run_sztpctl("issuer", "crl", LDEVID_ISSUER, "-o", tmp_path / "crl.der", env=env)
    listed = openssl(
        "crl", "-inform", "DER", "-in", tmp_path / "crl.der",
        "-CAfile", pki.ldevid_ca.certificate, "-noout", "-text",
    )  # fmt: skip
    assert listed.returncode == 0 and "verify OK" in listed.stdout + listed.stderr
    assert "Cessation Of Operation" in listed.stdout
    run_sztpctl("issuer", "crl", LDEVID_ISSUER, "-o", tmp_path / "crl.pem", "--pem", env=env)
    verified = openssl(
        "verify", "-crl_check", "-CRLfile", tmp_path / "crl.pem",
        "-partial_chain", "-CAfile", pki.ldevid_ca.certificate, ldevid,
    )  # fmt: skip
    assert "certificate revoked" in verified.stdout + verified.stderr
    hook = run_sztpctl("issuer", "crl", "broken", "-o", tmp_path / "x.crl", env=env, expect=1)
    assert "its CA publishes the CRL" in hook.stderr and not (tmp_path / "x.crl").exists()
    [audited] = [e for e in revocations(running) if e["detail"]["device"] == "SN-L2"]
    assert audited["detail"]["reason"] == "cessationOfOperation"


def test_what_names_no_certificate_of_the_device_is_refused(
    pki: LabPki,
    running: RunningServer,
    tmp_path: Path,
) -> None:
    number = format(serial_number_of(ldevid_of(pki, running, "SN-L5", tmp_path / "d")), "x")
    unknown_reason = revoke(running, "SN-L5", number, reason="lost")
    assert unknown_reason.status_code == 400
    error = unknown_reason.json()["error"]
    assert error["field"] == "reason"
    assert error["message"] == f"must be one of {', '.join(REVOCATION_REASONS)}"
    for serial, given, status in (
        ("SN-L5", "ff" + number, 404),  # no such serial number
        ("SN-L5", "not-hex", 404),
        ("SN-L1", number, 404),  # another device's certificate
        ("SN-NONE", number, 404),  # no such device
    ):
        refused = revoke(running, serial, given, reason="superseded")
        assert refused.status_code == status, (serial, given, refused.text)
    assert revoke(running, "SN-L5", number, reason="superseded", extra=1).status_code == 422
    hook = call(running, "GET", "/issuers/broken/crl")
    assert hook.status_code == 404
    assert "issuer broken is a hook issuer: its CA publishes the CRL" in hook.text
    assert call(running, "GET", "/issuers/nobody/crl").status_code == 404
    bad_format = call(running, "GET", f"/issuers/{LDEVID_ISSUER}/crl", params={"format": "txt"})
    assert bad_format.status_code == 400
    # A read-only token revokes nothing.
    reader = call(running, "POST", "/tokens", json={"name": "reader", "role": "read-only"})
    denied = requests.post(
        f"{running.admin_url}/api/v1/devices/SN-L5/certificates/{number}/revoke",
        json={"reason": "superseded"},
        headers={"Authorization": f"Bearer {reader.json()['token']}"},
        timeout=30,
    )
    assert denied.status_code == 403
    assert [r["revoked_at"] for r in issued(running, "SN-L5") if r["serial_number"] == number] == [
        None
    ]
    assert not [e for e in revocations(running) if e["detail"]["device"] == "SN-L5"]


def test_every_reason_but_unspecified_is_in_the_crl_entry() -> None:
    assert {*REASON_FLAGS, "unspecified"} == set(REVOCATION_REASONS)


def test_the_ca_key_is_read_once_even_when_only_its_owner_may_read_it(tmp_path: Path) -> None:
    pki = write_lab_pki(tmp_path / "pki", [])
    pki.ldevid_ca.private_key.chmod(0o400)
    config = LdevidIssuer(
        name="lab",
        type="builtin",
        certificate_file=pki.ldevid_ca.certificate,
        private_key_file=pki.ldevid_ca.private_key,
    )
    signers = CrlSigners([config], None)
    first = signers.sign("lab", [], datetime.now(UTC))
    pki.ldevid_ca.private_key.unlink()  # the next CRL is signed with the key read before
    second = signers.sign("lab", [("1a", datetime.now(UTC), "superseded")], datetime.now(UTC))
    ca = x509.load_pem_x509_certificate(pki.ldevid_ca.certificate.read_bytes())
    for crl in (first, second):
        assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
        assert crl.issuer == ca.subject
    [entry] = second
    assert entry.serial_number == 0x1A
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.superseded
    )


def test_an_encrypted_ca_key_file_is_opened_with_its_passphrase_file(tmp_path: Path) -> None:
    pki = write_lab_pki(tmp_path / "pki", [])
    key = serialization.load_pem_private_key(pki.ldevid_ca.private_key.read_bytes(), None)
    encrypted = tmp_path / "ca.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    encrypted.chmod(0o600)
    passphrase = tmp_path / "passphrase"
    passphrase.write_text("correct horse\n")
    passphrase.chmod(0o600)
    config = LdevidIssuer(
        name="lab",
        type="builtin",
        certificate_file=pki.ldevid_ca.certificate,
        private_key_file=encrypted,
        private_key_password_file=passphrase,
    )
    ca = x509.load_pem_x509_certificate(pki.ldevid_ca.certificate.read_bytes())
    crl = CrlSigners([config], None).sign("lab", [], datetime.now(UTC))
    assert crl.is_signature_valid(ca.public_key())

    without = dataclasses.replace(config, private_key_password_file=None)
    with pytest.raises(IssuerError, match=r"ca.key is encrypted: set private_key_password_file"):
        BuiltinIssuer(without, None)
    passphrase.write_text("wrong horse\n")
    with pytest.raises(IssuerError) as refused:
        BuiltinIssuer(config, None)
    assert str(encrypted) in str(refused.value) and "horse" not in str(refused.value)
    passphrase.chmod(0o644)
    with pytest.raises(IssuerError, match=r"must be mode 0600 \(it is 0644\)"):
        BuiltinIssuer(config, None)

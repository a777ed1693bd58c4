"""The owner key in a PKCS#11 token: URIs (RFC 7512) in the state, and a real server signing
conveyed information with a key in SoftHSM2 that a simulated device verifies."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from cryptography import x509

from sztp.errors import ValidationError
from sztp.labpki import LabPki, write_lab_pki
from sztp.pkcs11_uri import canonical_pkcs11_uri, parse_pkcs11_uri
from sztp.state.fleet import load_fleet
from sztp.state.resources import OWNER, normalize_spec
from sztp.state.validate import validate_fleet
from sztp_server.secret_key import SecretKey, is_sealed
from sztp_testing import (
    RunningServer,
    lab_voucher,
    run_sztp_server,
    running_server,
    simulate_lab_device,
)

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "sztp owner"
PIN = "1234"
GOOD, ABSENT = "SN-P1", "SN-P2"
URI = "pkcs11:token=sztp%20owner;object=owner;id=%01"


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        (URI, URI),
        ("PKCS11:id=%0a%ff;object=owner;token=sztp%20owner", "pkcs11:token=sztp%20owner;"
         "object=owner;id=%0A%FF"),
        ("pkcs11:object=a%2fb%41;type=private", "pkcs11:object=a%2FbA;type=private"),
    ],
)  # fmt: skip
def test_uri_canonical_form(given: str, canonical: str) -> None:
    assert canonical_pkcs11_uri(given) == canonical
    assert canonical_pkcs11_uri(canonical) == canonical


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ("pkcs11:object=o?pin-source=file:/etc/pin", "pin-source is not allowed"),
        ("pkcs11:object=o?pin-value=1234", "pin-value is not allowed"),
        ("pkcs11:object=o?module-path=/x.so", "module-path is not allowed"),
        ("pkcs11:token=t", "name the key with object="),
        ("pkcs11:objekt=o", "unknown attribute 'objekt'"),
        ("pkcs11:object=o;object=p", "given twice"),
        ("pkcs11:object=a b", "must be percent-encoded"),
        ("pkcs11:object=%zz", "'%' must start a %XX escape"),
        ("pkcs11:object=o;type=cert", "type=private"),
        ("pkcs11:object=%ff", "not UTF-8"),
        ("pkcs11:object=o;token=" + "t" * 33, "longer than the token's 32 bytes"),
    ],
)
def test_uri_refusals(given: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem) as raised:
        parse_pkcs11_uri(given)
    assert "1234" not in str(raised.value)  # a PIN in a refused URI is not echoed


def test_an_owner_uri_is_canonicalised_and_never_sealed(lab: LabPki) -> None:
    chain = lab.owner.certificate.read_text() + lab.owner_ca.certificate.read_text()
    spec = {"certificate_chain": chain, "private_key": "pkcs11:object=owner;token=sztp%20owner"}
    assert normalize_spec(OWNER, "hsm", spec)["private_key"] == (
        "pkcs11:token=sztp%20owner;object=owner"
    )
    stored = SecretKey(os.urandom(32)).normalize(OWNER, "hsm", spec, None, hash_passwords=True)
    assert stored["private_key"] == "pkcs11:token=sztp%20owner;object=owner"
    assert not is_sealed(stored["private_key"])
    with pytest.raises(ValidationError, match=r"owner\[hsm\]\.private_key"):
        normalize_spec(OWNER, "hsm", {**spec, "private_key": "pkcs11:object=o?pin-value=1"})


def test_validate_accepts_the_uri_offline_with_a_note(lab: LabPki, tmp_path: Path) -> None:
    shutil.copy(lab.owner.certificate, tmp_path / "owner.pem")
    shutil.copy(lab.owner_ca.certificate, tmp_path / "ca.pem")
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        f'owner:\n  certificate_chain: {{file: [owner.pem, ca.pem]}}\n  private_key: "{URI}"\n'
    )
    result = validate_fleet(load_fleet(fleet, environ={}))
    assert result.problems == []
    assert any("PKCS#11 token, checked here as a URI only" in note for note in result.notes)


# --- a real server and SoftHSM2 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("pkcs11") / "pki", [GOOD, ABSENT])


@pytest.fixture
def token(tmp_path: Path, lab: LabPki, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A SoftHSM2 token of its own (SOFTHSM2_CONF, inherited by the server) holding the lab
    owner's key as `URI`; returns the directory for the server's files."""
    if shutil.which("softhsm2-util") is None or not SOFTHSM_MODULE.exists():
        pytest.skip("SoftHSM2 is not installed (make test installs the softhsm2 package)")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    softhsm = ["softhsm2-util", "--pin", PIN]
    run([*softhsm, "--init-token", "--free", "--label", TOKEN, "--so-pin", "5678"])
    run([*softhsm, "--import", str(lab.owner.private_key), "--token", TOKEN, "--label", "owner",
         "--id", "01"])  # fmt: skip
    return tmp_path


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def server_settings(directory: Path, pin: str) -> dict[str, object]:
    pin_file = directory / "pin"
    pin_file.write_text(pin + "\n")
    pin_file.chmod(0o600)
    return {"pkcs11_module": str(SOFTHSM_MODULE), "pkcs11_pin_file": str(pin_file)}


def token_resources(lab: LabPki) -> dict[str, object]:
    """Owner `default` signs with the token key, owner `absent` names no key of the token."""
    resources = lab.trust_resources()
    chain = resources["owner"]["default"]["certificate_chain"]
    onboarding = {"type": "onboarding", "configuration": "hostname p\n"}
    return {
        **resources,
        "owner": {
            "default": {"certificate_chain": chain, "private_key": URI},
            "absent": {"certificate_chain": chain, "private_key": "pkcs11:object=absent"},
        },
        "profile": {"good": onboarding, "absent": {**onboarding, "owner": "absent"}},
        "device": {
            serial: {
                "profile": profile,
                "voucher": base64.b64encode(lab_voucher(lab, serial)).decode(),
            }
            for serial, profile in ((GOOD, "good"), (ABSENT, "absent"))
        },
    }


def unusable(server: RunningServer) -> list[str]:
    """The problems logged with owner keys in tokens, each once by each process."""
    records = [
        record
        for record in server.log_records()
        if record.get("event") == "key in PKCS#11 token unusable"
    ]
    assert len({(record.get("worker"), record["problem"]) for record in records}) == len(records)
    return [str(record["problem"]) for record in records]


def test_a_server_signs_with_the_owner_key_in_a_token(lab: LabPki, token: Path) -> None:
    with running_server(token / "server", lab=lab, settings=server_settings(token, PIN)) as server:
        server.apply(token_resources(lab))
        result = simulate_lab_device(lab, server.device_url, GOOD, token / "device")
        assert result.succeeded, result.reason
        # Again from the cache, and after a state change (the key proven again).
        assert simulate_lab_device(lab, server.device_url, GOOD, token / "again").succeeded
        server.apply({"profile": {"good": {"type": "onboarding", "configuration": "x\n"}}})
        assert simulate_lab_device(lab, server.device_url, GOOD, token / "changed").succeeded

        # A URI naming no key of the token: the owner has no key, the device is told the
        # data is unavailable and the log says why.
        absent = simulate_lab_device(lab, server.device_url, ABSENT, token / "absent")
        assert not absent.succeeded
        assert "data-unavailable" in server.refusals()
        assert any("has no private key with object=absent" in line for line in unusable(server))

        # A URI that is not one is refused at the door, naming the field.
        response = requests.post(
            f"{server.admin_url}/api/v1/state",
            json={"resources": {"owner": {"bad": {
                "certificate_chain": lab.owner.certificate.read_text(),
                "private_key": "pkcs11:object=owner?pin-source=file:/etc/pin",
            }}}},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=30,
        )  # fmt: skip
        assert 400 <= response.status_code < 500, response.text
        assert "private_key" in response.text and "pin-source" in response.text
        shown = server.client().get("owner", "default")
        assert shown["spec"]["private_key"] == "<hidden>"
        assert "Traceback" not in server.log


def test_a_wrong_pin_leaves_the_owner_without_a_key(lab: LabPki, token: Path) -> None:
    with running_server(
        token / "server", lab=lab, settings=server_settings(token, "4321")
    ) as server:
        server.apply(token_resources(lab))
        for attempt in ("first", "second"):
            result = simulate_lab_device(lab, server.device_url, GOOD, token / attempt)
            assert not result.succeeded
        assert server.refusals() == ["data-unavailable", "data-unavailable"]
        problems = unusable(server)
        assert problems
        assert all(f"token {TOKEN!r} refused the PIN" in problem for problem in problems)
        assert "4321" not in server.log
        assert "Traceback" not in server.log


CA_URI = "pkcs11:token=sztp%20owner;object=ldevid-ca"


def token_issuer_settings(lab: LabPki, token: Path, uri: str) -> dict[str, object]:
    """The lab's LDevID CA key imported into the token; a builtin issuer naming it by `uri`."""
    run(["softhsm2-util", "--pin", PIN, "--import", str(lab.ldevid_ca.private_key), "--token",
         TOKEN, "--label", "ldevid-ca", "--id", "02"])  # fmt: skip
    issuer = {
        "name": "token-ca",
        "type": "builtin",
        "certificate_file": str(lab.ldevid_ca.certificate),
        "private_key_uri": uri,
    }
    return {**server_settings(token, PIN), "ldevid_issuers": [issuer]}


def test_the_ldevid_ca_key_in_a_token_issues_and_signs_the_crl(lab: LabPki, token: Path) -> None:
    settings = token_issuer_settings(lab, token, CA_URI)
    ldevid_ca = x509.load_pem_x509_certificate(lab.ldevid_ca.certificate.read_bytes())
    with running_server(token / "server", lab=lab, settings=settings) as server:
        profile = {
            "type": "onboarding",
            "templating": "jinja2",
            "configuration": "hostname {{ serial }}\n{{ ldevid.chain }}",
            "ldevid_issuer": "token-ca",
        }
        server.apply(
            {
                **lab.trust_resources(),
                "profile": {"ldevid": profile},
                "device": {
                    GOOD: {
                        "profile": "ldevid",
                        "voucher": base64.b64encode(lab_voucher(lab, GOOD)).decode(),
                    }
                },
            }
        )
        result = simulate_lab_device(
            lab, server.device_url, GOOD, token / "device", ldevid_keys=("ec-p256",)
        )
        assert result.succeeded and result.ldevid is not None, result.reason
        ldevid = x509.load_pem_x509_certificates(result.ldevid.read_bytes())[0]
        ldevid.verify_directly_issued_by(ldevid_ca)

        headers = {"Authorization": f"Bearer {server.token}"}
        number = format(ldevid.serial_number, "x")
        revoked = requests.post(
            f"{server.admin_url}/api/v1/devices/{GOOD}/certificates/{number}/revoke",
            json={"reason": "keyCompromise"},
            headers=headers,
            timeout=30,
        )
        assert revoked.status_code == 200, revoked.text
        answer = requests.get(
            f"{server.admin_url}/api/v1/issuers/token-ca/crl", headers=headers, timeout=30
        )
        assert answer.status_code == 200, answer.text
        crl = x509.load_der_x509_crl(answer.content)
        assert crl.is_signature_valid(ldevid_ca.public_key())
        assert crl.get_revoked_certificate_by_serial_number(ldevid.serial_number) is not None
        assert "Traceback" not in server.log
    # No file anywhere under the server's directory holds the CA key.
    key_text = lab.ldevid_ca.private_key.read_bytes().strip().splitlines()[1]
    assert not [
        path
        for path in (token / "server").rglob("*")
        if path.is_file() and key_text in path.read_bytes()
    ]


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        (CA_URI, None),
        ("pkcs11:token=sztp%20owner;object=absent", "has no private key with object=absent"),
        ("pkcs11:token=sztp%20owner;object=owner", "is not the key of its certificate"),
    ],
)
def test_check_proves_the_ldevid_ca_key_in_the_token(
    lab: LabPki, token: Path, uri: str, problem: str | None
) -> None:
    config = token / "server.yaml"
    config.write_text(yaml.safe_dump({
        "database_url": f"sqlite:///{token}/sztp.db",
        "admin_token_file": f"{token}/admin-token",
        **token_issuer_settings(lab, token, uri),
    }))  # fmt: skip
    result = run_sztp_server("check", config, env={"SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"]})
    assert "Traceback" not in result.stderr and PIN not in result.stderr
    if problem is None:
        assert result.returncode == 0, result.stderr
        assert "configuration OK" in result.stdout
    else:
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.startswith(f"sztp-server: issuer token-ca: {uri}"), result.stderr
        assert problem in result.stderr
    assert not (token / "sztp.db").exists()

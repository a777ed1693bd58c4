"""What vouchers a bootstrap server stores and serves (RFC 8366, RFC 8572 §5.4).

A voucher is refused when it is written if a device could not use it: expired, carrying a
nonce, or pinning a certificate that does not authorise every owner that may sign for the
device; the same goes for a write of a profile, device selection or owner that would make a
stored voucher wrong. A stored voucher that expires later is not served. Signers' key usage
is checked too. A real server (SQLite) answers the admin and device APIs; `sztpctl
validate`'s checks run on fleet files.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sztp.errors import ValidationError, VoucherError
from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, read_voucher, sign_voucher
from sztp.state.fleet import load_fleet
from sztp.state.ownership import check_vouchers_authorise_owners
from sztp.state.plan import Change
from sztp.state.resources import DEVICE, checked_voucher, normalize_spec
from sztp.state.validate import validate_fleet
from sztp_server.admin.vouchers import VoucherChecker
from sztp_server.store.sqlite import SqliteStore
from sztp_testing import RunningServer, assert_released, issue_leaf, key_usage, running_server

GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
JSON_TYPE = "application/yang-data+json"
SERIAL = "SN-VR1"
PASSWORD = "voucher rules password"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("vouchers") / "pki", [])


@pytest.fixture(scope="module")
def stranger() -> pki.Credential:
    """Another owner: its own CA and signing certificate, pinned by no lab voucher."""
    return pki.issue_signing_certificate(pki.create_root_ca("Stranger Owner CA"), "Stranger")


def owner_ca(lab: LabPki) -> x509.Certificate:
    return pki.load_certificates_pem(lab.owner_ca.certificate.read_bytes())[0]


def voucher(
    lab: LabPki,
    serial: str = SERIAL,
    *,
    pinned: x509.Certificate | None = None,
    expires_on: datetime | None = None,
    nonce: bytes | None = None,
    now: datetime | None = None,
) -> str:
    content = create_voucher(
        serial, pinned or owner_ca(lab), expires_on=expires_on, nonce=nonce, now=now
    )
    return base64.b64encode(sign_voucher(content, lab.masa.load())).decode()


def expired(lab: LabPki, serial: str = SERIAL) -> str:
    yesterday = datetime.now(UTC) - timedelta(days=1)
    return voucher(lab, serial, expires_on=yesterday, now=yesterday - timedelta(days=1))


def chain_pem(credential: pki.Credential) -> str:
    return b"".join(pki.certificate_to_pem(cert) for cert in credential.certificates).decode()


def base_resources(lab: LabPki, stranger: pki.Credential) -> dict[str, Any]:
    return {
        **lab.trust_resources(),
        "owner": {
            **lab.trust_resources()["owner"],
            "stranger": {"certificate_chain": chain_pem(stranger)},
        },
        "profile": {
            "day0": {"type": "onboarding", "configuration": "hostname vr\n"},
            "stranger-day0": {
                "type": "onboarding",
                "owner": "stranger",
                "signing": "when-requested",
            },
            # Redirects that need not be signed are never signed: their owner signs nothing.
            "hop": {
                "type": "redirect",
                "owner": "stranger",
                "signing": "when-requested",
                "bootstrap_servers": [{"address": "sztp2.example"}],
            },
        },
        "device": {
            SERIAL: {
                "profile": "day0",
                "selection": [{"hw_model": "hop-*", "profile": "hop"}],
                "voucher": voucher(lab),
                "password": PASSWORD,
            }
        },
    }


class Admin:
    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {server.token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, f"{self.server.admin_url}{path}", timeout=30, **kwargs)

    def state(self) -> dict[str, Any]:
        response = self.request("GET", "/api/v1/state")
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def admin(server: RunningServer, lab: LabPki, stranger: pki.Credential) -> Admin:
    """The base state, freshly applied (pruning whatever a previous test left)."""
    api = Admin(server)
    response = api.request(
        "POST", "/api/v1/state", json={"resources": base_resources(lab, stranger), "prune": True}
    )
    assert response.status_code == 200, response.text
    return api


def refused(api: Admin, response: requests.Response, field: str, message: str) -> None:
    """A 4xx naming the field and the problem, and nothing stored."""
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    assert message in error["message"], error


def test_expired_voucher_is_refused_on_apply(
    admin: Admin, lab: LabPki, stranger: pki.Credential
) -> None:
    before = admin.state()
    resources = base_resources(lab, stranger)
    resources["device"]["SN-VR2"] = {"profile": "day0", "voucher": expired(lab, "SN-VR2")}
    response = admin.request("POST", "/api/v1/state", json={"resources": resources})
    refused(admin, response, "device[SN-VR2].voucher", "ownership voucher expired on ")
    assert admin.state() == before


def test_voucher_with_a_nonce_is_refused_on_upload(admin: Admin, lab: LabPki) -> None:
    before = admin.state()
    der = base64.b64decode(voucher(lab, nonce=b"0123456789abcdef"))
    response = admin.request(
        "PUT",
        f"/api/v1/devices/{SERIAL}/voucher",
        data=der,
        headers={"Content-Type": "application/voucher-cms+json"},
    )
    refused(admin, response, f"device[{SERIAL}].voucher", "ownership voucher carries a nonce")
    assert admin.state() == before


def test_voucher_pinning_another_owner_is_refused(
    admin: Admin, lab: LabPki, stranger: pki.Credential
) -> None:
    before = admin.state()
    spec = {"profile": "day0", "voucher": voucher(lab, pinned=stranger.chain[0])}
    response = admin.request("PUT", f"/api/v1/devices/{SERIAL}", json={"spec": spec})
    refused(
        admin,
        response,
        f"device[{SERIAL}].voucher",
        "owner 'default' (signs profile 'day0'): owner certificate CN=SZTP Lab Owner is not "
        "authorised by the voucher's pinned-domain-cert",
    )
    assert admin.state() == before


def test_every_profile_a_device_can_select_must_be_authorised(admin: Admin, lab: LabPki) -> None:
    """A selection rule that can give the device a profile signed by another owner."""
    before = admin.state()
    spec = {
        "profile": "day0",
        "selection": [{"os_version": "2.*", "profile": "stranger-day0"}],
        "voucher": voucher(lab),
    }
    response = admin.request("PUT", f"/api/v1/devices/{SERIAL}", json={"spec": spec})
    refused(
        admin,
        response,
        f"device[{SERIAL}].voucher",
        "owner 'stranger' (signs profile 'stranger-day0'): owner certificate CN=Stranger",
    )
    assert admin.state() == before


def test_a_changed_owner_or_profile_must_stay_authorised_by_stored_vouchers(
    admin: Admin, stranger: pki.Credential
) -> None:
    before = admin.state()
    owner = {"certificate_chain": chain_pem(stranger)}
    response = admin.request("PUT", "/api/v1/owners/default", json={"spec": owner})
    refused(admin, response, f"device[{SERIAL}].voucher", "owner 'default' (signs profile 'day0')")
    # The redirect the device may select is signed only when required: now it would be.
    hop = {
        "type": "redirect",
        "owner": "stranger",
        "signing": "required",
        "bootstrap_servers": [{"address": "sztp2.example"}],
    }
    response = admin.request("PUT", "/api/v1/profiles/hop", json={"spec": hop})
    refused(admin, response, f"device[{SERIAL}].voucher", "owner 'stranger' (signs profile 'hop')")
    assert admin.state() == before


def test_a_bulk_apply_checks_owners_against_the_vouchers_its_workers_read(
    admin: Admin, lab: LabPki
) -> None:
    """Enough new vouchers for worker processes to check them: their pins, handed back by
    the workers, still have to authorise each device's owners."""
    before = admin.state()
    serials = [f"SN-BULK-{number:04d}" for number in range(VoucherChecker.THRESHOLD)]
    devices = {serial: {"profile": "day0", "voucher": voucher(lab, serial)} for serial in serials}
    devices[serials[-1]]["profile"] = "stranger-day0"
    response = admin.request("POST", "/api/v1/state", json={"resources": {"device": devices}})
    refused(
        admin,
        response,
        f"device[{serials[-1]}].voucher",
        "owner 'stranger' (signs profile 'stranger-day0'): owner certificate CN=Stranger",
    )
    assert admin.state() == before


def test_a_server_stops_promptly_after_its_workers_checked_vouchers(
    tmp_path: Path, lab: LabPki, stranger: pki.Credential
) -> None:
    """The writer process's own voucher workers end with it when the server stops, and
    nothing the server started keeps its files open."""
    serials = [f"SN-STOP-{number:04d}" for number in range(VoucherChecker.THRESHOLD)]
    resources = base_resources(lab, stranger)
    resources["device"] = {
        serial: {"profile": "day0", "voucher": voucher(lab, serial)} for serial in serials
    }
    with running_server(tmp_path / "server") as server:
        server.apply(resources)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0
    assert_released(tmp_path / "server")


def test_owner_checks_use_the_pins_read_already(lab: LabPki, stranger: pki.Credential) -> None:
    """A pin handed in is used as the voucher's pinned-domain-cert, without reading it."""
    state = {
        "owner": {"default": {"certificate_chain": lab.owner.certificate.read_text()}},
        "profile": {"day0": {"type": "onboarding", "signing": "required", "owner": "default"}},
        "device": {SERIAL: {"profile": "day0", "voucher": "bm90IGEgdm91Y2hlcg=="}},
    }
    not_read = "bm90IGEgdm91Y2hlcg=="  # base64 of "not a voucher"
    owner_pin = owner_ca(lab).public_bytes(serialization.Encoding.DER)
    check_vouchers_authorise_owners(state, pins={not_read: owner_pin})
    stranger_pin = stranger.chain[-1].public_bytes(serialization.Encoding.DER)
    with pytest.raises(ValidationError, match="owner 'default' \\(signs profile 'day0'\\)"):
        check_vouchers_authorise_owners(state, pins={not_read: stranger_pin})


def test_bulk_worker_check_refuses_what_a_device_cannot_use(lab: LabPki) -> None:
    """The plain function that worker processes run for large applies; it hands back the
    pinned-domain-cert too, for the owner checks."""
    good = voucher(lab)
    pinned = owner_ca(lab).public_bytes(serialization.Encoding.DER)
    assert checked_voucher(SERIAL, good) == ((good, pinned), None)
    canonical, problem = checked_voucher(SERIAL, expired(lab))
    assert canonical is None and problem is not None and "expired on" in problem
    canonical, problem = checked_voucher(SERIAL, voucher(lab, nonce=b"n" * 16))
    assert canonical is None and problem is not None and "carries a nonce" in problem


# ---- serving a voucher that has expired since it was stored


def device_request(server: RunningServer, *, signed: bool) -> requests.Response:
    body = {"ietf-sztp-bootstrap-server:input": {"signed-data-preferred": [None]}}
    return requests.post(
        f"{server.device_url}{GET_DATA}",
        data=json.dumps(body) if signed else b"",
        headers={"Content-Type": JSON_TYPE},
        auth=(SERIAL, PASSWORD),
        timeout=10,
    )


def store_behind_the_api(server: RunningServer, serial: str, **fields: Any) -> None:
    """Change a device in the store directly, as if it had been written long ago."""
    store = SqliteStore(server.directory / "state" / "sztp.db")
    try:
        current = store.get(DEVICE, serial)
        assert current is not None
        spec = {**current.spec, **fields}
        store.apply([Change("update", DEVICE, serial, spec, current.spec)], actor="test")
    finally:
        store.close()


def test_a_voucher_expired_since_it_was_stored_is_not_served(
    admin: Admin, server: RunningServer, lab: LabPki
) -> None:
    assert device_request(server, signed=True).status_code == 200
    store_behind_the_api(server, SERIAL, voucher=expired(lab))
    deadline = time.monotonic() + 30
    response = device_request(server, signed=True)
    while response.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)  # the server picks the store's new revision up on its next poll
        response = device_request(server, signed=True)
    assert response.status_code == 503, response.text
    reasons = [
        record.get("reason")
        for record in map(_json_or_none, server.log.splitlines())
        if isinstance(record, dict) and record.get("event") == "device request refused"
    ]
    assert any(
        f"device {SERIAL}: ownership voucher expired on " in str(reason)
        and "store a renewed voucher" in str(reason)
        for reason in reasons
    ), reasons


def _json_or_none(line: str) -> object:
    with contextlib.suppress(ValueError):
        return json.loads(line)
    return None


# ---- key usage of the MASA and owner signers


def signer_without_digital_signature(issuer: pki.Credential, name: str) -> pki.Credential:
    """A leaf whose key usage is keyEncipherment alone: it may not sign."""
    return issue_leaf(
        issuer, name, key_usage=key_usage(digital_signature=False), extended_usage=None
    )


def test_masa_and_owner_signers_need_digital_signature(lab: LabPki) -> None:
    manufacturer = lab.manufacturer_ca.load()
    masa = signer_without_digital_signature(manufacturer, "SN-MASA")
    signed = sign_voucher(create_voucher(SERIAL, owner_ca(lab)), masa)
    with pytest.raises(VoucherError, match="key usage does not allow digitalSignature"):
        read_voucher(signed)
    owner = signer_without_digital_signature(lab.owner_ca.load(), "SN-OWNER")
    with pytest.raises(Exception, match="key usage does not allow digitalSignature") as info:
        normalize_spec("owner", "weak", {"certificate_chain": chain_pem(owner)})
    assert getattr(info.value, "field", None) == "owner[weak].certificate_chain"


# ---- the same rules offline: sztpctl validate


def write_fleet(directory: Path, lab: LabPki, stranger: pki.Credential, devices: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "stranger.pem").write_text(chain_pem(stranger))
    (directory / "owner.pem").write_text(chain_pem(lab.owner.load()))
    fleet = directory / "fleet.yaml"
    fleet.write_text(
        f"""\
owners:
  - name: default
    certificate_chain: {{file: owner.pem}}
  - name: stranger
    certificate_chain: {{file: stranger.pem}}
profiles:
  - name: day0
    type: onboarding
  - name: stranger-day0
    type: onboarding
    owner: stranger
devices:
{devices}"""
    )
    return fleet


def validation_problems(fleet: Path) -> list[str]:
    return [problem.message for problem in validate_fleet(load_fleet(fleet, environ={})).problems]


def test_validate_applies_the_same_voucher_rules(
    tmp_path: Path, lab: LabPki, stranger: pki.Credential
) -> None:
    vouchers: Mapping[str, str] = {
        "good": voucher(lab, "SN-OK"),
        "nonce": voucher(lab, "SN-NONCE", nonce=b"0123456789abcdef"),
        "selects-stranger": voucher(lab, "SN-SEL"),
    }
    devices = f"""\
  - serial: SN-OK
    profile: day0
    voucher: {vouchers["good"]}
  - serial: SN-NONCE
    profile: day0
    voucher: {vouchers["nonce"]}
  - serial: SN-SEL
    profile: day0
    selection:
      - os_version: "2.*"
        profile: stranger-day0
    voucher: {vouchers["selects-stranger"]}
"""
    problems = validation_problems(write_fleet(tmp_path, lab, stranger, devices))
    assert len(problems) == 2, problems
    assert "ownership voucher carries a nonce" in problems[0]
    assert problems[1].startswith(
        "owner 'stranger' (signs profile 'stranger-day0'): owner certificate CN=Stranger is not "
        "authorised by the voucher's pinned-domain-cert"
    )

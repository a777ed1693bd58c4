"""sztp-server scenarios beyond the basic flow: redirect to a second server, XML end to end,
two instances sharing PostgreSQL, TLS reload on SIGHUP."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import pki
from sztp.protocol.restconf import WireFormat
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp_testing import (
    RunningServer,
    lab_voucher,
    running_server,
    simulate_lab_device,
    start_server,
)

SERIAL = "SN-S1"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("scenarios") / "pki", [SERIAL])


def base_resources(lab: LabPki, profile: dict[str, object]) -> dict[str, object]:
    voucher = base64.b64encode(lab_voucher(lab, SERIAL)).decode()
    return {
        **lab.trust_resources(),
        "profile": {"day0": profile},
        "device": {SERIAL: {"profile": "day0", "voucher": voucher}},
    }


ONBOARDING = {"type": "onboarding", "configuration": "hostname s1\n", "reporting_level": "verbose"}


def device_status(server: RunningServer) -> str:
    response = requests.get(
        f"{server.admin_url}/api/v1/devices/{SERIAL}/status",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["status"]


def test_signed_redirect_leads_to_a_second_server(lab: LabPki, tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "onboarding", lab=lab) as second,
        running_server(tmp_path / "redirecting", lab=lab) as first,
    ):
        second.apply(base_resources(lab, ONBOARDING))
        port = int(second.device_url.rsplit(":", 1)[1])
        redirect = {
            "type": "redirect",
            "bootstrap_servers": [
                {
                    "address": "127.0.0.1",
                    "port": port,
                    "trust_anchor": lab.tls_ca.certificate.read_text(),
                }
            ],
        }
        first.apply(base_resources(lab, redirect))
        # The device does not know the TLS CA: only the signed redirect's trust anchor
        # makes it trust the second server.
        result = simulate_lab_device(
            lab, first.device_url, SERIAL, tmp_path / "device", server_ca=None
        )
        assert result.succeeded, result.reason
        assert result.servers_contacted == (first.device_url, second.device_url)
        assert device_status(second) == "complete"
        assert device_status(first) == "not-seen"  # a device reports only to its onboarding server


def test_xml_end_to_end(lab: LabPki, tmp_path: Path) -> None:
    with running_server(tmp_path / "server", lab=lab) as server:
        server.apply(base_resources(lab, {**ONBOARDING, "encoding": "xml"}))
        result = simulate_lab_device(
            lab, server.device_url, SERIAL, tmp_path / "device", wire_format=WireFormat.XML
        )
        assert result.succeeded, result.reason
        assert device_status(server) == "complete"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    url = os.environ.get("SZTP_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("PostgreSQL not configured: set SZTP_TEST_POSTGRES_URL (make test does)")
    import psycopg

    name = f"sztp_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.replace("/postgres?", f"/{name}?", 1)
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_two_instances_share_postgresql(
    lab: LabPki, tmp_path: Path, postgres_database: str
) -> None:
    with running_server(tmp_path / "one", lab=lab, database_url=postgres_database) as one:
        # The shared database has its first token already: instance two writes none, so it
        # gets the same token file the operator would give it, and the same secret key (the
        # owner key in the database is encrypted under it).
        (tmp_path / "two" / "state").mkdir(parents=True)
        (tmp_path / "two" / "state" / "admin-token").write_text(one.token)
        shutil.copy2(tmp_path / "one" / "state" / "secret-key", tmp_path / "two" / "state")
        with running_server(tmp_path / "two", lab=lab, database_url=postgres_database) as two:
            one.apply(base_resources(lab, ONBOARDING))
            deadline = time.monotonic() + 5  # two notices within its refresh interval
            while True:
                result = simulate_lab_device(
                    lab, two.device_url, SERIAL, tmp_path / f"device-{time.monotonic_ns()}"
                )
                if result.succeeded or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert result.succeeded, result.reason
            assert device_status(one) == "complete"  # reports sent to two, seen through one


def served_certificate(url: str) -> x509.Certificate:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    return x509.load_pem_x509_certificate(ssl.get_server_certificate((host, int(port))).encode())


def test_sighup_reloads_the_tls_certificate_of_every_listener(tmp_path: Path) -> None:
    lab = write_lab_pki(tmp_path / "pki", ["SN-H1"])
    server = start_server(tmp_path / "server", lab=lab, admin_tls=True)
    try:
        before = served_certificate(server.device_url)
        assert served_certificate(server.admin_url) == before
        renewed = pki.issue_server_certificate(lab.tls_ca.load(), ["localhost", "127.0.0.1"])
        lab.server.certificate.write_bytes(pki.certificate_to_pem(renewed.certificate))
        lab.server.private_key.write_bytes(pki.private_key_to_pem(renewed.private_key))
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while served_certificate(server.device_url) == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served_certificate(server.device_url) == renewed.certificate
        assert served_certificate(server.admin_url) == renewed.certificate

        lab.server.private_key.write_text("not a key")  # a broken reload keeps serving
        server.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert served_certificate(server.device_url) == renewed.certificate
        assert served_certificate(server.admin_url) == renewed.certificate
        assert "TLS reload failed" in server.log
    finally:
        server.stop()


def test_large_apply_checks_every_voucher_in_worker_processes(tmp_path: Path) -> None:
    """Past the threshold the server checks vouchers in parallel: a bad one is still named and
    nothing is stored; a good batch is stored whole."""
    manufacturer = pki.create_root_ca("Bulk Manufacturer CA")
    masa = pki.issue_signing_certificate(manufacturer, "Bulk MASA")
    owner_ca = pki.create_root_ca("Bulk Owner CA")
    serials = [f"BULK-{number:04d}" for number in range(600)]

    def voucher_for(serial: str) -> str:
        signed = sign_voucher(create_voucher(serial, owner_ca.certificate), masa)
        return base64.b64encode(signed).decode()

    devices = {serial: {"voucher": voucher_for(serial)} for serial in serials}
    devices["BULK-0457"] = {"voucher": voucher_for("SOMEONE-ELSE")}
    with running_server(tmp_path / "server") as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        url = f"{server.admin_url}/api/v1/state"
        refused = requests.post(
            url, json={"resources": {"device": devices}}, headers=headers, timeout=120
        )
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert error["field"] == "device[BULK-0457].voucher"
        assert "'SOMEONE-ELSE', not this device ('BULK-0457')" in error["message"]
        assert requests.get(url, headers=headers, timeout=30).json()["resources"]["device"] == {}

        devices["BULK-0457"] = {"voucher": voucher_for("BULK-0457")}
        stored = requests.post(
            url, json={"resources": {"device": devices}}, headers=headers, timeout=120
        )
        assert stored.status_code == 200, stored.text
        state = requests.get(url, headers=headers, timeout=30).json()["resources"]["device"]
        assert sorted(state) == serials
        assert state["BULK-0457"]["voucher"] == devices["BULK-0457"]["voucher"]


def test_unsigned_flow_for_a_device_that_trusts_the_server(lab: LabPki, tmp_path: Path) -> None:
    """`signing: when-requested` and a device that authenticated the server over TLS: the
    onboarding information comes unsigned, without owner certificate or voucher."""
    with running_server(tmp_path / "server", lab=lab) as server:
        server.apply(base_resources(lab, {**ONBOARDING, "signing": "when-requested"}))
        files = lab.devices[SERIAL].idevid
        raw = requests.post(
            f"{server.device_url}/restconf/operations/ietf-sztp-bootstrap-server:"
            "get-bootstrapping-data",
            headers={"Content-Type": "application/yang-data+json"},
            cert=(str(files.certificate), str(files.private_key)),
            verify=str(lab.tls_ca.certificate),
            timeout=10,
        )
        assert raw.status_code == 200, raw.text
        assert set(raw.json()["ietf-sztp-bootstrap-server:output"]) == {"conveyed-information"}
        result = simulate_lab_device(lab, server.device_url, SERIAL, tmp_path / "device")
        assert result.succeeded, result.reason
        assert device_status(server) == "complete"
        # The same profile still signs for a device that asks (it does not trust the server).
        untrusting = simulate_lab_device(
            lab, server.device_url, SERIAL, tmp_path / "untrusting", server_ca=None
        )
        assert untrusting.succeeded, untrusting.reason


def test_selection_rules_pick_the_profile_by_what_the_device_reports(
    lab: LabPki, tmp_path: Path
) -> None:
    resources = base_resources(lab, ONBOARDING)
    resources["profile"]["legacy"] = {  # type: ignore[index]
        "type": "onboarding",
        "configuration": "legacy firmware path\n",
    }
    device = resources["device"][SERIAL]  # type: ignore[index]
    device["selection"] = [{"os_name": "LabOS", "os_version": "0.*", "profile": "legacy"}]
    with running_server(tmp_path / "server", lab=lab) as server:
        server.apply(resources)
        old = simulate_lab_device(
            lab, server.device_url, SERIAL, tmp_path / "old", os_version="0.9"
        )
        new = simulate_lab_device(
            lab, server.device_url, SERIAL, tmp_path / "new", os_version="1.0"
        )
        assert old.succeeded and new.succeeded, (old.reason, new.reason)
        assert (tmp_path / "old" / "configuration").read_text() == "legacy firmware path\n"
        assert (tmp_path / "new" / "configuration").read_text() == "hostname s1\n"


def test_metrics_count_requests_and_reports(lab: LabPki, tmp_path: Path) -> None:
    with running_server(tmp_path / "server", lab=lab) as server:
        server.apply(base_resources(lab, ONBOARDING))
        assert simulate_lab_device(lab, server.device_url, SERIAL, tmp_path / "device").succeeded
        metrics = requests.get(
            f"{server.admin_url}/metrics",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        ).text
        assert 'sztp_requests_total{rpc="get-bootstrapping-data",status="200"} 1' in metrics
        assert 'sztp_progress_reports_total{progress_type="bootstrap-complete"} 1' in metrics
        assert "# TYPE sztp_authentication_failures_total counter" in metrics

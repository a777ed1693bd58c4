"""RFC 9646 end to end on a real server over real TLS: the device offers to make a key, the
server asks for a CSR, checks it, has its LDevID issuer certify it and sends the certificate in
the device's rendered, signed configuration; the device accepts it only for its own key and
chained to the owner its voucher pins, and then holds an identity an HTTPS service that trusts
only the owner's LDevID CA accepts. Every way a device or an issuer can fail ends in the
answer the RFC allows, nothing recorded."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.x509.oid import NameOID

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import csr, restconf
from sztp.protocol.restconf import WireFormat
from sztp.simulator.ldevid import LDEVID_KEY, new_key
from sztp_testing import RunningServer, lab_voucher, running_server, simulate_lab_device

SERIALS = ("SN-L1", "SN-L2", "SN-L3", "SN-L4", "SN-L5", "SN-L6")
RPC = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
CONFIGURATION = "hostname {{ serial }}\ncertificate <<EOF\n{{ ldevid.chain }}EOF\n"


def device_spec(lab: LabPki, serial: str, profile: str) -> dict[str, Any]:
    return {
        "profile": profile,
        "voucher": base64.b64encode(lab_voucher(lab, serial)).decode(),
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("ldevid") / "pki", list(SERIALS))


@pytest.fixture(scope="module")
def server(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    issuers = [
        {
            "name": "lab-ldevid",
            "type": "builtin",
            "certificate_file": str(lab.ldevid_ca.certificate),
            "private_key_file": str(lab.ldevid_ca.private_key),
            "validity_days": 30,
        },
        {
            "name": "broken",
            "type": "hook",
            "command": ["/bin/sh", "-c", "echo 'the PKI is down' >&2; exit 3"],
        },
        {"name": "slow", "type": "hook", "command": ["/bin/sleep", "30"], "timeout": 1},
    ]
    directory = tmp_path_factory.mktemp("server")
    with running_server(directory, lab=lab, settings={"ldevid_issuers": issuers}) as running:
        profile = {"type": "onboarding", "templating": "jinja2", "configuration": CONFIGURATION}
        running.apply(
            {
                **lab.trust_resources(),
                "profile": {
                    "ldevid": {**profile, "ldevid_issuer": "lab-ldevid"},
                    "ec-only": {
                        **profile,
                        "ldevid_issuer": "lab-ldevid",
                        "ldevid_keys": ["ec-p384"],
                    },
                    "down": {**profile, "ldevid_issuer": "broken"},
                    "slow": {**profile, "ldevid_issuer": "slow"},
                },
                "device": {
                    "SN-L1": device_spec(lab, "SN-L1", "ldevid"),
                    "SN-L2": device_spec(lab, "SN-L2", "ldevid"),
                    "SN-L3": device_spec(lab, "SN-L3", "ec-only"),
                    "SN-L4": device_spec(lab, "SN-L4", "down"),
                    "SN-L6": device_spec(lab, "SN-L6", "slow"),
                    "SN-L5": {
                        **device_spec(lab, "SN-L5", "ldevid"),
                        "password": "correct horse battery staple",
                    },
                },
            }
        )
        yield running


def issued(server: RunningServer, serial: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{server.admin_url}/api/v1/devices/{serial}/certificates",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["certificates"]


@pytest.mark.parametrize(
    ("serial", "wire_format"), [("SN-L1", WireFormat.JSON), ("SN-L2", WireFormat.XML)]
)
def test_a_device_ends_with_an_ldevid_from_the_owners_ca(
    lab: LabPki, server: RunningServer, tmp_path: Path, serial: str, wire_format: WireFormat
) -> None:
    result = simulate_lab_device(
        lab,
        server.device_url,
        serial,
        tmp_path,
        ldevid_keys=("ec-p256", "rsa"),
        wire_format=wire_format,
    )
    assert result.succeeded, result.reason
    assert result.ldevid is not None
    assert any(
        check.data.endswith("chains to the owner's certificate the voucher pins")
        for check in result.server_checks
    ), result.server_checks
    chain = x509.load_pem_x509_certificates(result.ldevid.read_bytes())
    ldevid_ca = x509.load_pem_x509_certificate(lab.ldevid_ca.certificate.read_bytes())
    assert chain[0].subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == serial
    assert chain[0].issuer == ldevid_ca.subject
    assert (tmp_path / LDEVID_KEY).stat().st_mode & 0o777 == 0o600
    # The configuration the device applied carries it, as the template put it.
    assert (
        f"hostname {serial}\ncertificate <<EOF\n-----BEGIN CERTIFICATE-----"
        in (tmp_path / "configuration").read_text()
    )
    records = issued(server, serial)
    assert len(records) == 1
    assert records[0]["serial_number"] == format(chain[0].serial_number, "x")
    assert records[0]["issuer"] == "lab-ldevid" and records[0]["profile"] == "ldevid"
    assert records[0]["not_after"].startswith(chain[0].not_valid_after_utc.date().isoformat())


def test_the_ldevid_opens_a_service_that_trusts_only_the_ldevid_ca(
    lab: LabPki, server: RunningServer, tmp_path: Path
) -> None:
    result = simulate_lab_device(
        lab, server.device_url, "SN-L1", tmp_path, ldevid_keys=("ec-p256",)
    )
    assert result.succeeded and result.ldevid is not None, result.reason
    with owner_service(lab) as port:
        assert client_handshake(lab, port, result.ldevid, tmp_path / LDEVID_KEY) is None
        idevid = lab.devices["SN-L1"].idevid
        refused = client_handshake(lab, port, idevid.certificate, idevid.private_key)
        assert refused is not None


def test_a_device_that_cannot_make_an_allowed_key_is_refused(
    lab: LabPki, server: RunningServer, tmp_path: Path
) -> None:
    result = simulate_lab_device(
        lab, server.device_url, "SN-L3", tmp_path, ldevid_keys=("ec-p256", "rsa")
    )
    assert not result.succeeded
    assert "none of the device's key algorithms is allowed for its LDevID" in (result.reason or "")
    assert issued(server, "SN-L3") == []
    # With the profile's algorithm, the same device is served.
    result = simulate_lab_device(
        lab, server.device_url, "SN-L3", tmp_path / "again", ldevid_keys=("ec-p384",)
    )
    assert result.succeeded, result.reason


def test_a_device_that_asks_for_no_ldevid_is_told_what_to_send(
    lab: LabPki, server: RunningServer, tmp_path: Path
) -> None:
    result = simulate_lab_device(lab, server.device_url, "SN-L2", tmp_path / "plain")
    assert not result.succeeded
    assert "send csr-support (RFC 9646)" in (result.reason or "")


def test_an_issuer_that_fails_tells_the_device_to_retry_and_records_nothing(
    lab: LabPki, server: RunningServer
) -> None:
    with device_session(lab, "SN-L4") as session:
        key = new_key("ec-p256")
        asked = post(server, session, support())
        assert asked.status_code == 400
        request = restconf.parse_errors(asked.content, WireFormat.JSON)[0].csr_request
        assert request is not None
        answer = post(server, session, signed_csr(request, key, "SN-L4"))
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "30"
    assert "the LDevID could not be issued" in answer.text
    assert "PKI is down" not in answer.text  # the reason is the log's, not the device's
    assert "issuer broken: exit status 3: the PKI is down" in server.log
    assert issued(server, "SN-L4") == []


def test_a_slow_issuer_is_given_up_on_and_the_device_told_to_retry(
    lab: LabPki, server: RunningServer
) -> None:
    with device_session(lab, "SN-L6") as session:
        asked = post(server, session, support())
        request = restconf.parse_errors(asked.content, WireFormat.JSON)[0].csr_request
        assert request is not None
        started = time.monotonic()
        answer = post(server, session, signed_csr(request, new_key("ec-p256"), "SN-L6"))
        waited = time.monotonic() - started
    assert answer.status_code == 503, answer.text
    assert waited < 15, waited  # the issuer's timeout, not the hook's 30 s
    assert "issuer slow: no certificate within 1.0 s" in server.log
    assert issued(server, "SN-L6") == []


def test_a_csr_for_another_serial_is_refused(lab: LabPki, server: RunningServer) -> None:
    with device_session(lab, "SN-L1") as session:
        asked = post(server, session, support())
        request = restconf.parse_errors(asked.content, WireFormat.JSON)[0].csr_request
        assert request is not None
        forged = csr.CsrRequest(
            key_algorithm=request.key_algorithm,
            format=request.format,
            cert_req_info=csr.build_cert_req_info(
                x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-L2")]),
                request.key_algorithm or b"",
            ),
        )
        answer = post(server, session, signed_csr(forged, new_key("ec-p256"), "SN-L1"))
    assert answer.status_code == 400, answer.text
    assert "the CSR is not acceptable" in answer.text
    assert "invalid-value" in answer.text


def test_a_device_that_logs_in_with_a_password_gets_no_ldevid(
    lab: LabPki, server: RunningServer
) -> None:
    with requests.Session() as session:
        session.verify = str(lab.tls_ca.certificate)
        session.auth = ("SN-L5", "correct horse battery staple")
        answer = post(server, session, support())
    assert answer.status_code == 403, answer.text
    assert "only to a device that authenticates with its IDevID" in answer.text


@pytest.mark.parametrize("dry_run", [True, False])
def test_a_profile_naming_an_issuer_the_server_lacks_is_refused_at_write_time(
    server: RunningServer, dry_run: bool
) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    before = server.client().get("profile", "ldevid")
    profile = {
        "type": "onboarding",
        "templating": "jinja2",
        "configuration": CONFIGURATION,
        "ldevid_issuer": "corporate-pki",
    }
    for name in ("corporate", "ldevid"):  # a new profile, and one stored
        answer = requests.post(
            f"{server.admin_url}/api/v1/state",
            params={"dry_run": str(dry_run).lower()},
            json={"resources": {"profile": {name: profile}}},
            headers=headers,
            timeout=30,
        )
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["field"].endswith("].ldevid_issuer"), error
        assert "no LDevID issuer named 'corporate-pki'" in error["message"]
        assert "broken, lab-ldevid, slow" in error["message"]
    assert server.client().get("profile", "ldevid") == before
    missing = requests.get(
        f"{server.admin_url}/api/v1/profiles/corporate", headers=headers, timeout=30
    )
    assert missing.status_code == 404


# ---- helpers


def support() -> restconf.GetBootstrappingDataInput:
    return restconf.GetBootstrappingDataInput(
        csr_support=csr.CsrSupport(
            key_algorithms=(csr.KEY_ALGORITHMS["ec-p256"],), formats=(csr.P10_CSR,)
        )
    )


def signed_csr(
    request: csr.CsrRequest, key: Any, serial: str
) -> restconf.GetBootstrappingDataInput:
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
    der = csr.sign_cert_req_info(request.cert_req_info, subject, key)
    return restconf.GetBootstrappingDataInput(csr=csr.Csr(csr.P10_CSR, der))


def post(
    server: RunningServer, session: requests.Session, body: restconf.GetBootstrappingDataInput
) -> requests.Response:
    return session.post(
        f"{server.device_url}{RPC}",
        data=restconf.encode_get_bootstrapping_data_input(body, WireFormat.JSON),
        headers={"Content-Type": WireFormat.JSON.media_type, "Accept": WireFormat.JSON.media_type},
        # Given per request: an environment's REQUESTS_CA_BUNDLE would override the session's.
        verify=session.verify,
        timeout=30,
    )


class device_session:
    """An HTTPS session presenting the device's IDevID."""

    def __init__(self, lab: LabPki, serial: str) -> None:
        files = lab.devices[serial].idevid
        self.session = requests.Session()
        self.session.verify = str(lab.tls_ca.certificate)
        self.session.cert = (str(files.certificate), str(files.private_key))

    def __enter__(self) -> requests.Session:
        return self.session

    def __exit__(self, *exc: object) -> None:
        self.session.close()


class owner_service:
    """A TLS service on loopback that requires a client certificate from the owner's LDevID
    CA alone; yields its port."""

    def __init__(self, lab: LabPki) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(lab.server.certificate), str(lab.server.private_key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(str(lab.ldevid_ca.certificate))
        # The LDevID CA is an intermediate: trusted as it is, not for the owner root above it.
        self.context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(connection, server_side=True) as tls:
                    tls.sendall(b"welcome\n")
            except (ssl.SSLError, OSError):
                connection.close()

    def __enter__(self) -> int:
        self.thread.start()
        return int(self.listener.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def client_handshake(lab: LabPki, port: int, certificate: Path, key: Path) -> str | None:
    """None when the service let the client in (and greeted it), else why not."""
    context = ssl.create_default_context(cafile=str(lab.tls_ca.certificate))
    context.load_cert_chain(str(certificate), str(key))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            greeting = tls.recv(64)
    except (ssl.SSLError, OSError) as exc:
        return str(exc)
    return None if greeting == b"welcome\n" else f"no greeting: {greeting!r}"

"""sztp-server end to end: a real server subprocess on loopback TLS, driven by the admin API
and by the device simulator (the RFC 8572 client), with a real HTTPS file server for images.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import signal
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp.simulator import DeviceIdentity, SimulatorConfig, simulate
from sztp_testing import RunningServer, run_sztpctl, running_server, start_server

IMAGE = b"LabOS 2.0 image bytes\n" * 100
GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
REPORT = "/restconf/operations/ietf-sztp-bootstrap-server:report-progress"
JSON_TYPE = "application/yang-data+json"


@dataclass
class Site:
    lab: LabPki
    server: RunningServer
    image_url: str

    @property
    def device_url(self) -> str:
        return self.server.device_url

    def admin(self, method: str, path: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.server.token}"}
        return requests.request(
            method, f"{self.server.admin_url}{path}", headers=headers, timeout=30, **kwargs
        )

    def device_session(
        self, serial: str | None = None, lab: LabPki | None = None
    ) -> requests.Session:
        """HTTPS to the device API, trusting the lab TLS CA, with `serial`'s IDevID if given."""
        session = requests.Session()
        # Environment CA bundles (REQUESTS_CA_BUNDLE) would override session.verify.
        session.trust_env = False
        session.verify = str(self.lab.tls_ca.certificate)
        if serial is not None:
            files = (lab or self.lab).devices[serial].idevid
            session.cert = (str(files.certificate), str(files.private_key))
        return session


class _ImageHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def file_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LabPki]]:
    root = tmp_path_factory.mktemp("e2e")
    lab = write_lab_pki(
        root / "pki", ["SN-0001", "SN-0002", "SN-0003", "SN-0004"], hw_model="DPU-LAB"
    )
    files = root / "files"
    files.mkdir()
    (files / "labos-2.0.img").write_bytes(IMAGE)
    handler = lambda *args: _ImageHandler(*args, directory=str(files))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(lab.server.certificate), str(lab.server.private_key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/labos-2.0.img", lab
    httpd.shutdown()


@pytest.fixture(scope="module")
def site(file_server: tuple[str, LabPki]) -> Iterator[Site]:
    image_url, lab = file_server
    with running_server(lab.directory.parent / "server", lab=lab) as server:
        yield Site(lab=lab, server=server, image_url=image_url)


def pem(path: Path) -> str:
    return path.read_text()


def voucher_b64(lab: LabPki, serial: str) -> str:
    masa = lab.masa.load()
    owner_ca = pki.load_certificates_pem(lab.owner_ca.certificate.read_bytes())[0]
    return base64.b64encode(sign_voucher(create_voucher(serial, owner_ca), masa)).decode()


def fleet(site: Site) -> dict[str, object]:
    lab = site.lab
    owner_chain = pem(lab.owner.certificate) + pem(lab.owner_ca.certificate)
    return {
        "trust-anchor": {"manufacturer": {"certificates": pem(lab.manufacturer_ca.certificate)}},
        "owner": {
            "default": {"certificate_chain": owner_chain, "private_key": pem(lab.owner.private_key)}
        },
        "image": {
            "labos-2.0": {
                "os_name": "LabOS",
                "os_version": "2.0",
                "download_uris": [site.image_url],
                "sha256": hashlib.sha256(IMAGE).hexdigest(),
            }
        },
        "profile": {
            "dpu-day0": {
                "type": "onboarding",
                "image": "labos-2.0",
                "configuration": "hostname dpu\n",
                "reporting_level": "verbose",
            }
        },
        "device": {
            "SN-0001": {"profile": "dpu-day0", "voucher": voucher_b64(lab, "SN-0001")},
            "SN-0002": {"profile": "dpu-day0", "voucher": voucher_b64(lab, "SN-0002")},
            "SN-0003": {
                "profile": "dpu-day0",
                "voucher": voucher_b64(lab, "SN-0003"),
                "password": "correct horse battery staple",
            },
        },
    }


@pytest.fixture(scope="module")
def loaded(site: Site) -> Site:
    response = site.admin("POST", "/api/v1/state", json={"resources": fleet(site)})
    assert response.status_code == 200, response.text
    return site


def identity(site: Site, serial: str, **changes: object) -> DeviceIdentity:
    files = site.lab.devices[serial].idevid
    fields: dict[str, object] = {
        "serial_number": serial,
        "idevid_certificate": files.certificate,
        "idevid_key": files.private_key,
        "hw_model": "DPU-LAB",
        "os_name": "LabOS",
        "os_version": "1.0",
    }
    fields.update(changes)
    return DeviceIdentity(**fields)  # type: ignore[arg-type]


def simulator_config(site: Site, work_dir: Path, **changes: object) -> SimulatorConfig:
    fields: dict[str, object] = {
        "bootstrap_uris": (site.device_url,),
        "trust_anchors": tuple(
            pki.load_certificates_pem(site.lab.manufacturer_ca.certificate.read_bytes())
        ),
        "server_ca": site.lab.tls_ca.certificate,
        "file_server_ca": site.lab.tls_ca.certificate,
        "work_dir": work_dir,
        "timeout": 10.0,
    }
    fields.update(changes)
    return SimulatorConfig(**fields)  # type: ignore[arg-type]


def test_signed_flow_completes_and_status_shows_it(loaded: Site, tmp_path: Path) -> None:
    result = simulate(simulator_config(loaded, tmp_path), identity(loaded, "SN-0001"))
    assert result.succeeded, result.reason
    assert result.os_version == "2.0"
    assert (tmp_path / "images").is_dir()
    status = loaded.admin("GET", "/api/v1/devices/SN-0001/status")
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "complete"
    reports = loaded.admin("GET", "/api/v1/devices/SN-0001/progress").text
    assert "boot-image-installed-rebooting" in reports
    assert "bootstrap-complete" in reports


def test_untrusted_server_gets_signed_data_only(loaded: Site, tmp_path: Path) -> None:
    """Without the server's CA the device sends signed-data-preferred and still succeeds."""
    config = simulator_config(loaded, tmp_path, server_ca=None)
    result = simulate(config, identity(loaded, "SN-0002"))
    assert result.succeeded, result.reason


def test_basic_auth_device(loaded: Site) -> None:
    session = loaded.device_session()
    good = session.post(
        f"{loaded.device_url}{GET_DATA}",
        auth=("SN-0003", "correct horse battery staple"),
        headers={"Content-Type": JSON_TYPE},
        data=b"",
        timeout=10,
    )
    assert good.status_code == 200, good.text
    assert "ietf-sztp-bootstrap-server:output" in good.json()
    wrong = session.post(
        f"{loaded.device_url}{GET_DATA}",
        auth=("SN-0003", "wrong"),
        headers={"Content-Type": JSON_TYPE},
        timeout=10,
    )
    unknown = session.post(
        f"{loaded.device_url}{GET_DATA}",
        auth=("SN-9999", "wrong"),
        headers={"Content-Type": JSON_TYPE},
        timeout=10,
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content  # nothing tells which serials exist
    assert wrong.json()["ietf-restconf:errors"]["error"][0]["error-tag"] == "access-denied"


def test_device_cannot_claim_another_serial(loaded: Site) -> None:
    session = loaded.device_session("SN-0002")
    response = session.post(
        f"{loaded.device_url}{GET_DATA}",
        auth=("SN-0003", "correct horse battery staple"),
        headers={"Content-Type": JSON_TYPE},
        timeout=10,
    )
    assert response.status_code == 401


def test_each_device_gets_its_own_voucher(loaded: Site) -> None:
    for serial in ("SN-0001", "SN-0002"):
        response = loaded.device_session(serial).post(
            f"{loaded.device_url}{GET_DATA}", headers={"Content-Type": JSON_TYPE}, timeout=10
        )
        assert response.status_code == 200, response.text
        output = response.json()["ietf-sztp-bootstrap-server:output"]
        voucher = base64.b64decode(output["ownership-voucher"])
        assert serial.encode() in voucher
        other = "SN-0002" if serial == "SN-0001" else "SN-0001"
        assert other.encode() not in voucher


def test_idevid_from_an_unknown_ca_is_refused(loaded: Site, tmp_path: Path) -> None:
    rogue = write_lab_pki(tmp_path / "rogue", ["SN-0001"])
    session = loaded.device_session("SN-0001", lab=rogue)
    try:
        response = session.post(
            f"{loaded.device_url}{GET_DATA}", headers={"Content-Type": JSON_TYPE}, timeout=10
        )
    except (requests.exceptions.SSLError, requests.exceptions.ConnectionError):
        # Refused by TLS: the CA is not among the trust anchors (with TLS 1.3 the alert
        # arrives after the handshake, as a closed connection).
        return
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        (JSON_TYPE, b"{not json", 400),
        (JSON_TYPE, b'{"ietf-sztp-bootstrap-server:input": {"surprise": 1}}', 400),
        ("application/yang-data+xml", b"<input><unclosed></input>", 400),
        ("text/plain", b"hello", 415),
        (
            JSON_TYPE,
            b'{"ietf-sztp-bootstrap-server:input": {"hw-model": "' + b"x" * 2_000_000 + b'"}}',
            413,
        ),
    ],
)
def test_malformed_requests_get_4xx(
    loaded: Site, content_type: str, body: bytes, status: int
) -> None:
    response = loaded.device_session("SN-0001").post(
        f"{loaded.device_url}{GET_DATA}",
        headers={"Content-Type": content_type},
        data=body,
        timeout=10,
    )
    assert response.status_code == status, response.text


def test_bad_progress_report_is_refused(loaded: Site) -> None:
    response = loaded.device_session("SN-0001").post(
        f"{loaded.device_url}{REPORT}",
        headers={"Content-Type": JSON_TYPE},
        data=json.dumps(
            {"ietf-sztp-bootstrap-server:input": {"progress-type": "made-up"}}
        ).encode(),
        timeout=10,
    )
    assert response.status_code == 400
    error = response.json()["ietf-restconf:errors"]["error"][0]
    assert error["error-tag"] == "invalid-value"


def test_a_late_report_after_bootstrap_complete_leaves_the_device_complete(loaded: Site) -> None:
    session = loaded.device_session("SN-0002")

    def send(progress_type: str) -> None:
        body = {"ietf-sztp-bootstrap-server:input": {"progress-type": progress_type}}
        response = session.post(
            f"{loaded.device_url}{REPORT}",
            headers={"Content-Type": JSON_TYPE},
            data=json.dumps(body).encode(),
            timeout=10,
        )
        assert response.status_code == 204, response.text

    def status() -> dict[str, object]:
        response = loaded.admin("GET", "/api/v1/devices/SN-0002/status")
        assert response.status_code == 200, response.text
        return dict(response.json())

    for progress_type in ("bootstrap-initiated", "config-complete", "bootstrap-complete"):
        send(progress_type)
    attempts = status()["attempts"]
    send("config-complete")  # retried or delayed after the attempt ended
    late = status()
    assert (late["status"], late["attempts"]) == ("complete", attempts)
    assert late["last_report"]["progress_type"] == "bootstrap-complete"  # type: ignore[index]
    listed = loaded.admin("GET", "/api/v1/devices", params={"status": "complete"})
    assert "SN-0002" in [device["name"] for device in listed.json()]
    history = loaded.admin("GET", "/api/v1/devices/SN-0002/progress").json()
    last_attempt = history["attempts"][-1]
    assert last_attempt["attempt"] == attempts
    assert [report["progress_type"] for report in last_attempt["reports"]][-2:] == [
        "bootstrap-complete",
        "config-complete",
    ]
    send("bootstrap-initiated")  # a new attempt does count
    again = status()
    assert (again["status"], again["attempts"]) == ("in-progress", attempts + 1)  # type: ignore[operator]


def test_host_meta_names_the_restconf_root(loaded: Site) -> None:
    response = loaded.device_session("SN-0001").get(
        f"{loaded.device_url}/.well-known/host-meta", timeout=10
    )
    assert response.status_code == 200
    assert 'rel="restconf"' in response.text
    assert 'href="/restconf"' in response.text


def test_sigterm_stops_the_server_cleanly(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=20) == 0, server.log
    assert '"event": "stopped"' in server.log
    assert server.token_file.stat().st_mode & 0o777 == 0o600
    assert server.token not in server.log  # the token itself never reaches the log


def test_stale_token_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    server = start_server(tmp_path / "first")
    server.stop()
    (tmp_path / "first" / "state" / "sztp.db").unlink()
    with pytest.raises(RuntimeError, match="exists but the database has no API token"):
        start_server(tmp_path / "first")


def test_presigned_data_is_served_and_verifies(loaded: Site, tmp_path: Path) -> None:
    """The owner signs offline; the server stores and serves the artifacts as they are."""
    lab = loaded.lab
    voucher = tmp_path / "SN-0004.vcj"
    voucher.write_bytes(base64.b64decode(voucher_b64(lab, "SN-0004")))
    image = tmp_path / "image.bin"
    image.write_bytes(IMAGE)
    presigned = tmp_path / "SN-0004.json"
    run_sztpctl(
        "bootstrap-data", "sign", "--owner-cert", lab.owner.certificate,
        "--owner-key", lab.owner.private_key, "--voucher", voucher, "--os-name", "LabOS",
        "--os-version", "2.0", "--image-uri", loaded.image_url, "--image-file", image,
        "-o", presigned, env=os.environ,
    )  # fmt: skip
    response = loaded.admin(
        "PUT", "/api/v1/devices/SN-0004", json={"spec": {"presigned": presigned.read_text()}}
    )
    assert response.status_code == 201, response.text
    result = simulate(simulator_config(loaded, tmp_path / "device"), identity(loaded, "SN-0004"))
    assert result.succeeded, result.reason
    assert result.os_version == "2.0"


def test_presigned_data_for_another_serial_is_refused(loaded: Site, tmp_path: Path) -> None:
    lab = loaded.lab
    voucher = tmp_path / "SN-0001.vcj"
    voucher.write_bytes(base64.b64decode(voucher_b64(lab, "SN-0001")))
    presigned = tmp_path / "SN-0001.json"
    run_sztpctl(
        "bootstrap-data", "sign", "--owner-cert", lab.owner.certificate,
        "--owner-key", lab.owner.private_key, "--voucher", voucher,
        "--configuration", voucher, "-o", presigned, env=os.environ,
    )  # fmt: skip
    before = loaded.admin("GET", "/api/v1/devices/SN-0002").json()
    response = loaded.admin(
        "PUT", "/api/v1/devices/SN-0002", json={"spec": {"presigned": presigned.read_text()}}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "device[SN-0002].presigned"
    assert "SN-0001" in error["message"]
    assert loaded.admin("GET", "/api/v1/devices/SN-0002").json() == before

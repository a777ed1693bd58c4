"""sztp-agent against a real sztp-server and HTTPS file server: the `ztp` command run as a
device runs it (a process per boot), the shipped install handlers, a real image archive, a
reboot command that records the reboot, the status file and the server's view of the device."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol.dhcp import encode_uri_list
from sztp.simulator import WARNING_EXIT_STATUS, generate_ssh_host_key
from sztp_testing import ROOT, RunningServer, free_port, lab_voucher, running_server

SERIAL = "SN-AGENT-1"
HANDLERS = ROOT / "agent" / "sztp_agent" / "data" / "handlers"
PRE_SCRIPT = b'#!/bin/sh\necho "pre: serial $SZTP_SERIAL_NUMBER"\n'
POST_SCRIPT = f"#!/bin/sh\necho fan tray 2 slow\nexit {WARNING_EXIT_STATUS}\n".encode()
CONFIGURATION = "hostname dpu-agent-1\n"


def image_archive(version: str) -> bytes:
    """A LabOS root-file-system overlay: its etc/os-release names the version it installs.
    The same bytes every time (no time in the gzip header), so its SHA-256 is known."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in (
            ("etc/os-release", f'NAME="LabOS"\nVERSION_ID="{version}"\n'),
            ("opt/labos/release", f"{version}\n"),
        ):
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)


@dataclass
class Device:
    """A device's files: its configuration, state, root file system and reboot record."""

    directory: Path
    config: Path

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def reboots(self) -> list[str]:
        record = self.directory / "reboots"
        return record.read_text().splitlines() if record.exists() else []

    def ztp(
        self, *arguments: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`ztp` run as the device runs it, in this process's environment or `env`."""
        return subprocess.run(
            [sys.executable, "-m", "sztp_agent", "--config", str(self.config), *arguments],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )

    def status(self) -> dict[str, Any]:
        shown = self.ztp("status", "--verbose", "-o", "json")
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)

    def running(self) -> str:
        text = (self.root / "etc" / "os-release").read_text()
        return dict(line.split("=", 1) for line in text.splitlines())["VERSION_ID"].strip('"')


def make_device(lab: LabPki, directory: Path, uris: list[str], **settings: Any) -> Device:
    (directory / "root" / "etc").mkdir(parents=True)
    (directory / "root" / "etc" / "os-release").write_text('NAME="LabOS"\nVERSION_ID="1.0"\n')
    keys = directory / "ssh"
    keys.mkdir()
    _, public_line = generate_ssh_host_key()
    (keys / "ssh_host_ed25519_key.pub").write_bytes(public_line)
    files = lab.devices[SERIAL].idevid
    config = {
        "idevid_certificate": str(files.certificate),
        "idevid_key": str(files.private_key),
        "trust_anchors": str(lab.manufacturer_ca.certificate),
        "server_ca": str(lab.tls_ca.certificate),
        "file_server_ca": str(lab.tls_ca.certificate),
        "bootstrap_uris": uris,
        "dhcp": False,
        "os_release": "root/etc/os-release",
        "state_dir": "state",
        "handlers_dir": str(HANDLERS),
        "handler_environment": {
            "SZTP_INSTALL_ROOT": str(directory / "root"),
            "SZTP_CONFIG_FILE": str(directory / "root" / "etc" / "dpu.conf"),
        },
        "reboot_command": ["sh", "-c", f"date >> {directory / 'reboots'}"],
        "ssh_host_keys": str(keys / "ssh_host_*_key.pub"),
        "attempts": 1,
        "retry_seconds": 0.1,
        "timeout": 10,
        **settings,
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return Device(directory, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("agent-pki"), [SERIAL])


@pytest.fixture(scope="module")
def file_server(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS file server (the project's, with the lab's server certificate) serving
    labos-2.0.tar.gz; its base URL."""
    files = tmp_path_factory.mktemp("agent-files")
    (files / "labos-2.0.tar.gz").write_bytes(image_archive("2.0"))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "https_file_server.py"),
            str(files),
            str(port),
            str(lab.server.certificate),
            str(lab.server.private_key),
        ]
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the file server did not start"
            time.sleep(0.05)
    yield f"https://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def resources(
    lab: LabPki, image_url: str, sha256: str, *, serial: str = SERIAL, **profile: Any
) -> dict[str, Any]:
    return {
        **lab.trust_resources(),
        "image": {
            "labos-2.0": {
                "os_name": "LabOS",
                "os_version": "2.0",
                "download_uris": [image_url],
                "sha256": sha256,
            }
        },
        "profile": {
            "day0": {
                "type": "onboarding",
                "image": "labos-2.0",
                "pre_configuration_script": PRE_SCRIPT.decode(),
                "configuration": CONFIGURATION,
                "post_configuration_script": POST_SCRIPT.decode(),
                "reporting_level": "verbose",
                **profile,
            }
        },
        "device": {
            serial: {
                "profile": "day0",
                "voucher": base64.b64encode(lab_voucher(lab, serial)).decode(),
            }
        },
    }


def server_reports(server: RunningServer, serial: str = SERIAL) -> list[dict[str, Any]]:
    response = requests.get(
        f"{server.admin_url}/api/v1/devices/{serial}/progress",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return [report for attempt in response.json()["attempts"] for report in attempt["reports"]]


def test_the_agent_installs_reboots_resumes_and_completes(
    lab: LabPki, file_server: str, tmp_path: Path
) -> None:
    image = image_archive("2.0")
    with running_server(tmp_path / "server", lab=lab) as server:
        url = f"{file_server}/labos-2.0.tar.gz"
        server.apply(resources(lab, url, hashlib.sha256(image).hexdigest()))
        device = make_device(lab, tmp_path / "device", [server.device_url])

        first_boot = device.ztp("boot")
        assert first_boot.returncode == 0, first_boot.stderr
        # The lab writes the IDevID key 0600: no warning about it.
        assert "readable by others" not in first_boot.stderr
        status = device.status()
        assert status["state"] == "rebooting" and status["reboots"] == 1
        assert len(device.reboots) == 1
        assert device.running() == "2.0"  # the shipped handler unpacked the image
        installed = status["steps"][-1]
        assert installed["progress_type"] == "boot-image-installed-rebooting"
        assert f"unpacked labos-2.0.tar.gz into {device.root}" in installed["message"]
        assert not (device.root / "etc" / "dpu.conf").exists()  # nothing before the reboot

        second_boot = device.ztp("boot")
        assert second_boot.returncode == 0, second_boot.stderr
        status = device.status()
        assert status["state"] == "complete", status["reason"]
        assert (status["session"], status["attempt"], status["reboots"]) == (1, 1, 1)
        kinds = [step["progress_type"] for step in status["steps"]]
        after_reboot = kinds[kinds.index("boot-image-installed-rebooting") + 1 :]
        assert after_reboot == [
            "bootstrap-initiated",
            "parsing-initiated",
            "parsing-complete",
            "boot-image-initiated",
            "boot-image-complete",
            "pre-script-initiated",
            "pre-script-complete",
            "config-initiated",
            "config-complete",
            "post-script-initiated",
            "post-script-warning",
            "post-script-complete",
            "bootstrap-complete",
        ]
        messages = {step["progress_type"]: step["message"] for step in status["steps"]}
        assert messages["pre-script-complete"] == f"pre: serial {SERIAL}"
        assert "fan tray 2 slow" in messages["post-script-warning"]
        assert (device.root / "etc" / "dpu.conf").read_text() == CONFIGURATION
        assert all(step["reported"] for step in status["steps"])
        assert status["server_checks"] == [
            {
                "uri": server.device_url,
                "server_trusted": True,
                "data": "onboarding information signed: voucher, owner certificate and "
                "signature verified",
            }
        ]
        (download,) = status["downloads"]
        assert download["uri"] == url
        assert download["outcome"].startswith(f"{len(image):,} bytes in ")
        assert download["outcome"].endswith(" s, sha-256 verified")

        # The server saw it all, with the agent's account of the session.
        reports = server_reports(server)
        assert [report["progress_type"] for report in reports][-1] == "bootstrap-complete"
        initiated = [r["message"] for r in reports if r["progress_type"] == "bootstrap-initiated"]
        assert "attempt 1 of 1 (0 left), reboots 0" in initiated[0]
        assert "reboots 1" in initiated[-1] and f"{server.device_url} (configured)" in initiated[-1]
        public = (device.directory / "ssh" / "ssh_host_ed25519_key.pub").read_text().split()
        (key,) = reports[-1]["ssh_host_keys"]
        assert (key["algorithm"], key["key_data"]) == (public[0], public[1])

        # Bootstrapped: later boots have nothing to do, `ztp run` says so.
        third_boot = device.ztp("boot")
        assert third_boot.returncode == 0
        assert "nothing to do: already bootstrapped" in third_boot.stderr
        again = device.ztp("run")
        assert again.returncode == 0 and "already bootstrapped" in again.stdout
        text = device.ztp("status", "--verbose")
        assert "state:        complete" in text.stdout
        assert f"{server.device_url}  TLS trusted; onboarding information signed" in text.stdout
        assert "post-script-warning" in text.stdout
        logs = device.ztp("logs", "-n", "5")
        assert logs.returncode == 0 and "session 1 complete" in logs.stdout


def test_the_agent_gets_an_ldevid_for_a_key_it_makes_and_keeps_both(
    lab: LabPki, tmp_path: Path
) -> None:
    issuers = [
        {
            "name": "lab-ldevid",
            "type": "builtin",
            "certificate_file": str(lab.ldevid_ca.certificate),
            "private_key_file": str(lab.ldevid_ca.private_key),
        }
    ]
    settings = {"ldevid_issuers": issuers}
    with running_server(tmp_path / "server", lab=lab, settings=settings) as server:
        server.apply(
            resources(
                lab,
                "https://files.invalid/unused.img",
                "0" * 64,
                image=None,
                pre_configuration_script=None,
                post_configuration_script=None,
                templating="jinja2",
                ldevid_issuer="lab-ldevid",
                configuration="identity <<EOF\n{{ ldevid.chain }}EOF\n",
            )
        )
        device = make_device(lab, tmp_path / "device", [server.device_url], ldevid_keys=["ec-p384"])
        boot = device.ztp("boot")
        assert boot.returncode == 0, boot.stderr
        status = device.status()
        assert status["state"] == "complete", status["reason"]
    assert any(
        check["data"].endswith("chains to the owner's certificate the voucher pins")
        for check in status["server_checks"]
    ), status["server_checks"]
    work = device.state / "work"
    chain = x509.load_pem_x509_certificates((work / "ldevid.pem").read_bytes())
    key = serialization.load_pem_private_key((work / "ldevid.key").read_bytes(), None)
    assert (work / "ldevid.key").stat().st_mode & 0o777 == 0o600
    assert chain[0].public_key() == key.public_key()
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert chain[1].subject.rfc4514_string() == "CN=SZTP Lab LDevID CA"
    # The configuration the install handler applied holds it too.
    assert "-----BEGIN CERTIFICATE-----" in (device.root / "etc" / "dpu.conf").read_text()


def dhclient_lease(interface: str, uris: list[str], server_id: str, address: str) -> str:
    """A lease as ISC dhclient writes it with the shipped dhclient-sztp.conf (the form of
    tests/python/test_agent_leases.py's REAL_DHCLIENT4, captured from a real run)."""
    payload = ":".join(f"{octet:x}" for octet in encode_uri_list(uris))
    return (
        f'lease {{\n  interface "{interface}";\n  fixed-address {address};\n'
        "  option subnet-mask 255.255.255.0;\n"
        f"  option sztp-redirect {payload};\n"
        "  option dhcp-lease-time 600;\n"
        f"  option dhcp-server-identifier {server_id};\n"
        "  expire 6 2036/12/05 04:07:55;\n}\n"
    )


def test_the_agent_finds_the_server_in_a_dhcp_lease_and_bootstraps_again_when_moved(
    lab: LabPki, file_server: str, tmp_path: Path
) -> None:
    leases = tmp_path / "leases"
    leases.mkdir()
    lease_file = leases / "dhclient.sztp0.leases"
    with running_server(tmp_path / "server", lab=lab) as server:
        data = resources(lab, f"{file_server}/x", "00" * 32)
        del data["profile"]["day0"]["image"]
        server.apply(data)
        lease_file.write_text(
            dhclient_lease("sztp0", [server.device_url], "10.77.0.1", "10.77.0.100")
        )
        device = make_device(
            lab,
            tmp_path / "device",
            [],
            dhcp=True,
            dhclient_lease_dirs=[str(leases)],
            interfaces=["sztp0"],  # this test's lease alone, whatever the host has
            reprovision="network-change",
        )
        assert device.ztp("boot").returncode == 0
        status = device.status()
        assert status["state"] == "complete", status["reason"]
        assert status["discovered"] == [
            {
                "uri": server.device_url,
                "source": "DHCPv4 option 143",
                "interface": "sztp0",
                "client": "dhclient",
                "dhcp_server": "10.77.0.1",
                "network": "10.77.0.0/24",
            }
        ]
        initiated = [
            r["message"]
            for r in server_reports(server)
            if r["progress_type"] == "bootstrap-initiated"
        ]
        assert "(DHCPv4 option 143 on sztp0, DHCP server 10.77.0.1)" in initiated[0]

        # Same network at the next boot: nothing to do.
        assert "already bootstrapped" in device.ztp("boot").stderr
        # Another DHCP server and subnet: the device has moved, and bootstraps again.
        lease_file.write_text(
            dhclient_lease("sztp0", [server.device_url], "192.0.2.1", "192.0.2.100")
        )
        moved = device.ztp("boot")
        assert moved.returncode == 0, moved.stderr
        assert "the network differs" in moved.stderr
        again = device.status()
        assert (again["state"], again["session"]) == ("complete", 2)
        assert again["completed_on"][0]["dhcp_server"] == "192.0.2.1"


def test_a_tampered_image_ends_in_boot_image_error_and_an_unchanged_device(
    lab: LabPki, file_server: str, tmp_path: Path
) -> None:
    with running_server(tmp_path / "server", lab=lab) as server:
        url = f"{file_server}/labos-2.0.tar.gz"
        server.apply(resources(lab, url, hashlib.sha256(b"another image").hexdigest()))
        device = make_device(lab, tmp_path / "device", [server.device_url])
        boot = device.ztp("boot")
        assert boot.returncode == 1
        status = device.status()
        assert status["state"] == "failed"
        assert "sha-256 mismatch" in status["reason"]
        (download,) = status["downloads"]
        assert download["outcome"].startswith("failed: sha-256 mismatch")
        assert status["steps"][-1]["progress_type"] == "boot-image-error"
        assert device.running() == "1.0" and device.reboots == []
        assert server_reports(server)[-1]["progress_type"] == "boot-image-error"


def test_a_voucher_from_another_manufacturer_ends_in_parsing_error(
    lab: LabPki, file_server: str, tmp_path: Path
) -> None:
    """The device holds another manufacturer's trust anchor: the voucher the owner got for it
    does not verify, whoever the server is, and nothing of the onboarding is done."""
    other = write_lab_pki(tmp_path / "other-pki", [SERIAL])
    image = image_archive("2.0")
    with running_server(tmp_path / "server", lab=lab) as server:
        url = f"{file_server}/labos-2.0.tar.gz"
        server.apply(resources(lab, url, hashlib.sha256(image).hexdigest()))
        device = make_device(
            lab,
            tmp_path / "device",
            [server.device_url],
            trust_anchors=str(other.manufacturer_ca.certificate),
        )
        boot = device.ztp("boot")
        assert boot.returncode == 1
        status = device.status()
        assert status["state"] == "failed"
        assert [step["progress_type"] for step in status["steps"]] == [
            "bootstrap-initiated",
            "parsing-error",
        ]
        assert "voucher" in status["steps"][-1]["message"]
        assert device.running() == "1.0" and device.reboots == []
        assert not (device.root / "etc" / "dpu.conf").exists()
        assert server_reports(server)[-1]["progress_type"] == "parsing-error"


def test_an_untrusted_server_without_signed_data_is_not_obeyed(
    lab: LabPki, file_server: str, tmp_path: Path
) -> None:
    image = image_archive("2.0")
    with running_server(tmp_path / "server", lab=lab) as server:
        data = resources(lab, f"{file_server}/labos-2.0.tar.gz", hashlib.sha256(image).hexdigest())
        del data["device"][SERIAL]["voucher"]  # the server can only answer unsigned
        server.apply(data)
        open_key = tmp_path / "idevid.key"
        open_key.write_bytes(lab.devices[SERIAL].idevid.private_key.read_bytes())
        open_key.chmod(0o644)
        device = make_device(
            lab, tmp_path / "device", [server.device_url], server_ca=None, idevid_key=str(open_key)
        )
        boot = device.ztp("boot")
        assert boot.returncode == 1
        assert f"warning: {open_key} is readable by others (mode 0644): chmod 600" in boot.stderr
        status = device.status()
        assert status["state"] == "failed"
        assert device.running() == "1.0" and device.reboots == []
        assert not (device.root / "etc" / "dpu.conf").exists()
        assert not any(step["reported"] for step in status["steps"])
        (check,) = status["server_checks"]
        assert check["server_trusted"] is False
        assert check["data"].startswith("no data: get-bootstrapping-data failed")
        assert server_reports(server) == []  # nothing is reported to an untrusted server


def test_disable_stops_a_running_session_and_run_is_refused_until_enabled(
    lab: LabPki, tmp_path: Path
) -> None:
    # A server that takes connections and never answers: the session waits on it.
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    device = make_device(lab, tmp_path / "device", [f"https://127.0.0.1:{port}"], timeout=60)
    session = subprocess.Popen(
        [sys.executable, "-m", "sztp_agent", "--config", str(device.config), "run"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while device.status().get("session_pid") is None:
            assert time.monotonic() < deadline, "the session did not start"
            time.sleep(0.1)
        busy = device.ztp("run")
        assert busy.returncode == 3 and "already running" in busy.stderr
        disabled = device.ztp("disable")
        assert disabled.returncode == 0, disabled.stderr
        assert f"process {session.pid}" in disabled.stdout
        assert session.wait(timeout=10) == 1
    finally:
        if session.poll() is None:
            os.kill(session.pid, signal.SIGKILL)
        silent.close()
    status = device.status()
    assert status["state"] == "aborted" and status["reason"] == "stopped by SIGTERM"
    assert status["enabled"] is False and status["session_pid"] is None
    refused = device.ztp("run")
    assert refused.returncode == 1 and "ztp enable" in refused.stderr
    assert device.ztp("boot").returncode == 0  # disabled: nothing to do
    assert device.ztp("enable").returncode == 0
    assert device.status()["enabled"] is True


def test_a_session_stopped_mid_script_tells_the_server_and_kills_the_script(
    lab: LabPki, file_server: str, tmp_path: Path
) -> None:
    marker = tmp_path / "script-still-ran"
    # The sleep is a process of its own: it must go with the script, not outlive it.
    slow = f"#!/bin/sh\n(sleep 2; touch {marker}) &\nsleep 30\n"
    with running_server(tmp_path / "server", lab=lab) as server:
        data = resources(lab, f"{file_server}/x", "00" * 32, pre_configuration_script=slow)
        del data["profile"]["day0"]["image"]
        server.apply(data)
        device = make_device(lab, tmp_path / "device", [server.device_url])
        session = subprocess.Popen(
            [sys.executable, "-m", "sztp_agent", "--config", str(device.config), "run"],
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 20
            while not any(
                step["progress_type"] == "pre-script-initiated" for step in device.status()["steps"]
            ):
                assert time.monotonic() < deadline, "the script did not start"
                time.sleep(0.1)
            assert device.ztp("disable").returncode == 0
            assert session.wait(timeout=15) == 1
        finally:
            if session.poll() is None:
                os.kill(session.pid, signal.SIGKILL)
        status = device.status()
        assert status["state"] == "aborted"
        assert status["steps"][-1]["progress_type"] == "bootstrap-error"
        last = server_reports(server)[-1]
        assert (last["progress_type"], last["message"]) == ("bootstrap-error", "stopped by SIGTERM")
        time.sleep(3)
        assert not marker.exists()  # the script and all it started went with the session
        assert not (device.root / "etc" / "dpu.conf").exists()


def test_a_bad_configuration_is_named_not_a_traceback(tmp_path: Path) -> None:
    config = tmp_path / "agent.yaml"
    cases = {
        "idevid_key: k\ntrust_anchors: t\n": "idevid_certificate is required",
        "idevid_certificate: c\nidevid_key: k\ntrust_anchors: t\ncolour: red\n": "unknown",
        "idevid_certificate: c\nidevid_key: k\ntrust_anchors: t\nbootstrap_uris: [http://x]\n": (
            "bootstrap_uris"
        ),
        "idevid_certificate: c\nidevid_key: k\ntrust_anchors: t\nattempts: many\n": "attempts",
        "idevid_certificate: c\nidevid_key: k\ntrust_anchors: t\ndhcp: false\n": (
            "no way to find a bootstrap server"
        ),
        "[not, a, mapping]\n": "must be a mapping",
        "key: [unclosed\n": "not YAML",
    }
    for text, expected in cases.items():
        config.write_text(text)
        shown = subprocess.run(
            [sys.executable, "-m", "sztp_agent", "--config", str(config), "status"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert shown.returncode == 2, (text, shown.stderr)
        assert expected in shown.stderr and "Traceback" not in shown.stderr, shown.stderr
        assert str(config) in shown.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "sztp_agent", "--config", str(tmp_path / "none.yaml"), "status"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2 and "No such file" in missing.stderr


def test_check_names_what_would_stop_a_session(lab: LabPki, tmp_path: Path) -> None:
    device = make_device(lab, tmp_path / "device", ["https://127.0.0.1:9"])
    checked = device.ztp("check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"{device.config}: OK\n"
    broken = make_device(
        lab,
        tmp_path / "broken",
        ["https://127.0.0.1:9"],
        trust_anchors=str(tmp_path / "missing.pem"),
        handlers_dir=str(tmp_path),
    )
    shown = broken.ztp("check")
    assert shown.returncode == 2 and "Traceback" not in shown.stderr
    assert "trust_anchors: No such file or directory" in shown.stderr
    assert f"{tmp_path}/install-image is not an executable file" in shown.stderr
    assert broken.ztp("check", "--config-only").returncode == 0
    assert not (tmp_path / "broken" / "state").exists()  # a check writes nothing


def test_the_unit_file_runs_this_installation() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "sztp_agent", "systemd-unit"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"ExecStart={sys.executable} -m sztp_agent boot" in shown.stdout
    assert "ConditionPathExists=!/var/lib/sztp-agent/disabled" in shown.stdout

"""sztp-agent with its IDevID key in a TPM 2.0 (`idevid_key_store: tpm2`): a software TPM (swtpm)
behind a resource manager (tpm2-abrmd on a private D-Bus bus, as the kernel's /dev/tpmrm0 is on a
device), a storage key and an EC P-256 key made in it, a CSR the TPM signs and an IDevID the
lab's manufacturer CA issues for it. `ztp` runs as a device runs it, with the shipped OpenSSL
configuration as OPENSSL_CONF, and bootstraps against a real sztp-server. Without Debian's TPM
packages those tests skip; the setting and the unit are checked everywhere."""

from __future__ import annotations

import contextlib
import ctypes.util
import hashlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

import test_agent
from sztp.errors import PkiError
from sztp.labpki import LabPki
from sztp.protocol import pki
from sztp_agent.cli import systemd_unit
from sztp_agent.config import ConfigError, config_from_mapping
from sztp_agent.key_store import ENVIRONMENT_FILE, TSS2_KEY_BEGIN, openssl_config
from sztp_testing import (
    RunningServer,
    free_port,
    key_usage,
    leaf_certificate,
    running_server,
    stop_process,
)
from test_agent import SERIAL, Device, image_archive, make_device, resources, server_reports

# test_agent's lab PKI and HTTPS file server, asked for by name here too.
lab = test_agent.lab
file_server = test_agent.file_server

TPM_SERIAL = "SN-AGENT-TPM"
# The storage root key's persistent handle, as the TCG's provisioning guidance has it.
PARENT = "0x81000001"
TCTI = "tabrmd:bus_type=session"
# What the tests run, and the Debian package each comes from.
PROGRAMS = {
    "swtpm": "swtpm",
    "tpm2_createprimary": "tpm2-tools",
    "tpm2_evictcontrol": "tpm2-tools",
    "tpm2_getrandom": "tpm2-tools",
    "tpm2-abrmd": "tpm2-abrmd",
    "dbus-daemon": "dbus-daemon",
    "openssl": "openssl",
}
# tpm2-abrmd lives in /usr/sbin, which a user's PATH may lack.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


def missing_packages() -> list[str]:
    """The Debian packages a TPM for the tests needs that are not installed."""
    missing = {
        package
        for program, package in PROGRAMS.items()
        if shutil.which(program, path=SEARCH_PATH) is None
    }
    if "openssl" not in missing:
        shown = subprocess.run(
            ["openssl", "version", "-m"], capture_output=True, text=True, check=False
        ).stdout
        modules = re.search(r'MODULESDIR: "([^"]+)"', shown)
        if modules is None or not (Path(modules.group(1)) / "tpm2.so").exists():
            missing.add("tpm2-openssl")
    if ctypes.util.find_library("tss2-tcti-tabrmd") is None:
        missing.add("libtss2-tcti-tabrmd0")
    return sorted(missing)


@dataclass(frozen=True)
class Tpm:
    """A TPM behind its resource manager: `environment` reaches it (tpm2-tools and OpenSSL's
    tpm2 provider alike), without OPENSSL_CONF."""

    environment: dict[str, str]

    def run(self, *command: str, **variables: str) -> str:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**self.environment, **variables},
        )
        assert done.returncode == 0, f"{' '.join(command)}: {done.stderr}"
        return done.stdout

    def answers(self) -> bool:
        return (
            subprocess.run(
                ["tpm2_getrandom", "8"],
                capture_output=True,
                timeout=10,
                check=False,
                env=self.environment,
            ).returncode
            == 0
        )

    def agent_environment(self) -> dict[str, str]:
        """What /etc/default/sztp-agent gives the agent: the shipped OpenSSL configuration."""
        return {**self.environment, "OPENSSL_CONF": str(openssl_config())}


@contextlib.contextmanager
def started(
    command: list[str], log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process for the `with` block, ended (SIGTERM, then SIGKILL) however the block ends."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        yield process
    finally:
        stop_process(process)


def wait_until(ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while not ready():
        assert process.poll() is None, f"{process.args!r} exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{process.args!r} not ready:\n{log.read_text()}"
        time.sleep(0.05)


def free_port_pair() -> int:
    """A free port whose next one is free too: the swtpm TCTI finds the control channel there."""
    while True:
        port = free_port()
        with socket.socket() as probe, contextlib.suppress(OSError):
            probe.bind(("127.0.0.1", port + 1))
            return port


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


@pytest.fixture(scope="module")
def tpm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tpm]:
    """swtpm, a private D-Bus session bus and tpm2-abrmd in front of the TPM: bare swtpm has
    three object slots, fewer than a TLS handshake with a key in the TPM takes."""
    missing = missing_packages()
    if missing:
        pytest.skip(f"a software TPM needs Debian's {', '.join(missing)} (make test installs them)")
    directory = tmp_path_factory.mktemp("tpm")
    (directory / "state").mkdir()
    port = free_port_pair()
    bus = directory / "bus"
    environment = {
        **{name: value for name, value in os.environ.items() if name != "OPENSSL_CONF"},
        "DBUS_SESSION_BUS_ADDRESS": f"unix:path={bus}",
        "TPM2TOOLS_TCTI": TCTI,
        "TPM2OPENSSL_TCTI": TCTI,
    }
    tpm = Tpm(environment)
    with contextlib.ExitStack() as processes:
        log = directory / "swtpm.log"
        swtpm = processes.enter_context(
            started(
                [
                    "swtpm",
                    "socket",
                    "--tpm2",
                    "--server",
                    f"type=tcp,bindaddr=127.0.0.1,port={port}",
                    "--ctrl",
                    f"type=tcp,bindaddr=127.0.0.1,port={port + 1}",
                    "--tpmstate",
                    f"dir={directory / 'state'}",
                    "--flags",
                    "not-need-init,startup-clear",
                ],
                log,
            )
        )
        wait_until(lambda: listening(port), swtpm, log)
        log = directory / "dbus.log"
        dbus = processes.enter_context(
            started(
                [
                    "dbus-daemon",
                    "--session",
                    "--nofork",
                    "--nopidfile",
                    f"--address=unix:path={bus}",
                ],
                log,
            )
        )
        wait_until(bus.exists, dbus, log)
        log = directory / "abrmd.log"
        abrmd = processes.enter_context(
            started(
                [
                    str(shutil.which("tpm2-abrmd", path=SEARCH_PATH)),
                    "--session",
                    "--allow-root",
                    f"--tcti=swtpm:host=127.0.0.1,port={port}",
                ],
                log,
                environment,
            )
        )
        wait_until(tpm.answers, abrmd, log)
        yield tpm


@dataclass(frozen=True)
class TpmIdevid:
    key: Path  # the key's blob: the private key is in the TPM
    certificate: Path


@pytest.fixture(scope="module")
def idevid(tpm: Tpm, lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> TpmIdevid:
    """The device's IDevID made as docs/agent.md has it: a storage key at PARENT and the
    IDevID key under it, a CSR signed in the TPM, the certificate from the manufacturer CA."""
    directory = tmp_path_factory.mktemp("tpm-idevid")
    primary = directory / "primary.ctx"
    tpm.run(
        "tpm2_createprimary", "-Q", "-C", "o", "-g", "sha256", "-G", "ecc256", "-c", str(primary)
    )
    tpm.run("tpm2_evictcontrol", "-Q", "-C", "o", "-c", str(primary), PARENT)
    key = directory / "idevid.key"
    tpm.run(
        "openssl",
        "genpkey",
        "-provider",
        "tpm2",
        "-propquery",
        "?provider=tpm2",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "group:P-256",
        "-pkeyopt",
        f"parent:{PARENT}",
        "-out",
        str(key),
    )
    request = directory / "idevid.csr"
    tpm.run(
        "openssl",
        "req",
        "-new",
        "-key",
        str(key),
        "-subj",
        f"/CN={TPM_SERIAL}/serialNumber={TPM_SERIAL}",
        "-out",
        str(request),
        OPENSSL_CONF=str(openssl_config()),
    )
    # The request's public key as OpenSSL reads it, once it has checked the signature the TPM
    # made: cryptography refuses the NULL parameters tpm2-openssl writes after ecdsa-with-SHA256.
    public_pem = tpm.run("openssl", "req", "-in", str(request), "-verify", "-pubkey", "-noout")
    public_key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    certificate = leaf_certificate(
        lab.manufacturer_ca.load(),
        TPM_SERIAL,
        public_key,
        key_usage=key_usage(digital_signature=True),
        extended_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    path = directory / "idevid.pem"
    path.write_bytes(pki.certificate_to_pem(certificate))
    return TpmIdevid(key, path)


def tpm_device(pki_lab: LabPki, idevid: TpmIdevid, directory: Path, uris: list[str]) -> Device:
    return make_device(
        pki_lab,
        directory,
        uris,
        idevid_certificate=str(idevid.certificate),
        idevid_key=str(idevid.key),
        idevid_key_store="tpm2",
    )


def bootstrapping_requests(
    server: RunningServer, serial: str, expected: int
) -> list[dict[str, Any]]:
    """The flight recorder's get-bootstrapping-data events of `serial`, once `expected` of them
    are written (the recorder writes in batches) or the wait is over."""
    deadline = time.monotonic() + 10
    while True:
        response = requests.get(
            f"{server.admin_url}/api/v1/events",
            params={"serial": serial},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        events = [
            event for event in response.json()["events"] if event["rpc"] == "get-bootstrapping-data"
        ]
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        time.sleep(0.1)


def test_the_agent_bootstraps_with_its_idevid_key_in_the_tpm(
    tpm: Tpm,
    idevid: TpmIdevid,
    lab: LabPki,
    file_server: str,
    tmp_path: Path,
) -> None:
    # No private key in a file: a blob that only the TPM that made it can use.
    blob = idevid.key.read_bytes()
    assert blob.startswith(TSS2_KEY_BEGIN)
    with pytest.raises(PkiError, match="cannot load PEM private key"):
        pki.load_private_key_pem(blob)
    assert idevid.key.stat().st_mode & 0o777 == 0o600

    image = image_archive("2.0")
    with running_server(tmp_path / "server", lab=lab) as server:
        url = f"{file_server}/labos-2.0.tar.gz"
        server.apply(resources(lab, url, hashlib.sha256(image).hexdigest(), serial=TPM_SERIAL))
        device = tpm_device(lab, idevid, tmp_path / "device", [server.device_url])
        environment = tpm.agent_environment()
        checked = device.ztp("check", env=environment)
        assert checked.returncode == 0, checked.stderr

        first_boot = device.ztp("boot", env=environment)
        assert first_boot.returncode == 0, first_boot.stderr
        assert "readable by others" not in first_boot.stderr
        assert device.status()["state"] == "rebooting"
        assert device.running() == "2.0"
        second_boot = device.ztp("boot", env=environment)
        assert second_boot.returncode == 0, second_boot.stderr
        status = device.status()
        assert status["state"] == "complete", status["reason"]
        assert (status["serial_number"], status["reboots"]) == (TPM_SERIAL, 1)
        assert status["server_checks"][0]["server_trusted"] is True

        # The server authenticated the device by the TPM's certificate: the device has no
        # password, and no other certificate names this serial number.
        assert server_reports(server, TPM_SERIAL)[-1]["progress_type"] == "bootstrap-complete"
        served = bootstrapping_requests(server, TPM_SERIAL, expected=2)
        assert len(served) == 2  # once before the reboot, once after
        assert all(event["authenticated"] and event["status"] == 200 for event in served)


def test_check_names_what_a_key_in_the_tpm_needs(
    tpm: Tpm,
    idevid: TpmIdevid,
    lab: LabPki,
    tmp_path: Path,
) -> None:
    device = tpm_device(lab, idevid, tmp_path / "device", ["https://127.0.0.1:9"])

    def problems(env: dict[str, str], device: Device = device) -> str:
        checked = device.ztp("check", env=env)
        assert checked.returncode == 2 and "Traceback" not in checked.stderr, checked.stderr
        return checked.stderr

    # OPENSSL_CONF is read as Python starts: the agent can only say what to set, and where.
    shown = problems(tpm.environment)
    assert "idevid_key_store is tpm2 but OPENSSL_CONF is not set" in shown
    assert f"OPENSSL_CONF={openssl_config()}" in shown and str(ENVIRONMENT_FILE) in shown
    missing = tmp_path / "missing.cnf"
    assert f"OPENSSL_CONF names {missing}, which is not a file" in problems(
        {**tpm.environment, "OPENSSL_CONF": str(missing)}
    )
    # A configuration without the tpm2 provider: OpenSSL cannot read the blob.
    (tmp_path / "plain.cnf").write_text("openssl_conf = openssl_init\n[openssl_init]\n")
    shown = problems({**tpm.environment, "OPENSSL_CONF": str(tmp_path / "plain.cnf")})
    assert f"IDevID key {idevid.key}: OpenSSL cannot use it ([SSL] PEM lib)" in shown
    assert "tpm2 provider must be active (OPENSSL_CONF)" in shown

    environment = tpm.agent_environment()
    # OpenSSL proves through the TPM that the key is not the certificate's.
    other = lab.devices[SERIAL].idevid.certificate
    mismatched = make_device(
        lab,
        tmp_path / "mismatched",
        ["https://127.0.0.1:9"],
        idevid_certificate=str(other),
        idevid_key=str(idevid.key),
        idevid_key_store="tpm2",
    )
    assert f"IDevID key {idevid.key} does not match the certificate {other}" in problems(
        environment, mismatched
    )
    # The key file and the setting must agree, both ways.
    as_file = make_device(
        lab,
        tmp_path / "as-file",
        ["https://127.0.0.1:9"],
        idevid_certificate=str(idevid.certificate),
        idevid_key=str(idevid.key),
    )
    assert "is a TPM 2.0 key blob (TSS2 PRIVATE KEY): set idevid_key_store: tpm2" in problems(
        environment, as_file
    )
    in_file = make_device(
        lab, tmp_path / "in-file", ["https://127.0.0.1:9"], idevid_key_store="tpm2"
    )
    assert "is not a TPM 2.0 key blob (TSS2 PRIVATE KEY) although idevid_key_store is tpm2" in (
        problems(environment, in_file)
    )

    # A blob others can read: no secret off the device, but on it, a way to sign as it.
    readable = tmp_path / "readable.key"
    shutil.copyfile(idevid.key, readable)
    readable.chmod(0o644)
    shared = make_device(
        lab,
        tmp_path / "shared",
        ["https://127.0.0.1:9"],
        idevid_certificate=str(idevid.certificate),
        idevid_key=str(readable),
        idevid_key_store="tpm2",
    )
    checked = shared.ztp("check", env=environment)
    assert checked.returncode == 0, checked.stderr
    assert (
        f"warning: {readable} is readable by others (mode 0644): whoever reads it and may use "
        "the TPM signs as this device: chmod 600"
    ) in checked.stderr


def test_idevid_key_store_is_a_file_or_a_tpm(tmp_path: Path) -> None:
    settings = {"idevid_certificate": "c", "idevid_key": "k", "trust_anchors": "t"}
    assert config_from_mapping(settings, base=tmp_path).idevid_key_store == "file"
    tpm = config_from_mapping({**settings, "idevid_key_store": "tpm2"}, base=tmp_path)
    assert tpm.idevid_key_store == "tpm2"
    with pytest.raises(ConfigError, match="idevid_key_store must be one of file, tpm2"):
        config_from_mapping({**settings, "idevid_key_store": "pkcs11"}, base=tmp_path)


def test_the_unit_reads_the_optional_environment_file() -> None:
    """Where OPENSSL_CONF and TPM2OPENSSL_TCTI reach the agent before Python starts."""
    unit = systemd_unit("/opt/sztp-agent/bin/python -m sztp_agent").splitlines()
    assert f"EnvironmentFile=-{ENVIRONMENT_FILE}" in unit
    assert unit.index(f"EnvironmentFile=-{ENVIRONMENT_FILE}") < unit.index(
        "ExecStart=/opt/sztp-agent/bin/python -m sztp_agent boot"
    )
    shipped = openssl_config().read_text()
    assert "default_properties = ?tpm2.signature,tpm2.digest!=yes" in shipped

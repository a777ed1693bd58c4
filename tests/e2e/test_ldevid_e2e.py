"""An LDevID from bootstrapping, accepted by the owner's own service: sztp-agent, in the
device's namespace, finds the site's sztp-server through its real DHCP lease, bootstraps with
its IDevID on a profile whose builtin issuer is the owner's LDevID CA (RFC 9646), and keeps the
LDevID and its key. A real nginx that trusts only that CA (and the owner root it hangs from)
then admits the device presenting its LDevID, with `openssl s_client` from the device's
namespace, and refuses its IDevID and any other certificate of the owner's."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import NameOID

from e2e_lab import in_namespace
from e2e_site import (
    DHCP_URIS_V4,
    HW_MODEL,
    LDEVID_ISSUER,
    LDEVID_SERIAL,
    LDEVID_SERVICE_PORT,
    NETWORK_V4,
    BootstrapNetwork,
    DhcpResults,
    run_agent,
    write_agent_device,
)

PROFILE = "dpu-ldevid"
# Where the device's configuration wants its identity: the template puts the LDevID there.
CONFIGURATION = "hostname {{ serial | lower }}\nidentity certificate <<EOF\n{{ ldevid.chain }}EOF\n"
APPLY_CONFIGURATION = """#!/bin/sh
set -eu
cat "$2" >> "$DEVICE_ROOT/running-config"
"""
REQUEST = f"GET / HTTP/1.1\r\nHost: {NETWORK_V4}\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class LdevidDevice:
    """The agent's files and status after it bootstrapped."""

    directory: Path
    status: dict[str, Any]

    @property
    def ldevid(self) -> Path:
        return self.directory / "state" / "work" / "ldevid.pem"

    @property
    def ldevid_key(self) -> Path:
        return self.directory / "state" / "work" / "ldevid.key"


def _apply_ldevid_fleet(lab: BootstrapNetwork) -> None:
    """The profile that issues LDevIDs and the device on it, next to the site's fleet (apply
    without --prune adds to what the server holds)."""
    site = json.loads(lab.files.fleet.read_text())
    fleet = {
        "trust_anchors": site["trust_anchors"],
        "owner": site["owner"],
        "profiles": [
            {
                "name": PROFILE,
                "type": "onboarding",
                "templating": "jinja2",
                "ldevid_issuer": LDEVID_ISSUER,
                "ldevid_keys": ["ec-p256"],
                "configuration": CONFIGURATION,
            }
        ],
        "devices": [
            {
                "serial": LDEVID_SERIAL,
                "profile": PROFILE,
                "model": HW_MODEL,
                "voucher": {"file": f"{LDEVID_SERIAL}.vcj"},
            }
        ],
    }
    # Beside the site's fleet file: its file references are relative to that directory.
    path = lab.files.directory / "fleet-ldevid.yaml"
    path.write_text(json.dumps(fleet, indent=2) + "\n")
    lab.sztpctl("apply", "-f", path)


def _agent_config(lab: BootstrapNetwork, directory: Path) -> Path:
    return write_agent_device(
        directory,
        lab.files.pki,
        LDEVID_SERIAL,
        handlers={"apply-configuration": APPLY_CONFIGURATION},
        os_version="1.2",
        file_server_ca=str(lab.files.pki / "tls" / "ca.pem"),
        dhcp=True,
        dhclient_lease_dirs=[str(lab.files.directory)],
        interfaces=[lab.topology.device_interface],
        ldevid_keys=["ec-p256"],
    )


@pytest.fixture(scope="module")
def ldevid_device(bootstrap_network: BootstrapNetwork, dhcp_results: DhcpResults) -> LdevidDevice:
    """The device bootstrapped by sztp-agent from its DHCP lease, asking for an LDevID."""
    lab = bootstrap_network
    assert dhcp_results.dhclient4_payload  # the leases are there
    _apply_ldevid_fleet(lab)
    directory = lab.files.directory / f"agent-{LDEVID_SERIAL}"
    config = _agent_config(lab, directory)
    booted = run_agent(lab, config, "boot")
    assert booted.returncode == 0, f"{booted.stderr}\n{lab.logs('sztp-server')}"
    shown = run_agent(lab, config, "status", "--verbose", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return LdevidDevice(directory, json.loads(shown.stdout))


def _https_get(
    lab: BootstrapNetwork, openssl: str, certificate: Path, key: Path
) -> tuple[str, str]:
    """GET / from the LDevID service, from the device's namespace, presenting `certificate`
    (its first certificate only: nginx builds the path from its own trust); the status line
    and the body, or what the client printed when there was no HTTP answer."""
    # openssl rather than curl: it is what every install of the project has (APT_PACKAGES).
    result = subprocess.run(
        in_namespace(
            lab.topology.device,
            openssl,
            "s_client",
            "-connect",
            f"{NETWORK_V4}:{LDEVID_SERVICE_PORT}",
            "-CAfile",
            lab.files.pki / "tls" / "ca.pem",
            "-verify_ip",
            NETWORK_V4,
            "-verify_return_error",
            "-cert",
            certificate,
            "-key",
            key,
            "-quiet",
        ),
        input=REQUEST.encode(),
        capture_output=True,
        check=False,
        timeout=30,
    )
    # Bytes, not text: universal newlines would hide the CRLFs that end the head.
    head, _, body = result.stdout.decode(errors="replace").partition("\r\n\r\n")
    if not head.startswith("HTTP/"):
        printed = (result.stdout + result.stderr).decode(errors="replace")
        return "", f"exit {result.returncode}\n{printed}"
    return head.splitlines()[0], body


def _load(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_the_agent_ends_with_an_ldevid_from_the_owners_ldevid_ca(
    bootstrap_network: BootstrapNetwork, ldevid_device: LdevidDevice
) -> None:
    lab, status = bootstrap_network, ldevid_device.status
    assert status["state"] == "complete", status
    found = status["discovered"][0]
    assert (found["uri"], found["source"]) == (DHCP_URIS_V4[0], "DHCPv4 option 143"), found
    assert found["client"] == "dhclient", found
    assert status["steps"][-1]["progress_type"] == "bootstrap-complete", status["steps"]

    ldevid, *path = _load(ldevid_device.ldevid)
    ldevid_ca_file, _ = lab.files.ldevid_ca()
    ldevid_ca = x509.load_pem_x509_certificate(ldevid_ca_file.read_bytes())
    assert path == [ldevid_ca], "the LDevID is kept with its issuing CA"
    ldevid.verify_directly_issued_by(ldevid_ca)
    owner_ca = x509.load_pem_x509_certificate((lab.files.pki / "owner" / "ca.pem").read_bytes())
    ldevid_ca.verify_directly_issued_by(owner_ca)
    serial_numbers = ldevid.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    assert [name.value for name in serial_numbers] == [LDEVID_SERIAL]
    idevid_file, _ = lab.files.idevid(LDEVID_SERIAL)
    idevid = x509.load_pem_x509_certificate(idevid_file.read_bytes())
    assert ldevid.public_key() != idevid.public_key(), "the LDevID key is a new one"

    key = ldevid_device.ldevid_key
    assert key.stat().st_mode & 0o777 == 0o600
    assert load_pem_private_key(key.read_bytes(), None).public_key() == ldevid.public_key()

    # The device's configuration carries the certificate where the template put it.
    running = (ldevid_device.directory / "root" / "running-config").read_text()
    assert running.startswith(f"hostname {LDEVID_SERIAL.lower()}\nidentity certificate <<EOF\n")
    assert ldevid_device.ldevid.read_text() in running

    shown = lab.sztpctl("device", "certificates", LDEVID_SERIAL, "--output", "json")
    records = json.loads(shown.stdout)["certificates"]
    assert len(records) == 1, records
    assert records[0]["serial_number"] == format(ldevid.serial_number, "x"), records
    assert (records[0]["issuer"], records[0]["profile"]) == (LDEVID_ISSUER, PROFILE), records


def test_the_ldevid_opens_a_service_that_trusts_only_the_owners_ldevid_ca(
    binaries: dict[str, str], bootstrap_network: BootstrapNetwork, ldevid_device: LdevidDevice
) -> None:
    lab, openssl = bootstrap_network, binaries["openssl"]
    ldevid = _load(ldevid_device.ldevid)[0]
    status, body = _https_get(lab, openssl, ldevid_device.ldevid, ldevid_device.ldevid_key)
    assert status == "HTTP/1.1 200 OK", f"{status}\n{body}\n{lab.logs('nginx')}"
    assert int(body.strip(), 16) == ldevid.serial_number, body

    # The manufacturer's identity means nothing to the owner's service.
    status, body = _https_get(lab, openssl, *lab.files.idevid(LDEVID_SERIAL))
    assert status == "HTTP/1.1 400 Bad Request", f"{status}\n{body}\n{lab.logs('nginx')}"
    assert "The SSL certificate error" in body, body

    # Nor does a certificate the owner CA issued itself, which the chain's root would accept.
    owner = lab.files.pki / "owner"
    status, body = _https_get(lab, openssl, owner / "owner.pem", owner / "owner.key")
    assert status == "HTTP/1.1 403 Forbidden", f"{status}\n{body}\n{lab.logs('nginx')}"

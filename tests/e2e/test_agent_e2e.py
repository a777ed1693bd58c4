"""sztp-agent on real DHCP: in the device's network namespace, the agent reads the lease real
ISC dhclient took from Kea (option 143, and 136 from the DHCPv6 lease), bootstraps from the
site's sztp-server with its IDevID, downloads the image from nginx, hands it to an install
handler, "reboots" (the reboot command records it; the next `ztp boot` is the boot after),
resumes and completes; the server sees the agent's account of the session."""

from __future__ import annotations

import json
from pathlib import Path

from e2e_site import (
    AGENT_SERIAL,
    DHCP_URIS_V4,
    BootstrapNetwork,
    DhcpResults,
    run_agent,
    write_agent_device,
)

# The contract of docs/agent.md: the image is verified; this device "installs" it by naming
# the image's OS in its os-release, which the agent reads at the next boot.
INSTALL_IMAGE = """#!/bin/sh
set -eu
printf 'NAME="%s"\\nVERSION_ID="%s"\\n' "$SZTP_IMAGE_OS_NAME" "$SZTP_IMAGE_OS_VERSION" \\
    > "$DEVICE_ROOT/os-release"
echo "installed $(basename "$1") ($(wc -c < "$1") bytes)"
"""
APPLY_CONFIGURATION = """#!/bin/sh
set -eu
cat "$2" >> "$DEVICE_ROOT/running-config"
echo "$1d into $DEVICE_ROOT/running-config"
"""


def _device(lab: BootstrapNetwork) -> Path:
    """The agent's files in the lab directory: configuration, handlers, a root to install in."""
    device = lab.files.directory / f"agent-{AGENT_SERIAL}"
    write_agent_device(
        device,
        lab.files.pki,
        AGENT_SERIAL,
        handlers={"install-image": INSTALL_IMAGE, "apply-configuration": APPLY_CONFIGURATION},
        os_version="1.0",
        file_server_ca=str(lab.files.pki / "tls" / "ca.pem"),
        dhcp=True,
        dhclient_lease_dirs=[str(lab.files.directory)],
        interfaces=[lab.topology.device_interface],
    )
    return device


def test_the_agent_bootstraps_from_its_dhcp_lease(
    bootstrap_network: BootstrapNetwork, dhcp_results: DhcpResults
) -> None:
    lab = bootstrap_network
    assert dhcp_results.dhclient4_payload  # the leases are there
    device = _device(lab)
    config = device / "agent.yaml"

    first = run_agent(lab, config, "boot")
    assert first.returncode == 0, f"{first.stderr}\n{lab.logs('sztp-server', 'nginx')}"
    assert len((device / "reboots").read_text().splitlines()) == 1
    second = run_agent(lab, config, "boot")
    assert second.returncode == 0, f"{second.stderr}\n{lab.logs('sztp-server')}"

    shown = run_agent(lab, config, "status", "--verbose", "-o", "json")
    status = json.loads(shown.stdout)
    assert status["state"] == "complete" and status["reboots"] == 1, status
    first_found = status["discovered"][0]
    assert first_found["uri"] == DHCP_URIS_V4[0]
    assert first_found["source"] == "DHCPv4 option 143"
    assert first_found["interface"] == lab.topology.device_interface
    assert first_found["client"] == "dhclient"
    kinds = [step["progress_type"] for step in status["steps"]]
    assert kinds.count("bootstrap-initiated") == 2 and kinds[-1] == "bootstrap-complete"
    assert "boot-image-complete" in kinds and "config-complete" in kinds
    assert (device / "root" / "os-release").read_text().endswith('VERSION_ID="1.2"\n')
    assert (device / "root" / "running-config").read_text()

    history = json.loads(lab.sztpctl("device", "history", AGENT_SERIAL, "--output", "json").stdout)
    reports = [report for attempt in history["attempts"] for report in attempt["reports"]]
    assert reports[-1]["progress_type"] == "bootstrap-complete"
    initiated = [r["message"] for r in reports if r["progress_type"] == "bootstrap-initiated"]
    assert f"DHCPv4 option 143 on {lab.topology.device_interface}" in initiated[0]

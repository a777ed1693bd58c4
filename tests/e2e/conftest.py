"""End-to-end lab in network namespaces: real Kea, real DHCP clients, nginx, sztp-server.

Topology (names carry a per-run suffix, so parallel or crashed runs never collide):

    namespace sztp-e2e-net-XXXXXX                 namespace sztp-e2e-dev-XXXXXX
    kea-dhcp4, kea-dhcp6, sztp-server, nginx      dhclient -4/-6, udhcpc, sztpctl simulate
    veth sztpn-XXXXXX 10.77.0.1/24  <------->  veth sztpd-XXXXXX (addresses from DHCP)
                      fd00:77::1/64

The fixtures are session-scoped (Kea, nginx and the server start once) and every one of them
cleans up in its finalizer, test failure or not: processes first, then the namespaces, then
the temporary directory (kept only when SZTP_E2E_KEEP=1, for debugging).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from e2e_lab import Namespaces, Service, in_namespace, run, tail, wait_for
from e2e_pcap import CaptureFormatError, dhcp_messages
from e2e_site import (
    ADMIN_PORT,
    DHCLIENT4_CONF,
    DHCLIENT6_CONF,
    DHCLIENT_SCRIPT,
    DHCP_TIMEOUT,
    DHCP_URIS_V4,
    DHCP_URIS_V6,
    FILES_PORT,
    GOOD_SERIALS,
    HW_MODEL,
    IMAGE_BYTES,
    IMAGE_NAME,
    LAB_TRUST,
    LDEVID_SERIAL,
    MISMATCHED_SERIAL,
    NETWORK_V4,
    NETWORK_V6,
    REQUIRED_BINARIES,
    STARTUP_TIMEOUT,
    SUBNET_V4,
    SUBNET_V6,
    SZTP_SERVER,
    SZTPCTL,
    BootstrapNetwork,
    DhcpResults,
    LabFiles,
    Topology,
    bound_dhclient,
    find_binary,
    kea_config,
    kea_environment,
    lease_octets,
    lease_option,
    nginx_config,
    server_config,
    start_dhcp_capture,
)


@pytest.fixture(scope="session")
def binaries() -> dict[str, str]:
    """Absolute paths of the tools; a missing one fails the run (CI must install it)."""
    if os.geteuid() != 0:
        pytest.fail(
            "tests/e2e must run as root: it creates network namespaces and runs DHCP servers "
            "and clients on raw sockets (run it with sudo, or in CI as root)",
            pytrace=False,
        )
    found = {name: find_binary(name) for name in REQUIRED_BINARIES}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        packages = " ".join(sorted({REQUIRED_BINARIES[name] for name in missing}))
        pytest.fail(f"missing {', '.join(missing)}: apt-get install -y {packages}", pytrace=False)
    for tool in (SZTPCTL, SZTP_SERVER):
        if not tool.is_file():
            pytest.fail(f"{tool} is missing: install the project into this venv", pytrace=False)
    return {name: str(path) for name, path in found.items()}


@pytest.fixture(scope="session")
def lab_dir() -> Iterator[Path]:
    """A short path under /tmp: Kea's control sockets must fit in sun_path (108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="sztp-e2e-"))
    # nginx workers run as nobody: they need to traverse this directory to reach the image.
    directory.chmod(0o711)
    yield directory
    if os.environ.get("SZTP_E2E_KEEP") == "1":
        print(f"\nSZTP_E2E_KEEP=1: the e2e lab directory is kept at {directory}")
    else:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def lab_files(binaries: dict[str, str], lab_dir: Path) -> LabFiles:
    """Lab PKI, vouchers, boot image, day-0 configuration and the fleet file."""
    pki = lab_dir / "pki"
    serials = [*GOOD_SERIALS, MISMATCHED_SERIAL, LDEVID_SERIAL]
    server_names = ["--server-name", NETWORK_V4, "--server-name", NETWORK_V6]
    serial_flags = [flag for serial in serials for flag in ("--serial", serial)]
    run([SZTPCTL, "pki", "init", pki, *serial_flags, *server_names, "--hw-model", HW_MODEL])
    # Another organisation's PKI: only its owner CA is used, as the wrong pinned-domain-cert.
    foreign = lab_dir / "foreign-pki"
    run([SZTPCTL, "pki", "init", foreign, "--serial", "FOREIGN-1"])
    for serial in serials:
        pinned = foreign if serial == MISMATCHED_SERIAL else pki
        run(
            [
                SZTPCTL,
                "voucher",
                "create",
                "--serial",
                serial,
                "--pinned-cert",
                pinned / "owner" / "ca.pem",
                "--masa-cert",
                pki / "manufacturer" / "masa.pem",
                "--masa-key",
                pki / "manufacturer" / "masa.key",
                "--expires-in-days",
                "1",
                "-o",
                lab_dir / f"{serial}.vcj",
            ]
        )
    files = lab_dir / "files"
    files.mkdir()
    files.chmod(0o755)
    image = files / IMAGE_NAME
    image.write_bytes(IMAGE_BYTES)
    image.chmod(0o644)
    (lab_dir / "day0.cfg").write_text("hostname dpu-e2e\n")
    # Hashed here, independently of the kit's {file: ...} hashing.
    image_sha256 = hashlib.sha256(IMAGE_BYTES).hexdigest()
    fleet = {
        **LAB_TRUST,
        "images": [
            {
                "name": "labos-1.2",
                "os_name": "LabOS",
                "os_version": "1.2",
                "download_uris": [
                    f"https://{NETWORK_V4}:{FILES_PORT}/{IMAGE_NAME}",
                    f"https://[{NETWORK_V6}]:{FILES_PORT}/{IMAGE_NAME}",
                ],
                "sha256": image_sha256,
            }
        ],
        "profiles": [
            {
                "name": "dpu-day0",
                "type": "onboarding",
                "image": "labos-1.2",
                "configuration": {"file": "day0.cfg"},
                "configuration_handling": "merge",
                "reporting_level": "verbose",
            }
        ],
        "devices": [
            {
                "serial": serial,
                "profile": "dpu-day0",
                "model": HW_MODEL,
                "voucher": {"file": f"{serial}.vcj"},
            }
            for serial in GOOD_SERIALS
        ],
        "dhcp": {
            "subnets": [
                {"subnet": SUBNET_V4, "bootstrap_uris": list(DHCP_URIS_V4)},
                {"subnet": SUBNET_V6, "bootstrap_uris": list(DHCP_URIS_V6)},
            ]
        },
    }
    fleet_file = lab_dir / "fleet.yaml"
    # JSON is YAML: no serializer needed, and the file stays readable in a kept lab dir.
    fleet_file.write_text(json.dumps(fleet, indent=2) + "\n")
    mismatched = {
        **fleet,
        "devices": [
            *fleet["devices"],
            {
                **fleet["devices"][0],
                "serial": MISMATCHED_SERIAL,
                "voucher": {"file": f"{MISMATCHED_SERIAL}.vcj"},
            },
        ],
    }
    mismatched_file = lab_dir / "fleet-mismatched.yaml"
    mismatched_file.write_text(json.dumps(mismatched, indent=2) + "\n")
    return LabFiles(lab_dir, pki, fleet_file, mismatched_file, files, image_sha256)


def _disable_dad(namespace: str, interface: str) -> None:
    """No duplicate address detection: addresses (link-local too) are usable at once, and
    nothing else is on this two-ended link to collide with."""
    for scope in ("all", "default", interface):
        path = f"/proc/sys/net/ipv6/conf/{scope}/accept_dad"
        run(in_namespace(namespace, "sh", "-c", f"echo 0 > {path}"))


def _link_local_ready(namespace: str, interface: str) -> bool:
    shown = run(in_namespace(namespace, "ip", "-6", "addr", "show", "dev", interface)).stdout
    return "scope link" in shown and "tentative" not in shown


@pytest.fixture(scope="session")
def topology(binaries: dict[str, str]) -> Iterator[Topology]:
    suffix = secrets.token_hex(3)
    namespaces = Namespaces(suffix)
    try:
        network = namespaces.add("net")
        device = namespaces.add("dev")
        # Interface names are limited to 15 characters.
        network_interface, device_interface = f"sztpn-{suffix}", f"sztpd-{suffix}"
        run(
            [
                "ip",
                "link",
                "add",
                network_interface,
                "netns",
                network,
                "type",
                "veth",
                "peer",
                "name",
                device_interface,
                "netns",
                device,
            ]
        )
        for namespace, interface in ((network, network_interface), (device, device_interface)):
            _disable_dad(namespace, interface)
        run(
            in_namespace(network, "ip", "addr", "add", f"{NETWORK_V4}/24", "dev", network_interface)
        )
        run(
            in_namespace(
                network, "ip", "-6", "addr", "add", f"{NETWORK_V6}/64", "dev", network_interface
            )
        )
        for namespace, interface in ((network, network_interface), (device, device_interface)):
            run(in_namespace(namespace, "ip", "link", "set", interface, "up"))
        for namespace, interface in ((network, network_interface), (device, device_interface)):
            wait_for(
                lambda namespace=namespace, interface=interface: _link_local_ready(
                    namespace, interface
                ),
                timeout=10,
                what=f"a usable IPv6 link-local address on {interface}",
            )
        yield Topology(namespaces, network, device, network_interface, device_interface)
    finally:
        namespaces.teardown()


# Runs inside a namespace: one process that polls, rather than one process per poll.
_HTTP_PROBE = """
import ssl, sys, time, urllib.request
url, cafile, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
context = ssl.create_default_context(cafile=cafile) if cafile else None
while True:
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as response:
            sys.exit(0 if response.status == 200 else 1)
    except Exception as exc:
        if time.monotonic() > deadline:
            sys.exit(f"{url}: {exc}")
        time.sleep(0.05)
"""


def _wait_http(
    namespace: str, url: str, cafile: Path | None, diagnostics: Callable[[], str]
) -> None:
    probe = [sys.executable, "-c", _HTTP_PROBE, url, str(cafile or ""), str(STARTUP_TIMEOUT)]
    result = run(in_namespace(namespace, *probe), check=False, timeout=STARTUP_TIMEOUT + 10)
    assert result.returncode == 0, f"{url} never answered: {result.stderr}\n{diagnostics()}"


@pytest.fixture(scope="session")
def bootstrap_network(
    binaries: dict[str, str], lab_files: LabFiles, topology: Topology
) -> BootstrapNetwork:
    """nginx, sztp-server (fleet applied) and Kea 4 + 6 running in the network namespace.

    Their processes belong to `topology`'s teardown, so they stop before the namespace goes.
    """
    namespaces, network = topology.namespaces, topology.network
    services: dict[str, Service] = {}
    lab = BootstrapNetwork(topology, lab_files, services)
    directory = lab_files.directory

    nginx_conf = nginx_config(lab_files)
    services["nginx"] = namespaces.start(
        "nginx",
        network,
        [
            binaries["nginx"],
            "-c",
            nginx_conf,
            "-p",
            nginx_conf.parent,
            "-e",
            "stderr",
            "-g",
            "daemon off;",
        ],
        directory / "nginx.log",
    )
    services["sztp-server"] = namespaces.start(
        "sztp-server",
        network,
        [SZTP_SERVER, "run", "--config", server_config(lab_files)],
        directory / "sztp-server.log",
    )

    # Kea's option-data for 143 / 136 comes from the kit's renderer, fed the fleet file.
    for family, render_format in (("4", "kea4"), ("6", "kea6")):
        fragment = run(
            [SZTPCTL, "dhcp", "render", "-f", lab_files.fleet, "--format", render_format]
        ).stdout
        config = kea_config(lab_files, topology, family, fragment)
        kea = binaries[f"kea-dhcp{family}"]
        environment = kea_environment(config.parent)
        run(in_namespace(network, kea, "-t", config), env=environment)
        services[f"kea-dhcp{family}"] = namespaces.start(
            f"kea-dhcp{family}",
            network,
            [kea, "-c", config],
            config.parent / "kea.log",
            env=environment,
        )

    tls_ca = lab_files.pki / "tls" / "ca.pem"
    _wait_http(network, f"http://127.0.0.1:{ADMIN_PORT}/healthz", None, lab.logs)
    wait_for(
        (directory / "state" / "admin-token").exists,
        timeout=STARTUP_TIMEOUT,
        what="the admin token file",
        diagnostics=lab.logs,
    )
    for address in (NETWORK_V4, f"[{NETWORK_V6}]"):
        _wait_http(network, f"https://{address}:{FILES_PORT}/{IMAGE_NAME}", tls_ca, lab.logs)
    for family in ("4", "6"):
        service = services[f"kea-dhcp{family}"]
        wait_for(
            lambda service=service, family=family: (
                f"DHCP{family}_STARTED" in service.output() or not service.alive()
            ),
            timeout=STARTUP_TIMEOUT,
            what=f"kea-dhcp{family} to start",
            diagnostics=lab.logs,
        )
        assert service.alive(), f"kea-dhcp{family} exited\n{service.output()}"
    lab.sztpctl("apply", "-f", lab_files.fleet)
    return lab


def _run_dhclient(
    lab: BootstrapNetwork, binaries: dict[str, str], family: str, option_name: str
) -> str:
    directory = lab.files.directory
    events = directory / f"dhclient{family}.events"
    script = directory / f"dhclient{family}-script"
    script.write_text(DHCLIENT_SCRIPT.format(events=events))
    script.chmod(0o755)
    conf = directory / f"dhclient{family}.conf"
    conf.write_text(DHCLIENT4_CONF if family == "4" else DHCLIENT6_CONF)
    leases = directory / f"dhclient{family}.leases"
    with bound_dhclient(
        lab,
        binaries["dhclient"],
        int(family),
        config=conf,
        leases=leases,
        script=script,
        events=events,
        work=directory,
        purpose="its address configured",
    ) as client:
        return wait_for(
            lambda: lease_option(leases, option_name),
            timeout=DHCP_TIMEOUT,
            what=f"dhclient -{family} to store {option_name} in its lease",
            diagnostics=lambda: (
                f"{client.output()}\n{tail(leases)}\n{lab.logs(f'kea-dhcp{family}')}"
            ),
        )


# busybox udhcpc passes an option requested with -O as the environment variable optNNN
# (hex) to its script, which is called with "bound" once the lease is acknowledged.
_UDHCPC_SCRIPT = """#!/bin/sh
# Only the DHCP variables: the inherited environment is none of the test's business.
if [ "$1" = bound ]; then env | grep -E '^(opt[0-9]+|ip|subnet|interface)=' > "{environment}"; fi
exit 0
"""


def _run_udhcpc(lab: BootstrapNetwork, binaries: dict[str, str]) -> dict[str, str]:
    topology, directory = lab.topology, lab.files.directory
    environment = directory / "udhcpc.env"
    script = directory / "udhcpc.script"
    script.write_text(_UDHCPC_SCRIPT.format(environment=environment))
    script.chmod(0o755)
    # -q: quit once bound; -n: fail instead of backgrounding; -t/-T: 5 tries, 1 s apart.
    arguments = ["-i", topology.device_interface, "-f", "-q", "-n", "-t", "5", "-T", "1"]
    result = run(
        in_namespace(
            topology.device,
            binaries["udhcpc"],
            *arguments,
            "-O",
            "143",
            "-s",
            script,
        ),
        check=False,
        timeout=DHCP_TIMEOUT,
    )
    assert result.returncode == 0 and environment.exists(), (
        f"udhcpc got no lease (exit {result.returncode})\n{result.stdout}\n{result.stderr}\n"
        f"{lab.logs('kea-dhcp4')}"
    )
    pairs = (line.partition("=") for line in environment.read_text().splitlines())
    return {name: value for name, _, value in pairs}


def _captured_replies(capture: Path) -> bool:
    """Whether the capture holds an ACK for dhclient and one for udhcpc, and a DHCPv6 REPLY."""
    try:
        v4, v6 = dhcp_messages(capture)
    except (CaptureFormatError, FileNotFoundError):
        return False  # tcpdump may be in the middle of writing a record
    acks = [message for message in v4 if message.message_type == "ACK"]
    replies = [message for message in v6 if message.message_type == "REPLY"]
    return len(acks) >= 2 and len(replies) >= 1


@pytest.fixture(scope="session")
def dhcp_results(binaries: dict[str, str], bootstrap_network: BootstrapNetwork) -> DhcpResults:
    """dhclient -4, dhclient -6 and udhcpc against Kea, captured by tcpdump on the link."""
    lab, topology = bootstrap_network, bootstrap_network.topology
    directory = lab.files.directory
    capture = directory / "dhcp.pcap"
    tcpdump = start_dhcp_capture(
        topology, binaries["tcpdump"], "tcpdump", capture, directory / "tcpdump.log"
    )
    lab.services["tcpdump"] = tcpdump
    try:
        lease4 = _run_dhclient(lab, binaries, "4", "sztp-redirect")
        lease6 = _run_dhclient(lab, binaries, "6", "dhcp6.sztp-redirect")
        udhcpc_environment = _run_udhcpc(lab, binaries)
        # Every client is done, but tcpdump may still be writing the last replies.
        wait_for(
            lambda: _captured_replies(capture),
            timeout=STARTUP_TIMEOUT,
            what="the DHCP replies in the capture",
            diagnostics=tcpdump.output,
        )
    finally:
        # SIGINT: tcpdump finishes the file and reports its counters.
        tcpdump.stop(signal.SIGINT)
    addresses = run(
        in_namespace(topology.device, "ip", "addr", "show", "dev", topology.device_interface)
    ).stdout
    return DhcpResults(
        dhclient4_lease_value=lease4,
        dhclient4_payload=lease_octets(lease4),
        dhclient6_payload=lease_octets(lease6),
        udhcpc_environment=udhcpc_environment,
        device_addresses=addresses,
        capture=capture,
    )

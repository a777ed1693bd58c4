"""The e2e lab's fixed layout and the configuration files it writes.

Addresses and ports live inside this run's own network namespaces, so fixed values never
collide with the host or with another run. Fixtures are in conftest.py; this module holds
what tests and fixtures share.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from e2e_lab import Namespaces, Service, in_namespace, run, wait_for

BIN = Path(sys.executable).parent
SZTPCTL = BIN / "sztpctl"
SZTP_SERVER = BIN / "sztp-server"

# Binary -> the Debian package that provides it (what CI installs).
REQUIRED_BINARIES = {
    "ip": "iproute2",
    "kea-dhcp4": "kea-dhcp4-server",
    "kea-dhcp6": "kea-dhcp6-server",
    "nginx": "nginx",
    "dhclient": "isc-dhcp-client",
    "udhcpc": "udhcpc",
    "tcpdump": "tcpdump",
    "openssl": "openssl",
}
SBIN_PATHS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

# Addresses live inside this run's namespaces only, so fixed values cannot collide.
NETWORK_V4 = "10.77.0.1"
SUBNET_V4 = "10.77.0.0/24"
POOL_V4 = "10.77.0.100 - 10.77.0.199"
NETWORK_V6 = "fd00:77::1"
SUBNET_V6 = "fd00:77::/64"
POOL_V6 = "fd00:77::100 - fd00:77::1ff"
DEVICE_PORT = 8443
ADMIN_PORT = 7080
FILES_PORT = 4443
# nginx as a service of the owner's that admits a client only with an LDevID.
LDEVID_SERVICE_PORT = 5443

BOOTSTRAP_URI_V4 = f"https://{NETWORK_V4}:{DEVICE_PORT}"
BOOTSTRAP_URI_V6 = f"https://[{NETWORK_V6}]:{DEVICE_PORT}"
# What the fleet's dhcp section hands out: two entries each, in opposite orders, so the
# framing of a multi-URI list and its order are both visible on the wire.
DHCP_URIS_V4 = (BOOTSTRAP_URI_V4, BOOTSTRAP_URI_V6)
DHCP_URIS_V6 = (BOOTSTRAP_URI_V6, BOOTSTRAP_URI_V4)

# SN-0001 and SN-0002 bootstrap with the simulator, SN-0004 with sztp-agent.
GOOD_SERIALS = ("SN-0001", "SN-0002", "SN-0004")
AGENT_SERIAL = "SN-0004"
# Registered with a valid voucher for its serial, but pinning another owner's CA.
MISMATCHED_SERIAL = "SN-0003"
# Bootstraps with sztp-agent on a profile that issues it an LDevID (RFC 9646).
LDEVID_SERIAL = "SN-0005"
LDEVID_ISSUER = "lab-ldevid"
# The fleet file's trust anchor and owner, as `sztpctl pki init` lays the lab PKI out.
LAB_TRUST: dict[str, Any] = {
    "trust_anchors": [
        {"name": "lab-manufacturer", "certificates": {"file": "pki/manufacturer/ca.pem"}}
    ],
    "owner": {
        "certificate_chain": {"file": ["pki/owner/owner.pem", "pki/owner/ca.pem"]},
        "private_key": {"file": "pki/owner/owner.key"},
    },
}
HW_MODEL = "DPU-LAB-1"
IMAGE_NAME = "labos-1.2.img"
IMAGE_BYTES = b"LabOS 1.2 boot image (e2e payload)\n"

STARTUP_TIMEOUT = 20.0
DHCP_TIMEOUT = 20.0


def find_binary(name: str) -> str | None:
    """`name` on PATH or in the sbin directories (which a non-login root shell may lack)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN_PATHS])
    return shutil.which(name, path=search)


def sztpctl_env(lab_dir: Path) -> dict[str, str]:
    """Environment for `sztpctl` against the admin listener (inside the network namespace)."""
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(lab_dir / "xdg"),
        "SZTP_SERVER": f"http://127.0.0.1:{ADMIN_PORT}",
        "SZTP_TOKEN_FILE": str(lab_dir / "state" / "admin-token"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }


@dataclass(frozen=True)
class LabFiles:
    directory: Path
    pki: Path
    fleet: Path
    # The site's fleet plus a device whose voucher pins another owner's CA.
    mismatched_fleet: Path
    files: Path
    image_sha256: str

    def idevid(self, serial: str) -> tuple[Path, Path]:
        device = self.pki / "devices" / serial
        return device / "idevid.pem", device / "idevid.key"

    def ldevid_ca(self) -> tuple[Path, Path]:
        """The owner's LDevID CA, an intermediate under the owner CA the vouchers pin."""
        owner = self.pki / "owner"
        return owner / "ldevid-ca.pem", owner / "ldevid-ca.key"


@dataclass(frozen=True)
class Topology:
    namespaces: Namespaces
    network: str
    device: str
    network_interface: str
    device_interface: str


@dataclass(frozen=True)
class BootstrapNetwork:
    topology: Topology
    files: LabFiles
    services: dict[str, Service]

    def logs(self, *names: str) -> str:
        """The named services' logs (all of them by default), for assertion messages."""
        chosen = names or tuple(self.services)
        return "\n".join(self.services[name].output() for name in chosen)

    def sztpctl(self, *arguments: str | Path, check: bool = True) -> Any:
        """`sztpctl` against the admin API, run inside the network namespace."""
        result = run(
            in_namespace(self.topology.network, SZTPCTL, *arguments),
            env=sztpctl_env(self.files.directory),
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"sztpctl {' '.join(map(str, arguments))} exited with {result.returncode}\n"
                f"{result.stdout}\n{result.stderr}\n{self.logs('sztp-server')}"
            )
        return result


def nginx_config(lab: LabFiles) -> Path:
    """HTTPS with the lab server certificate: the image directory on both addresses, and
    the owner's LDevID service on the IPv4 address."""
    prefix = lab.directory / "nginx"
    prefix.mkdir()
    tls = lab.pki / "tls"
    listen = "\n".join(
        f"    listen {address}:{FILES_PORT} ssl;" for address in (NETWORK_V4, f"[{NETWORK_V6}]")
    )
    ldevid_ca, _ = lab.ldevid_ca()
    owner_ca = lab.pki / "owner" / "ca.pem"
    # OpenSSL (without a partial-chain flag, which nginx never sets) only ends a client's
    # path at a self-signed certificate: the owner CA above the LDevID CA is trusted too.
    client_trust = prefix / "ldevid-trust.pem"
    client_trust.write_bytes(ldevid_ca.read_bytes() + owner_ca.read_bytes())
    # So the issuer is checked as well: anything else the owner CA certifies is refused.
    ldevid_ca_name = x509.load_pem_x509_certificate(ldevid_ca.read_bytes()).subject
    config = prefix / "nginx.conf"
    # Every path nginx writes is under the prefix, so the host's nginx is never touched.
    config.write_text(
        f"""worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr info;
events {{ worker_connections 64; }}
http {{
  access_log {prefix}/access.log;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  types {{ application/octet-stream img; }}
  ssl_certificate {tls / "server.pem"};
  ssl_certificate_key {tls / "server.key"};
  server {{
{listen}
    root {lab.files};
  }}
  server {{
    listen {NETWORK_V4}:{LDEVID_SERVICE_PORT} ssl;
    ssl_client_certificate {client_trust};
    ssl_verify_client on;
    # The LDevID (depth 0) and its CA (depth 1) below the owner CA, the trust anchor.
    ssl_verify_depth 1;
    if ($ssl_client_i_dn != "{ldevid_ca_name.rfc4514_string()}") {{ return 403; }}
    default_type text/plain;
    # The admitted certificate's serial number, for the test to match with the device's.
    location / {{ return 200 "$ssl_client_serial\n"; }}
  }}
}}
"""
    )
    return config


def server_config(lab: LabFiles) -> Path:
    """sztp-server on SQLite: TLS device listeners on the link's v4 and v6 addresses, the
    admin API on the namespace's loopback, the owner's LDevID CA as a builtin issuer."""
    ldevid_ca, ldevid_ca_key = lab.ldevid_ca()
    tls = {
        "tls_cert": str(lab.pki / "tls" / "server.pem"),
        "tls_key": str(lab.pki / "tls" / "server.key"),
    }
    config = lab.directory / "server.yaml"
    config.write_text(
        json.dumps(
            {
                "database_url": f"sqlite:///{lab.directory / 'state' / 'sztp.db'}",
                "device_listeners": [
                    {"host": NETWORK_V4, "port": DEVICE_PORT, **tls},
                    {"host": NETWORK_V6, "port": DEVICE_PORT, **tls},
                ],
                "admin_listener": {"host": "127.0.0.1", "port": ADMIN_PORT},
                "admin_token_file": str(lab.directory / "state" / "admin-token"),
                "ldevid_issuers": [
                    {
                        "name": LDEVID_ISSUER,
                        "type": "builtin",
                        "certificate_file": str(ldevid_ca),
                        "private_key_file": str(ldevid_ca_key),
                    }
                ],
                "refresh_interval": 0.2,
                "log_level": "info",
            },
            indent=2,
        )
    )
    return config


def kea_environment(directory: Path) -> dict[str, str]:
    """Keep Kea's run-time files in `directory`, away from the host service's /run/kea.

    Debian's Kea writes its pid file to KEA_PIDFILE_DIR (default /run/kea) and the logger's
    lock file to KEA_LOCKFILE_DIR. Kea >= 2.6.3 also restricts lease, socket and log paths
    to KEA_DHCP_DATA_DIR, KEA_CONTROL_SOCKET_DIR and KEA_LOG_FILE_DIR; older Kea ignores
    those, so setting them keeps this working on both.
    """
    paths = {
        name: str(directory)
        for name in (
            "KEA_PIDFILE_DIR",
            "KEA_LOCKFILE_DIR",
            "KEA_DHCP_DATA_DIR",
            "KEA_CONTROL_SOCKET_DIR",
            "KEA_LOG_FILE_DIR",
        )
    }
    return {**os.environ, **paths}


def merge_kea_fragment(config: dict[str, Any], fragment: dict[str, Any]) -> None:
    """Merge `sztpctl dhcp render --format kea4|kea6` output into a base configuration:
    rendered subnets must match base subnets (by prefix); other keys are added."""
    for daemon, rendered in fragment.items():
        base = config[daemon]
        for key, value in rendered.items():
            if key in ("subnet4", "subnet6"):
                by_prefix = {subnet["subnet"]: subnet for subnet in base[key]}
                for subnet in value:
                    assert subnet["subnet"] in by_prefix, (
                        f"rendered {key} {subnet['subnet']} is not in the Kea configuration"
                    )
                    target = by_prefix[subnet["subnet"]]
                    target.setdefault("option-data", []).extend(subnet.get("option-data", []))
            elif isinstance(value, list):
                base.setdefault(key, []).extend(value)
            else:
                base[key] = value


def kea_config(lab: LabFiles, topology: Topology, family: str, fragment: str) -> Path:
    """A Kea Dhcp4/Dhcp6 configuration of our own (every file it writes is in the lab dir),
    with the rendered `fragment` merged in."""
    directory = lab.directory / f"kea{family}"
    directory.mkdir()
    interface = topology.network_interface
    daemon = f"Dhcp{family}"
    body: dict[str, Any] = {
        "interfaces-config": {"interfaces": [interface]},
        "control-socket": {"socket-type": "unix", "socket-name": str(directory / "control.sock")},
        "lease-database": {
            "type": "memfile",
            "persist": True,
            "name": str(directory / "leases.csv"),
            "lfc-interval": 0,
        },
        "valid-lifetime": 600,
        "renew-timer": 300,
        "rebind-timer": 500,
        "loggers": [
            {
                "name": f"kea-dhcp{family}",
                "output_options": [{"output": "stdout"}],
                "severity": "INFO",
            }
        ],
    }
    if family == "4":
        body["interfaces-config"]["dhcp-socket-type"] = "raw"
        body["subnet4"] = [
            {"id": 1, "subnet": SUBNET_V4, "interface": interface, "pools": [{"pool": POOL_V4}]}
        ]
    else:
        body["preferred-lifetime"] = 500
        # A server DUID in memory only: Kea would otherwise write it to /var/lib/kea.
        body["server-id"] = {"type": "LLT", "persist": False}
        body["subnet6"] = [
            {"id": 1, "subnet": SUBNET_V6, "interface": interface, "pools": [{"pool": POOL_V6}]}
        ]
    config = {daemon: body}
    merge_kea_fragment(config, json.loads(fragment))
    path = directory / f"kea-dhcp{family}.conf"
    path.write_text(json.dumps(config, indent=2))
    return path


@dataclass(frozen=True)
class DhcpResults:
    """What the real DHCP clients got, and the capture of the whole exchange."""

    dhclient4_lease_value: str  # option 143 as dhclient wrote it into its lease file
    dhclient4_payload: bytes
    dhclient6_payload: bytes
    udhcpc_environment: dict[str, str]
    device_addresses: str
    capture: Path


# dhclient-script replacement: Debian's script would rewrite the host's /etc/resolv.conf
# (it is not namespaced). This one only configures the leased address. The DHCPv6 address
# gets a /64 because there is no router advertisement on this link to make the prefix
# on-link, and the device must reach the network side's ULA.
DHCLIENT_SCRIPT = """#!/bin/sh
case "$reason" in
  BOUND|RENEW|REBIND|REBOOT)
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" || exit 1 ;;
  BOUND6|RENEW6|REBIND6|REBOOT6)
    ip -6 addr replace "$new_ip6_address/64" dev "$interface" nodad || exit 1 ;;
esac
# Last: the test waits for this line, which means the address is in place.
echo "$reason" >> "{events}"
exit 0
"""

DHCLIENT4_CONF = """option sztp-redirect code 143 = string;
request subnet-mask, broadcast-address, sztp-redirect;
"""

DHCLIENT6_CONF = """option dhcp6.sztp-redirect code 136 = string;
request dhcp6.sztp-redirect;
"""


def lease_option(leases: Path, name: str) -> str | None:
    """The last value of `option NAME` in a dhclient lease file, as written there.

    dhclient writes a `string` option that is not all printable as colon-separated hex
    octets without leading zeros (`0:16:68:...`); an RFC 8572 payload always starts with a
    zero length octet, so that is the form to expect.
    """
    if not leases.exists():
        return None
    prefix = f"option {name} "
    values = [
        line.strip()[len(prefix) :].rstrip(";")
        for line in leases.read_text().splitlines()
        if line.strip().startswith(prefix)
    ]
    if not values:
        return None
    assert not values[-1].startswith('"'), f"{name} was stored as text: {values[-1]}"
    return values[-1]


def lease_octets(value: str) -> bytes:
    """The bytes of a dhclient lease value (`0:16:68:...`)."""
    return bytes(int(octet, 16) for octet in value.split(":"))


def start_dhcp_capture(
    topology: Topology, tcpdump: str, name: str, capture: Path, log: Path
) -> Service:
    """tcpdump writing every DHCPv4 and DHCPv6 packet on the network side of the link to
    `capture`, listening when this returns."""
    # --immediate-mode: hand each packet over at once instead of when a ring-buffer block
    # fills or times out (SIGINT would drop what is still in the kernel's buffer); -U writes
    # each packet to the file at once; -Z root keeps it able to write into our directory.
    service = topology.namespaces.start(
        name,
        topology.network,
        [
            tcpdump,
            "-i",
            topology.network_interface,
            "-n",
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-w",
            capture,
            "udp and (port 67 or port 68 or port 546 or port 547)",
        ],
        log,
    )
    wait_for(
        lambda: "listening on" in service.output() or not service.alive(),
        timeout=STARTUP_TIMEOUT,
        what="tcpdump to listen",
    )
    assert service.alive(), service.output()
    return service


@contextmanager
def bound_dhclient(
    lab: BootstrapNetwork,
    dhclient: str,
    family: int,
    *,
    config: Path,
    leases: Path,
    script: Path,
    events: Path,
    work: Path,
    purpose: str,
) -> Iterator[Service]:
    """ISC dhclient -4 or -6 in the device namespace, once `script` has written BOUND (or
    BOUND6) into `events`; stopped on the way out (a stop is no release: SIGTERM makes dhclient
    exit without telling the server, and the address stays configured)."""
    topology = lab.topology
    bound = "BOUND" if family == 4 else "BOUND6"
    client = topology.namespaces.start(
        f"dhclient -{family} ({purpose})",
        topology.device,
        [
            dhclient,
            f"-{family}",
            "-d",
            "-v",
            "-cf",
            config,
            "-lf",
            leases,
            "-pf",
            work / f"dhclient{family}.pid",
            "-sf",
            script,
            topology.device_interface,
        ],
        work / f"dhclient{family}.log",
    )
    try:
        wait_for(
            lambda: events.exists() and bound in events.read_text().split(),
            timeout=DHCP_TIMEOUT,
            what=f"dhclient -{family} ({purpose}) to bind",
            diagnostics=lambda: f"{client.output()}\n{lab.logs(f'kea-dhcp{family}')}",
        )
        yield client
    finally:
        client.stop()


def run_agent(
    lab: BootstrapNetwork, config: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    """`ztp` (the sztp-agent) with `config`, in the device's namespace, as the device runs it."""
    return run(
        in_namespace(
            lab.topology.device, sys.executable, "-m", "sztp_agent", "--config", config, *arguments
        ),
        check=False,
        timeout=120,
    )


def write_agent_device(
    directory: Path,
    pki: Path,
    serial: str,
    *,
    handlers: Mapping[str, str],
    os_version: str,
    **settings: Any,
) -> Path:
    """A device's files for sztp-agent: a root to install in (its os-release says LabOS
    `os_version`), the install `handlers` (name -> script), and agent.yaml with the lab's
    identity and trust for `serial` and `settings` on top (discovery, ...); its path."""
    (directory / "root").mkdir(parents=True)
    (directory / "root" / "os-release").write_text(f'NAME="LabOS"\nVERSION_ID="{os_version}"\n')
    (directory / "handlers").mkdir()
    for name, script in handlers.items():
        (directory / "handlers" / name).write_text(script)
        (directory / "handlers" / name).chmod(0o755)
    config: dict[str, Any] = {
        "idevid_certificate": str(pki / "devices" / serial / "idevid.pem"),
        "idevid_key": str(pki / "devices" / serial / "idevid.key"),
        "trust_anchors": str(pki / "manufacturer" / "ca.pem"),
        "server_ca": str(pki / "tls" / "ca.pem"),
        "hw_model": HW_MODEL,
        "os_release": "root/os-release",
        "state_dir": "state",
        "handlers_dir": "handlers",
        "handler_environment": {"DEVICE_ROOT": str(directory / "root")},
        "reboot_command": ["sh", "-c", f"date >> {directory / 'reboots'}"],
        "ssh_host_keys": str(directory / "none-*.pub"),
        "attempts": 1,
        "timeout": 10,
        **settings,
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path

"""The IPv6-only site's fixed layout and the configuration files it writes.

    namespace sztp-e2e-v6site-XXXXXX               namespace sztp-e2e-v6dev-XXXXXX
    radvd, named, sztp-server, sztp-mdns           tcpdump, sztp-agent (devices 1 and 2)
    veth sztp6s-XXXXXX fd00:79::1/64  <------->  veth sztp6d-XXXXXX (SLAAC in fd00:79::/64)
                                                   namespace sztp-e2e-v6mdns-XXXXXX
                                                   sztp-agent (device 3)
    veth sztp6m-XXXXXX fd00:7a::1/64  <------->  veth sztp6q-XXXXXX (SLAAC in fd00:7a::/64)

The first link has a name server, announced by RDNSS and DNSSL (RFC 8106); the second has
none, only mDNS. No IPv4 address exists on either link and no DHCP server runs. A device
namespace's resolv.conf and hosts are its own files under /etc/netns, removed at teardown.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e_lab import Namespaces, Service, in_namespace, run
from e2e_site import ADMIN_PORT, LAB_TRUST, SZTPCTL, sztpctl_env

SITE_PREFIX = "fd00:79::/64"
SITE_ADDRESS = "fd00:79::1"
MDNS_PREFIX = "fd00:7a::/64"
MDNS_SITE_ADDRESS = "fd00:7a::1"
DOMAIN = "sztp.e2e.example"
SERVER_HOST = f"boot.{DOMAIN}"
MDNS_SERVER_HOST = "sztp-boot.local"
DEVICE_PORT = 8443
RECORD_TTL = 60
HW_MODEL = "DPU-V6-1"

SRV_SERIAL = "SN-V6-1"  # finds the server by SRV in the site's domain
TXT_SERIAL = "SN-V6-2"  # finds its own signed TXT records in the site's domain
MDNS_SERIAL = "SN-V6-3"  # on the mDNS-only link
SERIALS = (SRV_SERIAL, TXT_SERIAL, MDNS_SERIAL)

# Binary -> the Debian package that provides it (what CI installs).
REQUIRED_BINARIES = {
    "ip": "iproute2",
    "radvd": "radvd",
    "named": "bind9",
    "named-checkzone": "bind9-utils",
    "tcpdump": "tcpdump",
}
# `ip netns exec NAME` bind-mounts /etc/netns/NAME/FILE over /etc/FILE: the per-namespace
# resolv.conf and hosts a device's resolver daemons would write.
NETNS_ETC = Path("/etc/netns")


@dataclass
class Ipv6Site:
    namespaces: Namespaces
    directory: Path
    site: str
    device: str
    mdns_device: str
    device_interface: str
    mdns_device_interface: str
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def capture(self) -> Path:
        """tcpdump's capture on the device's side of the first link."""
        return self.directory / "device.pcap"

    def logs(self, *names: str) -> str:
        """The named services' logs (all of them by default), for assertion messages."""
        chosen = names or tuple(self.services)
        return "\n".join(self.services[name].output() for name in chosen if name in self.services)

    def sztpctl(self, *arguments: str | Path) -> str:
        """`sztpctl` against the admin API in the site's namespace; its standard output."""
        result = run(
            in_namespace(self.site, SZTPCTL, *arguments),
            env=sztpctl_env(self.directory),
            check=False,
        )
        assert result.returncode == 0, (
            f"sztpctl {' '.join(map(str, arguments))} exited with {result.returncode}\n"
            f"{result.stdout}\n{result.stderr}\n{self.logs('sztp-server')}"
        )
        return result.stdout


def write_namespace_etc(namespace: str, name: str, text: str) -> None:
    """/etc/`name` as the processes `ip netns exec` starts in `namespace` see it."""
    directory = NETNS_ETC / namespace
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


def remove_namespace_etc(namespace: str) -> None:
    shutil.rmtree(NETNS_ETC / namespace, ignore_errors=True)
    # Shared with other runs: removed only when nothing else is left in it.
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()


def radvd_config(directory: Path, site_interface: str, mdns_interface: str) -> Path:
    """SLAAC prefixes on both links; the O flag, RDNSS and DNSSL only on the first.

    Not a default router (lifetime 0): the device needs no route off its links.
    """
    config = directory / "radvd.conf"
    config.write_text(
        f"""interface {site_interface}
{{
    AdvSendAdvert on;
    AdvOtherConfigFlag on;
    AdvDefaultLifetime 0;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    prefix {SITE_PREFIX}
    {{
        AdvOnLink on;
        AdvAutonomous on;
    }};
    RDNSS {SITE_ADDRESS}
    {{
    }};
    DNSSL {DOMAIN}
    {{
    }};
}};

interface {mdns_interface}
{{
    AdvSendAdvert on;
    AdvDefaultLifetime 0;
    MinRtrAdvInterval 3;
    MaxRtrAdvInterval 4;
    prefix {MDNS_PREFIX}
    {{
        AdvOnLink on;
        AdvAutonomous on;
    }};
}};
"""
    )
    return config


def named_config(directory: Path, records: str) -> Path:
    """BIND authoritative for DOMAIN on the site's address only, the zone being SOA, NS, the
    bootstrap server's AAAA and the rendered SZTP records; every file under `directory`."""
    named = directory / "named"
    named.mkdir()
    zone = named / f"{DOMAIN}.zone"
    zone.write_text(
        f"""$TTL {RECORD_TTL}
@ IN SOA ns.{DOMAIN}. hostmaster.{DOMAIN}. 1 3600 600 86400 {RECORD_TTL}
@ IN NS ns.{DOMAIN}.
ns IN AAAA {SITE_ADDRESS}
boot IN AAAA {SITE_ADDRESS}
{records}"""
    )
    config = named / "named.conf"
    # No rndc control channel: it would read the host's /etc/bind/rndc.key.
    config.write_text(
        f"""options {{
    directory "{named}";
    pid-file "{named}/named.pid";
    session-keyfile "{named}/session.key";
    managed-keys-directory "{named}";
    listen-on {{ none; }};
    listen-on-v6 {{ {SITE_ADDRESS}; }};
    recursion no;
    allow-query {{ any; }};
    dnssec-validation no;
}};
controls {{ }};
zone "{DOMAIN}" {{ type primary; file "{zone}"; }};
"""
    )
    return config


def server_config(directory: Path, pki: Path) -> Path:
    """sztp-server on SQLite: a TLS device listener on each link's site address, the admin API
    on the namespace's loopback."""
    tls = {"tls_cert": str(pki / "tls" / "server.pem"), "tls_key": str(pki / "tls" / "server.key")}
    config = directory / "server.yaml"
    config.write_text(
        json.dumps(
            {
                "database_url": f"sqlite:///{directory / 'state' / 'sztp.db'}",
                "device_listeners": [
                    {"host": SITE_ADDRESS, "port": DEVICE_PORT, **tls},
                    {"host": MDNS_SITE_ADDRESS, "port": DEVICE_PORT, **tls},
                ],
                "admin_listener": {"host": "127.0.0.1", "port": ADMIN_PORT},
                "admin_token_file": str(directory / "state" / "admin-token"),
                "refresh_interval": 0.2,
                "log_level": "info",
            },
            indent=2,
        )
    )
    return config


def fleet(directory: Path) -> Path:
    """Every device on one onboarding profile (a day-0 configuration, no image); the `dns`
    section publishes the SRV record of the site's server and TXT_SERIAL's signed records."""
    (directory / "day0.cfg").write_text("hostname dpu-v6\n")
    document: dict[str, Any] = {
        **LAB_TRUST,
        "profiles": [
            {
                "name": "day0",
                "type": "onboarding",
                "configuration": {"file": "day0.cfg"},
                "configuration_handling": "merge",
                "reporting_level": "verbose",
            }
        ],
        "devices": [
            {
                "serial": serial,
                "profile": "day0",
                "model": HW_MODEL,
                "voucher": {"file": f"{serial}.vcj"},
            }
            for serial in SERIALS
        ],
        "dns": {
            "domain": DOMAIN,
            "ttl": RECORD_TTL,
            "bootstrap_servers": [
                {
                    "host": SERVER_HOST,
                    "port": DEVICE_PORT,
                    "trust_anchor": {"file": "pki/tls/ca.pem"},
                }
            ],
            "device_records": {"devices": [TXT_SERIAL], "signed": True},
        },
    }
    path = directory / "fleet.yaml"
    # JSON is YAML: no serializer needed.
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def make_pki(directory: Path) -> Path:
    """The lab PKI (the server certificate named for both links' server names) and each
    device's voucher."""
    pki = directory / "pki"
    serial_flags = [flag for serial in SERIALS for flag in ("--serial", serial)]
    names = ["--server-name", SERVER_HOST, "--server-name", MDNS_SERVER_HOST]
    run([SZTPCTL, "pki", "init", pki, *serial_flags, *names, "--hw-model", HW_MODEL])
    for serial in SERIALS:
        run(
            [
                SZTPCTL,
                "voucher",
                "create",
                "--serial",
                serial,
                "--pinned-cert",
                pki / "owner" / "ca.pem",
                "--masa-cert",
                pki / "manufacturer" / "masa.pem",
                "--masa-key",
                pki / "manufacturer" / "masa.key",
                "--expires-in-days",
                "1",
                "-o",
                directory / f"{serial}.vcj",
            ]
        )
    return pki

"""An IPv6-only site (RFC 8572 §4.2 DNS discovery): radvd announces the prefix with the O flag,
RDNSS and DNSSL (RFC 8106); BIND serves the zone `sztpctl dns render` makes from the fleet
file; no IPv4 address and no DHCP server anywhere. Devices run sztp-agent:

- device 1 takes its address by SLAAC, its name server and search domain from the RA, finds
  the bootstrap server by SRV and bootstraps to bootstrap-complete; tcpdump on its side shows
  the RA's options and the queries in the RFC's order (mDNS then DNS, TXT then SRV);
- device 2 finds its own signed TXT records (redirect information with its voucher) and
  bootstraps through them;
- device 3, on a second link with no name server, finds the server over mDNS (sztp-mdns) and
  reaches it at the address the responder gave with the SRV answer: the namespace has no hosts
  entry and no mDNS resolver, so the system resolver could not find `sztp-boot.local`.

The device's namespace has no rdnssd: the kernel takes the prefix from the RA but leaves RDNSS
and DNSSL to user space, so the test reads them from the captured RA and writes the namespace's
resolv.conf as rdnssd would; the agent then uses the system's settings (its defaults).
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e_ipv6_site import (
    DEVICE_PORT,
    DOMAIN,
    MDNS_PREFIX,
    MDNS_SERIAL,
    MDNS_SERVER_HOST,
    MDNS_SITE_ADDRESS,
    RECORD_TTL,
    REQUIRED_BINARIES,
    SERVER_HOST,
    SITE_ADDRESS,
    SITE_PREFIX,
    SRV_SERIAL,
    TXT_SERIAL,
    Ipv6Site,
    fleet,
    make_pki,
    named_config,
    radvd_config,
    remove_namespace_etc,
    server_config,
    write_namespace_etc,
)
from e2e_lab import Namespaces, Service, in_namespace, run, wait_for
from e2e_pcap import (
    ND_OPTION_DNSSL,
    ND_OPTION_RDNSS,
    CaptureFormatError,
    DnsQuestion,
    RouterAdvertisement,
    dns_questions,
    router_advertisements,
)
from e2e_site import (
    ADMIN_PORT,
    STARTUP_TIMEOUT,
    SZTP_SERVER,
    SZTPCTL,
    find_binary,
    write_agent_device,
)
from sztp.protocol.dns_records import MDNS_GROUP_V6, bootstrap_srv, render_zone_fragment

ROOT = Path(__file__).resolve().parents[2]
SLAAC_TIMEOUT = 15.0

APPLY_CONFIGURATION = """#!/bin/sh
set -eu
cat "$2" >> "$DEVICE_ROOT/running-config"
"""

# Runs in the site's namespace: one process that polls, rather than one process per poll.
_ADMIN_PROBE = """
import sys, time, urllib.request
deadline = time.monotonic() + float(sys.argv[2])
while True:
    try:
        urllib.request.urlopen(sys.argv[1], timeout=1).close()
        break
    except Exception as exc:
        if time.monotonic() > deadline:
            sys.exit(f"{sys.argv[1]}: {exc}")
        time.sleep(0.05)
"""


def _python_path() -> dict[str, str]:
    paths = os.pathsep.join(str(ROOT / part) for part in ("server", "kit", "cli", "agent"))
    return {**os.environ, "PYTHONPATH": paths}


def _sysctl(namespace: str, setting: str, value: str) -> None:
    path = "/proc/sys/" + setting.replace(".", "/")
    run(in_namespace(namespace, "sh", "-c", f"echo {value} > {path}"))


def _link(namespaces: Namespaces, site: str, site_end: str, device: str, device_end: str) -> None:
    run(["ip", "link", "add", site_end, "netns", site, "type", "veth", "peer", device_end])
    run(["ip", "link", "set", device_end, "netns", device])
    # The device takes RAs (2: even were it forwarding) and autoconfigures from them; no
    # duplicate address detection on this two-ended link, so addresses are usable at once.
    for scope in ("all", "default", device_end):
        _sysctl(device, f"net.ipv6.conf.{scope}.accept_dad", "0")
    _sysctl(device, f"net.ipv6.conf.{device_end}.accept_ra", "2")
    _sysctl(device, f"net.ipv6.conf.{device_end}.autoconf", "1")
    for scope in ("all", "default", site_end):
        _sysctl(site, f"net.ipv6.conf.{scope}.accept_dad", "0")
    run(in_namespace(device, "ip", "link", "set", device_end, "up"))


def _start_capture(site: Ipv6Site, tcpdump: str) -> None:
    """tcpdump on the device's side: RAs, DNS and mDNS, each packet written at once."""
    service = site.namespaces.start(
        "tcpdump",
        site.device,
        [
            tcpdump,
            "-i",
            site.device_interface,
            "-n",
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-w",
            site.capture,
            "icmp6 or port 53 or port 5353",
        ],
        site.directory / "tcpdump.log",
    )
    site.services["tcpdump"] = service
    wait_for(
        lambda: "listening on" in service.output() or not service.alive(),
        timeout=STARTUP_TIMEOUT,
        what="tcpdump to listen",
    )
    assert service.alive(), service.output()


def _start(site: Ipv6Site, name: str, namespace: str, arguments: list[str | Path]) -> Service:
    service = site.namespaces.start(
        name, namespace, arguments, site.directory / f"{name}.log", env=_python_path()
    )
    site.services[name] = service
    return service


def _wait_logged(site: Ipv6Site, service: Service, line: str, what: str) -> None:
    wait_for(
        lambda: line in service.output() or not service.alive(),
        timeout=STARTUP_TIMEOUT,
        what=what,
        diagnostics=site.logs,
    )
    assert service.alive(), f"{service.name} exited\n{service.output()}"


def _mdns_records() -> str:
    """The mDNS link's records: the bootstrap server by SRV, its target's AAAA."""
    servers = bootstrap_srv([(MDNS_SERVER_HOST, DEVICE_PORT, 0, 0)])
    host = MDNS_SERVER_HOST.removesuffix(".local")
    return render_zone_fragment(ttl=RECORD_TTL, devices={}, servers=servers) + (
        f"{host} {RECORD_TTL} IN AAAA {MDNS_SITE_ADDRESS}\n"
    )


@pytest.fixture(scope="module")
def ipv6_site() -> Iterator[Ipv6Site]:
    if os.geteuid() != 0:
        pytest.fail("tests/e2e must run as root: it creates network namespaces", pytrace=False)
    binaries = {name: find_binary(name) for name in REQUIRED_BINARIES}
    missing = sorted({REQUIRED_BINARIES[name] for name, path in binaries.items() if not path})
    if missing:
        pytest.fail(f"missing programs: apt-get install -y {' '.join(missing)}", pytrace=False)
    found = {name: str(path) for name, path in binaries.items()}
    suffix = secrets.token_hex(3)
    namespaces = Namespaces(suffix)
    directory = Path(tempfile.mkdtemp(prefix="sztp-e2e-v6-"))
    try:
        site = Ipv6Site(
            namespaces=namespaces,
            directory=directory,
            site=namespaces.add("v6site"),
            device=namespaces.add("v6dev"),
            mdns_device=namespaces.add("v6mdns"),
            device_interface=f"sztp6d-{suffix}",
            mdns_device_interface=f"sztp6q-{suffix}",
        )
        site_interface, mdns_interface = f"sztp6s-{suffix}", f"sztp6m-{suffix}"
        _link(namespaces, site.site, site_interface, site.device, site.device_interface)
        _link(namespaces, site.site, mdns_interface, site.mdns_device, site.mdns_device_interface)
        for interface, address in (
            (site_interface, SITE_ADDRESS),
            (mdns_interface, MDNS_SITE_ADDRESS),
        ):
            run(
                in_namespace(
                    site.site, "ip", "-6", "addr", "add", f"{address}/64", "dev", interface
                )
            )
            run(in_namespace(site.site, "ip", "link", "set", interface, "up"))
        # No name server on the mDNS link; without this file the host's would be used.
        write_namespace_etc(site.mdns_device, "resolv.conf", "# no name server on this link\n")
        _start_capture(site, found["tcpdump"])

        pki = make_pki(directory)
        fleet_file = fleet(directory)
        rendered = run([SZTPCTL, "dns", "render", "-f", fleet_file, "--check"])
        assert f"named-checkzone accepts the records for {DOMAIN}" in rendered.stderr
        named_conf = named_config(directory, rendered.stdout)
        run(
            in_namespace(
                site.site, found["named-checkzone"], DOMAIN, named_conf.parent / f"{DOMAIN}.zone"
            )
        )
        named = _start(site, "named", site.site, [found["named"], "-g", "-6", "-c", named_conf])
        server = _start(
            site,
            "sztp-server",
            site.site,
            [SZTP_SERVER, "run", "--config", server_config(directory, pki)],
        )
        mdns_records = directory / "mdns.zone"
        mdns_records.write_text(_mdns_records())
        responder = _start(
            site,
            "sztp-mdns",
            site.site,
            [
                sys.executable,
                "-m",
                "sztp_server.mdns",
                "run",
                mdns_records,
                "--interface",
                MDNS_SITE_ADDRESS,
            ],
        )
        radvd = _start(
            site,
            "radvd",
            site.site,
            [
                found["radvd"],
                "--nodaemon",
                "--logmethod",
                "stderr",
                "--debug",
                "1",
                "--config",
                radvd_config(directory, site_interface, mdns_interface),
                "--pidfile",
                directory / "radvd.pid",
            ],
        )
        _wait_logged(site, named, "all zones loaded", "named to load the zone")
        _wait_logged(site, responder, "mdns responder ready", "sztp-mdns to open its sockets")
        probe = run(
            in_namespace(
                site.site,
                sys.executable,
                "-c",
                _ADMIN_PROBE,
                f"http://127.0.0.1:{ADMIN_PORT}/healthz",
                str(STARTUP_TIMEOUT),
            ),
            check=False,
            timeout=STARTUP_TIMEOUT + 10,
        )
        assert probe.returncode == 0, f"{probe.stderr}\n{site.logs()}"
        site.sztpctl("apply", "-f", fleet_file)
        assert radvd.alive() and server.alive(), site.logs()
        yield site
    finally:
        created = list(namespaces.created)
        namespaces.teardown()
        for namespace in created:
            remove_namespace_etc(namespace)
        if os.environ.get("SZTP_E2E_KEEP") == "1":
            print(f"\nSZTP_E2E_KEEP=1: the IPv6 site's directory is kept at {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def _captured(capture: Path, read: Any) -> Any:
    """What `read` finds in the capture; nothing while tcpdump is mid-record."""
    try:
        return read(capture)
    except (CaptureFormatError, FileNotFoundError):
        return None


def _slaac_address(namespace: str, interface: str, prefix: str) -> ipaddress.IPv6Address | None:
    shown = run(in_namespace(namespace, "ip", "-6", "-j", "addr", "show", "dev", interface)).stdout
    for link in json.loads(shown):
        for entry in link.get("addr_info", []):
            address = ipaddress.IPv6Address(entry["local"])
            # The kernel marks what it autoconfigured from an RA as dynamic.
            if address in ipaddress.IPv6Network(prefix) and entry.get("dynamic"):
                return address
    return None


@pytest.fixture(scope="module")
def advertised(ipv6_site: Ipv6Site) -> RouterAdvertisement:
    """Device 1's SLAAC address and the RA it came from; the RA's RDNSS and DNSSL written to
    the device namespace's resolv.conf, as rdnssd would."""
    site = ipv6_site
    wait_for(
        lambda: _slaac_address(site.device, site.device_interface, SITE_PREFIX),
        timeout=SLAAC_TIMEOUT,
        what=f"a SLAAC address in {SITE_PREFIX}",
        diagnostics=lambda: (
            run(in_namespace(site.device, "ip", "-6", "addr")).stdout + site.logs("radvd")
        ),
    )
    advertisements: list[RouterAdvertisement] = wait_for(
        lambda: _captured(site.capture, router_advertisements),
        timeout=SLAAC_TIMEOUT,
        what="a router advertisement in the device's capture",
        diagnostics=lambda: site.logs("radvd", "tcpdump"),
    )
    advertisement = advertisements[0]
    nameservers, domains = advertisement.recursive_dns_servers(), advertisement.search_domains()
    resolv_conf = "".join(f"nameserver {address}\n" for address in nameservers)
    resolv_conf += f"search {' '.join(domains)}\n" if domains else ""
    write_namespace_etc(site.device, "resolv.conf", resolv_conf)
    return advertisement


def _device(site: Ipv6Site, serial: str) -> Path:
    """The agent's files: configuration, a handler, a root to configure. Discovery by DNS only,
    with the agent's defaults: mDNS first, the system's name servers and search domains."""
    device = site.directory / f"agent-{serial}"
    write_agent_device(
        device,
        site.directory / "pki",
        serial,
        handlers={"apply-configuration": APPLY_CONFIGURATION},
        os_version="1.0",
        dhcp=False,
        dns=True,
    )
    return device


def _bootstrap(site: Ipv6Site, namespace: str, serial: str) -> tuple[dict[str, Any], str]:
    """`ztp boot` in `namespace` as device `serial`; its status once complete, and its log."""
    config = _device(site, serial) / "agent.yaml"
    agent: list[str | Path] = [sys.executable, "-m", "sztp_agent", "--config", config]
    booted = run(
        in_namespace(namespace, *agent, "boot"), env=_python_path(), check=False, timeout=120
    )
    assert booted.returncode == 0, (
        f"ztp boot exited with {booted.returncode}\n{booted.stderr}\n"
        f"{site.logs('sztp-server', 'named', 'sztp-mdns', 'radvd')}"
    )
    shown = run(
        in_namespace(namespace, *agent, "status", "--verbose", "-o", "json"), env=_python_path()
    )
    status: dict[str, Any] = json.loads(shown.stdout)
    kinds = [step["progress_type"] for step in status["steps"]]
    assert status["state"] == "complete" and kinds[-1] == "bootstrap-complete", (
        f"{json.dumps(status, indent=2)}\n{booted.stderr}"
    )
    assert (config.parent / "root" / "running-config").read_text() == "hostname dpu-v6\n"
    history = json.loads(site.sztpctl("device", "history", serial, "--output", "json"))
    reports = [report for attempt in history["attempts"] for report in attempt["reports"]]
    assert reports[-1]["progress_type"] == "bootstrap-complete", history
    return status, booted.stderr


def test_the_device_link_is_ipv6_only_with_a_slaac_address(
    ipv6_site: Ipv6Site, advertised: RouterAdvertisement
) -> None:
    site = ipv6_site
    shown = run(
        in_namespace(site.device, "ip", "-4", "-j", "addr", "show", "dev", site.device_interface)
    ).stdout
    assert not [entry for link in json.loads(shown) for entry in link.get("addr_info", [])], shown
    address = _slaac_address(site.device, site.device_interface, SITE_PREFIX)
    assert address is not None
    # SLAAC: the interface identifier is the device's own, not the router's.
    assert address != ipaddress.IPv6Address(SITE_ADDRESS)


def test_the_router_advertisement_carries_rdnss_and_dnssl(advertised: RouterAdvertisement) -> None:
    kinds = [kind for kind, _ in advertised.options]
    assert ND_OPTION_RDNSS in kinds and ND_OPTION_DNSSL in kinds, kinds
    assert advertised.other_config
    assert advertised.prefixes() == [ipaddress.IPv6Network(SITE_PREFIX)]
    assert advertised.recursive_dns_servers() == [ipaddress.IPv6Address(SITE_ADDRESS)]
    assert advertised.search_domains() == [DOMAIN]


def test_device_finds_the_server_by_srv_asking_in_the_rfc_order(
    ipv6_site: Ipv6Site, advertised: RouterAdvertisement
) -> None:
    site = ipv6_site
    status, _ = _bootstrap(site, site.device, SRV_SERIAL)
    first = status["discovered"][0]
    assert first["source"] == f"DNS SRV _sztp._tcp.{DOMAIN}", status["discovered"]
    assert first["uri"] == f"https://{SERVER_HOST}:{DEVICE_PORT}"

    expected = [
        (MDNS_GROUP_V6, 5353, "TXT", f"{SRV_SERIAL}._sztp.local"),
        (SITE_ADDRESS, 53, "TXT", f"{SRV_SERIAL}._sztp.{DOMAIN}"),
        (MDNS_GROUP_V6, 5353, "SRV", "_sztp._tcp.local"),
        (SITE_ADDRESS, 53, "SRV", f"_sztp._tcp.{DOMAIN}"),
    ]

    def discovery_questions() -> list[tuple[str, int, str, str]] | None:
        questions: list[DnsQuestion] | None = _captured(site.capture, dns_questions)
        asked = [
            (str(question.destination), question.port, question.rdtype, question.name)
            for question in questions or []
            if question.rdtype in ("TXT", "SRV")
        ]
        return asked if len(asked) >= len(expected) else None

    asked = wait_for(
        discovery_questions,
        timeout=STARTUP_TIMEOUT,
        what="device 1's discovery queries in the capture",
        diagnostics=lambda: site.logs("tcpdump"),
    )
    assert asked == expected, f"{asked}\n{site.logs('named')}"


def test_device_finds_its_own_signed_txt_records(
    ipv6_site: Ipv6Site, advertised: RouterAdvertisement
) -> None:
    site = ipv6_site
    status, _ = _bootstrap(site, site.device, TXT_SERIAL)
    first = status["discovered"][0]
    assert first["source"] == f"DNS TXT {TXT_SERIAL}._sztp.{DOMAIN}", status["discovered"]
    # The TXT data is the owner's signed redirect information; the server it names, trusted
    # through the anchor it carries, gave the onboarding information.
    redirect, onboarding = status["server_checks"]
    assert redirect["uri"] == first["source"], status["server_checks"]
    assert redirect["data"].startswith("redirect information signed: voucher, owner certificate")
    assert onboarding["uri"] == f"https://{SERVER_HOST}:{DEVICE_PORT}"
    assert onboarding["server_trusted"] and onboarding["data"].startswith("onboarding information")
    assert status["servers_contacted"] == [onboarding["uri"]]


def test_device_on_the_mdns_only_link_finds_the_server_over_mdns(ipv6_site: Ipv6Site) -> None:
    site = ipv6_site
    device, interface = site.mdns_device, site.mdns_device_interface
    wait_for(
        lambda: _slaac_address(device, interface, MDNS_PREFIX),
        timeout=SLAAC_TIMEOUT,
        what=f"a SLAAC address in {MDNS_PREFIX}",
        diagnostics=lambda: site.logs("radvd"),
    )
    # The device's own resolver cannot find the name: no name server, no hosts entry.
    system = run(
        in_namespace(device, "getent", "ahostsv6", MDNS_SERVER_HOST), check=False, timeout=30
    )
    assert system.returncode != 0, system.stdout

    status, log = _bootstrap(site, device, MDNS_SERIAL)
    sources = [found["source"] for found in status["discovered"]]
    assert sources == ["mDNS SRV _sztp._tcp.local"], status["discovered"]
    first = status["discovered"][0]
    assert first["uri"] == f"https://{MDNS_SERVER_HOST}:{DEVICE_PORT}"
    # The responder sent the target's AAAA with the SRV answer: nothing more was asked.
    assert f"mDNS {MDNS_SERVER_HOST}: {MDNS_SITE_ADDRESS} (from the SRV answer)" in log, log

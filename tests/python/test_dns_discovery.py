"""A device looking up its bootstrapping data in DNS (`sztp.dns_discovery`, RFC 8572 §4.2)
against a real BIND `named` on loopback serving the records `dns_records` renders, and a real
sztp-server behind them: signed TXT data arrives over TCP and is verified fully, SRV records are
tried in RFC 2782 order, a simulated device bootstraps from either, and whatever DNS hands it
unsigned or tampered is refused. mDNS one-shot queries are checked against a UDP socket on a
loopback port standing in for the multicast group."""

from __future__ import annotations

import base64
import json
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
import yaml
from dns.rdtypes.ANY.TXT import TXT

from mdns_stub import OneShotResponder, Reply
from sztp.dns_discovery import DnsData, DnsServer, DnsSettings, discover
from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import cms, pki
from sztp.protocol.bootstrapping_data import BootstrappingData, build_signed, build_unsigned
from sztp.protocol.conveyed_info import (
    BootstrapServer,
    Encoding,
    OnboardingInformation,
    RedirectInformation,
)
from sztp.protocol.dns_records import bootstrap_srv, device_txt, render_zone_fragment
from sztp.simulator import generate_ssh_host_key
from sztp_agent.config import ConfigError, config_from_mapping
from sztp_testing import (
    ROOT,
    RunningServer,
    free_port,
    lab_voucher,
    run_sztpctl,
    running_server,
    simulate_lab_device,
    stop_process,
)

NAMED = shutil.which("named") or ("/usr/sbin/named" if Path("/usr/sbin/named").exists() else None)
pytestmark = pytest.mark.skipif(
    NAMED is None, reason="BIND's named is not installed (Debian package bind9)"
)

DOMAIN = "example.net"
EMPTY_DOMAIN = "empty.example"
SRV_DOMAIN = "srv.example"
SIGNED = "SN-D1"  # signed redirect information to the server, in TXT
UNSIGNED_ONBOARDING = "SN-D2"  # unsigned onboarding information in TXT
TAMPERED = "SN-D3"  # signed, its signature's last octet flipped
SRV_ONLY = "SN-D4"  # no TXT: found through SRV only
SERIALS = (SIGNED, UNSIGNED_ONBOARDING, TAMPERED, SRV_ONLY)
# The common EDNS(0) buffer: the signed answer does not fit it.
EDNS_BUFFER = 1232


@dataclass(frozen=True)
class Named:
    address: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"


def zone_file(origin: str, fragment: str) -> str:
    return (
        f"$ORIGIN {origin}.\n$TTL 60\n"
        f"@ IN SOA ns.{origin}. hostmaster.{origin}. 1 60 60 600 60\n"
        f"@ IN NS ns.{origin}.\nns IN A 127.0.0.1\n{fragment}"
    )


def start_named(directory: Path, zones: dict[str, str]) -> Named:
    """named on 127.0.0.1 and a free port, serving `zones` (origin: zone text); waits until it
    answers for each of them over TCP."""
    assert NAMED is not None
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    declared = ""
    for origin, text in zones.items():
        (directory / f"{origin}.zone").write_text(text)
        declared += f'zone "{origin}" {{ type primary; file "{directory / origin}.zone"; }};\n'
    conf = directory / "named.conf"
    conf.write_text(
        "options {\n"
        f'  directory "{directory}";\n'
        f"  listen-on port {port} {{ 127.0.0.1; }};\n"
        "  listen-on-v6 { none; };\n"
        f'  pid-file "{directory}/named.pid";\n'
        f'  session-keyfile "{directory}/session.key";\n'
        "  recursion no;\n"
        "  dnssec-validation no;\n"
        "};\n"
        "controls { };\n" + declared
    )
    command = [NAMED, "-g", "-n", "1", "-c", str(conf)]
    log = (directory / "named.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    named = Named("127.0.0.1", port, process)
    deadline = time.monotonic() + 20
    pending = set(zones)
    while pending and time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"named exited:\n{(directory / 'named.log').read_text()}")
        for origin in list(pending):
            query = dns.message.make_query(origin, dns.rdatatype.SOA)
            try:
                answer = dns.query.tcp(query, named.address, port=port, timeout=1)
            except (OSError, dns.exception.DNSException):
                continue
            if answer.answer:
                pending.discard(origin)
        time.sleep(0.05)
    if pending:
        process.terminate()
        raise RuntimeError(
            f"named did not serve {pending}:\n{(directory / 'named.log').read_text()}"
        )
    return named


def device_records(data: BootstrappingData, serial: str) -> list[tuple[bytes, ...]]:
    return device_txt(
        serial,
        conveyed_information=data.conveyed_information,
        owner_certificate=data.owner_certificate,
        ownership_voucher=data.ownership_voucher,
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("dns-lab") / "pki", list(SERIALS))


@pytest.fixture(scope="module")
def server(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("dns-server"), lab=lab) as running:
        running.apply(
            {
                **lab.trust_resources(),
                "profile": {"day0": {"type": "onboarding", "configuration": "hostname dns\n"}},
                "device": {
                    serial: {
                        "profile": "day0",
                        "voucher": base64.b64encode(lab_voucher(lab, serial)).decode(),
                    }
                    for serial in SERIALS
                },
            }
        )
        yield running


@pytest.fixture(scope="module")
def signed_redirect(lab: LabPki, server: RunningServer) -> BootstrappingData:
    """Signed redirect information to the server, pinning the lab TLS CA."""
    port = int(server.device_url.rsplit(":", 1)[1])
    tls_ca = pki.load_certificates_pem(lab.tls_ca.certificate.read_bytes())
    information = RedirectInformation((BootstrapServer("127.0.0.1", port, cms.certs_only(tls_ca)),))
    return build_signed(information, Encoding.JSON, lab.owner.load(), lab_voucher(lab, SIGNED))


@pytest.fixture(scope="module")
def named(
    lab: LabPki,
    server: RunningServer,
    signed_redirect: BootstrappingData,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Named]:
    port = int(server.device_url.rsplit(":", 1)[1])
    tampered = BootstrappingData(
        conveyed_information=signed_redirect.conveyed_information[:-1]
        + bytes([signed_redirect.conveyed_information[-1] ^ 0x01]),
        owner_certificate=signed_redirect.owner_certificate,
        ownership_voucher=lab_voucher(lab, TAMPERED),
    )
    unsigned = build_unsigned(
        OnboardingInformation(configuration_handling="merge", configuration=b"hostname evil\n"),
        Encoding.JSON,
    )
    devices = {
        SIGNED: device_records(signed_redirect, SIGNED),
        UNSIGNED_ONBOARDING: device_records(unsigned, UNSIGNED_ONBOARDING),
        TAMPERED: device_records(tampered, TAMPERED),
    }
    # Lower priorities first; the server's own name last, so only its record can succeed.
    servers = bootstrap_srv([("localhost", port, 20, 0), ("nothing-here.invalid", port, 10, 0)])
    zones = {
        DOMAIN: zone_file(DOMAIN, render_zone_fragment(ttl=60, devices=devices)),
        SRV_DOMAIN: zone_file(SRV_DOMAIN, render_zone_fragment(ttl=60, servers=servers)),
        EMPTY_DOMAIN: zone_file(EMPTY_DOMAIN, ""),
    }
    running = start_named(tmp_path_factory.mktemp("named"), zones)
    try:
        yield running
    finally:
        stop_process(running.process)


def settings(
    named: Named, *domains: str, nameservers: tuple[str, ...] = (), timeout: float = 2
) -> DnsSettings:
    return DnsSettings(
        domains=domains, nameservers=nameservers or (named.nameserver,), mdns=False, timeout=timeout
    )


# ---- the kit's lookup


def test_signed_txt_data_comes_over_tcp_whole(
    named: Named, signed_redirect: BootstrappingData
) -> None:
    query = dns.message.make_query(
        f"{SIGNED}._sztp.{DOMAIN}", "TXT", use_edns=0, payload=EDNS_BUFFER
    )
    over_udp = dns.query.udp(query, named.address, port=named.port, timeout=2)
    assert over_udp.flags & dns.flags.TC, "the signed answer should not fit a UDP message"
    messages: list[str] = []
    found = discover(SIGNED, settings(named, DOMAIN), log=messages.append)
    txt = [source for source in found if isinstance(source, DnsData)]
    assert [source.source for source in txt] == [f"DNS TXT {SIGNED}._sztp.{DOMAIN}"]
    assert txt[0].data == signed_redirect
    assert any("signed bootstrapping data" in message for message in messages), messages


def test_the_order_is_txt_then_srv_each_domain_in_turn(named: Named) -> None:
    messages: list[str] = []
    found = discover(SIGNED, settings(named, EMPTY_DOMAIN, DOMAIN, SRV_DOMAIN), log=messages.append)
    assert [(type(source).__name__, source.source) for source in found] == [
        ("DnsData", f"DNS TXT {SIGNED}._sztp.{DOMAIN}"),
        ("DnsServer", f"DNS SRV _sztp._tcp.{SRV_DOMAIN}"),
        ("DnsServer", f"DNS SRV _sztp._tcp.{SRV_DOMAIN}"),
    ]
    # Priority 10 before priority 20, whatever order the server gave them in.
    assert next(source.uri for source in found if isinstance(source, DnsServer)).startswith(
        "https://nothing-here.invalid:"
    )
    assert f"DNS TXT {SIGNED}._sztp.{EMPTY_DOMAIN}: no such name" in messages
    assert f"DNS SRV _sztp._tcp.{DOMAIN}: no such name" in messages


def test_srv_weights_decide_within_a_priority(named: Named, tmp_path: Path) -> None:
    records = bootstrap_srv(
        [("light.example", 443, 5, 1), ("heavy.example", 443, 5, 65535), ("late.example", 1, 9, 0)]
    )
    weighted = start_named(
        tmp_path / "named",
        {"w.example": zone_file("w.example", render_zone_fragment(ttl=60, servers=records))},
    )
    try:
        firsts = []
        for seed in range(20):
            found = discover(
                SRV_ONLY,
                settings(weighted, "w.example"),
                log=lambda _message: None,
                rng=random.Random(seed),  # noqa: S311 - a reproducible draw, no secret
            )
            uris = [source.uri for source in found if isinstance(source, DnsServer)]
            assert len(uris) == 3 and uris[2] == "https://late.example:1", uris
            firsts.append(uris[0])
    finally:
        stop_process(weighted.process)
    # Weight 1 against 65535: drawn first about once in 65536 draws.
    assert firsts.count("https://heavy.example:443") >= 19, firsts


def test_a_dead_nameserver_and_a_missing_name_are_nothing_found(named: Named) -> None:
    dead = f"127.0.0.1:{free_port(socket.SOCK_DGRAM)}"
    messages: list[str] = []
    started = time.monotonic()
    found = discover(
        SIGNED, settings(named, DOMAIN, nameservers=(dead,), timeout=0.5), log=messages.append
    )
    assert found == []
    assert time.monotonic() - started < 5
    assert any(
        "no nameserver answered" in message or "no answer" in message for message in messages
    )
    # Behind the dead one, the live nameserver answers.
    found = discover(
        SIGNED, settings(named, DOMAIN, nameservers=(dead, named.nameserver)), log=messages.append
    )
    assert [type(source) for source in found] == [DnsData], messages
    assert discover("SN-NOBODY", settings(named, DOMAIN), log=messages.append) == []


def test_refused_txt_data_is_logged_and_skipped(named: Named, tmp_path: Path) -> None:
    junk = zone_file(
        "j.example",
        render_zone_fragment(ttl=60, devices={"SN-J": [(b"oc=only",), (b"ci=one",), (b"ci=two",)]}),
    )
    server = start_named(tmp_path / "named", {"j.example": junk})
    try:
        messages: list[str] = []
        assert discover("SN-J", settings(server, "j.example"), log=messages.append) == []
    finally:
        stop_process(server.process)
    assert any("refused" in message and "two records" in message for message in messages)


# ---- a simulated device


def test_a_device_bootstraps_from_srv_records_only(
    lab: LabPki, named: Named, server: RunningServer, tmp_path: Path
) -> None:
    port = int(server.device_url.rsplit(":", 1)[1])
    result = simulate_lab_device(
        lab, "", SRV_ONLY, tmp_path, bootstrap_uris=(), dns=settings(named, DOMAIN, SRV_DOMAIN)
    )
    assert result.succeeded, result.reason
    assert result.servers_contacted == (
        f"https://nothing-here.invalid:{port}",
        f"https://localhost:{port}",
    )
    assert result.server_checks[-1].server_trusted is True


def test_a_device_bootstraps_from_its_signed_txt_data(
    lab: LabPki, named: Named, server: RunningServer, tmp_path: Path
) -> None:
    port = int(server.device_url.rsplit(":", 1)[1])
    # No server CA: the redirect's pinned trust anchor is what makes the server trusted.
    result = simulate_lab_device(
        lab, "", SIGNED, tmp_path, bootstrap_uris=(), server_ca=None, dns=settings(named, DOMAIN)
    )
    assert result.succeeded, result.reason
    source = f"DNS TXT {SIGNED}._sztp.{DOMAIN}"
    assert result.server_checks[0].uri == source
    assert result.server_checks[0].server_trusted is False
    assert result.server_checks[0].data.startswith("redirect information signed")
    assert result.servers_contacted == (f"https://127.0.0.1:{port}",)
    assert result.server_checks[1].server_trusted is True
    assert result.reports, "the trusted server hears the device's progress"


def test_configured_uris_come_before_dns(
    lab: LabPki, named: Named, server: RunningServer, tmp_path: Path
) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    result = simulate_lab_device(
        lab, "", SIGNED, tmp_path, bootstrap_uris=(dead,), dns=settings(named, DOMAIN, SRV_DOMAIN)
    )
    assert result.succeeded, result.reason
    assert result.servers_contacted[0] == dead
    assert [check.uri for check in result.server_checks][:2] == [
        dead,
        f"DNS TXT {SIGNED}._sztp.{DOMAIN}",
    ]


def test_sztpctl_simulate_looks_in_dns(
    lab: LabPki, named: Named, server: RunningServer, tmp_path: Path
) -> None:
    files = lab.devices[SRV_ONLY].idevid
    shown = run_sztpctl(
        "simulate",
        "run",
        "--serial",
        SRV_ONLY,
        "--idevid-cert",
        files.certificate,
        "--idevid-key",
        files.private_key,
        "--trust-anchor",
        lab.manufacturer_ca.certificate,
        "--server-ca",
        lab.tls_ca.certificate,
        "--work-dir",
        tmp_path / "device",
        "--dns-domain",
        SRV_DOMAIN,
        "--nameserver",
        named.nameserver,
        "--no-mdns",
        env=server.cli_env(tmp_path),
    )
    assert f"DNS SRV _sztp._tcp.{SRV_DOMAIN}: https://nothing-here.invalid" in shown.stdout
    assert "bootstrap complete" in shown.stdout


@pytest.mark.parametrize(
    ("serial", "refusal"),
    [
        (UNSIGNED_ONBOARDING, "unsigned onboarding information"),
        (TAMPERED, "bootstrapping data rejected"),
    ],
)
def test_txt_data_dns_cannot_vouch_for_is_refused(
    lab: LabPki, named: Named, server: RunningServer, tmp_path: Path, serial: str, refusal: str
) -> None:
    result = simulate_lab_device(
        lab, "", serial, tmp_path, bootstrap_uris=(), dns=settings(named, DOMAIN)
    )
    assert not result.succeeded
    assert result.reason is not None and result.reason.startswith(
        f"DNS TXT {serial}._sztp.{DOMAIN}: "
    )
    assert refusal in result.reason
    assert result.servers_contacted == ()
    assert not (tmp_path / "configuration").exists()


# ---- mDNS one-shot queries


def with_decoys(
    answers: dict[tuple[str, int], dns.rrset.RRset],
) -> Callable[[dns.message.Message], list[Reply]]:
    """Answers as an mDNS responder answers a one-shot query, question repeated; before each,
    junk and an answer to another question, which the querier must skip."""

    def answer(query: dns.message.Message) -> list[Reply]:
        question = query.question[0]
        rrset = answers.get((question.name.to_text(), question.rdtype))
        if rrset is None:
            return []
        other = dns.message.make_response(dns.message.make_query("other.local", "TXT"))
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        response.answer.append(rrset)
        return [b"\x00junk", other, response]

    return answer


def test_mdns_one_shot_queries_find_txt_and_srv() -> None:
    serial = "SN-M1"
    txt_name = f"{serial}._sztp.local."
    redirect = build_unsigned(
        RedirectInformation((BootstrapServer("sztp.local", 8443),)), Encoding.JSON
    )
    txt = dns.rrset.from_rdata_list(
        txt_name,
        10,
        [
            TXT(dns.rdataclass.IN, dns.rdatatype.TXT, rdata)
            for rdata in device_records(redirect, serial)
        ],
    )
    srv = dns.rrset.from_text("_sztp._tcp.local.", 10, "IN", "SRV", "0 0 8443 sztp.local.")
    answers = {(txt_name, dns.rdatatype.TXT): txt, ("_sztp._tcp.local.", dns.rdatatype.SRV): srv}
    messages: list[str] = []
    with OneShotResponder(with_decoys(answers)) as responder:
        found = discover(
            serial,
            DnsSettings(domains=(), mdns=True, mdns_timeout=1),
            log=messages.append,
            mdns_groups=[responder.group],
        )
    assert found == [
        DnsData(f"mDNS TXT {serial}._sztp.local", redirect),
        DnsServer("https://sztp.local:8443", "mDNS SRV _sztp._tcp.local"),
    ]
    # The SRV target under .local, with no address in the SRV answer, is asked for.
    assert [query.question[0].rdtype for query, _ in responder.queries] == [
        dns.rdatatype.TXT,
        dns.rdatatype.SRV,
        dns.rdatatype.AAAA,
        dns.rdatatype.A,
    ]
    for query, port in responder.queries:
        assert query.flags == 0 and port != 5353
    assert any("unreadable answer" in message for message in messages), messages


def test_mdns_silence_is_nothing_found() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        messages: list[str] = []
        started = time.monotonic()
        found = discover(
            "SN-M2",
            DnsSettings(domains=(), mdns=True, mdns_timeout=0.2),
            log=messages.append,
            mdns_groups=[("127.0.0.1", silent.getsockname()[1])],
        )
    finally:
        silent.close()
    assert found == []
    assert time.monotonic() - started < 2
    assert "mDNS TXT SN-M2._sztp.local: no answer within 0.2 s" in messages


# ---- the agent


def test_the_agent_looks_in_dns_after_dhcp_and_shows_where_each_source_came_from(
    lab: LabPki, named: Named, server: RunningServer, tmp_path: Path
) -> None:
    port = int(server.device_url.rsplit(":", 1)[1])
    keys = tmp_path / "ssh"
    keys.mkdir()
    (keys / "ssh_host_ed25519_key.pub").write_bytes(generate_ssh_host_key()[1])
    (tmp_path / "os-release").write_text('NAME="LabOS"\nVERSION_ID="1.0"\n')
    files = lab.devices[SIGNED].idevid
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "idevid_certificate": str(files.certificate),
                "idevid_key": str(files.private_key),
                "trust_anchors": str(lab.manufacturer_ca.certificate),
                "dhcp": False,
                "dns": True,
                "dns_domains": [DOMAIN, SRV_DOMAIN],
                "dns_nameservers": [named.nameserver],
                "mdns": False,
                "os_release": "os-release",
                "state_dir": "state",
                "handlers_dir": str(ROOT / "agent" / "sztp_agent" / "data" / "handlers"),
                "handler_environment": {"SZTP_CONFIG_FILE": str(tmp_path / "dpu.conf")},
                "reboot_command": ["false"],
                "ssh_host_keys": str(keys / "*.pub"),
                "attempts": 1,
                "timeout": 10,
            }
        )
    )

    def ztp(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sztp_agent", "--config", str(config), *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    ran = ztp("run")
    assert ran.returncode == 0, ran.stderr
    status = json.loads(ztp("status", "--verbose", "-o", "json").stdout)
    assert status["state"] == "complete", status["reason"]
    assert [(found["uri"], found["source"]) for found in status["discovered"]] == [
        ("", f"DNS TXT {SIGNED}._sztp.{DOMAIN}"),
        (f"https://nothing-here.invalid:{port}", f"DNS SRV _sztp._tcp.{SRV_DOMAIN}"),
        (f"https://localhost:{port}", f"DNS SRV _sztp._tcp.{SRV_DOMAIN}"),
    ]
    assert status["servers_contacted"] == [f"https://127.0.0.1:{port}"]
    shown = ztp("status", "--verbose").stdout
    assert f"bootstrapping data  (DNS TXT {SIGNED}._sztp.{DOMAIN})" in shown
    assert (tmp_path / "dpu.conf").read_text() == "hostname dns\n"


def test_the_agent_refuses_dns_settings_it_cannot_use(lab: LabPki, tmp_path: Path) -> None:
    files = lab.devices[SIGNED].idevid
    required = {
        "idevid_certificate": str(files.certificate),
        "idevid_key": str(files.private_key),
        "trust_anchors": str(lab.manufacturer_ca.certificate),
    }
    with pytest.raises(ConfigError, match=r"dns_nameservers: 'ns\.example' is not an IP address"):
        config_from_mapping(
            {**required, "dns": True, "dns_nameservers": ["ns.example"]}, base=tmp_path
        )
    with pytest.raises(ConfigError, match="dns_domains"):
        config_from_mapping({**required, "dns_domains": ["a..b"]}, base=tmp_path)
    with pytest.raises(ConfigError, match="dns: true"):
        config_from_mapping({**required, "dhcp": False}, base=tmp_path)
    only_dns = config_from_mapping({**required, "dhcp": False, "dns": True}, base=tmp_path)
    assert only_dns.dns_settings == DnsSettings(domains=None, nameservers=(), mdns=True)

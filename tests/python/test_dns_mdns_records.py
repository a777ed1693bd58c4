"""The fleet file's dns section rendered for sztp-mdns (`sztpctl dns render --format mdns`):
what the responder's own check accepts, the addresses of `.local` servers, and what rendering
refuses before the responder would."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import dns.name
import pytest

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol.dns_records import MAX_MDNS_MESSAGE, parse_device_txt
from sztp.state.dns_section import DnsSectionError, check_dns_section, render_mdns
from sztp.state.fleet import load_fleet
from sztp_server.mdns.records import load_records
from sztp_testing import lab_voucher, run_sztpctl
from test_dns_section import SERIALS, fleet_with

VENV_BIN = Path(sys.executable).parent
MDNS_SERVERS = """\
dns:
  domain: sztp.example.net
  ttl: 120
  bootstrap_servers:
    - {host: sztp1.local, port: 8443, addresses: [192.0.2.10, "2001:db8::10"]}
    - {host: sztp3.local, priority: 1, addresses: ["2001:DB8::11"]}
    - {host: sztp2.example.net, priority: 2}
"""


@pytest.fixture(scope="module", name="lab")
def lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    lab = write_lab_pki(tmp_path_factory.mktemp("mdns") / "pki", SERIALS)
    for serial in SERIALS:
        (lab.directory.parent / f"{serial}.vcj").write_bytes(lab_voucher(lab, serial))
    return lab


def mdns_fleet(lab: LabPki, dns: str = MDNS_SERVERS, device_records: str = "") -> Path:
    """The lab fleet (two devices, one owner) with `dns` as its dns section."""
    base = fleet_with(lab).read_text(encoding="utf-8").split("dns:\n")[0]
    tail = f"  device_records: {device_records}\n" if device_records else ""
    path = lab.directory.parent / "mdns-fleet.yaml"
    path.write_text(base + dns + tail, encoding="utf-8")
    return path


def env_with_venv() -> dict[str, str]:
    """sztp-mdns, next to this Python, first on PATH."""
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}


@pytest.mark.parametrize("signed", ["false", "true"])
def test_rendered_records_are_what_sztp_mdns_publishes(
    lab: LabPki, tmp_path: Path, signed: str
) -> None:
    fleet = load_fleet(mdns_fleet(lab, device_records=f"{{devices: all, signed: {signed}}}"))
    assert check_dns_section(fleet) == []
    text = render_mdns(fleet, source="mdns-fleet.yaml")
    lines = text.splitlines()
    assert lines[0].endswith("for mDNS, from mdns-fleet.yaml")
    # Relative names, read under local.; addresses as written, in the order given.
    assert [line for line in lines if " IN SRV " in line or line.startswith("sztp")] == [
        "_sztp._tcp 120 IN SRV 0 0 8443 sztp1.local.",
        "_sztp._tcp 120 IN SRV 1 0 443 sztp3.local.",
        "_sztp._tcp 120 IN SRV 2 0 443 sztp2.example.net.",
        "sztp1 120 IN A 192.0.2.10",
        "sztp1 120 IN AAAA 2001:db8::10",
        "sztp3 120 IN AAAA 2001:db8::11",
    ]
    path = tmp_path / "mdns.zone"
    path.write_text(text, encoding="ascii")
    published, warnings = load_records(path)
    assert (published.devices, published.servers, published.hosts) == (2, 3, 2)
    # The one target mDNS cannot resolve, as the responder says at load.
    assert [re.sub(r"^.*SRV target (\S+) .*$", r"\1", w) for w in warnings] == [
        "sztp2.example.net."
    ]
    keys = [b"ci"] if signed == "false" else [b"ci", b"oc", b"ov"]
    for serial in ("SN-1", "SN-2"):
        [txt] = published.rrsets[dns.name.from_text(f"{serial}._sztp.local.")]
        found = parse_device_txt([rdata.strings for rdata in txt])
        assert [key for key, value in zip((b"ci", b"oc", b"ov"), found, strict=True) if value] == (
            keys
        )


def test_render_mdns_checks_with_sztp_mdns_and_writes_the_file(lab: LabPki) -> None:
    path = mdns_fleet(lab, device_records="{devices: [SN-1], signed: false}")
    output = lab.directory.parent / "mdns.zone"
    result = run_sztpctl(
        "dns", "render", "-f", path, "--format", "mdns", "--check", "-o", output,
        env=env_with_venv(),
    )  # fmt: skip
    assert "sztp-mdns accepts the records" in result.stderr
    assert "<mdns records>: 1 devices, 3 SRV records, 2 hosts" in result.stderr
    assert f"mdns records written to {output}" in result.stdout
    # The real console script, on the file written.
    checked = run_command(VENV_BIN / "sztp-mdns", "check", output)
    assert checked.returncode == 0, checked.stderr
    assert f"{output}: 1 devices, 3 SRV records, 2 hosts" in checked.stdout


def test_a_host_on_two_ports_has_its_addresses_once(lab: LabPki, tmp_path: Path) -> None:
    dns = (
        MDNS_SERVERS
        + "    - {host: sztp1.local, port: 9443, addresses: [192.0.2.11, 192.0.2.10]}\n"
    )
    text = render_mdns(load_fleet(mdns_fleet(lab, dns)))
    assert [line for line in text.splitlines() if line.startswith("sztp1 ")] == [
        "sztp1 120 IN A 192.0.2.10",
        "sztp1 120 IN AAAA 2001:db8::10",
        "sztp1 120 IN A 192.0.2.11",
    ]
    path = tmp_path / "mdns.zone"
    path.write_text(text, encoding="ascii")
    assert load_records(path)[0].servers == 4


def run_command(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(argument) for argument in arguments], capture_output=True, text=True, check=False
    )


def test_check_without_sztp_mdns_says_what_it_needs(lab: LabPki, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    path = mdns_fleet(lab)
    result = run_sztpctl(
        "dns", "render", "-f", path, "--format", "mdns", "--check",
        env={**os.environ, "PATH": str(tmp_path / "bin")}, expect=1,
    )  # fmt: skip
    assert "needs sztp-mdns (the server extra) on PATH" in result.stderr


@pytest.mark.parametrize(
    ("server", "where", "message"),
    [
        (
            "{host: sztp9.example.net, addresses: [192.0.2.1]}",
            r"\.addresses",
            "sztp9.example.net is not a .local host: its addresses belong in DNS",
        ),
        (
            "{host: sztp9.local, addresses: [192.0.2.300]}",
            r"\.addresses\[0\]",
            "'192.0.2.300' is not an IPv4 or IPv6 address",
        ),
        (
            "{host: sztp9.local, addresses: [ff02::fb]}",
            r"\.addresses\[0\]",
            "ff02::fb is not the address of a host",
        ),
        (
            "{host: sztp9.local, addresses: ['fe80::1%eth0']}",
            r"\.addresses\[0\]",
            "has a zone index, which an AAAA record cannot hold",
        ),
        (
            "{host: sztp9.local, addresses: [192.0.2.1, 192.0.2.01]}",
            r"\.addresses\[1\]",
            "is not an IPv4",  # ipaddress refuses a leading zero
        ),
        (
            "{host: sztp9.local, addresses: ['2001:db8::1', '2001:DB8:0::1']}",
            r"\.addresses\[1\]",
            "2001:db8::1 is listed twice",
        ),
    ],
)
def test_address_problems_name_file_line_and_field(
    lab: LabPki, server: str, where: str, message: str
) -> None:
    dns = MDNS_SERVERS + f"    - {server}\n"
    fleet = load_fleet(mdns_fleet(lab, dns))
    [problem] = check_dns_section(fleet)
    assert re.fullmatch(
        rf".*mdns-fleet\.yaml:\d+: dns\.bootstrap_servers\[3\]{where}", problem.where
    )
    assert message in problem.message


def test_the_schema_wants_a_list_of_addresses(lab: LabPki) -> None:
    path = mdns_fleet(lab, MDNS_SERVERS + "    - {host: sztp9.local, addresses: []}\n")
    result = run_sztpctl("validate", "-f", path, env=os.environ, expect=1)
    assert "addresses" in result.stderr


def test_a_local_server_without_addresses_is_refused_for_mdns_only(lab: LabPki) -> None:
    dns = MDNS_SERVERS + "    - {host: sztp4.local}\n"
    path = mdns_fleet(lab, dns)
    fleet = load_fleet(path)
    assert check_dns_section(fleet) == []  # unicast DNS may carry its address records
    with pytest.raises(DnsSectionError) as raised:
        render_mdns(fleet)
    assert re.fullmatch(
        r".*mdns-fleet\.yaml:\d+: dns\.bootstrap_servers\[3\]\.host", raised.value.where
    )
    assert "sztp4.local has no addresses" in raised.value.message
    zone = run_sztpctl("dns", "render", "-f", path, env=os.environ)
    assert "sztp4.local." in zone.stdout
    refused = run_sztpctl("dns", "render", "-f", path, "--format", "mdns", env=os.environ, expect=1)
    assert "sztp4.local has no addresses" in refused.stderr


def test_a_device_no_mdns_message_holds_is_named_at_render(lab: LabPki, tmp_path: Path) -> None:
    # Signed records carry each server's trust anchor: sixteen copies of the CA make SN-1's
    # records larger than one mDNS message, though not than a DNS message over TCP.
    anchors = lab.directory.parent / "anchors.pem"
    anchors.write_bytes(lab.tls_ca.certificate.read_bytes() * 16)
    dns = MDNS_SERVERS.replace("port: 8443,", "port: 8443, trust_anchor: {file: anchors.pem},")
    path = mdns_fleet(lab, dns, device_records="{devices: [SN-1]}")
    with pytest.raises(DnsSectionError) as raised:
        render_mdns(load_fleet(path))
    message = raised.value.message
    assert message.startswith("device SN-1: its TXT answer takes ")
    assert f"over the {MAX_MDNS_MESSAGE} of one mDNS message" in message
    # The unicast records of the same section are fine, and the responder refuses them too.
    zone = run_sztpctl("dns", "render", "-f", path, "--origin", env=os.environ).stdout
    records = tmp_path / "mdns.zone"
    records.write_text(zone.replace("$ORIGIN sztp.example.net.\n", ""), encoding="ascii")
    refused = run_command(VENV_BIN / "sztp-mdns", "check", records)
    assert refused.returncode == 2 and "device 'SN-1'" in refused.stderr
    # Within the few octets by which one ECDSA signature's length differs from another's.
    sizes = [re.search(r"takes (\d+) octets", text) for text in (message, refused.stderr)]
    rendered, published = (int(size.group(1)) for size in sizes if size is not None)
    assert abs(rendered - published) <= 4

"""The fleet file's dns section: its checks (file:line problems), the records it makes (signed
TXT records verified as a device verifies them), `sztpctl dns render` and `sztpctl validate`."""

from __future__ import annotations

import os
import re
import shutil
import textwrap
from pathlib import Path

import pytest

from sztp.errors import VoucherError
from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import bootstrapping_data, cms, pki
from sztp.protocol.conveyed_info import RedirectInformation
from sztp.protocol.dns_records import parse_device_txt
from sztp.state.dns_section import (
    DnsSectionError,
    check_dns_section,
    dns_records,
    parse_dns_section,
    render_dns,
)
from sztp.state.fleet import FleetError, load_fleet
from sztp_testing import lab_voucher, run_sztpctl
from test_dns_records import decode_master_strings

SERIALS = ("SN-1", "SN-2")
NAMED_CHECKZONE = shutil.which("named-checkzone")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    lab = write_lab_pki(tmp_path_factory.mktemp("dns") / "pki", SERIALS)
    for serial in SERIALS:
        (lab.directory.parent / f"{serial}.vcj").write_bytes(lab_voucher(lab, serial))
    return lab


FLEET = """\
owner:
  certificate_chain: {file: [pki/owner/owner.pem, pki/owner/ca.pem]}
  private_key: {file: pki/owner/owner.key}
profiles:
  - {name: lab, type: redirect, bootstrap_servers: [{address: sztp.lab.example}]}
devices:
  - {serial: SN-1, profile: lab, voucher: {file: SN-1.vcj}}
  - {serial: SN-2, profile: lab, voucher: {file: SN-2.vcj}}
dns:
  domain: sztp.example.net
  ttl: 600
  bootstrap_servers:
    - {host: sztp2.example.net, priority: 1}
    - {host: sztp1.example.net, port: 8443, weight: 10, trust_anchor: {file: pki/tls/ca.pem}}
"""


def write_fleet(lab: LabPki, text: str, name: str = "fleet.yaml") -> Path:
    path = lab.directory.parent / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def fleet_with(lab: LabPki, dns_tail: str = "", *, fleet: str = FLEET) -> Path:
    return write_fleet(lab, fleet + textwrap.indent(textwrap.dedent(dns_tail), "  "))


# ---- the section as data


def test_srv_only_section_renders_absolute_and_relative(lab: LabPki) -> None:
    fleet = load_fleet(fleet_with(lab))
    section = parse_dns_section(fleet)
    assert section.domains == ("sztp.example.net",) and section.ttl == 600
    assert section.serials == () and check_dns_section(fleet) == []
    # Ordered by priority: the order redirect information lists them in.
    assert [server.srv.target for server in section.servers] == [
        "sztp1.example.net",
        "sztp2.example.net",
    ]
    records = dns_records(fleet)
    assert render_dns(records, "zone").splitlines()[1:] == [
        "_sztp._tcp.sztp.example.net. 600 IN SRV 0 10 8443 sztp1.example.net.",
        "_sztp._tcp.sztp.example.net. 600 IN SRV 1 0 443 sztp2.example.net.",
    ]
    assert render_dns(records, "zone", relative=True).splitlines()[1:3] == [
        "$ORIGIN sztp.example.net.",
        "_sztp._tcp 600 IN SRV 0 10 8443 sztp1.example.net.",
    ]


def test_several_domains_get_the_same_records(lab: LabPki) -> None:
    fleet_text = FLEET.replace("domain: sztp.example.net", "domains: [a.example, b.example.]")
    records = dns_records(load_fleet(fleet_with(lab, fleet=fleet_text)))
    script = render_dns(records, "nsupdate")
    assert script.splitlines()[0] == "; put the server, zone and key commands first"
    assert script.count("send\n") == 2
    assert "update delete _sztp._tcp.a.example. SRV" in script
    assert "update add _sztp._tcp.b.example. 600 SRV 1 0 443 sztp2.example.net." in script


def test_device_records_name_each_host_once(lab: LabPki) -> None:
    """Redirect information keys its servers by address alone: one host on two ports is an
    SRV set, but not a redirect."""
    text = FLEET.replace("host: sztp2.example.net", "host: sztp1.example.net")
    assert check_dns_section(load_fleet(fleet_with(lab, fleet=text))) == []
    fleet = load_fleet(fleet_with(lab, fleet=text + "  device_records: {devices: all}\n"))
    [problem] = check_dns_section(fleet)
    assert problem.where == f"{fleet.path}:14: dns.bootstrap_servers[1]"
    assert "device records names each host once" in problem.message
    with pytest.raises(DnsSectionError, match="names each host once"):
        dns_records(fleet)


@pytest.mark.parametrize(
    ("change", "line", "path", "message"),
    [
        (("domain: sztp.example.net", "domain: sztp.example.net\n  domains: [x.example]"),
         10, "dns", "give domain or domains, exactly one"),
        (("domain: sztp.example.net", "domain: 'bad domain'"),
         10, "dns.domain", "is not a domain name"),
        (("host: sztp2.example.net", "host: 192.0.2.1"),
         13, "dns.bootstrap_servers[0].host", "SRV targets are host names"),
        (("host: sztp2.example.net", "host: sztp1.example.net, port: 8443"),
         14, "dns.bootstrap_servers[1]", "listed twice (first at bootstrap_servers[0])"),
        (("{file: pki/tls/ca.pem}", "not a certificate"),
         14, "dns.bootstrap_servers[1].trust_anchor", "holds no PEM certificate"),
    ],
)  # fmt: skip
def test_section_problems_name_file_line_and_field(
    lab: LabPki, change: tuple[str, str], line: int, path: str, message: str
) -> None:
    fleet = load_fleet(fleet_with(lab, fleet=FLEET.replace(*change)))
    [problem] = check_dns_section(fleet)
    assert problem.where == f"{fleet.path}:{line}: {path}"
    assert message in problem.message
    with pytest.raises(DnsSectionError, match=re.escape(message)):
        dns_records(fleet)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("ttl: 600", "ttl: 600\n  zone: example.net"), r":12: dns\.zone: unknown field"),
        (("priority: 1}", "priority: 1, port: 70000}"), r":13: dns\.bootstrap_servers\[0\]\.port"),
    ],
)
def test_the_schema_refuses_unknown_keys_and_numbers_out_of_range(
    lab: LabPki, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(FleetError, match=message):
        load_fleet(fleet_with(lab, fleet=FLEET.replace(*change)))


@pytest.mark.parametrize(
    ("devices", "extra_device", "where", "message"),
    [
        ("[SN-1, SN-9]", "", ":15: dns.device_records.devices[1]", "no device 'SN-9'"),
        ("[SN-1, SN-1]", "", ":15: dns.device_records.devices[1]", "SN-1 is listed twice"),
        ("{profile: other}", "", ":15: dns.device_records.devices.profile", "no profile 'other'"),
        ("all", "  - {serial: SN.3, profile: lab}\n", ":9: devices[2]", "'SN.3' has a '.'"),
        ("all", "  - {serial: sn-1, profile: lab}\n", ":9: devices[2]", "are one DNS name"),
    ],
)
def test_device_selection_problems(
    lab: LabPki, devices: str, extra_device: str, where: str, message: str
) -> None:
    text = FLEET.replace("dns:\n", extra_device + "dns:\n")
    fleet = load_fleet(fleet_with(lab, f"device_records: {{devices: {devices}}}\n", fleet=text))
    [problem] = check_dns_section(fleet)
    assert problem.where.endswith(where) and message in problem.message


def test_devices_of_a_profile_include_its_selection_rules(lab: LabPki) -> None:
    text = FLEET.replace(
        "  - {serial: SN-2, profile: lab,",
        "  - {serial: SN-2, selection: [{hw_model: x, profile: lab}],",
    ).replace("profiles:\n", "profiles:\n  - {name: other, type: redirect}\n")
    fleet = load_fleet(fleet_with(lab, "device_records: {devices: {profile: lab}}\n", fleet=text))
    assert parse_dns_section(fleet).serials == SERIALS


# ---- the device's records, verified as the device verifies them


def manufacturer_anchors(lab: LabPki) -> list[pki.x509.Certificate]:
    return pki.load_certificates_pem(lab.manufacturer_ca.certificate.read_bytes())


def test_signed_records_verify_as_the_device_verifies_them(lab: LabPki) -> None:
    fleet = load_fleet(fleet_with(lab, "device_records: {devices: all}\n"))
    assert check_dns_section(fleet) == []
    records = dns_records(fleet)
    assert list(records.devices) == list(SERIALS)
    for serial in SERIALS:
        ci, oc, ov = parse_device_txt(records.devices[serial])
        data = bootstrapping_data.BootstrappingData(ci, oc, ov)
        verified = bootstrapping_data.verify_bootstrapping_data(
            data, serial_number=serial, trust_anchors=manufacturer_anchors(lab)
        )
        assert verified.signed and ov == (lab.directory.parent / f"{serial}.vcj").read_bytes()
        assert isinstance(verified.information, RedirectInformation)
        first, second = verified.information.bootstrap_servers
        assert (first.address, first.port, second.address, second.port) == (
            "sztp1.example.net",
            8443,
            "sztp2.example.net",
            443,
        )
        tls_ca = pki.load_certificates_pem(lab.tls_ca.certificate.read_bytes())
        assert first.trust_anchor == cms.certs_only(tls_ca) and second.trust_anchor is None
    # A voucher names one device: SN-1's records do not verify as SN-2's.
    ci, oc, ov = parse_device_txt(records.devices["SN-1"])
    with pytest.raises(VoucherError, match="SN-2"):
        bootstrapping_data.verify_bootstrapping_data(
            bootstrapping_data.BootstrappingData(ci, oc, ov),
            serial_number="SN-2",
            trust_anchors=manufacturer_anchors(lab),
        )


def test_unsigned_records_are_redirect_information_alone(lab: LabPki) -> None:
    fleet = load_fleet(fleet_with(lab, "device_records: {devices: [SN-2], signed: false}\n"))
    [rdata] = dns_records(fleet).devices["SN-2"]
    ci, oc, ov = parse_device_txt([rdata])
    assert oc is None and ov is None
    verified = bootstrapping_data.verify_bootstrapping_data(
        bootstrapping_data.BootstrappingData(ci),
        serial_number="SN-2",
        trust_anchors=manufacturer_anchors(lab),
    )
    assert not verified.signed and isinstance(verified.information, RedirectInformation)
    # A device discards the trust anchors of redirect information it cannot verify.
    assert all(server.trust_anchor is None for server in verified.information.bootstrap_servers)


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            ("  private_key: {file: pki/owner/owner.key}\n", ""),
            ":2: owner",
            "owner 'default' cannot sign the records of SN-1: it has no private_key",
        ),
        (
            ("{file: pki/owner/owner.key}", '"pkcs11:token=lab;object=owner"'),
            ":3: owner.private_key",
            "its private_key is in a PKCS#11 token",
        ),
        (
            (", voucher: {file: SN-1.vcj}}", "}"),
            ":8: devices[0]",
            "device SN-1: no voucher",
        ),
        (
            ("profile: lab, voucher: {file: SN-1.vcj}", "voucher: {file: SN-1.vcj}"),
            ":8: devices[0]",
            "device SN-1: no profile, so no owner signs its records",
        ),
        (
            (
                "profile: lab, voucher: {file: SN-1.vcj}",
                "profile: lab, selection: [{hw_model: x, profile: other}], "
                "voucher: {file: SN-1.vcj}",
            ),
            ":8: devices[0]",
            "signed by owners 'default' (profile 'lab') and 'second' (profile 'other'), a DNS",
        ),
    ],
)
def test_what_signing_needs_is_named_with_the_device_or_owner(
    lab: LabPki, change: tuple[str, str], where: str, message: str
) -> None:
    text = FLEET.replace(*change).replace(
        "profiles:\n", "profiles:\n  - {name: other, type: redirect, owner: second}\n"
    )
    fleet = load_fleet(fleet_with(lab, "device_records: {devices: [SN-1]}\n", fleet=text))
    [problem] = check_dns_section(fleet)
    assert problem.where.endswith(where) and message in problem.message
    with pytest.raises(DnsSectionError, match="render unsigned records"):
        dns_records(fleet)


def test_an_unset_secret_is_not_a_dns_problem(lab: LabPki) -> None:
    text = FLEET.replace("{file: pki/owner/owner.key}", "{env: SZTP_TEST_UNSET_OWNER_KEY}")
    path = fleet_with(lab, "device_records: {devices: all}\n", fleet=text)
    fleet = load_fleet(path, environ={}, skip_unset_secrets=True)
    assert check_dns_section(fleet) == []
    with pytest.raises(DnsSectionError, match="its private_key variable is not set"):
        dns_records(fleet)


# ---- sztpctl dns render and sztpctl validate


def cli_env(path: str | None = None) -> dict[str, str]:
    return {**os.environ, "PATH": os.environ["PATH"] if path is None else path}


@pytest.mark.skipif(NAMED_CHECKZONE is None, reason="named-checkzone (bind9-utils) is missing")
@pytest.mark.parametrize("names", ["--absolute", "--origin"])
def test_render_checks_with_named_checkzone_and_writes_what_it_checked(
    lab: LabPki, names: str
) -> None:
    path = fleet_with(lab, "device_records: {devices: all}\n")
    output = lab.directory.parent / "records.zone"
    result = run_sztpctl(
        "dns", "render", "-f", path, names, "--check", "-o", output, env=cli_env()
    )  # fmt: skip
    assert "named-checkzone accepts the records for sztp.example.net" in result.stderr
    assert f"zone for sztp.example.net written to {output}" in result.stdout
    zone = output.read_text(encoding="ascii")
    assert ("$ORIGIN sztp.example.net." in zone) == (names == "--origin")
    owners = [line.split()[0] for line in zone.splitlines() if " IN TXT (" in line]
    prefix = "" if names == "--origin" else ".sztp.example.net."
    assert owners == [f"SN-{n}._sztp{prefix}" for n in (1, 1, 1, 2, 2, 2)]
    rdatas = decode_master_strings(zone)
    for serial, records in (("SN-1", rdatas[:3]), ("SN-2", rdatas[3:])):
        bootstrapping_data.verify_bootstrapping_data(
            bootstrapping_data.BootstrappingData(*parse_device_txt(records)),
            serial_number=serial,
            trust_anchors=manufacturer_anchors(lab),
        )


@pytest.mark.skipif(NAMED_CHECKZONE is None, reason="named-checkzone (bind9-utils) is missing")
def test_a_refused_zone_is_a_clear_error(lab: LabPki, tmp_path: Path) -> None:
    # A stand-in named-checkzone that refuses, as BIND does, shows its verdict.
    checker = tmp_path / "named-checkzone"
    checker.write_text('#!/bin/sh\necho "zone $5/IN: bad record in $6"\nexit 1\n')
    checker.chmod(0o755)
    result = run_sztpctl(
        "dns", "render", "-f", fleet_with(lab), "--check", env=cli_env(str(tmp_path)), expect=1
    )
    assert "named-checkzone refuses the records for sztp.example.net" in result.stderr
    assert "bad record in <sztp.example.net zone>" in result.stderr


def test_kzonecheck_is_used_without_named_checkzone(lab: LabPki, tmp_path: Path) -> None:
    checker = tmp_path / "kzonecheck"
    checker.write_text(
        '#!/bin/sh\n[ "$1" = -o ] && [ "$2" = sztp.example.net ] && exit 0\nexit 1\n'
    )
    checker.chmod(0o755)
    result = run_sztpctl(
        "dns", "render", "-f", fleet_with(lab), "--check", env=cli_env(str(tmp_path))
    )
    assert "kzonecheck accepts the records for sztp.example.net" in result.stderr
    assert "_sztp._tcp.sztp.example.net. 600 IN SRV" in result.stdout


def test_render_errors_are_one_line_without_a_traceback(lab: LabPki, tmp_path: Path) -> None:
    env = cli_env(str(tmp_path))  # no zone checker there
    missing = run_sztpctl("dns", "render", "-f", fleet_with(lab), "--check", env=env, expect=1)
    assert "--check needs named-checkzone (Debian/Ubuntu: bind9-utils) or kzonecheck" in (
        missing.stderr
    )
    no_section = write_fleet(lab, FLEET.partition("dns:")[0], "no-dns.yaml")
    result = run_sztpctl("dns", "render", "-f", no_section, env=env, expect=1)
    assert f"error: {no_section} has no dns section" in result.stderr
    unsigned_needed = fleet_with(
        lab,
        "device_records: {devices: [SN-1]}\n",
        fleet=FLEET.replace("{file: pki/owner/owner.key}", '"pkcs11:token=lab;object=owner"'),
    )
    result = run_sztpctl("dns", "render", "-f", unsigned_needed, env=env, expect=1)
    assert "its private_key is in a PKCS#11 token" in result.stderr


def test_validate_reports_dns_problems_and_says_it_checked_the_section(lab: LabPki) -> None:
    good = fleet_with(lab, "device_records: {devices: all}\n")
    result = run_sztpctl("validate", "-f", good, env=cli_env())
    assert "dns section checked" in result.stdout
    bad = fleet_with(lab, "device_records: {devices: [SN-1, SN-7]}\n")
    result = run_sztpctl("validate", "-f", bad, env=cli_env(), expect=1)
    assert f"error: {bad}:15: dns.device_records.devices[1]: no device 'SN-7'" in result.stderr

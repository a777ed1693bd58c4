"""The filter dns_records_from_fleet, on the controller side: the kit's rendering of a fleet
file's dns section, as text Ansible never renders as a template."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible.template import Templar
from ansible_collections.sztp.bootstrap.plugins.filter import (
    dns_records_from_fleet as dns_filter,
)
from ansible_collections.sztp.bootstrap.tests.unit.compat.ansible_core import trust_as_template

from sztp.labpki import write_lab_pki
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher

FLEET = """\
owner:
  certificate_chain: {file: [pki/owner/owner.pem, pki/owner/ca.pem]}
  private_key: {file: pki/owner/owner.key}
profiles:
  - {name: lab, type: redirect}
devices:
  - {serial: SN-1, profile: lab, voucher: {file: SN-1.vcj}}
dns:
  domains: [sztp.example.net, sztp.example.org]
  bootstrap_servers:
    - {host: sztp1.example.net, port: 8443}
  device_records: {devices: [SN-1]}
"""


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    lab = write_lab_pki(tmp_path / "pki", ["SN-1"])
    owner_ca = pki.load_certificates_pem(lab.owner_ca.certificate.read_bytes())[0]
    voucher = sign_voucher(create_voucher("SN-1", owner_ca), lab.masa.load())
    (tmp_path / "SN-1.vcj").write_bytes(voucher)
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET)
    return path


def test_zone_text_has_each_domains_records(fleet_file: Path) -> None:
    text = dns_filter.dns_records_from_fleet(str(fleet_file))
    for domain in ("sztp.example.net", "sztp.example.org"):
        assert f"_sztp._tcp.{domain}. 300 IN SRV 0 0 8443 sztp1.example.net." in text
        owners = re.findall(rf"^SN-1\._sztp\.{re.escape(domain)}\. 300 IN TXT \($", text, re.M)
        assert len(owners) == 3  # ci, oc and ov
    assert re.findall(r'^    "(ci|oc|ov)=', text, re.M) == ["ci", "oc", "ov"] * 2


def test_relative_names_follow_an_origin_line(fleet_file: Path) -> None:
    text = dns_filter.dns_records_from_fleet(str(fleet_file), relative=True)
    assert "$ORIGIN sztp.example.org.\n" in text
    assert "_sztp._tcp 300 IN SRV 0 0 8443 sztp1.example.net." in text


def test_nsupdate_script_replaces_each_record_set(fleet_file: Path) -> None:
    script = dns_filter.dns_records_from_fleet(str(fleet_file), format="nsupdate")
    assert "update delete SN-1._sztp.sztp.example.net. TXT\n" in script
    assert script.count("\nsend\n") == 2


def test_the_text_is_never_rendered_as_a_template(
    fleet_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TXT values are binary artifacts, which may hold "{{" by chance: stand-in records do here.
    records = 'SN-1._sztp 300 IN TXT "ci={{ 7 * 6 }}"\n'
    monkeypatch.setattr(dns_filter, "render_dns", lambda *_, **__: records)
    text = dns_filter.dns_records_from_fleet(str(fleet_file))
    templar = Templar(loader=None, variables={"records": text})
    assert templar.template(trust_as_template("{{ records }}")) == records


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (("SN-1]}", "SN-9]}"), r"fleet\.yaml:12: dns\.device_records\.devices\[0\]: no device"),
        (
            ("  private_key: {file: pki/owner/owner.key}\n", ""),
            "owner 'default' cannot sign the records of SN-1: it has no private_key",
        ),
        (("dns:", "dnss:"), r"fleet\.yaml:9: dnss: unknown field"),
    ],
)
def test_fleet_problems_name_the_file_and_line(
    fleet_file: Path, replace: tuple[str, str], message: str
) -> None:
    fleet_file.write_text(FLEET.replace(*replace))
    with pytest.raises(AnsibleFilterError, match=message) as raised:
        dns_filter.dns_records_from_fleet(str(fleet_file))
    assert str(raised.value).startswith("sztp.bootstrap.dns_records_from_fleet: ")


def test_a_fleet_without_a_dns_section_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_text("devices: []\n")
    with pytest.raises(AnsibleFilterError, match="has no dns section"):
        dns_filter.dns_records_from_fleet(str(path))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"format": "bind"}, "format must be one of zone, nsupdate"),
        ({"relative": "yes"}, "relative must be true or false"),
    ],
)
def test_bad_arguments_are_named(
    fleet_file: Path, arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        dns_filter.dns_records_from_fleet(str(fleet_file), **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [None, 7, ""])
def test_input_must_be_a_path(value: object) -> None:
    with pytest.raises(AnsibleFilterError, match="expects the path of a fleet file"):
        dns_filter.dns_records_from_fleet(value)  # type: ignore[arg-type]


def test_filter_is_registered() -> None:
    assert "dns_records_from_fleet" in dns_filter.FilterModule().filters()


def test_mdns_records_name_the_local_servers_addresses(fleet_file: Path) -> None:
    local = "    - {host: sztp1.local, port: 8443, addresses: [192.0.2.10]}\n"
    fleet_file.write_text(FLEET.replace("    - {host: sztp1.example.net, port: 8443}\n", local))
    text = dns_filter.dns_records_from_fleet(str(fleet_file), format="mdns")
    assert "_sztp._tcp 300 IN SRV 0 0 8443 sztp1.local.\nsztp1 300 IN A 192.0.2.10\n" in text
    assert re.findall(r'^    "(ci|oc|ov)=', text, re.M) == ["ci", "oc", "ov"]


def test_mdns_records_need_the_addresses_of_a_local_server(fleet_file: Path) -> None:
    fleet_file.write_text(FLEET.replace("sztp1.example.net", "sztp1.local"))
    with pytest.raises(
        AnsibleFilterError, match=r"fleet\.yaml:\d+: .*sztp1\.local has no addresses"
    ):
        dns_filter.dns_records_from_fleet(str(fleet_file), format="mdns")

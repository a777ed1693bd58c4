"""The filters sztp_redirect_option and kea_dhcp_from_fleet, on the controller side.

Expected payloads are framed here by hand (2-byte big-endian length + URI, RFC 8572 section 8),
not with the kit, so that the filters are checked against the RFC rather than against
themselves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.sztp.bootstrap.plugins.filter import (
    kea_dhcp_from_fleet as fleet_filter,
)
from ansible_collections.sztp.bootstrap.plugins.filter import (
    sztp_redirect_option as option_filter,
)
from ansible_collections.sztp.bootstrap.plugins.module_utils import kit

URI = "https://10.1.1.3:8080"
URI6 = "https://[2001:db8::3]:8443"


def framed_hex(*uris: str) -> str:
    return b"".join(len(uri).to_bytes(2, "big") + uri.encode("ascii") for uri in uris).hex().upper()


def option(code: int, data: str) -> dict[str, object]:
    return {"code": code, "csv-format": False, "data": data, "always-send": True}


# ---- sztp_redirect_option


def test_rfc8572_example_from_the_facts_sheet() -> None:
    entry = option_filter.sztp_redirect_option([URI])
    assert entry == option(143, framed_hex(URI))
    assert entry["data"].startswith("001568747470733A2F2F")


@pytest.mark.parametrize("family", [6, "6", "v6", "V6"])
def test_dhcpv6_uses_option_136(family: object) -> None:
    uris = [URI6, "https://sztp.example.net"]
    assert option_filter.sztp_redirect_option(uris, family=family) == option(136, framed_hex(*uris))


@pytest.mark.parametrize("family", [4, "4", "v4"])
def test_dhcpv4_spellings(family: object) -> None:
    assert option_filter.sztp_redirect_option([URI], family=family)["code"] == 143


def test_legacy_text_only_when_asked() -> None:
    entry = option_filter.sztp_redirect_option([URI], encoding="legacy-text")
    assert entry["data"] == URI.encode("ascii").hex().upper()


def test_legacy_text_carries_one_uri() -> None:
    with pytest.raises(AnsibleFilterError, match="exactly one URI"):
        option_filter.sztp_redirect_option([URI, URI6], encoding="legacy-text")


def test_v4_list_over_255_bytes_is_refused_but_fits_in_v6() -> None:
    uris = ["https://bootstrap-%02d.sztp.example.net:8443" % n for n in range(7)]
    assert len(bytes.fromhex(framed_hex(*uris))) > 255
    with pytest.raises(AnsibleFilterError, match=r"DHCPv4 option 143.*255"):
        option_filter.sztp_redirect_option(uris)
    assert option_filter.sztp_redirect_option(uris, family=6)["data"] == framed_hex(*uris)


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("http://10.1.1.3", "https"),
        ("https://10.1.1.3/restconf", "path"),
        ("https://10.1.1.3:99999", "port"),
        ("https://2001:db8::1", "brackets"),
    ],
)
def test_bad_uris_are_named(uri: str, problem: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        option_filter.sztp_redirect_option([uri])
    message = str(caught.value)
    assert "sztp_redirect_option" in message and problem in message


def test_empty_list_is_refused() -> None:
    with pytest.raises(AnsibleFilterError, match="sztp_redirect_option"):
        option_filter.sztp_redirect_option([])


@pytest.mark.parametrize("value", [URI, {"uri": URI}, None, 143])
def test_input_must_be_a_list(value: object) -> None:
    with pytest.raises(AnsibleFilterError, match="expects a list of URIs"):
        option_filter.sztp_redirect_option(value)  # type: ignore[arg-type]


def test_list_items_must_be_strings() -> None:
    with pytest.raises(AnsibleFilterError, match="must be a string"):
        option_filter.sztp_redirect_option([URI, 8443])  # type: ignore[list-item]


@pytest.mark.parametrize(("argument", "value"), [("family", 5), ("encoding", "text")])
def test_bad_family_or_encoding(argument: str, value: object) -> None:
    with pytest.raises(AnsibleFilterError, match=argument):
        option_filter.sztp_redirect_option([URI], **{argument: value})


@pytest.mark.parametrize(
    ("version", "error", "message"),
    [
        (None, "No module named 'sztp'", "the sztp Python package is missing"),
        ("0.2.0", None, "sztp 0.2.0 is installed, but this collection needs sztp 0.1.x"),
        ("1.1.3", None, "sztp 1.1.3 is installed, but this collection needs sztp 0.1.x"),
    ],
)
def test_a_missing_or_other_kit_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, version: str | None, error: str | None, message: str
) -> None:
    monkeypatch.setattr(kit, "KIT_VERSION", version)
    monkeypatch.setattr(kit, "KIT_IMPORT_ERROR", error)
    for call in (
        lambda: option_filter.sztp_redirect_option([URI]),
        lambda: fleet_filter.kea_dhcp_from_fleet("fleet.yaml"),
    ):
        with pytest.raises(AnsibleFilterError, match=message) as raised:
            call()
        assert "of the same release as this collection" in str(raised.value)


def test_the_installed_kit_is_of_this_release() -> None:
    assert kit.kit_problem() is None


def test_filters_are_registered() -> None:
    assert "sztp_redirect_option" in option_filter.FilterModule().filters()
    assert "kea_dhcp_from_fleet" in fleet_filter.FilterModule().filters()


# ---- kea_dhcp_from_fleet

FLEET = """\
dhcp:
  bootstrap_uris: [https://sztp.lab.example:8443]
  subnets:
    - subnet: 192.0.2.0/24
    - subnet: 2001:db8:1::/64
      bootstrap_uris: ["{uri6}"]
  reservations:
    - mac: "52:54:00:12:34:56"
      bootstrap_uris: ["{uri}"]
    - client_id: "01:52:54:00:AB:CD:EF"
    - duid: "00:03:00:01:52:54:00:12:34:56"
"""


def write_fleet(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fleet.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_fleet_dhcp4_scopes(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, FLEET.format(uri=URI, uri6=URI6))
    everywhere = option(143, framed_hex("https://sztp.lab.example:8443"))
    assert fleet_filter.kea_dhcp_from_fleet(path) == {
        "option-data": [everywhere],
        "subnet4": [{"subnet": "192.0.2.0/24", "option-data": [everywhere]}],
        "reservations": [
            {"hw-address": "52:54:00:12:34:56", "option-data": [option(143, framed_hex(URI))]},
            {"client-id": "01:52:54:00:ab:cd:ef", "option-data": [everywhere]},
        ],
    }


def test_fleet_dhcp6_scopes(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, FLEET.format(uri=URI, uri6=URI6))
    everywhere = option(136, framed_hex("https://sztp.lab.example:8443"))
    result = fleet_filter.kea_dhcp_from_fleet(path, family=6)
    assert result["option-data"] == [everywhere]
    assert result["subnet6"] == [
        {"subnet": "2001:db8:1::/64", "option-data": [option(136, framed_hex(URI6))]}
    ]
    assert [sorted(entry) for entry in result["reservations"]] == [
        ["hw-address", "option-data"],
        ["duid", "option-data"],
    ]


def test_fleet_with_nothing_for_the_family_is_empty(tmp_path: Path) -> None:
    path = write_fleet(
        tmp_path, "dhcp:\n  subnets:\n    - {subnet: 192.0.2.0/24, bootstrap_uris: [%s]}\n" % URI
    )
    assert fleet_filter.kea_dhcp_from_fleet(path, family=6) == {}


def test_fleet_legacy_encoding_is_the_fleets_choice(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, "dhcp:\n  encoding: legacy-text\n  bootstrap_uris: [%s]\n" % URI)
    assert fleet_filter.kea_dhcp_from_fleet(path)["option-data"][0]["data"] == (
        URI.encode("ascii").hex().upper()
    )


def test_fleet_errors_name_file_and_line(tmp_path: Path) -> None:
    path = write_fleet(
        tmp_path,
        "dhcp:\n  subnets:\n    - subnet: 192.0.2.0/24\n      bootstrap_uris: [http://x.example]\n",
    )
    with pytest.raises(AnsibleFilterError) as caught:
        fleet_filter.kea_dhcp_from_fleet(path)
    message = str(caught.value)
    assert "kea_dhcp_from_fleet" in message and "fleet.yaml:" in message and "https" in message


def test_fleet_without_dhcp_section(tmp_path: Path) -> None:
    path = write_fleet(tmp_path, "devices: []\n")
    with pytest.raises(AnsibleFilterError, match="has no dhcp section"):
        fleet_filter.kea_dhcp_from_fleet(path)


def test_fleet_file_missing(tmp_path: Path) -> None:
    with pytest.raises(AnsibleFilterError, match="cannot read fleet file"):
        fleet_filter.kea_dhcp_from_fleet(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("value", [None, "", ["fleet.yaml"]])
def test_fleet_path_must_be_a_string(value: object) -> None:
    with pytest.raises(AnsibleFilterError, match="expects the path of a fleet file"):
        fleet_filter.kea_dhcp_from_fleet(value)  # type: ignore[arg-type]

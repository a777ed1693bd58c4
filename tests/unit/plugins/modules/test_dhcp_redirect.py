"""dhcp_redirect against temporary Kea configuration files.

Validation uses the real `kea-dhcp4 -t` / `kea-dhcp6 -t` when Kea is installed (`make test`
installs it); the tests that need it are skipped otherwise, and the rest run with a stand-in
validating command.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest
from ansible_collections.sztp.bootstrap.plugins.module_utils import kea_config
from ansible_collections.sztp.bootstrap.plugins.modules import dhcp_redirect
from ansible_collections.sztp.bootstrap.tests.unit.compat.ansible_core import patch_module_args

HAS_KEA4 = shutil.which("kea-dhcp4") is not None
HAS_KEA6 = shutil.which("kea-dhcp6") is not None
needs_kea4 = pytest.mark.skipif(not HAS_KEA4, reason="kea-dhcp4 is not installed")
needs_kea6 = pytest.mark.skipif(not HAS_KEA6, reason="kea-dhcp6 is not installed")

URI = "https://10.1.1.3:8080"
# 00 15 + "https://10.1.1.3:8080" (RFC 8572 section 8 example)
URI_HEX = "0015" + URI.encode("ascii").hex().upper()

KEA4 = """// Kea's own files look like this: comments of three kinds, trailing commas.
{
"Dhcp4": {
    "interfaces-config": { "interfaces": [ ] },  # no interfaces: never serves
    "lease-database": { "type": "memfile", "lfc-interval": 3600 },
    /* a block
       comment */
    "valid-lifetime": 4000,
    "subnet4": [
        {
            "id": 1,
            "subnet": "192.0.2.0/24",
            "pools": [ { "pool": "192.0.2.10 - 192.0.2.200" } ],
            "option-data": [ { "name": "routers", "data": "192.0.2.1" }, ],
            "reservations": [
                { "hw-address": "1a:1b:1c:1d:1e:1f", "ip-address": "192.0.2.201",
                  "hostname": "http://not-a-comment#either" }
            ]
        },
    ],
    "shared-networks": [
        {
            "name": "lab",
            "subnet4": [ { "id": 2, "subnet": "198.51.100.0/24" } ]
        }
    ]
}
}
"""

KEA6 = """{
// DHCPv6
"Dhcp6": {
    "interfaces-config": { "interfaces": [ ] },
    "lease-database": { "type": "memfile" },
    "subnet6": [
        { "id": 1, "subnet": "2001:db8:1::/64",
          "pools": [ { "pool": "2001:db8:1::1000 - 2001:db8:1::2000" } ] }
    ]
}
}
"""

STAND_IN_VALIDATOR = "true %s"


@pytest.fixture
def kea4(tmp_path):
    path = tmp_path / "kea-dhcp4.conf"
    path.write_text(KEA4)
    path.chmod(0o640)
    return path


@pytest.fixture
def kea6(tmp_path):
    path = tmp_path / "kea-dhcp6.conf"
    path.write_text(KEA6)
    return path


WARNINGS = []


@pytest.fixture(autouse=True)
def record_warnings(monkeypatch):
    """Where module warnings end up depends on what else the process imported (once controller
    code is loaded, ansible-core 2.19 displays them instead of returning them): record them."""
    WARNINGS.clear()
    monkeypatch.setattr(
        dhcp_redirect.AnsibleModule, "warn", lambda self, warning, **_: WARNINGS.append(warning)
    )


def run(capsys, args, check_mode=False, diff=True):
    WARNINGS.clear()
    full = dict(args)
    full["_ansible_check_mode"] = check_mode
    full["_ansible_diff"] = diff
    with patch_module_args(full), pytest.raises(SystemExit) as exited:
        dhcp_redirect.main()
    result = json.loads(capsys.readouterr().out)
    assert bool(result.get("failed")) == (exited.value.code != 0)
    return result


def subnet_args(config_file, **changes):
    """Arguments redirecting subnet 192.0.2.0/24 of `config_file` to URI, checked by the
    stand-in validator; `changes` add arguments or replace these."""
    args = {
        "config_file": str(config_file),
        "subnet": "192.0.2.0/24",
        "uris": [URI],
        "validate_command": STAND_IN_VALIDATOR,
    }
    args.update(changes)
    return args


def warning_texts(_result):
    """The warnings of the last run."""
    return list(WARNINGS)


def loaded(path):
    return json.loads(path.read_text())


def subnet(config, prefix, family="4"):
    key = "subnet" + family
    root = config["Dhcp" + family]
    found = [s for s in root[key] if s["subnet"] == prefix]
    for network in root.get("shared-networks", []):
        found += [s for s in network.get(key, []) if s["subnet"] == prefix]
    assert len(found) == 1
    return found[0]


def redirect_entries(scope, code=143):
    return [entry for entry in scope.get("option-data", []) if entry.get("code") == code]


# ---- the Kea dialect reader


def test_strip_keeps_strings_and_drops_comments_and_trailing_commas():
    text, extras = kea_config.strip_kea_syntax(KEA4)
    config = json.loads(text)
    assert extras
    reservation = config["Dhcp4"]["subnet4"][0]["reservations"][0]
    assert reservation["hostname"] == "http://not-a-comment#either"
    assert text.count("\n") == KEA4.count("\n")  # line numbers kept for error messages


def test_plain_json_has_no_extras():
    _text, extras = kea_config.strip_kea_syntax(json.dumps({"Dhcp4": {"a": "//#,]"}}))
    assert not extras


def test_escaped_quotes_inside_strings():
    text, _extras = kea_config.strip_kea_syntax('{"a": "x\\" // y", "b": 1,}')
    assert json.loads(text) == {"a": 'x" // y', "b": 1}


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"Dhcp4": {}} /* open', "never closed"),
        ('{"Dhcp4": {<?include "/etc/kea/subnets.json"?>}}', "include"),
        ('{"Dhcp4": {"a": }}', "not valid Kea JSON"),
        ("[1, 2]", "not a JSON object"),
    ],
)
def test_unreadable_files_are_refused(text, message):
    with pytest.raises(kea_config.KeaConfigError, match=message):
        kea_config.load_kea_config(text)


# ---- subnet scope


@needs_kea4
def test_subnet_present_validates_with_kea_then_is_idempotent(capsys, kea4):
    args = {"config_file": str(kea4), "subnet": "192.0.2.0/24", "uris": [URI]}
    result = run(capsys, args)
    assert result["changed"] is True
    assert result["validated"] is True
    assert result["comments_dropped"] is True
    assert result["scope"] == "subnet4[192.0.2.0/24]"
    assert result["option_data"] == {
        "code": 143,
        "csv-format": False,
        "data": URI_HEX,
        "always-send": True,
    }
    assert any("comments" in warning for warning in warning_texts(result))
    config = loaded(kea4)
    scope = subnet(config, "192.0.2.0/24")
    assert redirect_entries(scope) == [result["option_data"]]
    assert scope["option-data"][0]["name"] == "routers"  # other options kept, in order
    assert stat.S_IMODE(kea4.stat().st_mode) == 0o640
    assert URI_HEX in result["diff"]["after"]
    assert URI_HEX not in result["diff"]["before"]

    again = run(capsys, args)
    assert again["changed"] is False
    assert "diff" not in again
    # Nothing left behind next to the configuration file.
    assert sorted(os.listdir(kea4.parent)) == ["kea-dhcp4.conf"]


def test_check_mode_changes_nothing_but_reports_the_diff(capsys, kea4):
    result = run(capsys, subnet_args(kea4), check_mode=True)
    assert result["changed"] is True
    assert URI_HEX in result["diff"]["after"]
    assert kea4.read_text() == KEA4
    assert sorted(os.listdir(kea4.parent)) == ["kea-dhcp4.conf"]


def test_subnet_in_a_shared_network(capsys, kea4):
    result = run(capsys, subnet_args(kea4, subnet="198.51.100.0/24"))
    assert result["changed"] is True
    assert result["scope"] == "shared-networks[lab].subnet4[198.51.100.0/24]"
    assert redirect_entries(subnet(loaded(kea4), "198.51.100.0/24"))[0]["data"] == URI_HEX


def test_same_meaning_in_another_spelling_is_not_a_change(capsys, kea4):
    config = kea_config.load_kea_config(KEA4)[0]
    scope = subnet(config, "192.0.2.0/24")
    spaced = ":".join(URI_HEX[i : i + 2] for i in range(0, len(URI_HEX), 2)).lower()
    scope["option-data"].append(
        {"always-send": True, "data": spaced, "csv-format": False, "code": 143}
    )
    kea4.write_text(json.dumps(config))
    before = kea4.read_text()
    result = run(capsys, {"config_file": str(kea4), "subnet": "192.0.2.0/24", "uris": [URI]})
    assert result["changed"] is False
    assert kea4.read_text() == before


def test_other_uris_replace_the_option_and_duplicates_collapse(capsys, kea4):
    config = kea_config.load_kea_config(KEA4)[0]
    scope = subnet(config, "192.0.2.0/24")
    scope["option-data"] += [
        {"code": 143, "csv-format": False, "data": "00"},
        {"name": "v4-sztp-redirect", "data": "https://old"},
        {"code": 143, "space": "vendor-encapsulated-options-space", "data": "AA"},
    ]
    kea4.write_text(json.dumps(config))
    uris = ["https://sztp1.example.net", "https://[2001:db8::3]:8443"]
    result = run(capsys, subnet_args(kea4, uris=uris))
    assert result["changed"] is True
    entries = subnet(loaded(kea4), "192.0.2.0/24")["option-data"]
    assert [e.get("name") or e.get("space") for e in entries] == [
        "routers",
        None,
        "vendor-encapsulated-options-space",
    ]
    assert bytes.fromhex(entries[1]["data"]).startswith(b"\x00\x19https://sztp1.example.net")


def test_absent_removes_the_option_then_is_idempotent(capsys, kea4):
    base = {
        "config_file": str(kea4),
        "subnet": "192.0.2.0/24",
        "validate_command": STAND_IN_VALIDATOR,
    }
    run(capsys, {**base, "uris": [URI]})
    result = run(capsys, {**base, "state": "absent"})
    assert result["changed"] is True
    assert redirect_entries(subnet(loaded(kea4), "192.0.2.0/24")) == []
    assert run(capsys, {**base, "state": "absent"})["changed"] is False


# ---- reservation scope


@needs_kea4
def test_reservation_is_created_and_found_again_in_any_spelling(capsys, kea4):
    args = {
        "config_file": str(kea4),
        "subnet": "192.0.2.0/24",
        "hw_address": "00:53:00:12:34:56",
        "uris": [URI],
    }
    result = run(capsys, args)
    assert result["changed"] is True and result["validated"] is True
    assert result["scope"] == "subnet4[192.0.2.0/24].reservations[hw-address=00:53:00:12:34:56]"
    assert result["diff"]["before"] == ""
    reservations = subnet(loaded(kea4), "192.0.2.0/24")["reservations"]
    assert reservations[1] == {
        "hw-address": "00:53:00:12:34:56",
        "option-data": [result["option_data"]],
    }
    again = run(capsys, {**args, "hw_address": "00-53-00-12-34-56".upper()})
    assert again["changed"] is False


def test_existing_reservation_keeps_its_fields(capsys, kea4):
    result = run(capsys, subnet_args(kea4, hw_address="1A1B1C1D1E1F"))
    assert result["changed"] is True
    reservation = subnet(loaded(kea4), "192.0.2.0/24")["reservations"][0]
    assert reservation["ip-address"] == "192.0.2.201"
    assert reservation["hw-address"] == "1a:1b:1c:1d:1e:1f"
    assert redirect_entries(reservation)[0]["data"] == URI_HEX


def test_global_reservation_by_client_id(capsys, kea4):
    result = run(
        capsys,
        {
            "config_file": str(kea4),
            "client_id": "01:00:53:00:12:34:56",
            "uris": [URI],
            "validate_command": STAND_IN_VALIDATOR,
        },
    )
    assert result["scope"] == "Dhcp4.reservations[client-id=01:00:53:00:12:34:56]"
    assert loaded(kea4)["Dhcp4"]["reservations"][0]["client-id"] == "01:00:53:00:12:34:56"


def test_absent_for_a_missing_reservation_changes_nothing(capsys, kea4):
    result = run(
        capsys,
        {
            "config_file": str(kea4),
            "subnet": "192.0.2.0/24",
            "duid": "00:01:02:03",
            "state": "absent",
        },
    )
    assert result["changed"] is False
    assert kea4.read_text() == KEA4


@needs_kea6
def test_dhcpv6_by_duid_validates_with_kea(capsys, kea6):
    args = {
        "family": "v6",
        "config_file": str(kea6),
        "subnet": "2001:db8:1::/64",
        "duid": "00:03:00:01:00:53:00:12:34:56",
        "uris": ["https://[2001:db8::3]"],
    }
    result = run(capsys, args)
    assert result["changed"] is True and result["validated"] is True
    entry = redirect_entries(loaded(kea6)["Dhcp6"]["subnet6"][0]["reservations"][0], 136)
    assert entry[0]["code"] == 136
    assert run(capsys, args)["changed"] is False


# ---- refusals: the file is never touched


@pytest.mark.parametrize(
    "args, message",
    [
        ({"subnet": "203.0.113.0/24"}, "no subnet4 with prefix 203.0.113.0/24"),
        ({"subnet": "2001:db8::/64"}, "not an IPv4 prefix"),
        ({"subnet": "192.0.2.1"}, "not a prefix"),
        ({"subnet": "192.0.2.0/24", "uris": ["https://x.example/restconf"]}, "has a path"),
        ({"subnet": "192.0.2.0/24", "uris": ["http://x.example"]}, "only 'https'"),
        (
            {"subnet": "192.0.2.0/24", "uris": ["https://%s.example" % ("a" * 60)] * 5},
            "over the DHCPv4 limit of 255",
        ),
        ({"subnet": "192.0.2.0/24", "hw_address": "zz:zz"}, "is not hex bytes"),
        ({"family": "v6", "client_id": "01:02"}, "DHCPv4 reservations only"),
        ({"family": "v6"}, "no Dhcp6 object"),
        (
            {"subnet": "192.0.2.0/24", "validate_command": "false %s"},
            "Kea refused the new configuration",
        ),
        (
            {"subnet": "192.0.2.0/24", "validate_command": "no-such-kea-binary -t %s"},
            "no-such-kea-binary is not installed",
        ),
        ({"subnet": "192.0.2.0/24", "validate_command": "true"}, "must contain %s"),
    ],
)
def test_refusals_leave_the_file_untouched(capsys, kea4, args, message):
    full = {"config_file": str(kea4), "uris": [URI], "validate_command": STAND_IN_VALIDATOR}
    full.update(args)
    result = run(capsys, full)
    assert result["failed"] is True
    assert message in result["msg"]
    assert kea4.read_text() == KEA4
    assert sorted(os.listdir(kea4.parent)) == ["kea-dhcp4.conf"]


def test_missing_config_file(capsys, tmp_path):
    result = run(capsys, {"config_file": str(tmp_path / "nope.conf"), "uris": [URI]})
    assert result["failed"] is True
    assert "cannot read" in result["msg"]


@needs_kea4
def test_kea_refuses_a_broken_file_and_nothing_is_written(capsys, kea4):
    config = kea_config.load_kea_config(KEA4)[0]
    config["Dhcp4"]["valid-lifetime"] = "not a number"
    kea4.write_text(json.dumps(config))
    before = kea4.read_text()
    result = run(capsys, {"config_file": str(kea4), "subnet": "192.0.2.0/24", "uris": [URI]})
    assert result["failed"] is True
    assert "Kea refused" in result["msg"]
    assert kea4.read_text() == before


def test_validate_false_skips_with_a_warning(capsys, kea4):
    result = run(
        capsys, subnet_args(kea4, validate=False, validate_command="no-such-kea-binary -t %s")
    )
    assert result["changed"] is True and result["validated"] is False
    assert any("NOT checked" in warning for warning in warning_texts(result))


def test_missing_validator_in_check_mode_only_warns(capsys, kea4):
    result = run(
        capsys, subnet_args(kea4, validate_command="no-such-kea-binary -t %s"), check_mode=True
    )
    assert result["changed"] is True
    assert any("could not validate" in warning for warning in warning_texts(result))


# ---- backup and reload


def test_backup_keeps_the_commented_original_and_reload_runs(capsys, kea4, tmp_path):
    marker = tmp_path / "reloaded"
    args = subnet_args(kea4, backup=True, reload_command="touch %s" % marker)
    result = run(capsys, args)
    assert result["reloaded"] is True and marker.exists()
    with open(result["backup_file"]) as handle:
        assert handle.read() == KEA4
    assert not any("backup: true" in warning for warning in warning_texts(result)), warning_texts(
        result
    )
    marker.unlink()
    again = run(capsys, args)
    assert again["changed"] is False and again["reloaded"] is False
    assert not marker.exists()


def test_failed_reload_is_reported_after_the_write(capsys, kea4):
    result = run(capsys, subnet_args(kea4, reload_command="false"))
    assert result["failed"] is True
    assert "was updated but the reload command exited 1" in result["msg"]
    assert redirect_entries(subnet(loaded(kea4), "192.0.2.0/24"))


def test_legacy_text_encoding_is_plain_ascii(capsys, kea4):
    result = run(
        capsys,
        subnet_args(
            kea4, encoding="legacy-text", uris=["https://10.1.1.3:8080/restconf/operations/x"]
        ),
    )
    data = result["option_data"]["data"]
    assert bytes.fromhex(data) == b"https://10.1.1.3:8080/restconf/operations/x"

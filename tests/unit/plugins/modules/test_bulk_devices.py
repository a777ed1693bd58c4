from __future__ import annotations

import json

import pytest
from ansible_collections.sztp.bootstrap.plugins.modules import devices

PASSWORD = "bulk-pa55word"


@pytest.fixture
def fleet(fake):
    fake.seed("profile", "day0", {"type": "onboarding", "signing": "when-requested"})
    fake.seed("device", "SN-1", {"profile": "day0", "model": "A", "password": PASSWORD})
    fake.seed("device", "SN-2", {"profile": "day0", "model": "A"})
    return fake


def listed(*serials, **fields):
    return [{"serial": serial, **fields} for serial in serials]


def test_check_mode_plans_on_the_server(run_module, fleet):
    result = run_module(
        devices.main, {"devices": listed("SN-1", "SN-3", profile="day0")}, check_mode=True
    )
    assert result["changed"] is True
    assert result["created"] == ["SN-3"]
    assert result["updated"] == []
    assert result["deleted"] == []
    assert result["unchanged"] == 1
    assert result["diff"]["prepared"].startswith("1 to create, 0 to update, 0 to delete")
    assert "+ device SN-3" in result["diff"]["prepared"]
    method, call = fleet.calls[-1]
    assert method == "apply_state" and call["dry_run"] is True and call["prune"] is False
    assert call["if_match"] == fleet.revision
    assert "SN-3" not in fleet.state["device"]


def test_apply_then_idempotent(run_module, fleet):
    wanted = {"devices": listed("SN-1", "SN-2", "SN-3", profile="day0", model="B")}
    stored_hash = fleet.secret("device", "SN-1")
    first = run_module(devices.main, wanted)
    assert first["changed"] is True
    assert first["created"] == ["SN-3"]
    assert first["updated"] == ["SN-1", "SN-2"]
    assert '~ device SN-1\n    model: "A" → "B"\n' in first["diff"]["prepared"]
    # SN-1's password was not listed: kept.
    assert fleet.secret("device", "SN-1") == stored_hash
    second = run_module(devices.main, wanted)
    assert second["changed"] is False
    assert second["unchanged"] == 3


def test_prune_deletes_unlisted_devices_only(run_module, fleet):
    check = run_module(devices.main, {"devices": listed("SN-1"), "prune": True}, check_mode=True)
    assert check["deleted"] == ["SN-2"]
    assert "- device SN-2" in check["diff"]["prepared"]
    assert set(fleet.state["device"]) == {"SN-1", "SN-2"}

    result = run_module(devices.main, {"devices": listed("SN-1"), "prune": True})
    assert result["changed"] is True
    assert set(fleet.state["device"]) == {"SN-1"}
    assert set(fleet.state["profile"]) == {"day0"}  # other kinds untouched
    assert fleet.calls[-1][1]["kinds"] == ["device"]


def test_secrets_never_in_results(run_module, fleet):
    result = run_module(
        devices.main, {"devices": listed("SN-1", "SN-2", password=PASSWORD, model="C")}
    )
    assert result["updated"] == ["SN-1", "SN-2"]
    text = json.dumps(result)
    assert PASSWORD not in text
    assert fleet.secret("device", "SN-1") not in text
    assert (
        '~ device SN-2\n    model: "A" → "C"\n    password_hash: a secret changed\n'
        in result["diff"]["prepared"]
    )
    # SN-1's new password is compared with the stored hash by the server: changed, unseen.
    assert '~ device SN-1\n    model: "A" → "C"\n' in result["diff"]["prepared"]


def test_duplicate_serial_fails(run_module, fleet):
    result = run_module(devices.main, {"devices": listed("SN-1", "SN-1")})
    assert result["failed"] is True
    assert "listed twice" in result["msg"]
    assert fleet.calls == []


def test_one_bad_device_fails_the_whole_apply(run_module, fleet):
    entries = listed("SN-1", "SN-9") + [{"serial": "SN-10", "mac": "zz"}]
    result = run_module(devices.main, {"devices": entries})
    assert result["failed"] is True
    assert result["msg"].startswith("cannot apply 3 device(s): ")
    assert "SN-10" in result["msg"]
    assert set(fleet.state["device"]) == {"SN-1", "SN-2"}


def test_concurrent_change_is_refused(run_module, fleet, monkeypatch):
    original = fleet.get_state

    def stale():
        revision, resources = original()
        return revision - 1, resources

    monkeypatch.setattr(fleet, "get_state", stale, raising=False)
    result = run_module(devices.main, {"devices": listed("SN-3")})
    assert result["failed"] is True
    assert "run again" in result["msg"]
    assert result["status"] == 412
    assert "SN-3" not in fleet.state["device"]


def test_large_diff_is_summarised(run_module, fake):
    serials = ["SN-%04d" % index for index in range(500)]
    result = run_module(devices.main, {"devices": listed(*serials)}, check_mode=True)
    assert len(result["created"]) == 500
    lines = result["diff"]["prepared"].splitlines()
    assert lines[0] == "500 to create, 0 to update, 0 to delete, 0 unchanged"
    assert lines[-1] == "... and 300 more"


def test_diff_shows_values_but_never_secrets(run_module, fleet):
    fleet.seed("device", "SN-4", {"profile": "day0", "password": PASSWORD, "site": "rack 1"})
    result = run_module(
        devices.main,
        {"devices": [{"serial": "SN-4", "password": "an0ther-pa55word", "site": "rack 2"}]},
        check_mode=True,
    )
    assert result["updated"] == ["SN-4"]
    prepared = result["diff"]["prepared"]
    assert '~ device SN-4\n    site: "rack 1" → "rack 2"\n' in prepared
    assert "an0ther-pa55word" not in json.dumps(result)
    assert fleet.secret("device", "SN-4") not in json.dumps(result)
    only_secret = run_module(
        devices.main, {"devices": [{"serial": "SN-4", "password": "an0ther-pa55word"}]}
    )
    assert only_secret["diff"]["prepared"].endswith("~ device SN-4\n    a secret changed\n")


def test_unknown_profile_is_assumed_created_in_check_mode(run_module, fleet):
    # On a fresh server, the task that creates profile day1 ran as a dry run too.
    entries = listed("SN-1", profile="day1") + listed("SN-9", profile="day1", password=PASSWORD)
    revision = fleet.revision
    result = run_module(devices.main, {"devices": entries}, check_mode=True)
    assert result["changed"] is True
    assert result["created"] == ["SN-9"]
    assert result["updated"] == ["SN-1"]
    assert result["revision"] == revision
    warnings = json.dumps(result["warnings"])  # structured in ansible-core 2.19
    assert "profile 'day1' does not exist on the server" in warnings
    assert "a real run fails if it does not exist" in warnings
    prepared = result["diff"]["prepared"]
    assert '~ device SN-1\n    profile: "day0" → "day1"\n' in prepared
    assert "+ device SN-9" in prepared
    assert PASSWORD not in json.dumps(result)
    assert fleet.state["device"].keys() == {"SN-1", "SN-2"}


def test_unknown_profile_fails_outside_check_mode(run_module, fleet):
    result = run_module(devices.main, {"devices": listed("SN-1", profile="day1")})
    assert result["failed"] is True
    assert "device[SN-1].profile: refers to unknown profile 'day1'" in result["msg"]
    assert result["status"] == 422


def test_other_refusals_still_fail_in_check_mode(run_module, fleet):
    entries = listed("SN-1", profile="day1") + [{"serial": "SN-10", "mac": "zz"}]
    result = run_module(devices.main, {"devices": entries}, check_mode=True)
    assert result["failed"] is True
    assert result["field"] == "device[SN-10].mac"
    assert "warnings" not in result

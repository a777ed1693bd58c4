from __future__ import annotations

import json

import pytest
from ansible_collections.sztp.bootstrap.plugins.modules import fleet as fleet_module

PASSWORD = "fleet-pa55word"
SHA = "ab" * 32

FLEET = """\
images:
  - name: labos-1.2
    os_name: LabOS
    os_version: "1.2"
    download_uris: [https://files1.lab.example/images/labos-1.2.img]
    sha256: {sha}
profiles:
  - name: dpu-day0
    type: onboarding
    image: labos-1.2
    signing: when-requested
    configuration: {{file: day0.cfg}}
devices:
  - serial: SN-0001
    profile: dpu-day0
    model: DPU-LAB-1
    password: {{env: SZTP_TEST_DEVICE_PASSWORD}}
  - serial: SN-0002
    profile: dpu-day0
    model: DPU-LAB-1
dhcp:
  bootstrap_uris: [https://sztp.lab.example:8443]
"""


@pytest.fixture
def fleet_file(tmp_path, monkeypatch):
    """A fleet file with a {file:} and an {env:} reference, as sztpctl reads it."""
    monkeypatch.setenv("SZTP_TEST_DEVICE_PASSWORD", PASSWORD)
    (tmp_path / "day0.cfg").write_text("hostname dpu\n")
    path = tmp_path / "fleet.yaml"
    path.write_text(FLEET.format(sha=SHA))
    return path


def test_check_mode_is_the_servers_dry_run(run_module, fake, fleet_file):
    result = run_module(fleet_module.main, {"src": str(fleet_file)}, check_mode=True)
    assert result["changed"] is True
    assert result["counts"] == {"create": 4, "update": 0, "delete": 0}
    assert result["summary"] == "4 to create, 0 to update, 0 to delete, 4 listed"
    assert {"action": "create", "kind": "device", "name": "SN-0001"} in result["changes"]
    assert "+ device SN-0001" in result["diff"]["prepared"]
    assert result["kinds"] == ["image", "profile", "device"]
    method, call = fake.calls[-1]
    assert method == "apply_state"
    assert call["dry_run"] is True and call["prune"] is False and call["summary"] is True
    assert call["if_match"] is None
    assert fake.state["device"] == {}
    # The {file:} reference was resolved relative to the fleet file, the dhcp section left out.
    assert call["resources"]["profile"]["dpu-day0"]["configuration"] == "hostname dpu\n"
    assert "dhcp" not in call["resources"]


def test_apply_then_idempotent(run_module, fake, fleet_file):
    first = run_module(fleet_module.main, {"src": str(fleet_file)})
    assert first["changed"] is True
    assert set(fake.state["device"]) == {"SN-0001", "SN-0002"}
    assert first["revision"] == fake.revision

    second = run_module(fleet_module.main, {"src": str(fleet_file)})
    assert second["changed"] is False
    assert second["changes"] == []
    assert second["summary"] == "0 to create, 0 to update, 0 to delete, 4 listed"
    assert second["revision"] == first["revision"]


def test_update_shows_values_never_secrets(run_module, fake, fleet_file):
    run_module(fleet_module.main, {"src": str(fleet_file)})
    fleet_file.write_text(FLEET.format(sha=SHA).replace("DPU-LAB-1", "DPU-LAB-2"))
    result = run_module(fleet_module.main, {"src": str(fleet_file)}, check_mode=True)
    assert result["counts"] == {"create": 0, "update": 2, "delete": 0}
    assert {
        "action": "update",
        "kind": "device",
        "name": "SN-0001",
        "fields": ["model"],
    } in result["changes"]
    assert '~ device SN-0001\n    model: "DPU-LAB-1" → "DPU-LAB-2"\n' in result["diff"]["prepared"]
    text = json.dumps(result)
    assert PASSWORD not in text
    assert fake.secret("device", "SN-0001") not in text
    assert fake.state["device"]["SN-0001"]["model"] == "DPU-LAB-1"


def test_prune_deletes_only_in_the_files_sections(run_module, fake, fleet_file):
    fake.seed("device", "SN-OLD", {"model": "OLD"})
    kept = run_module(fleet_module.main, {"src": str(fleet_file)})
    assert "SN-OLD" in fake.state["device"]
    assert kept["counts"]["delete"] == 0

    pruned = run_module(fleet_module.main, {"src": str(fleet_file), "prune": True})
    assert pruned["changes"] == [{"action": "delete", "kind": "device", "name": "SN-OLD"}]
    assert "- device SN-OLD" in pruned["diff"]["prepared"]
    assert "SN-OLD" not in fake.state["device"]


def test_if_revision_refuses_a_moved_state(run_module, fake, fleet_file):
    stale = fake.revision
    fake.seed("device", "SN-OTHER", {"model": "X"})
    result = run_module(fleet_module.main, {"src": str(fleet_file), "if_revision": stale})
    assert result["failed"] is True
    assert "if_revision=%d: the server's state changed since" % stale in result["msg"]
    assert set(fake.state["device"]) == {"SN-OTHER"}

    current = run_module(fleet_module.main, {"src": str(fleet_file), "if_revision": fake.revision})
    assert current["changed"] is True
    assert fake.calls[-1][1]["if_match"] == stale + 1


def test_loader_errors_name_file_line_and_field(run_module, fake, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("devices:\n  - serial: SN-1\n    colour: blue\n")
    result = run_module(fleet_module.main, {"src": str(path)})
    assert result["failed"] is True
    assert str(path) in result["msg"]
    assert ":3" in result["msg"] and "colour" in result["msg"]
    assert fake.calls == []


def test_missing_file_and_unset_env(run_module, fake, fleet_file, monkeypatch):
    missing = run_module(fleet_module.main, {"src": str(fleet_file.parent / "nope.yaml")})
    assert missing["failed"] is True
    assert "cannot read fleet file" in missing["msg"]

    monkeypatch.delenv("SZTP_TEST_DEVICE_PASSWORD")
    unset = run_module(fleet_module.main, {"src": str(fleet_file)})
    assert unset["failed"] is True
    assert "SZTP_TEST_DEVICE_PASSWORD" in unset["msg"]
    assert fake.calls == []


def test_server_validation_error_points_into_the_file(run_module, fake, fleet_file):
    fleet_file.write_text(FLEET.format(sha=SHA).replace("image: labos-1.2", "image: labos-9"))
    result = run_module(fleet_module.main, {"src": str(fleet_file)})
    assert result["failed"] is True
    assert result["msg"].startswith("%s:10: profiles[0].image" % fleet_file)
    assert "labos-9" in result["msg"]
    assert fake.state["profile"] == {}


def test_unreachable_server_is_one_message(run_module, fake, fleet_file, unreachable):
    fake.fail_with = unreachable
    result = run_module(fleet_module.main, {"src": str(fleet_file)})
    assert result["failed"] is True
    assert result["msg"].startswith("cannot apply %s (4 resources): cannot reach" % fleet_file)

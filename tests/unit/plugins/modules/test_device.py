from __future__ import annotations

import base64
import json

import pytest
from ansible_collections.sztp.bootstrap.plugins.modules import device

PROFILE = {"type": "onboarding", "signing": "when-requested"}
PASSWORD = "dev1ce-pa55word"


@pytest.fixture
def with_profile(fake):
    fake.seed("profile", "day0", PROFILE)
    fake.seed("profile", "day1", PROFILE)
    return fake


def test_create_check_mode_is_a_dry_run(run_module, with_profile):
    fake = with_profile
    result = run_module(
        device.main,
        {"serial": "SN-1", "profile": "day0", "mac": "52-54-00-AA-BB-CC"},
        check_mode=True,
    )
    assert result["changed"] is True
    assert result["device"]["spec"]["mac"] == "52:54:00:aa:bb:cc"  # the server's canonical form
    assert result["diff"]["before"] == {}
    assert result["diff"]["after"]["profile"] == "day0"
    assert fake.methods() == ["get", "apply_state"]
    assert fake.calls[1][1]["dry_run"] is True
    assert fake.calls[1][1]["kinds"] == ["device"]
    assert fake.calls[1][1]["prune"] is False
    assert "SN-1" not in fake.state["device"]


def test_create_then_idempotent(run_module, with_profile):
    fake = with_profile
    args = {"serial": "SN-1", "profile": "day0", "model": "DPU-1", "mac": "52:54:00:AA:BB:CC"}
    first = run_module(device.main, args)
    assert first["changed"] is True
    assert fake.state["device"]["SN-1"]["mac"] == "52:54:00:aa:bb:cc"
    assert fake.calls[-1][1]["dry_run"] is False

    second = run_module(device.main, args)
    assert second["changed"] is False
    assert second["diff"]["before"] == second["diff"]["after"]
    assert second["device"]["spec"]["model"] == "DPU-1"

    check = run_module(device.main, args, check_mode=True)
    assert check["changed"] is False


def test_connection_options_reach_the_client(run_module, fake, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("pem")
    run_module(
        device.main,
        {"serial": "SN-9", "state": "absent", "ca_bundle": str(bundle), "timeout": 5},
    )
    assert fake.connection == {
        "server": "https://sztp.example.test:8443",
        "token": "s3cr3t-t0ken-value",
        "ca_bundle": str(bundle),
        "verify": True,
        "timeout": 5.0,
    }


def test_environment_fallbacks_and_token_file(run_module, fake, monkeypatch, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    monkeypatch.setenv("SZTP_SERVER", "http://env.example.test")
    monkeypatch.setenv("SZTP_TOKEN_FILE", str(token_file))
    result = run_module(
        device.main, {"serial": "SN-9", "state": "absent", "server": None, "token": None}
    )
    assert result["changed"] is False
    assert fake.connection["server"] == "http://env.example.test"
    assert fake.connection["token"] == "from-a-file"


def test_missing_server_is_a_clear_failure(run_module, fake):
    result = run_module(device.main, {"serial": "SN-9", "server": None})
    assert result["failed"] is True
    assert "SZTP_SERVER" in result["msg"]
    assert fake.calls == []


def test_update_merges_with_stored_spec(run_module, with_profile):
    fake = with_profile
    fake.seed("device", "SN-1", {"profile": "day0", "model": "DPU-1", "mac": "52:54:00:aa:bb:cc"})
    result = run_module(device.main, {"serial": "SN-1", "profile": "day1"})
    assert result["changed"] is True
    assert result["diff"]["before"]["profile"] == "day0"
    assert result["diff"]["after"]["profile"] == "day1"
    stored = fake.state["device"]["SN-1"]
    assert stored["model"] == "DPU-1"  # left out: kept
    assert stored["mac"] == "52:54:00:aa:bb:cc"


def test_empty_string_clears_a_field(run_module, with_profile):
    fake = with_profile
    fake.seed("device", "SN-1", {"profile": "day0", "model": "DPU-1"})
    result = run_module(device.main, {"serial": "SN-1", "model": ""})
    assert result["changed"] is True
    assert fake.state["device"]["SN-1"]["model"] is None
    assert fake.state["device"]["SN-1"]["profile"] == "day0"


def test_password_is_hidden_and_idempotent(run_module, with_profile):
    fake = with_profile
    args = {"serial": "SN-1", "profile": "day0", "password": PASSWORD}
    first = run_module(device.main, args)
    assert first["changed"] is True
    assert first["diff"]["after"]["password_hash"] == "<hidden>"
    assert first["device"]["spec"]["password_hash"] == "<hidden>"
    stored_hash = fake.secret("device", "SN-1")
    assert stored_hash and PASSWORD not in stored_hash

    second = run_module(device.main, args)
    assert second["changed"] is False
    assert fake.secret("device", "SN-1") == stored_hash

    # Another field changes: the stored password is kept ("<hidden>" sent back).
    third = run_module(device.main, {"serial": "SN-1", "model": "DPU-2"})
    assert third["changed"] is True
    assert fake.secret("device", "SN-1") == stored_hash
    assert third["diff"]["before"]["password_hash"] == "<hidden>"
    sent = fake.calls[-1][1]["resources"]["device"]["SN-1"]
    assert sent["password_hash"] == "<hidden>"
    for result in (first, second, third):
        assert PASSWORD not in repr(result)
        assert stored_hash not in repr(result)


def test_password_change_and_removal(run_module, with_profile):
    fake = with_profile
    fake.seed("device", "SN-1", {"profile": "day0", "password": PASSWORD})
    old_hash = fake.secret("device", "SN-1")
    changed = run_module(device.main, {"serial": "SN-1", "password": "another-one"})
    assert changed["changed"] is True
    assert fake.secret("device", "SN-1") != old_hash
    assert changed["diff"]["before"]["password_hash"] == "<hidden>"
    assert changed["diff"]["after"]["password_hash"] == "<hidden>"

    removed = run_module(device.main, {"serial": "SN-1", "password": ""})
    assert removed["changed"] is True
    assert fake.secret("device", "SN-1") is None


def test_absent(run_module, with_profile):
    fake = with_profile
    fake.seed("device", "SN-1", {"profile": "day0", "password": PASSWORD})

    check = run_module(device.main, {"serial": "SN-1", "state": "absent"}, check_mode=True)
    assert check["changed"] is True
    assert check["diff"]["before"]["password_hash"] == "<hidden>"
    assert check["diff"]["after"] == {}
    assert fake.methods() == ["get"]
    assert "SN-1" in fake.state["device"]

    gone = run_module(device.main, {"serial": "SN-1", "state": "absent"})
    assert gone["changed"] is True
    assert gone["device"] is None
    assert fake.methods()[-2:] == ["get", "delete"]
    assert "SN-1" not in fake.state["device"]

    again = run_module(device.main, {"serial": "SN-1", "state": "absent"})
    assert again["changed"] is False
    assert fake.methods()[-1] == "get"


def test_validation_error_is_one_clear_message(run_module, with_profile):
    fake = with_profile
    result = run_module(device.main, {"serial": "SN-1", "mac": "not-a-mac"})
    assert result["failed"] is True
    assert result["msg"].startswith("cannot apply device 'SN-1': ")
    assert "is not a MAC address" in result["msg"]
    assert result["status"] == 422
    assert result["field"] == "device[SN-1].mac"
    assert fake.state["device"] == {}


def test_unknown_profile_fails_outside_check_mode(run_module, fake):
    result = run_module(device.main, {"serial": "SN-1", "profile": "nope"})
    assert result["failed"] is True
    assert "refers to unknown profile 'nope'" in result["msg"]


def test_unknown_profile_warns_in_check_mode(run_module, fake):
    # The profile may be created by an earlier task that check mode did not run.
    result = run_module(device.main, {"serial": "SN-1", "profile": "nope"}, check_mode=True)
    assert result["changed"] is True
    # ansible-core 2.19 returns structured warnings; older versions plain strings.
    assert "profile 'nope' does not exist on the server; assuming an earlier task" in json.dumps(
        result["warnings"]
    )
    assert result["diff"]["after"]["profile"] == "nope"


def test_unreachable_server(run_module, fake, unreachable):
    fake.fail_with = unreachable
    result = run_module(device.main, {"serial": "SN-1", "profile": "day0"})
    assert result["failed"] is True
    assert result["msg"] == (
        "cannot read device 'SN-1': cannot reach https://sztp.example.test:8443: Connection refused"
    )


def test_delete_in_use_is_refused(run_module, with_profile):
    fake = with_profile
    fake.seed("device", "SN-1", {"profile": "day0"})
    from ansible_collections.sztp.bootstrap.plugins.modules import profile

    result = run_module(profile.main, {"name": "day0", "state": "absent"})
    assert result["failed"] is True
    assert "still in use" in result["msg"]
    assert result["status"] == 409
    assert "day0" in fake.state["profile"]


def test_voucher_src_must_be_readable(run_module, fake, tmp_path):
    result = run_module(
        device.main, {"serial": "SN-1", "voucher_src": str(tmp_path / "missing.vcj")}
    )
    assert result["failed"] is True
    assert "cannot read voucher_src" in result["msg"]
    assert fake.calls == []


def test_voucher_src_is_sent_base64(run_module, fake, tmp_path):
    # Not a voucher: the server's check rejects it, after the module sent it as base64.
    path = tmp_path / "SN-1.vcj"
    path.write_bytes(b"\x30\x03\x02\x01\x00")
    result = run_module(device.main, {"serial": "SN-1", "voucher_src": str(path)})
    assert result["failed"] is True
    assert "voucher" in result["msg"]
    sent = fake.calls[-1][1]["resources"]["device"]["SN-1"]
    assert sent["voucher"] == base64.b64encode(path.read_bytes()).decode()


def test_voucher_and_voucher_src_are_exclusive(run_module, fake, tmp_path):
    result = run_module(
        device.main, {"serial": "SN-1", "voucher": "AAAA", "voucher_src": str(tmp_path)}
    )
    assert result["failed"] is True
    assert "mutually exclusive" in result["msg"]
    assert fake.calls == []


ACTIVATION_CODE = "c0de-made-by-a-machine_0123456789"


def test_activation_code_is_hidden_idempotent_and_replaces_a_password(run_module, with_profile):
    fake = with_profile
    fake.seed("device", "SN-1", {"profile": "day0", "password": PASSWORD})
    args = {"serial": "SN-1", "activation_code": ACTIVATION_CODE}
    first = run_module(device.main, args)
    assert first["changed"] is True
    assert first["diff"]["after"]["password_hash"] == "<hidden>"
    stored = fake.secret("device", "SN-1")
    assert stored.startswith("$sha256$") and ACTIVATION_CODE not in stored
    second = run_module(device.main, args)
    assert second["changed"] is False and fake.secret("device", "SN-1") == stored
    for result in (first, second):
        assert ACTIVATION_CODE not in repr(result) and stored not in repr(result)


def test_a_password_and_an_activation_code_exclude_each_other(run_module, with_profile):
    args = {"serial": "SN-1", "password": PASSWORD, "activation_code": ACTIVATION_CODE}
    result = run_module(device.main, args)
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
    assert "SN-1" not in with_profile.state["device"]


def test_a_code_a_person_could_have_chosen_is_refused(run_module, with_profile):
    result = run_module(device.main, {"serial": "SN-1", "activation_code": "letmein"})
    assert result["failed"] is True
    assert "a secret a person chose is a password" in result["msg"]
    assert "letmein" not in repr(result)

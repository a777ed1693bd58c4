from __future__ import annotations

import hashlib
import json

from ansible_collections.sztp.bootstrap.plugins.modules import image, profile

URIS = ["https://files.example.test/labos.img"]


def test_profile_create_with_server_defaults_then_idempotent(run_module, fake):
    args = {
        "name": "redirect",
        "type": "redirect",
        "signing": "when-requested",
        "bootstrap_servers": [{"address": "sztp.site-b.example.test"}],
    }
    check = run_module(profile.main, args, check_mode=True)
    assert check["changed"] is True
    assert check["profile"]["spec"]["bootstrap_servers"][0]["port"] == 443  # server default
    assert fake.state["profile"] == {}

    first = run_module(profile.main, args)
    assert first["changed"] is True
    assert first["profile"]["spec"]["owner"] == "default"
    assert run_module(profile.main, args)["changed"] is False


def test_profile_type_change_replaces_instead_of_merging(run_module, fake):
    fake.seed(
        "image",
        "labos",
        {"os_name": "LabOS", "os_version": "1", "download_uris": URIS, "sha256": "ab" * 32},
    )
    fake.seed(
        "profile",
        "p",
        {"type": "onboarding", "image": "labos", "configuration": "x", "signing": "when-requested"},
    )
    result = run_module(
        profile.main,
        {
            "name": "p",
            "type": "redirect",
            "signing": "when-requested",
            "bootstrap_servers": [{"address": "b.example.test"}],
        },
    )
    assert result["changed"] is True
    assert result["diff"]["before"]["image"] == "labos"
    assert "image" not in result["diff"]["after"]
    assert fake.state["profile"]["p"]["type"] == "redirect"


def test_profile_invalid_combination_is_reported(run_module, fake):
    result = run_module(profile.main, {"name": "p", "type": "redirect", "image": "labos"})
    assert result["failed"] is True
    assert "belongs to onboarding profiles" in result["msg"]


def test_image_sha256_from_src(run_module, fake, tmp_path):
    src = tmp_path / "labos.img"
    src.write_bytes(b"image bytes")
    digest = hashlib.sha256(b"image bytes").hexdigest()
    args = {
        "name": "labos",
        "os_name": "LabOS",
        "os_version": "2.1",
        "download_uris": URIS,
        "src": str(src),
    }
    first = run_module(image.main, args)
    assert first["changed"] is True
    assert fake.state["image"]["labos"]["sha256"] == digest
    # The same hash given in upper case with colons is no change: the server normalises it.
    spelled = ":".join(digest[i : i + 2] for i in range(0, 64, 2)).upper()
    again = run_module(image.main, {"name": "labos", "sha256": spelled})
    assert again["changed"] is False


def test_image_sha256_must_match_src(run_module, fake, tmp_path):
    src = tmp_path / "labos.img"
    src.write_bytes(b"image bytes")
    result = run_module(image.main, {"name": "labos", "src": str(src), "sha256": "00" * 32})
    assert result["failed"] is True
    assert "does not match" in result["msg"]
    assert fake.calls == []


def test_image_absent_check_mode(run_module, fake):
    fake.seed(
        "image",
        "labos",
        {"os_name": "LabOS", "os_version": "1", "download_uris": URIS, "sha256": "ab" * 32},
    )
    result = run_module(image.main, {"name": "labos", "state": "absent"}, check_mode=True)
    assert result["changed"] is True
    assert result["diff"]["before"]["os_name"] == "LabOS"
    assert "labos" in fake.state["image"]


def test_profile_naming_an_image_not_yet_created(run_module, fake):
    # In check mode the image task before this one ran as a dry run: the image may come.
    args = {"name": "day0", "type": "onboarding", "image": "labos", "signing": "when-requested"}
    check = run_module(profile.main, args, check_mode=True)
    assert check["changed"] is True
    assert "image 'labos' does not exist on the server" in json.dumps(check["warnings"])
    assert check["diff"]["after"]["image"] == "labos"
    assert fake.state["profile"] == {}

    real = run_module(profile.main, args)
    assert real["failed"] is True
    assert "profile[day0].image: refers to unknown image 'labos'" in real["msg"]

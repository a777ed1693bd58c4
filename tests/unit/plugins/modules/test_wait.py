"""The `wait`, `wait_for` and `wait_timeout` options of the device, devices and status_info
modules: a wait's requests, its results, and the failures that end it."""

from __future__ import annotations

import pytest
from ansible_collections.sztp.bootstrap.plugins.modules import device, devices, status_info

PROFILE = {"type": "onboarding", "signing": "when-requested"}


@pytest.fixture
def lab(fake):
    fake.seed("profile", "day0", PROFILE)
    for serial in ("SN-1", "SN-2", "SN-3"):
        fake.seed("device", serial, {"profile": "day0"})
    fake.report("SN-1", "bootstrap-complete")
    fake.report("SN-2", "bootstrap-complete")
    fake.report("SN-3", "boot-image-error", message="no space left")
    return fake


def test_device_waits_for_its_status_after_the_change(run_module, lab):
    result = run_module(device.main, {"serial": "SN-1", "model": "B", "wait": True})
    assert result["changed"] is True
    assert result["statuses"] == {"SN-1": "complete"}
    assert lab.methods() == ["get", "apply_state", "device_status"]


def test_check_mode_never_waits(run_module, lab):
    result = run_module(device.main, {"serial": "SN-9", "wait": True}, check_mode=True)
    assert result["changed"] is True
    assert "statuses" not in result
    assert "device_status" not in lab.methods()
    bulk = run_module(
        devices.main, {"devices": [{"serial": "SN-9"}], "wait": True}, check_mode=True
    )
    assert "statuses" not in bulk


def test_a_timeout_fails_the_task_naming_the_devices_not_there(run_module, lab):
    result = run_module(
        device.main, {"serial": "SN-4", "profile": "day0", "wait": True, "wait_timeout": 0}
    )
    assert result["failed"] is True
    assert result["msg"] == "timed out: 1 of 1 device(s) not complete: SN-4 (not-seen)"
    assert result["changed"] is True  # the device was created all the same
    assert result["statuses"] == {"SN-4": "not-seen"}
    assert "SN-4" in lab.state["device"]


def test_devices_waits_for_every_listed_device_and_a_failure_ends_it(run_module, lab):
    listed = [{"serial": serial} for serial in ("SN-1", "SN-2", "SN-3")]
    failed = run_module(devices.main, {"devices": listed, "wait": True, "wait_timeout": 60})
    assert failed["failed"] is True
    assert failed["msg"] == "failed while waiting for complete: SN-3"
    assert failed["statuses"] == {"SN-1": "complete", "SN-2": "complete", "SN-3": "failed"}
    reached = run_module(
        devices.main, {"devices": listed, "wait": True, "wait_for": ["complete", "failed"]}
    )
    assert reached["changed"] is False
    assert reached["statuses"] == failed["statuses"]


def test_status_info_waits_for_the_whole_fleet_with_one_listing(run_module, lab):
    result = run_module(
        status_info.main, {"wait": True, "wait_for": ["complete", "failed"]}, check_mode=True
    )
    assert result["counts"]["complete"] == 2
    assert result["counts"]["failed"] == 1
    assert lab.methods() == ["device_pages", "fleet_status"]
    assert lab.calls[0][1]["filters"] == {}


@pytest.mark.parametrize(
    ("main", "args", "message"),
    [
        (device.main, {"serial": "SN-1", "state": "absent", "wait": True}, "wait needs state"),
        (device.main, {"serial": "SN-1", "wait": True, "wait_timeout": -1}, "wait_timeout must"),
        (device.main, {"serial": "SN-1", "wait": True, "wait_for": ["done"]}, "wait_for"),
        (status_info.main, {"wait": True, "wait_for": []}, "cannot wait for status (none)"),
    ],
)
def test_bad_wait_options_fail_clearly(run_module, lab, main, args, message):
    result = run_module(main, args)
    assert result["failed"] is True
    assert message in result["msg"]

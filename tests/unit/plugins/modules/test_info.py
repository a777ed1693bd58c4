"""device_info and status_info against the real server (the recording fake of conftest.py),
with progress reports stored as devices would send them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ansible_collections.sztp.bootstrap.plugins.modules import (
    device_events_info,
    device_info,
    status_info,
    webhooks_info,
)

from sztp_server.store.model import DeviceEvent

KEY = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIA==")


@pytest.fixture
def fake(fake):
    """Three devices on the real server: SN-1 bootstrapped, SN-2 failed, SN-3 never seen."""
    fake.seed("device", "SN-1", {"model": "M1", "password": "correct horse battery"})
    fake.seed("device", "SN-2", {"model": "M2"})
    fake.seed("device", "SN-3", {"model": "M1"})
    fake.report("SN-1", "bootstrap-initiated", ago=timedelta(minutes=2))
    fake.report("SN-1", "bootstrap-complete", source_address="192.0.2.11", ssh_host_keys=[KEY])
    fake.report("SN-2", "boot-image-error", message="no space left")
    return fake


def test_one_device_with_status_and_hidden_password(run_module, fake):
    result = run_module(device_info.main, {"serial": "SN-1"})
    assert result["changed"] is False
    [device] = result["devices"]
    assert device["name"] == "SN-1"
    assert device["spec"]["password_hash"] == "<hidden>"
    assert device["status"] == "complete"
    assert device["last_report"]["ssh_host_keys"][0]["algorithm"] == "ssh-ed25519"
    assert "correct horse" not in str(result)
    assert fake.methods() == ["get", "device_status"]


def test_missing_device_is_an_empty_list(run_module, fake):
    result = run_module(device_info.main, {"serial": "nope"})
    assert result["devices"] == [] and not result.get("failed")


def test_list_costs_one_request(run_module, fake):
    result = run_module(device_info.main, {})
    assert [d["name"] for d in result["devices"]] == ["SN-1", "SN-2", "SN-3"]
    assert [d["status"] for d in result["devices"]] == ["complete", "failed", "not-seen"]
    assert fake.methods() == ["devices_with_status"]
    assert all("last_report" not in device for device in result["devices"])


def test_filters_and_last_report(run_module, fake):
    result = run_module(device_info.main, {"model": "M1", "last_report": True})
    assert [d["name"] for d in result["devices"]] == ["SN-1", "SN-3"]
    assert result["devices"][1]["last_report"] is None
    assert result["devices"][0]["attempts"] == 1 and result["devices"][1]["attempts"] == 0
    # Statuses and last reports come with the listing: no request per device.
    assert fake.methods() == ["devices_with_status"]
    failed = run_module(device_info.main, {"status": "failed"})
    assert [d["name"] for d in failed["devices"]] == ["SN-2"]


def test_server_errors_fail_cleanly(run_module, fake, unreachable):
    fake.fail_with = unreachable
    result = run_module(device_info.main, {})
    assert result["failed"] is True
    assert "cannot list devices: cannot reach" in result["msg"]


def test_fleet_status(run_module, fake):
    fake.seed("device", "SN-5", {})
    fake.report("SN-5", "config-error", ago=timedelta(minutes=5))
    fake.seed("device", "SN-9", {})
    fake.report("SN-9", "boot-image-initiated", ago=timedelta(days=1))
    result = run_module(status_info.main, {"max_errors": 1})
    assert result["changed"] is False
    assert result["devices"] == 5
    assert result["counts"]["complete"] == 1 and result["counts"]["failed"] == 2
    assert result["stalled_serials"] == ["SN-9"]
    assert result["stalled"][0]["last_report"]["progress_type"] == "boot-image-initiated"
    # The newest failure only.
    assert [error["serial"] for error in result["recent_errors"]] == ["SN-2"]
    assert fake.methods() == ["fleet_status"]


def test_fleet_status_refuses_negative_limit(run_module, fake):
    assert run_module(status_info.main, {"max_errors": -1})["failed"] is True


def test_device_events_with_the_reasons_counted(run_module, fake):
    def event(serial, refusal, seconds):
        return DeviceEvent(
            at=datetime.now(UTC) - timedelta(seconds=seconds),
            rpc="get-bootstrapping-data",
            status=401 if refusal else 200,
            serial=serial,
            authenticated=refusal is None,
            refusal=refusal,
            remote="192.0.2.7",
            duration_us=1200,
        )

    fake.events(
        [
            event("SN-1", "wrong-secret", 3),
            event("SN-1", "wrong-secret", 2),
            event("SN-1", None, 1),
            event("SN-404", "unknown-serial", 0),
        ]
    )
    result = run_module(device_events_info.main, {"serial": "SN-1"})
    assert result["changed"] is False
    assert [event["refusal"] for event in result["events"]] == [
        None,
        "wrong-secret",
        "wrong-secret",
    ]
    assert result["refusals"] == {"wrong-secret": 2}
    refused = run_module(device_events_info.main, {"refused": True, "limit": 2})
    assert [event["serial"] for event in refused["events"]] == ["SN-404", "SN-1"]
    assert refused["refusals"] == {"unknown-serial": 1, "wrong-secret": 1}
    assert fake.methods() == ["device_events", "device_events"]
    assert run_module(device_events_info.main, {"limit": 0})["failed"] is True


def test_webhooks_with_what_waits(run_module, fake):
    """A webhook no longer configured is listed while the outbox keeps its entries."""
    fake.queue_webhook_event("ops", "device-failed")
    fake.queue_webhook_event("ops", "device-status-changed")
    result = run_module(webhooks_info.main, {})
    assert result["changed"] is False and result["pending"] == 2
    [hook] = result["webhooks"]
    assert (hook["name"], hook["configured"], hook["pending"]) == ("ops", False, 2)
    assert hook["oldest_pending_at"] is not None and hook["url"] is None
    assert fake.methods() == ["webhooks"]  # one read, nothing written

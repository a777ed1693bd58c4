"""device_info and status_info against the strict fake client, extended with the read calls."""

from __future__ import annotations

import pytest
from ansible_collections.sztp.bootstrap.plugins.modules import device_info, status_info

from sztpctl.errors import NotFoundApiError

STATUS = {"SN-1": "complete", "SN-2": "failed", "SN-3": "not-seen"}
REPORT = {
    "progress_type": "bootstrap-complete",
    "source_address": "192.0.2.11",
    "ssh_host_keys": [{"algorithm": "ssh-ed25519", "key_data": "AAAA"}],
}


class ReadingMethods:
    """Mixed into the shared strict fake (conftest.py) for the read-only calls."""

    def devices_with_status(self, **filters):
        self._record("devices_with_status", **filters)
        items = []
        for name, spec in sorted(self.state["device"].items()):
            view = self.get("device", name)
            self.calls.pop()  # the inner get is not a request
            status = STATUS.get(name, "not-seen")
            if filters.get("status") not in (None, status):
                continue
            if any(filters.get(key) not in (None, spec.get(key)) for key in ("profile", "model")):
                continue
            last = None if status == "not-seen" else {**REPORT, "attempt": 1}
            items.append({**view, "status": status, "last_report": last})
        return items

    def device_status(self, serial):
        self._record("device_status", serial=serial)
        if serial not in self.state["device"]:
            raise NotFoundApiError(404, "not-found", "no device")
        status = STATUS.get(serial, "not-seen")
        return {
            "serial": serial,
            "status": status,
            "attempts": 0 if status == "not-seen" else 1,
            "last_report": None if status == "not-seen" else REPORT,
        }

    def fleet_status(self):
        self._record("fleet_status")
        return {
            "devices": 3,
            "counts": {"complete": 1, "failed": 1, "not-seen": 1},
            "stalled": [{"serial": "SN-9", "last_report": REPORT}],
            "recent_errors": [{"serial": "SN-2"}, {"serial": "SN-5"}],
        }


@pytest.fixture
def fake(fake):
    """The shared fake (already installed in place of SztpClient), with the read calls too."""
    client = fake
    client.__class__ = type("ReadingFake", (ReadingMethods, type(fake)), {})
    client.seed("device", "SN-1", {"model": "M1", "password": "correct horse battery"})
    client.seed("device", "SN-2", {"model": "M2"})
    client.seed("device", "SN-3", {"model": "M1"})
    return client


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
    result = run_module(status_info.main, {"max_errors": 1})
    assert result["changed"] is False
    assert result["counts"]["complete"] == 1
    assert result["stalled_serials"] == ["SN-9"]
    assert result["recent_errors"] == [{"serial": "SN-2"}]
    assert fake.methods() == ["fleet_status"]


def test_fleet_status_refuses_negative_limit(run_module, fake):
    assert run_module(status_info.main, {"max_errors": -1})["failed"] is True

#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: device_info
short_description: Read devices known to an sztp-server, with their bootstrapping status
version_added: 0.1.0
description:
  - Returns one device (by O(serial)) or every device matching the filters, each with its
    specification as stored (secrets shown as C(<hidden>)) and its bootstrapping status.
  - "Cost: one request for a single device plus one for its status. For a list, one request
    per 2,000 devices, statuses and last reports included; the server reads each page on its
    own, so the time grows with the devices listed, not faster."
author:
  - sztp developers (@sztp)
options:
  serial:
    description:
      - Serial number of the one device to read. Without it, every device matching the filters
        is returned.
      - A device that does not exist gives an empty O(ignore:devices) list, not a failure.
    type: str
    aliases: [name]
  status:
    description: Only devices with this bootstrapping status.
    type: str
    choices: [not-seen, in-progress, rebooting, complete, failed, stalled]
  profile:
    description: Only devices assigned this profile.
    type: str
  model:
    description: Only devices of this model.
    type: str
  site:
    description: Only devices installed at this site.
    type: str
  last_report:
    description:
      - Also return each listed device's latest progress report and attempt count (they come
        with the listing at no extra cost). A single device (O(serial)) always gets them.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.attributes.info_module
"""

EXAMPLES = r"""
- name: Read one device
  sztp.bootstrap.device_info:
    serial: SN-0001
  register: dpu
  delegate_to: localhost

- name: Devices that failed to bootstrap, with their last report
  sztp.bootstrap.device_info:
    status: failed
    last_report: true
  register: failed
  delegate_to: localhost

- name: Show why
  ansible.builtin.debug:
    msg: "{{ item.name }}: {{ item.last_report.progress_type }} {{ item.last_report.message }}"
  loop: "{{ failed.devices }}"
"""

RETURN = r"""
devices:
  description: The devices found, by serial number.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Serial number.
      type: str
      sample: SN-0001
    spec:
      description: The device's specification; the password hash is shown as C(<hidden>).
      type: dict
      sample: {"profile": "dpu-day0", "model": "DPU-LAB-1", "mac": "52:54:00:12:34:56",
               "password_hash": "<hidden>", "voucher": null}
    revision:
      description: State revision of the device's last change.
      type: int
    created_at:
      description: When the device was added (UTC, ISO 8601).
      type: str
    updated_at:
      description: When the device last changed (UTC, ISO 8601).
      type: str
    status:
      description: Bootstrapping status.
      type: str
      sample: complete
    attempts:
      description: Bootstrapping attempts so far.
      type: int
      returned: for a single device, or with O(last_report=true) for devices that reported
    last_report:
      description:
        - Latest progress report, or null when the device never reported.
        - C(truncated) is true when the server cut the report's message (or left out SSH host
          keys or trust anchors) to keep it within its size cap.
      type: dict
      returned: for a single device, or with O(last_report=true)
      sample: {"id": 42, "progress_type": "bootstrap-complete",
               "received_at": "2026-01-01T10:00:00Z", "message": null,
               "source_address": "192.0.2.10", "attempt": 1, "truncated": false,
               "ssh_host_keys": [{"algorithm": "ssh-ed25519", "key_data": "AAAAC3Nz..."}]}
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    HIDDEN,
    client_for,
    fail_on_error,
    new_module,
    run,
)

STATUSES = ("not-seen", "in-progress", "rebooting", "complete", "failed", "stalled")
# Never returned in clear, whatever the server sends (it already hides them).
SECRET_FIELDS = ("password", "activation_code", "password_hash")

try:
    from sztp.errors import NotFoundApiError, SztpError
except ImportError:  # new_module fails with kit_problem's message first
    NotFoundApiError = SztpError = None


def hide_secrets(item):
    spec = dict(item.get("spec") or {})
    for field in SECRET_FIELDS:
        if spec.get(field) is not None:
            spec[field] = HIDDEN
    shown = dict(item)
    shown["spec"] = spec
    return shown


def one_device(module, client, serial):
    try:
        item = client.get("device", serial)
    except NotFoundApiError:
        return []
    except SztpError as exc:
        fail_on_error(module, exc, "cannot read device %r" % serial)
    summary = run(module, "cannot read the status of %r" % serial, client.device_status, serial)
    device = hide_secrets(item)
    device.update(
        status=summary.get("status"),
        attempts=summary.get("attempts"),
        last_report=summary.get("last_report"),
    )
    params = module.params
    for field in ("profile", "model", "site"):
        if params[field] is not None and device["spec"].get(field) != params[field]:
            return []
    if params["status"] is not None and device["status"] != params["status"]:
        return []
    return [device]


def many_devices(module, client):
    params = module.params
    filters = dict(
        profile=params["profile"],
        model=params["model"],
        site=params["site"],
        status=params["status"],
    )
    # One listing with each device's status and last report, whatever the fleet's size.
    items = run(module, "cannot list devices", client.devices_with_status, **filters)
    devices = []
    for item in items:
        device = hide_secrets(item)
        report = device.pop("last_report", None)
        # A single device is read without it: the inventory plugin shows it (sztp_ldevid).
        device.pop("ldevid", None)
        if params["last_report"]:
            device.update(attempts=report["attempt"] if report else 0, last_report=report)
        devices.append(device)
    return sorted(devices, key=lambda device: device["name"])


def main():
    module = new_module(
        dict(
            serial=dict(type="str", aliases=["name"]),
            status=dict(type="str", choices=list(STATUSES)),
            profile=dict(type="str"),
            model=dict(type="str"),
            site=dict(type="str"),
            last_report=dict(type="bool", default=False),
        ),
    )
    client = client_for(module)
    if module.params["serial"]:
        devices = one_device(module, client, module.params["serial"])
    else:
        devices = many_devices(module, client)
    module.exit_json(changed=False, devices=devices)


if __name__ == "__main__":
    main()

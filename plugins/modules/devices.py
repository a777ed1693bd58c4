#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: devices
short_description: Manage many devices of an sztp-server in one request
version_added: 0.1.0
description:
  - Makes the devices listed in O(devices) present on an sztp-server in one transaction,
    through the server's bulk desired-state endpoint; with O(prune=true), deletes every device
    not listed.
  - Fields left out of a device entry keep the value stored on the server; an empty string
    clears an optional text field.
  - The change applies only if the server's state did not change since the module read it
    (optimistic concurrency); otherwise the module fails and nothing is changed.
  - The diff is a summary, not every spec, with one line per created or deleted device, and for
    an updated device one line per changed field with its value before and after (long text by
    its size and a hash). A secret (password, activation code) shows only as changed, never
    its value.
  - With O(wait=true), the task then waits until every listed device has bootstrapped (or
    reached another status of O(wait_for)); not in check mode.
author:
  - sztp developers (@sztp)
options:
  devices:
    description:
      - The devices, each with the same fields as M(sztp.bootstrap.device).
    type: list
    elements: dict
    required: true
    suboptions:
      serial:
        description: The device's serial number.
        type: str
        required: true
      profile:
        description: Name of the profile the device gets.
        type: str
      selection:
        description: Profile selection rules (see M(sztp.bootstrap.device)).
        type: list
        elements: dict
      model:
        description: The device's hardware model.
        type: str
      site:
        description: Where the device is installed.
        type: str
      mac:
        description: The device's MAC address.
        type: str
      duid:
        description: The device's DHCPv6 DUID, hex.
        type: str
      vars:
        description: The device's template variables (see M(sztp.bootstrap.device)).
        type: dict
      password:
        description:
          - Password for HTTP Basic authentication; stored as a hash, never shown.
          - An empty string removes it.
        type: str
      activation_code:
        description:
          - Activation code for HTTP Basic authentication, made by a machine (at least 160
            random bits, see the M(sztp.bootstrap.device) module); stored with a fast hash,
            never shown.
          - An empty string removes it. Not together with O(devices[].password).
        type: str
      voucher:
        description: The device's ownership voucher (DER CMS), base64-encoded.
        type: str
      voucher_src:
        description:
          - Path of the voucher file on the host the module runs on.
          - Mutually exclusive with O(devices[].voucher).
        type: path
      presigned:
        description: Bootstrapping data signed offline, as get-bootstrapping-data output JSON.
        type: str
  prune:
    description:
      - Delete every device on the server that O(devices) does not list.
    type: bool
    default: false
notes:
  - In check mode only, when the server refuses the dry run solely because a device refers to
    a profile it does not have, the module assumes an earlier task of the same run creates
    the profile (that task ran as a dry run too), so it warns, naming the profile, and reports the
    changes it compares itself from the values as given (before the server's normalisation,
    and a password given counts as a change). A real run fails if the profile still does not
    exist. Any other refusal fails in check mode as well.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.wait
attributes:
  check_mode:
    details: The server plans the change (dry run) and reports it without storing anything.
  diff_mode:
    support: full
    details: A summary of the plan, with the old and new values of the fields that change.
"""

EXAMPLES = r"""
- name: The fleet, exactly as listed (devices not listed are deleted)
  sztp.bootstrap.devices:
    devices: "{{ fleet_devices }}"
    prune: true

- name: Register a rack of DPUs
  sztp.bootstrap.devices:
    devices:
      - serial: SN-0001
        profile: dpu-day0
        model: DPU-LAB-1
        voucher_src: vouchers/SN-0001.vcj
      - serial: SN-0002
        profile: dpu-day0
        model: DPU-LAB-1
        voucher_src: vouchers/SN-0002.vcj

- name: Build the list from a CSV file on the controller
  sztp.bootstrap.devices:
    devices: "{{ lookup('ansible.builtin.file', 'fleet.csv') | community.general.from_csv }}"

- name: What would change, with old and new values (a profile an earlier task creates is assumed)
  sztp.bootstrap.devices:
    devices: "{{ rack_devices }}"
  check_mode: true
  diff: true

- name: Register a rack and wait until every DPU of it has bootstrapped or failed
  sztp.bootstrap.devices:
    devices: "{{ rack_devices }}"
    wait: true
    wait_for: [complete, failed]
    wait_timeout: 1800
  register: rack

- name: List the DPUs that failed
  ansible.builtin.debug:
    msg: "{{ rack.statuses | dict2items | selectattr('value', 'eq', 'failed') | map(attribute='key') }}"
"""

RETURN = r"""
created:
  description: Serial numbers of the devices created (in check mode, that would be created).
  returned: success
  type: list
  elements: str
  sample: [SN-0001]
updated:
  description: Serial numbers of the devices updated.
  returned: success
  type: list
  elements: str
  sample: [SN-0002]
deleted:
  description: Serial numbers of the devices deleted (only with O(prune=true)).
  returned: success
  type: list
  elements: str
  sample: []
unchanged:
  description: Number of listed devices already as wanted.
  returned: success
  type: int
  sample: 998
summary:
  description: The counts in one line.
  returned: success
  type: str
  sample: 1 to create, 1 to update, 0 to delete, 998 unchanged
revision:
  description: The server's state revision after the change (in check mode, the current one).
  returned: success
  type: int
  sample: 42
statuses:
  description:
    - Each listed device's bootstrapping status when the wait ended, by serial number.
    - On a failed wait too, with the reason in C(msg).
  returned: when O(wait=true), not in check mode
  type: dict
  sample: {"SN-0001": "complete", "SN-0002": "complete"}
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.device import (
    DEVICE_OPTIONS,
    WRITE_ONLY,
    device_fields,
)
from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    WAIT_ARGUMENT_SPEC,
    client_for,
    ensure_devices,
    new_module,
    wait_for_devices,
)

DEVICE = dict(
    DEVICE_OPTIONS,
    serial=dict(type="str", required=True),
    selection=dict(type="list", elements="dict"),
    password=dict(type="str", no_log=True),
    activation_code=dict(type="str", no_log=True),
)


def main():
    module = new_module(
        dict(
            devices=dict(
                type="list",
                elements="dict",
                required=True,
                options=DEVICE,
                mutually_exclusive=[("voucher", "voucher_src"), ("password", "activation_code")],
            ),
            prune=dict(type="bool", default=False),
            **WAIT_ARGUMENT_SPEC,
        ),
    )
    wanted = {}
    for entry in module.params["devices"]:
        serial = entry["serial"]
        if serial in wanted:
            module.fail_json(msg="device %r is listed twice" % serial)
        wanted[serial] = device_fields(module, entry, "device %r: " % serial)
    client = client_for(module)
    result = ensure_devices(
        module,
        client,
        wanted,
        prune=module.params["prune"],
        write_only=WRITE_ONLY,
    )
    if module.params["wait"] and not module.check_mode:
        result["statuses"] = wait_for_devices(module, client, result, serials=list(wanted))
    module.exit_json(**result)


if __name__ == "__main__":
    main()

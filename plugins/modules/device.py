#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: device
short_description: Manage one device known to an sztp-server
version_added: 0.1.0
description:
  - Creates, updates or deletes one device (by serial number) on an sztp-server, the RFC 8572
    bootstrap server of this collection.
  - For many devices in one request, use M(sztp.bootstrap.devices).
  - With O(wait=true), the task then waits until the device has bootstrapped (or reached
    another status of O(wait_for)); not in check mode.
author:
  - sztp developers (@sztp)
options:
  serial:
    description:
      - The device's serial number, as in its IDevID certificate.
    type: str
    required: true
    aliases: [name]
  profile:
    description:
      - Name of the profile (onboarding or redirect) the device gets.
    type: str
  selection:
    description:
      - Rules choosing a profile from what the device reports (hardware model, OS); the first
        match wins, O(profile) applies when none matches.
      - An empty list removes the rules.
    type: list
    elements: dict
    suboptions:
      hw_model:
        description: Hardware model the rule matches.
        type: str
      os_name:
        description: OS name the rule matches.
        type: str
      os_version:
        description: OS version the rule matches.
        type: str
      profile:
        description: Profile the device gets when the rule matches.
        type: str
        required: true
  model:
    description:
      - The device's hardware model (informational; used for grouping).
    type: str
  site:
    description:
      - Where the device is installed (informational; devices are counted and found by site).
    type: str
  mac:
    description:
      - The device's MAC address, for DHCP reservations.
    type: str
  duid:
    description:
      - The device's DHCPv6 DUID, hex (colons allowed).
    type: str
  vars:
    description:
      - The device's template variables, over those of its profile, for a profile whose
        templating is V(jinja2) (see M(sztp.bootstrap.profile)); a template reads them as
        C(vars.NAME).
      - Names are letters, digits and C(_); values are any JSON data. Admins see them, so never
        put a secret here.
    type: dict
  password:
    description:
      - Password for HTTP Basic authentication of the device (serial number + password),
        for devices without an IDevID certificate.
      - Stored as a hash; re-applying the same password is not a change.
      - An empty string removes the password. Never shown in results or diffs.
      - Mutually exclusive with O(activation_code).
    type: str
  activation_code:
    description:
      - Activation code for HTTP Basic authentication of the device (serial number + code),
        a secret a machine made with at least 160 random bits (C(sztpctl device
        activation-code) makes them), 27 to 128 characters of V(A-Z), V(a-z), V(0-9), V(-)
        and V(_).
      - Stored with a fast salted hash, so a login with it costs the server microseconds where
        a O(password) costs a deliberately slow scrypt; use O(password) for a secret a person
        chose.
      - Re-applying the same code is not a change. An empty string removes it. Never shown in
        results or diffs.
    type: str
  voucher:
    description:
      - The device's signed ownership voucher (RFC 8366, DER CMS), base64-encoded.
      - Binary files cannot be read with the C(file) lookup; use O(voucher_src), or
        M(sztp.bootstrap.voucher) which also checks the voucher before uploading it.
      - An empty string removes the voucher.
    type: str
  voucher_src:
    description:
      - Path of the voucher file (DER CMS) on the host the module runs on.
      - Mutually exclusive with O(voucher).
    type: path
  presigned:
    description:
      - Bootstrapping data signed offline (C(sztpctl bootstrap-data sign)), as the JSON output
        of the get-bootstrapping-data RPC; the server then serves it as-is.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.state
  - sztp.bootstrap.wait
"""

EXAMPLES = r"""
- name: Register a DPU for zero touch provisioning
  sztp.bootstrap.device:
    serial: SN-0001
    profile: dpu-day0
    model: DPU-LAB-1
    mac: "52:54:00:12:34:56"
    vars:
      hostname: dpu-0001
    voucher_src: vouchers/SN-0001.vcj
    server: https://sztp.example.com:7080
    token: "{{ sztp_admin_token }}"
  delegate_to: localhost

- name: Same, with the connection set once for the whole play
  hosts: localhost
  module_defaults:
    group/sztp.bootstrap.sztp:
      server: https://sztp.example.com:7080
      token: "{{ sztp_admin_token }}"
  tasks:
    - name: Let a switch authenticate with a password
      sztp.bootstrap.device:
        serial: SW-42
        profile: redirect-to-site-b
        password: "{{ vault_sw42_password }}"

    - name: Let a DPU authenticate with an activation code staged on it
      sztp.bootstrap.device:
        serial: DPU-17
        profile: dpu-day0
        activation_code: "{{ vault_activation_codes['DPU-17'] }}"

    - name: Remove a device
      sztp.bootstrap.device:
        serial: SN-0002
        state: absent

    - name: Register a DPU, then wait up to 15 minutes until it has bootstrapped
      sztp.bootstrap.device:
        serial: DPU-18
        profile: dpu-day0
        wait: true
        wait_timeout: 900
"""

RETURN = r"""
device:
  description:
    - The device as stored on the server (after the change; in check mode, as it would be).
    - Secret fields show as C(<hidden>). Null when the device is absent.
  returned: always
  type: dict
  contains:
    name:
      description: The serial number.
      type: str
      returned: success
      sample: SN-0001
    spec:
      description: The stored spec, in the server's canonical form.
      type: dict
      returned: success
      sample:
        profile: dpu-day0
        selection: []
        model: DPU-LAB-1
        mac: "52:54:00:12:34:56"
        duid: null
        vars: null
        password_hash: null
        voucher: MIIG...
        presigned: null
statuses:
  description:
    - The device's bootstrapping status when the wait ended, by serial number.
    - On a failed wait too, with the reason in C(msg).
  returned: when O(wait=true), not in check mode
  type: dict
  sample: {"SN-0001": "complete"}
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.device import (
    DEVICE_OPTIONS,
    WRITE_ONLY,
    device_fields,
)
from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    run_resource_module,
)

SELECTION_RULE = dict(
    hw_model=dict(type="str"),
    os_name=dict(type="str"),
    os_version=dict(type="str"),
    profile=dict(type="str", required=True),
)


def main():
    run_resource_module(
        "device",
        dict(
            DEVICE_OPTIONS,
            serial=dict(type="str", required=True, aliases=["name"]),
            selection=dict(type="list", elements="dict", options=SELECTION_RULE),
            password=dict(type="str", no_log=True),
            activation_code=dict(type="str", no_log=True),
        ),
        key="serial",
        spec_fields=lambda module: device_fields(module, module.params),
        module_options=dict(
            mutually_exclusive=[("voucher", "voucher_src"), ("password", "activation_code")]
        ),
        write_only=WRITE_ONLY,
        waits=True,
    )


if __name__ == "__main__":
    main()

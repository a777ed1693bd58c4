#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: voucher
short_description: Store a device's ownership voucher on an sztp-server
version_added: 0.1.0
description:
  - Checks an ownership voucher (RFC 8366, signed by the manufacturer's MASA) locally, then
    stores it for its device, which must exist already (M(sztp.bootstrap.device)).
  - Always checked before anything is sent, as C(sztpctl voucher import) does - the
    signature, that the voucher names the device, that it has not expired and that it carries
    no nonce; with O(owner_certificate), that it pins that owner; with O(masa_trust_anchor),
    that the MASA chains to it.
  - The server also refuses a voucher whose pinned-domain-cert does not authorise the owner of
    every profile the device can select that can be served signed.
  - O(state=absent) removes the device's voucher, not the device.
author:
  - sztp developers (@sztp)
options:
  serial:
    description:
      - Serial number of the device the voucher is for.
    type: str
    required: true
  src:
    description:
      - Path of the voucher file (DER CMS) on the host the module runs on.
      - Exactly one of O(src) and O(content) is required with O(state=present).
    type: path
  content:
    description:
      - The voucher (DER CMS), base64-encoded.
    type: str
  owner_certificate:
    description:
      - PEM owner certificate (optionally followed by its chain) the voucher must pin.
    type: str
  masa_trust_anchor:
    description:
      - PEM trust anchor(s) the voucher's MASA signature must chain to.
    type: str
  state:
    description:
      - V(present) stores the voucher; V(absent) removes the device's voucher.
    type: str
    choices: [present, absent]
    default: present
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.attributes
"""

EXAMPLES = r"""
- name: Store a voucher, checked against the owner certificate and the vendor's MASA
  sztp.bootstrap.voucher:
    serial: SN-0001
    src: vouchers/SN-0001.vcj
    owner_certificate: "{{ lookup('ansible.builtin.file', 'pki/owner-chain.pem') }}"
    masa_trust_anchor: "{{ lookup('ansible.builtin.file', 'pki/masa-ca.pem') }}"

- name: Forget a device's voucher
  sztp.bootstrap.voucher:
    serial: SN-0001
    state: absent
"""

RETURN = r"""
device:
  description:
    - The device as stored (in check mode, as it would be); secrets show as C(<hidden>).
  returned: success
  type: dict
  contains:
    name:
      description: The serial number.
      type: str
      returned: success
      sample: SN-0001
    spec:
      description: The device's stored spec, with the voucher in base64.
      type: dict
      returned: success
checked:
  description: What the local check covered.
  returned: when O(state=present)
  type: list
  elements: str
  sample: [signature, serial number, expiry, MASA chain, pinned owner]
"""

import base64
import binascii

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    client_for,
    ensure_resource,
    fail_on_error,
    get_current,
    new_module,
)

try:
    from sztp.errors import SztpError
    from sztp.protocol import pki
    from sztp.state.validate import check_pins_owner, read_voucher_for
except ImportError:
    pass  # new_module reports the missing kit


def read_der(module):
    params = module.params
    if params["src"]:
        try:
            with open(params["src"], "rb") as handle:
                return handle.read()
        except OSError as exc:
            module.fail_json(msg="cannot read src %s: %s" % (params["src"], exc.strerror))
    try:
        return base64.b64decode(params["content"], validate=True)
    except (binascii.Error, ValueError):
        module.fail_json(msg="content must be the voucher in base64")


def check_locally(module, der):
    params = module.params
    serial = params["serial"]
    checked = ["signature", "serial number", "expiry"]
    try:
        anchors = None
        if params["masa_trust_anchor"]:
            anchors = pki.load_certificates_pem(params["masa_trust_anchor"].encode())
            checked.append("MASA chain")
        voucher = read_voucher_for(der, serial, masa_anchors=anchors)
        if params["owner_certificate"]:
            chain = pki.load_certificates_pem(params["owner_certificate"].encode())
            check_pins_owner(voucher, chain)
            checked.append("pinned owner")
    except SztpError as exc:
        fail_on_error(module, exc, "voucher for %r rejected" % serial)
    return checked


def main():
    module = new_module(
        dict(
            serial=dict(type="str", required=True),
            src=dict(type="path"),
            content=dict(type="str"),
            owner_certificate=dict(type="str"),
            masa_trust_anchor=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        mutually_exclusive=[("src", "content")],
        required_if=[("state", "present", ("src", "content"), True)],
    )
    serial = module.params["serial"]
    client = client_for(module)
    if module.params["state"] == "absent":
        if get_current(module, client, "device", serial) is None:
            module.exit_json(changed=False, device=None)
        result = ensure_resource(module, client, "device", serial, {"voucher": ""})
    else:
        der = read_der(module)
        checked = check_locally(module, der)
        encoded = base64.b64encode(der).decode("ascii")
        result = ensure_resource(
            module, client, "device", serial, {"voucher": encoded}, must_exist=True
        )
        result["checked"] = checked
    result["device"] = result.pop("resource")
    module.exit_json(**result)


if __name__ == "__main__":
    main()

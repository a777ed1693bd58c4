#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: trust_anchor
short_description: Manage a manufacturer trust anchor of an sztp-server
version_added: 0.1.0
description:
  - Creates, updates or deletes one trust anchor, the manufacturer CA certificate(s) that
    device IDevID certificates must chain to for the server to accept the device.
author:
  - sztp developers (@sztp)
options:
  name:
    description:
      - The trust anchor's name (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  certificates:
    description:
      - PEM CA certificate(s). Required when the trust anchor is created.
      - Compared after re-encoding, so formatting differences are not changes.
    type: str
  serial_pattern:
    description:
      - Regular expression with a named group C((?P<serial>...\)) that extracts the serial
        number from the IDevID subject's serialNumber, for manufacturers that decorate it.
      - An empty string removes it.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.state
"""

EXAMPLES = r"""
- name: Trust the DPU vendor's IDevID CA
  sztp.bootstrap.trust_anchor:
    name: dpu-vendor
    certificates: "{{ lookup('ansible.builtin.file', 'pki/dpu-vendor-ca.pem') }}"
"""

RETURN = r"""
trust_anchor:
  description:
    - The trust anchor as stored (in check mode, as it would be). Null when absent.
  returned: always
  type: dict
  contains:
    name:
      description: The trust anchor's name.
      type: str
      returned: success
      sample: dpu-vendor
    spec:
      description: The stored spec, certificates re-encoded canonically.
      type: dict
      returned: success
      sample:
        certificates: "-----BEGIN CERTIFICATE-----\n..."
        serial_pattern: null
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    run_resource_module,
)


def main():
    run_resource_module(
        "trust-anchor",
        dict(
            certificates=dict(type="str"),
            serial_pattern=dict(type="str"),
        ),
    )


if __name__ == "__main__":
    main()

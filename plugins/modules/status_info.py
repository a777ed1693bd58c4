#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: status_info
short_description: Bootstrapping status of a whole fleet from an sztp-server
version_added: 0.1.0
description:
  - Returns how many devices the server knows in each bootstrapping status, the devices that
    stalled (silent for too long in the middle of bootstrapping) and the most recent errors, in
    one request.
  - With O(wait=true), it first waits until every device of the server is in one of the
    O(wait_for) statuses, then reads them; it only reads, so it waits in check mode too.
author:
  - sztp developers (@sztp)
options:
  max_errors:
    description:
      - Return at most this many recent errors (newest first). The server itself returns at
        most 50.
    type: int
    default: 50
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.attributes.info_module
  - sztp.bootstrap.wait
"""

EXAMPLES = r"""
- name: Read the fleet's status
  sztp.bootstrap.status_info:
  register: fleet
  delegate_to: localhost

- name: Fail when devices are stuck
  ansible.builtin.assert:
    that: fleet.counts.stalled == 0 and fleet.counts.failed == 0
    fail_msg: >-
      stalled: {{ fleet.stalled_serials }};
      failed: {{ fleet.recent_errors | map(attribute='serial') }}

- name: Wait up to an hour until the whole fleet has bootstrapped
  sztp.bootstrap.status_info:
    wait: true
    wait_timeout: 3600
  delegate_to: localhost
"""

RETURN = r"""
devices:
  description: Number of devices the server knows.
  returned: always
  type: int
  sample: 120
counts:
  description: Number of devices in each status.
  returned: always
  type: dict
  sample: {"not-seen": 10, "in-progress": 3, "rebooting": 1, "complete": 104, "failed": 1,
           "stalled": 1}
stalled:
  description:
    - Stalled devices with their last report, the first 100 in name order; RV(counts) has how
      many there are (M(sztp.bootstrap.device_info) filtered by status C(stalled) lists them all).
  returned: always
  type: list
  elements: dict
  sample: [{"serial": "SN-0042", "last_report": {"progress_type": "boot-image-initiated",
            "received_at": "2026-01-01T10:00:00Z", "message": null,
            "source_address": "192.0.2.42", "attempt": 1, "ssh_host_keys": []}}]
stalled_serials:
  description: Serial numbers of the stalled devices in RV(stalled).
  returned: always
  type: list
  elements: str
  sample: [SN-0042]
recent_errors:
  description: Latest report of each failed device, newest first.
  returned: always
  type: list
  elements: dict
  sample: [{"serial": "SN-0007", "progress_type": "boot-image-error",
            "message": "hash mismatch", "received_at": "2026-01-01T09:00:00Z",
            "source_address": "192.0.2.7", "attempt": 2, "ssh_host_keys": []}]
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    WAIT_ARGUMENT_SPEC,
    client_for,
    new_module,
    run,
    wait_for_devices,
)


def main():
    module = new_module(dict(max_errors=dict(type="int", default=50), **WAIT_ARGUMENT_SPEC))
    if module.params["max_errors"] < 0:
        module.fail_json(msg="max_errors must be 0 or more")
    client = client_for(module)
    if module.params["wait"]:
        wait_for_devices(module, client, dict(changed=False), selector={})
    fleet = run(module, "cannot read the fleet's status", client.fleet_status)
    stalled = fleet.get("stalled") or []
    module.exit_json(
        changed=False,
        devices=fleet.get("devices", 0),
        counts=fleet.get("counts") or {},
        stalled=stalled,
        stalled_serials=[entry.get("serial") for entry in stalled],
        recent_errors=(fleet.get("recent_errors") or [])[: module.params["max_errors"]],
    )


if __name__ == "__main__":
    main()

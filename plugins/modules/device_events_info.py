#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: device_events_info
short_description: Device requests an sztp-server recorded, and why refused ones were refused
version_added: 0.2.0
description:
  - Returns the newest device requests of the server's flight recorder, served and refused,
    each with when it came, which RPC, the serial the request proved to be (or, refused before
    that, the serial it claimed), the client's address, the HTTP status, how long it took, and
    the refusal.
  - A device is only ever told C(access-denied) or the like; the refusal names the reason, for
    example C(unknown-serial), C(wrong-secret) or C(untrusted-certificate) (the server's
    documentation lists them all).
author:
  - sztp developers (@sztp)
options:
  serial:
    description:
      - Only requests naming this serial. It need not be a device the server knows.
    type: str
  refused:
    description:
      - Only refused requests.
    type: bool
    default: false
  limit:
    description:
      - How many events, newest first (at most 1000).
    type: int
    default: 100
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.attributes.info_module
"""

EXAMPLES = r"""
- name: Read why SN-0001 was refused
  sztp.bootstrap.device_events_info:
    serial: SN-0001
    refused: true
    limit: 10
  register: refused
  delegate_to: localhost

- name: Show the reasons
  ansible.builtin.debug:
    msg: "{{ refused.events | map(attribute='refusal') | list }}"
"""

RETURN = r"""
events:
  description: The events, newest first.
  returned: always
  type: list
  elements: dict
  sample: [{"id": 42, "at": "2026-01-01T10:00:00.000000+00:00", "rpc": "get-bootstrapping-data",
            "status": 401, "serial": "SN-0001", "authenticated": false,
            "refusal": "wrong-secret", "remote": "192.0.2.7", "duration_ms": 61.2,
            "profile": null, "image": null, "detail": null}]
refusals:
  description: How many of RV(events) were refused for each reason.
  returned: always
  type: dict
  sample: {"wrong-secret": 3}
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    client_for,
    new_module,
    run,
)


def main():
    module = new_module(
        dict(
            serial=dict(type="str"),
            refused=dict(type="bool", default=False),
            limit=dict(type="int", default=100),
        )
    )
    if not 1 <= module.params["limit"] <= 1000:
        module.fail_json(msg="limit must be between 1 and 1000")
    client = client_for(module)
    page = run(
        module,
        "cannot read the device events",
        client.device_events,
        serial=module.params["serial"],
        refused=module.params["refused"],
        limit=module.params["limit"],
    )
    events = page.get("events") or []
    refusals = {}
    for event in events:
        if event.get("refusal"):
            refusals[event["refusal"]] = refusals.get(event["refusal"], 0) + 1
    module.exit_json(changed=False, events=events, refusals=refusals)


if __name__ == "__main__":
    main()

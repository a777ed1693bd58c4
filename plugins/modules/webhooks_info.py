#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: webhooks_info
short_description: Where an sztp-server sends device events, and how their deliveries stand
version_added: 0.2.0
description:
  - Returns each webhook the server is configured with (its name, URL and event types; never
    its signing key) and its outbox counts (events waiting, delivered and given up in the last
    day), the oldest waiting and the newest failure.
  - Webhooks are set in the server's configuration file (see the server's documentation); a
    webhook removed from it is listed while the outbox keeps its entries.
author:
  - sztp developers (@sztp)
options: {}
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.attributes.info_module
"""

EXAMPLES = r"""
- name: Read how the webhooks stand
  sztp.bootstrap.webhooks_info:
  register: hooks
  delegate_to: localhost

- name: Fail when events wait
  ansible.builtin.assert:
    that: hooks.pending == 0
    fail_msg: "{{ hooks.webhooks | selectattr('pending') | map(attribute='last_error') | list }}"
"""

RETURN = r"""
webhooks:
  description: Each webhook, by name.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "ops", "url": "https://hooks.example.net/sztp",
            "events": ["device-failed", "device-complete"], "configured": true, "pending": 2,
            "delivered": 40, "given_up": 0, "oldest_pending_at": "2026-01-01T10:00:00Z",
            "last_delivered_at": "2026-01-01T09:59:00Z", "last_error": "HTTP 503"}]
pending:
  description: Events waiting for any webhook.
  returned: always
  type: int
  sample: 2
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    client_for,
    new_module,
    run,
)


def main():
    module = new_module({})
    client = client_for(module)
    found = run(module, "cannot read the webhooks", client.webhooks)
    webhooks = found.get("webhooks") or []
    pending = sum(hook.get("pending", 0) for hook in webhooks)
    module.exit_json(changed=False, webhooks=webhooks, pending=pending)


if __name__ == "__main__":
    main()

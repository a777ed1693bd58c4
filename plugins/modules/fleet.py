#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: fleet
short_description: Apply an sztpctl fleet file to an sztp-server
version_added: 0.1.0
description:
  - Makes the server's state match a fleet file, the same YAML document C(sztpctl apply -f)
    reads (see C(docs/fleet-file.md)), in one atomic request to the server's bulk
    desired-state endpoint.
  - "The file is read by the kit's own loader on the host the module runs on, so its
    C({file: path}) references (relative to the fleet file) and C({env: VARIABLE}) references
    resolve there, as they do for C(sztpctl). A malformed file fails with the loader's message,
    which names the file, the line and the field."
  - "C({env: VARIABLE}) reads the environment of the module: set it with the task's
    C(environment) keyword, for example from Ansible Vault."
  - Only the sections present in the file are managed; with O(prune=true), resources of those
    sections that the file does not list are deleted.
  - The C(dhcp) section of the file is not sent to the server; the C(sztp.bootstrap.kea) role
    reads it (its C(kea_fleet_file) variable).
  - The diff is a summary, one line per created or deleted resource, and for an updated one a
    line per changed field with its value before and after (long text by its size and a hash).
    A secret (password, activation code, private key) shows only as changed, never its value.
  - Check mode is the server's dry run of the whole file, so the file's resources may refer to
    each other freely. Unlike the single-resource modules, it does not assume that a resource
    the file refers to but does not list comes from an earlier task, since a fleet file is
    meant to hold the whole state; such a reference fails in check mode as in a real run.
author:
  - sztp developers (@sztp)
options:
  src:
    description:
      - Path of the fleet file on the host the module runs on (usually the controller, in a
        C(localhost) play). Prefer an absolute path, for example C({{ inventory_dir }}/fleet.yaml).
    type: path
    required: true
  prune:
    description:
      - Delete every resource on the server, in the sections the file has, that the file does
        not list (as C(sztpctl apply --prune)).
    type: bool
    default: false
  if_revision:
    description:
      - Apply only if the server's state is still at this revision (as C(sztpctl diff) or an
        earlier run's RV(revision) reported it); otherwise fail without changing anything.
    type: int
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
attributes:
  check_mode:
    details: The server plans the change (its dry run) and reports it without storing anything.
  diff_mode:
    support: full
    details: A summary of the plan, with the old and new values of the fields that change.
seealso:
  - module: sztp.bootstrap.devices
"""

EXAMPLES = r"""
- name: The fleet, exactly as the GitOps repository declares it
  sztp.bootstrap.fleet:
    src: "{{ inventory_dir }}/fleet.yaml"
    prune: true
    server: https://sztp.example.com:7443
    token_file: /etc/sztp/admin-token
    ca_bundle: /etc/sztp/tls-ca.pem

- name: What would change (check mode is the server's dry run)
  sztp.bootstrap.fleet:
    src: fleet.yaml
  check_mode: true
  diff: true
  register: plan

- name: Apply exactly that plan, unless someone changed the server meanwhile
  sztp.bootstrap.fleet:
    src: fleet.yaml
    if_revision: "{{ plan.revision }}"
"""

RETURN = r"""
changes:
  description:
    - Every change made (in check mode, planned), in the order the server applies them.
    - The C(fields) of an update are the names of the changed fields, never their values.
  returned: success
  type: list
  elements: dict
  sample:
    - {action: create, kind: device, name: SN-0003}
    - {action: update, kind: profile, name: dpu-day0, fields: [configuration]}
counts:
  description: Number of creates, updates and deletes.
  returned: success
  type: dict
  sample: {create: 1, update: 1, delete: 0}
summary:
  description: The counts in one line, with the number of resources the file lists.
  returned: success
  type: str
  sample: 1 to create, 1 to update, 0 to delete, 1004 listed
kinds:
  description: The kinds of resources the file manages (the sections it has).
  returned: success
  type: list
  elements: str
  sample: [trust-anchor, owner, image, profile, device]
revision:
  description: The server's state revision after the change (in check mode, the current one).
  returned: success
  type: int
  sample: 42
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    client_for,
    ensure_fleet,
    new_module,
)


def main():
    module = new_module(
        dict(
            src=dict(type="path", required=True),
            prune=dict(type="bool", default=False),
            if_revision=dict(type="int"),
        ),
    )
    if module.params["if_revision"] is not None and module.params["if_revision"] < 0:
        module.fail_json(msg="if_revision must be a revision number (0 or more)")
    result = ensure_fleet(
        module,
        client_for(module),
        module.params["src"],
        prune=module.params["prune"],
        if_revision=module.params["if_revision"],
    )
    module.exit_json(**result)


if __name__ == "__main__":
    main()

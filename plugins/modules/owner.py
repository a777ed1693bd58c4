#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: owner
short_description: Manage an owner (signing identity) of an sztp-server
version_added: 0.1.0
description:
  - Creates, updates or deletes one owner, that is the owner certificate chain sent to devices (and
    pinned by their ownership vouchers) and, optionally, the private key the server signs
    conveyed information with.
  - Leave O(private_key) out to keep the key off the server and serve bootstrapping data
    signed offline (see the O(sztp.bootstrap.device#module:presigned) option).
author:
  - sztp developers (@sztp)
options:
  name:
    description:
      - The owner's name; profiles use C(default) unless they name another.
    type: str
    required: true
  certificate_chain:
    description:
      - PEM owner certificate followed by its issuers. Required when the owner is created.
    type: str
  private_key:
    description:
      - PEM private key of the owner certificate; the server checks that they match.
      - Or a PKCS#11 URI (RFC 7512, for example C(pkcs11:token=owner;object=owner)) naming the
        key in a token the server reaches through its C(pkcs11_module) setting; the key then
        never leaves the token.
      - Left out, the stored key is kept; an empty string removes it.
      - Never shown in results, diffs or messages.
    type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.state
"""

EXAMPLES = r"""
- name: The owner identity the server signs with
  sztp.bootstrap.owner:
    name: default
    certificate_chain: "{{ lookup('ansible.builtin.file', 'pki/owner-chain.pem') }}"
    private_key: "{{ vault_owner_key }}"
"""

RETURN = r"""
owner:
  description:
    - The owner as stored (in check mode, as it would be); the key shows as C(<hidden>).
      Null when absent.
  returned: always
  type: dict
  contains:
    name:
      description: The owner's name.
      type: str
      returned: success
      sample: default
    spec:
      description: The stored spec.
      type: dict
      returned: success
      sample:
        certificate_chain: "-----BEGIN CERTIFICATE-----\n..."
        private_key: <hidden>
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    run_resource_module,
)


def main():
    run_resource_module(
        "owner",
        dict(
            certificate_chain=dict(type="str"),
            private_key=dict(type="str", no_log=True),
        ),
    )


if __name__ == "__main__":
    main()

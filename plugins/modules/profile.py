#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
module: profile
short_description: Manage an onboarding or redirect profile on an sztp-server
version_added: 0.1.0
description:
  - Creates, updates or deletes one profile on an sztp-server. A profile is what a device
    gets when it asks for bootstrapping data.
  - An C(onboarding) profile names a boot image, a configuration and pre/post-configuration
    scripts; a C(redirect) profile sends the device to other bootstrap servers.
  - Changing O(type) replaces the profile rather than merging with the stored one.
author:
  - sztp developers (@sztp)
options:
  name:
    description:
      - The profile's name (letters, digits, C(.), C(_), C(-)).
    type: str
    required: true
  type:
    description:
      - What the profile conveys. Required when the profile is created.
    type: str
    choices: [onboarding, redirect]
  signing:
    description:
      - V(required) signs the conveyed information with the owner key (and sends the owner
        certificate and the voucher); V(when-requested) signs only when the device asks.
      - The server's default is V(required).
    type: str
    choices: [required, when-requested]
  owner:
    description:
      - Name of the owner whose key signs the conveyed information (server default
        C(default)).
    type: str
  encoding:
    description:
      - Encoding of the conveyed information (server default V(json)).
    type: str
    choices: [json, xml]
  reporting_level:
    description:
      - Progress reporting level asked of the device.
    type: str
    choices: [minimal, verbose]
  image:
    description:
      - Name of the boot image (M(sztp.bootstrap.image)) of an onboarding profile.
    type: str
  configuration:
    description:
      - Configuration the device applies (onboarding profiles).
      - With O(templating=jinja2), a template rendered for each device. Read it with
        C(lookup('ansible.builtin.file', ...)) or mark it C(!unsafe), so that Ansible does
        not render it first.
    type: str
  configuration_handling:
    description:
      - How the device applies O(configuration) (server default V(merge)).
    type: str
    choices: [merge, replace]
  templating:
    description:
      - V(jinja2) makes O(configuration) and the scripts templates the server renders for
        each device in a sandbox, from its serial number, model, site, MAC address, DUID and
        variables; V(none) (the server's default) sends them as written.
      - The server refuses a profile whose template fails to render for any of its devices,
        naming the device and the line.
    type: str
    choices: [none, jinja2]
  vars:
    description:
      - Template variables every device of the profile gets (as C(vars.NAME)); a device's
        own O(sztp.bootstrap.device#module:vars) override them.
      - Names are letters, digits and C(_); values are any JSON data.
    type: dict
  ldevid_issuer:
    description:
      - The name of one of the server's C(ldevid_issuers). Each device of the profile is
        asked for a CSR for a new key (RFC 9646) and gets its certificate, an LDevID, in its
        configuration as C(ldevid.certificate) or C(ldevid.chain).
      - Needs O(templating=jinja2).
    type: str
  ldevid_keys:
    description:
      - Key algorithms a device may make its LDevID key with, in order of preference
        (server default V(ec-p256), V(ec-p384), V(rsa)); also V(ec-p521) and V(ed25519).
    type: list
    elements: str
  pre_configuration_script:
    description:
      - Script the device runs before applying the configuration (onboarding profiles).
    type: str
  post_configuration_script:
    description:
      - Script the device runs after applying the configuration (onboarding profiles).
    type: str
  bootstrap_servers:
    description:
      - Bootstrap servers a redirect profile sends the device to.
    type: list
    elements: dict
    suboptions:
      address:
        description: Host name or IP address of the bootstrap server.
        type: str
        required: true
      port:
        description: Port of the bootstrap server (server default 443).
        type: int
      trust_anchor:
        description: PEM CA certificate(s) the device uses to trust that server.
        type: str
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - sztp.bootstrap.connection
  - sztp.bootstrap.state
"""

EXAMPLES = r"""
- name: Day-0 onboarding profile for the DPUs
  sztp.bootstrap.profile:
    name: dpu-day0
    type: onboarding
    image: labos-2.1
    configuration: "{{ lookup('ansible.builtin.file', 'dpu-day0.cfg') }}"
    configuration_handling: replace
    post_configuration_script: "{{ lookup('ansible.builtin.file', 'post.sh') }}"

- name: One configuration template for every DPU, rendered per device by the server
  sztp.bootstrap.profile:
    name: dpu-templated
    type: onboarding
    templating: jinja2
    vars:
      domain: lab.example
    configuration: "{{ lookup('ansible.builtin.file', 'dpu-day0.cfg.j2') }}"

- name: Send devices to the site-B bootstrap server
  sztp.bootstrap.profile:
    name: redirect-to-site-b
    type: redirect
    signing: when-requested
    bootstrap_servers:
      - address: sztp.site-b.example.com
        port: 8443
        trust_anchor: "{{ lookup('ansible.builtin.file', 'site-b-ca.pem') }}"

- name: Remove a profile no device uses any more
  sztp.bootstrap.profile:
    name: old-profile
    state: absent
"""

RETURN = r"""
profile:
  description:
    - The profile as stored on the server (after the change; in check mode, as it would be).
      Null when the profile is absent.
  returned: always
  type: dict
  contains:
    name:
      description: The profile's name.
      type: str
      returned: success
      sample: dpu-day0
    spec:
      description: The stored spec, in the server's canonical form (defaults filled in).
      type: dict
      returned: success
      sample:
        type: onboarding
        signing: required
        owner: default
        encoding: json
        reporting_level: null
        image: labos-2.1
        templating: none
        vars: null
        ldevid_issuer: null
        ldevid_keys: null
        configuration: "hostname dpu\n"
        configuration_handling: replace
        pre_configuration_script: null
        post_configuration_script: null
"""

from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import (
    run_resource_module,
)

BOOTSTRAP_SERVER = dict(
    address=dict(type="str", required=True),
    port=dict(type="int"),
    trust_anchor=dict(type="str"),
)
FIELDS = (
    "type",
    "signing",
    "owner",
    "encoding",
    "reporting_level",
    "image",
    "templating",
    "vars",
    "ldevid_issuer",
    "ldevid_keys",
    "configuration",
    "configuration_handling",
    "pre_configuration_script",
    "post_configuration_script",
    "bootstrap_servers",
)


def profile_fields(module):
    """The spec, with unset suboptions of a bootstrap server left to the server's defaults
    (port 443)."""
    fields = dict((field, module.params[field]) for field in FIELDS)
    servers = fields["bootstrap_servers"]
    if servers is not None:
        fields["bootstrap_servers"] = [
            dict((key, value) for key, value in server.items() if value is not None)
            for server in servers
        ]
    return fields


def main():
    run_resource_module(
        "profile",
        dict(
            type=dict(type="str", choices=["onboarding", "redirect"]),
            signing=dict(type="str", choices=["required", "when-requested"]),
            owner=dict(type="str"),
            encoding=dict(type="str", choices=["json", "xml"]),
            reporting_level=dict(type="str", choices=["minimal", "verbose"]),
            image=dict(type="str"),
            templating=dict(type="str", choices=["none", "jinja2"]),
            vars=dict(type="dict"),
            ldevid_issuer=dict(type="str"),
            ldevid_keys=dict(type="list", elements="str", no_log=False),
            configuration=dict(type="str"),
            configuration_handling=dict(type="str", choices=["merge", "replace"]),
            pre_configuration_script=dict(type="str"),
            post_configuration_script=dict(type="str"),
            bootstrap_servers=dict(type="list", elements="dict", options=BOOTSTRAP_SERVER),
        ),
        spec_fields=profile_fields,
        reset_on=("type",),
    )


if __name__ == "__main__":
    main()

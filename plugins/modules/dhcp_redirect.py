#!/usr/bin/python
# Copyright: sztp developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: dhcp_redirect
short_description: Point devices at bootstrap servers with DHCP option 143/136 in Kea
version_added: 0.1.0
description:
  - Runs on the host of an ISC Kea DHCP server and makes sure the SZTP redirect option (DHCPv4
    option 143 or DHCPv6 option 136, RFC 8572 section 8) carries the given bootstrap-server URIs
    for one subnet or one host reservation in Kea's JSON configuration file.
  - >-
    The option payload comes from the sztp kit's codec and is written as raw hex,
    C({"code": 143, "csv-format": false, "data": "..."}) (code 136 under C(Dhcp6)). This form works
    on Kea 2.2, which has no definition for the option, and unchanged on Kea 2.6.
  - The candidate file is checked with C(kea-dhcp4 -t) or C(kea-dhcp6 -t) before it replaces the
    configuration file atomically; the file keeps its owner, group and mode.
  - >-
    Kea configuration files may contain comments (C(//), C(#), C(/* */)) and trailing commas, which
    this module understands when reading. B(When the module has to change the file, it writes
    plain JSON: comments and trailing commas are not preserved.) Use O(backup=true) to keep the
    original, or render the whole file from a template (the C(sztp.bootstrap.kea) role does).
    When nothing needs to change the file is left untouched, comments included.
  - Files that use Kea's C(<?include ...?>) directive are refused, since the scope could be
    defined in another file.
  - The module does not reload Kea unless O(reload_command) is given.
author:
  - sztp developers (@sztp)
requirements:
  - the C(sztp) Python package (the sztp kit, without extras) on the Kea host, for the option codec
  - C(kea-dhcp4) or C(kea-dhcp6) on the Kea host, to validate the configuration
options:
  uris:
    description:
      - Bootstrap-server URIs, in order of preference, each C(https://host[:port]) without a path.
      - Required when O(state=present).
      - A DHCPv4 payload is limited to 255 bytes (2 bytes of length per URI plus the URI).
    type: list
    elements: str
  family:
    description:
      - C(v4) manages option 143 in C(Dhcp4); C(v6) manages option 136 in C(Dhcp6).
    type: str
    choices: [v4, v6]
    default: v4
  encoding:
    description:
      - V(rfc8572) is the conformant encoding (2-byte length before each URI).
      - V(legacy-text) is a single URI as plain text, B(not) RFC 8572 conformant, for lab agents
        that expect it (OPI's sztp agent); strict devices ignore it.
    type: str
    choices: [rfc8572, legacy-text]
    default: rfc8572
  subnet:
    description:
      - The subnet, by prefix (for example V(192.0.2.0/24) or V(2001:db8:1::/64)), whose
        C(option-data) carries the option; subnets inside C(shared-networks) are found too.
      - With O(hw_address), O(client_id) or O(duid), the reservation is looked up (or created) in
        this subnet's C(reservations); without them the subnet itself is the scope.
      - The subnet must already exist in the file; this module does not create subnets.
    type: str
  hw_address:
    description:
      - Scope is the host reservation with this hardware (MAC) address.
      - Without O(subnet), the global C(reservations) list is used (Kea uses global reservations
        only when C(reservations-global) is enabled).
    type: str
  client_id:
    description:
      - Scope is the host reservation with this DHCPv4 client identifier (hex). DHCPv4 only.
    type: str
  duid:
    description:
      - Scope is the host reservation with this DUID (hex).
    type: str
  state:
    description:
      - V(present) makes sure the option carries exactly O(uris) in the scope; a missing
        reservation is created with just its identifier and the option.
      - V(absent) removes the option from the scope (the reservation itself stays).
    type: str
    choices: [present, absent]
    default: present
  config_file:
    description:
      - Kea's configuration file. Defaults to C(/etc/kea/kea-dhcp4.conf) or
        C(/etc/kea/kea-dhcp6.conf) according to O(family). It must exist.
    type: path
  validate:
    description:
      - Check the candidate file with O(validate_command) before installing it. When the
        validating program is missing the module fails, unless this is V(false), in which case it
        skips the check with a warning.
    type: bool
    default: true
  validate_command:
    description:
      - Command that checks a candidate file; C(%s) stands for the file's path.
      - Defaults to C(kea-dhcp4 -t %s) or C(kea-dhcp6 -t %s) according to O(family).
    type: str
  reload_command:
    description:
      - Command run after the file changed, for example
        C(systemctl reload kea-dhcp4-server) or a C(kea-shell) call sending C(config-reload).
      - Not run in check mode nor when nothing changed. By default Kea is not reloaded.
    type: str
  backup:
    description:
      - Keep a timestamped copy of the original file (with its comments) before replacing it.
    type: bool
    default: false
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
    details: In check mode the candidate is still validated when the validating program exists.
  diff_mode:
    support: full
    details: The diff shows the changed scope (the subnet or reservation) as JSON.
  platform:
    support: full
    platforms: posix
notes:
  - Kea's C(host_cmds) hook is not in Debian's Kea packages, so reservations are managed in the
    file and Kea has to reload it (O(reload_command)).
  - Comparison is by meaning, not text - hex case, colons in identifiers and the order of keys do
    not cause changes.
seealso:
  - name: RFC 8572 section 8
    description: The DHCP options that carry bootstrap-server URIs.
    link: https://www.rfc-editor.org/rfc/rfc8572#section-8
"""

EXAMPLES = r"""
- name: Redirect every device in the provisioning subnet to two bootstrap servers
  sztp.bootstrap.dhcp_redirect:
    subnet: 192.0.2.0/24
    uris:
      - https://sztp1.example.net
      - https://sztp2.example.net:8443
    backup: true
    reload_command: systemctl reload kea-dhcp4-server

- name: Redirect one DPU by MAC address (reservation in its subnet)
  sztp.bootstrap.dhcp_redirect:
    subnet: 192.0.2.0/24
    hw_address: "00:53:00:12:34:56"
    uris: [https://10.1.1.3:8080]

- name: DHCPv6, by DUID
  sztp.bootstrap.dhcp_redirect:
    family: v6
    subnet: 2001:db8:1::/64
    duid: "00:03:00:01:00:53:00:12:34:56"
    uris: ["https://[2001:db8::3]"]

- name: Stop redirecting the subnet
  sztp.bootstrap.dhcp_redirect:
    subnet: 192.0.2.0/24
    state: absent
"""

RETURN = r"""
option_data:
  description: The C(option-data) entry the scope carries (absent for O(state=absent)).
  returned: when O(state=present)
  type: dict
  sample:
    code: 143
    csv-format: false
    data: 001568747470733A2F2F31302E312E312E333A38303830
    always-send: true
scope:
  description: Where the option lives, in words.
  returned: always
  type: str
  sample: subnet4[192.0.2.0/24].reservations[hw-address=00:53:00:12:34:56]
config_file:
  description: The configuration file managed.
  returned: always
  type: str
  sample: /etc/kea/kea-dhcp4.conf
validated:
  description: Whether the candidate file was checked with O(validate_command).
  returned: always
  type: bool
comments_dropped:
  description: Whether rewriting the file dropped comments or trailing commas it had.
  returned: always
  type: bool
backup_file:
  description: The copy of the original file.
  returned: when O(backup=true) and the file changed
  type: str
reloaded:
  description: Whether O(reload_command) was run.
  returned: always
  type: bool
"""

import os
import shlex
import tempfile
import traceback

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.sztp.bootstrap.plugins.module_utils.kea_config import (
    DEFAULTS,
    KeaConfigError,
    apply_redirect,
    dump_config,
    load_kea_config,
    parse_network,
    scope_text,
)
from ansible_collections.sztp.bootstrap.plugins.module_utils.kit import kit_problem

KIT_IMPORT_ERROR = None
try:
    from sztp.errors import SztpError
    from sztp.protocol.dhcp import Family, OptionEncoding, render_kea_option_data
except ImportError:
    KIT_IMPORT_ERROR = traceback.format_exc()


def _command(module, template, path):
    argv = shlex.split(template)
    if not argv:
        module.fail_json(msg="validate_command is empty")
    if not any("%s" in arg for arg in argv):
        module.fail_json(msg="validate_command must contain %%s for the file: %r" % template)
    return [arg.replace("%s", path) for arg in argv]


def validate_candidate(module, text, config_file, warnings):
    """Run the validating command on a temporary copy; returns (validated, temp_path)."""
    params = module.params
    template = params["validate_command"] or DEFAULTS[params["family"]]["validate_command"]
    program = shlex.split(template)[0] if template.strip() else ""
    found = module.get_bin_path(program) if program else None
    if not params["validate"]:
        warnings.append(
            "validate is false: the new %s was NOT checked by Kea before being installed"
            % config_file
        )
        return False
    if found is None:
        if module.check_mode:
            warnings.append(
                "%s is not installed: check mode could not validate the candidate file" % program
            )
            return False
        module.fail_json(
            msg="%s is not installed, so the new configuration cannot be validated: install Kea "
            "(kea-dhcp4-server / kea-dhcp6-server) first, or set validate: false to skip the "
            "check" % program
        )
    return True


def write_temp(module, text, config_file):
    directory = os.path.dirname(os.path.abspath(config_file))
    fd, path = tempfile.mkstemp(
        prefix=".%s." % os.path.basename(config_file), suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
    except OSError as exc:
        module.fail_json(msg="cannot write a temporary file in %s: %s" % (directory, exc))
    module.add_cleanup_file(path)
    return path


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            uris=dict(type="list", elements="str"),
            family=dict(type="str", choices=["v4", "v6"], default="v4"),
            encoding=dict(type="str", choices=["rfc8572", "legacy-text"], default="rfc8572"),
            subnet=dict(type="str"),
            hw_address=dict(type="str"),
            client_id=dict(type="str"),
            duid=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            config_file=dict(type="path"),
            validate=dict(type="bool", default=True),
            validate_command=dict(type="str"),
            reload_command=dict(type="str"),
            backup=dict(type="bool", default=False),
        ),
        mutually_exclusive=[("hw_address", "client_id", "duid")],
        required_if=[("state", "present", ("uris",))],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    problem = kit_problem()
    if problem is not None:
        module.fail_json(msg=problem, exception=KIT_IMPORT_ERROR)

    params = dict(module.params)
    family = params["family"]
    spec = DEFAULTS[family]
    config_file = params["config_file"] or spec["config_file"]
    result = dict(
        changed=False,
        config_file=config_file,
        validated=False,
        comments_dropped=False,
        reloaded=False,
    )
    warnings = []

    if family == "v6" and params.get("client_id"):
        module.fail_json(msg="client_id identifies DHCPv4 reservations only; use duid for v6")
    if params.get("subnet"):
        network = parse_network(params["subnet"])
        if network is None or "/" not in params["subnet"]:
            module.fail_json(msg="subnet %r is not a prefix like 192.0.2.0/24" % params["subnet"])
        if network.version != (4 if family == "v4" else 6):
            module.fail_json(
                msg="subnet %s is not an IPv%s prefix (family %s)"
                % (params["subnet"], 4 if family == "v4" else 6, family)
            )
    if params["state"] == "present":
        try:
            params["option_data"] = render_kea_option_data(
                params["uris"], Family(family), OptionEncoding(params["encoding"])
            )
        except SztpError as exc:
            module.fail_json(msg="uris: %s" % exc)
        result["option_data"] = params["option_data"]

    try:
        with open(config_file) as handle:
            original = handle.read()
    except OSError as exc:
        module.fail_json(msg="cannot read %s: %s" % (config_file, exc.strerror or exc), **result)
    try:
        config, extras = load_kea_config(original)
        changed, scope_name, before, after = apply_redirect(config, params)
    except KeaConfigError as exc:
        module.fail_json(msg="%s: %s" % (config_file, exc), **result)
    result["scope"] = scope_name

    if changed:
        result["changed"] = True
        result["comments_dropped"] = extras
        if module._diff:
            result["diff"] = dict(
                before_header="%s: %s" % (config_file, scope_name),
                after_header="%s: %s" % (config_file, scope_name),
                before=scope_text(before),
                after=scope_text(after),
            )
        candidate = dump_config(config)
        must_validate = validate_candidate(module, candidate, config_file, warnings)
        if must_validate or not module.check_mode:
            temp_path = write_temp(module, candidate, config_file)
        if must_validate:
            template = params["validate_command"] or spec["validate_command"]
            rc, out, err = module.run_command(_command(module, template, temp_path))
            if rc != 0:
                module.fail_json(
                    msg="Kea refused the new configuration (%s exited %d); %s was not changed"
                    % (shlex.split(template)[0], rc, config_file),
                    stdout=out,
                    stderr=err,
                    **result,
                )
            result["validated"] = True
        if extras:
            warnings.append(
                "%s had comments or trailing commas; the rewritten file is plain JSON without "
                "them%s" % (config_file, "" if params["backup"] else " (backup: true keeps a copy)")
            )
        if not module.check_mode:
            if params["backup"]:
                result["backup_file"] = module.backup_local(config_file)
            module.atomic_move(temp_path, config_file)
            file_args = module.load_file_common_arguments(module.params, path=config_file)
            result["changed"] = module.set_fs_attributes_if_different(file_args, True)
            if params["reload_command"]:
                argv = shlex.split(params["reload_command"])
                rc, out, err = module.run_command(argv)
                if rc != 0:
                    module.fail_json(
                        msg="%s was updated but the reload command exited %d" % (config_file, rc),
                        stdout=out,
                        stderr=err,
                        **result,
                    )
                result["reloaded"] = True
    elif not module.check_mode:
        file_args = module.load_file_common_arguments(module.params, path=config_file)
        result["changed"] = module.set_fs_attributes_if_different(file_args, False)

    for warning in warnings:
        module.warn(warning)
    module.exit_json(**result)


def main():
    run_module()


if __name__ == "__main__":
    main()

# Copyright: sztp developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: kea_dhcp_from_fleet
short_description: A fleet file's dhcp section as Kea option-data per scope
version_added: 0.1.0
description:
  - Reads the C(dhcp) section of an sztpctl fleet file on the controller and returns, for one DHCP
    family, the SZTP redirect option (DHCPv4 option 143 or DHCPv6 option 136) of each scope as Kea
    C(option-data) entries - global, per subnet and per reservation - in the shape of Kea's
    C(Dhcp4) / C(Dhcp6) object.
  - The rendering is the kit's, as C(sztpctl dhcp render --format kea4|kea6) does it, with the
    same validation and encoding and errors naming the file, line and field.
  - The fleet file is loaded as C(sztpctl) loads it, so its C({file:}) and C({env:}) references
    must resolve on the controller even though only the C(dhcp) section is used.
  - A fleet file without a C(dhcp) section is an error; a section with nothing for the asked
    family (for example only IPv4 subnets when asking for V(6)) gives an empty result.
  - The result carries no subnet ids, pools or addresses. The C(sztp.bootstrap.kea) role merges
    it into the subnets and reservations it renders.
author:
  - sztp developers (@sztp)
options:
  _input:
    description:
      - Path of the fleet file on the controller.
    type: path
    required: true
  family:
    description:
      - The DHCP family, V(4) (option 143, scopes for C(Dhcp4)) or V(6) (option 136, C(Dhcp6)).
      - V(v4) and V(v6) are accepted too.
    type: raw
    default: 4
seealso:
  - plugin: sztp.bootstrap.sztp_redirect_option
    plugin_type: filter
    description: One option-data entry from a list of URIs.
extends_documentation_fragment:
  - sztp.bootstrap.controller
"""

EXAMPLES = r"""
- name: The fleet's redirect options for Kea's Dhcp4
  ansible.builtin.set_fact:
    fleet_dhcp4: "{{ 'fleet.yaml' | sztp.bootstrap.kea_dhcp_from_fleet(family=4) }}"
  # With
  #   dhcp:
  #     bootstrap_uris: [https://sztp.lab.example:8443]
  #     subnets: [{subnet: 192.0.2.0/24}]
  #     reservations: [{mac: "52:54:00:12:34:56", bootstrap_uris: [https://10.1.1.3:8080]}]
  # fleet_dhcp4 is
  #   option-data: [{code: 143, csv-format: false, data: "001E6874...", always-send: true}]
  #   subnet4: [{subnet: 192.0.2.0/24, option-data: [{code: 143, ...}]}]
  #   reservations: [{hw-address: "52:54:00:12:34:56", option-data: [{code: 143, ...}]}]

- name: Let the kea role take the redirect options from the fleet file
  ansible.builtin.include_role:
    name: sztp.bootstrap.kea
  vars:
    kea_fleet_file: "{{ playbook_dir }}/fleet.yaml"
"""

RETURN = r"""
_value:
  description:
    - Kea's C(Dhcp4) (or C(Dhcp6)) keys holding the redirect option; a key is present only when
      the section has a scope of that kind for the family.
  type: dict
  contains:
    option-data:
      description: The global scope (C(dhcp.bootstrap_uris)), one entry.
      type: list
      elements: dict
    subnet4:
      description:
        - Per subnet (C(dhcp.subnets)), C(subnet) (the prefix as the fleet file has it, normalised)
          and C(option-data). C(subnet6) for family 6.
      type: list
      elements: dict
    reservations:
      description:
        - Per client (C(dhcp.reservations)), one of C(hw-address), C(client-id) (DHCPv4) or C(duid)
          (DHCPv6) as lower-case colon-separated hex, and C(option-data).
      type: list
      elements: dict
  sample:
    option-data:
      - {code: 143, csv-format: false, data: 001E68747470733A2F2F7A7470, always-send: true}
    subnet4:
      - subnet: 192.0.2.0/24
        option-data:
          - {code: 143, csv-format: false, data: 001E68747470733A2F2F7A7470, always-send: true}
    reservations:
      - hw-address: "52:54:00:12:34:56"
        option-data:
          - {code: 143, csv-format: false, data: 001568747470733A2F2F31302E, always-send: true}
"""

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.sztp.bootstrap.plugins.filter.sztp_redirect_option import (
    parse_family,
    require_kit,
)

try:
    from sztp.errors import SztpError
    from sztp.state.dhcp_section import parse_dhcp_section, render_dhcp
    from sztp.state.fleet import load_fleet
except ImportError:
    pass  # require_kit reports it

FILTER_NAME = "sztp.bootstrap.kea_dhcp_from_fleet"


def kea_dhcp_from_fleet(fleet_file: str, family: Any = 4) -> dict[str, Any]:
    """The redirect option of every scope of the fleet's dhcp section, for Kea's Dhcp4/Dhcp6."""
    require_kit(FILTER_NAME)
    if not isinstance(fleet_file, str) or not fleet_file:
        raise AnsibleFilterError(
            "%s expects the path of a fleet file, got %r" % (FILTER_NAME, fleet_file)
        )
    chosen = parse_family(family, FILTER_NAME)
    try:
        fleet = load_fleet(Path(str(fleet_file)).expanduser())
        if fleet.dhcp is None:
            raise AnsibleFilterError(
                "%s: %s has no dhcp section to take the redirect options from"
                % (FILTER_NAME, fleet_file)
            )
        section = parse_dhcp_section(fleet)
        if not any(chosen in scope.families for scope in section.scopes):
            return {}
        rendered = json.loads(render_dhcp(fleet, "kea" + chosen.value[1], chosen))
    except SztpError as exc:
        raise AnsibleFilterError("%s: %s" % (FILTER_NAME, to_native(exc))) from None
    return rendered["Dhcp" + chosen.value[1]]


class FilterModule:
    """A fleet file's dhcp section as Kea option-data."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"kea_dhcp_from_fleet": kea_dhcp_from_fleet}

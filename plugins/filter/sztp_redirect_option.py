# Copyright: sztp developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: sztp_redirect_option
short_description: The Kea option-data entry for the SZTP redirect option (DHCP 143/136)
version_added: 0.1.0
description:
  - >-
    Encodes bootstrap-server URIs as the SZTP redirect option of RFC 8572 section 8 (DHCPv4
    option 143, DHCPv6 option 136) and returns it as one entry for a Kea C(option-data) list,
    C({"code": 143, "csv-format": false, "data": "<hex>", "always-send": true}).
  - The raw code and hex work on Kea 2.2, which has no definition for the option, and unchanged
    on Kea 2.6. Kea does not check the hex, so it only comes from the sztp kit's validating
    encoder; this filter adds no encoding of its own.
  - Runs on the controller, so the Kea host needs nothing but Kea. The C(sztp.bootstrap.kea)
    role renders its configuration with it.
  - Fails, naming the problem, on a URI that is not C(https://host[:port]), on an empty list, and
    on a DHCPv4 payload over 255 bytes (Kea 2.2 splits such an option, Kea 2.6 drops it).
author:
  - sztp developers (@sztp)
options:
  _input:
    description:
      - Bootstrap-server URIs in order of preference, each C(https://host[:port]) without a path.
    type: list
    elements: str
    required: true
  family:
    description:
      - The DHCP family, V(4) for option 143 (C(Dhcp4)) or V(6) for option 136 (C(Dhcp6)).
      - V(v4) and V(v6) are accepted too.
    type: raw
    default: 4
  encoding:
    description:
      - V(rfc8572) is the conformant encoding, a 2-byte big-endian length before each URI.
      - V(legacy-text) is one URI as plain text without a length, B(not) RFC 8572 conformant,
        for lab agents that expect it (OPI's sztp agent); strict devices ignore it. Never the
        default, ask for it explicitly.
    type: str
    choices: [rfc8572, legacy-text]
    default: rfc8572
seealso:
  - plugin: sztp.bootstrap.kea_dhcp_from_fleet
    plugin_type: filter
    description: The same entries for every scope of a fleet file's C(dhcp) section.
  - module: sztp.bootstrap.dhcp_redirect
    description: Sets the option in an existing Kea configuration file on the Kea host.
  - name: RFC 8572 section 8
    description: The DHCP options that carry bootstrap-server URIs.
    link: https://www.rfc-editor.org/rfc/rfc8572#section-8
extends_documentation_fragment:
  - sztp.bootstrap.controller
"""

EXAMPLES = r"""
- name: Option 143 for a subnet's option-data
  ansible.builtin.debug:
    msg: "{{ ['https://10.1.1.3:8080'] | sztp.bootstrap.sztp_redirect_option }}"
  # {"code": 143, "csv-format": false, "always-send": true,
  #  "data": "001568747470733A2F2F31302E312E312E333A38303830"}

- name: Option 136 for DHCPv6, two servers
  ansible.builtin.set_fact:
    sztp_option6: >-
      {{ ['https://[2001:db8::3]', 'https://sztp.example.net:8443']
         | sztp.bootstrap.sztp_redirect_option(family=6) }}

- name: The non-conformant plain-text form, for OPI's lab agent only
  ansible.builtin.set_fact:
    opi_option: >-
      {{ ['https://10.1.1.3:8080/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data']
         | sztp.bootstrap.sztp_redirect_option(encoding='legacy-text') }}
"""

RETURN = r"""
_value:
  description:
    - One Kea C(option-data) entry, the hex in upper case without separators.
    - C(always-send) makes Kea send the option to clients that do not request it (generic lab
      clients); RFC 8572 devices request it anyway.
  type: dict
  sample:
    code: 143
    csv-format: false
    data: 001568747470733A2F2F31302E312E312E333A38303830
    always-send: true
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.sztp.bootstrap.plugins.module_utils.kit import kit_problem

try:
    from sztp.errors import SztpError
    from sztp.protocol.dhcp import Family, OptionEncoding, render_kea_option_data
except ImportError:
    pass  # require_kit says so when a filter is used

FILTER_NAME = "sztp.bootstrap.sztp_redirect_option"
_FAMILIES = {"4": "v4", "v4": "v4", "6": "v6", "v6": "v6"}
_ENCODINGS = ("rfc8572", "legacy-text")


def require_kit(filter_name: str) -> None:
    """Fail with a plain instruction when no usable kit is importable on the controller."""
    problem = kit_problem()
    if problem is not None:
        raise AnsibleFilterError("%s: %s" % (filter_name, problem))


def parse_family(value: Any, filter_name: str) -> Family:
    """4, 6, '4', '6', 'v4' or 'v6' as the kit's Family."""
    name = _FAMILIES.get(str(value).strip().lower())
    if name is None:
        raise AnsibleFilterError(
            "%s: family must be 4 or 6 (or v4, v6), got %r" % (filter_name, value)
        )
    return Family(name)


def parse_encoding(value: Any, filter_name: str) -> OptionEncoding:
    if value not in _ENCODINGS:
        raise AnsibleFilterError(
            "%s: encoding must be one of %s, got %r" % (filter_name, ", ".join(_ENCODINGS), value)
        )
    return OptionEncoding(value)


def sztp_redirect_option(
    uris: Sequence[str], family: Any = 4, encoding: str = "rfc8572"
) -> dict[str, Any]:
    """The Kea option-data entry carrying `uris` as option 143 (family 4) or 136 (family 6)."""
    require_kit(FILTER_NAME)
    # A string is a sequence too: iterating it would encode each character as a URI.
    if isinstance(uris, (str, bytes, Mapping)) or not isinstance(uris, Sequence):
        raise AnsibleFilterError(
            "%s expects a list of URIs, got %s %r; write [%r]"
            % (FILTER_NAME, type(uris).__name__, uris, uris)
        )
    for uri in uris:
        if not isinstance(uri, str):
            raise AnsibleFilterError(
                "%s: every URI must be a string, got %s %r" % (FILTER_NAME, type(uri).__name__, uri)
            )
    chosen_family = parse_family(family, FILTER_NAME)
    chosen_encoding = parse_encoding(encoding, FILTER_NAME)
    try:
        # Plain str values: Ansible may hand over tagged or lazy string subclasses.
        return render_kea_option_data([str(uri) for uri in uris], chosen_family, chosen_encoding)
    except SztpError as exc:
        raise AnsibleFilterError(
            "%s (DHCP%s option %d): %s"
            % (FILTER_NAME, chosen_family.value, chosen_family.option_code, to_native(exc))
        ) from None


class FilterModule:
    """The SZTP redirect option as a Kea option-data entry."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"sztp_redirect_option": sztp_redirect_option}

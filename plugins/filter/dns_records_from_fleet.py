# Copyright: sztp developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: dns_records_from_fleet
short_description: A fleet file's dns section as zone-file records, an nsupdate script or mDNS records
version_added: 0.1.0
description:
  - Reads the C(dns) section of an sztpctl fleet file on the controller and returns the RFC 8572
    discovery records as text - SRV records at C(_sztp._tcp.<domain>) for the bootstrap servers
    and, per device, TXT records at C(<serial>._sztp.<domain>) carrying redirect information,
    signed by the owner of the device's profile with the device's voucher, or unsigned.
  - The rendering is the kit's, as C(sztpctl dns render) does it, with the same checks and errors
    naming the file, line and field. Signing reads the owner's PEM private key from the fleet file
    on the controller; a key in a PKCS#11 token cannot sign here (render unsigned records).
  - Each call signs again, so signed records differ from one run to the next; write them with
    C(ansible.builtin.copy) when the fleet changes, not on every run, to keep changes meaningful.
  - The text is marked unsafe, so Ansible never renders it as a template (the binary artifacts
    may hold C({{) by chance).
  - A fleet file without a C(dns) section is an error.
author:
  - sztp developers (@sztp)
options:
  _input:
    description:
      - Path of the fleet file on the controller.
    type: path
    required: true
  format:
    description:
      - V(zone) for master-file text to include in a zone, V(nsupdate) for an nsupdate script
        (one update per domain, each ending in C(send); the C(server), C(zone) and C(key) commands
        are yours to put first).
      - V(mdns) for the records file of C(sztp-mdns) (the server role's C(server_mdns_records)) -
        the records under C(local.), names relative to it, with the A/AAAA records of the
        C(.local) servers' C(addresses). A C(.local) server without addresses, or a device whose
        TXT records do not fit one mDNS message, is an error.
    type: str
    choices: [zone, nsupdate, mdns]
    default: zone
  relative:
    description:
      - For V(zone), an C($ORIGIN) line per domain and names relative to it, instead of fully
        qualified names.
    type: bool
    default: false
seealso:
  - plugin: sztp.bootstrap.kea_dhcp_from_fleet
    plugin_type: filter
    description: The fleet file's dhcp section for Kea.
extends_documentation_fragment:
  - sztp.bootstrap.controller
"""

EXAMPLES = r"""
# The zone sztp.example.net, delegated to this name server, holds only the SZTP records. The copy
# module shows the change in check mode and with --diff, and named-checkzone checks the new zone
# before it replaces the old one.
- name: The SZTP discovery zone, from the fleet file
  ansible.builtin.copy:
    dest: /var/lib/bind/sztp.example.net.zone
    content: "{{ sztp_zone_head ~ ('fleet.yaml' | sztp.bootstrap.dns_records_from_fleet) }}"
    mode: "0644"
    validate: named-checkzone -k fail -i local sztp.example.net %s
  vars:
    sztp_zone_head: |
      $TTL 300
      @ IN SOA ns1.example.net. hostmaster.example.net. {{ sztp_zone_serial }} 3600 600 86400 300
      @ IN NS ns1.example.net.
  notify: Reload the zone

- name: Or an update for a dynamic zone
  ansible.builtin.copy:
    dest: /etc/sztp/records.nsupdate
    content: "{{ 'fleet.yaml' | sztp.bootstrap.dns_records_from_fleet(format='nsupdate') }}"
    mode: "0600"

# For links without DNS: the server role installs sztp-mdns to answer with these records.
- name: The bootstrap server, answering mDNS queries too
  ansible.builtin.include_role:
    name: sztp.bootstrap.server
  vars:
    server_mdns_records: "{{ 'fleet.yaml' | sztp.bootstrap.dns_records_from_fleet(format='mdns') }}"
"""

RETURN = r"""
_value:
  description:
    - The records as text, one block per domain of the section, each after a comment line naming
      the domain (for V(mdns), one block under C(local.)). Characters outside printable ASCII are
      written as C(\DDD).
  type: str
  sample: |
    ; SZTP discovery records (RFC 8572 section 4.2) for sztp.example.net, from fleet.yaml
    _sztp._tcp.sztp.example.net. 300 IN SRV 0 10 8443 sztp1.example.net.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.text.converters import to_native
from ansible.utils.unsafe_proxy import wrap_var
from ansible_collections.sztp.bootstrap.plugins.filter.sztp_redirect_option import require_kit

try:
    from sztp.errors import SztpError
    from sztp.state.dns_section import FORMATS, MDNS_FORMAT, dns_records, render_dns, render_mdns
    from sztp.state.fleet import load_fleet
except ImportError:
    pass  # require_kit reports it

FILTER_NAME = "sztp.bootstrap.dns_records_from_fleet"


def dns_records_from_fleet(fleet_file: str, format: str = "zone", relative: bool = False) -> Any:
    """The fleet's dns section as zone-file text, an nsupdate script or mDNS records, marked
    unsafe."""
    require_kit(FILTER_NAME)
    if not isinstance(fleet_file, str) or not fleet_file:
        raise AnsibleFilterError(
            "%s expects the path of a fleet file, got %r" % (FILTER_NAME, fleet_file)
        )
    if format not in FORMATS:
        raise AnsibleFilterError(
            "%s: format must be one of %s, not %r" % (FILTER_NAME, ", ".join(FORMATS), format)
        )
    if not isinstance(relative, bool):
        raise AnsibleFilterError("%s: relative must be true or false" % FILTER_NAME)
    path = Path(str(fleet_file)).expanduser()
    try:
        fleet = load_fleet(path)
        if fleet.dns is None:
            raise AnsibleFilterError(
                "%s: %s has no dns section to take the records from" % (FILTER_NAME, fleet_file)
            )
        if format == MDNS_FORMAT:
            text = render_mdns(fleet, source=path.name)
        else:
            text = render_dns(dns_records(fleet), format, relative=relative, source=path.name)
    except SztpError as exc:
        raise AnsibleFilterError("%s: %s" % (FILTER_NAME, to_native(exc))) from None
    return wrap_var(text)


class FilterModule:
    """A fleet file's dns section as DNS records."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"dns_records_from_fleet": dns_records_from_fleet}

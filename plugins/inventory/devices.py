# Copyright: sztp developers
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: devices
short_description: Devices known to an sztp-server as Ansible hosts
version_added: 0.1.0
description:
  - Reads the devices of an sztp-server (RFC 8572 bootstrap server) through its admin API and
    makes each one a host named by its serial number.
  - Hosts are grouped by bootstrapping status (C(sztp_status_complete), C(sztp_status_failed),
    C(sztp_status_in_progress), C(sztp_status_rebooting), C(sztp_status_stalled),
    C(sztp_status_not_seen)), by profile (C(sztp_profile_<profile>)), by model
    (C(sztp_model_<model>)) and by site (C(sztp_site_<site>)); characters other than letters, digits and C(_) become C(_).
    Every host is also in the group C(sztp_devices), and a device that holds a current LDevID in
    the group C(sztp_ldevid).
  - Host variables - C(sztp_serial), C(sztp_profile), C(sztp_model), C(sztp_site), C(sztp_mac), C(sztp_duid),
    C(sztp_status), C(sztp_attempts), C(sztp_last_report) and C(sztp_ssh_host_keys), the SSH host
    keys the device sent with its C(bootstrap-complete) report as C(known_hosts) lines
    (C(<serial> <algorithm> <base64 key>)), so that a day-1 playbook can trust the device's keys
    before it first connects.
  - C(sztp_ldevid) is the device's current LDevID (RFC 9646), the newest certificate the server
    issued to it while that one is neither revoked nor expired, as a dict of
    C(serial_number) (lower-case hex), C(issuer) (the server's issuer that signed it),
    C(not_before) and C(not_after) (UTC, ISO 8601); null when the device holds none (a revoked
    newest certificate leaves it none, whatever it held before).
  - "Cost: one request per 2,000 devices: the server lists them with their status, last report
    and current LDevID, each page read on its own, so the time grows with the devices listed,
    not faster."
  - The configuration file must be named C(*.sztp.yml) or C(*.sztp.yaml).
author:
  - sztp developers (@sztp)
extends_documentation_fragment:
  - constructed
  - inventory_cache
  - sztp.bootstrap.controller
options:
  plugin:
    description: Marks this file as a configuration of this plugin.
    required: true
    type: str
    choices: [sztp.bootstrap.devices]
  server:
    description:
      - URL of the sztp-server admin API, for example C(https://sztp.example.net:7080).
    type: str
    required: true
    env:
      - name: SZTP_SERVER
  token:
    description:
      - API token (a C(read-only) token is enough). Prefer O(token_file) or the environment, or
        protect the value with Ansible Vault.
      - Takes precedence over O(token_file), as for the modules.
    type: str
    env:
      - name: SZTP_TOKEN
  token_file:
    description:
      - File holding the API token (surrounding whitespace is ignored); ignored when O(token)
        is set. An empty value is the same as none.
    type: str
    env:
      - name: SZTP_TOKEN_FILE
  ca_bundle:
    description:
      - PEM file of CA certificates that verify the server's TLS certificate. Without it (or
        when it is empty) the system trust store is used.
    type: str
    env:
      - name: SZTP_CA_BUNDLE
  validate_certs:
    description:
      - Whether to verify the server's TLS certificate. Only turn this off in a lab.
    type: bool
    default: true
    env:
      - name: SZTP_VALIDATE_CERTS
  timeout:
    description: Seconds to wait for each answer of the server.
    type: float
    default: 30
  statuses:
    description:
      - Only include devices with these statuses (default all of them). The server filters by
        a single status; with several, the plugin keeps them from the whole listing.
    type: list
    elements: str
    choices: [not-seen, in-progress, rebooting, complete, failed, stalled]
  profile:
    description: Only include devices assigned this profile (filtered by the server).
    type: str
  model:
    description: Only include devices of this model (filtered by the server).
    type: str
  site:
    description: Only include devices installed at this site (filtered by the server).
    type: str
  last_report:
    description:
      - Which devices get C(sztp_last_report), C(sztp_attempts) and C(sztp_ssh_host_keys).
      - V(all) every device that has reported; V(complete) only devices whose status is
        C(complete), enough for the SSH host keys; V(none) none.
    type: str
    choices: [all, complete, none]
    default: all
  host_addresses:
    description:
      - Management address of devices, by serial number, set as C(ansible_host).
      - "For a rule instead of a table use O(compose), for example
        C(ansible_host: sztp_last_report.source_address)."
    type: dict
    default: {}
  use_report_address:
    description:
      - Set C(ansible_host) to the source address of the device's last report (the address it
        used to reach the bootstrap server) when O(host_addresses) has none.
    type: bool
    default: false
  group_prefix:
    description: Prefix of the groups made by this plugin.
    type: str
    default: sztp_
notes:
  - Statuses come from separate requests, so a device that changes status while the inventory
    is read may be missing from this run (or shown with the status it reached first).
  - Every value this plugin sets comes from the server, and much of it from the devices
    themselves (a progress message, an SSH key algorithm), so all host variables are marked
    unsafe - Ansible never renders them as templates (a C({{ }}) in a device's message stays
    text) - and group names keep only letters, digits and C(_).
  - The server never sends secrets (the device's password hash is shown as C(<hidden>)); this
    plugin does not expose the device specification beyond the fields listed above.
seealso:
  - module: sztp.bootstrap.device_info
  - module: sztp.bootstrap.status_info
"""

EXAMPLES = r"""
# lab.sztp.yml -- ansible-inventory -i lab.sztp.yml --graph
plugin: sztp.bootstrap.devices
server: https://sztp.example.net:7080
token_file: ~/.config/sztp/read-only.token
ca_bundle: /etc/sztp/ca.pem

# Two more inventory files, each a file of its own (shown as comments: EXAMPLES is one YAML
# document).
#
# day1.sztp.yml -- only what day-1 needs: devices that finished bootstrapping, with their keys:
#
#   plugin: sztp.bootstrap.devices
#   statuses: [complete]
#   last_report: complete
#   compose:
#     ansible_host: sztp_last_report.source_address
#   keyed_groups:
#     - key: sztp_model
#       prefix: model
#   cache: true
#   cache_plugin: ansible.builtin.jsonfile
#   cache_connection: ~/.cache/sztp-inventory
#   cache_timeout: 300
#
# Then, in a day-1 playbook:
#
#   - name: Trust the host keys the devices reported at bootstrap-complete
#     ansible.builtin.known_hosts:
#       name: "{{ ansible_host }}"
#       key: "{{ item | regex_replace('^\\S+', ansible_host) }}"
#     loop: "{{ sztp_ssh_host_keys }}"
#     delegate_to: localhost
#
# ldevid.sztp.yml -- devices grouped by the issuer of the LDevID they hold (those holding none
# are in no such group); every device holding one is also in the group sztp_ldevid:
#
#   plugin: sztp.bootstrap.devices
#   keyed_groups:
#     - key: sztp_ldevid.issuer
#       prefix: ldevid_issuer
#
# Then, in a play on the group sztp_ldevid:
#
#   - name: Show the LDevID each device holds
#     ansible.builtin.debug:
#       msg: "LDevID {{ sztp_ldevid.serial_number }} valid until {{ sztp_ldevid.not_after }}"
"""

import base64
import binascii
import gc
import re
import struct
from contextlib import contextmanager
from pathlib import Path

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_native
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable
from ansible.utils.unsafe_proxy import wrap_var
from ansible_collections.sztp.bootstrap.plugins.module_utils.kit import kit_problem

try:
    from sztp.client import SztpClient
    from sztp.config import read_token_file
    from sztp.errors import SztpError
except ImportError:
    SztpClient = None
    SztpError = Exception

STATUSES = ("not-seen", "in-progress", "rebooting", "complete", "failed", "stalled")
# What sztp_ldevid holds of the listing's current LDevID (the kit's CURRENT_LDEVID_FIELDS).
LDEVID_FIELDS = ("serial_number", "issuer", "not_before", "not_after")
_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_ALGORITHM = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}")
_KNOWN_HOSTS_NAME_UNSAFE = re.compile(r"[\s,#]")


def unsafe(value):
    """`value` with every string in it (keys too, at any depth) marked unsafe.

    Everything the server sends may have come from a device (a progress message, an SSH key
    algorithm): Ansible must never render it as a template. Before ansible-core 2.19 this makes
    the strings `AnsibleUnsafeText`; from 2.19 on it makes sure they are not trusted as templates.
    """
    return wrap_var(value)


@contextmanager
def collector_paused():
    """Python's cyclic garbage collector off for the duration, unless it was off already.

    What the plugin makes while it reads the server and fills the inventory lives as long as
    the inventory: the collector's full passes over the ever-growing heap would free nothing,
    and over a large fleet they add up to as much as the work itself. The kit has the same
    helper (`sztp.collector.cyclic_gc_paused`); the plugin keeps its own because it
    fills the inventory from its cache without the kit installed.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def current_ldevid(listed):
    """The documented fields of the current LDevID a device is listed with, or None."""
    if not isinstance(listed, dict):
        return None
    return {field: listed.get(field) for field in LDEVID_FIELDS}


def group_name(prefix, kind, value):
    return "%s%s_%s" % (prefix, kind, _GROUP_UNSAFE.sub("_", str(value)))


def known_hosts_lines(serial, keys):
    """`<serial> <algorithm> <base64>` for each well-formed key; returns (lines, rejected).

    The key type is read from the key blob itself (RFC 4253 section 6.6) when it can be, as
    known_hosts wants (an `rsa-sha2-256` algorithm still has an `ssh-rsa` key). Keys that are
    not base64, or whose algorithm is not a plain token, are rejected: a device must not be able
    to inject other lines into a known_hosts file.
    """
    name = _KNOWN_HOSTS_NAME_UNSAFE.sub("_", serial)
    lines, rejected = [], 0
    for key in keys or []:
        algorithm = key.get("algorithm") if isinstance(key, dict) else None
        data = key.get("key_data") if isinstance(key, dict) else None
        try:
            blob = base64.b64decode(data or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            blob = b""
        if not blob or not isinstance(algorithm, str):
            rejected += 1
            continue
        key_type = _blob_key_type(blob) or algorithm
        if not _ALGORITHM.fullmatch(key_type):
            rejected += 1
            continue
        lines.append("%s %s %s" % (name, key_type, base64.b64encode(blob).decode("ascii")))
    return lines, rejected


def _blob_key_type(blob):
    if len(blob) < 4:
        return None
    (length,) = struct.unpack(">I", blob[:4])
    if not 0 < length <= 64 or len(blob) < 4 + length:
        return None
    try:
        return blob[4 : 4 + length].decode("ascii")
    except UnicodeDecodeError:
        return None


def _optional_path(value):
    """A path option given as text: None when unset or empty, else with ~ expanded."""
    return Path(value).expanduser() if value else None


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "sztp.bootstrap.devices"

    def verify_file(self, path):
        if not super().verify_file(path):
            return False
        if path.endswith((".sztp.yml", ".sztp.yaml")):
            return True
        self.display.vvv(
            "sztp.bootstrap.devices: %s does not end in .sztp.yml or .sztp.yaml" % path
        )
        return False

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)

        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        data = None
        if use_cache:
            try:
                data = self._cache[cache_key]
            except KeyError:
                update_cache = True
        with collector_paused():
            if data is None:
                data = self.fetch()
            if update_cache:
                self._cache[cache_key] = data
            self.populate(data)

    # ---- reading the server

    def _client(self):
        problem = kit_problem()
        if problem is not None:
            raise AnsibleError("sztp.bootstrap.devices: %s" % problem)
        token = self.get_option("token")
        # Strings, not paths: Ansible turns an empty path into the current directory, and AWX
        # sets its credential's variables even when an input is empty.
        token_file = _optional_path(self.get_option("token_file"))
        if not token and token_file:
            try:
                token = read_token_file(token_file)
            except SztpError as exc:
                raise AnsibleError("sztp.bootstrap.devices: %s" % exc) from None
        try:
            return SztpClient(
                self.get_option("server"),
                token or None,
                ca_bundle=_optional_path(self.get_option("ca_bundle")),
                verify=self.get_option("validate_certs"),
                timeout=self.get_option("timeout"),
            )
        except SztpError as exc:
            raise AnsibleError("sztp.bootstrap.devices: %s" % to_native(exc)) from None

    def fetch(self):
        """Everything the inventory needs, as plain JSON-able data (what the cache keeps)."""
        wanted = self.get_option("statuses") or list(STATUSES)
        filters = {field: self.get_option(field) for field in ("profile", "model", "site")}
        if len(wanted) == 1:
            filters["status"] = wanted[0]
        last_report = self.get_option("last_report")
        devices = []
        client = self._client()
        try:
            # One listing with each device's status and last report, a page per request.
            for item in (item for page in client.device_pages(**filters) for item in page):
                if item["status"] not in wanted:
                    continue
                spec = item.get("spec") or {}
                report = item.get("last_report")
                device = {
                    "serial": item["name"],
                    "status": item["status"],
                    "profile": spec.get("profile"),
                    "model": spec.get("model"),
                    "site": spec.get("site"),
                    "mac": spec.get("mac"),
                    "duid": spec.get("duid"),
                    "ldevid": current_ldevid(item.get("ldevid")),
                }
                keep_report = last_report == "all" or (
                    last_report == "complete" and item["status"] == "complete"
                )
                if report is not None and keep_report:
                    device["attempts"] = report.get("attempt")
                    device["last_report"] = report
                devices.append(device)
        except SztpError as exc:
            raise AnsibleError("sztp.bootstrap.devices: %s" % to_native(exc)) from None
        finally:
            client.close()
        # In name order: the server's pages are.
        return {"devices": devices}

    # ---- building the inventory

    def populate(self, data):
        prefix = self.get_option("group_prefix")
        addresses = self.get_option("host_addresses") or {}
        use_report_address = self.get_option("use_report_address")
        strict = self.get_option("strict")
        compose = self.get_option("compose")
        groups = self.get_option("groups")
        keyed_groups = self.get_option("keyed_groups")
        # Without them, no host's variables need be gathered for templates.
        constructed = bool(compose or groups or keyed_groups)
        all_group = self.inventory.add_group(prefix + "devices")
        for device in data.get("devices", []):
            serial = device["serial"]
            host = self.inventory.add_host(serial, group=all_group)
            report = device.get("last_report")
            keys, rejected = [], 0
            if report and report.get("progress_type") == "bootstrap-complete":
                keys, rejected = known_hosts_lines(serial, report.get("ssh_host_keys"))
            if rejected:
                self.display.warning(
                    "sztp.bootstrap.devices: ignored %d malformed SSH host key(s) reported by %s"
                    % (rejected, serial)
                )
            variables = unsafe(
                {
                    "sztp_serial": serial,
                    "sztp_profile": device.get("profile"),
                    "sztp_model": device.get("model"),
                    "sztp_site": device.get("site"),
                    "sztp_mac": device.get("mac"),
                    "sztp_duid": device.get("duid"),
                    "sztp_status": device["status"],
                    "sztp_attempts": device.get("attempts"),
                    "sztp_last_report": report,
                    "sztp_ssh_host_keys": keys,
                    "sztp_ldevid": device.get("ldevid"),
                }
            )
            for name, value in variables.items():
                self.inventory.set_variable(host, name, value)
            address = addresses.get(serial)
            if address is None and use_report_address and report:
                address = report.get("source_address")
            if address:
                self.inventory.set_variable(host, "ansible_host", unsafe(address))

            self.inventory.add_child(
                self.inventory.add_group(group_name(prefix, "status", device["status"])), host
            )
            for kind in ("profile", "model", "site"):
                if device.get(kind):
                    group = self.inventory.add_group(group_name(prefix, kind, device[kind]))
                    self.inventory.add_child(group, host)
            if device.get("ldevid"):
                self.inventory.add_child(self.inventory.add_group(prefix + "ldevid"), host)

            if constructed:
                hostvars = self.inventory.get_host(host).get_vars()
                self._set_composite_vars(compose, hostvars, host, strict=strict)
                self._add_host_to_composed_groups(groups, hostvars, host, strict=strict)
                self._add_host_to_keyed_groups(keyed_groups, hostvars, host, strict=strict)

"""The sztp.bootstrap.devices inventory plugin against a strict fake of the admin API client."""

from __future__ import annotations

import base64
import struct
import sys

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible_collections.sztp.bootstrap.plugins.inventory import devices as plugin_module

from sztp.errors import ServerUnreachable

TOKEN = "inv-s3cr3t-token"
PLUGIN = "sztp.bootstrap.devices"


def new_plugin():
    """The plugin as Ansible loads it, with its option definitions (see conftest.py)."""
    plugin = inventory_loader.get(PLUGIN)
    assert plugin is not None, "the inventory plugin cannot be loaded"
    assert sys.modules[type(plugin).__module__] is plugin_module
    return plugin


def ssh_key(key_type, body=b"\x00" * 32):
    blob = (
        struct.pack(">I", len(key_type)) + key_type.encode() + struct.pack(">I", len(body)) + body
    )
    return base64.b64encode(blob).decode()


ED25519 = ssh_key("ssh-ed25519")
RSA = ssh_key("ssh-rsa", b"\x01" * 64)


def report(serial, progress_type, address, keys=()):
    return {
        "serial": serial,
        "received_at": "2026-01-01T10:00:00Z",
        "progress_type": progress_type,
        "message": None,
        "source_address": address,
        "attempt": 1,
        "ssh_host_keys": list(keys),
    }


FLEET = {
    "SN-1": (
        {
            "profile": "dpu-day0",
            "model": "DPU-LAB-1",
            "mac": "52:54:00:00:00:01",
            "password_hash": "<hidden>",
        },
        "complete",
        report(
            "SN-1",
            "bootstrap-complete",
            "192.0.2.11",
            [
                {"algorithm": "ssh-ed25519", "key_data": ED25519},
                {"algorithm": "rsa-sha2-256", "key_data": RSA},
            ],
        ),
    ),
    "SN-2": (
        {"profile": "dpu-day0", "model": "DPU-LAB-2"},
        "failed",
        report("SN-2", "boot-image-error", "192.0.2.12"),
    ),
    "SN-3": ({"profile": "switch", "model": None}, "not-seen", None),
    "SN 4/x": (
        {"profile": None, "model": "DPU LAB.3"},
        "in-progress",
        report("SN 4/x", "config-initiated", "192.0.2.14"),
    ),
}


class UnexpectedCall(AssertionError):
    pass


class FakeClient:
    """Answers like SztpClient does; any other method fails the test."""

    def __init__(self, fleet):
        self.fleet = fleet
        self.calls = []
        self.connection = None
        self.closed = False
        self.failures = []  # raised by the next list call

    def __call__(self, server, token, **kwargs):
        self.connection = {"server": server, "token": token, **kwargs}
        return self

    def __getattr__(self, name):
        raise UnexpectedCall("the plugin called SztpClient.%s" % name)

    def devices_with_status(self, **filters):
        self.calls.append(("devices_with_status", dict(filters)))
        for error in self.failures:
            raise error
        assert set(filters) <= {"status", "profile", "model"}
        items = []
        for serial, (spec, status, last) in self.fleet.items():
            wanted = {"status": status, "profile": spec.get("profile"), "model": spec.get("model")}
            if all(value is None or wanted[key] == value for key, value in filters.items()):
                items.append(
                    {
                        "name": serial,
                        "spec": spec,
                        "revision": 3,
                        "created_at": "t",
                        "updated_at": "t",
                        "status": status,
                        "last_report": last,
                    }
                )
        return items

    def close(self):
        self.closed = True


@pytest.fixture
def fake(monkeypatch):
    client = FakeClient(FLEET)
    monkeypatch.setattr(plugin_module, "SztpClient", client)
    for variable in (
        "SZTP_SERVER",
        "SZTP_TOKEN",
        "SZTP_TOKEN_FILE",
        "SZTP_CA_BUNDLE",
        "SZTP_VALIDATE_CERTS",
    ):
        monkeypatch.delenv(variable, raising=False)
    return client


@pytest.fixture
def load(tmp_path):
    def load_inventory(config, name="lab.sztp.yml", cache=False):
        path = tmp_path / name
        path.write_text(yaml.safe_dump({"plugin": "sztp.bootstrap.devices", **config}))
        inventory = InventoryData()
        plugin = new_plugin()
        assert plugin.verify_file(str(path))
        plugin.parse(inventory, DataLoader(), str(path), cache=cache)
        if config.get("cache"):
            plugin.update_cache_if_changed()  # as the InventoryManager does after parse
        return inventory

    return load_inventory


BASE = {"server": "https://sztp.example.test:8443", "token": TOKEN}


def hostvars(inventory, host):
    return inventory.get_host(host).get_vars()


def members(inventory, group):
    return sorted(host.name for host in inventory.groups[group].get_hosts())


def test_hosts_groups_and_variables(fake, load):
    inventory = load(BASE)
    assert sorted(inventory.hosts) == ["SN 4/x", "SN-1", "SN-2", "SN-3"]
    assert members(inventory, "sztp_devices") == ["SN 4/x", "SN-1", "SN-2", "SN-3"]
    assert members(inventory, "sztp_status_complete") == ["SN-1"]
    assert members(inventory, "sztp_status_failed") == ["SN-2"]
    assert members(inventory, "sztp_status_not_seen") == ["SN-3"]
    assert members(inventory, "sztp_status_in_progress") == ["SN 4/x"]
    assert members(inventory, "sztp_profile_dpu_day0") == ["SN-1", "SN-2"]
    assert members(inventory, "sztp_model_DPU_LAB_3") == ["SN 4/x"]
    one = hostvars(inventory, "SN-1")
    assert one["sztp_serial"] == "SN-1"
    assert one["sztp_profile"] == "dpu-day0"
    assert one["sztp_model"] == "DPU-LAB-1"
    assert one["sztp_mac"] == "52:54:00:00:00:01"
    assert one["sztp_status"] == "complete"
    assert one["sztp_attempts"] == 1
    assert one["sztp_last_report"]["source_address"] == "192.0.2.11"
    # The key type comes from the key blob: known_hosts wants ssh-rsa, not rsa-sha2-256.
    assert one["sztp_ssh_host_keys"] == ["SN-1 ssh-ed25519 " + ED25519, "SN-1 ssh-rsa " + RSA]
    assert "ansible_host" not in one
    assert not any("password" in key for key in one)
    assert hostvars(inventory, "SN-2")["sztp_ssh_host_keys"] == []
    assert hostvars(inventory, "SN-3")["sztp_last_report"] is None
    # The client got the connection options and was closed.
    assert fake.connection["token"] == TOKEN
    assert fake.connection["verify"] is True
    assert fake.closed


def test_one_request_whatever_the_fleet_size(fake, load):
    load(BASE)
    assert fake.calls == [("devices_with_status", {"profile": None, "model": None})]


def test_last_report_complete_and_none_choose_the_devices_with_reports(fake, load):
    inventory = load({**BASE, "last_report": "complete"})
    assert hostvars(inventory, "SN-1")["sztp_last_report"]["progress_type"] == "bootstrap-complete"
    assert hostvars(inventory, "SN-2")["sztp_last_report"] is None
    assert hostvars(inventory, "SN-2")["sztp_attempts"] is None
    inventory = load({**BASE, "last_report": "none"})
    assert hostvars(inventory, "SN-1")["sztp_ssh_host_keys"] == []
    assert hostvars(inventory, "SN-1")["sztp_last_report"] is None
    assert len(fake.calls) == 2


def test_filters_go_to_the_server(fake, load):
    inventory = load({**BASE, "statuses": ["complete", "failed"], "profile": "dpu-day0"})
    assert sorted(inventory.hosts) == ["SN-1", "SN-2"]
    assert fake.calls[-1] == ("devices_with_status", {"profile": "dpu-day0", "model": None})
    inventory = load({**BASE, "statuses": ["failed"]})
    assert sorted(inventory.hosts) == ["SN-2"]
    assert fake.calls[-1] == (
        "devices_with_status",
        {"profile": None, "model": None, "status": "failed"},
    )


def test_addresses_compose_and_constructed_groups(fake, load):
    inventory = load(
        {
            **BASE,
            "host_addresses": {"SN-2": "10.0.0.2"},
            "use_report_address": True,
            "compose": {"day1_ready": "sztp_status == 'complete'"},
            "groups": {"ready": "day1_ready"},
            "keyed_groups": [{"key": "sztp_model", "prefix": "hw"}],
        }
    )
    assert hostvars(inventory, "SN-1")["ansible_host"] == "192.0.2.11"
    assert hostvars(inventory, "SN-2")["ansible_host"] == "10.0.0.2"
    assert "ansible_host" not in hostvars(inventory, "SN-3")
    assert members(inventory, "ready") == ["SN-1"]
    assert members(inventory, "hw_DPU_LAB_1") == ["SN-1"]


def test_malformed_or_hostile_keys_are_dropped(fake, load, monkeypatch):
    fleet = dict(FLEET)
    fleet["SN-1"] = (
        FLEET["SN-1"][0],
        "complete",
        report(
            "SN-1",
            "bootstrap-complete",
            None,
            [
                {"algorithm": "ssh-ed25519", "key_data": "not base64!"},
                {
                    "algorithm": "x\nevil.example ssh-rsa AAAA",
                    "key_data": base64.b64encode(b"xx").decode(),
                },
                {"algorithm": "ssh-ed25519", "key_data": ED25519},
            ],
        ),
    )
    fake.fleet = fleet
    inventory = load(BASE)
    assert hostvars(inventory, "SN-1")["sztp_ssh_host_keys"] == ["SN-1 ssh-ed25519 " + ED25519]


def test_known_hosts_name_is_one_token():
    lines, rejected = plugin_module.known_hosts_lines(
        "SN 4/x", [{"algorithm": "ssh-ed25519", "key_data": ED25519}]
    )
    assert lines == ["SN_4/x ssh-ed25519 " + ED25519] and rejected == 0


def test_token_file_and_environment(fake, load, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("SZTP_SERVER", "https://env.example.test")
    load({"token_file": str(token_file), "validate_certs": False})
    assert fake.connection["token"] == TOKEN
    assert fake.connection["verify"] is False
    assert fake.connection.get("ca_bundle") is None


def test_server_errors_become_one_line_without_the_token(fake, load):
    fake.failures.append(ServerUnreachable("cannot reach https://sztp.example.test:8443: refused"))
    with pytest.raises(AnsibleError) as raised:
        load(BASE)
    assert "cannot reach" in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert fake.closed


def test_unreadable_token_file(fake, load, tmp_path):
    with pytest.raises(AnsibleError, match="cannot read token file"):
        load({"server": BASE["server"], "token_file": str(tmp_path / "missing")})


def test_only_sztp_yml_files_are_claimed(tmp_path):
    plugin = new_plugin()
    for name, claimed in (("a.sztp.yml", True), ("a.sztp.yaml", True), ("a.yml", False)):
        path = tmp_path / name
        path.write_text("plugin: sztp.bootstrap.devices\n")
        assert plugin.verify_file(str(path)) is claimed


def test_cache_answers_without_the_server(fake, load, tmp_path):
    config = {
        **BASE,
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "cache"),
    }
    first = load(config, cache=False)  # refresh: reads the server and fills the cache
    assert fake.calls
    fake.calls.clear()
    fake.failures.append(UnexpectedCall("the cache should have answered"))
    second = load(config, cache=True)
    assert fake.calls == []
    assert sorted(second.hosts) == sorted(first.hosts)
    assert (
        hostvars(second, "SN-1")["sztp_ssh_host_keys"]
        == hostvars(first, "SN-1")["sztp_ssh_host_keys"]
    )


# ---- template injection: what devices report must never be rendered on the controller

try:  # ansible-core 2.19 and later (data tagging): a string is a template only if trusted
    from ansible.template import is_trusted_as_template, trust_as_template
except ImportError:  # ansible-core 2.16 to 2.18: a string is a template unless marked unsafe
    from ansible.utils.unsafe_proxy import AnsibleUnsafe

    def is_unsafe_text(value):
        return isinstance(value, AnsibleUnsafe)

    def as_template(text):
        return text

else:

    def is_unsafe_text(value):
        return not is_trusted_as_template(value)

    def as_template(text):
        return trust_as_template(text)


INJECTION = "{{ 6 * 7 }}{{ lookup('ansible.builtin.env', 'HOME') }}"


def not_unsafe(value, path="value"):
    """Paths of the strings (keys included) in a structure that Ansible would render."""
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            found += not_unsafe(key, "%s key %r" % (path, key))
            found += not_unsafe(item, "%s[%r]" % (path, key))
        return found
    if isinstance(value, (list, tuple, set)):
        return [
            bad
            for index, item in enumerate(value)
            for bad in not_unsafe(item, "%s[%d]" % (path, index))
        ]
    if isinstance(value, (str, bytes)) and not is_unsafe_text(value):
        return [path]
    return []


@pytest.fixture
def hostile(fake):
    """A fleet whose devices report (and were registered with) Jinja expressions."""
    fleet = dict(FLEET)
    evil = report(
        "SN-1",
        "bootstrap-complete",
        "192.0.2.11",
        [
            {"algorithm": "ssh-ed25519", "key_data": ED25519},
            {"algorithm": INJECTION, "key_data": ED25519},
        ],
    )
    evil["message"] = INJECTION
    evil["trust_anchor_certs"] = [INJECTION]
    evil["nested"] = {"list": [{"deep": INJECTION}], INJECTION: "key"}
    fleet["SN-1"] = (
        {"profile": "dpu-{{ 6 * 7 }}", "model": "{{ 6 * 7 }}", "mac": INJECTION},
        "complete",
        evil,
    )
    fake.fleet = fleet
    return fake


@pytest.mark.parametrize("cached", [False, True])
def test_every_variable_from_the_server_is_unsafe(hostile, load, tmp_path, cached):
    config = {**BASE, "use_report_address": True}
    if cached:
        config.update(
            cache=True,
            cache_plugin="ansible.builtin.jsonfile",
            cache_connection=str(tmp_path / "cache"),
        )
        load(config, cache=False)
    inventory = load(config, cache=cached)
    for host in inventory.hosts:
        variables = hostvars(inventory, host)
        # inventory_*, group_names: Ansible's own; the names of the variables are the plugin's.
        ours = {
            name: value
            for name, value in variables.items()
            if not name.startswith("inventory_") and name != "group_names"
        }
        assert set(ours) >= {"sztp_serial", "sztp_last_report", "sztp_ssh_host_keys"}
        assert [bad for name, value in ours.items() for bad in not_unsafe(value, name)] == [], host
    one = hostvars(inventory, "SN-1")
    assert one["sztp_last_report"]["message"] == INJECTION
    assert one["sztp_last_report"]["nested"]["list"][0]["deep"] == INJECTION
    assert one["ansible_host"] == "192.0.2.11"


def test_reported_expressions_are_not_rendered(hostile, load):
    """What a play does with the variables: the device's text comes out as text."""
    from ansible.template import Templar

    inventory = load({**BASE, "compose": {"shown": "sztp_last_report.message"}})
    variables = hostvars(inventory, "SN-1")
    templar = Templar(loader=DataLoader(), variables=variables)
    for expression, expected in (
        ("{{ sztp_last_report.message }}", INJECTION),
        ("{{ sztp_last_report.nested.list[0].deep }}", INJECTION),
        ("{{ sztp_model }}", "{{ 6 * 7 }}"),
        ("{{ shown }}", INJECTION),
    ):
        assert templar.template(as_template(expression)) == expected, expression


def test_group_names_from_the_server_are_sanitised(hostile, load):
    inventory = load(BASE)
    assert members(inventory, "sztp_model____6___7___") == ["SN-1"]
    assert members(inventory, "sztp_profile_dpu____6___7___") == ["SN-1"]
    assert all(
        not set(name) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
        for name in inventory.groups
    )

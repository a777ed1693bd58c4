"""The sztp.bootstrap.devices inventory plugin against the real sztp-server admin API, served
in-process (../conftest.py): the fleet is registered through the API and its progress reports
stored as devices would send them, so each device's status and listing are the server's own."""

from __future__ import annotations

import base64
import gc
import socket
import struct
import sys
from datetime import datetime, timedelta

import pytest
import yaml
from ansible.errors import AnsibleError
from ansible.inventory.data import InventoryData
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import inventory_loader
from ansible_collections.sztp.bootstrap.plugins.inventory import devices as plugin_module

from sztp.client import SztpClient
from sztp.state.model import DEVICE
from sztp_server.store import Change, open_store

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
PASSWORD = "correct horse battery"

# SN-1 bootstrapped (complete), SN-2 failed, SN-3 never seen, "SN 4/x" still in progress.
FLEET = {
    "profile": {
        # signed only when a device asks, so the server needs no owner to accept them
        "dpu-day0": {"type": "onboarding", "signing": "when-requested"},
        "switch": {"type": "onboarding", "signing": "when-requested"},
    },
    "device": {
        "SN-1": {
            "profile": "dpu-day0",
            "model": "DPU-LAB-1",
            "site": "fra 1",
            "mac": "52:54:00:00:00:01",
            "password": PASSWORD,
        },
        "SN-2": {"profile": "dpu-day0", "model": "DPU-LAB-2", "site": "fra 1"},
        "SN-3": {"profile": "switch"},
        "SN 4/x": {"model": "DPU LAB.3"},
    },
}


@pytest.fixture
def fleet(admin_server):
    """FLEET on the server, with the reports that give each device its status there."""
    admin_server.seed(FLEET)
    started = timedelta(minutes=5)
    for serial in ("SN-1", "SN-2", "SN 4/x"):
        admin_server.report(serial, "bootstrap-initiated", ago=started)
    admin_server.report(
        "SN-1",
        "bootstrap-complete",
        source_address="192.0.2.11",
        ssh_host_keys=[("ssh-ed25519", ED25519), ("rsa-sha2-256", RSA)],
    )
    admin_server.report("SN-2", "boot-image-error", source_address="192.0.2.12")
    admin_server.report("SN 4/x", "config-initiated", source_address="192.0.2.14")
    return admin_server


class UnexpectedCall(AssertionError):
    pass


class Recorder:
    """`SztpClient` as the plugin uses it: how the plugin built it, each listing it asked for
    and whether it closed it are recorded; a real client built the same way does the work."""

    def __init__(self):
        self.connection = None
        self.calls = []
        self.pages = 0
        self.closed = False
        self.client = None

    def __call__(self, server, token, **kwargs):
        self.connection = {"server": server, "token": token, **kwargs}
        self.client = SztpClient(server, token, **kwargs)
        self.closed = False
        return self

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise UnexpectedCall("the plugin called SztpClient.%s" % name)

    def device_pages(self, **filters):
        self.calls.append(("device_pages", dict(filters)))
        for page in self.client.device_pages(**filters):
            self.pages += 1
            yield page

    def close(self):
        self.closed = True
        self.client.close()


@pytest.fixture
def recorder(monkeypatch):
    client = Recorder()
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


@pytest.fixture
def base(fleet):
    """The plugin's connection options for the server holding FLEET."""
    return {"server": fleet.url, "token": fleet.token}


@pytest.fixture
def unreachable():
    """A loopback URL where nothing listens: the port is bound but never listened on, so a
    connection is refused at once."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield "http://127.0.0.1:%d" % bound.getsockname()[1]


def hostvars(inventory, host):
    return inventory.get_host(host).get_vars()


def members(inventory, group):
    return sorted(host.name for host in inventory.groups[group].get_hosts())


def test_hosts_groups_and_variables(recorder, load, base):
    inventory = load(base)
    assert sorted(inventory.hosts) == ["SN 4/x", "SN-1", "SN-2", "SN-3"]
    assert members(inventory, "sztp_devices") == ["SN 4/x", "SN-1", "SN-2", "SN-3"]
    assert members(inventory, "sztp_status_complete") == ["SN-1"]
    assert members(inventory, "sztp_status_failed") == ["SN-2"]
    assert members(inventory, "sztp_status_not_seen") == ["SN-3"]
    assert members(inventory, "sztp_status_in_progress") == ["SN 4/x"]
    assert members(inventory, "sztp_profile_dpu_day0") == ["SN-1", "SN-2"]
    assert members(inventory, "sztp_model_DPU_LAB_3") == ["SN 4/x"]
    assert members(inventory, "sztp_site_fra_1") == ["SN-1", "SN-2"]
    one = hostvars(inventory, "SN-1")
    assert one["sztp_serial"] == "SN-1"
    assert one["sztp_profile"] == "dpu-day0"
    assert one["sztp_model"] == "DPU-LAB-1"
    assert one["sztp_site"] == "fra 1"
    assert one["sztp_mac"] == "52:54:00:00:00:01"
    assert one["sztp_status"] == "complete"
    assert one["sztp_attempts"] == 1
    assert one["sztp_last_report"]["source_address"] == "192.0.2.11"
    # The key type comes from the key blob: known_hosts wants ssh-rsa, not rsa-sha2-256.
    assert one["sztp_ssh_host_keys"] == ["SN-1 ssh-ed25519 " + ED25519, "SN-1 ssh-rsa " + RSA]
    assert "ansible_host" not in one
    # The server lists the password's hash as "<hidden>"; the plugin passes neither on.
    assert not any("password" in key for key in one)
    assert "<hidden>" not in str(one) and PASSWORD not in str(one)
    assert hostvars(inventory, "SN-2")["sztp_ssh_host_keys"] == []
    assert hostvars(inventory, "SN-3")["sztp_last_report"] is None
    # The client got the connection options and was closed.
    assert recorder.connection["token"] == base["token"]
    assert recorder.connection["verify"] is True
    assert recorder.closed


@pytest.fixture
def ldevids(fleet):
    """SN-1 holds a current LDevID (the newer of two), SN-2's newest is revoked, the newest
    of "SN 4/x" has expired and SN-3 never got one; SN-1's current one is returned. SN-1's and
    SN-2's newest are issued now: newer than those other tests of this server issued them."""
    day, hour = timedelta(days=1), timedelta(hours=1)
    fleet.issue_ldevid("SN-1", issued_ago=day)
    current = fleet.issue_ldevid("SN-1")
    fleet.issue_ldevid("SN-2", issued_ago=day)
    fleet.issue_ldevid("SN-2", revoked=True)
    fleet.issue_ldevid("SN 4/x", issued_ago=2 * hour, valid_for=hour)
    return current


def test_current_ldevid_variable_and_group(recorder, load, base, ldevids):
    inventory = load(base)
    shown = hostvars(inventory, "SN-1")["sztp_ldevid"]
    assert set(shown) == set(plugin_module.LDEVID_FIELDS)
    assert (shown["serial_number"], shown["issuer"]) == (ldevids.serial_number, "lab")
    assert datetime.fromisoformat(shown["not_before"]) == ldevids.not_before
    assert datetime.fromisoformat(shown["not_after"]) == ldevids.not_after
    for serial in ("SN-2", "SN-3", "SN 4/x"):
        assert hostvars(inventory, serial)["sztp_ldevid"] is None, serial
    assert members(inventory, "sztp_ldevid") == ["SN-1"]
    # From the same listing: still one request for the fleet.
    assert recorder.calls == [("device_pages", {"profile": None, "model": None, "site": None})]
    assert recorder.pages == 1
    # The group takes the prefix; keyed by issuer as in EXAMPLES, devices without one are left out.
    inventory = load(
        {
            **base,
            "group_prefix": "boot_",
            "keyed_groups": [{"key": "sztp_ldevid.issuer", "prefix": "ldevid_issuer"}],
        }
    )
    assert members(inventory, "boot_ldevid") == ["SN-1"]
    assert "sztp_ldevid" not in inventory.groups
    assert members(inventory, "ldevid_issuer_lab") == ["SN-1"]


def test_one_listing_read_in_pages(recorder, load, base, fleet, monkeypatch):
    monkeypatch.setattr("sztp.client.DEVICE_PAGE", 50)
    fleet.seed({"device": {"SN-%03d" % number: {"model": "bulk"} for number in range(5, 205)}})
    inventory = load(base)
    assert len(inventory.hosts) == 204
    assert recorder.calls == [("device_pages", {"profile": None, "model": None, "site": None})]
    assert recorder.pages == 5  # 204 devices, 50 a page
    assert hostvars(inventory, "SN-204")["sztp_model"] == "bulk"


def test_the_garbage_collector_is_left_as_it_was(recorder, load, base):
    assert gc.isenabled()
    load(base)
    assert gc.isenabled()
    gc.disable()
    try:
        load(base)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_last_report_complete_and_none_choose_the_devices_with_reports(recorder, load, base):
    inventory = load({**base, "last_report": "complete"})
    assert hostvars(inventory, "SN-1")["sztp_last_report"]["progress_type"] == "bootstrap-complete"
    assert hostvars(inventory, "SN-2")["sztp_last_report"] is None
    assert hostvars(inventory, "SN-2")["sztp_attempts"] is None
    inventory = load({**base, "last_report": "none"})
    assert hostvars(inventory, "SN-1")["sztp_ssh_host_keys"] == []
    assert hostvars(inventory, "SN-1")["sztp_last_report"] is None
    assert len(recorder.calls) == 2


def test_filters_go_to_the_server(recorder, load, base):
    inventory = load({**base, "statuses": ["complete", "failed"], "profile": "dpu-day0"})
    assert sorted(inventory.hosts) == ["SN-1", "SN-2"]
    assert recorder.calls[-1] == (
        "device_pages",
        {"profile": "dpu-day0", "model": None, "site": None},
    )
    inventory = load({**base, "site": "fra 1", "statuses": ["failed"]})
    assert sorted(inventory.hosts) == ["SN-2"]
    assert recorder.calls[-1] == (
        "device_pages",
        {"profile": None, "model": None, "site": "fra 1", "status": "failed"},
    )
    inventory = load({**base, "statuses": ["failed"]})
    assert sorted(inventory.hosts) == ["SN-2"]
    assert recorder.calls[-1] == (
        "device_pages",
        {"profile": None, "model": None, "site": None, "status": "failed"},
    )


def test_addresses_compose_and_constructed_groups(recorder, load, base):
    inventory = load(
        {
            **base,
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


def test_malformed_or_hostile_keys_are_dropped(recorder, load, base, fleet):
    # SN-1 bootstraps again; the server lists the keys of its last report as they came.
    fleet.report(
        "SN-1",
        "bootstrap-complete",
        ssh_host_keys=[
            ("ssh-ed25519", "not base64!"),
            ("x\nevil.example ssh-rsa AAAA", base64.b64encode(b"xx").decode()),
            ("ssh-ed25519", ED25519),
        ],
    )
    inventory = load(base)
    assert hostvars(inventory, "SN-1")["sztp_ssh_host_keys"] == ["SN-1 ssh-ed25519 " + ED25519]


def test_known_hosts_name_is_one_token():
    lines, rejected = plugin_module.known_hosts_lines(
        "SN 4/x", [{"algorithm": "ssh-ed25519", "key_data": ED25519}]
    )
    assert lines == ["SN_4/x ssh-ed25519 " + ED25519] and rejected == 0


def test_token_file_and_environment(recorder, load, fleet, tmp_path, monkeypatch):
    token_file = tmp_path / "token"
    token_file.write_text(fleet.token + "\n")
    monkeypatch.setenv("SZTP_SERVER", fleet.url)
    inventory = load({"token_file": str(token_file), "validate_certs": False})
    assert recorder.connection["token"] == fleet.token
    assert recorder.connection["verify"] is False
    assert recorder.connection.get("ca_bundle") is None
    assert len(inventory.hosts) == 4  # the server took the token


def test_empty_path_variables_mean_unset(recorder, load, fleet, monkeypatch):
    # AWX sets a credential type's variables even when an input is left empty.
    monkeypatch.setenv("SZTP_SERVER", fleet.url)
    monkeypatch.setenv("SZTP_TOKEN", fleet.token)
    monkeypatch.setenv("SZTP_TOKEN_FILE", "")
    monkeypatch.setenv("SZTP_CA_BUNDLE", "")
    inventory = load({"validate_certs": False})
    assert recorder.connection.get("ca_bundle") is None
    assert recorder.connection["token"] == fleet.token
    assert len(inventory.hosts) == 4


@pytest.mark.parametrize(
    ("where", "token", "error"),
    [
        ("unreachable", "inv-s3cr3t-token", "cannot reach"),
        ("server", "inv-s3cr3t-token", "the API token is not valid (HTTP 401)"),
    ],
    ids=["unreachable", "token-refused"],
)
def test_server_errors_become_one_line_without_the_token(
    recorder, load, base, unreachable, where, token, error
):
    server = unreachable if where == "unreachable" else base["server"]
    with pytest.raises(AnsibleError) as raised:
        load({"server": server, "token": token})
    message = str(raised.value)
    assert error in message
    assert "\n" not in message
    assert token not in message
    assert recorder.closed


def test_unreadable_token_file(recorder, load, base, tmp_path):
    with pytest.raises(AnsibleError, match="cannot read token file"):
        load({"server": base["server"], "token_file": str(tmp_path / "missing")})


def test_only_sztp_yml_files_are_claimed(tmp_path):
    plugin = new_plugin()
    for name, claimed in (("a.sztp.yml", True), ("a.sztp.yaml", True), ("a.yml", False)):
        path = tmp_path / name
        path.write_text("plugin: sztp.bootstrap.devices\n")
        assert plugin.verify_file(str(path)) is claimed


def test_cache_answers_without_the_server(recorder, load, base, fleet, ldevids, tmp_path):
    config = {
        **base,
        "cache": True,
        "cache_plugin": "ansible.builtin.jsonfile",
        "cache_connection": str(tmp_path / "cache"),
    }
    first = load(config, cache=False)  # refresh: reads the server and fills the cache
    assert recorder.calls
    recorder.calls.clear()
    fleet.reset()  # the server now lists no device: only the cache can answer with the fleet
    second = load(config, cache=True)
    assert recorder.calls == []
    assert sorted(second.hosts) == sorted(first.hosts)
    for variable in ("sztp_ssh_host_keys", "sztp_ldevid"):
        assert hostvars(second, "SN-1")[variable] == hostvars(first, "SN-1")[variable]
    assert members(second, "sztp_ldevid") == ["SN-1"]


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
def hostile(recorder, fleet):
    """SN-1 registered with, and reporting, Jinja expressions. The admin API takes any text
    as a model but refuses such a profile name or MAC, so the spec is written to the store
    directly (as a tampered database would hold it): the plugin must not count on the
    server's checks. The report is stored as the device sent it; SN-1's LDevID is recorded
    with an expression as its issuer's name."""
    store = open_store(fleet.store_url)
    try:
        before = store.get(DEVICE, "SN-1").spec
        spec = {**before, "profile": "dpu-{{ 6 * 7 }}", "model": "{{ 6 * 7 }}", "mac": INJECTION}
        store.apply([Change("update", DEVICE, "SN-1", spec, before)], actor="unit-tests")
    finally:
        store.close()
    fleet.report(
        "SN-1",
        "bootstrap-complete",
        message=INJECTION,
        source_address="192.0.2.11",
        ssh_host_keys=[("ssh-ed25519", ED25519), (INJECTION, ED25519)],
    )
    fleet.issue_ldevid("SN-1", issuer=INJECTION)
    return fleet


@pytest.mark.parametrize("cached", [False, True])
def test_every_variable_from_the_server_is_unsafe(hostile, load, base, tmp_path, cached):
    config = {**base, "use_report_address": True}
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
        assert set(ours) >= {
            "sztp_serial",
            "sztp_last_report",
            "sztp_ssh_host_keys",
            "sztp_ldevid",
        }
        assert [bad for name, value in ours.items() for bad in not_unsafe(value, name)] == [], host
    one = hostvars(inventory, "SN-1")
    assert one["sztp_last_report"]["message"] == INJECTION
    assert one["sztp_last_report"]["ssh_host_keys"][1]["algorithm"] == INJECTION
    assert one["sztp_ldevid"]["issuer"] == INJECTION
    assert one["ansible_host"] == "192.0.2.11"


def test_reported_expressions_are_not_rendered(hostile, load, base):
    """What a play does with the variables: the device's text comes out as text."""
    from ansible.template import Templar

    inventory = load({**base, "compose": {"shown": "sztp_last_report.message"}})
    variables = hostvars(inventory, "SN-1")
    templar = Templar(loader=DataLoader(), variables=variables)
    for expression, expected in (
        ("{{ sztp_last_report.message }}", INJECTION),
        ("{{ sztp_last_report.ssh_host_keys[1].algorithm }}", INJECTION),
        ("{{ sztp_ldevid.issuer }}", INJECTION),
        ("{{ sztp_model }}", "{{ 6 * 7 }}"),
        ("{{ shown }}", INJECTION),
    ):
        assert templar.template(as_template(expression)) == expected, expression


def test_group_names_from_the_server_are_sanitised(hostile, load, base):
    inventory = load(base)
    assert members(inventory, "sztp_model____6___7___") == ["SN-1"]
    assert members(inventory, "sztp_profile_dpu____6___7___") == ["SN-1"]
    assert all(
        not set(name) - set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
        for name in inventory.groups
    )

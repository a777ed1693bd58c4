"""Facts declared once in the kit and repeated where a tool needs them written out: Ansible
plugin documentation and argument specs (ansible-test reads them without importing the kit)
and the fleet file's JSON Schema (rendered from the model, checked in for editors). These tests
fail when a copy drifts."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

import sztp
from sztp.current_ldevid import CURRENT_LDEVID_FIELDS, CURRENT_LDEVID_TIMES
from sztp.device_status import STATUSES
from sztp.state.fleet import SECTIONS
from sztp.state.fleet_schema import render
from sztp.state.model import DEVICE, IMAGE, MODEL, SECRET_FIELDS, FieldType

ROOT = Path(__file__).resolve().parents[2]
DEVICE_INFO = ROOT / "plugins/modules/device_info.py"
INVENTORY = ROOT / "plugins/inventory/devices.py"
FLEET_SCHEMA = ROOT / "kit/sztp/state/fleet.schema.json"


def module_constants(path: Path) -> dict[str, Any]:
    """The module-level literal assignments of a plugin file, read without importing it."""
    found: dict[str, Any] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    found[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    continue
    return found


@pytest.mark.parametrize(("path", "option"), [(DEVICE_INFO, "status"), (INVENTORY, "statuses")])
def test_plugins_list_the_device_statuses(path: Path, option: str) -> None:
    constants = module_constants(path)
    assert tuple(constants["STATUSES"]) == STATUSES, f"{path.name}: STATUSES"
    documented = yaml.safe_load(constants["DOCUMENTATION"])["options"][option]
    assert tuple(documented["choices"]) == STATUSES, f"{path.name}: option {option} choices"


def test_the_wait_options_offer_the_device_statuses() -> None:
    fragment = module_constants(ROOT / "plugins/module_utils/sztp.py")
    assert tuple(fragment["DEVICE_STATUSES"]) == STATUSES
    source = (ROOT / "plugins/doc_fragments/wait.py").read_text(encoding="utf-8")
    documentation = source.split('DOCUMENTATION = r"""', 1)[1].split('"""', 1)[0]
    wait_for = yaml.safe_load(documentation)["options"]["wait_for"]
    assert tuple(wait_for["choices"]) == STATUSES


def test_the_exit_statuses_are_the_ones_docs_gitops_md_lists() -> None:
    from sztpctl.commands.output import ExitStatus

    page = (ROOT / "docs/gitops.md").read_text(encoding="utf-8")
    section = page.split("\n## Exit statuses\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section, flags=re.MULTILINE)
    assert {int(status): meaning.replace("`", "") for status, meaning in rows} == {
        int(status): status.meaning.replace("`", "") for status in ExitStatus
    }


def test_the_current_ldevid_has_the_kits_fields_in_the_api_and_the_inventory() -> None:
    from sztp_server.admin.views import current_ldevid_view
    from sztp_server.store.model import CurrentLdevid

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    shown = current_ldevid_view(CurrentLdevid("1a", "lab", moment, moment))
    assert tuple(shown) == tuple(CURRENT_LDEVID_FIELDS)
    assert {name for name, value in shown.items() if value == "2026-01-01T00:00:00Z"} == (
        CURRENT_LDEVID_TIMES
    )
    constants = module_constants(INVENTORY)
    assert tuple(constants["LDEVID_FIELDS"]) == tuple(CURRENT_LDEVID_FIELDS)
    described = " ".join(yaml.safe_load(constants["DOCUMENTATION"])["description"])
    assert all(f"C({name})" in described for name in CURRENT_LDEVID_FIELDS)


def test_device_info_hides_the_device_secrets() -> None:
    assert tuple(module_constants(DEVICE_INFO)["SECRET_FIELDS"]) == SECRET_FIELDS[DEVICE]


def test_fleet_schema_is_rendered_from_the_model() -> None:
    assert FLEET_SCHEMA.read_text(encoding="utf-8") == render(), (
        "fleet.schema.json differs from the model: run `make docs`"
    )
    schema = json.loads(FLEET_SCHEMA.read_text(encoding="utf-8"))
    assert set(schema["properties"]) - {"owner", "dhcp", "dns"} == set(SECTIONS)


# What a resource module takes beyond the model's fields (a file on the controller to read),
# and model fields it leaves out (a stored hash is the server's; modules send the password).
MODULE_ONLY = {IMAGE: {"src"}, DEVICE: {"voucher_src"}}
MODEL_ONLY = {DEVICE: {"password_hash"}}
OPTION_TYPES = {
    FieldType.TEXT: ("str", None),
    FieldType.NAME: ("str", None),
    FieldType.CHOICE: ("str", None),
    FieldType.PORT: ("int", None),
    FieldType.TEXT_LIST: ("list", "str"),
    FieldType.ENTRY_LIST: ("list", "dict"),
    FieldType.VARIABLES: ("dict", None),
}


@pytest.mark.parametrize("kind", list(MODEL))
def test_resource_modules_document_the_model(kind: str) -> None:
    declared = MODEL[kind]
    path = ROOT / "plugins/modules" / f"{kind.replace('-', '_')}.py"
    source = path.read_text(encoding="utf-8")
    options = yaml.safe_load(module_constants(path)["DOCUMENTATION"])["options"]
    fields = {item.name: item for item in declared.entry.fields}
    expected = set(fields) - MODEL_ONLY.get(kind, set()) | MODULE_ONLY.get(kind, set())
    assert set(options) - {declared.key} == expected, path.name
    for name, item in fields.items():
        if name not in options:
            continue
        option = options[name]
        assert (option.get("type"), option.get("elements")) == OPTION_TYPES[item.type], name
        assert tuple(option.get("choices") or ()) == item.choices, name
        if item.secret:
            argument = source.partition(f"{name}=dict(")[2].partition(")")[0]
            assert "no_log=True" in argument, f"{path.name}: {name} is not no_log"


# Each console script and the name its --version gives (ztp speaks for the agent).
VERSIONED_COMMANDS = {
    "sztpctl": "sztpctl",
    "sztp-server": "sztp-server",
    "sztp-mdns": "sztp-mdns",
    "ztp": "sztp-agent",
}


def test_one_version_for_the_wheel_the_collection_and_the_commands() -> None:
    """pyproject.toml declares the version; every command's --version and the OpenAPI
    document read it from the installed distribution; galaxy.yml (which Ansible reads as
    written), the kit release the plugins accept and the changelog's latest release must agree
    with it: a release changes the version and runs `antsibull-changelog release` together."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))
    assert sztp.__version__ == declared["version"] == galaxy["version"]
    release = module_constants(ROOT / "plugins/module_utils/kit.py")["KIT_RELEASE"]
    assert ".".join(map(str, release)) == ".".join(galaxy["version"].split(".")[:2])
    changelog = yaml.safe_load((ROOT / "changelogs/changelog.yaml").read_text(encoding="utf-8"))
    latest = max(changelog["releases"], key=Version)
    assert latest == declared["version"]
    scripts = set(declared["scripts"])
    assert scripts == set(VERSIONED_COMMANDS), "a new console script needs a --version"
    for command, name in VERSIONED_COMMANDS.items():
        shown = subprocess.run(
            [str(Path(sys.executable).parent / command), "--version"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert shown.strip() == f"{name} {declared['version']}"
    from sztp_server.admin.openapi import openapi_document

    assert openapi_document()["info"]["version"] == declared["version"]


def test_the_models_port_default_is_the_yang_default() -> None:
    from sztp.protocol import conveyed_info

    servers = MODEL["profile"].entry.field("bootstrap_servers").entry
    assert servers is not None and servers.field("port").default == conveyed_info.DEFAULT_PORT

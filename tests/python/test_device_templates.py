"""Per-device configuration end to end: a templated profile rendered for each device from its
own facts and variables, refused at write time (4xx naming the device and the line, nothing
stored) when any device's template fails, served signed per device to real simulated devices,
shown by `sztpctl device render`, and checked offline by `sztpctl validate`."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from sztp.errors import ValidationError
from sztp.labpki import LabPki, write_lab_pki
from sztp.state.device_templates import check_renders, device_variables, render_failures
from sztp.state.resources import normalize_spec
from sztp_testing import (
    RunningServer,
    lab_voucher,
    run_sztpctl,
    running_server,
    simulate_lab_device,
)

SERIALS = ("SN-T1", "SN-T2")
TEMPLATE = (
    "hostname {{ vars.hostname }}.{{ vars.domain }}\n"
    "serial {{ serial }} model {{ model | default('unknown') }} site {{ site }}\n"
    "{% for vlan in vars.vlans | default([]) %}vlan {{ vlan }}\n{% endfor %}"
)
POST_SCRIPT = "#!/bin/sh\necho {{ vars.hostname }} >> /dev/null\n"


def profile_spec(**changes: Any) -> dict[str, Any]:
    return {
        "type": "onboarding",
        "templating": "jinja2",
        "vars": {"domain": "lab.example", "hostname": "unnamed"},
        "configuration": TEMPLATE,
        "post_configuration_script": POST_SCRIPT,
        **changes,
    }


def device_spec(serial: str, lab: LabPki | None = None, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "profile": "dpu",
        "model": "DPU-1",
        "site": "fra1",
        "vars": {"hostname": f"dpu-{serial[-1]}", "vlans": [10, 20]},
        **changes,
    }
    if lab is not None:
        spec["voucher"] = base64.b64encode(lab_voucher(lab, serial)).decode()
    return spec


def state_of(devices: dict[str, dict[str, Any]], profile: dict[str, Any]) -> dict[str, Any]:
    return {
        "profile": {"dpu": normalize_spec("profile", "dpu", profile)},
        "device": {
            serial: normalize_spec("device", serial, spec) for serial, spec in devices.items()
        },
    }


def test_a_device_reads_its_facts_and_its_variables_over_its_profiles() -> None:
    profile = normalize_spec("profile", "dpu", profile_spec())
    device = normalize_spec("device", "SN-T1", device_spec("SN-T1", mac="52:54:00:00:00:01"))
    variables = device_variables("SN-T1", device, "dpu", profile)
    assert variables == {
        "serial": "SN-T1",
        "profile": "dpu",
        "model": "DPU-1",
        "site": "fra1",
        "mac": "52:54:00:00:00:01",
        "vars": {"domain": "lab.example", "hostname": "dpu-1", "vlans": [10, 20]},
    }


def test_only_the_devices_a_write_touches_are_rendered() -> None:
    devices = {serial: device_spec(serial) for serial in SERIALS}
    devices["SN-T2"]["site"] = None  # the template needs it
    state = state_of(devices, profile_spec())
    failures = list(render_failures(state))
    assert [failure.field for failure in failures] == ["device[SN-T2]"]
    assert "configuration does not render: line 2: 'site' is undefined" in failures[0].message
    check_renders(state, serials=["SN-T1"])  # the other device is not this write's
    with pytest.raises(ValidationError):
        check_renders(state, serials=[], profiles=["dpu"])
    # A profile that is not templated cannot fail to render.
    plain = state_of(devices, profile_spec(templating="none"))
    assert not list(render_failures(plain))
    check_renders(plain, serials=[], profiles=["dpu"])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("vars", {"1x": 1}, "is not a variable name"),
        ("vars", {f"v{index}": index for index in range(65)}, "more than 64 variables"),
        ("vars", {"big": "x" * 17000}, "more than 16384"),
        ("vars", {"nan": float("nan")}, "finite number"),
        ("vars", ["not", "a", "map"], "must be a map"),
        ("templating", "mako", "'mako' is not one of none, jinja2"),
    ],
)
def test_variables_and_templating_are_checked_as_they_are_written(
    field: str, value: Any, message: str
) -> None:
    kind, name = ("device", "SN-T1") if field == "vars" else ("profile", "dpu")
    spec = device_spec(name) if kind == "device" else profile_spec()
    with pytest.raises(ValidationError) as caught:
        normalize_spec(kind, name, {**spec, field: value})
    assert message in caught.value.message


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("templates") / "pki", list(SERIALS))


@pytest.fixture(scope="module")
def server(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server"), lab=lab) as running:
        running.apply(
            {
                **lab.trust_resources(),
                "profile": {"dpu": profile_spec()},
                "device": {serial: device_spec(serial, lab) for serial in SERIALS},
            }
        )
        yield running


def test_each_device_is_served_its_own_configuration_signed(
    lab: LabPki, server: RunningServer, tmp_path: Path
) -> None:
    for serial in SERIALS:
        result = simulate_lab_device(lab, server.device_url, serial, tmp_path / serial)
        assert result.succeeded, result.reason
        configuration = (tmp_path / serial / "configuration").read_text()
        assert configuration == (
            f"hostname dpu-{serial[-1]}.lab.example\n"
            f"serial {serial} model DPU-1 site fra1\nvlan 10\nvlan 20\n"
        )
        assert result.steps[0].message == "signed onboarding information received"


def test_a_write_whose_template_fails_for_a_device_is_refused_and_nothing_changes(
    server: RunningServer,
) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    api = f"{server.admin_url}/api/v1"
    before = requests.get(f"{api}/profiles/dpu", headers=headers, timeout=10).json()
    broken = profile_spec(configuration="ok\n{{ vars.hostname }}\n{{ vars.gateway }}\n")
    response = requests.put(
        f"{api}/profiles/dpu", json={"spec": broken}, headers=headers, timeout=30
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "device[SN-T1]"
    assert "configuration does not render: line 3: 'gateway' is undefined" in response.text
    assert requests.get(f"{api}/profiles/dpu", headers=headers, timeout=10).json() == before
    # A device written without what the template needs is refused the same way.
    response = requests.put(
        f"{api}/devices/SN-T9",
        json={"spec": {"profile": "dpu", "model": "DPU-1"}},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert "device[SN-T9]" in response.text and "'site' is undefined" in response.text
    assert requests.get(f"{api}/devices/SN-T9", headers=headers, timeout=10).status_code == 404
    # A template that does not parse names the profile's field and line.
    response = requests.put(
        f"{api}/profiles/dpu",
        json={"spec": profile_spec(configuration="a\n{% if %}\n")},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 422, response.text
    assert "profile[dpu].configuration" in response.text and "line 2" in response.text


def test_sztpctl_device_render_shows_what_the_device_receives(
    server: RunningServer, tmp_path: Path
) -> None:
    env = server.cli_env(tmp_path)
    shown = run_sztpctl("device", "render", "SN-T2", env=env).stdout
    assert "# profile dpu: templating jinja2, configuration merge" in shown
    assert "## configuration\nhostname dpu-2.lab.example\nserial SN-T2 model DPU-1" in shown
    assert "## post_configuration_script\n#!/bin/sh\necho dpu-2 >> /dev/null\n" in shown
    as_json = yaml.safe_load(run_sztpctl("device", "render", "SN-T2", "-o", "json", env=env).stdout)
    assert as_json["profiles"][0]["configuration"].startswith("hostname dpu-2.lab.example\n")
    missing = run_sztpctl("device", "render", "SN-NONE", env=env, expect=1)
    assert "SN-NONE" in missing.stderr


def test_sztpctl_validate_names_the_device_line_of_a_template_that_fails(tmp_path: Path) -> None:
    devices = [
        {"serial": "SN-T1", **device_spec("SN-T1")},
        {"serial": "SN-T2", "profile": "dpu", "model": "DPU-1"},
    ]
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(
        yaml.safe_dump(
            {"profiles": [{"name": "dpu", **profile_spec()}], "devices": devices},
            sort_keys=False,
        ),
        encoding="utf-8",
    )
    line = next(
        number
        for number, text in enumerate(fleet.read_text().splitlines(), start=1)
        if "serial: SN-T2" in text
    )
    result = run_sztpctl("validate", "-f", fleet, env=dict(os.environ), expect=1)
    assert f"fleet.yaml:{line}:" in result.stdout + result.stderr
    assert "'site' is undefined" in result.stdout + result.stderr


def test_the_placeholder_and_an_issued_ldevid_offer_templates_the_same_names() -> None:
    from sztp.protocol import pki
    from sztp.state.device_templates import LDEVID_FIELDS, placeholder_ldevid
    from sztp_server.ldevid.enrollment import ldevid_variables
    from sztp_server.ldevid.issuers import Issued

    ca = pki.create_root_ca("Test LDevID CA")
    leaf = pki.issue_idevid(ca, "SN-T1")
    assert tuple(placeholder_ldevid("SN-T1")) == LDEVID_FIELDS
    assert tuple(ldevid_variables(Issued(leaf.certificate, (ca.certificate,)))) == LDEVID_FIELDS

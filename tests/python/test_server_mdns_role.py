"""The server role's mDNS responder on this machine, where no systemd runs: its unit as the
template renders it (and as systemd-analyze reads it), its records checked by sztp-mdns before
they are installed, and a check-mode run on a fresh host. (The molecule scenario runs it.)"""

from __future__ import annotations

import grp
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ansible_runs import (
    ROOT,
    changed,
    collections_fixture,  # noqa: F401 - a fixture, asked for by name
    failures,
    run_play,
)
from test_role_checks import server_role_vars

VENV = Path(sys.executable).parent.parent
RECORDS = """\
SN-1._sztp 120 IN TXT "ci=stand-in"
_sztp._tcp 120 IN SRV 0 0 8443 sztp1.local.
sztp1 120 IN AAAA 2001:db8::10
"""


def render_unit(collections: Path, tmp_path: Path, interfaces: list[str]) -> str:
    unit = tmp_path / "sztp-mdns.service"
    task = {
        "ansible.builtin.template": {
            "src": str(ROOT / "roles/server/templates/sztp-mdns.service.j2"),
            "dest": str(unit),
            "mode": "0644",
        },
        "vars": server_role_vars(
            server_venv=str(VENV),
            server_config_dir=str(tmp_path),
            server_mdns_interfaces=interfaces,
        ),
    }
    assert failures(run_play(collections, tmp_path, [task])) == []
    return unit.read_text(encoding="utf-8")


def test_the_unit_runs_the_venvs_responder_on_the_given_interfaces(
    collections: Path, tmp_path: Path
) -> None:
    text = render_unit(collections, tmp_path, ["192.0.2.10", "fe80::1%eth1"])
    lines = text.splitlines()
    records = tmp_path / "mdns.zone"
    assert f"ExecStartPre={VENV}/bin/sztp-mdns check {records}" in lines
    # systemd reads % as a specifier: the zone index is written %%.
    assert (
        f"ExecStart={VENV}/bin/sztp-mdns run {records} --interface 192.0.2.10 "
        "--interface fe80::1%%eth1"
    ) in lines
    assert "ExecReload=/bin/sh -c 'kill -HUP \"$MAINPID\"'" in lines
    assert {"User=sztp", "Group=sztp", "CapabilityBoundingSet=", "ProtectSystem=strict"} <= set(
        lines
    )
    every = render_unit(collections, tmp_path, []).splitlines()
    assert f"ExecStart={VENV}/bin/sztp-mdns run {records}" in every


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_reads_the_unit_without_a_complaint(collections: Path, tmp_path: Path) -> None:
    unit = tmp_path / "sztp-mdns.service"
    unit.write_text(render_unit(collections, tmp_path, ["fe80::1%eth1"]), encoding="utf-8")
    (tmp_path / "mdns.zone").write_text(RECORDS, encoding="ascii")
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    complaints = [line for line in result.stderr.splitlines() if str(unit) in line]
    assert result.returncode == 0 and complaints == [], result.stderr


def mdns_tasks(tmp_path: Path, records: str, **variables: Any) -> list[dict[str, Any]]:
    """The role's mdns.yml with the configuration and the unit under `tmp_path`."""
    return [
        {
            "ansible.builtin.include_role": {
                "name": "sztp.bootstrap.server",
                "tasks_from": "mdns.yml",
            },
            "vars": {
                "server_venv": str(VENV),
                "server_config_dir": str(tmp_path / "etc"),
                "server_group": grp.getgrgid(os.getgid()).gr_name,
                "server_mdns_records": records,
                "server__mdns_unit_file": str(tmp_path / "sztp-mdns.service"),
                **variables,
            },
        }
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="the records file is owned by root")
def test_records_sztp_mdns_refuses_are_not_installed(collections: Path, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    refused = RECORDS + "www 120 IN CNAME sztp1.local.\n"
    run = run_play(collections, tmp_path, mdns_tasks(tmp_path, refused))
    [(task, result)] = run.failures
    assert task == "Write the mDNS records" and result["msg"] == "failed to validate"
    assert "CNAME is not published over mDNS" in result["stderr"]
    assert list((tmp_path / "etc").iterdir()) == []


def test_check_mode_on_a_fresh_host_changes_nothing(collections: Path, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    run = run_play(collections, tmp_path, mdns_tasks(tmp_path, RECORDS), check=True)
    assert failures(run) == []
    assert changed(run) == 2  # the records and the unit; starting it waits for the unit
    assert list((tmp_path / "etc").iterdir()) == []
    assert not (tmp_path / "sztp-mdns.service").exists()


def test_no_records_and_no_responder_is_no_change(collections: Path, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    run = run_play(collections, tmp_path, mdns_tasks(tmp_path, ""))
    assert failures(run) == [] and changed(run) == 0

"""Benchmark: the `sztp.bootstrap.devices` module applying 1,000 devices in one task.

`ansible-playbook` on localhost runs the module (the collection made importable through a
scratch ANSIBLE_COLLECTIONS_PATH that links ansible_collections/sztp/bootstrap to this
repository) against a real sztp-server on SQLite: once from empty, then again as a no-op.
Two fleets, each against a fresh server: devices with profile, model and MAC; and the same
with an ownership voucher file per device (`voucher_src`), as in production.
The playbook stamps the time around the task, so the figures are the task's own; the
`ansible-playbook` wall time (start-up, parsing the 1,000-item list, output) is shown beside.
Target (issue 5): one task applies 1,000 devices in < 10 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from benchlib import console_script, publish, running_server

from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher

SECTION = "## Ansible devices module, 1,000 devices"
TARGET = 10.0
REPO = Path(__file__).resolve().parent.parent

PLAYBOOK = """\
- name: Apply the fleet with one task
  hosts: localhost
  gather_facts: false
  vars:
    ansible_connection: local
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Time before
      ansible.builtin.set_fact:
        started: "{{ now(utc=true).timestamp() }}"

    - name: The devices
      sztp.bootstrap.devices:
        server: "{{ sztp_server }}"
        token_file: "{{ sztp_token_file }}"
        devices: "{{ fleet }}"
      register: applied

    - name: Time after
      ansible.builtin.set_fact:
        finished: "{{ now(utc=true).timestamp() }}"

    - name: What the task did, and how long it took
      ansible.builtin.copy:
        dest: "{{ result_file }}"
        mode: "0600"
        content: "{{ applied | combine({'seconds': finished | float - started | float})
          | to_json }}"
"""


def collections_path(work: Path) -> Path:
    """A scratch collections root in which sztp.bootstrap is this repository."""
    root = work / "collections"
    namespace = root / "ansible_collections" / "sztp"
    namespace.mkdir(parents=True)
    (namespace / "bootstrap").symlink_to(REPO, target_is_directory=True)
    return root


def make_fleet(work: Path, count: int, *, vouchers: bool) -> list[dict[str, str]]:
    """The `devices` list; with `vouchers`, one signed voucher file per device in `work`."""
    serials = [f"ANS-{number:05d}" for number in range(count)]
    devices = [
        {
            "serial": serial,
            "profile": "day0",
            "model": "DPU-LAB-1",
            "mac": "52:54:00:" + ":".join(f"{byte:02x}" for byte in number.to_bytes(3, "big")),
        }
        for number, serial in enumerate(serials)
    ]
    if vouchers:
        manufacturer = pki.create_root_ca("Bench Manufacturer CA")
        masa = pki.issue_signing_certificate(manufacturer, "Bench MASA")
        owner_ca = pki.create_root_ca("Bench Owner CA")
        folder = work / "vouchers"
        folder.mkdir()
        for device in devices:
            path = folder / f"{device['serial']}.vcj"
            path.write_bytes(
                sign_voucher(create_voucher(device["serial"], owner_ca.certificate), masa)
            )
            device["voucher_src"] = str(path)
    return devices


def create_profile(admin_url: str, token: str) -> None:
    body = {"resources": {"profile": {"day0": {"type": "onboarding", "signing": "when-requested"}}}}
    response = requests.post(
        f"{admin_url}/api/v1/state",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    response.raise_for_status()


def run_playbook(work: Path, environment: dict[str, str], name: str) -> tuple[float, dict]:
    """(ansible-playbook wall time, the registered result with `seconds` of the task)."""
    result_file = work / f"{name}.json"
    started = time.perf_counter()
    subprocess.run(
        [
            console_script("ansible-playbook"),
            "-i",
            "localhost,",
            "-e",
            f"@{work / 'vars.json'}",
            "-e",
            json.dumps({"result_file": str(result_file)}),
            str(work / "playbook.yml"),
        ],
        check=True,
        env=environment,
        stdout=subprocess.DEVNULL,
        cwd=work,
    )
    return time.perf_counter() - started, json.loads(result_file.read_text())


def measure(work: Path, devices: int, *, vouchers: bool) -> dict[str, float]:
    work.mkdir()
    fleet = make_fleet(work, devices, vouchers=vouchers)
    (work / "playbook.yml").write_text(PLAYBOOK)
    environment = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path(work)),
        "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    }
    # ansible-playbook and the module must find each other and the kit in this venv.
    environment["PATH"] = f"{Path(console_script('ansible-playbook')).parent}:{os.environ['PATH']}"
    (work / "server").mkdir()
    with running_server(work / "server", {"devices": {}}) as server:
        create_profile(server.admin_url, server.token)
        variables = {
            "sztp_server": server.admin_url,
            "sztp_token_file": str(work / "server" / "admin-token"),
            "fleet": fleet,
        }
        (work / "vars.json").write_text(json.dumps(variables))
        empty_wall, empty = run_playbook(work, environment, "empty")
        noop_wall, noop = run_playbook(work, environment, "noop")
    if (len(empty["created"]), empty["changed"]) != (devices, True):
        raise SystemExit(f"from empty: {empty['summary']}")
    if (noop["unchanged"], noop["changed"]) != (devices, False):
        raise SystemExit(f"no-op re-run: {noop['summary']}")
    return {
        "empty": empty["seconds"],
        "empty_wall": empty_wall,
        "noop": noop["seconds"],
        "noop_wall": noop_wall,
    }


def verdict(seconds: float) -> str:
    return f"{seconds:.2f} s ({'meets' if seconds < TARGET else 'MISSES'} < {TARGET:.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sztp-ansible-") as temporary:
        for vouchers in (False, True):
            label = "with a voucher file each" if vouchers else "profile, model and MAC"
            work = Path(temporary) / ("vouchers" if vouchers else "plain")
            figures = measure(work, args.devices, vouchers=vouchers)
            rows.append(
                f"| {label} | {verdict(figures['empty'])} | {figures['empty_wall']:.2f} s "
                f"| {verdict(figures['noop'])} | {figures['noop_wall']:.2f} s |"
            )
    version = subprocess.run(
        [console_script("ansible-playbook"), "--version"], capture_output=True, text=True
    ).stdout.splitlines()[0]
    section = "\n".join(
        [
            SECTION,
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} "
            f"cores, Python {platform.python_version()}, {version}), "
            f"`python bench/ansible_devices.py`: one `sztp.bootstrap.devices` task with "
            f"{args.devices} devices, `ansible-playbook` on localhost (local connection) "
            "against sztp-server on SQLite on the same machine, a fresh server per fleet. "
            "Task time is stamped by the playbook around the task; the wall time is the whole "
            "`ansible-playbook` run (start-up, templating the list, the result file).",
            "",
            "| fleet | task, from empty | playbook wall | task, no-op re-run | playbook wall |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    )
    publish(section, args.write, SECTION)


if __name__ == "__main__":
    main()

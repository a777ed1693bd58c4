"""Roles run on this machine, in seconds, where they need no other host: `lab_tls` writes real
certificates with openssl into a temporary directory; the `kea` role's check of its variables,
its first step, runs on the controller alone. (The molecule scenarios cover the rest.)"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))
# Every character the shell or openssl's -subj reads as syntax.
AWKWARD = "lab \"CA\" 'x' $(touch pwned) `touch pwned` ; & | / \\ + = é"


@pytest.fixture(scope="module")
def collections(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path where sztp.bootstrap is this checkout."""
    root = tmp_path_factory.mktemp("collections")
    (root / "ansible_collections" / "sztp").mkdir(parents=True)
    (root / "ansible_collections" / "sztp" / "bootstrap").symlink_to(ROOT)
    return root


def run_ansible(
    collections: Path,
    command: list[str],
    *,
    cwd: Path,
    timeout: float,
    settings: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """An Ansible tool's `command` with `collections` as its collections path, no colours and
    further environment `settings`."""
    environment = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_NOCOLOR": "1",
        **(settings or {}),
    }
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        check=False,
        timeout=timeout,
    )


@dataclass
class PlayRun:
    """What a run of ansible-playbook's default output says."""

    output: str
    changed: int
    failures: list[tuple[str, dict[str, Any]]]  # (task name, result) of each failed task


def run_play(
    collections: Path, workdir: Path, tasks: list[dict[str, Any]], *, check: bool = False
) -> PlayRun:
    """Run `tasks` against localhost."""
    assert PLAYBOOK, "ansible-playbook must be installed in the test environment"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
    playbook = workdir / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    command = [PLAYBOOK, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
    result = run_ansible(
        collections,
        [*command, *(["--check"] if check else []), str(playbook)],
        cwd=workdir,
        timeout=300,
        settings={
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        },
    )
    task, failed = "", []
    for line in result.stdout.splitlines():
        if heading := re.match(r"TASK \[(?:[^\]]* : )?(.*)\] \*+$", line):
            task = heading.group(1)
        elif re.match(r"(fatal|failed): \[localhost\]", line):
            failed.append((task, json.loads(line.partition(" => ")[2])))
    recap = re.search(r"^localhost +: .*\bchanged=(\d+)", result.stdout, re.MULTILINE)
    assert recap, result.stdout + result.stderr
    return PlayRun(result.stdout, int(recap.group(1)), failed)


def failures(run: PlayRun) -> list[tuple[str, str]]:
    """(task name, message) of every failed task, loop items apart."""
    return [(task, result.get("msg", "")) for task, result in run.failures]


def changed(run: PlayRun) -> int:
    return run.changed


# ---- lab_tls


def lab_tls(directory: Path, **variables: Any) -> dict[str, Any]:
    return {
        "ansible.builtin.include_role": {"name": "sztp.bootstrap.lab_tls"},
        "vars": {
            "lab_tls_dir": str(directory),
            "lab_tls_names": ["web.lab.example", "192.0.2.20", "2001:db8::20"],
            "lab_tls_key_owner": pwd.getpwuid(os.getuid()).pw_name,
            "lab_tls_group": grp.getgrgid(os.getgid()).gr_name,
            **variables,
        },
    }


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def days_left(path: Path) -> float:
    remaining = certificate(path).not_valid_after_utc - datetime.now(UTC)
    return remaining / timedelta(days=1)


def reissue(directory: Path, name: str, *, days: int) -> None:
    """Rewrite `name`.pem (ca or server) with the same key and issuer, expiring in `days`, as
    an old certificate would."""
    old = certificate(directory / f"{name}.pem")
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    key = serialization.load_pem_private_key((directory / f"{name}.key").read_bytes(), None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(old.issuer)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=800))
        .not_valid_after(datetime.now(UTC) + timedelta(days=days))
    )
    for extension in old.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    new = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    (directory / f"{name}.pem").write_bytes(new.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "tls dir 'with' $(touch pwned)"
    directory.mkdir()
    return directory


def test_lab_tls_names_reach_openssl_as_data(
    collections: Path, tmp_path: Path, tls_dir: Path
) -> None:
    report = run_play(collections, tmp_path, [lab_tls(tls_dir, lab_tls_ca_name=AWKWARD)])
    assert failures(report) == []
    assert changed(report) == 1
    assert not list(tmp_path.rglob("pwned")) and not (ROOT / "pwned").exists()
    ca, server = certificate(tls_dir / "ca.pem"), certificate(tls_dir / "server.pem")
    assert ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == AWKWARD
    assert server.issuer == ca.subject
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(name.value) for name in names] == ["web.lab.example", "192.0.2.20", "2001:db8::20"]
    assert oct((tls_dir / "server.key").stat().st_mode & 0o777) == "0o600"
    assert oct((tls_dir / "ca.key").stat().st_mode & 0o777) == "0o600"
    again = run_play(collections, tmp_path, [lab_tls(tls_dir, lab_tls_ca_name=AWKWARD)])
    assert failures(again) == [] and changed(again) == 0


@pytest.mark.parametrize("name", ["web lab", "a,DNS:evil.example", "$(touch pwned)"])
def test_lab_tls_refuses_what_is_no_dns_name_or_address(
    collections: Path, tmp_path: Path, tls_dir: Path, name: str
) -> None:
    names = ["web.lab.example", name]
    report = run_play(collections, tmp_path, [lab_tls(tls_dir, lab_tls_names=names)])
    [(task, message)] = failures(report)
    assert task == "Check the certificate names"
    assert "lab_tls_names must be" in message and repr(name) in message
    assert list(tls_dir.iterdir()) == []
    assert not list(tmp_path.rglob("pwned"))


def test_lab_tls_renews_what_is_about_to_expire(
    collections: Path, tmp_path: Path, tls_dir: Path
) -> None:
    assert failures(run_play(collections, tmp_path, [lab_tls(tls_dir)])) == []
    ca_pem = (tls_dir / "ca.pem").read_bytes()

    reissue(tls_dir, "server", days=20)
    # Outside a 10-day window: kept.
    kept = run_play(collections, tmp_path, [lab_tls(tls_dir, lab_tls_renew_days=10)])
    assert failures(kept) == [] and changed(kept) == 0
    assert days_left(tls_dir / "server.pem") < 21
    # Check mode says so and writes nothing.
    checked = run_play(collections, tmp_path, [lab_tls(tls_dir)], check=True)
    assert failures(checked) == [] and changed(checked) == 1
    assert days_left(tls_dir / "server.pem") < 21
    # Inside the default 30-day window: a new server certificate from the same CA.
    renewed = run_play(collections, tmp_path, [lab_tls(tls_dir)])
    assert failures(renewed) == [] and changed(renewed) == 1
    assert days_left(tls_dir / "server.pem") > 800
    assert (tls_dir / "ca.pem").read_bytes() == ca_pem
    assert certificate(tls_dir / "server.pem").issuer == certificate(tls_dir / "ca.pem").subject

    reissue(tls_dir, "ca", days=20)
    renewed = run_play(collections, tmp_path, [lab_tls(tls_dir)])
    assert failures(renewed) == [] and changed(renewed) == 1
    assert days_left(tls_dir / "ca.pem") > 3000 and days_left(tls_dir / "server.pem") > 800
    ca = certificate(tls_dir / "ca.pem")
    certificate(tls_dir / "server.pem").verify_directly_issued_by(ca)
    settled = run_play(collections, tmp_path, [lab_tls(tls_dir)])
    assert failures(settled) == [] and changed(settled) == 0


# ---- kea


def kea_check(**variables: Any) -> dict[str, Any]:
    return {
        "ansible.builtin.include_role": {
            "name": "sztp.bootstrap.kea",
            "tasks_from": "validate.yml",
        },
        "vars": {"kea_dhcp4_interfaces": ["eth1"], "kea_ctrl_agent_enabled": True, **variables},
    }


@pytest.mark.parametrize("host", ["0.0.0.0", "kea.example.net"])  # noqa: S104
def test_kea_refuses_a_control_agent_beyond_loopback_without_users(
    collections: Path, tmp_path: Path, host: str
) -> None:
    report = run_play(collections, tmp_path, [kea_check(kea_ctrl_agent_host=host)])
    [(task, message)] = failures(report)
    assert task == "Check that the control agent needs a password beyond loopback"
    assert f"Refusing to open Kea's control agent on {host}:8000 without authentication" in message
    assert "kea_ctrl_agent_auth_clients" in message


def test_kea_accepts_a_loopback_or_password_protected_control_agent(
    collections: Path, tmp_path: Path
) -> None:
    accepted = [
        {"kea_ctrl_agent_host": "127.0.0.1"},
        {"kea_ctrl_agent_host": "::1"},
        {"kea_ctrl_agent_host": "localhost"},
        {"kea_ctrl_agent_host": "0.0.0.0", "kea_ctrl_agent_enabled": False},  # noqa: S104
        {
            "kea_ctrl_agent_host": "192.0.2.1",
            "kea_ctrl_agent_auth_clients": [{"user": "stork", "password": "s3cret-pass"}],
        },
    ]
    run = run_play(collections, tmp_path, [kea_check(**variables) for variables in accepted])
    assert failures(run) == []
    assert run.output.count("Check that the control agent needs a password") == len(accepted)


@pytest.mark.parametrize(
    "clients",
    [
        [{"user": "stork", "password": ""}],
        [{"user": "a:b", "password": "s3cret-pass"}],
        [{"user": "stork", "password": "s3cret-pass"}, {"user": "stork", "password": "other"}],
    ],
)
def test_kea_names_a_malformed_control_agent_user_without_its_password(
    collections: Path, tmp_path: Path, clients: list[Any]
) -> None:
    variables = {"kea_ctrl_agent_host": "192.0.2.1", "kea_ctrl_agent_auth_clients": clients}
    report = run_play(collections, tmp_path, [kea_check(**variables)])
    [(task, message)] = failures(report)
    assert task == "Check the control agent's users"
    assert "kea_ctrl_agent_auth_clients: each entry needs a unique user" in message
    assert "s3cret-pass" not in report.output


def test_kea_control_agent_configuration_names_password_files_only(
    collections: Path, tmp_path: Path
) -> None:
    output = tmp_path / "kea-ctrl-agent.conf"
    render = {
        "ansible.builtin.template": {
            "src": str(ROOT / "roles/kea/templates/kea-ctrl-agent.conf.j2"),
            "dest": str(output),
            "mode": "0644",
        },
        "vars": {
            **yaml.safe_load((ROOT / "roles/kea/defaults/main.yml").read_text()),
            **yaml.safe_load((ROOT / "roles/kea/vars/main.yml").read_text()),
            "kea_ctrl_agent_host": "192.0.2.1",
            "kea_ctrl_agent_auth_clients": [{"user": "stork", "password": "s3cret-pass"}],
        },
    }
    assert failures(run_play(collections, tmp_path, [render])) == []
    agent = json.loads(output.read_text())["Control-agent"]
    assert agent["authentication"] == {
        "type": "basic",
        "realm": "kea-control-agent",
        "directory": "/etc/kea/ctrl-agent-auth",
        "clients": [{"user": "stork", "password-file": "stork"}],
    }
    assert "s3cret-pass" not in output.read_text()


@pytest.mark.parametrize(
    "inventory", ["playbooks/inventories/example-production/hosts.yml", "playbooks/inventories/lab"]
)
def test_example_inventories_parse_and_site_accepts_them(
    collections: Path, inventory: str, tmp_path: Path
) -> None:
    """docs/site.md shows these inventories without hosts to run them on: each parses, names
    every group site.yml plays, a fleet file and the DHCP interface, and site.yml passes
    ansible-playbook's syntax check with it."""

    def ansible(tool: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).parent / tool), "-i", inventory, *arguments]
        return run_ansible(
            collections,
            command,
            cwd=ROOT,
            timeout=120,
            settings={"SZTP_LAB_DIR": str(tmp_path / "lab")},
        )

    listed = ansible("ansible-inventory", "--list", "--export")
    assert listed.returncode == 0, listed.stderr
    groups = json.loads(listed.stdout)
    for group in ("bootstrap_servers", "file_servers", "dhcp_servers"):
        assert groups[group]["hosts"], f"{inventory}: no {group}"
    host = ansible("ansible-inventory", "--host", "localhost")
    assert host.returncode == 0, host.stderr
    assert "sztp_fleet_file" in json.loads(host.stdout)
    syntax = ansible("ansible-playbook", "--syntax-check", "playbooks/site.yml")
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr

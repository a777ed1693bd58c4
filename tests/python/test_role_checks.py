"""Roles run on this machine, in seconds, where they need no other host: `lab_tls` writes real
certificates with openssl into a temporary directory; the `kea` and `server` roles' checks of
their variables, their first step, run on the controller alone; the `server` role's webhook
files are written into a temporary directory and its configuration template is rendered there.
(The molecule scenarios cover the rest.)"""

from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_runs import (
    ROOT,
    changed,
    collections_fixture,  # noqa: F401 - a fixture, asked for by name
    failures,
    run_ansible,
    run_play,
)
from sztp_server.config import load_config
from sztp_server.events_out.webhook_delivery import load_secrets

# Every character the shell or openssl's -subj reads as syntax.
AWKWARD = "lab \"CA\" 'x' $(touch pwned) `touch pwned` ; & | / \\ + = é"


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


# ---- server

SECRET_OPS = "ops-webhook-key-Zq8v3LwP0s"
SECRET_LOCAL = "local-webhook-key-Kd92mXq1"


def webhook_ca() -> str:
    """PEM text of a self-signed CA certificate, as a receiver's CA would be."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hooks CA")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def server_webhooks(ca_cert: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "ops",
            "url": "https://hooks.example.net/sztp",
            "secret": SECRET_OPS,
            "events": ["device-failed", "device-complete"],
            "ca_cert": ca_cert,
        },
        {"name": "local.hook_1", "url": "http://127.0.0.1:9999/hook", "secret": SECRET_LOCAL},
    ]


def server_role_vars(**variables: Any) -> dict[str, Any]:
    """The server role's defaults and derived values, then `variables`."""
    return {
        **yaml.safe_load((ROOT / "roles/server/defaults/main.yml").read_text()),
        **yaml.safe_load((ROOT / "roles/server/vars/main.yml").read_text()),
        **variables,
    }


def render_server_yaml(dest: Path, **variables: Any) -> dict[str, Any]:
    """A task writing the server role's server.yaml to `dest`."""
    return {
        "ansible.builtin.template": {
            "src": str(ROOT / "roles/server/templates/server.yaml.j2"),
            "dest": str(dest),
            "mode": "0640",
        },
        "vars": server_role_vars(**variables),
    }


def test_server_yaml_names_each_webhook_key_file(collections: Path, tmp_path: Path) -> None:
    without, with_hooks = tmp_path / "without.yaml", tmp_path / "with.yaml"
    ca_cert = webhook_ca()
    settings = {"stall_after_minutes": 20}
    tasks = [
        render_server_yaml(without, server_settings=settings),
        render_server_yaml(
            with_hooks,
            server_config_dir="/etc/sztp",
            server_webhooks=[
                *server_webhooks(ca_cert),
                # None and empty are as if left out.
                {
                    "name": "q",
                    "url": "https://q.example",
                    "secret": "k" * 16,
                    "events": None,
                    "ca_cert": "",
                },
            ],
            server_settings=settings,
        ),
    ]
    assert failures(run_play(collections, tmp_path, tasks)) == []

    plain = yaml.safe_load(without.read_text())
    assert "webhooks" not in plain
    assert plain["stall_after_minutes"] == 20
    rendered = yaml.safe_load(with_hooks.read_text())
    assert rendered["webhooks"] == [
        {
            "name": "ops",
            "url": "https://hooks.example.net/sztp",
            "secret_file": "/etc/sztp/webhooks/ops.key",
            "events": ["device-failed", "device-complete"],
            "ca_file": "/etc/sztp/webhooks/ops-ca.pem",
        },
        {
            "name": "local.hook_1",
            "url": "http://127.0.0.1:9999/hook",
            "secret_file": "/etc/sztp/webhooks/local.hook_1.key",
        },
        {"name": "q", "url": "https://q.example", "secret_file": "/etc/sztp/webhooks/q.key"},
    ]
    assert rendered["stall_after_minutes"] == 20
    text = with_hooks.read_text()
    assert SECRET_OPS not in text and SECRET_LOCAL not in text and "BEGIN CERTIFICATE" not in text
    # What the server reads: every setting valid, every event type for a webhook without events.
    config = load_config(with_hooks, environ={})
    assert [hook.name for hook in config.webhooks] == ["ops", "local.hook_1", "q"]
    assert config.webhooks[0].events == ("device-failed", "device-complete")
    assert len(config.webhooks[1].events) > 2 and config.webhooks[1].ca_file is None
    assert load_config(without, environ={}).webhooks == ()


def server_check(**variables: Any) -> dict[str, Any]:
    """The server role's check of its variables (tasks/validate.yml)."""
    return {
        "ansible.builtin.include_role": {
            "name": "sztp.bootstrap.server",
            "tasks_from": "validate.yml",
        },
        "vars": {"server_package": "sztp==0.1.0", **variables},
    }


def test_server_refuses_webhooks_in_both_variables(collections: Path, tmp_path: Path) -> None:
    hooks = server_webhooks(webhook_ca())
    settings = {"webhooks": [{"name": "x", "url": "https://x.example", "secret_file": "/k"}]}
    report = run_play(
        collections, tmp_path, [server_check(server_webhooks=hooks, server_settings=settings)]
    )
    [(task, message)] = failures(report)
    assert task == "Check that webhooks are configured in one place"
    assert "server_webhooks" in message and "server_settings.webhooks" in message
    assert SECRET_OPS not in report.output + report.errors


def test_server_accepts_webhooks_in_one_variable(collections: Path, tmp_path: Path) -> None:
    hooks = server_webhooks(webhook_ca())
    settings = {"webhooks": [{"name": "x", "url": "https://x.example", "secret_file": "/k"}]}
    accepted: list[dict[str, Any]] = [
        {"server_webhooks": hooks, "server_settings": {"stall_after_minutes": 20}},
        {"server_webhooks": [], "server_settings": settings},  # key files placed by hand
        {"server_webhooks": [{"name": "a", "url": "http://[::1]:8/", "secret": "k" * 16}]},
        {"server_webhooks": [{**hooks[0], "events": None, "ca_cert": ""}]},  # as if left out
        {},
    ]
    run = run_play(
        collections, tmp_path, [server_check(**variables) for variables in accepted], verbose=True
    )
    assert failures(run) == []
    assert SECRET_OPS not in run.output + run.errors


@pytest.mark.parametrize(
    ("change", "task", "expected"),
    [
        ({"name": "../etc/passwd"}, "Check the webhooks' names", 'not "../etc/passwd"'),
        ({"name": ".hidden"}, "Check the webhooks' names", 'not ".hidden"'),
        ({"name": "a" * 65}, "Check the webhooks' names", "usable as a file name"),
        ({"name": "ops\n"}, "Check the webhooks' names", r'not "ops\n"'),
        ({"name": 7}, "Check the webhooks' names", "not 7"),
        ({"name": "local.hook_1"}, "Check that the webhooks' names are unique", '"local.hook_1"'),
        ({"url": ""}, "Check the webhooks' URLs", "webhook(s) ops need a url"),
        ({"events": []}, "Check the webhooks' events", "webhook(s) ops must be a non-empty"),
        ({"events": "device-failed"}, "Check the webhooks' events", "webhook(s) ops must be"),
        ({"ca_cert": "hooks-ca.pem"}, "Check the webhooks' CA certificates", "webhook(s) ops"),
        ({"secret_file": "/k"}, "Check the webhooks' keys", "unknown key(s) secret_file"),
        (
            {"secret": "  short-key  "},
            "Check that each webhook's secret has 16 characters or more",
            "",
        ),
    ],
)
def test_server_names_a_malformed_webhook_without_its_secret(
    collections: Path, tmp_path: Path, change: dict[str, Any], task: str, expected: str
) -> None:
    first, second = server_webhooks(webhook_ca())
    report = run_play(
        collections, tmp_path, [server_check(server_webhooks=[{**first, **change}, second])]
    )
    [(failed_task, message)] = failures(report)
    assert failed_task == task
    assert expected in message
    shown = report.output + report.errors
    assert SECRET_OPS not in shown and SECRET_LOCAL not in shown and "short-key" not in shown


def webhook_files(
    config_dir: Path, hooks: list[dict[str, Any]], **variables: Any
) -> list[dict[str, Any]]:
    """The server role's webhook tasks (tasks/webhooks.yml) with `config_dir` as the server's
    configuration directory and this user as the service user, then the end of the play: the
    restart handler they notify must not run here."""
    return [
        {
            "ansible.builtin.include_role": {
                "name": "sztp.bootstrap.server",
                "tasks_from": "webhooks.yml",
            },
            "vars": {
                "server_config_dir": str(config_dir),
                "server_user": pwd.getpwuid(os.getuid()).pw_name,
                "server_group": grp.getgrgid(os.getgid()).gr_name,
                "server_webhooks": hooks,
                **variables,
            },
        },
        {"ansible.builtin.meta": "end_play"},
    ]


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


@pytest.mark.skipif(os.geteuid() != 0, reason="the webhook directory is owned by root")
def test_server_webhook_files_follow_the_list(collections: Path, tmp_path: Path) -> None:
    config_dir = tmp_path / "etc"
    webhooks = config_dir / "webhooks"
    webhooks.mkdir(parents=True)
    # A webhook dropped since the last run, and a key placed by hand that server_settings names.
    (webhooks / "gone.key").write_text("gone-webhook-key-1234567890")
    (webhooks / "by-hand.key").write_text("by-hand-webhook-key-1234567890")
    settings = {
        "webhooks": [
            {"name": "b", "url": "https://b.example", "secret_file": str(webhooks / "by-hand.key")}
        ]
    }
    ca_cert = webhook_ca()
    hooks = server_webhooks(ca_cert)

    first = run_play(
        collections,
        tmp_path,
        webhook_files(config_dir, hooks, server_settings=settings),
        verbose=True,
    )
    assert failures(first) == []
    assert "RUNNING HANDLER" not in first.output
    shown = first.output + first.errors
    assert SECRET_OPS not in shown and SECRET_LOCAL not in shown
    assert sorted(path.name for path in webhooks.iterdir()) == [
        "by-hand.key",
        "local.hook_1.key",
        "ops-ca.pem",
        "ops.key",
    ]
    assert mode(webhooks) == "0o750" and webhooks.stat().st_uid == 0
    assert (webhooks / "ops.key").read_text() == SECRET_OPS
    assert mode(webhooks / "ops.key") == mode(webhooks / "local.hook_1.key") == "0o600"
    assert (webhooks / "ops.key").stat().st_uid == os.getuid()
    assert mode(webhooks / "ops-ca.pem") == "0o644"
    assert (webhooks / "ops-ca.pem").read_text() == ca_cert.strip() + "\n"

    # The server accepts the keys and the CA file where the role's server.yaml says they are.
    server_yaml = tmp_path / "server.yaml"
    render = [
        render_server_yaml(server_yaml, server_config_dir=str(config_dir), server_webhooks=hooks)
    ]
    assert failures(run_play(collections, tmp_path, render)) == []
    config = load_config(server_yaml, environ={})
    assert load_secrets(config) == {
        "ops": SECRET_OPS.encode(),
        "local.hook_1": SECRET_LOCAL.encode(),
    }
    x509.load_pem_x509_certificate(Path(str(config.webhooks[0].ca_file)).read_bytes())

    again = run_play(
        collections, tmp_path, webhook_files(config_dir, hooks, server_settings=settings)
    )
    assert failures(again) == [] and changed(again) == 0

    # A new key: check mode says so and writes nothing.
    rekeyed = [{**hooks[0], "secret": "ops-webhook-key-rotated-0001"}, hooks[1]]
    checked = run_play(
        collections,
        tmp_path,
        webhook_files(config_dir, rekeyed, server_settings=settings),
        check=True,
    )
    assert failures(checked) == [] and changed(checked) == 1
    assert (webhooks / "ops.key").read_text() == SECRET_OPS

    # ops dropped: its key and CA file go (and, without server_settings, the hand-placed key).
    dropped = run_play(collections, tmp_path, webhook_files(config_dir, [hooks[1]]))
    assert failures(dropped) == [] and changed(dropped) == 1
    assert sorted(path.name for path in webhooks.iterdir()) == ["local.hook_1.key"]
    settled = run_play(collections, tmp_path, webhook_files(config_dir, [hooks[1]]))
    assert failures(settled) == [] and changed(settled) == 0

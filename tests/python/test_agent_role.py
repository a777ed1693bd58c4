"""The agent role (sztp.bootstrap.agent) on this machine, without a device: its check of its
variables, its first step, refuses bad input naming the variable; the task that writes
agent.yaml writes what the agent's own loader reads, every value as given, and keeps the old
file when the loader refuses the new one; the identity tasks write the IDevID key 0600 and never
show it. The role's tasks run from tasks/main.yml itself, pointed at a temporary directory and
owned by this user. (The molecule stack scenario covers the rest: the package, the unit.)"""

from __future__ import annotations

import copy
import grp
import os
import pwd
import shlex
import sys
from dataclasses import dataclass
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
    PlayRun,
    changed,
    collections_fixture,  # noqa: F401 - a fixture, asked for by name
    failures,
    run_play,
)
from sztp_agent.config import load_config

ROLE = ROOT / "roles" / "agent"
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
# What the shell, YAML and a line-based reader would each take for syntax.
AWKWARD = "DPU \"x\" 'y' $(touch pwned) `touch pwned` ; & | # a: b {c} \\ é"
NEWLINE_ATTEMPT = "DPU-1\nidevid_key: /tmp/stolen.key\n"
PASSWORD = "basic-pass-Hq2v9XwLr3"


@dataclass(frozen=True)
class Identity:
    """PEM text of a manufacturer CA and of device certificates it issued for one key."""

    ca: str
    certificate: str  # subject serialNumber SN-0001
    serial_less: str  # the same device without a serialNumber
    key: str

    @property
    def key_marker(self) -> str:
        """A piece of the key's base64 body, found in any output that shows the key."""
        return self.key.splitlines()[1][8:40]


def issue(
    subject: x509.Name,
    issuer: x509.Name,
    public: ec.EllipticCurvePublicKey,
    signer: ec.EllipticCurvePrivateKey,
) -> str:
    """PEM text of a certificate; a CA's when `subject` is `issuer`."""
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=subject == issuer, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def identity() -> Identity:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    device_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lab Manufacturer CA")])
    device = [x509.NameAttribute(NameOID.COMMON_NAME, "lab-dpu")]
    serial = x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-0001")
    public = device_key.public_key()
    key = device_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return Identity(
        ca=issue(ca_name, ca_name, ca_key.public_key(), ca_key),
        certificate=issue(x509.Name([*device, serial]), ca_name, public, ca_key),
        serial_less=issue(x509.Name(device), ca_name, public, ca_key),
        key=key.decode(),
    )


def shown(run: PlayRun) -> str:
    return run.output + run.errors


# ---- the check of the variables


def agent_check(identity: Identity, **variables: Any) -> dict[str, Any]:
    """The role's check of its variables (tasks/validate.yml) for a device installed from
    its .deb, then `variables`."""
    return {
        "ansible.builtin.include_role": {
            "name": "sztp.bootstrap.agent",
            "tasks_from": "validate.yml",
        },
        "vars": {
            "agent_deb": "build/agent/sztp-agent_0.1.0_amd64.deb",
            "agent_idevid_certificate": identity.certificate,
            "agent_idevid_key": identity.key,
            "agent_trust_anchors": identity.ca,
            **variables,
        },
    }


BAD_INPUT: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, variables, task that refuses them, what its message says)
    (
        "no package",
        {"agent_deb": ""},
        "Check what to install",
        "Give exactly one of agent_deb",
    ),
    (
        "two packages",
        {"agent_package": "sztp==0.1.0"},
        "Check what to install",
        "Give exactly one of agent_deb",
    ),
    (
        "not a .deb",
        {"agent_deb": "build/agent/sztp-agent.tar.gz"},
        "Check the .deb's name",
        "agent_deb must be the path of a .deb file: build/agent/sztp-agent.tar.gz",
    ),
    (
        "key without certificate",
        {"agent_idevid_certificate": ""},
        "Check the device's identity and trust anchors",
        "agent_idevid_certificate: required, as PEM text",
    ),
    (
        "certificate without key",
        {"agent_idevid_key": "/etc/sztp-agent/idevid.key"},
        "Check the device's identity and trust anchors",
        "agent_idevid_key: required, as PEM text",
    ),
    (
        "no trust anchors",
        {"agent_trust_anchors": "", "agent_idevid_key": ""},
        "Check the device's identity and trust anchors",
        "agent_idevid_key, agent_trust_anchors: required",
    ),
    (
        "a CA as a path",
        {"agent_server_ca": "/etc/ssl/lab-ca.pem"},
        "Check the optional CA certificates",
        "agent_server_ca: must be PEM certificates or empty",
    ),
    (
        "key in the certificate bundle",
        {"agent_idevid_certificate": "KEY+CERTIFICATE"},
        "Check that no private key is among the certificates",
        "agent_idevid_certificate: holds a private key",
    ),
    (
        "key in a CA bundle",
        {"agent_file_server_ca": "CA+KEY"},
        "Check that no private key is among the certificates",
        "agent_file_server_ca: holds a private key",
    ),
    (
        "nowhere to look",
        {"agent_bootstrap_uris": [], "agent_dhcp": False},
        "Check where to find bootstrap servers",
        "agent_bootstrap_uris (a list of",
    ),
    (
        "plain http",
        {"agent_bootstrap_uris": ["https://sztp.example.net", "http://sztp.example.net:8080"]},
        "Check the bootstrap servers' URIs",
        "agent_bootstrap_uris: each is https://host[:port], without a path, query or credentials"
        ' (RFC 8572 section 8); not "http://sztp.example.net:8080"',
    ),
    (
        "a path, credentials, a trailing newline",
        {
            "agent_bootstrap_uris": [
                "https://sztp.example.net/restconf",
                "https://ops@sztp.example.net",
                "https://sztp.example.net\n",
            ]
        },
        "Check the bootstrap servers' URIs",
        'not "https://sztp.example.net/restconf", "https://ops@sztp.example.net",'
        ' "https://sztp.example.net\\n"',
    ),
    (
        "certificate without a serialNumber",
        {"agent_idevid_certificate": "SERIAL-LESS"},
        "Check the device's serial number",
        "agent_idevid_certificate has no serialNumber in its subject, where the agent reads the"
        " device's serial number: give agent_serial_number",
    ),
    (
        "certificate that does not parse",
        {"agent_idevid_certificate": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"},
        "Check the device's serial number",
        "agent_idevid_certificate: not a PEM certificate",
    ),
    (
        "an unknown handler",
        {"agent_handlers": {"install-firmware": "files/dpu-firmware"}},
        "Check the handlers",
        "agent_handlers maps install-image and/or apply-configuration",
    ),
    (
        "a handler environment value that is no string",
        {"agent_handler_environment": {"SZTP_INSTALL_ROOT": ["/srv/os"]}},
        "Check the handler environment and reboot command",
        "agent_handler_environment maps variable names to strings",
    ),
    (
        "a setting given twice",
        {"agent_settings": {"attempts": 3, "bootstrap_uris": ["https://x.example"]}},
        "Check that no setting is given twice",
        "use the role variables for bootstrap_uris",
    ),
]


def spelled_out(identity: Identity, variables: dict[str, Any]) -> dict[str, Any]:
    """`variables` with BAD_INPUT's placeholders for PEM text replaced by the text."""
    placeholders = {
        "KEY+CERTIFICATE": identity.key + identity.certificate,
        "CA+KEY": identity.ca + identity.key,
        "SERIAL-LESS": identity.serial_less,
    }
    return {
        name: placeholders.get(value, value) if isinstance(value, str) else value
        for name, value in variables.items()
    }


@pytest.mark.parametrize(
    ("variables", "task", "expected"),
    [case[1:] for case in BAD_INPUT],
    ids=[case[0] for case in BAD_INPUT],
)
def test_agent_check_refuses_bad_input_naming_the_variable(
    collections: Path,
    tmp_path: Path,
    identity: Identity,
    variables: dict[str, Any],
    task: str,
    expected: str,
) -> None:
    check = agent_check(identity, **spelled_out(identity, variables))
    report = run_play(collections, tmp_path, [check], verbose=True)
    [(failed_task, message)] = failures(report)
    assert failed_task == task
    assert expected in message
    assert identity.key_marker not in shown(report)


def test_agent_check_names_only_what_is_missing(
    collections: Path, tmp_path: Path, identity: Identity
) -> None:
    """A key without its certificate names the certificate, not the key it was given."""
    report = run_play(collections, tmp_path, [agent_check(identity, agent_idevid_certificate="")])
    [(_, message)] = failures(report)
    assert message.startswith("agent_idevid_certificate: required")
    assert "agent_idevid_key" not in message and "agent_trust_anchors" not in message


def test_agent_arguments_are_checked_first(
    collections: Path, tmp_path: Path, identity: Identity
) -> None:
    """The role's argument spec refuses a value outside its choices before any task runs.
    With neither package named, validate.yml would stop the role too, so nothing here can
    reach the tasks that change this machine."""
    role = {
        "ansible.builtin.include_role": {"name": "sztp.bootstrap.agent"},
        "vars": {
            "agent_idevid_certificate": identity.certificate,
            "agent_idevid_key": identity.key,
            "agent_trust_anchors": identity.ca,
            "agent_reprovision": "sometimes",
        },
    }
    report = run_play(collections, tmp_path, [role], verbose=True)
    [(task, message)] = failures(report)
    assert task.startswith("Validating arguments against arg spec 'main'")
    assert "agent_reprovision must be one of: never, network-change, got: sometimes" in message
    assert identity.key_marker not in shown(report)


def test_agent_check_accepts_good_input(
    collections: Path, tmp_path: Path, identity: Identity
) -> None:
    accepted: list[dict[str, Any]] = [
        {},
        {
            "agent_deb": "",
            "agent_package": "sztp==0.1.0",
            "agent_bootstrap_uris": [
                "https://sztp.example.net:8443",
                "https://192.0.2.10",
                "https://[2001:db8::3]:443",
            ],
            "agent_dhcp": False,
        },
        {"agent_idevid_certificate": identity.serial_less, "agent_serial_number": "SN-0001"},
        {
            # A certificate with its chain; CAs, a password, handlers: all optional.
            "agent_idevid_certificate": identity.certificate + identity.ca,
            "agent_server_ca": identity.ca,
            "agent_file_server_ca": identity.ca + identity.ca,
            "agent_password": PASSWORD,
            "agent_handlers": {"install-image": "files/dpu-install-image"},
            "agent_handler_environment": {"SZTP_INSTALL_ROOT": "/srv/os"},
            "agent_reboot_command": ["systemctl", "kexec"],
            "agent_settings": {"attempts": 3, "ssh_host_keys": "/etc/ssh/*.pub"},
        },
    ]
    run = run_play(
        collections,
        tmp_path,
        [agent_check(identity, **variables) for variables in accepted],
        verbose=True,
    )
    assert failures(run) == []
    assert run.output.count("Check that no setting is given twice") == len(accepted)
    assert identity.key_marker not in shown(run) and PASSWORD not in shown(run)


# ---- the role's own tasks, into a temporary directory

MAIN_TASKS: list[dict[str, Any]] = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())


def role_tasks(*names: str) -> list[dict[str, Any]]:
    """The tasks `names` of tasks/main.yml, their files owned by this user instead of root
    (the same tasks when this is root)."""
    tasks = []
    for name in names:
        [task] = [copy.deepcopy(task) for task in MAIN_TASKS if task["name"] == name]
        [module] = [key for key in task if key.startswith("ansible.builtin.")]
        for key, owner in (("owner", USER), ("group", GROUP)):
            if key in task[module]:
                task[module][key] = owner
        tasks.append(task)
    return tasks


@pytest.fixture
def agent_venv(tmp_path: Path) -> Path:
    """A stand-in for the agent's venv whose bin/python runs this checkout's agent, as the
    role's check of agent.yaml calls it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    path = f"{ROOT / 'agent'}:{ROOT / 'kit'}"
    python.write_text(
        f'#!/bin/sh\nPYTHONPATH={shlex.quote(path)} exec {shlex.quote(sys.executable)} "$@"\n'
    )
    python.chmod(0o755)
    return venv


def with_role_vars(tasks: list[dict[str, Any]], **variables: Any) -> dict[str, Any]:
    """`tasks` in a block with the role's defaults and derived values, then `variables`."""
    return {
        "block": tasks,
        "vars": {
            **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
            **yaml.safe_load((ROLE / "vars" / "main.yml").read_text()),
            # What the role's stat of the installed agent found.
            "agent__python": {"stat": {"exists": True}},
            **variables,
        },
    }


def test_agent_yaml_is_what_the_agent_reads_values_as_given(
    collections: Path, tmp_path: Path, identity: Identity, agent_venv: Path
) -> None:
    config_dir = tmp_path / "etc 'sztp-agent'"
    config_dir.mkdir()
    reload_command = "systemctl reload 'frr' && echo \"$(touch pwned)\" `touch pwned`"
    reboot = ["sh", "-c", "sync; reboot '$(touch pwned)'"]
    variables = {
        "agent_config_dir": str(config_dir),
        "agent_venv": str(agent_venv),
        "agent_idevid_certificate": identity.certificate,
        "agent_idevid_key": identity.key,
        "agent_trust_anchors": identity.ca,
        "agent_server_ca": identity.ca,
        "agent_password": PASSWORD,
        "agent_bootstrap_uris": ["https://sztp.example.net:8443", "https://[2001:db8::3]"],
        "agent_interfaces": ["eth0", "enp3s0f1"],
        "agent_hw_model": AWKWARD,
        "agent_serial_number": NEWLINE_ATTEMPT,
        "agent_os_release": "/srv/labos/etc/os-release",
        "agent_handler_environment": {
            "SZTP_CONFIG_RELOAD": reload_command,
            "SZTP_INSTALL_ROOT": "/srv/labos",
        },
        "agent_reboot_command": reboot,
        "agent_reprovision": "network-change",
        "agent_settings": {"attempts": 3, "retry_seconds": 2.5, "wire_format": "xml"},
    }
    report = run_play(
        collections, tmp_path, [with_role_vars(role_tasks("Write agent.yaml"), **variables)]
    )
    assert failures(report) == []
    assert changed(report) == 1
    written = config_dir / "agent.yaml"
    assert oct(written.stat().st_mode & 0o777) == "0o644"

    config = load_config(written)
    assert config.hw_model == AWKWARD
    assert config.serial_number == NEWLINE_ATTEMPT
    assert config.idevid_key == config_dir / "idevid.key"
    assert config.idevid_certificate == config_dir / "idevid.pem"
    assert config.trust_anchors == config_dir / "manufacturer-ca.pem"
    assert config.server_ca == config_dir / "server-ca.pem"
    assert config.file_server_ca is None
    assert config.password_file == config_dir / "password"
    assert config.handlers_dir == config_dir / "handlers"
    assert config.bootstrap_uris == ("https://sztp.example.net:8443", "https://[2001:db8::3]")
    assert config.dhcp is True and config.interfaces == ("eth0", "enp3s0f1")
    assert config.os_release == Path("/srv/labos/etc/os-release")
    assert config.handler_environment == (
        ("SZTP_CONFIG_RELOAD", reload_command),
        ("SZTP_INSTALL_ROOT", "/srv/labos"),
    )
    assert config.reboot_command == tuple(reboot)
    assert config.reprovision == "network-change"
    assert (config.attempts, config.retry_seconds, config.wire_format) == (3, 2.5, "xml")
    # Names of files, never their text.
    text = written.read_text()
    assert PASSWORD not in text and "PRIVATE KEY" not in text and "CERTIFICATE" not in text
    assert not list(tmp_path.rglob("pwned")) and not (ROOT / "pwned").exists()


def test_agent_yaml_the_agent_refuses_leaves_the_old_file(
    collections: Path, tmp_path: Path, agent_venv: Path
) -> None:
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    variables = {"agent_config_dir": str(config_dir), "agent_venv": str(agent_venv)}
    typo = {"attempts": 3, "retry_secs": 5}
    tasks = [
        with_role_vars(role_tasks("Write agent.yaml"), **variables),
        with_role_vars(role_tasks("Write agent.yaml"), **variables, agent_settings=typo),
    ]
    report = run_play(collections, tmp_path, tasks)
    [(task, result)] = report.failures
    assert task == "Write agent.yaml"
    assert result["msg"] == "failed to validate"
    assert "unknown setting(s) retry_secs" in result["stderr"]  # the agent's loader said so
    assert load_config(config_dir / "agent.yaml").attempts == 5  # the first file, still there


# ---- the IDevID key


IDENTITY_TASKS = (
    "Configuration directories",
    "Install the IDevID key",
    "Install the IDevID certificate and the trust anchors",
    "Remove CA files no longer given",
    "Install the password",
    "Remove a password no longer given",
)


def test_agent_key_is_written_0600_and_never_shown(
    collections: Path, tmp_path: Path, identity: Identity
) -> None:
    config_dir = tmp_path / "etc" / "sztp-agent"
    variables = {
        "agent_config_dir": str(config_dir),
        "agent_idevid_certificate": identity.certificate,
        "agent_idevid_key": identity.key,
        "agent_trust_anchors": identity.ca,
        "agent_server_ca": identity.ca,
        "agent_password": PASSWORD,
    }
    tasks = [with_role_vars(role_tasks(*IDENTITY_TASKS), **variables)]

    # With diffs and -vv, as someone would look at a run.
    written = run_play(collections, tmp_path, tasks, diff=True, verbose=True)
    assert failures(written) == []
    assert identity.key_marker not in shown(written) and PASSWORD not in shown(written)
    assert oct(config_dir.stat().st_mode & 0o777) == "0o755"
    key, password = config_dir / "idevid.key", config_dir / "password"
    assert key.read_text() == identity.key
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert password.read_text() == PASSWORD + "\n"
    assert oct(password.stat().st_mode & 0o777) == "0o600"
    assert oct((config_dir / "idevid.pem").stat().st_mode & 0o777) == "0o644"
    assert (config_dir / "manufacturer-ca.pem").read_text() == identity.ca
    assert (config_dir / "server-ca.pem").read_text() == identity.ca
    # What the agent reads there: the key pairs with the certificate.
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    device = x509.load_pem_x509_certificate((config_dir / "idevid.pem").read_bytes())
    assert loaded.public_key() == device.public_key()

    # Again with the server CA and the password dropped: their files go, the key stays.
    fewer = {**variables, "agent_server_ca": "", "agent_password": ""}
    again = run_play(
        collections,
        tmp_path,
        [with_role_vars(role_tasks(*IDENTITY_TASKS), **fewer)],
        diff=True,
        verbose=True,
    )
    assert failures(again) == [] and changed(again) == 2
    assert not (config_dir / "server-ca.pem").exists() and not password.exists()
    assert key.read_text() == identity.key
    assert identity.key_marker not in shown(again)

"""sztp-server configuration: defaults, file keys and `SZTP_SERVER_*` environment overrides."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sztp_server.config import Listener, ServerConfig, load_config
from sztpctl.errors import ValidationError


def test_no_file_and_no_variables_gives_the_defaults() -> None:
    config = load_config(None, environ={})
    assert config == ServerConfig()
    assert config.device_listeners == (Listener("0.0.0.0", 8443),)  # noqa: S104
    assert not config.device_listeners[0].uses_tls
    assert config.admin_listener == Listener("127.0.0.1", 7080)


def test_known_variables_override_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("log_level: info\nreports_per_device: 5\n")
    config = load_config(
        path, environ={"SZTP_SERVER_LOG_LEVEL": "debug", "PATH": "/bin", "SZTP_SERVER": "x"}
    )
    assert config.log_level == "debug"
    assert config.reports_per_device == 5


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        (
            "SZTP_SERVER_LOG_LEVL",
            "SZTP_SERVER_LOG_LEVL: unknown environment variable "
            "(did you mean SZTP_SERVER_LOG_LEVEL?)",
        ),
        ("SZTP_SERVER_COLOUR", "SZTP_SERVER_COLOUR: unknown environment variable"),
        (
            "SZTP_SERVER_DEVICE_LISTENERS",
            "SZTP_SERVER_DEVICE_LISTENERS: unknown environment variable; set device_listeners "
            "in the config file",
        ),
    ],
)
def test_unknown_variables_are_refused(variable: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        load_config(None, environ={variable: "debug"})
    assert str(refused.value) == message
    assert refused.value.field == variable


def test_unknown_file_keys_name_the_closest_setting(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("log_levle: debug\n")
    with pytest.raises(
        ValidationError, match=r"^log_levle: unknown setting \(did you mean log_level\?\)$"
    ):
        load_config(path, environ={})
    path.write_text("admin_listener: {host: 127.0.0.1, prot: 7080}\n")
    with pytest.raises(
        ValidationError, match=r"admin_listener.prot: unknown setting \(did you mean port\?\)"
    ):
        load_config(path, environ={})


# ---- the admin API over plain HTTP (issue 12, item 10)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.9", "sztp.example.com", "2001:db8::1"])  # noqa: S104
def test_a_plain_http_admin_listener_beyond_loopback_is_refused(tmp_path: Path, host: str) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(f"admin_listener: {{host: '{host}', port: 7080}}\n")
    with pytest.raises(ValidationError) as refused:
        load_config(path, environ={})
    assert refused.value.field == "admin_listener"
    assert f"plain HTTP on {host}, which is not loopback" in str(refused.value)
    assert "admin_allow_plain_http: true" in str(refused.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.2.1", "::1", "localhost", "LocalHost"])
def test_a_plain_http_admin_listener_on_loopback_is_fine(tmp_path: Path, host: str) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(f"admin_listener: {{host: '{host}', port: 7080}}\n")
    assert load_config(path, environ={}).admin_listener.host == host


def test_beyond_loopback_the_admin_listener_needs_tls_or_the_opt_in(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(
        "admin_listener: {host: 0.0.0.0, port: 7080, tls_cert: a.pem, tls_key: a.key}\n"
    )
    assert load_config(path, environ={}).admin_listener.uses_tls
    path.write_text("admin_listener: {host: 0.0.0.0, port: 7080}\nadmin_allow_plain_http: true\n")
    assert load_config(path, environ={}).admin_allow_plain_http is True
    path.write_text("admin_listener: {host: 0.0.0.0, port: 7080}\n")
    environ = {"SZTP_SERVER_ADMIN_ALLOW_PLAIN_HTTP": "true"}
    assert load_config(path, environ=environ).admin_allow_plain_http is True
    environ = {"SZTP_SERVER_ADMIN_ALLOW_PLAIN_HTTP": "maybe"}
    with pytest.raises(ValidationError, match=r"^admin_allow_plain_http: must be true or false$"):
        load_config(path, environ=environ)
    assert ServerConfig().admin_allow_plain_http is False


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_refuse_a_plain_http_admin_listener_beyond_loopback(
    tmp_path: Path, command: str
) -> None:
    from sztp_testing import SZTP_SERVER

    assert SZTP_SERVER
    path = tmp_path / "server.yaml"
    path.write_text(
        f"database_url: sqlite:///{tmp_path}/sztp.db\n"
        f"admin_token_file: {tmp_path}/admin-token\n"
        "device_listeners: [{host: 127.0.0.1, port: 0}]\n"
        "admin_listener: {host: 0.0.0.0, port: 0}\n"
    )
    result = subprocess.run(
        [SZTP_SERVER, command, "-c", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "sztp-server: admin_listener: plain HTTP on 0.0.0.0, which is not loopback"
    )
    assert "admin_allow_plain_http: true" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "sztp.db").exists()
    assert not (tmp_path / "admin-token").exists()

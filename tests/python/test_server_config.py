"""sztp-server configuration: defaults, file keys and `SZTP_SERVER_*` environment overrides."""

from __future__ import annotations

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

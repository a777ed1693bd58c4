"""sztp-server configuration: defaults, file keys and `SZTP_SERVER_*` environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sztp.errors import ValidationError
from sztp_server.config import Listener, ServerConfig, load_config
from sztp_testing import run_sztp_server


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
        ("SZTP_SERVER_COLOUR_FILE", "SZTP_SERVER_COLOUR_FILE: unknown environment variable"),
    ],
)
def test_unknown_variables_are_refused(variable: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        load_config(None, environ={variable: "debug"})
    assert str(refused.value) == message
    assert refused.value.field == variable


def test_structured_settings_come_from_yaml_in_their_variables(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("admin_listener: {host: 127.0.0.1, port: 7080}\n")
    config = load_config(
        path,
        environ={
            "SZTP_SERVER_ADMIN_LISTENER": "{host: 192.0.2.1, port: 7443}",
            "SZTP_SERVER_ADMIN_ALLOW_PLAIN_HTTP": "true",
            "SZTP_SERVER_DEVICE_LISTENERS": (
                "[{host: '::1', port: 443}, {host: 192.0.2.1, port: 80}]"
            ),
            "SZTP_SERVER_TRUSTED_PROXIES": "[10.0.0.0/24]",
        },
    )
    assert config.admin_listener == Listener(host="192.0.2.1", port=7443)
    assert [(item.host, item.port) for item in config.device_listeners] == [
        ("::1", 443),
        ("192.0.2.1", 80),
    ]
    assert [str(network) for network in config.trusted_proxies] == ["10.0.0.0/24"]


def test_structured_variables_are_checked_like_the_file() -> None:
    with pytest.raises(ValidationError, match=r"^admin_listener\.prot: unknown setting"):
        load_config(None, environ={"SZTP_SERVER_ADMIN_LISTENER": "{host: 127.0.0.1, prot: 1}"})
    with pytest.raises(ValidationError) as refused:
        load_config(None, environ={"SZTP_SERVER_WEBHOOKS": "[{name: a, url: 'x"})
    assert refused.value.field == "SZTP_SERVER_WEBHOOKS"
    assert refused.value.message.startswith("not valid YAML (line 1, column")
    assert "url: 'x" not in str(refused.value)  # the text may hold a secret


def test_file_variables_read_the_value_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text("sqlite:////data/sztp.db\n")
    listener = tmp_path / "admin-listener.yaml"
    listener.write_text("host: 127.0.0.2\nport: 7081\n")
    config = load_config(
        None,
        environ={
            "SZTP_SERVER_DATABASE_URL_FILE": str(secret),
            "SZTP_SERVER_ADMIN_LISTENER_FILE": str(listener),
            # a setting whose name ends in _file is still the setting itself
            "SZTP_SERVER_ADMIN_TOKEN_FILE": "/data/admin-token",
        },
    )
    assert config.database_url == "sqlite:////data/sztp.db"
    assert config.admin_listener == Listener(host="127.0.0.2", port=7081)
    assert config.admin_token_file == Path("/data/admin-token")


def test_file_variables_are_refused_clearly(tmp_path: Path) -> None:
    secret = tmp_path / "database-url"
    secret.write_text("postgresql://sztp:hunter2@db/sztp")
    with pytest.raises(ValidationError) as refused:
        load_config(
            None,
            environ={
                "SZTP_SERVER_DATABASE_URL": "sqlite:////data/a.db",
                "SZTP_SERVER_DATABASE_URL_FILE": str(secret),
            },
        )
    assert str(refused.value) == (
        "SZTP_SERVER_DATABASE_URL_FILE: SZTP_SERVER_DATABASE_URL sets database_url too: "
        "set one of them"
    )
    missing = tmp_path / "absent"
    with pytest.raises(ValidationError) as refused:
        load_config(None, environ={"SZTP_SERVER_DATABASE_URL_FILE": str(missing)})
    assert str(refused.value) == (
        f"SZTP_SERVER_DATABASE_URL_FILE: cannot read {missing}: No such file or directory"
    )
    huge = tmp_path / "huge"
    huge.write_bytes(b"x" * (64 * 1024 + 1))
    with pytest.raises(ValidationError, match="larger than 65536 bytes"):
        load_config(None, environ={"SZTP_SERVER_LOG_LEVEL_FILE": str(huge)})


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


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("SZTP_SERVER_AUDIT_RETENTION_DAYS", "-1", "must not be negative (0 turns it off)"),
        ("SZTP_SERVER_AUDIT_RETENTION_DAYS", "nan", "must be a finite number"),
        ("SZTP_SERVER_AUDIT_RETENTION_DAYS", "inf", "must be a finite number"),
        ("SZTP_SERVER_RESPONSE_CACHE_BYTES", "0", "must be positive"),
        (
            "SZTP_SERVER_DATABASE_POOL_SIZE",
            "2",
            "must be at least 3: 2 serve the admin API, the others devices",
        ),
    ],
)
def test_number_settings_are_checked(variable: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        load_config(None, environ={variable: value})
    assert refused.value.message == message


def test_zero_turns_audit_retention_off() -> None:
    assert load_config(None, environ={}).audit_retention_days == 0
    config = load_config(None, environ={"SZTP_SERVER_AUDIT_RETENTION_DAYS": "0"})
    assert config.audit_retention_days == 0
    config = load_config(None, environ={"SZTP_SERVER_AUDIT_RETENTION_DAYS": "90"})
    assert config.audit_retention_days == 90


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
    path = tmp_path / "server.yaml"
    path.write_text(
        f"database_url: sqlite:///{tmp_path}/sztp.db\n"
        f"admin_token_file: {tmp_path}/admin-token\n"
        "device_listeners: [{host: 127.0.0.1, port: 0}]\n"
        "admin_listener: {host: 0.0.0.0, port: 0}\n"
    )
    result = run_sztp_server(command, path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "sztp-server: admin_listener: plain HTTP on 0.0.0.0, which is not loopback"
    )
    assert "admin_allow_plain_http: true" in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not (tmp_path / "sztp.db").exists()
    assert not (tmp_path / "admin-token").exists()


@pytest.mark.parametrize(
    ("url", "environ", "hosts"),
    [
        ("postgresql://sztp:s3cret@db.example.net/sztp", {}, "db.example.net"),
        ("postgresql://sztp:s3cret@db.example.net/sztp?sslmode=require", {}, "db.example.net"),
        ("postgres://sztp@[2001:db8::5]:5433,10.0.0.7/sztp?password=s3cret", {}, "10.0.0.7, 2001"),
        ("postgresql:///sztp?host=db.example.net&sslmode=verify-ca", {}, "db.example.net"),
        ("postgresql://localhost/sztp?hostaddr=192.0.2.8", {}, "192.0.2.8"),
        ("postgresql:///sztp", {"PGHOST": "db.example.net"}, "db.example.net"),
        ("postgresql://db.example.net/sztp", {"PGSSLMODE": "verify-ca"}, "db.example.net"),
        ("postgresql://db.example.net/sztp?sslmode=verify-full", {}, None),
        ("postgresql://db.example.net/sztp", {"PGSSLMODE": "verify-full"}, None),
        ("postgresql://sztp:s3cret@localhost:5432/sztp", {}, None),
        ("postgresql://sztp:s3cret@127.0.0.1,[::1]/sztp", {}, None),
        ("postgresql:///sztp?host=/run/postgresql", {}, None),
        ("postgresql://%2Frun%2Fpostgresql/sztp", {}, None),
        ("postgresql:///sztp", {}, None),
    ],
)
def test_check_warns_about_an_unverified_database_on_another_machine(
    url: str,
    environ: dict[str, str],
    hosts: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sztp_server.__main__ import main

    for name in ("PGHOST", "PGHOSTADDR", "PGSSLMODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**environ, "SZTP_SERVER_DATABASE_URL": url}.items():
        monkeypatch.setenv(name, value)
    main(["check"])
    output = capsys.readouterr()
    assert output.out == "sztp-server: configuration OK (defaults)\n"
    assert "s3cret" not in output.err
    if hosts is None:
        assert output.err == ""
    else:
        assert output.err.startswith(f"sztp-server: warning: database_url: PostgreSQL on {hosts}")
        assert "sslmode=verify-full" in output.err
        assert len(output.err.splitlines()) == 1


# ---- connection limits and monitoring endpoints (issue 12, items 2 and 14)


def test_monitoring_listeners_must_name_a_place() -> None:
    assert load_config(None, environ={}).monitoring_listeners == "admin"
    with pytest.raises(ValidationError) as refused:
        load_config(None, environ={"SZTP_SERVER_MONITORING_LISTENERS": "everywhere"})
    assert (refused.value.field, refused.value.message) == (
        "monitoring_listeners",
        "must be one of admin, device, both",
    )


@pytest.mark.parametrize(
    "variable",
    [
        "SZTP_SERVER_REQUEST_HEAD_TIMEOUT",
        "SZTP_SERVER_KEEPALIVE_TIMEOUT",
        "SZTP_SERVER_MAX_CONNECTIONS_PER_ADDRESS",
    ],
)
def test_connection_limits_must_be_positive(variable: str) -> None:
    with pytest.raises(ValidationError) as refused:
        load_config(None, environ={variable: "0"})
    assert refused.value.message == "must be positive"


BUILTIN = {
    "name": "lab",
    "type": "builtin",
    "certificate_file": "/etc/sztp/ca.pem",
    "private_key_file": "/etc/sztp/ca.key",
}


@pytest.mark.parametrize(
    ("issuers", "field", "message"),
    [
        ({"name": "x"}, "ldevid_issuers", "must be a list of issuers"),
        ([{**BUILTIN, "type": "est"}], "ldevid_issuers[0].type", "one of builtin, cmp, hook"),
        ([{**BUILTIN, "private_key_file": None}], "ldevid_issuers[0].private_key_file", "builtin"),
        ([{"name": "c", "type": "cmp", "url": "http://ca"}], "ldevid_issuers[0].reference", "cmp"),
        ([{"name": "h", "type": "hook", "command": "issue"}], "ldevid_issuers[0].command", "list"),
        ([{**BUILTIN, "url": "ftp://ca"}], "ldevid_issuers[0].url", "http:// or https://"),
        ([{**BUILTIN, "name": "a b"}], "ldevid_issuers[0].name", "letters, digits"),
        ([{**BUILTIN, "colour": 1}], "ldevid_issuers[0].colour", "unknown setting"),
        ([BUILTIN, BUILTIN], "ldevid_issuers", "two issuers have the same name"),
        ([{**BUILTIN, "timeout": 0}], "ldevid_issuers[0].timeout", "positive"),
        (
            [{**BUILTIN, "private_key_uri": "pkcs11:object=ca"}],
            "ldevid_issuers[0].private_key_file",
            "one of private_key_file and private_key_uri",
        ),
        (
            [
                {
                    **BUILTIN,
                    "private_key_file": None,
                    "private_key_uri": "pkcs11:object=ca?pin-value=1",
                }
            ],
            "ldevid_issuers[0].private_key_uri",
            "pin-value is not allowed",
        ),
        (
            [{**BUILTIN, "private_key_file": None, "private_key_uri": "pkcs11:object=ca"}],
            "pkcs11_module",
            "issuer lab's private_key_uri names a PKCS#11 token",
        ),
        (
            [
                {
                    **BUILTIN,
                    "private_key_file": None,
                    "private_key_uri": "pkcs11:object=ca",
                    "private_key_password_file": "/etc/sztp/pass",
                }
            ],
            "ldevid_issuers[0].private_key_password_file",
            "passphrase of a private_key_file",
        ),
    ],
)
def test_ldevid_issuers_are_checked(
    tmp_path: Path, issuers: object, field: str, message: str
) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump({"ldevid_issuers": issuers}))
    with pytest.raises(ValidationError) as caught:
        load_config(path, environ={})
    assert caught.value.field == field
    assert message in caught.value.message


def test_ldevid_issuers_are_read(tmp_path: Path) -> None:
    hook = {"name": "pki", "type": "hook", "command": ["/usr/local/bin/issue", "--x"]}
    path = tmp_path / "server.yaml"
    path.write_text(yaml.safe_dump({"ldevid_issuers": [BUILTIN, hook]}))
    builtin, script = load_config(path, environ={}).ldevid_issuers
    assert (builtin.name, builtin.type, builtin.validity_days) == ("lab", "builtin", 365)
    assert builtin.private_key_file == Path("/etc/sztp/ca.key")
    assert (script.command, script.timeout, script.concurrency) == (
        ("/usr/local/bin/issue", "--x"),
        10.0,
        4,
    )


@pytest.mark.parametrize("command", ["check", "run"])
def test_check_and_run_name_an_ldevid_issuer_whose_key_cannot_be_read(
    tmp_path: Path, command: str
) -> None:
    path = tmp_path / "server.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{tmp_path}/sztp.db",
                "admin_token_file": f"{tmp_path}/admin-token",
                "device_listeners": [{"host": "127.0.0.1", "port": 0}],
                "admin_listener": {"host": "127.0.0.1", "port": 0},
                "ldevid_issuers": [{**BUILTIN, "certificate_file": f"{tmp_path}/missing.pem"}],
            }
        )
    )
    result = run_sztp_server(command, path)
    assert result.returncode != 0
    assert f"issuer lab: cannot read {tmp_path}/missing.pem" in result.stderr
    assert "Traceback" not in result.stderr

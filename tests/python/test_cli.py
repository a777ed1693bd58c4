"""The sztpctl commands as an operator runs them: real console script, real files, real openssl."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sztp_testing import example_lab, lay_out_example, run_sztpctl, running_server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SZTPCTL = shutil.which("sztpctl", path=str(BIN))


def run(*arguments: str | Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    assert SZTPCTL, "sztpctl must be installed in the test environment (make test)"
    result = subprocess.run(
        [SZTPCTL, *map(str, arguments)], capture_output=True, text=True, check=False
    )
    assert result.returncode == expect, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "pki"
    run("pki", "init", directory, "--serial", "SN-0001", "--serial", "SN-0002")
    return directory


@pytest.fixture(scope="module")
def voucher(lab: Path) -> Path:
    path = lab.parent / "SN-0001.vcj"
    run(
        "voucher", "create", "--serial", "SN-0001", "--pinned-cert", lab / "owner/ca.pem",
        "--masa-cert", lab / "manufacturer/masa.pem", "--masa-key", lab / "manufacturer/masa.key",
        "--expires-in-days", "7", "-o", path,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def signed_data(lab: Path, voucher: Path) -> Path:
    image = lab.parent / "image.bin"
    image.write_bytes(b"boot image bytes")
    config = lab.parent / "day0.cfg"
    config.write_text("hostname sn-0001\n")
    path = lab.parent / "SN-0001.json"
    run(
        "bootstrap-data", "sign", "--owner-cert", lab / "owner/owner.pem",
        "--owner-key", lab / "owner/owner.key", "--voucher", voucher, "--os-name", "LabOS",
        "--os-version", "1.2", "--image-uri", "https://files.lab.example/image.bin",
        "--image-file", image, "--configuration", config, "-o", path,
    )  # fmt: skip
    return path


def test_help_lists_the_command_groups() -> None:
    result = run("--help")
    for group in ("pki", "voucher", "bootstrap-data"):
        assert group in result.stdout


def test_pki_init_writes_private_keys_0600(lab: Path) -> None:
    keys = sorted(lab.rglob("*.key"))
    assert {key.relative_to(lab).as_posix() for key in keys} >= {
        "manufacturer/ca.key",
        "manufacturer/masa.key",
        "owner/owner.key",
        "devices/SN-0001/idevid.key",
        "devices/SN-0002/idevid.key",
    }
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_pki_init_refuses_to_overwrite(lab: Path) -> None:
    before = (lab / "owner/owner.key").read_bytes()
    result = run("pki", "init", lab, "--serial", "SN-0003", expect=1)
    assert result.stderr.startswith("error: ")
    assert (lab / "owner/owner.key").read_bytes() == before


def test_pki_init_rejects_an_unknown_key_type(tmp_path: Path) -> None:
    result = run("pki", "init", tmp_path / "x", "--serial", "S1", "--key-type", "dsa", expect=2)
    assert "dsa" in result.stderr
    assert not (tmp_path / "x").exists()


def test_voucher_show_prints_its_content(voucher: Path) -> None:
    body = json.loads(run("voucher", "show", voucher).stdout)["ietf-voucher:voucher"]
    assert body["serial-number"] == "SN-0001"
    assert "expires-on" in body


def test_voucher_verify_accepts_the_right_device_only(lab: Path, voucher: Path) -> None:
    common = [
        "--owner-cert",
        lab / "owner/owner.pem",
        "--trust-anchor",
        lab / "manufacturer/ca.pem",
    ]
    assert (
        "voucher valid" in run("voucher", "verify", voucher, "--serial", "SN-0001", *common).stdout
    )
    refused = run("voucher", "verify", voucher, "--serial", "SN-0002", *common, expect=1)
    assert "not this device" in refused.stderr


def test_voucher_create_with_a_mismatched_key_fails_clearly(lab: Path, tmp_path: Path) -> None:
    result = run(
        "voucher", "create", "--serial", "SN-0001", "--pinned-cert", lab / "owner/ca.pem",
        "--masa-cert", lab / "manufacturer/masa.pem", "--masa-key", lab / "owner/owner.key",
        "-o", tmp_path / "v.vcj", expect=1,
    )  # fmt: skip
    assert "does not match certificate" in result.stderr
    assert "BEGIN" not in result.stderr
    assert not (tmp_path / "v.vcj").exists()


def test_missing_input_file_is_one_line(lab: Path, tmp_path: Path) -> None:
    result = run("voucher", "show", tmp_path / "absent.vcj", expect=1)
    assert result.stderr.strip().count("\n") == 0
    assert "absent.vcj" in result.stderr


def test_signed_data_verifies_for_its_device(lab: Path, signed_data: Path) -> None:
    result = run(
        "bootstrap-data", "verify", signed_data, "--serial", "SN-0001",
        "--trust-anchor", lab / "manufacturer/ca.pem",
    )  # fmt: skip
    info = json.loads(result.stdout)["ietf-sztp-conveyed-info:onboarding-information"]
    assert info["boot-image"]["os-version"] == "1.2"
    assert base64.b64decode(info["configuration"]) == b"hostname sn-0001\n"
    assert "verified" in result.stderr


def test_signed_data_is_refused_by_another_device(lab: Path, signed_data: Path) -> None:
    result = run(
        "bootstrap-data", "verify", signed_data, "--serial", "SN-0002",
        "--trust-anchor", lab / "manufacturer/ca.pem", expect=1,
    )  # fmt: skip
    assert "not this device" in result.stderr


def test_openssl_verifies_our_signed_conveyed_information(lab: Path, signed_data: Path) -> None:
    """An independent implementation accepts what `bootstrap-data sign` produced."""
    body = json.loads(signed_data.read_text())["ietf-sztp-bootstrap-server:output"]
    cms_file = signed_data.with_suffix(".ci.der")
    cms_file.write_bytes(base64.b64decode(body["conveyed-information"]))
    owner_file = signed_data.with_suffix(".oc.der")
    owner_file.write_bytes(base64.b64decode(body["owner-certificate"]))
    owner_pem = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-in", owner_file, "-print_certs"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    (lab.parent / "owner-bundle.pem").write_bytes(owner_pem)
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", cms_file, "-binary",
         "-CAfile", lab / "owner/ca.pem", "-certfile", lab.parent / "owner-bundle.pem",
         "-purpose", "any"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["ietf-sztp-conveyed-info:onboarding-information"]


def test_unsigned_onboarding_is_refused_unless_the_server_is_trusted(lab: Path) -> None:
    path = lab.parent / "unsigned.json"
    run("bootstrap-data", "sign", "--unsigned", "--configuration", lab / "owner/ca.pem", "-o", path)
    anchor = lab / "manufacturer/ca.pem"
    refused = run(
        "bootstrap-data", "verify", path, "-s", "SN-0001", "--trust-anchor", anchor, expect=1
    )
    assert "does not trust" in refused.stderr
    run(
        "bootstrap-data",
        "verify",
        path,
        "-s",
        "SN-0001",
        "--trust-anchor",
        anchor,
        "--server-trusted",
    )


def test_redirect_with_bad_port_is_a_usage_error(tmp_path: Path) -> None:
    result = run(
        "bootstrap-data", "sign", "--unsigned", "--redirect", "sztp.lab:http", "-o",
        tmp_path / "r.json", expect=2,
    )  # fmt: skip
    assert "HOST[:PORT]" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_make_demo_script_runs_the_whole_flow(tmp_path: Path) -> None:
    from sztp_testing import free_port

    env = {
        **os.environ,
        "SZTP_BIN": str(BIN),
        "DEMO_DIR": str(tmp_path / "demo"),
        "DEMO_DEVICE_PORT": str(free_port()),
        "DEMO_ADMIN_PORT": str(free_port()),
        "DEMO_FILES_PORT": str(free_port()),
    }
    result = subprocess.run(
        ["bash", ROOT / "scripts/demo.sh"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "applied: 6 created" in result.stdout
    assert "bootstrap complete: SN-0001 runs LabOS 1.2" in result.stdout
    assert "SN-0001: complete" in result.stdout
    assert "Traceback" not in result.stderr


def test_dhcp_encode_gives_the_rfc_payload() -> None:
    payload = run("dhcp", "encode", "https://10.1.1.3:8080", "--format", "hex").stdout.strip()
    assert payload == "0015" + b"https://10.1.1.3:8080".hex().upper()


def test_dhcp_encode_kea_v6_and_decode_round_trip() -> None:
    uris = ["https://sztp1.lab.example", "https://[2001:db8::1]:8443"]
    option = json.loads(run("dhcp", "encode", *uris, "--family", "v6").stdout)
    assert (option["code"], option["csv-format"]) == (136, False)
    assert run("dhcp", "decode", option["data"]).stdout.split() == uris


def test_dhcp_encode_refuses_a_uri_with_a_path() -> None:
    result = run("dhcp", "encode", "https://sztp.lab/restconf", expect=1)
    assert "has a path '/restconf'" in result.stderr


def test_dhcp_encode_refuses_an_oversized_v4_list() -> None:
    uris = [f"https://bootstrap-server-{n:02d}.example.net:8443" for n in range(8)]
    result = run("dhcp", "encode", *uris, expect=1)
    assert "255" in result.stderr
    run("dhcp", "encode", *uris, "--family", "v6")


@pytest.fixture
def fleet_with_env_secrets(tmp_path: Path) -> Path:
    """The example fleet, its owner key and one device password taken from the environment."""
    fleet = lay_out_example(tmp_path / "fleet")
    document = yaml.safe_load(fleet.read_text())
    document["owner"]["private_key"] = {"env": "SZTP_OWNER_KEY"}
    document["devices"][1]["password"] = {"env": "SN2_PASSWORD"}
    fleet.write_text(yaml.safe_dump(document, sort_keys=False))
    return fleet


def without_secrets(tmp_path: Path) -> dict[str, str]:
    """A fork's pull-request job: no secrets, no server configured."""
    unset = ("SZTP_OWNER_KEY", "SN2_PASSWORD", "SZTP_CONTEXT", "SZTP_TOKEN", "SZTP_TOKEN_FILE")
    environment = {key: value for key, value in os.environ.items() if key not in unset}
    return {**environment, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def test_validate_skips_unset_secrets_only_when_asked(
    fleet_with_env_secrets: Path, tmp_path: Path
) -> None:
    fleet, env = fleet_with_env_secrets, without_secrets(tmp_path)
    strict = run_sztpctl("validate", "-f", fleet, env=env, expect=1)
    assert strict.stderr.strip().startswith("error: ")
    assert strict.stderr.strip().endswith(
        "owner.private_key: environment variable SZTP_OWNER_KEY is not set"
    )
    skipping = run_sztpctl("validate", "-f", fleet, "--skip-unset-secrets", env=env)
    notes = skipping.stderr.strip().splitlines()
    assert [note.split(": ", 2)[2] for note in notes] == [
        "owner.private_key: {env: SZTP_OWNER_KEY} not set; value not checked",
        "devices[1].password: {env: SN2_PASSWORD} not set; value not checked",
    ]
    assert all(note.startswith(f"note: {fleet}:") for note in notes)
    assert skipping.stdout.strip().endswith(
        "2 voucher(s) checked; 2 secret(s) not checked: variable unset)"
    )


def test_validate_checks_a_secret_that_is_set(fleet_with_env_secrets: Path, tmp_path: Path) -> None:
    env = {**without_secrets(tmp_path), "SZTP_OWNER_KEY": "not-a-pem-key-4242"}
    result = run_sztpctl(
        "validate", "-f", fleet_with_env_secrets, "--skip-unset-secrets", env=env, expect=1
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "owner.private_key: cannot load PEM private key" in errors[0]
    assert "not-a-pem-key-4242" not in result.stdout + result.stderr
    assert "devices[1].password: {env: SN2_PASSWORD} not set" in result.stderr


def test_validate_refuses_an_unset_non_secret_variable_even_when_skipping(
    fleet_with_env_secrets: Path, tmp_path: Path
) -> None:
    fleet = fleet_with_env_secrets
    fleet.write_text(fleet.read_text().replace("model: DPU-LAB-1", "model: {env: SN_MODEL}", 1))
    env = without_secrets(tmp_path)
    result = run_sztpctl("validate", "-f", fleet, "--skip-unset-secrets", env=env, expect=1)
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith(
        "devices[0].model: {env: SN_MODEL} is not allowed: outside the secret fields "
        "(activation_code, password, password_hash, private_key) the operator must allow the "
        "variable, e.g. SZTP_FLEET_ALLOW_ENV=SN_MODEL in the environment that loads the file"
    )
    env = {**env, "SZTP_FLEET_ALLOW_ENV": "SN_MODEL"}
    result = run_sztpctl("validate", "-f", fleet, "--skip-unset-secrets", env=env, expect=1)
    last = result.stderr.strip().splitlines()[-1]
    assert last.endswith("devices[0].model: environment variable SN_MODEL is not set")


def test_apply_and_diff_never_skip_an_unset_secret(
    fleet_with_env_secrets: Path, tmp_path: Path
) -> None:
    """The file is read before the server is contacted: the missing secret is the error."""
    env = without_secrets(tmp_path)
    for command in ("apply", "diff"):  # both refuse the file (ExitStatus.REFUSED)
        result = run_sztpctl(command, "-f", fleet_with_env_secrets, env=env, expect=5)
        assert result.stderr.strip().endswith(
            "owner.private_key: environment variable SZTP_OWNER_KEY is not set"
        ), result.stderr
    usage = run_sztpctl(
        "apply", "-f", fleet_with_env_secrets, "--skip-unset-secrets", env=env, expect=2
    )
    assert "No such option" in usage.stderr


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def test_plan_display_from_the_summary_plan(tmp_path: Path) -> None:
    """apply and diff ask the server for a summary plan; updates still show the old and new
    values of what changed, secrets only as "a secret changed", coloured or not alike."""
    fleet = lay_out_example(tmp_path / "fleet")
    document = yaml.safe_load(fleet.read_text())
    document["devices"][1]["password"] = {"env": "SN2_PASSWORD"}
    fleet.write_text(yaml.safe_dump(document))
    with running_server(tmp_path / "server", lab=example_lab(fleet)) as server:
        env = {**server.cli_env(tmp_path), "SN2_PASSWORD": "first password"}
        created = run_sztpctl("apply", "-f", fleet, env=env).stdout.splitlines()
        assert created[:3] == [
            "+ trust-anchor/lab-manufacturer",
            "+ owner/default",
            "+ image/labos-1.2",
        ]
        assert created[-1].startswith("applied: 6 created, 0 updated, 0 deleted")
        revision = created[-1].rsplit(" ", 1)[-1]
        document["devices"][0]["model"] = "DPU-LAB-2"
        document["devices"].pop()
        fleet.write_text(yaml.safe_dump(document))
        env["SN2_PASSWORD"] = "second password"
        plain = run_sztpctl("diff", "-f", fleet, "--prune", env=env, expect=1).stdout
        assert plain.splitlines() == [
            "~ device/SN-0001",
            '    model: "DPU-LAB-1" → "DPU-LAB-2"',
            "- device/SN-0002",
            f"differences: 0 to create, 1 to update, 1 to delete (server at revision {revision})",
        ]
        coloured_env = {**env, "FORCE_COLOR": "1", "TERM": "xterm-256color", "NO_COLOR": ""}
        coloured = run_sztpctl("diff", "-f", fleet, "--prune", env=coloured_env, expect=1).stdout
        assert ANSI_ESCAPE.search(coloured)
        assert ANSI_ESCAPE.sub("", coloured) == plain
        document["devices"] = [{**document["devices"][0], "password": {"env": "SN2_PASSWORD"}}]
        fleet.write_text(yaml.safe_dump(document))
        run_sztpctl("apply", "-f", fleet, env=env)
        env["SN2_PASSWORD"] = "third password"
        secret = run_sztpctl("apply", "-f", fleet, "--dry-run", env=env).stdout
        assert secret.splitlines()[:2] == ["~ device/SN-0001", "    a secret changed"]
        assert "password" not in secret


@pytest.mark.parametrize(
    ("environ", "isatty", "expected"),
    [
        ({}, False, False),
        ({}, True, True),
        ({"FORCE_COLOR": "1"}, False, True),
        ({"FORCE_COLOR": ""}, False, True),  # rich decides (here: not a terminal)
        ({"TTY_COMPATIBLE": "1"}, False, True),
        ({}, None, False),  # no isatty at all
        ({}, ValueError, False),  # closed
    ],
)
def test_spinner_skips_rich_only_where_rich_would_see_no_terminal(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], isatty: object, expected: bool
) -> None:
    from rich.console import Console

    from sztpctl.commands import remote

    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)

    class Stream:
        def write(self, text: str) -> int:
            return len(text)

        def flush(self) -> None:
            pass

    stream = Stream()
    if isatty is ValueError:

        def closed() -> bool:
            raise ValueError("I/O operation on closed file")

        stream.isatty = closed  # type: ignore[attr-defined]
    elif isatty is not None:
        stream.isatty = lambda: isatty  # type: ignore[attr-defined]
    assert remote._may_be_terminal(stream) is expected
    if not expected:
        assert not Console(file=stream).is_terminal  # type: ignore[arg-type]


# ---- the admin API over plain HTTP (issue 12, item 10)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.9:7080", "http://sztp.example.com:7080", "http://[2001:db8::1]:7080"]
)
def test_the_client_refuses_plain_http_beyond_loopback(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sztp.client import SztpClient
    from sztp.errors import PlainHttpRefused

    monkeypatch.delenv("SZTP_ALLOW_PLAIN_HTTP", raising=False)
    with pytest.raises(PlainHttpRefused) as refused:
        SztpClient(url, "s3cr3t")
    assert str(refused.value).startswith(f"refusing plain HTTP to {url}: ")
    assert "SZTP_ALLOW_PLAIN_HTTP=1" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)
    SztpClient(url, "s3cr3t", allow_plain_http=True).close()
    monkeypatch.setenv("SZTP_ALLOW_PLAIN_HTTP", "1")
    SztpClient(url, "s3cr3t").close()  # what the Ansible modules rely on
    assert "Bearer" not in repr(vars(SztpClient(url, None)))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:7080",
        "http://127.9.8.7:7080",
        "http://localhost:7080",
        "http://[::1]:7080",
        "https://10.0.0.9:7080",
        "https://sztp.example.com",
    ],
)
def test_the_client_takes_loopback_or_tls_without_opt_in(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sztp.client import SztpClient

    monkeypatch.setenv("SZTP_ALLOW_PLAIN_HTTP", "0")
    SztpClient(url, "s3cr3t").close()


def test_a_context_may_allow_plain_http_and_the_variable_wins(tmp_path: Path) -> None:
    from sztp.config import ConfigError, resolve_connection
    from sztp.errors import PlainHttpRefused

    config = tmp_path / "config.yaml"
    config.write_text(
        "current_context: lab\ncontexts:\n"
        "  lab: {server: 'http://10.0.0.9:7080', token: t, allow_plain_http: true}\n"
        "  strict: {server: 'http://10.0.0.9:7080', token: t}\n"
        "  bad: {server: 'http://10.0.0.9:7080', allow_plain_http: sometimes}\n"
    )
    resolve_connection(path=config, environ={}).client().close()
    with pytest.raises(PlainHttpRefused):
        resolve_connection(path=config, environ={"SZTP_ALLOW_PLAIN_HTTP": "0"}).client()
    with pytest.raises(PlainHttpRefused):
        resolve_connection(path=config, context="strict", environ={}).client()
    connection = resolve_connection(
        path=config, context="strict", environ={"SZTP_ALLOW_PLAIN_HTTP": "yes"}
    )
    connection.client().close()
    with pytest.raises(ConfigError, match=r"contexts\.bad\.allow_plain_http must be true or false"):
        resolve_connection(path=config, context="bad", environ={})


def test_sztpctl_refuses_plain_http_beyond_loopback_in_one_line(tmp_path: Path) -> None:
    assert SZTPCTL
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "SZTP_TOKEN": "s3cr3t-token",
    }
    for arguments in (
        ["--server", "http://192.0.2.7:7080", "status"],
        ["--server", "http://sztp.example.com:7080", "device", "list"],
    ):
        result = subprocess.run(
            [SZTPCTL, *arguments], capture_output=True, text=True, check=False, env=environ
        )
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("error: refusing plain HTTP to http://"), result.stderr
        assert len(result.stderr.splitlines()) == 1
        assert "Traceback" not in result.stderr
        assert "s3cr3t-token" not in result.stdout + result.stderr
    result = subprocess.run(
        [SZTPCTL, "--server", "http://192.0.2.7:7080", "status"],
        capture_output=True,
        text=True,
        check=False,
        env={**environ, "SZTP_ALLOW_PLAIN_HTTP": "maybe"},
    )
    assert result.returncode == 1, result.stderr
    assert (
        result.stderr == "error: SZTP_ALLOW_PLAIN_HTTP: must be 1 or 0 (true/false), not 'maybe'\n"
    )


def test_apply_leaves_the_cryptographic_stack_unloaded() -> None:
    """`sztpctl apply` sends files and prints a plan: the CMS and certificate code, slow to
    import, is the server's business and stays unloaded (every apply waits for its imports)."""
    probe = (
        "import sys\n"
        "import sztp.client, sztpctl.commands, sztpctl.commands.declarative\n"
        "print(sorted(m for m in ('cryptography.x509', 'asn1crypto') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout == "[]\n", result.stdout

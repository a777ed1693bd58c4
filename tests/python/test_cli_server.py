"""sztpctl against a real sztp-server subprocess: apply, diff, export, status, device status and
history, contexts and every error path, through the installed console script."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import yaml

from sztp.client import SztpClient
from sztp.errors import (
    ApiConflictError,
    AuthenticationError,
    NotFoundApiError,
    ServerUnreachable,
)
from sztp.protocol import pki
from sztp.simulator import DeviceIdentity, SimulatorConfig, simulate
from sztp_testing import (
    RunningServer,
    example_lab,
    free_port,
    lay_out_example,
    only_line,
    run_sztp_server,
    run_sztpctl,
    running_server,
)

PASSWORD = "correct horse battery staple"
EMPTY = "trust_anchors: []\nowners: []\nimages: []\nprofiles: []\ndevices: []\n"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented example fleet with its files; SN-0002 also gets a password from env.
    (Overrides conftest.py's `fleet`; its `server` serves this one.)"""
    path = lay_out_example(tmp_path_factory.mktemp("fleet"))
    document = yaml.safe_load(path.read_text())
    document["devices"][1]["password"] = {"env": "SN2_PASSWORD"}
    path.with_name("with-password.yaml").write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def env(server: RunningServer, tmp_path: Path) -> dict[str, str]:
    """CLI environment for the server, which starts each test empty."""
    environment = {**server.cli_env(tmp_path), "SN2_PASSWORD": PASSWORD}
    empty = tmp_path / "empty.yaml"
    empty.write_text(EMPTY)
    run_sztpctl("apply", "-f", empty, "--prune", env=environment)
    return environment


def test_apply_from_empty_then_reapply_is_a_no_op(
    fleet: Path, env: dict[str, str], server: RunningServer
) -> None:
    first = run_sztpctl("apply", "-f", fleet, env=env)
    for resource in ("trust-anchor/lab-manufacturer", "owner/default", "device/SN-0002"):
        assert f"+ {resource}" in first.stdout
    assert "applied: 6 created, 0 updated, 0 deleted" in first.stdout
    second = run_sztpctl("apply", "-f", fleet, env=env)
    assert second.stdout.startswith("no changes")
    _, state = server.client().get_state()
    assert sorted(state["device"]) == ["SN-0001", "SN-0002"]


def test_dry_run_changes_nothing(fleet: Path, env: dict[str, str], server: RunningServer) -> None:
    result = run_sztpctl("apply", "-f", fleet, "--dry-run", env=env)
    assert "+ device/SN-0001" in result.stdout
    assert "dry run, nothing changed: 6 to create" in result.stdout
    _, state = server.client().get_state()
    assert all(not specs for specs in state.values())


def test_diff_exit_codes(fleet: Path, env: dict[str, str], tmp_path: Path) -> None:
    assert "+ profile/dpu-day0" in run_sztpctl("diff", "-f", fleet, env=env, expect=1).stdout
    run_sztpctl("apply", "-f", fleet, env=env)
    assert run_sztpctl("diff", "-f", fleet, env=env, expect=0).stdout.startswith("no differences")
    changed = fleet.with_name("changed.yaml")
    changed.write_text(fleet.read_text().replace("model: DPU-LAB-1", "model: DPU-LAB-2", 1))
    result = run_sztpctl("diff", "-f", changed, env=env, expect=1)
    assert "~ device/SN-0001" in result.stdout
    assert 'model: "DPU-LAB-1" → "DPU-LAB-2"' in result.stdout
    assert "SN-0002" not in result.stdout
    # Errors are never 1 ("differs"): a bad file is refused (5); an unreachable server and a
    # bad token are 2.
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  - serial: SN-0001\n    modle: x\n")
    assert "devices[0].modle" in run_sztpctl("diff", "-f", bad, env=env, expect=5).stderr
    gone = {**env, "SZTP_SERVER": f"http://127.0.0.1:{free_port()}"}
    run_sztpctl("diff", "-f", fleet, env=gone, expect=2)
    wrong = {**env, "SZTP_TOKEN": "sztp_not-a-token", "SZTP_TOKEN_FILE": ""}
    run_sztpctl("diff", "-f", fleet, env=wrong, expect=2)
    run_sztpctl("diff", env=env, expect=2)  # usage error: no -f


def test_export_then_diff_shows_no_difference(
    fleet: Path, env: dict[str, str], tmp_path: Path
) -> None:
    with_password = fleet.with_name("with-password.yaml")
    run_sztpctl("apply", "-f", with_password, env=env)
    exported = tmp_path / "exported.yaml"
    run_sztpctl("export", "-o", exported, env=env)
    assert stat.S_IMODE(exported.stat().st_mode) == 0o600
    text = exported.read_text()
    assert "password_hash: <hidden>" in text
    assert "private_key: <hidden>" in text
    assert PASSWORD not in text
    assert "PRIVATE KEY" not in text
    assert run_sztpctl("diff", "-f", exported, env=env).stdout.startswith("no differences")
    assert run_sztpctl("diff", "-f", with_password, env=env).stdout.startswith("no differences")
    assert run_sztpctl("export", env=env).stdout.split("\n", 1)[1] == text.split("\n", 1)[1]


# Text a YAML writer could get wrong, each in a field the server keeps as given.
AWKWARD_TEXTS = [
    "yes",
    "No",
    "null",
    "~",
    "0x1F",
    "1e3",
    "12:30:45",
    "2024-05-01",
    " leading space",
    'say "hi": #not a comment',
    "é ü 😀",
    "- dash",
    "{flow}",
]


def test_export_of_awkward_values_applies_back_as_a_no_op(
    fleet: Path, env: dict[str, str], tmp_path: Path
) -> None:
    document = yaml.safe_load(fleet.read_text())
    profile = document["profiles"][0]
    profile["configuration"] = "  indented first line\n\ttab\n\nblank line above\n\n"
    profile["pre_configuration_script"] = '#!/bin/sh\necho "yes: no" # comment\nexit 0'
    devices = document["devices"]
    for index, text in enumerate(AWKWARD_TEXTS):
        rules = [{"profile": profile["name"], "hw_model": text, "os_version": "1.10"}]
        devices.append({"serial": f"SN-9{index:03d}", "model": text, "selection": rules})
    awkward = fleet.with_name("awkward.yaml")
    awkward.write_text(yaml.safe_dump(document, allow_unicode=True))
    run_sztpctl("apply", "-f", awkward, env=env)
    exported = tmp_path / "exported.yaml"
    run_sztpctl("export", "-o", exported, env=env)
    assert run_sztpctl("diff", "-f", exported, env=env).stdout.startswith("no differences")
    assert run_sztpctl("apply", "-f", exported, env=env).stdout.startswith("no changes")
    assert run_sztpctl("export", env=env).stdout == exported.read_text()


def test_an_export_that_breaks_off_fails_and_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    """The server sends the state's start, then the connection ends: no fleet file may look
    whole (a shorter fleet applied with --prune would delete the rest)."""
    import http.server
    import threading

    start = b'{"revision":5,"resources":{"trust-anchor":{},"owner":{},"device":{"SN-1":{},'

    class BreakingOff(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(start), start))
            self.close_connection = True

        def log_message(self, *_args: object) -> None:
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), BreakingOff) as fake:
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        env = {
            **{name: value for name, value in os.environ.items() if not name.startswith("SZTP_")},
            "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
            "SZTP_SERVER": f"http://127.0.0.1:{fake.server_address[1]}",
            "SZTP_TOKEN": "sztp_test",
        }
        exported = tmp_path / "out" / "fleet.yaml"
        exported.parent.mkdir()
        exported.write_text("# the previous export\n")
        failed = run_sztpctl("export", "-o", exported, env=env, expect=1)
        assert "broke off" in failed.stderr
        assert exported.read_text() == "# the previous export\n"
        assert [path.name for path in exported.parent.iterdir()] == ["fleet.yaml"]
        to_stdout = run_sztpctl("export", env=env, expect=1)
        assert to_stdout.stdout.startswith("# exported from")
        assert "broke off" in to_stdout.stderr
        fake.shutdown()


def test_a_reader_leaving_mid_export_is_no_error_to_the_server(
    fleet: Path, env: dict[str, str], server: RunningServer
) -> None:
    run_sztpctl("apply", "-f", fleet, env=env)  # the owner that signs the profiles
    configuration = "x" * 1_000_000
    server.apply(
        {
            "profile": {
                f"large-{index}": {"type": "onboarding", "configuration": configuration}
                for index in range(12)
            }
        }
    )
    host, port = server.admin_url.split("://")[1].rsplit(":", 1)
    with socket.socket() as reader:
        reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        reader.connect((host, int(port)))
        request = f"GET /api/v1/state HTTP/1.1\r\nHost: {host}\r\n"
        reader.sendall(f"{request}Authorization: Bearer {server.token}\r\n\r\n".encode())
        assert reader.recv(1024).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)  # the server fills the connection's buffers and waits for room
    assert server.client().get_state()[1]["profile"]["large-0"]["configuration"] == configuration
    assert "Traceback" not in server.log
    assert not [record for record in server.log_records() if record.get("level") == "error"]


def test_prune_deletes_only_within_the_sections_listed(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    run_sztpctl("apply", "-f", fleet, env=env)
    document = yaml.safe_load(fleet.read_text())
    only_one = tmp_path / "one-device.yaml"
    only_one.write_text(yaml.safe_dump({"devices": document["devices"][:1]}))
    # References are relative to the fleet file: the voucher goes next to it.
    (tmp_path / "SN-0001.vcj").write_bytes((fleet.parent / "SN-0001.vcj").read_bytes())
    assert run_sztpctl("apply", "-f", only_one, env=env).stdout.startswith("no changes")
    result = run_sztpctl("apply", "-f", only_one, "--prune", env=env)
    assert result.stdout.splitlines()[0] == "- device/SN-0002"
    assert "applied: 0 created, 0 updated, 1 deleted" in result.stdout
    _, state = server.client().get_state()
    assert list(state["device"]) == ["SN-0001"]
    assert list(state["profile"]) == ["dpu-day0"]


def test_secrets_are_never_printed(fleet: Path, env: dict[str, str]) -> None:
    with_password = fleet.with_name("with-password.yaml")
    run_sztpctl("apply", "-f", with_password, env=env)
    changed = {**env, "SN2_PASSWORD": "another password"}
    result = run_sztpctl("diff", "-f", with_password, env=changed, expect=1)
    assert result.stdout.splitlines()[:2] == ["~ device/SN-0002", "    a secret changed"]
    key = (fleet.parent / "pki/owner/owner.key").read_text().splitlines()[1]
    for output in (result.stdout, result.stderr):
        assert "another password" not in output
        assert PASSWORD not in output
        assert key not in output


def test_unreachable_server_is_one_line(fleet: Path, env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    gone = {**env, "SZTP_SERVER": url}
    result = run_sztpctl("apply", "-f", fleet, env=gone, expect=1)
    assert only_line(result.stderr) == f"error: cannot reach {url}: Connection refused"
    assert only_line(run_sztpctl("diff", "-f", fleet, env=gone, expect=2).stderr).startswith(
        f"error: cannot reach {url}"
    )
    run_sztpctl("status", env=gone, expect=1)
    no_server = {key: value for key, value in env.items() if key != "SZTP_SERVER"}
    line = only_line(run_sztpctl("status", env=no_server, expect=1).stderr)
    assert line.startswith("error: no server: pass --server")


def test_bad_token_is_one_line_without_the_token(
    fleet: Path, env: dict[str, str], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("sztp_wrong-token-value\n")
    result = run_sztpctl("--token-file", token_file, "apply", "-f", fleet, env=env, expect=1)
    assert only_line(result.stderr) == "error: the API token is not valid (HTTP 401)"
    assert "wrong-token-value" not in result.stdout + result.stderr
    missing = run_sztpctl("--token-file", tmp_path / "absent", "status", env=env, expect=1)
    assert "cannot read token file" in only_line(missing.stderr)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # Caught by the schema, before any request.
        (lambda text: text.replace("os_name: LabOS", "os_name: 12"), "images[0].os_name"),
        # A missing referenced file.
        (lambda text: text.replace("day0.cfg", "missing.cfg"), "profiles[0].configuration"),
        # Refused by the server (422): mapped back to the line of the fleet file.
        (
            lambda text: text.replace("SN-0002.vcj", "SN-0001.vcj"),
            "devices[1].voucher: ownership voucher is for serial number 'SN-0001', "
            "not this device ('SN-0002')",
        ),
        (lambda text: text.replace("image: labos-1.2", "image: nope"), "profiles[0].image"),
    ],
)
def test_bad_fleet_file_is_one_line_naming_the_problem(
    fleet: Path,
    env: dict[str, str],
    server: RunningServer,
    change: Callable[[str], str],
    expected: str,
) -> None:
    bad = fleet.with_name("bad.yaml")
    bad.write_text(change(fleet.read_text()))
    line = only_line(run_sztpctl("apply", "-f", bad, env=env, expect=5).stderr)
    assert line.startswith(f"error: {bad}:")
    assert expected in line
    _, state = server.client().get_state()
    assert all(not specs for specs in state.values())  # nothing half-applied


def test_device_status_after_a_simulated_run(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    # The example's image lives on a host that does not exist: onboard with configuration only.
    document = yaml.safe_load(fleet.read_text())
    del document["profiles"][0]["image"]
    config_only = fleet.with_name("config-only.yaml")
    config_only.write_text(yaml.safe_dump(document))
    run_sztpctl("apply", "-f", config_only, env=env)

    lab = example_lab(fleet)
    files = lab.devices["SN-0001"].idevid
    result = simulate(
        SimulatorConfig(
            bootstrap_uris=(server.device_url,),
            trust_anchors=tuple(
                pki.load_certificates_pem(lab.manufacturer_ca.certificate.read_bytes())
            ),
            server_ca=lab.tls_ca.certificate,
            work_dir=tmp_path / "device",
            timeout=10.0,
        ),
        DeviceIdentity(
            serial_number="SN-0001",
            idevid_certificate=files.certificate,
            idevid_key=files.private_key,
            hw_model="DPU-LAB-1",
        ),
    )
    assert result.succeeded, result.reason

    # status is the summary, history the timeline: each shows what the other does not.
    summary = run_sztpctl("device", "status", "SN-0001", env=env).stdout
    assert "SN-0001: complete (1 attempt(s))" in summary
    assert "last report: bootstrap-complete at" in summary
    assert "bootstrap-initiated" not in summary
    status = json.loads(run_sztpctl("device", "status", "SN-0001", "-o", "json", env=env).stdout)
    assert status["status"] == "complete"
    assert status["last_report"]["progress_type"] == "bootstrap-complete"
    as_yaml = yaml.safe_load(
        run_sztpctl("device", "status", "SN-0001", "-o", "yaml", env=env).stdout
    )
    assert as_yaml == status
    timeline = run_sztpctl("device", "history", "SN-0001", env=env).stdout
    assert "attempt 1" in timeline
    assert "bootstrap-initiated" in timeline
    assert "SN-0001: complete" not in timeline
    history = json.loads(run_sztpctl("device", "history", "SN-0001", "-o", "json", env=env).stdout)
    reports = [report["progress_type"] for report in history["attempts"][0]["reports"]]
    assert reports[0] == "bootstrap-initiated"
    assert reports[-1] == "bootstrap-complete"
    # Its requests as the flight recorder has them, oldest first: what it asked and got.
    requests_made = [(event["rpc"], event["status"]) for event in history["requests"]]
    assert requests_made[0] == ("get-bootstrapping-data", 200)
    assert ("report-progress", 204) in requests_made
    assert all(event["authenticated"] for event in history["requests"])
    assert "requests (oldest first)" in timeline and "get-bootstrapping-data" in timeline
    never_seen = run_sztpctl("device", "history", "SN-0002", env=env).stdout
    assert never_seen.strip() == "SN-0002: no progress reports yet"

    fleet_status = json.loads(run_sztpctl("status", "-o", "json", env=env).stdout)
    assert fleet_status["devices"] == 2
    assert fleet_status["counts"]["complete"] == 1
    assert fleet_status["counts"]["not-seen"] == 1
    assert "complete" in run_sztpctl("status", env=env).stdout

    listed = run_sztpctl("device", "list", "--status", "complete", "-o", "json", env=env).stdout
    assert [device["name"] for device in json.loads(listed)] == ["SN-0001"]
    table = run_sztpctl("device", "list", env=env).stdout
    assert "SN-0002" in table
    assert "2 device(s)" in table
    missing = run_sztpctl("device", "status", "SN-9999", env=env, expect=1)
    assert only_line(missing.stderr) == ("error: no device with serial number 'SN-9999' (HTTP 404)")
    run_sztpctl("device", "list", "--status", "bogus", env=env, expect=2)


def test_contexts_from_the_config_file(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    bare = {key: value for key, value in env.items() if not key.startswith("SZTP_")}
    run_sztpctl(
        "config", "set-context", "lab", "--server", server.admin_url,
        "--token-file", server.token_file, env=bare,
    )  # fmt: skip
    config = tmp_path / "xdg" / "sztp" / "config.yaml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert "* lab" in run_sztpctl("config", "get-contexts", env=bare).stdout
    run_sztpctl("status", env=bare)  # the current context is enough
    run_sztpctl("config", "set-context", "other", "--server", "http://127.0.0.1:1", env=bare)
    assert "* lab" in run_sztpctl("config", "get-contexts", env=bare).stdout
    run_sztpctl("--context", "other", "status", env=bare, expect=1)
    run_sztpctl("status", env={**bare, "SZTP_CONTEXT": "other"}, expect=1)
    # The command line beats the environment, which beats the context.
    run_sztpctl(
        "--context", "other", "--server", server.admin_url,
        "--token-file", server.token_file, "status", env=bare,
    )  # fmt: skip
    run_sztpctl("config", "use-context", "other", env=bare)
    run_sztpctl("status", env=bare, expect=1)
    overrides = {"SZTP_SERVER": server.admin_url, "SZTP_TOKEN": server.token}
    run_sztpctl("status", env={**bare, **overrides})
    line = only_line(run_sztpctl("--context", "nope", "status", env=bare, expect=1).stderr)
    assert line == f"error: no context named 'nope' in {config} (lab, other)"
    assert server.token not in config.read_text()  # --token-file keeps the token out


def test_client_resource_calls_and_typed_errors(
    fleet: Path, env: dict[str, str], server: RunningServer
) -> None:
    run_sztpctl("apply", "-f", fleet, env=env)
    with server.client() as client:
        revision, _ = client.get_state()
        device = client.get("device", "SN-0001")
        assert device["spec"]["profile"] == "dpu-day0"
        client.put("device", "SN 0003/b", {"profile": "dpu-day0", "model": "X"})
        assert client.get("device", "SN 0003/b")["spec"]["model"] == "X"
        assert [d["name"] for d in client.list("device", model="X")] == ["SN 0003/b"]
        client.delete("device", "SN 0003/b")
        with pytest.raises(NotFoundApiError):
            client.get("device", "SN 0003/b")
        with pytest.raises(ApiConflictError) as conflict:
            client.apply_state({"device": {}}, prune=True, if_match=revision)
        assert conflict.value.status == 412
        with pytest.raises(ApiConflictError):
            client.delete("profile", "dpu-day0")  # still in use
    with pytest.raises(AuthenticationError), SztpClient(server.admin_url, None) as anonymous:
        anonymous.fleet_status()


def test_client_tls_uses_the_given_ca_bundle(fleet: Path, tmp_path: Path) -> None:
    """REQUESTS_CA_BUNDLE (set on some machines) must not override an explicit CA bundle."""
    lab = example_lab(fleet)
    with running_server(tmp_path / "tls", lab=lab, admin_tls=True) as tls_server:
        assert tls_server.admin_url.startswith("https://")
        trusted = SztpClient(
            tls_server.admin_url, tls_server.token, ca_bundle=lab.tls_ca.certificate
        )
        assert trusted.fleet_status()["devices"] == 0
        untrusted = SztpClient(tls_server.admin_url, tls_server.token)
        with pytest.raises(ServerUnreachable) as failure:
            untrusted.fleet_status()
        assert str(failure.value).startswith(
            f"cannot reach {tls_server.admin_url}: TLS handshake failed:"
        )
        assert "certificate verify failed" in str(failure.value)


def test_every_unreachable_server_message_names_the_url() -> None:
    """Refused, silent or failing TLS: one wording, `cannot reach URL: why`."""
    with socket.socket() as silent:  # listens, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(ServerUnreachable) as failure, SztpClient(url, "t", timeout=0.2) as c:
            c.fleet_status()
    assert str(failure.value) == f"cannot reach {url}: no answer within 0.2 s"


def test_read_only_token_may_diff_but_not_apply(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    created = requests.post(
        f"{server.admin_url}/api/v1/tokens",
        json={"name": f"ci-{tmp_path.name}"[:64], "role": "read-only"},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    token_file = tmp_path / "read-only-token"
    token_file.write_text(created.json()["token"])
    reader = {**env, "SZTP_TOKEN_FILE": str(token_file)}
    assert "+ device/SN-0001" in run_sztpctl("diff", "-f", fleet, env=reader, expect=1).stdout
    refused = run_sztpctl("apply", "-f", fleet, env=reader, expect=1)
    assert "read-only token cannot change anything" in refused.stderr
    _, state = server.client().get_state()
    assert not state["device"]


def planned_revision(diff_output: str) -> str:
    """The revision `diff` names on its last line, as a pipeline reads it for --if-revision."""
    match = re.fullmatch(r"differences: .* \(server at revision (\d+)\)", diff_output.strip())
    assert match, diff_output
    return match[1]


def test_apply_if_revision_refuses_a_stale_plan(
    fleet: Path, env: dict[str, str], server: RunningServer
) -> None:
    changed = fleet.with_name("stale.yaml")
    changed.write_text(fleet.read_text().replace("model: DPU-LAB-1", "model: DPU-LAB-9", 1))
    plan = run_sztpctl("diff", "-f", changed, env=env, expect=1).stdout.splitlines()[-1]
    revision = planned_revision(plan)
    assert revision == str(server.client().get_state()[0])
    run_sztpctl("apply", "-f", fleet, env=env)  # someone else applied in between
    refused = run_sztpctl("apply", "-f", changed, "--if-revision", revision, env=env, expect=4)
    assert only_line(refused.stderr).endswith("not the one If-Match names (HTTP 412)")
    _, state = server.client().get_state()
    assert state["device"]["SN-0001"]["model"] == "DPU-LAB-1"
    # Planned again on the new state, the same change applies.
    replanned = run_sztpctl("diff", "-f", changed, env=env, expect=1).stdout.splitlines()[-1]
    run_sztpctl("apply", "-f", changed, "--if-revision", planned_revision(replanned), env=env)
    assert server.client().get_state()[1]["device"]["SN-0001"]["model"] == "DPU-LAB-9"


def test_hidden_marker_is_not_a_password(fleet: Path, env: dict[str, str]) -> None:
    document = yaml.safe_load(fleet.read_text())
    document["devices"][0]["password"] = "<hidden>"
    marked = fleet.with_name("marked.yaml")
    marked.write_text(yaml.safe_dump(document))
    refused = run_sztpctl("apply", "-f", marked, env=env, expect=5)
    assert "marks a kept secret" in only_line(refused.stderr)


def test_server_check_validates_without_starting(fleet: Path, tmp_path: Path) -> None:
    """`sztp-server check` (the Ansible role's template validation): 0 on a valid file, 2 and
    one line naming the defect otherwise; it opens no database and binds no port."""
    import subprocess

    from sztp_testing import SZTP_SERVER

    assert SZTP_SERVER
    lab = example_lab(fleet)
    database = tmp_path / "never-created.db"
    listener = {
        "host": "127.0.0.1",
        "port": free_port(),
        "tls_cert": str(lab.server.certificate),
        "tls_key": str(lab.server.private_key),
    }
    config: dict[str, object] = {
        "database_url": f"sqlite://{database}",
        "device_listeners": [listener],
        "admin_listener": {"host": "127.0.0.1", "port": free_port()},
    }

    def check(document: dict[str, object], **env: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "server.yaml"
        path.write_text(yaml.safe_dump(document))
        return run_sztp_server("check", path, env=env)

    valid = check(config)
    assert valid.returncode == 0, valid.stderr
    assert "configuration OK" in valid.stdout
    assert not database.exists()

    defects = [
        ({**config, "bogus": 1}, {}, "bogus: unknown setting"),
        ({**config, "log_level": "loud"}, {}, "log_level"),
        (
            {**config, "device_listeners": [{**listener, "tls_key": str(tmp_path / "no.key")}]},
            {},
            "no.key",
        ),
        (
            {**config, "device_listeners": [{**listener, "tls_key": str(lab.tls_ca.private_key)}]},
            {},
            "not a matching certificate and private key",
        ),
        (config, {"SZTP_SERVER_DATABASE_URL": "mysql://user:s3cret@db/sztp"}, "unsupported"),
    ]
    for document, env, message in defects:
        result = check(document, **env)
        assert result.returncode == 2, (message, result.stderr)
        assert message in only_line(result.stderr)
        assert "s3cret" not in result.stderr


def config_only(fleet: Path) -> Path:
    """The example fleet without its image (which lives on a host that does not exist), so a
    simulated device completes; with the image, its download fails and the device fails."""
    document = yaml.safe_load(fleet.read_text())
    del document["profiles"][0]["image"]
    path = fleet.with_name("config-only.yaml")
    path.write_text(yaml.safe_dump(document))
    return path


def test_wait_follows_a_device_to_complete(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    import subprocess

    from sztp_testing import SZTPCTL, simulate_lab_device

    run_sztpctl("apply", "-f", config_only(fleet), env=env)
    assert SZTPCTL
    waiting = subprocess.Popen(
        [SZTPCTL, "wait", "SN-0001", "--for", "status=complete", "--timeout", "60", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert waiting.stderr is not None
        # Not a terminal: one progress line per change of the counts.
        assert waiting.stderr.readline().startswith("waiting for complete: 1 not-seen")
        result = simulate_lab_device(example_lab(fleet), server.device_url, "SN-0001", tmp_path)
        assert result.succeeded, result.reason
        stdout, stderr = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, stderr
    assert "Traceback" not in stderr
    ended = json.loads(stdout)
    assert ended["outcome"] == "reached"
    assert ended["devices"] == {"SN-0001": "complete"}
    assert ended["counts"]["complete"] == 1
    # Once there, it stays there for later waits, here with a selector.
    again = run_sztpctl(
        "wait", "--profile", "dpu-day0", "--for", "status=complete,not-seen", env=env
    )
    assert again.stdout.strip() == "2 device(s) complete or not-seen"


def test_wait_times_out_naming_the_devices_not_there(fleet: Path, env: dict[str, str]) -> None:
    run_sztpctl("apply", "-f", fleet, env=env)
    timed_out = run_sztpctl("wait", "SN-0001", "SN-0002", "--timeout", "0.5", env=env, expect=3)
    assert timed_out.stdout == ""
    assert only_line(timed_out.stderr.splitlines()[-1]) == (
        "error: timed out: 2 of 2 device(s) not complete: SN-0001 (not-seen), SN-0002 (not-seen)"
    )
    as_yaml = run_sztpctl(
        "wait", "--site", "lab1", "--timeout", "0", "-o", "yaml", env=env, expect=3
    )
    assert yaml.safe_load(as_yaml.stdout)["outcome"] == "timed-out"


def test_wait_ends_at_once_when_a_device_fails(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    from sztp_testing import simulate_lab_device

    run_sztpctl("apply", "-f", fleet, env=env)
    result = simulate_lab_device(example_lab(fleet), server.device_url, "SN-0001", tmp_path)
    assert not result.succeeded  # the image's host does not exist
    started = time.monotonic()
    failed = run_sztpctl("wait", "--profile", "dpu-day0", "--timeout", "60", env=env, expect=6)
    assert time.monotonic() - started < 30
    assert failed.stderr.splitlines()[-1].startswith(
        "error: failed while waiting for complete: SN-0001;"
    )
    # Waited for, failed is an end like any other.
    run_sztpctl("wait", "SN-0001", "--for", "status=complete,failed", env=env)


def test_wait_names_unknown_devices_and_refuses_bad_usage(fleet: Path, env: dict[str, str]) -> None:
    run_sztpctl("apply", "-f", fleet, env=env)
    unknown = run_sztpctl("wait", "SN-0001", "SN-9999", "NOPE", "--timeout", "5", env=env, expect=1)
    assert only_line(unknown.stderr) == "error: no device with serial number 'SN-9999', 'NOPE'"
    nothing = run_sztpctl("wait", "--profile", "nope", env=env, expect=1)
    assert only_line(nothing.stderr) == "error: no device matches profile 'nope'"
    for usage in (
        [],
        ["SN-0001", "--profile", "dpu-day0"],
        ["SN-0001", "--for", "status=done"],
        ["SN-0001", "--for", "complete"],
        ["SN-0001", "--timeout", "-1"],
    ):
        run_sztpctl("wait", *usage, env=env, expect=2)


def server_plan(server: RunningServer, fleet: Path, *, prune: bool) -> dict[str, object]:
    """The server's own summary plan of `fleet`, asked for directly."""
    from sztp.state.fleet import load_fleet

    response = requests.post(
        f"{server.admin_url}/api/v1/state",
        params={"dry_run": "true", "plan": "summary"},
        json={"resources": load_fleet(fleet).resources, "prune": prune},
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    plan: dict[str, object] = response.json()
    return plan


def test_diff_and_apply_print_the_servers_plan(
    fleet: Path, env: dict[str, str], server: RunningServer
) -> None:
    planned = run_sztpctl("diff", "-f", fleet, "--prune", "-o", "json", env=env, expect=1)
    assert json.loads(planned.stdout) == server_plan(server, fleet, prune=True)
    dry = run_sztpctl("apply", "-f", fleet, "--dry-run", "-o", "yaml", env=env)
    assert yaml.safe_load(dry.stdout) == server_plan(server, fleet, prune=False)
    applied = json.loads(run_sztpctl("apply", "-f", fleet, "-o", "json", env=env).stdout)
    assert applied["dry_run"] is False
    assert {(change["action"], change["name"]) for change in applied["changes"]} >= {
        ("create", "SN-0001"),
        ("create", "dpu-day0"),
    }
    changed = fleet.with_name("changed.yaml")
    changed.write_text(fleet.read_text().replace("model: DPU-LAB-1", "model: DPU-LAB-2", 1))
    update = json.loads(run_sztpctl("diff", "-f", changed, "-o", "json", env=env, expect=1).stdout)
    assert update == server_plan(server, changed, prune=False)
    assert update["changes"] == [
        {
            "action": "update",
            "kind": "device",
            "name": "SN-0001",
            "fields": ["model"],
            "before": {"model": "DPU-LAB-1"},
            "after": {"model": "DPU-LAB-2"},
        }
    ]
    same = json.loads(run_sztpctl("diff", "-f", fleet, "-o", "json", env=env).stdout)
    assert same == {"revision": applied["revision"], "dry_run": True, "changes": []}

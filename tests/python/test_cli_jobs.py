"""Long writes never lie: `sztpctl apply` that stops following a write (--timeout, or
interrupted) names the server's job, exits apart from a failure, and `sztpctl job` finds out
later what the write did (issue 14)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from sztp_testing import SZTPCTL, RunningServer, run_sztpctl, running_server

# Each new password is a deliberately slow hash: this many take the server a few seconds.
SLOW_DEVICES = 120


def slow_fleet(directory: Path, prefix: str) -> Path:
    path = directory / f"{prefix}.yaml"
    devices = [
        {"serial": f"{prefix}-{number:03d}", "password": f"password {number}"}
        for number in range(SLOW_DEVICES)
    ]
    path.write_text(yaml.safe_dump({"devices": devices}))
    return path


def job_named(stderr: str) -> str:
    found = re.search(r"as job ([0-9a-f]+) \(\d+/\d+ checked\)", stderr)
    assert found, stderr
    assert "sztpctl job wait" in stderr and "Traceback" not in stderr
    return found.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    with running_server(tmp_path_factory.mktemp("jobs")) as running:
        yield running


def device_count(server: RunningServer, prefix: str) -> int:
    _, state = server.client().get_state()
    return sum(serial.startswith(prefix) for serial in state.get("device", {}))


def test_apply_past_its_timeout_names_the_job_that_goes_on(
    server: RunningServer, tmp_path: Path
) -> None:
    env = server.cli_env(tmp_path)
    fleet = slow_fleet(tmp_path, "TIMEOUT")
    stopped = run_sztpctl("apply", "-f", fleet, "--timeout", "0.5", env=env, expect=3)
    job = job_named(stopped.stderr)
    assert "stopped waiting" in stopped.stderr
    shown = run_sztpctl("job", "show", job, env=env)
    assert shown.stdout.startswith(f"job {job} of admin: ")
    waited = run_sztpctl("job", "wait", job, env=env)
    assert f"applied: {SLOW_DEVICES} created, 0 updated, 0 deleted" in waited.stdout
    assert device_count(server, "TIMEOUT") == SLOW_DEVICES
    document = json.loads(run_sztpctl("job", "show", job, "-o", "json", env=env).stdout)
    assert document["state"] == "succeeded" and document["progress"]["done"] == SLOW_DEVICES
    assert len(document["result"]["changes"]) == SLOW_DEVICES
    assert "password" not in json.dumps(document["result"]).replace("password_hash", "")


def test_an_interrupted_apply_names_the_job_and_the_write_lands(
    server: RunningServer, tmp_path: Path
) -> None:
    env = server.cli_env(tmp_path)
    fleet = slow_fleet(tmp_path, "INTERRUPT")
    process = subprocess.Popen(
        [SZTPCTL, "apply", "-f", str(fleet)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)  # the write is under way on the server by now (scrypt after scrypt)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    job = job_named(stderr)
    assert "interrupted" in stderr
    run_sztpctl("job", "wait", job, env=env)
    assert device_count(server, "INTERRUPT") == SLOW_DEVICES


def test_a_job_that_fails_is_reported_as_its_request_would_have_failed(
    server: RunningServer, tmp_path: Path
) -> None:
    env = server.cli_env(tmp_path)
    fleet = tmp_path / "bad.yaml"
    devices = [{"serial": f"BAD-{number:03d}", "password": "pw"} for number in range(40)]
    devices.append({"serial": "BAD-MAC", "mac": "not a mac"})
    fleet.write_text(yaml.safe_dump({"devices": devices}))
    failed = run_sztpctl("apply", "-f", fleet, env=env, expect=5)
    assert "devices[40].mac" in failed.stderr and "not a MAC address" in failed.stderr
    assert device_count(server, "BAD") == 0


def test_an_unknown_job_is_a_clear_error(server: RunningServer, tmp_path: Path) -> None:
    env = server.cli_env(tmp_path)
    unknown = run_sztpctl("job", "show", "0123456789abcdef", env=env, expect=1)
    assert "no such job" in unknown.stderr
    unknown = run_sztpctl("job", "wait", "0123456789abcdef", env=env, expect=1)
    assert "no such job" in unknown.stderr

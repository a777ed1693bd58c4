"""Activation codes: machine-generated device secrets stored with a fast salted hash, checked
in microseconds, while a wrong one costs what any failed login costs (issue 14)."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from typer.testing import CliRunner

from sztp.errors import ApiConflictError, JobStillRunning, ValidationError
from sztp.passwords import (
    ACTIVATION_CODE,
    SecretKind,
    generate_activation_code,
    hash_activation_code,
    matches,
    parse_password_hash,
    verify_password,
)
from sztp.state.resources import normalize_spec
from sztp_server.config import ServerConfig
from sztp_server.context import Snapshot
from sztp_server.device_api.device_auth import AuthenticationFailed, DeviceAuthenticator, PeerInfo
from sztp_server.secret_key import SecretKey
from sztp_testing import RunningServer, run_sztpctl, running_server
from sztpctl.commands import app as cli_app
from sztpctl.commands import device as device_commands

SERIAL = "SN-CODE-1"


def test_a_generated_code_holds_160_random_bits_in_base64url() -> None:
    codes = {generate_activation_code() for _ in range(100)}
    assert len(codes) == 100
    for code in codes:
        assert ACTIVATION_CODE.fullmatch(code) and len(code) == 27
        assert len(base64.urlsafe_b64decode(code + "=")) == 20


def test_a_code_is_stored_as_a_salted_sha256_that_says_so(scrypt_calls: list[int]) -> None:
    code = generate_activation_code()
    stored = hash_activation_code(code)
    assert stored.startswith("$sha256$") and code not in stored
    assert hash_activation_code(code) != stored  # salted
    parsed = parse_password_hash(stored)
    assert parsed.kind is SecretKind.ACTIVATION_CODE
    assert matches(code, parsed)
    assert not matches(code[:-1] + ("A" if code[-1] != "A" else "B"), parsed)
    assert verify_password(code, stored, SecretKind.ACTIVATION_CODE)
    assert not verify_password(code, stored, SecretKind.PASSWORD)
    assert scrypt_calls == []


PERSON_CHOSE = "a secret a person chose is a password"


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("short-code", PERSON_CHOSE),
        ("a" * 26, PERSON_CHOSE),
        ("correct horse battery staple", PERSON_CHOSE),
        ("é" * 30, PERSON_CHOSE),
        ("x" * 129, "longer than 128 characters"),
    ],
)
def test_a_secret_that_does_not_look_generated_is_refused_as_a_code(
    code: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        normalize_spec("device", SERIAL, {"activation_code": code})
    assert refused.value.field == f"device[{SERIAL}].activation_code"
    assert problem in refused.value.message


def test_a_device_has_a_password_or_a_code_not_both() -> None:
    code = generate_activation_code()
    with pytest.raises(ValidationError) as refused:
        normalize_spec("device", SERIAL, {"password": "pw", "activation_code": code})
    assert refused.value.field == f"device[{SERIAL}].password"
    assert "not both" in refused.value.message


def test_the_server_recognises_an_unchanged_code_and_a_change_of_kind(
    scrypt_calls: list[int],
) -> None:
    key = SecretKey(os.urandom(32))
    code = generate_activation_code()
    first = key.normalize("device", SERIAL, {"activation_code": code}, None, hash_passwords=True)
    assert first["password_hash"].startswith("$sha256$") and scrypt_calls == []
    again = key.normalize("device", SERIAL, {"activation_code": code}, first, hash_passwords=True)
    assert again == first
    assert key.recognise_secret(SERIAL, {"activation_code": code}, first) == {
        "password_hash": first["password_hash"]
    }
    # The same text given as a password is a password: slow hash, other check value.
    as_password = key.normalize("device", SERIAL, {"password": code}, first, hash_passwords=True)
    assert as_password["password_hash"].startswith("$scrypt$") and len(scrypt_calls) == 1
    assert as_password["password_check"] != first["password_check"]
    assert key.recognise_secret(SERIAL, {"password": code}, first) == {"password": code}


# ---- logins


def peer(serial: str, secret: str) -> PeerInfo:
    credentials = base64.b64encode(f"{serial}:{secret}".encode()).decode()
    return PeerInfo(
        remote="192.0.2.7", client_chain=(), headers=(("Authorization", f"Basic {credentials}"),)
    )


@pytest.fixture
def fleet() -> tuple[Snapshot, dict[str, str]]:
    """A snapshot with one activation-code device and one password device."""
    key = SecretKey(os.urandom(32))
    secrets = {"SN-CODE": generate_activation_code(), "SN-PASSWORD": "a person's password"}
    specs = {
        "SN-CODE": {"activation_code": secrets["SN-CODE"]},
        "SN-PASSWORD": {"password": secrets["SN-PASSWORD"]},
    }
    devices = {
        serial: key.normalize("device", serial, spec, None, hash_passwords=True)
        for serial, spec in specs.items()
    }
    return Snapshot(1, {"device": devices}, key), secrets


@pytest.fixture
def authenticator() -> Iterator[DeviceAuthenticator]:
    authenticator = DeviceAuthenticator(ServerConfig())
    yield authenticator
    authenticator.close()


def test_a_right_code_costs_no_scrypt_and_every_refusal_costs_one(
    fleet: tuple[Snapshot, dict[str, str]],
    authenticator: DeviceAuthenticator,
    scrypt_calls: list[int],
) -> None:
    snapshot, secrets = fleet

    def attempt(serial: str, secret: str) -> str | None:
        scrypt_calls.clear()
        try:
            return asyncio.run(authenticator.authenticate(snapshot, peer(serial, secret)))
        except AuthenticationFailed:
            return None

    assert attempt("SN-CODE", secrets["SN-CODE"]) == "SN-CODE" and scrypt_calls == []
    # A refusal takes one scrypt whichever way it fails: the known code device's wrong code,
    # an unknown serial, a wrong password.
    assert attempt("SN-CODE", generate_activation_code()) is None and len(scrypt_calls) == 1
    assert attempt("SN-NOBODY", secrets["SN-CODE"]) is None and len(scrypt_calls) == 1
    assert attempt("SN-PASSWORD", "wrong") is None and len(scrypt_calls) == 1
    assert attempt("SN-PASSWORD", secrets["SN-PASSWORD"]) == "SN-PASSWORD"
    assert len(scrypt_calls) == 1


def test_a_device_logs_in_with_its_code_on_a_real_server(tmp_path: Path) -> None:
    code = generate_activation_code()
    with running_server(tmp_path) as server:
        applied = server.client().apply_state({"device": {SERIAL: {"activation_code": code}}})
        assert [change.name for change in applied.changes] == [SERIAL]
        stored = server.client().get("device", SERIAL)
        assert stored["spec"]["password_hash"] == "<hidden>"
        assert login_status(server, SERIAL, code) == 404  # authenticated; no profile to serve
        assert login_status(server, SERIAL, generate_activation_code()) == 401
        assert login_status(server, "SN-NOBODY", code) == 401
        # The device is told access-denied; the operator is told why, in the log and metrics.
        refusals = ["no-bootstrapping-data", "wrong-secret", "unknown-serial"]
        assert server.refusals() == refusals
        metrics = requests.get(
            f"{server.admin_url}/metrics",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        ).text
        for refusal in refusals:
            assert (
                "sztp_refused_requests_total"
                f'{{reason="{refusal}",rpc="get-bootstrapping-data"}} 1' in metrics
            ), metrics
        again = server.client().apply_state({"device": {SERIAL: {"activation_code": code}}})
        assert again.changes == []


def test_sztpctl_issues_codes_shown_once_and_they_log_in(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as server:
        env = server.cli_env(tmp_path)
        server.apply({"device": {"SN-1": {"model": "dpu", "password": "old password"}, "SN-2": {}}})
        shown = run_sztpctl("device", "activation-code", "SN-1", "SN-2", env=env)
        codes = dict(line.split(" ") for line in shown.stdout.splitlines())
        assert sorted(codes) == ["SN-1", "SN-2"]
        assert all(ACTIVATION_CODE.fullmatch(code) for code in codes.values())
        assert login_status(server, "SN-1", codes["SN-1"]) == 404
        assert login_status(server, "SN-1", "old password") == 401  # replaced
        assert server.client().get("device", "SN-1")["spec"]["model"] == "dpu"  # kept
        # To a file: 0600, CSV, never over an existing one; an unknown serial changes nothing.
        codes_file = tmp_path / "codes.csv"
        written = run_sztpctl(
            "device", "activation-code", "SN-2", "--output-file", codes_file, env=env
        )
        assert "written to" in written.stdout and codes["SN-2"] not in written.stdout
        assert codes_file.stat().st_mode & 0o777 == 0o600
        header, line = codes_file.read_text().splitlines()
        assert header == "serial,activation_code" and line.startswith("SN-2,")
        assert login_status(server, "SN-2", line.split(",")[1]) == 404
        again = run_sztpctl(
            "device", "activation-code", "SN-2", "--output-file", codes_file, env=env, expect=1
        )
        assert "exists" in again.stderr
        revision = server.client().get_state()[0]
        unknown = run_sztpctl("device", "activation-code", "SN-2", "SN-NONE", env=env, expect=1)
        assert "no device with serial number 'SN-NONE'" in unknown.stderr
        assert server.client().get_state()[0] == revision
        # `device add` reads one from a file.
        code_file = tmp_path / "code"
        code_file.write_text(generate_activation_code() + "\n")
        run_sztpctl("device", "add", "SN-3", "--activation-code-file", code_file, env=env)
        assert login_status(server, "SN-3", code_file.read_text().strip()) == 404


def login_status(server: RunningServer, serial: str, secret: str) -> int:
    response = requests.post(
        f"{server.device_url}/restconf/operations/ietf-sztp-bootstrap-server:"
        "get-bootstrapping-data",
        headers={
            "Authorization": peer(serial, secret).header_values("Authorization")[0],
            "Content-Type": "application/yang-data+json",
        },
        timeout=30,
    )
    return response.status_code


class StoppingClient:
    """Stands in for the admin API client: one device, and an apply that ends in `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __enter__(self) -> StoppingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def get_state(self) -> tuple[int, dict[str, Any]]:
        return 3, {"device": {"SN-1": {"model": "dpu", "password_hash": "<hidden>"}}}

    def apply_state(self, *args: Any, **kwargs: Any) -> None:
        raise self.error


@pytest.mark.parametrize("output_file", [False, True])
def test_codes_of_a_write_that_may_still_land_are_never_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output_file: bool
) -> None:
    interrupted = JobStillRunning("0123456789abcdef", 0, 1, interrupted=True)
    monkeypatch.setattr(device_commands, "connect", lambda: StoppingClient(interrupted))
    codes_file = tmp_path / "codes.csv"
    arguments = ["device", "activation-code", "SN-1"]
    if output_file:
        arguments += ["--output-file", str(codes_file)]
    result = CliRunner().invoke(cli_app, arguments)
    assert result.exception is interrupted
    if output_file:
        assert codes_file.read_text().startswith("serial,activation_code\nSN-1,")
    else:
        code = result.stderr.splitlines()[-1].removeprefix("SN-1 ")
        assert ACTIVATION_CODE.fullmatch(code), result.stderr


def test_codes_of_a_refused_write_are_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = ApiConflictError(412, "precondition-failed", "the state moved on")
    monkeypatch.setattr(device_commands, "connect", lambda: StoppingClient(refused))
    codes_file = tmp_path / "codes.csv"
    result = CliRunner().invoke(
        cli_app, ["device", "activation-code", "SN-1", "--output-file", str(codes_file)]
    )
    assert result.exception is refused
    assert not codes_file.exists()

"""The server's secret key: owner private keys sealed in the database, device password check
values that spare a re-apply the scrypt derivations, and the key file's rules.

The PostgreSQL cases run when SZTP_TEST_POSTGRES_URL is set (see test_store.py).
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sztp import passwords
from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import pki
from sztp.simulator import DeviceIdentity, SimulationResult, SimulatorConfig, simulate
from sztp.state.resources import normalize_spec
from sztp_server.config import ServerConfig
from sztp_server.secret_key import (
    CREDENTIAL_NAME,
    SEALED_PREFIX,
    SecretKey,
    SecretKeyError,
    check_key_file,
    load_secret_key,
)
from sztp_server.store import Change, open_store
from sztp_server.tokens import SERVER_ACTOR
from sztp_testing import lab_voucher, run_sztp_server, running_server
from test_admin_api import Api, make_api
from test_store import postgres_url  # noqa: F401 - a fixture, asked for by name

SERIAL = "SN-0001"
DEVICES = 20


# ---- owner private keys


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("lab"), [SERIAL])


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/server/state/sztp.db"
    return str(request.getfixturevalue("postgres_url"))


def stored_owner_key(database: str) -> str:
    """The owner's private_key as the database holds it, read behind the server's back."""
    if database.startswith("sqlite:"):
        with sqlite3.connect(database.removeprefix("sqlite://")) as connection:
            (spec,) = connection.execute(
                "SELECT spec FROM resources WHERE kind = 'owner' AND name = 'default'"
            ).fetchone()
        return str(json.loads(spec)["private_key"])
    import psycopg

    with psycopg.connect(database) as connection:
        row = connection.execute(
            "SELECT spec->>'private_key' FROM resources WHERE kind = 'owner' AND name = 'default'"
        ).fetchone()
    assert row is not None
    return str(row[0])


def database_files(database: str) -> bytes:
    """Every byte of a SQLite database (its write-ahead log included)."""
    path = Path(database.removeprefix("sqlite://"))
    return b"".join(
        file.read_bytes() for file in (path, path.with_name(f"{path.name}-wal")) if file.exists()
    )


def onboarding(lab: LabPki) -> dict[str, Any]:
    return {
        **lab.trust_resources(),
        "profile": {"day0": {"type": "onboarding", "configuration": "hostname dpu\n"}},
        "device": {SERIAL: {"profile": "day0", "voucher": _b64(lab_voucher(lab, SERIAL))}},
    }


def signed_onboarding(lab: LabPki, device_url: str, work: Path) -> SimulationResult:
    """A device that does not trust the server's TLS certificate accepts only data signed by
    the owner its voucher names."""
    files = lab.devices[SERIAL].idevid
    config = SimulatorConfig(
        bootstrap_uris=(device_url,),
        trust_anchors=tuple(
            pki.load_certificates_pem(lab.manufacturer_ca.certificate.read_bytes())
        ),
        server_ca=None,
        file_server_ca=None,
        work_dir=work,
        timeout=10.0,
    )
    identity = DeviceIdentity(
        serial_number=SERIAL,
        idevid_certificate=files.certificate,
        idevid_key=files.private_key,
        hw_model="DPU-LAB",
        os_name="LabOS",
        os_version="1.0",
    )
    return simulate(config, identity)


def test_owner_key_is_stored_sealed_and_signs_after_a_restart(
    lab: LabPki, database: str, tmp_path: Path
) -> None:
    directory = tmp_path / "server"
    with running_server(directory, lab=lab, database_url=database) as server:
        response = _admin(server.admin_url, server.token, "POST", "/api/v1/state", onboarding(lab))
        assert response.status_code == 200, response.text
        key_file = directory / "state" / CREDENTIAL_NAME
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert "secret key created" in server.log
    assert stored_owner_key(database).startswith(SEALED_PREFIX)
    if database.startswith("sqlite:"):
        assert b"PRIVATE KEY" not in database_files(database)

    with running_server(directory, lab=lab, database_url=database) as server:
        result = signed_onboarding(lab, server.device_url, tmp_path / "device")
        assert result.succeeded, result.reason
        assert "secret key created" not in server.log


def test_plaintext_owner_keys_are_sealed_at_start(
    lab: LabPki, database: str, tmp_path: Path
) -> None:
    """A database written before sealing existed holds the PEM key; the server seals it."""
    old = open_store(database)
    try:
        old.apply(
            [Change("create", kind, name, spec) for kind, name, spec in _old_specs(lab)],
            actor="admin",
        )
    finally:
        old.close()
    assert "PRIVATE KEY" in stored_owner_key(database)

    with running_server(tmp_path / "server", lab=lab, database_url=database) as server:
        assert stored_owner_key(database).startswith(SEALED_PREFIX)
        result = signed_onboarding(lab, server.device_url, tmp_path / "device")
        assert result.succeeded, result.reason
        audit = _admin(server.admin_url, server.token, "GET", "/api/v1/audit").json()
    (sealing,) = [entry for entry in audit["entries"] if entry["action"] == "update"]
    assert (sealing["kind"], sealing["name"], sealing["actor"]) == (
        "owner",
        "default",
        SERVER_ACTOR,
    )
    assert "PRIVATE KEY" not in json.dumps(audit)


def _old_specs(lab: LabPki) -> list[tuple[str, str, dict[str, Any]]]:
    resources = onboarding(lab)
    return [
        (kind, name, normalize_spec(kind, name, resources[kind][name]))
        for kind in ("trust-anchor", "owner", "profile", "device")
        for name in resources[kind]
    ]


def test_after_the_key_file_is_replaced_the_owner_key_is_applied_again(
    lab: LabPki, tmp_path: Path
) -> None:
    """The documented recovery from a lost key: the server starts, says which owner cannot
    sign, refuses to keep the unusable key, and signs again once the key is applied."""
    directory = tmp_path / "server"
    with running_server(directory, lab=lab) as server:
        response = _admin(server.admin_url, server.token, "POST", "/api/v1/state", onboarding(lab))
        assert response.status_code == 200, response.text
    (directory / "state" / CREDENTIAL_NAME).write_text(os.urandom(32).hex() + "\n")

    with running_server(directory, lab=lab) as server:
        assert "owner private key does not open with this secret key" in server.log
        assert not signed_onboarding(lab, server.device_url, tmp_path / "before").succeeded
        owner = onboarding(lab)["owner"]["default"]
        kept = requests.put(
            f"{server.admin_url}/api/v1/owners/default",
            json={"spec": {**owner, "private_key": "<hidden>"}},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=60,
        )
        assert kept.status_code == 422
        assert "send the private key again" in kept.json()["error"]["message"]
        again = _admin(server.admin_url, server.token, "POST", "/api/v1/state", onboarding(lab))
        assert ("update", "owner") in [(c["action"], c["kind"]) for c in again.json()["changes"]]
        result = signed_onboarding(lab, server.device_url, tmp_path / "after")
        assert result.succeeded, result.reason


def test_sealed_key_does_not_open_for_another_owner_or_key() -> None:
    key = SecretKey(os.urandom(32))
    sealed = key.seal("default", "-----BEGIN PRIVATE KEY-----\n...")
    assert key.open("default", sealed) == "-----BEGIN PRIVATE KEY-----\n..."
    with pytest.raises(SecretKeyError, match="owner 'other'"):
        key.open("other", sealed)
    with pytest.raises(SecretKeyError):
        SecretKey(os.urandom(32)).open("default", sealed)
    assert key.seal("default", "same") != key.seal("default", "same")


# ---- the key file


def _config(tmp_path: Path, **settings: Any) -> ServerConfig:
    return ServerConfig(admin_token_file=tmp_path / "state" / "admin-token", **settings)


def test_the_default_key_file_is_created_once(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = load_secret_key(config, environ={})
    path = tmp_path / "state" / CREDENTIAL_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    again = load_secret_key(config, environ={})
    assert again.password_check("SN", "pw") == first.password_check("SN", "pw")


def test_check_accepts_a_default_key_file_yet_to_be_created_and_creates_none(
    tmp_path: Path,
) -> None:
    check_key_file(_config(tmp_path), environ={})
    assert not (tmp_path / "state").exists()


def test_a_systemd_credential_is_used_when_given(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / CREDENTIAL_NAME).write_text("ab" * 32 + "\n")
    (credentials / CREDENTIAL_NAME).chmod(0o400)
    loaded = load_secret_key(_config(tmp_path), environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert loaded.password_check("SN", "pw") == SecretKey(bytes([0xAB] * 32)).password_check(
        "SN", "pw"
    )
    assert not (tmp_path / "state" / CREDENTIAL_NAME).exists()


def test_an_unreadable_credential_directory_is_an_error_not_another_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As systemd 252 leaves it inside a container: root-only, so the service user gets EACCES
    # (simulated: the tests run as root, whom no mode keeps out).
    credentials = tmp_path / "credentials"
    real_exists = Path.exists

    def exists(path: Path) -> bool:
        if path.parent == credentials:
            raise PermissionError(13, "Permission denied")
        return real_exists(path)

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(SecretKeyError, match=r"credential .*secret-key: cannot read: Permission"):
        load_secret_key(_config(tmp_path), environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert not real_exists(tmp_path / "state" / CREDENTIAL_NAME)


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda path: None, "does not exist; restore it"),
        (lambda path: _write(path, "ab" * 32, 0o640), "open to its group or others (mode 0640)"),
        (lambda path: _write(path, "ab" * 32, 0o604), "open to its group or others (mode 0604)"),
        (lambda path: _write(path, "not hex", 0o600), "must hold 64 hex digits"),
        (lambda path: _write(path, "ab" * 16, 0o600), "must hold 64 hex digits"),
        (lambda path: path.mkdir(mode=0o700), "cannot read"),
    ],
)
def test_a_bad_key_file_stops_the_server_with_a_clear_error(
    tmp_path: Path, prepare: Callable[[Path], object], message: str
) -> None:
    key_file = tmp_path / "secret-key"
    prepare(key_file)
    config = tmp_path / "server.yaml"
    config.write_text(
        json.dumps(
            {
                "database_url": f"sqlite:///{tmp_path / 'sztp.db'}",
                "device_listeners": [{"host": "127.0.0.1", "port": 0}],
                "admin_listener": {"host": "127.0.0.1", "port": 0},
                "admin_token_file": str(tmp_path / "admin-token"),
                "secret_key_file": str(key_file),
            }
        )
    )
    for command in ("check", "run"):
        result = run_sztp_server(command, config)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert str(key_file) in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "admin-token").exists()
    if key_file.is_file():
        assert key_file.read_text().strip() not in result.stderr


def _write(path: Path, text: str, mode: int) -> None:
    path.write_text(text + "\n")
    path.chmod(mode)


# ---- device passwords


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    """Its writes run in this process, where `scrypt_calls` counts the derivations."""
    yield from make_api(tmp_path, writer_in_thread=True)


def devices(passwords_by_serial: dict[str, str]) -> dict[str, Any]:
    return {"device": {serial: {"password": word} for serial, word in passwords_by_serial.items()}}


def fleet_passwords() -> dict[str, str]:
    return {f"SN-{index:04d}": f"password {index}" for index in range(DEVICES)}


def read_only_token(api: Api) -> str:
    created = api.post("/api/v1/tokens", json={"name": "viewer", "role": "read-only"})
    assert created.status_code == 201, created.text
    return str(created.json()["token"])


def test_a_no_op_apply_with_passwords_derives_nothing(api: Api, scrypt_calls: list[int]) -> None:
    words = fleet_passwords()
    first = api.post("/api/v1/state", json={"resources": devices(words)})
    assert first.status_code == 200, first.text
    assert len(scrypt_calls) == DEVICES  # each password hashed once
    scrypt_calls.clear()

    again = api.post("/api/v1/state", json={"resources": devices(words)})
    assert again.json()["changes"] == []
    viewer = read_only_token(api)
    dry = api.post(
        "/api/v1/state",
        params={"dry_run": "true"},
        json={"resources": devices(words)},
        token=viewer,
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["changes"] == []
    assert scrypt_calls == []


def test_a_dry_run_with_a_changed_password_derives_nothing(
    api: Api, scrypt_calls: list[int]
) -> None:
    words = fleet_passwords()
    api.post("/api/v1/state", json={"resources": devices(words)})
    scrypt_calls.clear()
    changed = {**words, "SN-0003": "a new password"}
    viewer = read_only_token(api)
    for plan in ("full", "summary"):
        dry = api.post(
            "/api/v1/state",
            params={"dry_run": "true", "plan": plan},
            json={"resources": devices(changed)},
            token=viewer,
        )
        assert dry.status_code == 200, dry.text
        (change,) = dry.json()["changes"]
        assert (change["action"], change["name"]) == ("update", "SN-0003")
        assert change["after"]["password_hash"] == "<hidden>"
        assert "password_check" not in dry.text
    assert scrypt_calls == []
    refused = api.post("/api/v1/state", json={"resources": devices(changed)}, token=viewer)
    assert refused.status_code == 403
    assert scrypt_calls == []


def test_a_changed_password_is_hashed_again(api: Api, scrypt_calls: list[int]) -> None:
    words = fleet_passwords()
    api.post("/api/v1/state", json={"resources": devices(words)})
    before = api.store.get("device", "SN-0003")
    assert before is not None
    scrypt_calls.clear()

    changed = {**words, "SN-0003": "a new password"}
    applied = api.post(
        "/api/v1/state", params={"plan": "summary"}, json={"resources": devices(changed)}
    )
    (change,) = applied.json()["changes"]
    assert change["fields"] == ["password_hash"]
    assert len(scrypt_calls) == 1
    after = api.store.get("device", "SN-0003")
    assert after is not None
    assert after.spec["password_hash"] != before.spec["password_hash"]
    assert passwords.verify_password("a new password", after.spec["password_hash"])
    assert not passwords.verify_password("password 3", after.spec["password_hash"])
    scrypt_calls.clear()
    assert api.post("/api/v1/state", json={"resources": devices(changed)}).json()["changes"] == []
    assert scrypt_calls == []


def test_a_refused_device_costs_no_scrypt(api: Api, scrypt_calls: list[int]) -> None:
    refused = api.post(
        "/api/v1/state",
        json={"resources": {"device": {SERIAL: {"password": "new", "mac": "not a MAC"}}}},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == f"device[{SERIAL}].mac"
    assert scrypt_calls == []


def test_the_check_value_is_never_shown(api: Api) -> None:
    words = fleet_passwords()
    api.post("/api/v1/state", json={"resources": devices(words)})
    stored = api.store.get("device", "SN-0001")
    assert stored is not None
    check = stored.spec["password_check"]
    exported = api.get("/api/v1/state")
    round_trip = api.post("/api/v1/state", json={"resources": exported.json()["resources"]})
    assert round_trip.json()["changes"] == []
    api.get("/api/v1/devices/SN-0001")
    api.get("/api/v1/devices")
    api.get("/api/v1/audit")
    for body in api.bodies:
        assert "password_check" not in body
        assert check not in body
    smuggled = api.put("/api/v1/devices/SN-0001", json={"spec": {"password_check": check}})
    assert smuggled.status_code == 422
    assert smuggled.json()["error"]["field"] == "device[SN-0001].password_check"


def test_a_password_stored_before_check_values_is_verified_once(
    api: Api, scrypt_calls: list[int]
) -> None:
    """A hash without a check value (stored by an older server): the first apply checks the
    password with scrypt and records the check value; later applies need no scrypt."""
    old_hash = passwords.hash_password("old")
    api.store.apply(
        [
            Change(
                "create",
                "device",
                SERIAL,
                {**_empty_device(), "password_hash": old_hash},
            )
        ],
        actor="admin",
    )
    scrypt_calls.clear()
    api.post("/api/v1/state", json={"resources": devices({SERIAL: "old"})})
    assert len(scrypt_calls) == 1
    stored = api.store.get("device", SERIAL)
    assert stored is not None and "password_check" in stored.spec
    scrypt_calls.clear()
    assert (
        api.post("/api/v1/state", json={"resources": devices({SERIAL: "old"})}).json()["changes"]
        == []
    )
    assert scrypt_calls == []


def _empty_device() -> dict[str, Any]:
    return normalize_spec("device", SERIAL, {})


def _admin(
    url: str, token: str, method: str, path: str, resources: dict[str, Any] | None = None
) -> requests.Response:
    body = None if resources is None else {"resources": resources}
    return requests.request(
        method, f"{url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()

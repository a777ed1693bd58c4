"""Device password hashes: the exact stored format, and checks that never raise and always cost
one scrypt derivation at the standard parameters -- also in the server, whatever makes a Basic
login fail, so its timing does not tell which serial numbers exist."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sztp import passwords
from sztp.errors import ValidationError
from sztp.passwords import hash_password, matches, parse_password_hash, verify_password
from sztp.refusals import Refusal
from sztp_server.config import ServerConfig
from sztp_server.context import Snapshot
from sztp_server.device_api.device_auth import AuthenticationFailed, DeviceAuthenticator, PeerInfo
from sztp_server.secret_key import SecretKey
from sztp_testing import run_sztpctl

PASSWORD = "correct horse battery staple"
SALT = base64.b64encode(bytes(range(16))).decode().rstrip("=")
KEY = base64.b64encode(bytes(range(32))).decode().rstrip("=")


def stored(parameters: str = "n=16384,r=8,p=1", salt: str = SALT, key: str = KEY) -> str:
    return f"$scrypt${parameters}${salt}${key}"


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """(n, r, p) of every scrypt derivation made while the test runs."""
    made: list[tuple[int, int, int]] = []
    real: Callable[..., bytes] = hashlib.scrypt

    def counting(password: bytes, **options: Any) -> bytes:
        made.append((options["n"], options["r"], options["p"]))
        return real(password, **options)

    monkeypatch.setattr(passwords.hashlib, "scrypt", counting)
    return made


def test_a_hash_made_here_parses_and_matches_only_its_password() -> None:
    text = hash_password(PASSWORD)
    parsed = parse_password_hash(text)
    assert len(parsed.salt) == passwords.SALT_BYTES
    assert len(parsed.key) == passwords.KEY_BYTES
    assert matches(PASSWORD, parsed)
    assert not matches(PASSWORD + "x", parsed)
    assert verify_password(PASSWORD, text)
    assert PASSWORD not in repr(parsed)
    assert base64.b64encode(parsed.key).decode().rstrip("=") not in repr(parsed)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            stored("n=3,r=8,p=1"),
            "scrypt parameters n=3,r=8,p=1 are not the ones sztp uses (n=16384,r=8,p=1)",
        ),
        (
            stored("n=1048576,r=8,p=1"),
            "scrypt parameters n=1048576,r=8,p=1 are not the ones sztp uses (n=16384,r=8,p=1)",
        ),
        (
            stored("n=16384,r=64,p=16"),
            "scrypt parameters n=16384,r=64,p=16 are not the ones sztp uses (n=16384,r=8,p=1)",
        ),
        (stored("n=16384,r=8,p=0"), "scrypt parameters n=16384,r=8,p=0 are not"),
        (stored("n=999999999999,r=8,p=1"), "is not a password hash made by sztp"),
        (stored("r=8,n=16384,p=1"), "is not a password hash made by sztp"),
        (stored("n=16384,r=8"), "is not a password hash made by sztp"),
        ("$scrypt$given", "is not a password hash made by sztp"),
        ("$2b$12$abcdefghijklmnopqrstuu", "is not a password hash made by sztp"),
        (stored() + "$extra", "is not a password hash made by sztp"),
        (" " + stored(), "is not a password hash made by sztp"),
        (stored() + "\n", "is not a password hash made by sztp"),
        (stored(salt=SALT + "=="), "is not a password hash made by sztp"),
        (stored(salt=SALT[:-4]), "salt must be 16 bytes in unpadded base64"),
        (stored(key=KEY + "AAAA"), "hash must be 32 bytes in unpadded base64"),
        (stored(key=KEY[:-1]), "hash must be 32 bytes in unpadded base64"),
        # The same bytes with stray low bits in the last character: a second spelling.
        (stored(salt=SALT[:-1] + "R"), "salt must be 16 bytes in unpadded base64"),
    ],
)
def test_malformed_hashes_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        parse_password_hash(text)
    assert refused.value.field == "password_hash"
    assert message in refused.value.message
    assert not verify_password(PASSWORD, text)  # never raises, never matches


def test_validate_names_a_malformed_hash_in_a_fleet_file(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(f"devices:\n  - serial: SN-1\n    password_hash: '{stored('n=3,r=8,p=1')}'\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    result = run_sztpctl("validate", "-f", fleet, env=env, expect=1, cwd=tmp_path)
    assert (
        "fleet.yaml:3: devices[0].password_hash: scrypt parameters n=3,r=8,p=1 are not the ones "
        "sztp uses (n=16384,r=8,p=1)"
    ) in result.stderr


def test_every_check_costs_one_standard_derivation(
    derivations: list[tuple[int, int, int]],
) -> None:
    parsed = parse_password_hash(hash_password(PASSWORD))
    derivations.clear()
    matches(PASSWORD, parsed)
    matches("wrong", parsed)
    matches("x" * 5000, parsed)  # too long to be anyone's password: checked all the same
    matches("wrong", passwords.unmatchable_hash())
    assert derivations == [(2**14, 8, 1)] * 4


def test_nothing_matches_the_unmatchable_hash() -> None:
    decoy = passwords.unmatchable_hash()
    assert decoy != passwords.unmatchable_hash()
    assert not matches("", decoy)
    assert not matches(PASSWORD, decoy)


def basic(credentials: bytes) -> str:
    return "Basic " + base64.b64encode(credentials).decode()


@pytest.fixture(scope="module")
def snapshot() -> Snapshot:
    return Snapshot(
        revision=1,
        state={
            "device": {
                "SN-1": {"password_hash": hash_password(PASSWORD)},
                "SN-2": {"password_hash": None},
                "SN-3": {"password_hash": stored("n=3,r=8,p=1")},
            }
        },
        secret_key=SecretKey(os.urandom(32)),
    )


def login(snapshot: Snapshot, authorization: str) -> str:
    authenticator = DeviceAuthenticator(ServerConfig())
    peer = PeerInfo(
        remote="192.0.2.1", client_chain=(), headers=(("Authorization", authorization),)
    )
    try:
        return asyncio.run(authenticator.authenticate(snapshot, peer))
    finally:
        authenticator.close()


@pytest.mark.parametrize(
    ("credentials", "refusal", "reason"),
    [
        (b"SN-1:wrong", Refusal.WRONG_SECRET, "wrong password for 'SN-1'"),
        (b"SN-404:wrong", Refusal.UNKNOWN_SERIAL, "no device 'SN-404'"),
        (b"SN-2:" + PASSWORD.encode(), Refusal.NO_PASSWORD, "no password login for 'SN-2'"),
        (
            b"SN-3:" + PASSWORD.encode(),
            Refusal.UNUSABLE_STORED_SECRET,
            "stored password_hash of 'SN-3' is unusable",
        ),
        (b"SN-1", Refusal.MALFORMED_CREDENTIALS, "malformed Basic credentials"),
        (b"SN-1:\xff\xfe", Refusal.MALFORMED_CREDENTIALS, "malformed Basic credentials"),
    ],
)
def test_every_failed_login_costs_one_standard_derivation(
    snapshot: Snapshot,
    derivations: list[tuple[int, int, int]],
    credentials: bytes,
    refusal: Refusal,
    reason: str,
) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        login(snapshot, basic(credentials))
    assert (refused.value.reason, str(refused.value)) == (refusal, reason)
    assert derivations == [(2**14, 8, 1)]


def test_a_good_login_costs_one_derivation_and_then_none(
    snapshot: Snapshot, derivations: list[tuple[int, int, int]]
) -> None:
    authenticator = DeviceAuthenticator(ServerConfig())
    peer = PeerInfo(None, (), (("Authorization", basic(f"SN-1:{PASSWORD}".encode())),))
    try:
        assert asyncio.run(authenticator.authenticate(snapshot, peer)) == "SN-1"
        assert asyncio.run(authenticator.authenticate(snapshot, peer)) == "SN-1"
    finally:
        authenticator.close()
    assert derivations == [(2**14, 8, 1)]


def test_what_is_not_base64_costs_nothing(
    snapshot: Snapshot, derivations: list[tuple[int, int, int]]
) -> None:
    """It names no serial, so refusing it at once tells nothing."""
    with pytest.raises(AuthenticationFailed) as refused:
        login(snapshot, "Basic !!!")
    assert str(refused.value) == "malformed Basic credentials"
    assert refused.value.reason is Refusal.MALFORMED_CREDENTIALS
    assert derivations == []

"""Shared fixtures. PKI: session-scoped lab credentials per key type (generation is slow).
Example lab: `fleet` and a `server` for it, once per module; a module may override either."""

import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sztp import passwords
from sztp.protocol import pki
from sztp_testing import RunningServer, example_lab, lay_out_example, running_server


@dataclass(frozen=True)
class LabCredentials:
    key_type: pki.KeyType
    manufacturer_ca: pki.Credential
    masa: pki.Credential
    idevids: tuple[pki.Credential, pki.Credential]
    owner_ca: pki.Credential
    owner: pki.Credential


@functools.cache
def build_lab_credentials(key_type: pki.KeyType) -> LabCredentials:
    manufacturer_ca = pki.create_root_ca("Test Manufacturer CA", key_type=key_type)
    owner_ca = pki.create_root_ca("Test Owner CA", key_type=key_type)
    return LabCredentials(
        key_type=key_type,
        manufacturer_ca=manufacturer_ca,
        masa=pki.issue_signing_certificate(manufacturer_ca, "Test MASA", key_type=key_type),
        idevids=(
            pki.issue_idevid(manufacturer_ca, "SN-0001", hw_model="lab-x1", key_type=key_type),
            pki.issue_idevid(manufacturer_ca, "SN-0002", hw_model="lab-x1", key_type=key_type),
        ),
        owner_ca=owner_ca,
        owner=pki.issue_signing_certificate(owner_ca, "Test Owner", key_type=key_type),
    )


@pytest.fixture(scope="session")
def ec_lab() -> LabCredentials:
    return build_lab_credentials("ec-p256")


@pytest.fixture(scope="session")
def rsa_lab() -> LabCredentials:
    return build_lab_credentials("rsa-2048")


@pytest.fixture(scope="session", params=["ec-p256", "ec-p384", "rsa-2048"])
def any_lab(request: pytest.FixtureRequest) -> LabCredentials:
    """The lab PKI once per supported signing key type."""
    return build_lab_credentials(request.param)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documented example fleet with its files (`lay_out_example`)."""
    return lay_out_example(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def server(fleet: Path) -> Iterator[RunningServer]:
    """A server beside `fleet`, with TLS from its lab PKI; it holds what the tests leave."""
    with running_server(fleet.parent / "server", lab=example_lab(fleet)) as running:
        yield running


@pytest.fixture
def scrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per scrypt derivation made in this process from now on."""
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(passwords.hashlib, "scrypt", counting)
    return calls

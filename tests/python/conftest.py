"""Shared fixtures. PKI: session-scoped lab credentials per key type (generation is slow)."""

import functools
from dataclasses import dataclass

import pytest

from sztp.protocol import pki


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

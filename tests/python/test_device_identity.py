"""IDevIDs issued by an intermediate CA, and what a device certificate may be used for.

One real `sztp-server` with a TLS device listener trusts only the vendor's root; the devices
present their IDevID with the intermediate CA that issued it, over a real TLS handshake or,
from loopback (a trusted proxy), in `client_cert_header`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from sztp.errors import ChainError
from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import certs, pki
from sztp.refusals import Refusal
from sztp_server.config import ServerConfig
from sztp_server.context import Snapshot
from sztp_server.device_api.device_auth import AuthenticationFailed, DeviceAuthenticator, PeerInfo
from sztp_server.secret_key import SecretKey
from sztp_testing import (
    RunningServer,
    issue_leaf,
    key_usage,
    lab_voucher,
    running_server,
)

GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
JSON_TYPE = "application/yang-data+json"
HEADER = "X-SSL-Client-Cert"
CHAINED, SERVER_ONLY = "SN-IM1", "SN-EKU1"


class Vendor:
    """A manufacturer whose IDevIDs come from an intermediate CA under its root."""

    def __init__(self, directory: Path) -> None:
        self.root = pki.create_root_ca("Vendor Root CA")
        self.intermediate = pki.issue_intermediate_ca(self.root, "Vendor IDevID CA 1")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def write(self, credential: pki.Credential, name: str, *, with_chain: bool) -> tuple[str, str]:
        """(certificate file, key file) for `requests`; with the intermediate when asked."""
        sent = credential.certificates[:2] if with_chain else credential.certificates[:1]
        certificate_file = self.directory / f"{name}.pem"
        key_file = self.directory / f"{name}.key"
        certificate_file.write_bytes(b"".join(pki.certificate_to_pem(cert) for cert in sent))
        key_file.write_bytes(pki.private_key_to_pem(credential.private_key))
        key_file.chmod(0o600)
        return str(certificate_file), str(key_file)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("identity") / "pki", [])


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Vendor:
    return Vendor(tmp_path_factory.mktemp("vendor"))


@pytest.fixture(scope="module")
def idevid(vendor: Vendor) -> pki.Credential:
    return pki.issue_idevid(vendor.intermediate, CHAINED)


@pytest.fixture(scope="module")
def server_only(vendor: Vendor) -> pki.Credential:
    """Trusted issuer, but its extended key usage is serverAuth alone."""
    return issue_leaf(
        vendor.intermediate,
        SERVER_ONLY,
        key_usage=key_usage(digital_signature=True),
        extended_usage=[ExtendedKeyUsageOID.SERVER_AUTH],
    )


@contextlib.contextmanager
def identity_server(lab: LabPki, vendor: Vendor, directory: Path) -> Iterator[RunningServer]:
    """TLS device listener; loopback is also trusted as a TLS-terminating proxy."""
    settings = {"trusted_proxies": ["127.0.0.1"], "client_cert_header": HEADER}
    with running_server(directory, lab=lab, settings=settings) as running:
        trust = lab.trust_resources()
        resources = {
            **trust,
            "trust-anchor": {
                "vendor": {"certificates": pki.certificate_to_pem(vendor.root.certificate).decode()}
            },
            "profile": {"day0": {"type": "onboarding", "configuration": "hostname im\n"}},
            "device": {
                serial: {
                    "profile": "day0",
                    "voucher": base64.b64encode(lab_voucher(lab, serial)).decode(),
                }
                for serial in (CHAINED, SERVER_ONLY)
            },
        }
        running.apply(resources)
        yield running


@pytest.fixture(scope="module")
def server(
    lab: LabPki, vendor: Vendor, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    with identity_server(lab, vendor, tmp_path_factory.mktemp("server")) as running:
        yield running


def over_tls(server: RunningServer, lab: LabPki, client_cert: tuple[str, str]) -> int | str:
    """get-bootstrapping-data status with this client certificate, or "refused" when the
    TLS handshake itself refuses it."""
    try:
        response = requests.post(
            f"{server.device_url}{GET_DATA}",
            headers={"Content-Type": JSON_TYPE},
            data=b"",
            cert=client_cert,
            verify=str(lab.tls_ca.certificate),
            timeout=10,
        )
    except requests.exceptions.ConnectionError:
        return "refused"
    return response.status_code


def through_proxy(server: RunningServer, lab: LabPki, presented: Sequence[x509.Certificate]) -> int:
    """get-bootstrapping-data as a proxy forwards it: the certificates in the header, as
    URL-encoded PEM, the client's first."""
    pem = b"".join(pki.certificate_to_pem(cert) for cert in presented).decode()
    response = requests.post(
        f"{server.device_url}{GET_DATA}",
        headers={"Content-Type": JSON_TYPE, HEADER: quote(pem, safe="")},
        data=b"",
        verify=str(lab.tls_ca.certificate),
        timeout=10,
    )
    return response.status_code


def last_refusal(server: RunningServer) -> str:
    reasons = server.refusal_reasons()
    assert reasons, server.log
    return reasons[-1]


def test_idevid_from_an_intermediate_ca_authenticates_over_tls(
    server: RunningServer, lab: LabPki, vendor: Vendor, idevid: pki.Credential
) -> None:
    assert over_tls(server, lab, vendor.write(idevid, "chained", with_chain=True)) == 200
    # Without its intermediate the IDevID cannot be chained to the vendor root: the
    # handshake verifies the client against the loaded anchors and refuses it.
    assert over_tls(server, lab, vendor.write(idevid, "alone", with_chain=False)) == "refused"


def recorded_handshakes(server: RunningServer, since: dt.datetime, count: int) -> list[str]:
    """The refusals of the TLS handshakes refused since `since`, sorted, once `count` are
    recorded (they are written in batches)."""
    deadline = time.monotonic() + 10
    while True:
        events = server.client().device_events(refused=True)["events"]
        handshakes = [
            event
            for event in events
            if event["rpc"] == "tls-handshake" and dt.datetime.fromisoformat(event["at"]) >= since
        ]
        if len(handshakes) >= count or time.monotonic() > deadline:
            assert all(
                event["remote"] == "127.0.0.1" and event["status"] == 0 and event["serial"] is None
                for event in handshakes
            )
            return sorted(event["refusal"] for event in handshakes)
        time.sleep(0.2)


def test_a_client_certificate_the_handshake_refuses_is_recorded_with_why(
    lab: LabPki, vendor: Vendor, idevid: pki.Credential, tmp_path: Path
) -> None:
    # A server of its own: another test's refused handshake is recorded when the server gets
    # to it, which may be after this test has begun.
    with identity_server(lab, vendor, tmp_path / "server") as server:
        since = now()
        # No intermediate: no trust anchor issued what it presents.
        refused = over_tls(server, lab, vendor.write(idevid, "alone", with_chain=False))
        assert refused == "refused"
        expired = issue_leaf(
            vendor.intermediate,
            "SN-EXPIRED",
            key_usage=key_usage(digital_signature=True),
            extended_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
            valid_for=-dt.timedelta(minutes=1),
        )
        refused = over_tls(server, lab, vendor.write(expired, "expired", with_chain=True))
        assert refused == "refused"
        recorded = recorded_handshakes(server, since, 2)
    assert recorded == ["expired-certificate", "untrusted-certificate"]


def test_idevid_from_an_intermediate_ca_authenticates_through_a_proxy(
    server: RunningServer, lab: LabPki, vendor: Vendor, idevid: pki.Credential
) -> None:
    assert through_proxy(server, lab, idevid.certificates[:2]) == 200
    assert through_proxy(server, lab, idevid.certificates[:1]) == 401
    assert "untrusted issuer CN=Vendor IDevID CA 1" in last_refusal(server)
    assert server.refusals()[-1] == "untrusted-certificate"


def test_a_certificate_only_for_servers_does_not_identify_a_device(
    server: RunningServer, lab: LabPki, vendor: Vendor, server_only: pki.Credential
) -> None:
    assert through_proxy(server, lab, server_only.certificates[:2]) == 401
    assert "extended key usage does not allow clientAuth (it lists SERVER_AUTH)" in last_refusal(
        server
    )
    assert server.refusals()[-1] == "unusable-certificate"
    # Over TLS, OpenSSL checks the purpose during the handshake already.
    sent = vendor.write(server_only, "server-only", with_chain=True)
    assert over_tls(server, lab, sent) in ("refused", 401)


def test_a_proxy_header_with_too_many_certificates_is_refused_before_parsing(
    server: RunningServer, lab: LabPki, idevid: pki.Credential
) -> None:
    padded = [*idevid.certificates[:2]] * (certs.MAX_PATH_LENGTH // 2 + 1)
    assert through_proxy(server, lab, padded) == 401
    assert (
        f"client presented {len(padded)} certificates; at most {certs.MAX_PATH_LENGTH}"
        in last_refusal(server)
    )


# ---- key usage rules (RFC 5280 §4.2.1.3, §4.2.1.12)


@pytest.mark.parametrize(
    ("usage", "extended", "problem"),
    [
        (True, None, None),  # no EKU: any purpose
        (None, None, None),  # no KU either
        (True, [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH], None),
        (True, [ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE], None),
        (True, [ExtendedKeyUsageOID.SERVER_AUTH], "does not allow clientAuth"),
        (False, [ExtendedKeyUsageOID.CLIENT_AUTH], "does not allow digitalSignature"),
    ],
)
def test_client_auth_usage(
    vendor: Vendor,
    usage: bool | None,
    extended: list[x509.ObjectIdentifier] | None,
    problem: str | None,
) -> None:
    leaf = issue_leaf(
        vendor.intermediate,
        "SN-KU",
        key_usage=None if usage is None else key_usage(digital_signature=usage),
        extended_usage=extended,
    ).certificate
    if problem is None:
        certs.check_client_auth(leaf)
    else:
        with pytest.raises(ChainError, match=problem):
            certs.check_client_auth(leaf)


def test_a_remembered_idevid_stops_working_when_it_expires(vendor: Vendor) -> None:
    """A returning device's chain is remembered, but only while every certificate of its path
    is valid."""
    serial = "SN-EXPIRING"
    expiring = issue_leaf(
        vendor.intermediate,
        serial,
        key_usage=key_usage(digital_signature=True),
        extended_usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
        valid_for=dt.timedelta(seconds=2),
    )
    key = SecretKey(os.urandom(32))
    state = {
        "trust-anchor": {
            "vendor": {"certificates": pki.certificate_to_pem(vendor.root.certificate).decode()}
        },
        "device": {serial: {}},
    }
    snapshot = Snapshot(1, state, key)
    chain = tuple(
        cert.public_bytes(serialization.Encoding.DER)
        for cert in (expiring.certificate, vendor.intermediate.certificate)
    )
    peer = PeerInfo(remote="192.0.2.9", client_chain=chain, headers=())
    authenticator = DeviceAuthenticator(ServerConfig())
    try:
        assert asyncio.run(authenticator.authenticate(snapshot, peer)) == serial
        assert asyncio.run(authenticator.authenticate(snapshot, peer)) == serial  # remembered
        time.sleep(max(0.0, (expiring.certificate.not_valid_after_utc - now()).total_seconds()))
        time.sleep(0.1)
        with pytest.raises(AuthenticationFailed, match="expired on") as refused:
            asyncio.run(authenticator.authenticate(snapshot, peer))
        assert refused.value.reason is Refusal.EXPIRED_CERTIFICATE
    finally:
        authenticator.close()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)

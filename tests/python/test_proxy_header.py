"""Trusted-proxy mode: the device's client certificate in `client_cert_header`.

A real `sztp-server` with a plain-HTTP device listener stands behind a "proxy": the test client
itself, sending the header from loopback, which the configuration trusts (or does not).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from sztp.labpki import LabPki, write_lab_pki
from sztp.state.resources import DEVICE, TRUST_ANCHOR
from sztp_server.config import load_config
from sztp_server.context import Snapshot
from sztp_server.device_api.device_auth import AuthenticationFailed, DeviceAuthenticator, PeerInfo
from sztp_server.secret_key import SecretKey
from sztp_testing import RunningServer, basic, lab_voucher, running_server

GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
JSON_TYPE = "application/yang-data+json"
DEVICE_A, DEVICE_B = "SN-PX1", "SN-PX2"
PASSWORD = "proxy test password"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("proxy") / "pki", [DEVICE_A, DEVICE_B])


def resources(lab: LabPki) -> dict[str, object]:
    def voucher(serial: str) -> str:
        return base64.b64encode(lab_voucher(lab, serial)).decode()

    return {
        **lab.trust_resources(),
        "profile": {"day0": {"type": "onboarding", "configuration": "hostname px\n"}},
        "device": {
            DEVICE_A: {"profile": "day0", "voucher": voucher(DEVICE_A)},
            DEVICE_B: {"profile": "day0", "voucher": voucher(DEVICE_B), "password": PASSWORD},
        },
    }


@contextlib.contextmanager
def proxied_server(
    directory: Path, lab: LabPki, trusted_proxies: Sequence[str], device_host: str = "127.0.0.1"
) -> Iterator[RunningServer]:
    settings = {"trusted_proxies": list(trusted_proxies)}
    with running_server(directory, device_host=device_host, settings=settings) as server:
        response = requests.post(
            f"{server.admin_url}/api/v1/state",
            json={"resources": resources(lab)},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        yield server


@pytest.fixture(scope="module")
def trusting(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that trusts loopback as its TLS-terminating proxy."""
    with proxied_server(tmp_path_factory.mktemp("trusting"), lab, ["127.0.0.1"]) as server:
        yield server


@pytest.fixture(scope="module")
def untrusting(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose proxy is elsewhere: loopback is an ordinary client."""
    with proxied_server(tmp_path_factory.mktemp("untrusting"), lab, ["10.0.0.5/32"]) as server:
        yield server


def escaped_certificate(lab: LabPki, serial: str) -> str:
    """What nginx puts in `$ssl_client_escaped_cert`: the URL-encoded PEM IDevID."""
    return quote(lab.devices[serial].idevid.certificate.read_text(), safe="")


def post(url: str, headers: Sequence[tuple[str, str]]) -> tuple[int, dict[str, object]]:
    """get-bootstrapping-data with exactly these header fields, repeats and case as given
    (which `requests` cannot send)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest("POST", GET_DATA)
        connection.putheader("Content-Type", JSON_TYPE)
        connection.putheader("Content-Length", "0")
        for name, value in headers:
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize(
    "name", ["X-SSL-Client-Cert", "x-ssl-client-cert", "X-Ssl-Client-Cert", "X-SSL-CLIENT-CERT"]
)
def test_header_name_is_case_insensitive(trusting: RunningServer, lab: LabPki, name: str) -> None:
    """Envoy, Traefik and Caddy (and every HTTP/2 hop) change the case of header names."""
    status, body = post(trusting.device_url, [(name, escaped_certificate(lab, DEVICE_A))])
    assert status == 200, body
    assert "ietf-sztp-bootstrap-server:output" in body


def test_basic_auth_header_is_case_insensitive(trusting: RunningServer) -> None:
    status, body = post(trusting.device_url, [("authorization", basic(DEVICE_B, PASSWORD))])
    assert status == 200, body


@pytest.mark.parametrize(
    "names",
    [
        ("X-SSL-Client-Cert", "X-SSL-Client-Cert"),
        ("X-SSL-Client-Cert", "x-ssl-client-cert"),
        ("x-ssl-client-cert", "X-SSL-CLIENT-CERT"),
    ],
)
def test_a_repeated_header_is_refused(
    trusting: RunningServer, lab: LabPki, names: tuple[str, str]
) -> None:
    """A proxy that appends its header to the client's must not let the client pick the
    identity: the client's forged header (device A) comes first, the proxy's (device B) last."""
    forged, genuine = escaped_certificate(lab, DEVICE_A), escaped_certificate(lab, DEVICE_B)
    status, body = post(trusting.device_url, [(names[0], forged), (names[1], genuine)])
    assert status == 401, body
    error = body["ietf-restconf:errors"]["error"][0]  # type: ignore[index]
    assert error["error-tag"] == "access-denied"
    reason = trusting.refusal_reasons()[-1]
    assert "2 X-SSL-Client-Cert headers" in reason, reason
    assert "exactly one" in reason
    # A short prefix at most: the certificates themselves stay out of the log.
    assert forged[:16] in reason
    assert forged[16:60] not in trusting.log
    assert genuine[16:60] not in trusting.log


def test_merged_header_values_are_refused(trusting: RunningServer, lab: LabPki) -> None:
    """An intermediary may fold repeated headers into one comma-separated field."""
    merged = f"{escaped_certificate(lab, DEVICE_A)}, {escaped_certificate(lab, DEVICE_B)}"
    status, body = post(trusting.device_url, [("X-SSL-Client-Cert", merged)])
    assert status == 401, body
    assert "merged X-SSL-Client-Cert header" in trusting.refusal_reasons()[-1]


def test_repeated_authorization_is_refused(trusting: RunningServer) -> None:
    status, body = post(
        trusting.device_url,
        [("Authorization", basic(DEVICE_B, PASSWORD)), ("Authorization", basic(DEVICE_B, "x"))],
    )
    assert status == 401, body
    assert "2 Authorization headers" in trusting.refusal_reasons()[-1]


@pytest.mark.parametrize("name", ["X-SSL-Client-Cert", "x-ssl-client-cert"])
def test_header_from_an_untrusted_peer_is_refused(
    untrusting: RunningServer, lab: LabPki, name: str
) -> None:
    """Refused, not ignored, whatever its case -- even with valid Basic credentials beside it."""
    headers = [(name, escaped_certificate(lab, DEVICE_B))]
    status, body = post(untrusting.device_url, headers)
    assert status == 401, body
    status, body = post(
        untrusting.device_url, [*headers, ("Authorization", basic(DEVICE_B, PASSWORD))]
    )
    assert status == 401, body
    reason = untrusting.refusal_reasons()[-1]
    assert "X-SSL-Client-Cert header from untrusted address 127.0.0.1" in reason, reason
    # Without the header the same credentials are fine.
    status, body = post(untrusting.device_url, [("Authorization", basic(DEVICE_B, PASSWORD))])
    assert status == 200, body


def test_ipv6_loopback_proxy(lab: LabPki, tmp_path: Path) -> None:
    """A proxy on ::1 is trusted by an IPv6 entry; an IPv4 entry does not cover it."""
    with proxied_server(tmp_path / "v6", lab, ["::1/128"], device_host="::1") as server:
        assert server.device_url.startswith("http://[::1]:")
        status, body = post(
            server.device_url, [("x-ssl-client-cert", escaped_certificate(lab, DEVICE_A))]
        )
        assert status == 200, body
    with proxied_server(tmp_path / "v4", lab, ["127.0.0.0/8"], device_host="::1") as server:
        status, body = post(
            server.device_url, [("x-ssl-client-cert", escaped_certificate(lab, DEVICE_A))]
        )
        assert status == 401, body
        assert "from untrusted address ::1" in server.refusal_reasons()[-1]


# An IPv4 peer seen through a dual-stack socket (::ffff:a.b.c.d) cannot be produced by the
# server's own listeners (asyncio binds IPv6 sockets IPv6-only), so this goes through the
# authenticator directly, as the device API calls it.


def authenticate(lab: LabPki, trusted_proxies: list[str], remote: str) -> str:
    settings = lab.directory / "proxy-settings.yaml"
    settings.write_text(json.dumps({"trusted_proxies": trusted_proxies}))
    config = load_config(settings, environ={})
    snapshot = Snapshot(
        revision=1,
        state={
            TRUST_ANCHOR: {
                "manufacturer": {"certificates": lab.manufacturer_ca.certificate.read_text()}
            },
            DEVICE: {DEVICE_A: {}},
        },
        secret_key=SecretKey(os.urandom(32)),
    )
    peer = PeerInfo(
        remote=remote,
        client_chain=(),
        headers=(("x-ssl-client-cert", escaped_certificate(lab, DEVICE_A)),),
    )
    return asyncio.run(DeviceAuthenticator(config).authenticate(snapshot, peer))


@pytest.mark.parametrize(
    ("trusted_proxies", "remote"),
    [
        (["10.0.0.1"], "::ffff:10.0.0.1"),
        (["10.0.0.0/24"], "::ffff:10.0.0.77"),
        (["::ffff:10.0.0.0/120"], "::ffff:10.0.0.77"),
        (["10.0.0.1"], "10.0.0.1"),
        (["fd00::/64"], "fd00::5"),
    ],
)
def test_trusted_proxy_addresses(lab: LabPki, trusted_proxies: list[str], remote: str) -> None:
    assert authenticate(lab, trusted_proxies, remote) == DEVICE_A


@pytest.mark.parametrize(
    ("trusted_proxies", "remote"),
    [
        (["10.0.0.1"], "::ffff:10.0.0.2"),
        (["10.0.0.0/24"], "::ffff:10.0.1.1"),
        (["10.0.0.1"], "::10.0.0.1"),  # IPv4-compatible, not IPv4-mapped
        (["127.0.0.1"], "::1"),
        ([], "127.0.0.1"),
        (["10.0.0.1"], "not-an-address"),
    ],
)
def test_untrusted_proxy_addresses(lab: LabPki, trusted_proxies: list[str], remote: str) -> None:
    with pytest.raises(AuthenticationFailed, match="untrusted address"):
        authenticate(lab, trusted_proxies, remote)

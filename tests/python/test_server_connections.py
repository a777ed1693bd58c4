"""Connection limits of a real sztp-server over real TLS: caps per address, backpressure at
the total cap, the bound on handshakes under way, deadlines for a request head, an idle
kept-alive connection and a device's request body, no body read before authentication, and
where /metrics and /healthz are served."""

from __future__ import annotations

import base64
import contextlib
import http.client
import resource
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest
import requests

from sztp.labpki import LabPki, write_lab_pki
from sztp_testing import RunningServer, lab_voucher, running_server, simulate_lab_device

SERIAL = "SN-C1"
RPC = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
JSON = "application/yang-data+json"
# Short deadlines keep the tests quick; waits for a close are far longer than any deadline,
# so a loaded machine makes them slower, never wrong.
QUICK = {"request_head_timeout": 1, "keepalive_timeout": 1, "request_body_timeout": 1}
PATIENCE = 20.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("connections") / "pki", [SERIAL])


@pytest.fixture(scope="module")
def quick_server(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("quick"), lab=lab, settings=QUICK) as server:
        provision(lab, server)
        yield server


def provision(lab: LabPki, server: RunningServer) -> None:
    voucher = base64.b64encode(lab_voucher(lab, SERIAL)).decode()
    resources = {
        **lab.trust_resources(),
        "profile": {"day0": {"type": "onboarding", "configuration": "hostname c1\n"}},
        "device": {SERIAL: {"profile": "day0", "voucher": voucher}},
    }
    response = requests.post(
        f"{server.admin_url}/api/v1/state",
        json={"resources": resources},
        headers=bearer(server),
        timeout=30,
    )
    assert response.status_code == 200, response.text


def bearer(server: RunningServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token}"}


def device_port(server: RunningServer) -> int:
    return int(server.device_url.rsplit(":", 1)[1])


def tls_context(lab: LabPki, *, as_device: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(lab.tls_ca.certificate))
    if as_device:
        files = lab.devices[SERIAL].idevid
        context.load_cert_chain(str(files.certificate), str(files.private_key))
    return context


def device_connection(
    lab: LabPki, server: RunningServer, *, as_device: bool = False
) -> http.client.HTTPSConnection:
    return http.client.HTTPSConnection(
        "127.0.0.1",
        device_port(server),
        context=tls_context(lab, as_device=as_device),
        timeout=PATIENCE,
    )


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (cleanly or with a reset) while we wait."""
    sock.settimeout(PATIENCE)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return True
    except TimeoutError:
        return False


def half_sent_head(lab: LabPki, port: int, source: str) -> ssl.SSLSocket | None:
    """A TLS connection from `source` carrying half a request head, or None if refused."""
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    except OSError:
        return None
    try:
        sock = tls_context(lab).wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(f"POST {RPC} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
    except OSError:  # ssl.SSLError among them: refused at once
        raw.close()
        return None
    return sock


def test_half_sent_heads_beyond_the_cap_leave_room_for_devices(lab: LabPki, tmp_path: Path) -> None:
    # A long head deadline: the flood's connections stay until the device is done, and only
    # the caps keep the server's file descriptors free.
    # One process: the caps count per process (docs/server.md, "Every core").
    settings = {"request_head_timeout": 60, "max_connections_per_address": 4, "workers": 1}
    with running_server(tmp_path / "server", lab=lab, settings=settings) as server:
        provision(lab, server)
        # Few descriptors, as in the incident: without caps the flood takes them all.
        resource.prlimit(server.process.pid, resource.RLIMIT_NOFILE, (64, 64))
        port = device_port(server)
        with ThreadPoolExecutor(max_workers=16) as pool:
            flood = list(pool.map(lambda _: half_sent_head(lab, port, "127.0.0.2"), range(96)))
        try:
            assert simulate_lab_device(
                lab, server.device_url, SERIAL, tmp_path / "device"
            ).succeeded
            metrics = requests.get(
                f"{server.admin_url}/metrics", headers=bearer(server), timeout=10
            ).text
            assert 'sztp_connections_refused_total{api="device",cap="per-address"}' in metrics
        finally:
            for sock in flood:
                if sock is not None:
                    sock.close()


def test_a_half_sent_head_is_closed_after_the_head_deadline(
    lab: LabPki, quick_server: RunningServer
) -> None:
    sock = half_sent_head(lab, device_port(quick_server), "127.0.0.1")
    assert sock is not None
    with sock:
        assert closed_by_server(sock)


def test_a_silent_connection_is_closed_after_the_head_deadline(
    quick_server: RunningServer,
) -> None:
    # No TLS handshake at all: the head deadline covers the handshake too.
    with socket.create_connection(("127.0.0.1", device_port(quick_server))) as sock:
        assert closed_by_server(sock)


def test_an_idle_kept_alive_connection_is_closed(lab: LabPki, quick_server: RunningServer) -> None:
    connection = device_connection(lab, quick_server)
    connection.request("GET", "/.well-known/host-meta")
    response = connection.getresponse()
    response.read()
    assert response.status == 200
    assert not response.will_close  # kept alive, until the idle deadline
    assert connection.sock is not None
    assert closed_by_server(connection.sock)


def test_no_body_is_awaited_from_a_client_that_fails_authentication(
    lab: LabPki, quick_server: RunningServer
) -> None:
    connection = device_connection(lab, quick_server)
    connection.putrequest("POST", RPC)
    connection.putheader("Content-Type", JSON)
    connection.putheader("Content-Length", "50000")
    connection.endheaders()  # and no body
    response = connection.getresponse()
    assert response.status == 401
    assert "authentication failed" in response.read().decode()


def test_an_authenticated_device_must_send_its_body_in_time(
    lab: LabPki, quick_server: RunningServer
) -> None:
    connection = device_connection(lab, quick_server, as_device=True)
    connection.putrequest("POST", RPC)
    connection.putheader("Content-Type", JSON)
    connection.putheader("Content-Length", "100")
    connection.endheaders(b'{"ietf-sztp-bootstrap-server:input"')
    response = connection.getresponse()
    assert response.status == 408
    assert "request body not received in time" in response.read().decode()
    assert response.will_close


def test_metrics_and_health_stay_off_the_device_listeners_by_default(
    lab: LabPki, quick_server: RunningServer
) -> None:
    verify = str(lab.tls_ca.certificate)
    for path in ("/metrics", "/healthz"):
        device = requests.get(f"{quick_server.device_url}{path}", verify=verify, timeout=10)
        assert device.status_code == 404, path
    admin = quick_server.admin_url
    assert requests.get(f"{admin}/healthz", timeout=10).status_code == 200
    assert requests.get(f"{admin}/metrics", timeout=10).status_code == 401
    metrics = requests.get(f"{admin}/metrics", headers=bearer(quick_server), timeout=10)
    assert metrics.status_code == 200
    assert "# TYPE sztp_requests_total counter" in metrics.text


@pytest.mark.parametrize(("place", "on_admin"), [("device", False), ("both", True)])
def test_metrics_and_health_on_the_device_listeners_when_asked(
    lab: LabPki, tmp_path: Path, place: str, on_admin: bool
) -> None:
    settings = {"monitoring_listeners": place}
    with running_server(tmp_path / "server", lab=lab, settings=settings) as server:
        verify = str(lab.tls_ca.certificate)
        for path in ("/metrics", "/healthz"):
            device = requests.get(f"{server.device_url}{path}", verify=verify, timeout=10)
            assert device.status_code == 200, path
        admin = requests.get(f"{server.admin_url}/metrics", headers=bearer(server), timeout=10)
        assert (admin.status_code == 200) == on_admin
        assert requests.get(f"{server.admin_url}/healthz", timeout=10).status_code == 200


def test_trusted_proxies_are_spared_the_per_address_cap_not_the_total(
    lab: LabPki, tmp_path: Path
) -> None:
    settings = {
        # One process: the caps count per process (docs/server.md, "Every core").
        "workers": 1,
        "max_connections_per_address": 2,
        "max_connections": 5,
        "trusted_proxies": ["127.0.0.2"],
    }
    with running_server(tmp_path / "server", lab=lab, settings=settings) as server:
        held: list[http.client.HTTPSConnection] = []

        def served(source: str) -> bool:
            """Whether a kept-alive request from `source` is answered; the connection stays."""
            connection = connection_from(lab, server, source, timeout=PATIENCE)
            held.append(connection)
            return host_meta_answered(connection)

        try:
            assert [served("127.0.0.2") for _ in range(4)] == [True] * 4
            assert served("127.0.0.3")
            # At the total cap the sixth is not accepted: it waits in the kernel's queue.
            assert not served_within(lab, server, "127.0.0.4", seconds=2)
        finally:
            for connection in held:
                connection.close()
        metrics = requests.get(f"{server.admin_url}/metrics", headers=bearer(server), timeout=10)
        assert "sztp_connections_refused_total{" not in metrics.text
        assert 'sztp_accept_pauses_total{api="device"}' in metrics.text


def served_within(lab: LabPki, server: RunningServer, source: str, *, seconds: float) -> bool:
    """Whether a request from `source` is answered within `seconds` (the connection closes)."""
    connection = connection_from(lab, server, source, timeout=seconds)
    try:
        return host_meta_answered(connection)
    finally:
        connection.close()


def connection_from(
    lab: LabPki, server: RunningServer, source: str, *, timeout: float
) -> http.client.HTTPSConnection:
    """A TLS connection to the device listener from the loopback address `source`."""
    return http.client.HTTPSConnection(
        "127.0.0.1",
        device_port(server),
        context=tls_context(lab),
        timeout=timeout,
        source_address=(source, 0),
    )


def host_meta_answered(connection: http.client.HTTPSConnection) -> bool:
    """Whether `GET /.well-known/host-meta` over `connection` is answered 200."""
    try:
        connection.request("GET", "/.well-known/host-meta")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False


def test_at_the_total_cap_new_connections_wait_and_are_served_once_others_close(
    lab: LabPki, tmp_path: Path
) -> None:
    # One process: the caps count per process (docs/server.md, "Every core").
    settings = {"workers": 1, "max_connections": 2}
    with running_server(tmp_path / "server", lab=lab, settings=settings) as server:
        held = [device_connection(lab, server) for _ in range(2)]
        try:
            for connection in held:
                connection.request("GET", "/.well-known/host-meta")
                response = connection.getresponse()
                response.read()
                assert response.status == 200
            with ThreadPoolExecutor(max_workers=3) as pool:
                waiting = [
                    pool.submit(served_within, lab, server, "127.0.0.1", seconds=PATIENCE)
                    for _ in range(3)
                ]
                # Not refused: still waiting, in the kernel's queue, while the cap is reached.
                done, _ = wait(waiting, timeout=2)
                assert not done
                held.pop().close()  # one closes: the waiting ones are served one by one
                assert [future.result() for future in waiting] == [True] * 3
        finally:
            for connection in held:
                connection.close()
        metrics = requests.get(f"{server.admin_url}/metrics", headers=bearer(server), timeout=10)
        assert "sztp_connections_refused_total{" not in metrics.text
        assert 'sztp_accept_pauses_total{api="device"}' in metrics.text
        assert 'sztp_accept_paused_seconds_total{api="device"}' in metrics.text


def stalled_handshake(lab: LabPki, port: int, source: str) -> socket.socket:
    """A connection from `source` that sends its ClientHello and nothing after it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    outgoing = ssl.MemoryBIO()
    client = tls_context(lab).wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    sock.sendall(outgoing.read())
    return sock


def answered_at(sock: socket.socket) -> float | None:
    """When the server's first handshake bytes arrived (its turn came), or None."""
    sock.settimeout(PATIENCE)
    try:
        return time.monotonic() if sock.recv(1) else None
    except OSError:
        return None


def test_handshakes_under_way_are_bounded_and_stalling_clients_cannot_starve_devices(
    lab: LabPki, tmp_path: Path
) -> None:
    # 8 slots, at most 1 per address; a head deadline longer than the test, so only the
    # slots' own bound (connections.HANDSHAKE_SLOT_SECONDS) frees the stalled ones' slots.
    settings = {"workers": 1, "max_tls_handshakes": 8, "request_head_timeout": 60}
    with running_server(tmp_path / "server", lab=lab, settings=settings) as server:
        provision(lab, server)
        port = device_port(server)
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
        one_address = [stalled_handshake(lab, port, "127.0.0.5") for _ in range(6)]
        many = [stalled_handshake(lab, port, f"127.0.1.{index}") for index in range(12)]
        stalled = one_address + many
        try:
            with ThreadPoolExecutor(max_workers=len(stalled)) as pool:
                answers = [pool.submit(answered_at, sock) for sock in stalled]
                # A device is served whatever silent and stalled clients hold: they wait for
                # their first bytes, or give their slot back soon.
                assert simulate_lab_device(
                    lab, server.device_url, SERIAL, tmp_path / "device"
                ).succeeded
                times = [answer.result() for answer in answers]
            # Every stalled client got its turn in the end ...
            assert None not in times
            arrivals = sorted((at, index < len(one_address)) for index, at in enumerate(times))
            first = arrivals[0][0]
            # ... but never more than 8 handshakes at once, nor 1 of one address: no
            # handshake beyond them started before a slot was given back.
            early = [one for at, one in arrivals if at < first + 1.5]
            assert len(early) <= 8
            assert sum(early) <= 1
        finally:
            for sock in silent + stalled:
                sock.close()
        metrics = requests.get(f"{server.admin_url}/metrics", headers=bearer(server), timeout=10)
        assert 'sztp_tls_handshake_waits_total{api="device"}' in metrics.text

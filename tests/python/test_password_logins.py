"""HTTP Basic logins: failure limits per address and per serial, password checks on bounded
workers of their own, and stored hashes checked when written -- unit tests, then a real server
on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from sztp.labpki import write_lab_pki
from sztp_server.device_api.password_logins import (
    LoginLimits,
    PasswordWorkers,
    PasswordWorkersBusy,
    TooManyFailures,
    client_address,
)
from sztp_server.device_api.southbound import REFUSAL_PAUSE_SECONDS
from sztp_server.device_api.token_buckets import TokenBuckets
from sztp_server.store import Change, open_store
from sztp_testing import ManualClock as Clock
from sztp_testing import RunningServer, basic, running_server

GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
JSON_TYPE = "application/yang-data+json"
PASSWORD = "device password 7"
# Authenticated: these devices have no profile, so there is no data for them.
LOGGED_IN = 404
# Logins after a limit is reached, each over a new connection that reaches either of two
# server processes. Were the limits counted per process, every one of them would be refused
# only if all of them, and the failures before, reached the same process: one chance in
# thousands.
SPREAD = 8


# ---- token buckets


def test_a_bucket_allows_its_burst_then_one_per_refill() -> None:
    clock = Clock()
    limiter = TokenBuckets(3, 10.0, clock=clock)
    for _ in range(3):
        assert limiter.wait("a") == 0
        limiter.charge("a")
    assert limiter.wait("a") == pytest.approx(10.0)
    assert limiter.wait("b") == 0  # keys are independent
    clock.now += 4
    assert limiter.wait("a") == pytest.approx(6.0)
    clock.now += 6
    assert limiter.wait("a") == 0
    limiter.charge("a")
    assert limiter.wait("a") == pytest.approx(10.0)
    clock.now += 1000  # refills to the burst, no further
    for _ in range(3):
        limiter.charge("a")
    assert limiter.wait("a") > 0


def test_a_refund_gives_a_charge_back() -> None:
    limiter = TokenBuckets(1, 60.0, clock=Clock())
    limiter.charge("a")
    assert limiter.wait("a") > 0
    limiter.refund("a")
    assert limiter.wait("a") == 0
    assert "a" not in limiter._buckets  # a full bucket is as good as none
    limiter.refund("a")  # never beyond the burst
    limiter.charge("a")
    assert limiter.wait("a") > 0


def test_a_zero_burst_turns_limiting_off() -> None:
    limiter = TokenBuckets(0, 60.0, clock=Clock())
    for _ in range(100):
        limiter.charge("a")
    assert limiter.wait("a") == 0


def test_the_table_is_bounded_and_drops_refilled_buckets_first() -> None:
    clock = Clock()
    limiter = TokenBuckets(2, 10.0, tracked=3, clock=clock)
    for key in ("a", "b", "c"):
        limiter.charge(key)
        limiter.charge(key)
    limiter.charge("d")  # full table: the least recently charged ("a") goes
    assert limiter.wait("a") == 0
    assert limiter.wait("b") > 0
    clock.now += 20  # everything refilled: as good as not tracked
    limiter.charge("e")
    assert len(limiter._buckets) == 1


def login_limits(per_address: int, per_serial: int, refill_seconds: float = 60.0) -> LoginLimits:
    """Limits in tables of their own, on a clock that stands still."""
    clock = Clock()
    return LoginLimits(
        TokenBuckets(per_address, refill_seconds, clock=clock),
        TokenBuckets(per_serial, refill_seconds, clock=clock),
    )


def attempt(limits: LoginLimits, address: Hashable | None, serial: str) -> None:
    """A failed login as the server makes one: checked against the limits, then charged."""
    limits.check(address, serial)
    limits.charge(address, serial)


def test_login_limits_count_addresses_and_serials_apart() -> None:
    limits = login_limits(per_address=3, per_serial=2)
    first, second = ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2")
    attempt(limits, first, "SN-1")
    attempt(limits, second, "SN-1")
    with pytest.raises(TooManyFailures) as refused:
        limits.check(ipaddress.ip_address("192.0.2.3"), "SN-1")  # a third address: serial spent
    assert refused.value.retry_after == 60
    attempt(limits, first, "SN-2")
    attempt(limits, first, "SN-3")
    with pytest.raises(TooManyFailures):
        limits.check(first, "SN-4")  # the address is spent
    attempt(limits, None, "SN-4")  # no address (a trusted proxy): only the serial counts
    limits.refund(first, "SN-3")  # that one succeeded after all
    attempt(limits, first, "SN-5")


def test_a_refused_attempt_charges_neither_key() -> None:
    limits = login_limits(per_address=1, per_serial=5)
    address = ipaddress.ip_address("192.0.2.1")
    attempt(limits, address, "SN-1")
    for _ in range(10):
        with pytest.raises(TooManyFailures):
            attempt(limits, address, "SN-2")
    attempt(limits, ipaddress.ip_address("192.0.2.9"), "SN-2")  # SN-2 was not charged by those


def test_a_long_claimed_serial_is_tracked_by_a_fixed_size_key() -> None:
    limits = login_limits(per_address=0, per_serial=1)
    attempt(limits, None, "S" * 8000)
    with pytest.raises(TooManyFailures) as refused:
        attempt(limits, None, "S" * 8000)
    assert len(str(refused.value)) < 200
    assert all(isinstance(key, bytes) and len(key) == 16 for key in limits._serials._buckets)


@pytest.mark.parametrize(
    ("remote", "client"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("/run/sztp.sock", None),
        (None, None),
    ],
)
def test_a_client_is_an_ipv4_address_or_an_ipv6_64(remote: str | None, client: str | None) -> None:
    found = client_address(remote)
    assert (str(found) if found is not None else None) == client


# ---- the password workers


def test_checks_beyond_workers_and_queue_are_refused_at_once() -> None:
    async def scenario() -> None:
        workers = PasswordWorkers(workers=1, queue=1)
        release = threading.Event()
        try:
            running = workers.start(release.wait)
            waiting = workers.start(lambda: "queued")
            with pytest.raises(PasswordWorkersBusy):
                workers.start(lambda: "refused")
            # A caller that gives up does not free the place its running check still holds.
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            with pytest.raises(PasswordWorkersBusy):
                workers.start(lambda: "refused")
            release.set()
            assert await waiting == "queued"
            assert await workers.start(lambda: "after") == "after"
        finally:
            release.set()
            workers.close()

    asyncio.run(scenario())


# ---- a real server on loopback


def login(
    server: RunningServer,
    serial: str,
    password: str,
    source: str = "127.0.0.1",
    tls: ssl.SSLContext | None = None,
) -> http.client.HTTPResponse:
    """One get-bootstrapping-data with Basic credentials, from loopback address `source`
    (over TLS with `tls`)."""
    url = urlsplit(server.device_url)
    assert url.hostname is not None
    connection = (
        http.client.HTTPSConnection(
            url.hostname, url.port, timeout=30, source_address=(source, 0), context=tls
        )
        if tls is not None
        else http.client.HTTPConnection(
            url.hostname, url.port, timeout=30, source_address=(source, 0)
        )
    )
    connection.request(
        "POST",
        GET_DATA,
        body=b"",
        headers={"Authorization": basic(serial, password), "Content-Type": JSON_TYPE},
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def admin(server: RunningServer, method: str, path: str, **kwargs: object) -> requests.Response:
    return requests.request(
        method,
        f"{server.admin_url}{path}",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
        **kwargs,  # type: ignore[arg-type]
    )


def add_devices(server: RunningServer) -> None:
    devices = {
        "SN-A": {"password": PASSWORD},
        "SN-B": {"password": PASSWORD},
        "SN-C": {"password": PASSWORD},
    }
    response = admin(server, "POST", "/api/v1/state", json={"resources": {"device": devices}})
    assert response.status_code == 200, response.text


def logins_at_once(
    server: RunningServer, serial: str, password: str, sources: list[str]
) -> list[int]:
    """The statuses of one login from each of `sources`, all at once (a refusal is held back
    a second), each over a connection of its own."""
    with ThreadPoolExecutor(max_workers=len(sources)) as pool:
        return list(
            pool.map(lambda source: login(server, serial, password, source).status, sources)
        )


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """Three failures per address, four per serial, nothing refilled while the tests run;
    two processes, each login reaching either (a new connection each)."""
    settings = {
        "workers": 2,
        "password_failures_per_address": 3,
        "password_failures_per_serial": 4,
        "password_failure_refill_seconds": 3600,
    }
    with running_server(tmp_path_factory.mktemp("limited"), settings=settings) as server:
        add_devices(server)
        yield server


def test_an_address_is_limited_after_its_failures(limited: RunningServer) -> None:
    source = "127.0.0.2"
    statuses = [login(limited, "SN-A", "wrong", source).status for _ in range(3)]
    assert statuses == [401, 401, 401]
    started = time.monotonic()
    refused = login(limited, "SN-B", PASSWORD, source)  # even a good password, for any serial
    assert refused.status == 429
    # Held back, so a flood over one connection gets at most one refusal a second.
    assert time.monotonic() - started >= REFUSAL_PAUSE_SECONDS
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    # Both processes count the same failures: with a count of their own, whichever had
    # fewer than three of them would let another in.
    assert logins_at_once(limited, "SN-A", "wrong", [source] * SPREAD) == [429] * SPREAD
    # Other addresses are unaffected.
    assert login(limited, "SN-B", PASSWORD, "127.0.0.3").status == LOGGED_IN
    assert "Traceback" not in limited.log


def test_a_serial_is_limited_from_every_address_known_or_not(limited: RunningServer) -> None:
    for serial in ("SN-C", "SN-UNKNOWN"):
        statuses = [
            login(limited, serial, "wrong", f"127.0.1.{attempt}").status for attempt in range(4)
        ]
        assert statuses == [401] * 4
        assert login(limited, serial, "wrong", "127.0.1.99").status == 429
        sources = [f"127.0.1.{100 + attempt}" for attempt in range(SPREAD)]
        assert logins_at_once(limited, serial, "wrong", sources) == [429] * SPREAD
    assert login(limited, "SN-C", PASSWORD, "127.0.1.98").status == 429
    # Another serial from one of those addresses still gets in.
    assert login(limited, "SN-B", PASSWORD, "127.0.1.0").status == LOGGED_IN


def test_a_certificate_device_is_not_locked_out_by_failures_for_its_serial(
    tmp_path: Path,
) -> None:
    """Its certificate proved who it is; the password beside it is checked, not limited."""
    lab = write_lab_pki(tmp_path / "pki", ["SN-CERT"])
    settings = {
        "workers": 2,
        "password_failures_per_address": 100,
        "password_failures_per_serial": 2,
        "password_failure_refill_seconds": 3600,
    }
    with running_server(tmp_path / "server", lab=lab, settings=settings) as server:
        resources = {**lab.trust_resources(), "device": {"SN-CERT": {"password": PASSWORD}}}
        response = admin(server, "POST", "/api/v1/state", json={"resources": resources})
        assert response.status_code == 200, response.text
        anonymous = ssl.create_default_context(cafile=lab.tls_ca.certificate)
        statuses = [login(server, "SN-CERT", "wrong", tls=anonymous).status for _ in range(3)]
        assert statuses == [401, 401, 429]
        device = ssl.create_default_context(cafile=lab.tls_ca.certificate)
        idevid = lab.devices["SN-CERT"].idevid
        device.load_cert_chain(idevid.certificate, idevid.private_key)
        assert login(server, "SN-CERT", PASSWORD, tls=device).status == LOGGED_IN
        assert login(server, "SN-CERT", "wrong", tls=device).status == 401
        # Naming another serial beside the certificate fails before any check.
        assert login(server, "SN-OTHER", PASSWORD, tls=device).status == 401
        assert "client certificate names SN-CERT but Basic auth 'SN-OTHER'" in server.log


def test_a_malformed_hash_is_refused_when_written(limited: RunningServer) -> None:
    bad = "$scrypt$n=3,r=8,p=1$AAECAwQFBgcICQoLDA0ODw$" + "A" * 43
    put = admin(limited, "PUT", "/api/v1/devices/SN-BAD", json={"spec": {"password_hash": bad}})
    assert put.status_code == 422, put.text
    error = put.json()["error"]
    assert error["field"] == "device[SN-BAD].password_hash"
    assert "scrypt parameters n=3,r=8,p=1 are not the ones sztp uses" in error["message"]
    bulk = admin(
        limited,
        "POST",
        "/api/v1/state",
        json={"resources": {"device": {"SN-BAD": {"password_hash": "$scrypt$n=16384"}}}},
    )
    assert bulk.status_code == 422, bulk.text
    assert admin(limited, "GET", "/api/v1/devices/SN-BAD").status_code == 404


def test_a_bad_stored_hash_is_a_failed_login_not_a_server_error(
    limited: RunningServer,
) -> None:
    store = open_store(f"sqlite:///{limited.directory / 'state' / 'sztp.db'}")
    try:
        store.apply(
            [Change("create", "device", "SN-STORED", {"password_hash": "$scrypt$n=3,r=8,p=1$x$y"})],
            actor="test",
        )
    finally:
        store.close()
    # An admin write is answered once every server process serves its revision, which
    # includes the change made behind the server's back (a poll would see it within a second).
    put = admin(limited, "PUT", "/api/v1/devices/SN-SYNC", json={"spec": {}})
    assert put.status_code in (200, 201), put.text
    assert admin(limited, "GET", "/api/v1/devices/SN-STORED/status").status_code == 200
    response = login(limited, "SN-STORED", "anything", "127.0.2.1")
    assert response.status == 401
    assert "stored password hash unusable" in limited.log
    assert "Traceback" not in limited.log


def test_a_full_queue_is_refused_at_once(tmp_path: Path) -> None:
    settings = {
        "password_workers": 1,
        "password_queue": 1,
        "password_failures_per_address": 0,
        "password_failures_per_serial": 0,
    }
    with running_server(tmp_path, settings=settings) as server:
        add_devices(server)
        url = urlsplit(server.device_url)
        request = (
            f"POST {GET_DATA} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: {basic('SN-A', 'wrong')}\r\nContent-Type: {JSON_TYPE}\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode()
        # Every request is on the wire before the first check (tens of ms) can end.
        connections = [
            http.client.HTTPConnection(url.hostname or "", url.port, timeout=60) for _ in range(30)
        ]
        for connection in connections:
            connection.connect()
        for connection in connections:
            assert connection.sock is not None
            connection.sock.sendall(request)
        responses = []
        for connection in connections:
            response = http.client.HTTPResponse(connection.sock)
            response.begin()
            responses.append((response.status, response.getheader("Retry-After"), response.read()))
            connection.close()
        statuses = [status for status, _, _ in responses]
        assert set(statuses) == {401, 503}, statuses
        busy = [(retry, body) for status, retry, body in responses if status == 503]
        assert all(retry == "1" for retry, _ in busy)
        assert (
            "resource-denied"
            in json.loads(busy[0][1])["ietf-restconf:errors"]["error"][0]["error-tag"]
        )
        assert "Traceback" not in server.log

"""`workers`: device worker processes beside the main one, on the same device listeners.

A real `sztp-server` with two processes (the main one and one device worker) over TLS: both
serve devices, an admin write is seen by every process before it is answered (a new trust
anchor included, which the TLS handshake needs), /metrics counts every process's requests, a
worker killed outright is replaced, SIGHUP reaches the workers, SIGTERM stops them all, and a
second server cannot share the device port by accident.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import pki
from sztp_server.config import load_config
from sztp_testing import (
    SZTP_SERVER,
    RunningServer,
    assert_released,
    lab_voucher,
    running_server,
)

GET_DATA = "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
JSON_TYPE = "application/yang-data+json"
FLEET = 20_000
CONNECTIONS = 40  # each a new connection: all of them reaching one process is 2**-40 likely


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("workers") / "pki", [])


@pytest.fixture
def server(lab: LabPki, tmp_path: Path) -> Iterator[RunningServer]:
    # refresh_interval: longer than any test takes, so only the main process's word that a
    # revision is new can bring it to the worker in time.
    settings = {"workers": 2, "refresh_interval": 60}
    with running_server(tmp_path / "server", lab=lab, settings=settings) as running:
        running.apply(lab.trust_resources())
        yield running


def anonymous_request(server: RunningServer, lab: LabPki) -> int:
    """get-bootstrapping-data without credentials, over a connection of its own."""
    return requests.post(
        f"{server.device_url}{GET_DATA}",
        headers={"Content-Type": JSON_TYPE, "Connection": "close"},
        data=b"",
        verify=str(lab.tls_ca.certificate),
        timeout=10,
    ).status_code


def test_both_processes_serve_the_device_listener(server: RunningServer, lab: LabPki) -> None:
    assert len(server.worker_pids()) == 1
    assert [anonymous_request(server, lab) for _ in range(CONNECTIONS)] == [401] * CONNECTIONS
    refusals = [
        record for record in server.log_records() if record.get("event") == "device request refused"
    ]
    assert len(refusals) == CONNECTIONS
    # Records of the device worker say so; the main process's do not.
    assert {record.get("worker") for record in refusals} == {None, 1}


def test_metrics_count_every_process(server: RunningServer, lab: LabPki) -> None:
    for _ in range(CONNECTIONS):
        anonymous_request(server, lab)
    line = re.compile(r'^sztp_requests_total\{rpc="get-bootstrapping-data",status="401"\} (\S+)$')
    deadline = time.monotonic() + 10
    counted = None
    while time.monotonic() < deadline:
        page = requests.get(
            f"{server.admin_url}/metrics",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=5,
        ).text
        counted = next(
            (float(match[1]) for match in map(line.match, page.splitlines()) if match), None
        )
        if counted == CONNECTIONS:
            break
        time.sleep(0.2)
    assert counted == CONNECTIONS


def test_an_admin_write_is_answered_once_every_process_serves_it(
    server: RunningServer, lab: LabPki, tmp_path: Path
) -> None:
    """Each round adds a manufacturer the server has never seen and a device of it; the
    device's very next connections, whichever process they reach, must complete the TLS
    handshake (the worker's TLS layer knows the new anchor) and find the device. A large fleet
    makes each snapshot load long enough for a device to come first if the write did not wait
    for the worker."""
    profile = {"day0": {"type": "onboarding", "configuration": "hostname w\n"}}
    server.apply(
        {
            **lab.trust_resources(),
            "profile": profile,
            "device": {f"SN-F{number:05d}": {"profile": "day0"} for number in range(FLEET)},
        }
    )
    for round_number in range(3):
        root = pki.create_root_ca(f"Vendor {round_number} Root CA")
        serial = f"SN-W{round_number}"
        idevid = pki.issue_idevid(root, serial)
        certificate, key = tmp_path / f"{serial}.pem", tmp_path / f"{serial}.key"
        certificate.write_bytes(pki.certificate_to_pem(idevid.certificate))
        key.write_bytes(pki.private_key_to_pem(idevid.private_key))
        server.apply(
            {
                "trust-anchor": {
                    f"vendor-{round_number}": {
                        "certificates": pki.certificate_to_pem(root.certificate).decode()
                    }
                },
                "profile": profile,
                "device": {
                    serial: {
                        "profile": "day0",
                        "voucher": base64.b64encode(lab_voucher(lab, serial)).decode(),
                    }
                },
            }
        )
        statuses = [
            requests.post(
                f"{server.device_url}{GET_DATA}",
                headers={"Content-Type": JSON_TYPE, "Connection": "close"},
                data=b"",
                cert=(str(certificate), str(key)),
                verify=str(lab.tls_ca.certificate),
                timeout=10,
            ).status_code
            for _ in range(10)
        ]
        assert statuses == [200] * 10, server.log


def test_a_killed_worker_is_replaced(server: RunningServer, lab: LabPki) -> None:
    [first] = server.worker_pids()
    os.kill(first, signal.SIGKILL)
    # Connections queued on the killed process's socket are reset as it dies (a device tries
    # again); from then on, devices are served by the process left.
    time.sleep(0.5)
    deadline = time.monotonic() + 15
    while len(server.worker_pids()) < 2 and time.monotonic() < deadline:
        assert anonymous_request(server, lab) == 401
        time.sleep(0.1)
    pids = server.worker_pids()
    assert len(pids) == 2 and pids[1] != first, server.log
    assert any(
        record.get("event") == "device worker ended; starting another"
        for record in server.log_records()
    )
    refusals_before = len(server.refusal_reasons())
    for _ in range(CONNECTIONS):
        anonymous_request(server, lab)
    new_refusals = [
        record for record in server.log_records() if record.get("event") == "device request refused"
    ][refusals_before:]
    assert {record.get("worker") for record in new_refusals} == {None, 1}


def test_sighup_reaches_the_workers_and_sigterm_stops_them_all(server: RunningServer) -> None:
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reloads = [
            record.get("worker")
            for record in server.log_records()
            if record.get("event") == "TLS certificates reloaded"
        ]
        if sorted(reloads, key=str) == [1, None]:
            break
        time.sleep(0.1)
    assert sorted(reloads, key=str) == [1, None], server.log
    [worker] = server.worker_pids()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    assert not Path(f"/proc/{worker}").exists()
    assert_released(server.directory / "state")
    assert not any(
        record.get("event") == "device worker ended; starting another"
        for record in server.log_records()
    )


def test_a_second_server_cannot_share_the_device_port(
    server: RunningServer, tmp_path: Path
) -> None:
    assert SZTP_SERVER
    port = int(server.device_url.rsplit(":", 1)[1])
    config = tmp_path / "second.yaml"
    config.write_text(
        json.dumps(
            {
                "database_url": f"sqlite:///{tmp_path / 'second.db'}",
                "device_listeners": [{"host": "127.0.0.1", "port": port}],
                "admin_listener": {"host": "127.0.0.1", "port": 0},
                "admin_token_file": str(tmp_path / "second-token"),
                "workers": 2,
            }
        )
    )
    result = subprocess.run(
        [SZTP_SERVER, "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().endswith(
        f"sztp-server: device_listeners[0] 127.0.0.1:{port}: address already in use"
    )
    assert not (tmp_path / "second-token").exists()


def test_workers_setting(tmp_path: Path) -> None:
    config = tmp_path / "server.yaml"
    config.write_text("workers: 0\n")
    assert load_config(config, {}).process_count == len(os.sched_getaffinity(0))
    assert load_config(config, {"SZTP_SERVER_WORKERS": "3"}).process_count == 3
    with pytest.raises(Exception, match=r"workers: must not be negative \(0 is one per core\)"):
        load_config(config, {"SZTP_SERVER_WORKERS": "-1"})


def test_stop_signals_during_shutdown_change_nothing(server: RunningServer) -> None:
    """A service manager signals every process of the service, and the main process signals
    its workers too: what arrives while a process stops is ignored, and it stops cleanly,
    without a traceback."""
    processes = [server.process.pid, *server.worker_pids()]
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while server.process.poll() is None and time.monotonic() < deadline:
        for pid in processes:
            for number in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, number)
        time.sleep(0.002)
    assert server.process.wait(timeout=5) == 0
    assert "Traceback" not in server.log and "Exception ignored" not in server.log, server.log

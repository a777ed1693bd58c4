"""A progress report does not wait for the state file's write lock (what a bulk apply holds),
and a store call that waits (here: for the reports file's lock, held by another process) waits
in a worker thread: the event loop goes on serving devices and admins meanwhile (issue 13)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import restconf
from sztp_testing import RunningServer, onboarding_resources, running_server

SERIAL = "SN-WAIT"
GET_DATA_PATH = restconf.operation_path("/restconf", restconf.RPC_GET_BOOTSTRAPPING_DATA)
REPORT_PATH = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)
REPORT_BODY = b'{"ietf-sztp-bootstrap-server:input":{"progress-type":"bootstrap-initiated"}}'
# Long enough that a request stuck behind the lock is told apart from one that is not.
LOCK_HELD_SECONDS = 3.0
PROMPT_SECONDS = 1.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("pki"), [SERIAL])


@pytest.fixture
def server(tmp_path: Path, lab: LabPki) -> Iterator[RunningServer]:
    with running_server(tmp_path, settings={"trusted_proxies": ["127.0.0.1/32"]}) as running:
        running.apply(
            {
                **lab.trust_resources(),
                **onboarding_resources("day0", os_version="2.0", signing="when-requested"),
                "device": {SERIAL: {"profile": "day0"}},
            }
        )
        yield running


def device_post(server: RunningServer, lab: LabPki, path: str, body: bytes) -> requests.Response:
    certificate = lab.devices[SERIAL].idevid.certificate.read_text()
    return requests.post(
        f"{server.device_url}{path}",
        data=body,
        headers={
            "Content-Type": "application/yang-data+json",
            "X-SSL-Client-Cert": quote(certificate, safe=""),
        },
        timeout=30,
    )


def timed(call: object) -> float:
    started = time.monotonic()
    response = call()  # type: ignore[operator]
    assert response.ok, response.text
    return time.monotonic() - started


def hold_write_lock(server: RunningServer, file_name: str) -> sqlite3.Connection:
    """What a long bulk apply of another process does to a database file."""
    holder = sqlite3.connect(server.directory / "state" / file_name, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def stored_progress_types(server: RunningServer) -> list[str]:
    progress = requests.get(
        f"{server.admin_url}/api/v1/devices/{SERIAL}/progress",
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=30,
    ).json()
    return [
        entry["progress_type"] for attempt in progress["attempts"] for entry in attempt["reports"]
    ]


def test_a_report_is_answered_while_the_state_is_locked(server: RunningServer, lab: LabPki) -> None:
    holder = hold_write_lock(server, "sztp.db")
    try:
        assert timed(lambda: device_post(server, lab, REPORT_PATH, REPORT_BODY)) < PROMPT_SECONDS
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert stored_progress_types(server) == ["bootstrap-initiated"]


def test_a_report_waiting_for_the_write_lock_holds_up_no_other_request(
    server: RunningServer, lab: LabPki
) -> None:
    holder = hold_write_lock(server, "sztp-reports.db")
    report: list[requests.Response] = []
    reporter = threading.Thread(
        target=lambda: report.append(device_post(server, lab, REPORT_PATH, REPORT_BODY))
    )
    locked_at = time.monotonic()
    reporter.start()
    try:
        time.sleep(0.3)  # the report is now waiting for the lock
        assert not report, "the report did not wait for the write lock"
        assert timed(lambda: device_post(server, lab, GET_DATA_PATH, b"")) < PROMPT_SECONDS
        assert (
            timed(lambda: requests.get(f"{server.admin_url}/healthz", timeout=30)) < PROMPT_SECONDS
        )
        time.sleep(max(0.0, LOCK_HELD_SECONDS - (time.monotonic() - locked_at)))
        assert not report, "the report was answered while the write lock was held"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    reporter.join(timeout=30)
    assert report and report[0].status_code == 204, report
    assert stored_progress_types(server) == ["bootstrap-initiated"]

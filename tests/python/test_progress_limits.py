"""Bounds on progress reports: size cap (truncated and marked), per-device byte budget and
per-device report rate, through a real server on loopback TLS, plus the pure pieces."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import restconf
from sztp.protocol.restconf import ProgressReport, SshHostKey, WireFormat
from sztp_server.device_api.report_limits import cap_report
from sztp_server.device_api.token_buckets import TokenBuckets
from sztp_server.store.base import report_size
from sztp_server.store.model import ProgressRecord
from sztp_testing import ManualClock, RunningServer, run_sztpctl, running_server

CUT = "SN-CUT"
FLOOD = "SN-FLOOD"
MAX_REPORT_BYTES = 1000
BUDGET = 2500
BURST = 8
# Reports refused at once after the burst: with a rate per process, all of them and the burst
# before reaching one process (so that every one is refused) is one chance in thousands.
SPREAD = 4
REPORT_PATH = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)
ED25519_KEY = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))


def record(**fields: Any) -> ProgressRecord:
    return ProgressRecord(
        **{
            "serial": "SN-1",
            "received_at": datetime(2024, 1, 1, tzinfo=UTC),
            "progress_type": "bootstrap-complete",
            "message": None,
            "source_address": None,
            "attempt": 1,
            **fields,
        }
    )


# ---- the pure pieces


def test_a_report_within_the_cap_is_kept_as_is() -> None:
    small = record(message="ok", ssh_host_keys=(("ssh-ed25519", "AAAA"),))
    assert cap_report(small, report_size(small)) is small


def test_a_report_over_the_cap_keeps_keys_then_anchors_then_message() -> None:
    big = record(
        message="é" * 100,  # 200 bytes of UTF-8
        ssh_host_keys=(("ssh-ed25519", "k" * 30), ("ssh-rsa", "r" * 500)),
        trust_anchor_certs=("a" * 20, "b" * 400),
    )
    capped = cap_report(big, 100)
    assert capped.truncated
    assert capped.ssh_host_keys == (("ssh-ed25519", "k" * 30),)
    assert capped.trust_anchor_certs == ("a" * 20,)
    # 100 - 41 - 20 = 39 bytes left: 19 two-byte characters, the split one dropped.
    assert capped.message == "é" * 19
    assert report_size(capped) <= 100


def test_a_device_may_report_a_burst_then_at_the_rate() -> None:
    clock = ManualClock()
    buckets = TokenBuckets(3, 10.0, clock=clock)  # 6 a minute
    assert [buckets.take("SN-A") for _ in range(4)] == [True, True, True, False]
    assert buckets.take("SN-B")  # every device has its own bucket
    clock.now += 9
    assert not buckets.take("SN-A")
    clock.now += 1
    assert buckets.take("SN-A")  # one report per 10 s refills
    assert not buckets.take("SN-A")
    # Idle for long, the bucket refills only up to the burst.
    clock.now += 1000
    assert [buckets.take("SN-A") for _ in range(4)] == [True, True, True, False]


def test_a_bounded_number_of_devices_is_tracked() -> None:
    buckets = TokenBuckets(1, 60.0, tracked=2, clock=ManualClock())
    assert buckets.take("SN-A") and buckets.take("SN-B")
    assert not buckets.take("SN-A")
    assert buckets.take("SN-C")  # forgets SN-A, the earliest charged
    assert buckets.take("SN-A")
    assert not buckets.take("SN-C")


# ---- a real server


@dataclass
class Site:
    lab: LabPki
    server: RunningServer

    def report(self, serial: str, report: ProgressReport) -> requests.Response:
        idevid = self.lab.devices[serial].idevid
        return requests.post(
            f"{self.server.device_url}{REPORT_PATH}",
            data=restconf.encode_report_progress_input(report, WireFormat.JSON),
            headers={"Content-Type": WireFormat.JSON.media_type},
            cert=(str(idevid.certificate), str(idevid.private_key)),
            verify=str(self.lab.tls_ca.certificate),
            timeout=30,
        )

    def admin(self, path: str) -> Any:
        response = requests.get(
            f"{self.server.admin_url}/api/v1{path}",
            headers={"Authorization": f"Bearer {self.server.token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("limits")
    lab = write_lab_pki(root / "pki", [CUT, FLOOD], hw_model="lab-x1")
    settings = {
        # Two processes: each report (a new connection) reaches either, the rate is one.
        "workers": 2,
        "max_report_bytes": MAX_REPORT_BYTES,
        "report_bytes_per_device": BUDGET,
        "report_burst": BURST,
        # About one report a day: nothing refills while the test runs.
        "report_rate_per_minute": 0.001,
    }
    with running_server(root / "server", lab=lab, settings=settings) as server:
        resources = {**lab.trust_resources(), "device": {CUT: {}, FLOOD: {}}}
        server.apply(resources)
        yield Site(lab, server)


def test_oversized_reports_are_truncated_marked_and_budgeted(site: Site, tmp_path: Path) -> None:
    long_message = "x" * 5000
    assert site.report(CUT, ProgressReport("bootstrap-initiated", long_message)).status_code == 204
    assert site.report(CUT, ProgressReport("config-initiated", "short")).status_code == 204
    key = SshHostKey("ssh-ed25519", ED25519_KEY)
    complete = ProgressReport("bootstrap-complete", "é" * 3000, ssh_host_keys=(key,))
    assert site.report(CUT, complete).status_code == 204

    status = site.admin(f"/devices/{CUT}/status")
    last = status["last_report"]
    assert last["truncated"] is True
    # The key was kept whole; the message got what was left, cut between characters.
    key_data = base64.b64encode(ED25519_KEY).decode()
    assert last["ssh_host_keys"] == [{"algorithm": "ssh-ed25519", "key_data": key_data}]
    assert set(last["message"]) == {"é"}
    room = MAX_REPORT_BYTES - len("ssh-ed25519") - len(key_data)
    assert len(last["message"].encode()) in (room, room - 1)

    history = site.admin(f"/devices/{CUT}/progress")
    (attempt,) = history["attempts"]
    first, second, _ = attempt["reports"]
    assert (first["message"], first["truncated"]) == ("x" * MAX_REPORT_BYTES, True)
    assert (second["message"], second["truncated"]) == ("short", False)
    shown = run_sztpctl("device", "history", CUT, env=site.server.cli_env(tmp_path)).stdout
    assert shown.count("[truncated by the server]") == 2
    # How long the attempt took, and each phase: the second and third reports came after the
    # one before them.
    assert re.search(r"attempt 1, \d+\.\d s from first to last report", shown), shown
    assert len(re.findall(r"\+\d+\.\d s", shown)) == 2, shown

    # Two more full-size reports overflow the budget: the oldest go, the sum stays within it,
    # and bootstrap-complete, which decides the status, is not among them.
    for filler in "yz":  # two messages, or the second would be a repeat stored once
        message = filler * len(long_message)
        assert site.report(CUT, ProgressReport("informational", message)).status_code == 204
    status = site.admin(f"/devices/{CUT}/status")
    assert status["report_bytes"] <= BUDGET
    assert (status["status"], status["reports"]) == ("complete", 2)
    reports = site.admin(f"/devices/{CUT}/progress")["attempts"][-1]["reports"]
    assert [report["progress_type"] for report in reports] == [
        "bootstrap-complete",
        "informational",
    ]


def test_a_device_over_its_report_rate_is_refused(site: Site) -> None:
    for index in range(BURST):
        reply = site.report(FLOOD, ProgressReport("informational", f"report {index}"))
        assert reply.status_code == 204, reply.text
    refused = site.report(FLOOD, ProgressReport("informational", "one too many"))
    assert refused.status_code == 429
    # Each report came over a new connection, reaching either server process: with a rate
    # per process, reports reaching the process that took fewer would be taken.
    with ThreadPoolExecutor(max_workers=SPREAD) as pool:
        more = list(
            pool.map(
                lambda index: site.report(FLOOD, ProgressReport("informational", f"more {index}")),
                range(SPREAD),
            )
        )
    assert [reply.status_code for reply in more] == [429] * SPREAD
    # One report a day comes back: 60,000 s at 0.001 a minute.
    assert refused.headers["Retry-After"] == "60000"
    (error,) = json.loads(refused.content)["ietf-restconf:errors"]["error"]
    assert error["error-tag"] == "resource-denied"
    status = site.admin(f"/devices/{FLOOD}/status")
    assert status["reports"] == BURST
    assert status["last_report"]["message"] == f"report {BURST - 1}"

"""The flight recorder: every device request, served or refused, with the reason a device is
never told; bounded whatever the devices send."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from sztp.labpki import write_lab_pki
from sztp.passwords import generate_activation_code
from sztp.protocol import restconf
from sztp.protocol.restconf import RPC_GET_BOOTSTRAPPING_DATA, ProgressReport, WireFormat
from sztp.refusals import REFUSALS
from sztp_server.device_api import recorder
from sztp_server.device_api.recorder import Pending, Recorder, claimed_serial, device_events
from sztp_server.metrics import Metrics
from sztp_server.store.errors import StoreError
from sztp_server.store.model import DeviceEvent
from sztp_testing import RunningServer, basic, run_sztpctl, running_server

GET_DATA = f"/restconf/operations/{RPC_GET_BOOTSTRAPPING_DATA}"
REPORT_PATH = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)


def ask(server: RunningServer, authorization: str | None) -> int:
    headers = {"Content-Type": "application/yang-data+json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    return requests.post(f"{server.device_url}{GET_DATA}", headers=headers, timeout=30).status_code


def device_metrics(server: RunningServer) -> str:
    return requests.get(f"{server.device_url}/metrics", timeout=10).text


def recorded(server: RunningServer, count: int) -> list[dict[str, Any]]:
    """The newest events once at least `count` are recorded (they are written in batches)."""
    deadline = time.monotonic() + 10
    while True:
        events: list[dict[str, Any]] = server.client().device_events()["events"]
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.2)


def test_every_request_is_recorded_with_why_it_was_refused(tmp_path: Path) -> None:
    code = generate_activation_code()
    hostile = "[red]SN-X[/red]\x1b[2J"
    with running_server(tmp_path / "server", settings={"monitoring_listeners": "both"}) as server:
        owner = write_lab_pki(tmp_path / "pki", []).trust_resources()["owner"]
        day0 = {"type": "onboarding", "configuration": "hostname x\n", "signing": "when-requested"}
        server.apply(
            {
                "owner": owner,
                "profile": {"day0": day0},
                "device": {"SN-1": {"profile": "day0", "activation_code": code}},
            }
        )
        assert ask(server, basic("SN-1", code)) == 200
        assert ask(server, basic("SN-1", generate_activation_code())) == 401
        assert ask(server, basic("SN-404", code)) == 401
        assert ask(server, None) == 401
        assert ask(server, basic("[red]SN-X[/red]", code)) == 401
        assert ask(server, basic(hostile, code)) == 401  # not printable: no claim kept
        assert ask(server, "Basic !!!") == 401
        # Each server process writes its events every half second: in time order here.
        events = sorted(recorded(server, 7), key=lambda event: event["at"], reverse=True)
        assert [(event["serial"], event["refusal"]) for event in events] == [
            (None, "malformed-credentials"),
            (None, "unknown-serial"),
            ("[red]SN-X[/red]", "unknown-serial"),
            (None, "no-credentials"),
            ("SN-404", "unknown-serial"),
            ("SN-1", "wrong-secret"),
            ("SN-1", None),
        ]
        served = events[-1]
        assert served["authenticated"] and served["status"] == 200
        assert served["rpc"] == "get-bootstrapping-data" and served["remote"] == "127.0.0.1"
        assert 0 < served["duration_ms"] < 10_000
        # What it was served from; a refused request was served nothing.
        assert (served["profile"], served["image"]) == ("day0", None)
        assert all(event["profile"] is None for event in events[:-1])
        assert not any(event["authenticated"] for event in events[:-1])
        assert {event["refusal"] for event in events} - {None} <= set(REFUSALS)

        # The reasons are counted for the operator; the devices' network sees only how many.
        admin = requests.get(
            f"{server.admin_url}/metrics",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        ).text
        counted = (
            'sztp_refused_requests_total{reason="unknown-serial",rpc="get-bootstrapping-data"}'
        )
        assert f"{counted} 3" in admin
        summed = 'sztp_refused_requests_total{rpc="get-bootstrapping-data"} 6'
        deadline = time.monotonic() + 10
        # A device worker shows the other processes' counts as they last sent them.
        while summed not in (public := device_metrics(server)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert summed in public, public
        assert "unknown-serial" not in public and "wrong-secret" not in public

        # The operator's view: one device's requests, the refused ones, in the CLI too.
        env = server.cli_env(tmp_path)
        mine = json.loads(run_sztpctl("events", "--serial", "SN-1", "-o", "json", env=env).stdout)
        assert sorted(event["refusal"] or "" for event in mine) == ["", "wrong-secret"]
        refused = json.loads(run_sztpctl("events", "--refused", "-o", "json", env=env).stdout)
        assert len(refused) == 6 and all(event["refusal"] for event in refused)
        status = run_sztpctl("device", "status", "SN-1", env=env).stdout
        assert "wrong-secret: the wrong password or activation code" in status
        assert "sztpctl events --serial SN-1 --refused" in status
        shown = json.loads(run_sztpctl("device", "status", "SN-1", "-o", "json", env=env).stdout)
        assert shown["last_refused"]["refusal"] == "wrong-secret"
        table = run_sztpctl("events", "--serial", "[red]SN-X[/red]", env=env).stdout
        # Text from the network stays text: no markup applied, nothing of it lost.
        assert "[red]SN-X[/red] (claimed)" in table
        assert "unknown-serial: a serial number the fleet does not hold" in table
        ids = sorted((event["id"] for event in events), reverse=True)
        older = server.client().device_events(limit=2, before=ids[4])
        assert [event["id"] for event in older["events"]] == ids[5:]
        assert older["next_before"] is None
        first = server.client().device_events(limit=3)
        assert [event["id"] for event in first["events"]] == ids[:3]
        assert first["next_before"] == ids[2]
        bad = requests.get(
            f"{server.admin_url}/api/v1/events",
            params={"refused": "maybe"},
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        )
        assert bad.status_code == 400 and "refused" in bad.text


def test_a_report_sent_again_after_a_lost_answer_is_stored_once(tmp_path: Path) -> None:
    """A device that never got its answer sends the same report again: both are answered, the
    recorder keeps both requests, the history keeps the report once."""
    code = generate_activation_code()
    with running_server(tmp_path / "server") as server:
        server.apply({"device": {"SN-1": {"activation_code": code}}})

        def send(report: ProgressReport) -> int:
            return requests.post(
                f"{server.device_url}{REPORT_PATH}",
                data=restconf.encode_report_progress_input(report, WireFormat.JSON),
                headers={
                    "Content-Type": WireFormat.JSON.media_type,
                    "Authorization": basic("SN-1", code),
                },
                timeout=30,
            ).status_code

        started = ProgressReport("bootstrap-initiated", "starting")
        for report in (started, started, ProgressReport("informational", "fetching"), started):
            assert send(report) == 204
        history = server.client().device_progress("SN-1")
        stored = [
            (report["progress_type"], report["message"])
            for attempt in history["attempts"]
            for report in attempt["reports"]
        ]
        assert stored == [
            ("bootstrap-initiated", "starting"),
            ("informational", "fetching"),
            ("bootstrap-initiated", "starting"),
        ]
        events = recorded(server, 4)
        assert [(event["rpc"], event["status"]) for event in events] == [
            ("report-progress", 204)
        ] * 4
        admin = requests.get(
            f"{server.admin_url}/metrics",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        ).text
        assert "sztp_progress_reports_repeated_total 1" in admin


def record(recorder: Recorder, refusal: str | None = None) -> bool:
    status = 401 if refusal else 200
    return recorder.record(
        "get-bootstrapping-data", status, "SN-1", not refusal, refusal, "", 0.001
    )


def test_refused_requests_are_recorded_at_a_bounded_rate_and_served_ones_always() -> None:
    written: list[list[DeviceEvent]] = []
    metrics = Metrics()

    async def write(batch: list[Pending]) -> None:
        written.append(device_events(batch))

    async def flood() -> None:
        kept = Recorder(write, metrics, refused_per_second=10)
        recorded = [record(kept, "wrong-secret") for _ in range(1000)]
        assert recorded == [True] * 10 + [False] * 990
        assert all(record(kept) for _ in range(5))
        await kept.flush()

    started = datetime.now(UTC)
    asyncio.run(flood())
    (batch,) = written
    assert [item.refusal for item in batch] == ["wrong-secret"] * 10 + [None] * 5
    assert all(started <= item.at <= datetime.now(UTC) for item in batch)
    assert batch[-1].duration_us == 1000 and batch[-1].authenticated
    assert 'sztp_device_events_dropped_total{why="refused-rate"} 990' in metrics.render()


def test_what_waits_is_bounded_and_a_store_error_loses_only_the_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder, "MAX_PENDING", 3)
    metrics = Metrics()

    async def failing(batch: list[Pending]) -> None:
        raise StoreError("database is busy")

    async def run() -> None:
        kept = Recorder(failing, metrics, refused_per_second=10)
        assert [record(kept) for _ in range(5)] == [True] * 3 + [False] * 2
        await kept.flush()
        await kept.flush()  # nothing left waiting

    asyncio.run(run())
    page = metrics.render()
    assert 'sztp_device_events_dropped_total{why="backlog"} 2' in page
    assert 'sztp_device_events_dropped_total{why="store-error"} 3' in page


@pytest.mark.parametrize(
    ("authorization", "claimed"),
    [
        (basic("SN-1", "x"), "SN-1"),
        (basic("SN-1:with:colons", "x"), "SN-1"),
        (basic("S" * 64, "x"), "S" * 64),
        (basic("S" * 65, "x"), None),
        (basic("", "x"), None),
        (basic("SN\t1", "x"), None),
        (basic("SNé", "x"), None),
        ("Basic " + base64.b64encode(b"no colon").decode(), None),
        ("Bearer abc", None),
        ("Basic !!!", None),
        (None, None),
    ],
)
def test_a_claimed_serial_is_kept_only_as_short_printable_text(
    authorization: str | None, claimed: str | None
) -> None:
    assert claimed_serial(authorization) == claimed


def test_what_a_device_said_and_why_it_got_nothing_are_kept(tmp_path: Path) -> None:
    code = generate_activation_code()
    with running_server(tmp_path / "server") as server:
        server.apply({"device": {"SN-1": {"activation_code": code}}})  # no profile
        said = restconf.encode_get_bootstrapping_data_input(
            restconf.GetBootstrappingDataInput(hw_model="DPU-é[red]" + "x" * 100, os_name="LabOS"),
            WireFormat.JSON,
        )
        answer = requests.post(
            f"{server.device_url}{GET_DATA}",
            data=said,
            headers={
                "Content-Type": WireFormat.JSON.media_type,
                "Authorization": basic("SN-1", code),
            },
            timeout=30,
        )
        assert answer.status_code == 404
        (event,) = recorded(server, 1)
    assert event["refusal"] == "no-bootstrapping-data"
    # The device's own words: printable, each cut to 64 characters; then the server's reason.
    assert event["detail"] == (
        "hw-model DPU-?[red]" + "x" * 54 + ", os-name LabOS; device SN-1 has no profile"
    )

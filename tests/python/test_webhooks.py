"""Webhooks: device events queued with the report that caused them, delivered at least once,
signed, retried while the receiver is away, and their delivery visible."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from sztp.errors import ValidationError
from sztp.labpki import write_lab_pki
from sztp.passwords import generate_activation_code
from sztp.protocol import pki, restconf
from sztp.protocol.restconf import ProgressReport, WireFormat
from sztp_server.config import load_config
from sztp_server.context import ServerContext
from sztp_server.events_out.webhook_watch import WebhookWatch
from sztp_server.secret_key import SecretKey
from sztp_server.store import open_store
from sztp_server.store.model import Change, DeviceEvent, ProgressRecord
from sztp_testing import RunningServer, basic, free_port, run_sztpctl, running_server

REPORT_PATH = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)
SECRET = b"0123456789abcdef-webhook-key"
# A receiver: answers 204 and writes each request (headers and body) as a JSON line.
RECEIVER = textwrap.dedent(
    """
    import json, sys
    from aiohttp import web

    log = open(sys.argv[2], "a", buffering=1)

    async def receive(request):
        body = await request.read()
        log.write(json.dumps({"headers": dict(request.headers), "body": body.decode()}) + "\\n")
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", receive)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
    """
)


class Receiver:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.log = directory / "received.jsonl"
        self.script = directory / "receiver.py"
        self.script.write_text(RECEIVER)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(self.script), str(self.port), str(self.log)]
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the receiver did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def received(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]


@contextmanager
def receiving(directory: Path) -> Iterator[Receiver]:
    receiver = Receiver(directory)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def secret_file(directory: Path) -> Path:
    path = directory / "webhook.key"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def report(server: RunningServer, code: str, progress_type: str, message: str) -> None:
    body = restconf.encode_report_progress_input(
        ProgressReport(progress_type, message), WireFormat.JSON
    )
    answer = requests.post(
        f"{server.device_url}{REPORT_PATH}",
        data=body,
        headers={"Content-Type": WireFormat.JSON.media_type, "Authorization": basic("SN-1", code)},
        timeout=30,
    )
    assert answer.status_code == 204


def wait_for(check: Any, what: str, seconds: float = 40) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return found


def test_events_reach_a_receiver_that_restarts(tmp_path: Path) -> None:
    code = generate_activation_code()
    receiver = Receiver(tmp_path)
    receiver.start()
    key = secret_file(tmp_path)
    hooks = [
        {"name": "ops", "url": receiver.url, "secret_file": str(key)},
        {"name": "done", "url": receiver.url, "secret_file": str(key),
         "events": ["device-complete"]},
    ]  # fmt: skip
    try:
        with running_server(tmp_path / "server", settings={"webhooks": hooks}) as server:
            server.apply({"device": {"SN-1": {"activation_code": code}}})
            report(server, code, "bootstrap-initiated", "starting")
            wait_for(lambda: len(receiver.received()) >= 1, "the first event did not arrive")

            receiver.stop()  # events from now on wait in the outbox
            report(server, code, "bootstrap-error", 'disk "full"\n<script>')
            waiting = wait_for(
                lambda: [
                    hook
                    for hook in server.client().webhooks()["webhooks"]
                    if hook["name"] == "ops" and hook["pending"] == 2 and hook["last_error"]
                ],
                "the undelivered events are not shown as pending",
            )
            assert waiting[0]["oldest_pending_at"] is not None
            table = run_sztpctl("webhooks", env=server.cli_env(tmp_path)).stdout
            assert "ops" in table and receiver.url in table

            receiver.start()
            report(server, code, "bootstrap-initiated", "again")
            report(server, code, "bootstrap-complete", "done")

            def all_delivered() -> list[dict[str, Any]] | None:
                hooks: list[dict[str, Any]] = server.client().webhooks()["webhooks"]
                return hooks if all(hook["pending"] == 0 for hook in hooks) else None

            statuses = wait_for(
                all_delivered, "the events were not all delivered after the receiver came back"
            )
            assert {hook["name"] for hook in statuses} == {"ops", "done"}
    finally:
        receiver.stop()

    deliveries = receiver.received()
    bodies = []
    for delivery in deliveries:
        headers = {name.lower(): value for name, value in delivery["headers"].items()}
        body = delivery["body"].encode()
        expected = hmac.new(
            SECRET, headers["x-sztp-timestamp"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        assert headers["x-sztp-signature"] == f"sha256={expected}"
        assert abs(time.time() - int(headers["x-sztp-timestamp"])) < 120
        event = json.loads(body)
        assert headers["x-sztp-event"] == event["type"]
        bodies.append((event["type"], event["previous_status"], event["status"], event["message"]))
    # At least once: every event arrived; one sent as the receiver died may arrive twice.
    assert set(bodies) == {
        ("device-status-changed", "not-seen", "in-progress", "starting"),
        ("device-status-changed", "in-progress", "failed", 'disk "full"\n<script>'),
        ("device-failed", "in-progress", "failed", 'disk "full"\n<script>'),
        ("device-status-changed", "failed", "in-progress", "again"),
        ("device-status-changed", "in-progress", "complete", "done"),
        ("device-complete", "in-progress", "complete", "done"),
    }
    # "done" asked for device-complete only, and got it (twice: once per webhook).
    assert bodies.count(("device-complete", "in-progress", "complete", "done")) >= 2


def test_webhook_settings_are_checked(tmp_path: Path) -> None:
    key = secret_file(tmp_path)
    good = {"name": "ops", "url": "https://hooks.example.net/sztp", "secret_file": str(key)}
    cases = [
        ({**good, "events": ["device-exploded"]}, "unknown event type"),
        ({**good, "url": "http://hooks.example.net/"}, "only to loopback"),
        ({**good, "colour": "red"}, "unknown setting"),
        ({"name": "ops", "url": good["url"]}, "secret_file"),
    ]
    for hook, problem in cases:
        config = tmp_path / "config.yaml"
        config.write_text(json.dumps({"webhooks": [hook]}))
        with pytest.raises(ValidationError, match=problem):
            load_config(config, {})
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"webhooks": [good, good]}))
    with pytest.raises(ValidationError, match="same name"):
        load_config(config, {})
    # The key file: checked by `sztp-server check` and at start.
    key.chmod(0o644)
    config.write_text(json.dumps({"webhooks": [good]}))
    checked = subprocess.run(
        [sys.executable, "-m", "sztp_server", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 2
    assert "webhooks[0].secret_file" in checked.stderr and "0600" in checked.stderr
    assert "Traceback" not in checked.stderr


def test_time_made_events_are_queued_once_by_any_instance(tmp_path: Path) -> None:
    """Stalled devices, a minute of refusals and an expiring owner certificate: each queued
    once, though two instances look, and again not at the next look."""
    key = secret_file(tmp_path)
    config_file = tmp_path / "config.yaml"
    hook = {"name": "ops", "url": "https://hooks.example.net/", "secret_file": str(key)}
    config_file.write_text(json.dumps({"webhooks": [hook], "webhook_refused_per_minute": 3}))
    config = load_config(config_file, {})
    store = open_store(f"sqlite://{tmp_path}/sztp.db")
    lab = write_lab_pki(tmp_path / "pki", [])
    short = pki.issue_signing_certificate(lab.owner_ca.load(), "short", days=3)
    now = datetime.now(UTC)
    try:
        store.apply(
            [
                Change("create", "device", "SN-SILENT", {}),
                Change("create", "device", "SN-BUSY", {}),
                Change(
                    "create",
                    "owner",
                    "short",
                    {"certificate_chain": pki.certificate_to_pem(short.certificate).decode()},
                ),
            ],
            actor="test",
        )
        hours_ago = now - timedelta(hours=2)
        store.add_report(
            ProgressRecord("SN-SILENT", hours_ago, "bootstrap-initiated", "m", None, 1)
        )
        store.add_report(ProgressRecord("SN-BUSY", now, "bootstrap-initiated", "m", None, 1))
        last_minute = now.replace(second=0, microsecond=0) - timedelta(seconds=30)
        refused = [
            DeviceEvent(last_minute, "get-bootstrapping-data", 401, None, False, reason, "::1", 1)
            for reason in ("unknown-serial", "unknown-serial", "wrong-secret")
        ]
        store.add_device_events(refused, keep=100)
        instances = [
            WebhookWatch(ServerContext(store, config, SecretKey(os.urandom(32)))) for _ in range(2)
        ]
        assert [watch.look(now) for watch in instances] == [3, 0]
        assert instances[0].look(now + timedelta(seconds=30)) == 0
        bodies = {
            entry.event_type: json.loads(entry.body)
            for entry in store.claim_webhook_deliveries(now, now + timedelta(minutes=1), 10)
        }
        assert bodies["device-stalled"]["serial"] == "SN-SILENT"
        assert bodies["refused-requests"]["reasons"] == {"unknown-serial": 2, "wrong-secret": 1}
        assert (bodies["expiring"]["kind"], bodies["expiring"]["name"]) == (
            "owner-certificate",
            "short",
        )
    finally:
        store.close()

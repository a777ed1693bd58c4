"""The audit log and the admin API's refusals, against real `sztp-server` processes: token
changes audited, refused tokens logged with the peer's address, retention and `audit prune`."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sztp_server.admin.auth import RefusalLog
from sztp_testing import RunningServer, run_sztpctl, running_server

AGED = "2000-01-01T00:00:00.000000+00:00"
PROFILE = {"type": "onboarding", "signing": "when-requested", "configuration": "hostname lab\n"}


def call(server: RunningServer, method: str, path: str, token: str | None = None, **kw: Any) -> Any:
    headers = {"Authorization": f"Bearer {token or server.token}"}
    return requests.request(
        method, f"{server.admin_url}/api/v1{path}", headers=headers, timeout=30, **kw
    )


def audit(server: RunningServer) -> list[dict[str, Any]]:
    response = call(server, "GET", "/audit", params={"limit": 1000})
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["entries"]
    return entries


def log_events(server: RunningServer, event: str) -> list[dict[str, Any]]:
    lines = (json.loads(line) for line in server.log.splitlines() if line.startswith("{"))
    return [line for line in lines if line["event"] == event]


def age_every_audit_entry(server: RunningServer) -> None:
    """Date the entries written so far back to 2000 (no API can write an old entry)."""
    with sqlite3.connect(server.directory / "state" / "sztp.db") as database:
        database.execute("UPDATE audit SET at = ?", (AGED,))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "server") as running:
        yield running


def test_token_changes_are_audited_without_the_token(server: RunningServer) -> None:
    created = call(server, "POST", "/tokens", json={"name": "ci", "role": "read-only"})
    assert created.status_code == 201
    secret = created.json()["token"]
    assert call(server, "DELETE", "/tokens/ci").status_code == 204
    entries = audit(server)
    assert [(e["actor"], e["action"], e["kind"], e["name"], e["detail"]) for e in entries] == [
        ("admin", "delete", "token", "ci", {"role": "read-only"}),
        ("admin", "create", "token", "ci", {"role": "read-only"}),
        ("(server)", "create", "token", "admin", {"role": "admin"}),
    ]
    assert secret not in json.dumps(entries) and server.token not in json.dumps(entries)


def test_refused_tokens_are_logged_with_the_address_never_the_token(
    server: RunningServer,
) -> None:
    guess = "sztp_guessed-token-value-0123456789"
    assert call(server, "GET", "/devices", token=guess).status_code == 401
    bare = requests.get(f"{server.admin_url}/api/v1/devices", timeout=30)
    assert bare.status_code == 401
    assert call(server, "GET", "/devices").status_code == 200  # a valid token is not logged
    refusals = log_events(server, "admin API request refused")
    assert [(line["remote"], line["reason"]) for line in refusals] == [
        ("127.0.0.1", "unknown token"),
        ("127.0.0.1", "no bearer token"),
    ]
    assert guess not in server.log and "guessed-token" not in server.log


def test_refusal_log_lines_are_bounded_and_count_what_they_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    refusals = RefusalLog(burst=2, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="sztp_server.admin.auth"):
        for _ in range(5):
            refusals.log("192.0.2.1", "unknown token")
        now[0] = 60.0
        refusals.log("192.0.2.1", "unknown token")
    logged = [record for record in caplog.records if record.msg == "admin API request refused"]
    assert [record.__dict__["unlogged_refusals"] for record in logged] == [0, 0, 3]
    assert {record.__dict__["remote"] for record in logged} == {"192.0.2.1"}


def test_audit_prune_from_the_cli(server: RunningServer, tmp_path: Path) -> None:
    for name in ("lab", "spare"):
        response = call(server, "POST", "/profiles", json={"name": name, "spec": PROFILE})
        assert response.status_code == 201, response.text
    age_every_audit_entry(server)  # the first token and the two profiles
    call(server, "PUT", "/profiles/spare", json={"spec": {**PROFILE, "encoding": "xml"}})
    env = server.cli_env(tmp_path)
    refused = run_sztpctl("audit", "prune", env=env, expect=1)
    assert "audit_retention_days is 0" in refused.stderr
    for days in ("0", "-1", "nan", "1e9"):
        run_sztpctl("audit", "prune", "--older-than-days", days, env=env, expect=1)
    dry = run_sztpctl(
        "audit", "prune", "--older-than-days", "30", "--dry-run", "-o", "json", env=env
    )
    assert json.loads(dry.stdout)["entries"] == 3
    assert len(audit(server)) == 4

    viewer = call(server, "POST", "/tokens", json={"name": "viewer", "role": "read-only"})
    viewer_file = tmp_path / "viewer-token"
    viewer_file.write_text(viewer.json()["token"])
    denied = run_sztpctl(
        "--token-file",
        viewer_file,
        "audit",
        "prune",
        "--older-than-days",
        "30",
        "--dry-run",
        env=env,
        expect=1,
    )
    assert "read-only" in denied.stderr

    done = run_sztpctl("audit", "prune", "--older-than-days", "30", env=env)
    assert done.stdout.startswith("pruned 3 audit entries from before ")
    entries = audit(server)
    assert [(e["actor"], e["action"], e["kind"], e["name"]) for e in entries[1:]] == [
        ("admin", "create", "token", "viewer"),
        ("admin", "update", "profile", "spare"),
    ]
    assert (entries[0]["actor"], entries[0]["action"], entries[0]["kind"]) == (
        "admin",
        "prune",
        "audit",
    )
    assert entries[0]["detail"]["entries"] == 3
    [logged] = log_events(server, "audit entries pruned")
    assert (logged["entries"], logged["actor"]) == (3, "admin")


def test_the_server_prunes_entries_past_its_retention(tmp_path: Path) -> None:
    directory = tmp_path / "server"
    with running_server(directory) as first:
        response = call(first, "POST", "/profiles", json={"name": "lab", "spec": PROFILE})
        assert response.status_code == 201
        age_every_audit_entry(first)
        call(first, "PUT", "/profiles/lab", json={"spec": {**PROFILE, "encoding": "xml"}})
    with running_server(directory, settings={"audit_retention_days": 30}) as second:
        deadline = time.monotonic() + 60
        while len(entries := audit(second)) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [(e["action"], e["kind"], e["name"]) for e in entries] == [
            ("update", "profile", "lab")
        ]
        [logged] = log_events(second, "audit entries past retention pruned")
        assert (logged["entries"], logged["retention_days"]) == (2, 30)


def test_large_fields_are_audited_as_digest_and_size(server: RunningServer) -> None:
    script = "#!/bin/sh\n" + "logger -t sztp configuring the lab switch\n" * 100
    spec = {**PROFILE, "post_configuration_script": script}
    assert call(server, "POST", "/profiles", json={"name": "lab", "spec": spec}).status_code == 201
    [entry, _first_token] = audit(server)
    after = entry["detail"]["after"]
    assert after["post_configuration_script"] == {
        "sha256": hashlib.sha256(script.encode()).hexdigest(),
        "size": len(script.encode()),
    }
    assert after["configuration"] == PROFILE["configuration"]  # small fields stay readable
    assert "logger -t sztp" not in json.dumps(entry)

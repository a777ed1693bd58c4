"""The admin API (`/api/v1`) against a real SQLite store, served on 127.0.0.1.

The app runs in a background thread with its own event loop (aiohttp.test_utils.TestServer),
so the tests use plain `requests` and schemathesis can reach the same server.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from aiohttp import web
from aiohttp.test_utils import TestServer

from sztp.client import SztpClient
from sztp.device_status import STATUSES
from sztp.errors import ApiValidationError, ServerUnreachable
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp.state.resources import KINDS, public_view
from sztp_server.admin import build_admin_app, jobs, views, writes
from sztp_server.admin.handlers import devices as device_handlers
from sztp_server.admin.handlers import state as state_handlers
from sztp_server.admin.routes import STATE_SERVICE
from sztp_server.admin.writer import Writer, WriterHandle
from sztp_server.admin.writes import Write
from sztp_server.config import ServerConfig
from sztp_server.context import ServerContext, Snapshot
from sztp_server.secret_key import SecretKey
from sztp_server.store.model import Change, IssuedCertificate, ProgressRecord, ReportOutcome
from sztp_server.store.sqlite import SqliteStore
from sztp_server.tokens import (
    ensure_first_admin_token,
    generate_token,
    hash_token,
)
from sztp_testing import ManualClock

PASSWORD = "correct horse battery staple"
IMAGE_SHA = "ab" * 32


class InThreadWriter:
    """The server's Writer run in a thread of this process, where a test can watch what it
    calls (the server runs it in a writer process of its own)."""

    def __init__(self, context: ServerContext) -> None:
        self.writer = Writer(
            context.store, context.secret_key, jobs.Progress(), context.config.issuer_names()
        )
        self.lock = asyncio.Lock()

    async def start(self) -> None:
        pass

    async def run(
        self,
        write: Write,
        *,
        actor: str,
        if_match: str | None,
        progress: jobs.Progress | None = None,
    ) -> Any:
        async with self.lock:
            return await asyncio.to_thread(self.writer.run, write, actor=actor, if_match=if_match)

    def retire(self) -> None:
        pass  # a writer in this process keeps this process's memory

    def renew(self) -> None:
        pass

    def close(self) -> None:
        self.writer.close()


class LiveServer:
    """The admin app served from a background event loop."""

    def __init__(
        self, context: ServerContext, max_bulk_bytes: int, writer: WriterHandle | None = None
    ) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: TestServer = self._run(self._start(context, max_bulk_bytes, writer))
        self.url = str(self.server.make_url("")).rstrip("/")

    @staticmethod
    async def _start(
        context: ServerContext, max_bulk_bytes: int, writer: WriterHandle | None
    ) -> TestServer:
        app = build_admin_app(context, max_bulk_bytes=max_bulk_bytes, writer=writer)
        server = TestServer(app)
        await server.start_server()
        return server

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def close(self) -> None:
        self._run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class Api:
    """A tiny client that remembers every response body (for the no-secrets check)."""

    def __init__(self, url: str, token: str, context: ServerContext, app: web.Application) -> None:
        self.url = url
        self.app = app
        self.token = token
        self.context = context
        self.store = context.store
        self.session = requests.Session()
        self.bodies: list[str] = []

    def call(
        self, method: str, path: str, *, token: str | None = None, auth: bool = True, **kwargs: Any
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if auth:
            headers.setdefault("Authorization", f"Bearer {token or self.token}")
        response = self.session.request(
            method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs
        )
        self.bodies.append(response.text)
        assert response.status_code != 500, response.text
        return response

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.call("DELETE", path, **kwargs)

    def revision(self) -> int:
        return self.store.revision()


def make_api(
    tmp_path: Path, *, max_body_bytes: int = 256 * 1024, writer_in_thread: bool = False
) -> Iterator[Api]:
    store = SqliteStore(tmp_path / "sztp.db")
    token = ensure_first_admin_token(store, tmp_path / "secret" / "admin-token")
    assert token is not None
    config = ServerConfig(max_body_bytes=max_body_bytes, refresh_interval=0.05)
    context = ServerContext(store, config, SecretKey(os.urandom(32)))
    writer = InThreadWriter(context) if writer_in_thread else None
    server = LiveServer(context, max_bulk_bytes=4 * 1024 * 1024, writer=writer)
    try:
        yield Api(server.url, token, context, server.server.app)
    finally:
        server.close()
        store.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from make_api(tmp_path)


@pytest.fixture
def small_api(tmp_path: Path) -> Iterator[Api]:
    """A server whose ordinary body limit is 1 KiB (the bulk limit stays 4 MiB)."""
    yield from make_api(tmp_path, max_body_bytes=1024)


# ---- lab material


def pem(*certificates: Any) -> str:
    return b"".join(pki.certificate_to_pem(cert) for cert in certificates).decode()


def voucher_b64(ec_lab: Any, serial: str) -> str:
    return base64.b64encode(voucher_der(ec_lab, serial)).decode()


def voucher_der(ec_lab: Any, serial: str) -> bytes:
    voucher = create_voucher(serial, ec_lab.owner.certificate)
    return sign_voucher(voucher, ec_lab.masa)


def owner_key_pem(ec_lab: Any) -> str:
    return pki.private_key_to_pem(ec_lab.owner.private_key).decode()


def fleet(ec_lab: Any, *, devices: int = 2) -> dict[str, dict[str, Any]]:
    """A complete desired state: every kind, secrets included."""
    return {
        "trust-anchor": {"acme": {"certificates": pem(ec_lab.manufacturer_ca.certificate)}},
        "owner": {
            "default": {
                "certificate_chain": pem(ec_lab.owner.certificate, ec_lab.owner_ca.certificate),
                "private_key": owner_key_pem(ec_lab),
            }
        },
        "image": {
            "os-1": {
                "os_name": "LabOS",
                "os_version": "1.0",
                "download_uris": ["https://files.example.com/labos-1.0.img"],
                "sha256": IMAGE_SHA,
            }
        },
        "profile": {"base": {"type": "onboarding", "image": "os-1", "configuration": "x"}},
        "device": {
            f"SN-{index:04d}": {"profile": "base", "model": "lab-x1"}
            for index in range(1, devices + 1)
        },
    }


def seed(api: Api, ec_lab: Any) -> None:
    """Store the lab fleet; SN-0001 gets a password and a voucher."""
    resources = fleet(ec_lab)
    resources["device"]["SN-0001"].update(password=PASSWORD, voucher=voucher_b64(ec_lab, "SN-0001"))
    response = api.post("/api/v1/state", json={"resources": resources})
    assert response.status_code == 200, response.text


def error_of(response: requests.Response) -> dict[str, Any]:
    assert response.headers["Content-Type"].startswith("application/json")
    return response.json()["error"]


# ---- tokens


def test_generated_tokens_are_random_and_hashed_with_sha256() -> None:
    first, second = generate_token(), generate_token()
    assert first != second
    assert first.startswith("sztp_") and len(first) >= 45
    assert len(hash_token(first)) == 64
    assert hash_token(first) == hash_token(first) != hash_token(second)


def test_first_admin_token_is_written_once_with_private_modes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "sztp.db")
    path = tmp_path / "state" / "admin" / "token"
    token = ensure_first_admin_token(store, path)
    assert token is not None
    assert path.read_text().strip() == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    [record] = store.tokens()
    assert record.role == "admin"
    assert record.token_hash == hash_token(token) != token
    assert ensure_first_admin_token(store, tmp_path / "other") is None
    assert not (tmp_path / "other").exists()
    store.close()


# ---- authentication


def test_requests_without_a_valid_token_are_unauthorized(api: Api) -> None:
    for response in (
        api.get("/api/v1/devices", auth=False),
        api.get("/api/v1/devices", token="sztp_not-a-token"),
        api.get("/api/v1/devices", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}),
        api.post("/api/v1/state", auth=False, json={}),
    ):
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert error_of(response)["code"] == "unauthorized"


def test_openapi_and_healthz_need_no_token(api: Api) -> None:
    document = api.get("/api/v1/openapi.json", auth=False)
    assert document.status_code == 200
    assert document.json()["openapi"].startswith("3.")
    assert "/api/v1/devices/{name}/voucher" in document.json()["paths"]
    assert api.get("/healthz", auth=False).json() == {"status": "ok"}


def test_read_only_token_may_only_read(api: Api, ec_lab: Any) -> None:
    created = api.post("/api/v1/tokens", json={"name": "viewer", "role": "read-only"})
    assert created.status_code == 201
    viewer = created.json()["token"]
    assert api.get("/api/v1/devices", token=viewer).status_code == 200
    assert api.get("/api/v1/state", token=viewer).status_code == 200
    before = api.revision()
    denied = api.post("/api/v1/state", token=viewer, json={"resources": fleet(ec_lab)})
    assert denied.status_code == 403
    assert error_of(denied)["code"] == "forbidden"
    assert api.delete("/api/v1/tokens/admin", token=viewer).status_code == 403
    assert api.revision() == before


def test_token_lifecycle_never_shows_hashes(api: Api) -> None:
    created = api.post("/api/v1/tokens", json={"name": "ci", "role": "admin"})
    assert created.status_code == 201
    token = created.json()["token"]
    assert api.post("/api/v1/tokens", json={"name": "ci"}).status_code == 409
    listing = api.get("/api/v1/tokens")
    assert [item["name"] for item in listing.json()["tokens"]] == ["admin", "ci"]
    assert hash_token(token) not in listing.text and token not in listing.text
    assert api.get("/api/v1/devices", token=token).status_code == 200
    assert api.delete("/api/v1/tokens/ci").status_code == 204
    assert api.get("/api/v1/devices", token=token).status_code == 401
    assert api.delete("/api/v1/tokens/ci").status_code == 404
    last = api.delete("/api/v1/tokens/admin")
    assert last.status_code == 409
    assert error_of(last)["message"] == (
        "token 'admin' is the last admin token; create another one first"
    )
    assert [token.name for token in api.store.tokens()] == ["admin"]
    bad = api.post("/api/v1/tokens", json={"name": "x y", "role": "root"})
    assert bad.status_code == 422 and error_of(bad)["field"] == "name"


# ---- resources


def test_crud_for_every_kind(api: Api, ec_lab: Any) -> None:
    resources = fleet(ec_lab)
    order = [
        ("trust-anchors", "trust-anchor", "acme"),
        ("owners", "owner", "default"),
        ("images", "image", "os-1"),
        ("profiles", "profile", "base"),
        ("devices", "device", "SN-0001"),
    ]
    for collection, kind, name in order:
        spec = resources[kind][name]
        created = api.post(f"/api/v1/{collection}", json={"name": name, "spec": spec})
        assert created.status_code == 201, created.text
        assert created.headers["ETag"] == f'"{api.revision()}"'
        assert created.headers["Location"] == f"/api/v1/{collection}/{name}"
        assert created.json()["name"] == name
        again = api.post(f"/api/v1/{collection}", json={"name": name, "spec": spec})
        assert again.status_code == 409
        shown = api.get(f"/api/v1/{collection}/{name}")
        assert shown.status_code == 200
        assert shown.json()["spec"] == created.json()["spec"]
        listing = api.get(f"/api/v1/{collection}")
        assert [item["name"] for item in listing.json()] == [name]
        # PUT with the same spec is a no-op: no new revision
        revision = api.revision()
        same = api.put(f"/api/v1/{collection}/{name}", json={"spec": spec})
        assert same.status_code == 200 and api.revision() == revision
    changed = api.put(
        "/api/v1/images/os-1", json={"spec": {**resources["image"]["os-1"], "os_version": "1.1"}}
    )
    assert changed.status_code == 200
    assert changed.json()["spec"]["os_version"] == "1.1"
    created_by_put = api.put("/api/v1/devices/SN-0002", json={"spec": {"model": "lab-x2"}})
    assert created_by_put.status_code == 201
    assert api.delete("/api/v1/devices/SN-0002").status_code == 204
    for collection, _kind, name in reversed(order):
        deleted = api.delete(f"/api/v1/{collection}/{name}")
        assert deleted.status_code == 204
        assert deleted.headers["ETag"] == f'"{api.revision()}"'
        assert api.get(f"/api/v1/{collection}/{name}").status_code == 404
        assert api.delete(f"/api/v1/{collection}/{name}").status_code == 404
    assert api.get("/api/v1/state").json()["resources"] == {kind: {} for kind in KINDS}


def test_device_list_filters(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    assert api.put("/api/v1/devices/SN-0003", json={"spec": {"model": "other"}}).status_code == 201
    by_profile = api.get("/api/v1/devices", params={"profile": "base"}).json()
    assert [item["name"] for item in by_profile] == ["SN-0001", "SN-0002"]
    by_model = api.get("/api/v1/devices", params={"model": "other"}).json()
    assert [item["name"] for item in by_model] == ["SN-0003"]
    not_seen = api.get("/api/v1/devices", params={"status": "not-seen"}).json()
    assert len(not_seen) == 3
    assert api.get("/api/v1/devices", params={"status": "complete"}).json() == []
    assert api.get("/api/v1/devices", params={"status": "bogus"}).status_code == 400


def test_validation_errors_name_the_field(api: Api) -> None:
    bad_image = {
        "os_name": "LabOS",
        "os_version": "1",
        "download_uris": ["https://x.example/i"],
        "sha256": "nope",
    }
    response = api.post("/api/v1/images", json={"name": "i1", "spec": bad_image})
    assert response.status_code == 422
    assert error_of(response) | {"message": ""} == {
        "code": "validation-error",
        "field": "image[i1].sha256",
        "message": "",
    }
    unknown = api.put("/api/v1/devices/SN-1", json={"spec": {"colour": "red"}})
    assert unknown.status_code == 422 and error_of(unknown)["field"] == "device[SN-1].colour"
    bad_name = api.post("/api/v1/images", json={"name": "../etc", "spec": bad_image})
    assert bad_name.status_code == 422
    assert api.post("/api/v1/images", json={"name": "i1"}).status_code == 422
    extra = api.post("/api/v1/images", json={"name": "i1", "spec": {}, "owner": "me"})
    assert extra.status_code == 422 and error_of(extra)["field"] == "owner"
    assert api.revision() == 0


def test_references_are_checked(api: Api, ec_lab: Any) -> None:
    dangling = api.put("/api/v1/devices/SN-9", json={"spec": {"profile": "missing"}})
    assert dangling.status_code == 422
    assert error_of(dangling)["field"] == "device[SN-9].profile"
    seed(api, ec_lab)
    revision = api.revision()
    in_use = api.delete("/api/v1/profiles/base")
    assert in_use.status_code == 409
    assert error_of(in_use)["field"].startswith("device[SN-000")
    assert api.revision() == revision
    assert api.get("/api/v1/profiles/base").status_code == 200


def test_if_match_guards_every_write(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    revision = api.revision()
    etag = api.get("/api/v1/devices/SN-0002").headers["ETag"]
    assert etag == f'"{revision}"'
    stale = {"If-Match": f'"{revision - 1}"'}
    spec = {"spec": {"profile": "base", "model": "lab-x9"}}
    response = api.put("/api/v1/devices/SN-0002", json=spec, headers=stale)
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition-failed"
    assert response.headers["ETag"] == etag
    assert api.delete("/api/v1/devices/SN-0002", headers=stale).status_code == 412
    bulk = api.post("/api/v1/state", json={"resources": {}}, headers=stale)
    assert bulk.status_code == 412
    assert api.revision() == revision
    fresh = api.put("/api/v1/devices/SN-0002", json=spec, headers={"If-Match": etag})
    assert fresh.status_code == 200
    assert fresh.headers["ETag"] == f'"{revision + 1}"'


def test_voucher_upload_checks_the_serial(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    octets = {"Content-Type": "application/octet-stream"}
    wrong = api.put(
        "/api/v1/devices/SN-0002/voucher", data=voucher_der(ec_lab, "SN-0001"), headers=octets
    )
    assert wrong.status_code == 422
    assert error_of(wrong)["field"] == "device[SN-0002].voucher"
    garbage = api.put("/api/v1/devices/SN-0002/voucher", data=b"\x30\x03abc", headers=octets)
    assert garbage.status_code == 422
    wrong_type = api.put(
        "/api/v1/devices/SN-0002/voucher",
        data=voucher_der(ec_lab, "SN-0002"),
        headers={"Content-Type": "text/plain"},
    )
    assert wrong_type.status_code == 415
    missing = api.put("/api/v1/devices/SN-7/voucher", data=b"x", headers=octets)
    assert missing.status_code == 404
    right_der = voucher_der(ec_lab, "SN-0002")
    right = api.put(
        "/api/v1/devices/SN-0002/voucher",
        data=right_der,
        headers={"Content-Type": "application/voucher-cms+json"},
    )
    assert right.status_code == 200, right.text
    assert right.json()["spec"]["voucher"] == base64.b64encode(right_der).decode()
    assert api.delete("/api/v1/devices/SN-0002/voucher").status_code == 204
    assert api.get("/api/v1/devices/SN-0002").json()["spec"]["voucher"] is None


# ---- bulk desired state


def test_dry_run_returns_the_plan_and_changes_nothing(api: Api, ec_lab: Any) -> None:
    response = api.post(
        "/api/v1/state", params={"dry_run": "true"}, json={"resources": fleet(ec_lab)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["dry_run"] is True and body["revision"] == 0
    assert [(c["action"], c["kind"], c["name"]) for c in body["changes"]] == [
        ("create", "trust-anchor", "acme"),
        ("create", "owner", "default"),
        ("create", "image", "os-1"),
        ("create", "profile", "base"),
        ("create", "device", "SN-0001"),
        ("create", "device", "SN-0002"),
    ]
    assert body["changes"][1]["after"]["private_key"] == "<hidden>"
    assert api.revision() == 0
    assert api.get("/api/v1/state").json()["resources"]["device"] == {}


def test_apply_reapply_prune_and_export_round_trip(api: Api, ec_lab: Any) -> None:
    resources = fleet(ec_lab, devices=3)
    resources["device"]["SN-0001"]["password"] = PASSWORD
    resources["device"]["SN-0001"]["voucher"] = voucher_b64(ec_lab, "SN-0001")
    applied = api.post("/api/v1/state", json={"resources": resources})
    assert applied.status_code == 200
    assert applied.json()["dry_run"] is False
    assert len(applied.json()["changes"]) == 7
    revision = applied.json()["revision"]
    assert revision == api.revision() == 1
    assert applied.headers["ETag"] == '"1"'

    again = api.post("/api/v1/state", json={"resources": resources})
    assert again.json() == {"revision": 1, "dry_run": False, "changes": []}
    assert api.revision() == 1

    exported = api.get("/api/v1/state")
    assert exported.headers["ETag"] == '"1"'
    document = exported.json()
    assert document["resources"]["owner"]["default"]["private_key"] == "<hidden>"
    assert document["resources"]["device"]["SN-0001"]["password_hash"] == "<hidden>"
    round_trip = api.post(
        "/api/v1/state",
        json={"resources": document["resources"], "prune": True},
        headers={"If-Match": exported.headers["ETag"]},
    )
    assert round_trip.status_code == 200, round_trip.text
    assert round_trip.json()["changes"] == []
    assert api.revision() == 1
    stored = api.store.get("owner", "default")
    assert stored is not None
    assert api.context.secret_key.open("default", stored.spec["private_key"]) == owner_key_pem(
        ec_lab
    )

    smaller = {"device": {"SN-0001": document["resources"]["device"]["SN-0001"]}}
    pruned = api.post("/api/v1/state", json={"resources": smaller, "prune": True})
    assert [(c["action"], c["name"]) for c in pruned.json()["changes"]] == [
        ("delete", "SN-0002"),
        ("delete", "SN-0003"),
    ]
    assert api.revision() == 2
    # profiles, images... were outside the pruned kinds and stay
    assert api.get("/api/v1/profiles/base").status_code == 200

    scoped = api.post("/api/v1/state", json={"resources": {}, "prune": True, "kinds": ["device"]})
    assert [c["name"] for c in scoped.json()["changes"]] == ["SN-0001"]

    hidden_without_secret = api.post(
        "/api/v1/state",
        json={"resources": {"device": {"SN-5": {"password_hash": "<hidden>"}}}},
    )
    assert hidden_without_secret.status_code == 422
    assert error_of(hidden_without_secret)["field"] == "device[SN-5].password_hash"


def test_a_spec_is_unchanged_written_in_full_sparse_or_between(api: Api, ec_lab: Any) -> None:
    """A stored spec is recognised however many of its empty fields a client leaves out, and
    only then: a changed, added or server-only field is not taken for the stored spec."""
    resources = fleet(ec_lab, devices=4)
    assert api.post("/api/v1/state", json={"resources": resources}).status_code == 200
    full = api.get("/api/v1/state").json()["resources"]["device"]
    devices = {
        "SN-0001": full["SN-0001"],
        "SN-0002": resources["device"]["SN-0002"],
        "SN-0003": {"model": "lab-x1", "mac": None, "selection": [], "profile": "base"},
        "SN-0004": {"profile": "base", "model": "lab-x1", "duid": None},
    }
    again = api.post("/api/v1/state", json={"resources": {"device": devices}})
    assert again.status_code == 200 and again.json()["changes"] == [], again.text

    for spec, field in (
        ({**devices["SN-0003"], "password_check": "x"}, "device[SN-0003].password_check"),
        ({**devices["SN-0003"], "colour": None}, "device[SN-0003].colour"),
    ):
        refused = api.post("/api/v1/state", json={"resources": {"device": {"SN-0003": spec}}})
        assert refused.status_code == 422 and error_of(refused)["field"] == field, refused.text
    changed = {
        "SN-0002": {"profile": "base"},  # leaves out a field the stored spec has set
        "SN-0003": {**devices["SN-0003"], "mac": "02:00:00:00:00:03"},
        "SN-0004": {**devices["SN-0004"], "model": "lab-x2"},
    }
    plan = api.post("/api/v1/state", json={"resources": {"device": changed}})
    assert [(c["action"], c["name"]) for c in plan.json()["changes"]] == [
        ("update", name) for name in changed
    ]
    assert api.revision() == 2


@pytest.mark.parametrize(
    "change",
    [
        Change("create", "device", 'SN-\u00e9"1', {"profile": "p", "mac": None, "selection": []}),
        Change(
            "create",
            "device",
            "SN-2",
            {"password_hash": "h", "password_check": "c", "selection": [{"profile": "p"}]},
        ),
        Change("delete", "device", "SN-3", None, {"profile": "p", "model": "x", "voucher": None}),
        Change("create", "profile", "p", {}),
        Change("update", "device", "SN-4", {"model": "y"}, {"model": "x", "password_hash": "h"}),
    ],
)
def test_a_summary_change_is_written_as_json_dumps_writes_it(change: Change) -> None:
    # The summary plan of a large apply is written without a dict per change; it must stay
    # the same text.
    assert views.change_summary_json(change) == json.dumps(views.change_summary(change))


def test_summary_plan_names_fields_without_bodies_or_secrets(api: Api, ec_lab: Any) -> None:
    resources = fleet(ec_lab)
    voucher = voucher_b64(ec_lab, "SN-0001")
    resources["device"]["SN-0001"].update(password=PASSWORD, voucher=voucher)
    created = api.post("/api/v1/state", params={"plan": "summary"}, json={"resources": resources})
    assert created.status_code == 200, created.text
    changes = {(c["kind"], c["name"]): c for c in created.json()["changes"]}
    assert changes[("owner", "default")] == {
        "action": "create",
        "kind": "owner",
        "name": "default",
        "fields": ["certificate_chain", "private_key"],
    }
    assert changes[("device", "SN-0001")]["fields"] == [
        "profile",
        "model",
        "password_hash",
        "voucher",
    ]
    assert changes[("device", "SN-0002")]["fields"] == ["profile", "model"]
    assert all("before" not in c and "after" not in c for c in changes.values())

    resources["device"]["SN-0001"].update(password="a new password", model="lab-x2")
    del resources["device"]["SN-0002"]
    updated = api.post(
        "/api/v1/state",
        params={"plan": "summary", "dry_run": "true"},
        json={"resources": resources, "prune": True},
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["changes"] == [
        {
            "action": "update",
            "kind": "device",
            "name": "SN-0001",
            "fields": ["model", "password_hash"],
            "before": {"model": "lab-x1", "password_hash": "<hidden>"},
            "after": {"model": "lab-x2", "password_hash": "<hidden>"},
        },
        {
            "action": "delete",
            "kind": "device",
            "name": "SN-0002",
            "fields": ["profile", "model"],
        },
    ]
    # The full plan stays the default: whole bodies, secrets hidden.
    full = api.post(
        "/api/v1/state", params={"dry_run": "true"}, json={"resources": resources, "prune": True}
    ).json()["changes"][0]
    assert full["after"]["voucher"] == voucher
    assert full["after"]["password_hash"] == "<hidden>"
    stored_hash = api.store.get("device", "SN-0001").spec["password_hash"]  # type: ignore[union-attr]
    for text in api.bodies[:2]:
        for secret in (PASSWORD, "a new password", stored_hash, "BEGIN", "PRIVATE KEY"):
            assert secret not in text
        assert voucher not in text

    bad = api.post("/api/v1/state", params={"plan": "brief"}, json={"resources": {}})
    assert bad.status_code == 400 and error_of(bad)["field"] == "plan"
    assert api.revision() == 1


def test_bulk_rejects_invalid_documents_without_changes(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    revision = api.revision()
    cases = [
        ({"resources": {"gadget": {}}}, "resources.gadget"),
        ({"resources": {"device": []}}, "resources.device"),
        ({"resources": {"device": {"SN-1": "x"}}}, "device[SN-1]"),
        ({"resources": {}, "prune": "yes"}, "prune"),
        ({"resources": {}, "kinds": ["device", "gadget"]}, "kinds"),
        ({"resources": {"image": {}}, "kinds": ["device"]}, "resources.image"),
        ({"resources": {}, "extra": 1}, "extra"),
        ({"resources": {"profile": {}}, "prune": True}, "device[SN-0001].profile"),
    ]
    for document, field in cases:
        response = api.post("/api/v1/state", json=document)
        assert response.status_code == 422, (document, response.text)
        assert error_of(response)["field"] == field
    dangling = fleet(ec_lab)
    dangling["device"]["SN-0002"]["profile"] = "ghost"
    assert api.post("/api/v1/state", json={"resources": dangling}).status_code == 422
    assert api.post("/api/v1/state", params={"dry_run": "maybe"}, json={}).status_code == 400
    assert api.revision() == revision


def test_a_prune_that_removes_a_referenced_image_says_so(api: Api, ec_lab: Any) -> None:
    """The image exists; the prune would delete it while a profile keeps referring to it."""
    seed(api, ec_lab)
    revision = api.revision()
    refused = api.post("/api/v1/state", json={"resources": {"image": {}}, "prune": True})
    assert refused.status_code == 422, refused.text
    error = error_of(refused)
    assert error["field"] == "profile[base].image"
    assert error["message"] == "still refers to image 'os-1', which the prune removes"
    dangling = fleet(ec_lab)
    dangling["profile"]["base"]["image"] = "ghost"
    unknown = api.post("/api/v1/state", json={"resources": dangling})
    assert "refers to unknown image 'ghost'" in error_of(unknown)["message"]
    assert api.revision() == revision


def test_bulk_of_many_devices_in_one_round_trip(api: Api, ec_lab: Any) -> None:
    resources = fleet(ec_lab, devices=2000)
    first = api.post("/api/v1/state", json={"resources": resources})
    assert first.status_code == 200
    assert len(first.json()["changes"]) == 2004
    exported = api.get("/api/v1/state").json()["resources"]
    again = api.post("/api/v1/state", json={"resources": exported})
    assert again.json()["changes"] == []


def store_large_profiles(api: Api, count: int) -> None:
    """`count` profiles of a megabyte each: a state larger than the sockets buffer between
    the server and a reader that stops reading."""
    configuration = "x" * 1_000_000
    for first in range(0, count, 3):
        profiles = {
            f"large-{index:03d}": {"type": "onboarding", "configuration": configuration}
            for index in range(first, min(first + 3, count))
        }
        response = api.post("/api/v1/state", json={"resources": {"profile": profiles}})
        assert response.status_code == 200, response.text


def slow_reader(api: Api) -> requests.Session:
    """A session whose sockets take in little before its reader reads (the kernel would
    otherwise buffer tens of MiB for it): a reader that stops holds the server mid-stream."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter()
    adapter.init_poolmanager(
        1, 1, socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)]
    )
    session.mount("http://", adapter)
    session.headers["Authorization"] = f"Bearer {api.token}"
    return session


def test_state_streams_kinds_in_order_and_names_sorted(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    late = {"device": {"SN-0000": {"model": "zero"}, "A-first": {}, "z-last": {}}}
    assert api.post("/api/v1/state", json={"resources": late}).status_code == 200
    streamed = api.get("/api/v1/state", stream=True)
    assert streamed.headers["Transfer-Encoding"] == "chunked"
    assert streamed.headers["Content-Type"].startswith("application/json")
    document = json.loads(streamed.content)
    assert streamed.headers["ETag"] == f'"{document["revision"]}"' == f'"{api.revision()}"'
    assert list(document["resources"]) == list(KINDS)
    devices = document["resources"]["device"]
    assert (
        list(devices) == sorted(devices) == ["A-first", "SN-0000", "SN-0001", "SN-0002", "z-last"]
    )
    assert devices["SN-0001"]["password_hash"] == "<hidden>"
    assert "password_check" not in devices["SN-0001"]
    assert document["resources"]["owner"]["default"]["private_key"] == "<hidden>"
    head = api.call("HEAD", "/api/v1/state")
    assert (head.status_code, head.headers["ETag"], head.content) == (
        200,
        f'"{api.revision()}"',
        b"",
    )
    assert api.get("/api/v1/state").json() == document  # the connection is still sound


def test_state_is_one_snapshot_while_the_server_goes_on(api: Api, ec_lab: Any) -> None:
    """A reader stopped half-way through the state holds up neither reads nor writes, and
    then gets the rest of the revision it started with."""
    seed(api, ec_lab)
    store_large_profiles(api, 12)
    revision = api.revision()
    with slow_reader(api).get(f"{api.url}/api/v1/state", stream=True) as streamed:
        chunks = streamed.iter_content(64 * 1024)
        first = next(chunks)
        started = time.monotonic()
        assert api.get("/healthz").status_code == 200
        assert api.get("/api/v1/devices/SN-0002").status_code == 200
        assert api.delete("/api/v1/devices/SN-0002").status_code == 204
        assert time.monotonic() - started < 10
        document = json.loads(first + b"".join(chunks))
    assert streamed.headers["ETag"] == f'"{revision}"'
    assert document["revision"] == revision < api.revision()
    assert "SN-0002" in document["resources"]["device"]
    assert len(document["resources"]["profile"]) == 13
    assert {
        len(spec.get("configuration", "")) for spec in document["resources"]["profile"].values()
    } == {1, 1_000_000}


def test_a_reader_that_leaves_mid_stream_leaves_nothing_behind(
    api: Api, ec_lab: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seed(api, ec_lab)
    store_large_profiles(api, 12)
    streaming = state_handlers._state_document
    ended: list[bool] = []

    async def watched(snapshot: Snapshot) -> AsyncIterator[str]:
        try:
            async for piece in streaming(snapshot):
                yield piece
        finally:
            ended.append(True)

    monkeypatch.setattr(state_handlers, "_state_document", watched)
    host, port = api.url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.socket() as reader:
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            reader.connect((host, int(port)))
            request = f"GET /api/v1/state HTTP/1.1\r\nHost: {host}\r\n"
            reader.sendall(f"{request}Authorization: Bearer {api.token}\r\n\r\n".encode())
            assert reader.recv(1024).startswith(b"HTTP/1.1 200")
            time.sleep(0.2)  # the server fills the connection's buffers and waits for room
    deadline = time.monotonic() + 10
    while len(ended) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(ended) == 3
    assert api.get("/api/v1/state").json()["revision"] == api.revision()
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_a_failure_mid_stream_breaks_the_state_off(
    api: Api, ec_lab: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The status is sent before the devices: a failure then must not look like a whole
    (shorter) state to the reader."""
    seed(api, ec_lab)

    def failing_view(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
        if kind == "device":
            raise RuntimeError("a bug")
        return public_view(kind, spec)

    monkeypatch.setattr(state_handlers, "public_view", failing_view)
    with pytest.raises(ServerUnreachable, match="broke off"):
        SztpClient(api.url, api.token).get_state()
    logged = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert logged == ["admin API GET /api/v1/state failed while streaming"]
    assert api.get("/healthz").status_code == 200


def test_the_state_is_encoded_between_turns_of_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Other requests run between slices of a large state, and names arriving in any order
    (sorted in runs, then merged) leave in order."""
    monkeypatch.setattr(state_handlers, "SORT_RUN", 1000)
    names = [f"SN-{index:05d}" for index in range(5000)]
    devices = {name: {"model": "m"} for name in reversed(names)}
    snapshot = Snapshot(revision=7, state={"device": devices}, secret_key=SecretKey(os.urandom(32)))

    async def export_beside_other_work() -> list[tuple[str, int]]:
        turns = 0

        async def other_work() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(other_work())
        pieces = [(piece, turns) async for piece in state_handlers._state_document(snapshot)]
        other.cancel()
        return pieces

    pieces = asyncio.run(export_beside_other_work())
    document = json.loads("".join(piece for piece, _ in pieces))
    assert document["revision"] == 7
    assert list(document["resources"]["device"]) == names
    device_slices = [turns for piece, turns in pieces if piece.lstrip(",").startswith('"SN-')]
    assert len(device_slices) >= 5
    assert all(earlier < later for earlier, later in itertools.pairwise(device_slices))


# ---- status, progress, audit


def test_status_and_progress(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    now = datetime.now(UTC)
    old = now - timedelta(hours=2)

    def report(serial: str, kind: str, at: datetime, attempt: int = 1) -> None:
        api.store.add_report(
            ProgressRecord(serial, at, kind, f"{kind} message", "192.0.2.1", attempt)
        )

    report("SN-0001", "bootstrap-initiated", now - timedelta(minutes=3))
    report("SN-0001", "boot-image-error", now - timedelta(minutes=2))
    report("SN-0001", "bootstrap-initiated", now - timedelta(minutes=1), attempt=2)
    report("SN-0001", "bootstrap-complete", now, attempt=2)
    report("SN-0002", "bootstrap-initiated", old)

    status = api.get("/api/v1/devices/SN-0001/status").json()
    assert status["status"] == "complete" and status["attempts"] == 2
    assert status["last_report"]["progress_type"] == "bootstrap-complete"
    assert status["last_report"]["truncated"] is False
    assert status["reports"] == 4
    progress = api.get("/api/v1/devices/SN-0001/progress").json()
    assert [len(attempt["reports"]) for attempt in progress["attempts"]] == [2, 2]
    assert progress["next_before"] is None
    newest = api.get("/api/v1/devices/SN-0001/progress", params={"limit": 1}).json()
    assert newest["attempts"][0]["reports"][0]["progress_type"] == "bootstrap-complete"
    for bad in ({"limit": "0"}, {"limit": "1001"}, {"before": "0"}, {"before": "x"}):
        response = api.get("/api/v1/devices/SN-0001/progress", params=bad)
        assert response.status_code == 400, bad
    assert api.get("/api/v1/devices/NOPE/status").status_code == 404

    fleet_status = api.get("/api/v1/status").json()
    assert fleet_status["devices"] == 2
    assert fleet_status["counts"]["complete"] == 1
    assert fleet_status["counts"]["stalled"] == 1
    assert [item["serial"] for item in fleet_status["stalled"]] == ["SN-0002"]
    stalled = api.get("/api/v1/devices", params={"status": "stalled"}).json()
    assert [item["name"] for item in stalled] == ["SN-0002"]


def test_device_list_with_status_filters_and_pages(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    assert api.put("/api/v1/devices/SN-0003", json={"spec": {"model": "other"}}).status_code == 201
    now = datetime.now(UTC)
    api.store.add_report(ProgressRecord("SN-0001", now, "bootstrap-complete", "done", None, 1))
    api.store.add_report(
        ProgressRecord("SN-0002", now - timedelta(hours=2), "bootstrap-initiated", None, None, 1)
    )

    plain = api.get("/api/v1/devices").json()
    assert [set(item) for item in plain] == [
        {"name", "spec", "revision", "created_at", "updated_at"}
    ] * 3
    fleet_view = api.get("/api/v1/devices", params={"with_status": "true"})
    assert fleet_view.headers["ETag"] == f'"{api.revision()}"' and "Link" not in fleet_view.headers
    by_name = {item["name"]: item for item in fleet_view.json()}
    assert {name: item["status"] for name, item in by_name.items()} == {
        "SN-0001": "complete",
        "SN-0002": "stalled",
        "SN-0003": "not-seen",
    }
    assert by_name["SN-0001"]["last_report"]["message"] == "done"
    assert by_name["SN-0001"]["spec"]["password_hash"] == "<hidden>"
    assert by_name["SN-0003"]["last_report"] is None
    stalled = api.get("/api/v1/devices", params={"status": "stalled", "with_status": "true"})
    assert [(item["name"], item["status"]) for item in stalled.json()] == [("SN-0002", "stalled")]
    in_profile = api.get("/api/v1/devices", params={"profile": "base", "with_status": "true"})
    assert [item["name"] for item in in_profile.json()] == ["SN-0001", "SN-0002"]

    first = api.get("/api/v1/devices", params={"limit": 2, "with_status": "true"})
    assert [item["name"] for item in first.json()] == ["SN-0001", "SN-0002"]
    next_page = first.links["next"]["url"]
    assert next_page.startswith("/api/v1/devices?")
    second = api.get(next_page)
    assert [(item["name"], item["status"]) for item in second.json()] == [("SN-0003", "not-seen")]
    assert "Link" not in second.headers
    after = api.get("/api/v1/devices", params={"after": "SN-0001"}).json()
    assert [item["name"] for item in after] == ["SN-0002", "SN-0003"]
    for bad in ({"limit": "0"}, {"limit": "x"}, {"with_status": "yes"}, {"status": "bogus"}):
        response = api.get("/api/v1/devices", params=bad)
        assert response.status_code == 400, bad
        assert error_of(response)["field"] == next(iter(bad))


def issue_ldevid(
    api: Api, device: str, serial_number: str, *, issued_ago: timedelta, valid_for: timedelta
) -> IssuedCertificate:
    """An LDevID recorded as issued to `device` `issued_ago` before now, valid for `valid_for`
    from then, as the server records the ones it issues."""
    issued_at = datetime.now(UTC) - issued_ago
    record = IssuedCertificate(
        issuer="lab",
        serial_number=serial_number,
        device=device,
        profile=None,
        subject=f"serialNumber={device}",
        not_before=issued_at,
        not_after=issued_at + valid_for,
        issued_at=issued_at,
        certificate_pem="-----BEGIN CERTIFICATE-----\n",
    )
    api.store.add_issued_certificate(record)
    return record


def test_device_list_with_status_shows_each_devices_current_ldevid(api: Api) -> None:
    api.store.apply([Change("create", "device", f"SN-{i}", {}) for i in range(1, 5)], actor="test")
    year, day = timedelta(days=365), timedelta(days=1)
    issue_ldevid(api, "SN-1", "1a", issued_ago=2 * day, valid_for=year)
    current = issue_ldevid(api, "SN-1", "1b", issued_ago=day, valid_for=year)
    issue_ldevid(api, "SN-2", "2a", issued_ago=2 * day, valid_for=year)
    issue_ldevid(api, "SN-2", "2b", issued_ago=day, valid_for=year)
    issue_ldevid(api, "SN-3", "3a", issued_ago=2 * day, valid_for=day)  # expired yesterday
    revoked = api.post(
        "/api/v1/devices/SN-2/certificates/2b/revoke", json={"reason": "keyCompromise"}
    )
    assert revoked.status_code == 200

    listed = api.get("/api/v1/devices", params={"with_status": "true"}).json()
    assert {item["name"]: item["ldevid"] for item in listed} == {
        "SN-1": {
            "serial_number": "1b",
            "issuer": "lab",
            "not_before": views.time_text(current.not_before),
            "not_after": views.time_text(current.not_after),
        },
        "SN-2": None,  # its newest is revoked; the one before is not its LDevID again
        "SN-3": None,
        "SN-4": None,
    }
    assert datetime.fromisoformat(listed[0]["ldevid"]["not_after"]) == current.not_after
    # Paged, streamed or filtered, the same listing; the plain one has no status, nor this.
    assert walk_pages(api, 3) == listed
    not_seen = api.get("/api/v1/devices", params={"status": "not-seen", "with_status": "true"})
    assert not_seen.json() == listed
    assert all("ldevid" not in item for item in api.get("/api/v1/devices").json())


def paged_fleet(api: Api) -> None:
    """40 devices over three profiles and two models, in every status; SN-01, SN-07, ... sent
    a late report after bootstrap-complete, which must leave them complete; SN-00, SN-04, ...
    hold a current LDevID, SN-01, SN-05, ... one that expired."""
    api.store.apply(
        [
            Change("create", "device", f"SN-{i:02}", {"profile": f"p{i % 3}", "model": f"m{i % 2}"})
            for i in range(40)
        ],
        actor="test",
    )
    now = datetime.now(UTC)
    stale = now - timedelta(hours=2)
    reports_by_kind = {
        1: [("bootstrap-complete", stale), ("informational", now)],
        2: [("bootstrap-initiated", stale)],
        3: [("bootstrap-initiated", now)],
        4: [("bootstrap-initiated", stale), ("config-error", stale)],
        5: [("boot-image-installed-rebooting", now)],
    }
    for i in range(40):
        for step, (progress_type, at) in enumerate(reports_by_kind.get(i % 6, [])):
            late = i % 6 == 1 and step == 1
            record = ProgressRecord(
                f"SN-{i:02}", at + timedelta(seconds=i), progress_type, None, None, 1
            )
            assert api.store.add_report(record, decides_status=not late) is ReportOutcome.STORED
    year = timedelta(days=365)
    for i in range(0, 40, 4):
        issue_ldevid(api, f"SN-{i:02}", f"{i:x}", issued_ago=timedelta(days=1), valid_for=year)
        issue_ldevid(api, f"SN-{i + 1:02}", f"{i + 1:x}", issued_ago=year, valid_for=year / 2)


def walk_pages(api: Api, limit: int, **filters: str) -> list[dict[str, Any]]:
    """Every page of a listing, following the Link headers; each page but the last full."""
    pages = []
    response = api.get(
        "/api/v1/devices", params={**filters, "with_status": "true", "limit": str(limit)}
    )
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if "next" not in response.links:
            break
        assert len(pages[-1]) == limit
        response = api.get(response.links["next"]["url"])
    return [item for page in pages for item in page]


def test_device_pages_cover_every_device_once_whatever_the_filters(api: Api) -> None:
    paged_fleet(api)
    whole = api.get("/api/v1/devices", params={"with_status": "true"})
    assert whole.headers["Content-Type"].startswith("application/json")
    assert "Link" not in whole.headers and whole.headers["ETag"] == f'"{api.revision()}"'
    fleet_view = whole.json()
    assert [item["name"] for item in fleet_view] == [f"SN-{i:02}" for i in range(40)]
    status_of = {item["name"]: item["status"] for item in fleet_view}
    assert [status_of[f"SN-0{i}"] for i in range(6)] == [
        "not-seen",
        "complete",
        "stalled",
        "in-progress",
        "failed",
        "rebooting",
    ]
    assert fleet_view[1]["last_report"]["progress_type"] == "bootstrap-complete"
    holding = [item["name"] for item in fleet_view if item["ldevid"] is not None]
    assert holding == [f"SN-{i:02}" for i in range(0, 40, 4)]
    for status in STATUSES:
        for filters in ({}, {"profile": "p1"}, {"profile": "p2", "model": "m1"}):
            expected = [
                item
                for item in fleet_view
                if item["status"] == status
                and all(item["spec"].get(field) == value for field, value in filters.items())
            ]
            for limit in (1, 4, 100):
                assert walk_pages(api, limit, status=status, **filters) == expected, (
                    status,
                    filters,
                    limit,
                )
    assert walk_pages(api, 7) == fleet_view
    assert api.get("/api/v1/devices", params={"profile": "none"}).json() == []


def test_fleet_counts_agree_with_each_devices_status(api: Api, monkeypatch: Any) -> None:
    paged_fleet(api)
    fleet_view = api.get("/api/v1/devices", params={"with_status": "true"}).json()
    fleet_status = api.get("/api/v1/status").json()
    assert fleet_status["devices"] == 40
    assert fleet_status["counts"] == {
        status: sum(item["status"] == status for item in fleet_view) for status in STATUSES
    }
    stalled = [item for item in fleet_view if item["status"] == "stalled"]
    assert fleet_status["stalled"] == [
        {"serial": item["name"], "last_report": item["last_report"]} for item in stalled
    ]
    failed = sorted(
        (item for item in fleet_view if item["status"] == "failed"),
        key=lambda item: item["last_report"]["received_at"],
        reverse=True,
    )
    assert fleet_status["recent_errors"] == [item["last_report"] for item in failed]
    # Only the first stalled devices are named; the count is of all of them.
    monkeypatch.setattr(device_handlers, "STALLED_SHOWN", 2)
    capped = api.get("/api/v1/status").json()
    assert [item["serial"] for item in capped["stalled"]] == [item["name"] for item in stalled[:2]]
    assert capped["counts"]["stalled"] == len(stalled) > 2


def test_a_device_page_reads_only_what_it_returns(api: Api, monkeypatch: Any) -> None:
    paged_fleet(api)
    reads: list[int] = []
    rows = SqliteStore._rows

    def counted(store: SqliteStore, statement: str, parameters: Any = ()) -> list[Any]:
        found = rows(store, statement, parameters)
        if "FROM resources" in statement:  # not the token's check
            reads.append(len(found))
        return found

    monkeypatch.setattr(SqliteStore, "_rows", counted)
    for params in ({"limit": "3"}, {"limit": "3", "status": "failed", "profile": "p1"}):
        reads.clear()
        assert len(api.get("/api/v1/devices", params=params).json()) <= 3
        assert reads == [4], params  # one statement: the page and one more device
    # Without a limit the listing streams out, each read a page of its own.
    monkeypatch.setattr(device_handlers, "STREAM_PAGE", 7)
    reads.clear()
    assert len(api.get("/api/v1/devices").json()) == 40
    assert reads == [7, 7, 7, 7, 7, 5]


def test_device_list_refuses_bad_paging_parameters(api: Api) -> None:
    for bad in ({"limit": "10001"}, {"after": "SN\x00"}, {"profile": "\x00"}):
        response = api.get("/api/v1/devices", params=bad)
        assert response.status_code == 400, bad
        assert error_of(response)["field"] == next(iter(bad))


def add_reports(api: Api, serial: str, count: int, **bounds: int) -> None:
    """`count` reports in attempts of four: initiated, two steps, complete."""
    steps = ("bootstrap-initiated", "config-initiated", "config-complete", "bootstrap-complete")
    for index in range(count):
        progress_type = steps[index % 4]
        record = ProgressRecord(
            serial, datetime.now(UTC), progress_type, f"report {index}", None, index // 4 + 1
        )
        assert api.store.add_report(record, **bounds) is ReportOutcome.STORED


def test_device_status_counts_reports_without_reading_them(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    add_reports(api, "SN-0001", 32, keep_per_device=10)
    status = api.get("/api/v1/devices/SN-0001/status").json()
    assert status["status"] == "complete"
    # The attempt number of the latest report: older attempts were pruned, not forgotten.
    assert status["attempts"] == 8
    assert status["reports"] == 10
    assert status["report_bytes"] == sum(len(f"report {index}") for index in range(22, 32))
    assert status["last_report"]["message"] == "report 31"
    never = api.get("/api/v1/devices/SN-0002/status").json()
    assert never == {
        "serial": "SN-0002",
        "status": "not-seen",
        "attempts": 0,
        "last_report": None,
        "reports": 0,
        "report_bytes": 0,
    }


def test_progress_pages_hold_every_report_once(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    add_reports(api, "SN-0001", 25)
    add_reports(api, "SN-0002", 3)
    first = api.get("/api/v1/devices/SN-0001/progress").json()
    assert first["next_before"] is None
    assert sum(len(attempt["reports"]) for attempt in first["attempts"]) == 25
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 10}
    pages = 0
    while True:
        page = api.get("/api/v1/devices/SN-0001/progress", params=params).json()
        pages += 1
        reports = [report for attempt in page["attempts"] for report in attempt["reports"]]
        seen[:0] = [report["message"] for report in reports]
        if page["next_before"] is None:
            break
        assert page["next_before"] == reports[0]["id"]
        params["before"] = page["next_before"]
    assert pages == 3
    assert seen == [f"report {index}" for index in range(25)]

    # The client follows the pages and joins the attempt a page boundary cut in two.
    with SztpClient(api.url, api.token) as client:
        history = client.device_progress("SN-0001")
    assert [attempt["attempt"] for attempt in history["attempts"]] == [1, 2, 3, 4, 5, 6, 7]
    assert [
        report["message"] for attempt in history["attempts"] for report in attempt["reports"]
    ] == seen


@pytest.mark.parametrize("how", ["delete", "prune"])
def test_a_recreated_serial_has_no_old_reports(api: Api, ec_lab: Any, how: str) -> None:
    seed(api, ec_lab)
    add_reports(api, "SN-0002", 3)
    if how == "delete":
        assert api.delete("/api/v1/devices/SN-0002").status_code == 204
    else:
        pruned = fleet(ec_lab, devices=1)
        response = api.post("/api/v1/state", json={"resources": pruned, "prune": True})
        assert response.status_code == 200, response.text
    created = api.put("/api/v1/devices/SN-0002", json={"spec": {"profile": "base"}})
    assert created.status_code == 201, created.text
    assert api.get("/api/v1/devices/SN-0002/progress").json()["attempts"] == []
    status = api.get("/api/v1/devices/SN-0002/status").json()
    assert (status["status"], status["last_report"]) == ("not-seen", None)
    assert status["reports"] == 0
    assert api.get("/api/v1/status").json()["counts"]["not-seen"] == 2


def test_audit_records_actor_and_pages(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    entries = api.get("/api/v1/audit", params={"limit": 1000}).json()["entries"]
    assert len(entries) == 7
    # The first admin token, written by the server itself at its first start, comes first.
    first = entries[-1]
    assert (first["actor"], first["action"], first["kind"], first["name"]) == (
        "(server)",
        "create",
        "token",
        "admin",
    )
    assert {entry["actor"] for entry in entries[:-1]} == {"admin"}
    assert entries[0]["id"] > entries[-1]["id"]
    page = api.get("/api/v1/audit", params={"limit": 2, "after_id": entries[-1]["id"]})
    assert len(page.json()["entries"]) == 2
    for bad in ({"limit": "0"}, {"limit": "x"}, {"after_id": "-1"}, {"limit": "10001"}):
        assert api.get("/api/v1/audit", params=bad).status_code == 400


def test_secrets_never_leave_the_server(api: Api, ec_lab: Any) -> None:
    seed(api, ec_lab)
    api.put(
        "/api/v1/devices/SN-0002",
        json={"spec": {"profile": "base", "password": "another-password"}},
    )
    api.post("/api/v1/state", params={"dry_run": "true"}, json={"resources": fleet(ec_lab)})
    for path in (
        "/api/v1/state",
        "/api/v1/owners",
        "/api/v1/owners/default",
        "/api/v1/devices",
        "/api/v1/devices/SN-0001",
        "/api/v1/audit?limit=1000",
    ):
        assert api.get(path).status_code == 200
    stored_hash = api.store.get("device", "SN-0001").spec["password_hash"]  # type: ignore[union-attr]
    key_body = owner_key_pem(ec_lab).splitlines()[1]
    audit_details = json.dumps([entry.detail for entry in api.store.audit(limit=1000)])
    for text in [*api.bodies, audit_details]:
        for secret in (key_body, PASSWORD, "another-password", stored_hash, "$scrypt$"):
            assert secret not in text


# ---- malformed requests


def test_malformed_requests_get_clear_4xx(small_api: Api) -> None:
    api = small_api
    json_type = {"Content-Type": "application/json"}
    syntax = api.post("/api/v1/images", data=b"{not json", headers=json_type)
    assert syntax.status_code == 400 and error_of(syntax)["code"] == "bad-request"
    for raw in (b'{"name": NaN}', b"\xff\xfe{", b'{"name": "\\ud800"}', b"[" * 100000):
        assert api.post("/api/v1/state", data=raw, headers=json_type).status_code == 400
    text = api.post("/api/v1/images", data=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status_code == 415
    assert error_of(text)["code"] == "unsupported-media-type"
    not_object = api.post("/api/v1/images", json=[1, 2])
    assert not_object.status_code == 422 and error_of(not_object)["field"] == "body"
    big = api.post("/api/v1/images", json={"name": "x", "spec": {"os_name": "a" * 4096}})
    assert big.status_code == 413 and error_of(big)["code"] == "payload-too-large"
    chunked = api.post(
        "/api/v1/images", data=iter([b'{"name": "', b"a" * 4096, b'"}']), headers=json_type
    )
    assert chunked.status_code == 413
    # the bulk endpoint has its own, larger limit
    bulk = api.post("/api/v1/state", json={"resources": {}, "kinds": ["device"] * 500})
    assert bulk.status_code == 200
    unknown = api.get("/api/v1/gadgets")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not-found"
    assert api.get("/nowhere").status_code == 404
    wrong_method = api.call("PATCH", "/api/v1/devices")
    assert wrong_method.status_code == 405
    assert error_of(wrong_method)["code"] == "method-not-allowed"
    assert "GET" in wrong_method.headers["Allow"]
    weird_serial = api.get("/api/v1/devices/a%2Fb")
    assert weird_serial.status_code == 404
    assert api.revision() == 0


def test_repeated_json_members_are_refused_by_name(api: Api, ec_lab: Any) -> None:
    """json.loads keeps the last of two equal names; an admin meant one of them, not both."""
    json_type = {"Content-Type": "application/json"}
    token = api.post(
        "/api/v1/tokens",
        data=b'{"name": "ci", "role": "read-only", "role": "admin"}',
        headers=json_type,
    )
    assert token.status_code == 400 and error_of(token)["code"] == "bad-request"
    assert "duplicate JSON member 'role'" in error_of(token)["message"]
    assert [item.name for item in api.store.tokens()] == ["admin"]
    owner = fleet(ec_lab)["owner"]["default"]
    nested = json.dumps({"name": "default", "spec": owner})
    nested = nested.replace('"spec": {', '"spec": {"certificate_chain": "x", ', 1)
    created = api.post("/api/v1/owners", data=nested.encode(), headers=json_type)
    assert created.status_code == 400
    assert "duplicate JSON member 'certificate_chain'" in error_of(created)["message"]
    assert api.revision() == 0


# ---- contract testing


SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def run_schemathesis(api: Api, cwd: Path, *selection: str) -> subprocess.CompletedProcess[str]:
    """Every check but positive_data_acceptance: a schema cannot tell a random string from a
    valid certificate, so schema-valid bodies are legitimately refused with 422."""
    config = cwd / "schemathesis.toml"
    # A body over the size limit (413) or a stale If-Match (412) is also a fine refusal.
    config.write_text(
        "[checks.negative_data_rejection]\n"
        "expected-statuses = [400, 401, 403, 404, 405, 406, 409, 412, 413, 415, 422, 428, 429]\n"
    )
    command = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{api.url}/api/v1/openapi.json",
        "--header",
        f"Authorization: Bearer {api.token}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "25",
        "--phases",
        "examples,coverage,fuzzing",
        "--seed",
        "8572",
        "--workers",
        "1",
        "--no-color",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        *selection,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.skipif(not SCHEMATHESIS.exists(), reason="schemathesis is not installed")
def test_schemathesis_finds_no_server_errors(api: Api, ec_lab: Any, tmp_path: Path) -> None:
    seed(api, ec_lab)
    # A device listed with an LDevID: its answers are checked against the schema too.
    year = timedelta(days=365)
    issue_ldevid(api, "SN-0001", "5a", issued_ago=timedelta(days=1), valid_for=year)
    # Token deletion goes last and alone: a fuzzed second admin token would otherwise let it
    # revoke the token the run itself uses.
    for selection in (
        ("--exclude-operation-id", "delete_token"),
        ("--include-operation-id", "delete_token"),
    ):
        result = run_schemathesis(api, tmp_path, *selection)
        assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
        assert re.search(r"\b[1-9][0-9]* passed", result.stdout), result.stdout
        assert "Authentication failed" not in result.stdout, result.stdout


def test_an_unavailable_store_is_503_without_details(api: Api) -> None:
    api.store.close()
    for response in (api.get("/healthz", auth=False), api.get("/api/v1/devices")):
        assert response.status_code == 503
        error = error_of(response)
        assert error["code"] == "unavailable"
        assert "sztp.db" not in error["message"]


# ---- long writes as jobs


def test_a_long_write_is_a_job_the_client_follows_to_its_end(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing new device passwords outlasts the client's request timeout: the server answers
    202 with a job, the client follows it, and the write is reported as it landed."""
    monkeypatch.setattr(jobs, "ANSWER_WITHIN_SECONDS", 0.0)
    devices = {f"SN-JOB-{index}": {"password": f"password {index}"} for index in range(8)}
    client = SztpClient(api.url, api.token, timeout=0.3)
    seen: list[tuple[int, int]] = []
    result = client.apply_state({"device": devices}, on_progress=lambda *both: seen.append(both))
    assert result.revision == api.revision() == 1
    assert sorted(change.name for change in result.changes) == sorted(devices)
    assert seen and seen[0][0] <= seen[-1][0] <= 8 and {total for _, total in seen} <= {0, 8}


def test_a_job_reports_how_it_failed(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "ANSWER_WITHIN_SECONDS", 0.0)
    bad = {"resources": {"device": {"SN-1": {"mac": "not a mac"}}}}
    before = api.revision()
    accepted = api.post("/api/v1/state", json=bad, headers={"Prefer": "respond-async"})
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    assert location == f"/api/v1/jobs/{accepted.json()['id']}"
    job = accepted.json()
    for _ in range(200):
        if job["state"] != "running":
            break
        time.sleep(0.02)
        job = api.get(location).json()
    assert job["state"] == "failed" and job["status"] == 422 and job["result"] is None
    assert job["error"]["code"] == "validation-error"
    assert job["error"]["field"] == "device[SN-1].mac"
    assert api.revision() == before
    assert api.get("/api/v1/jobs/0123456789abcdef").status_code == 404
    # Through the client, the job's failure is the error the request would have answered.
    with pytest.raises(ApiValidationError, match="not a MAC address"):
        SztpClient(api.url, api.token).apply_state(bad["resources"])


def test_a_quick_write_is_answered_at_once_even_when_asked_as_a_job(api: Api) -> None:
    body = {"resources": {"device": {"SN-1": {}}}}
    answered = api.post("/api/v1/state", json=body, headers={"Prefer": "respond-async"})
    assert answered.status_code == 200 and answered.json()["revision"] == 1
    refused = api.post(
        "/api/v1/state",
        json={"resources": {"device": {"SN-2": {"mac": "x"}}}},
        headers={"Prefer": "wait=10, respond-async"},
    )
    assert refused.status_code == 422 and refused.json()["error"]["field"] == "device[SN-2].mac"
    # The client's `wait` shortens the server's: a job at once.
    slow = {"resources": {"device": {"SN-3": {"password": "hashed slowly"}}}}
    accepted = api.post("/api/v1/state", json=slow, headers={"Prefer": "respond-async, wait=0"})
    assert accepted.status_code == 202 and accepted.json()["state"] == "running"


def test_a_job_asked_to_wait_is_answered_as_it_ends(api: Api) -> None:
    """`Prefer: wait=N` on a job: the answer comes once the write ends, within N seconds, so a
    client following it learns of the end at once rather than at its next poll."""
    slow = {f"SN-WAIT-{index}": {"password": f"password {index}"} for index in range(6)}
    accepted = api.post(
        "/api/v1/state",
        json={"resources": {"device": slow}},
        headers={"Prefer": "respond-async, wait=0"},
    )
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    assert api.get(location).json()["state"] == "running"  # without a wait: at once
    asked_at = time.monotonic()
    ended = api.get(location, headers={"Prefer": "wait=5"})
    assert ended.status_code == 200 and ended.json()["state"] == "succeeded", ended.text
    assert time.monotonic() - asked_at < 4.5
    assert api.get(location, headers={"Prefer": "wait=5"}).json()["state"] == "succeeded"
    assert api.revision() == 1


def test_a_writer_process_that_dies_mid_write_costs_that_write_only(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writes are planned and committed in a process of their own: killed half-way, it stores
    nothing of that write, the job says so with a 503, and the next write starts a new one."""
    monkeypatch.setattr(jobs, "ANSWER_WITHIN_SECONDS", 0.0)
    writer = api.app[STATE_SERVICE].writer
    assert api.put("/api/v1/devices/SN-FIRST", json={"spec": {}}).status_code == 201
    first_pid = writer.pid
    assert first_pid is not None and first_pid != os.getpid()
    before = api.revision()
    slow = {f"SN-SLOW-{index}": {"password": f"password {index}"} for index in range(200)}
    accepted = api.post(
        "/api/v1/state", json={"resources": {"device": slow}}, headers={"Prefer": "respond-async"}
    )
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]
    job = accepted.json()
    while job["progress"]["done"] < 2:  # hashing passwords, in the writer process
        assert job["state"] == "running", job
        time.sleep(0.05)
        job = api.get(location).json()
    os.kill(first_pid, signal.SIGKILL)
    while job["state"] == "running":
        time.sleep(0.05)
        job = api.get(location).json()
    assert job["status"] == 503 and "writer process ended" in job["error"]["message"], job
    assert api.revision() == before
    assert api.get("/api/v1/devices/SN-SLOW-0").status_code == 404
    assert api.put("/api/v1/devices/SN-AFTER", json={"spec": {}}).status_code == 201
    assert writer.pid not in (None, first_pid)
    assert api.revision() == before + 1


def test_a_large_job_result_is_kept_compressed_and_read_back_whole(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large plan is kept compressed while its job stays readable; whoever reads it, at once
    or by following the job, gets the answer as the writer encoded it."""
    monkeypatch.setattr(jobs, "COMPRESS_RESULT_BYTES", 64)
    devices = {f"SN-BIG-{index}": {"model": "m"} for index in range(20)}
    at_once = api.post(
        "/api/v1/state", params={"plan": "summary"}, json={"resources": {"device": devices}}
    )
    assert at_once.status_code == 200, at_once.text
    assert [change["name"] for change in at_once.json()["changes"]] == sorted(devices)
    assert at_once.headers["ETag"] == '"1"'

    monkeypatch.setattr(jobs, "ANSWER_WITHIN_SECONDS", 0.0)
    renamed = {f"SN-BIG-{index}": {"model": "n"} for index in range(20)}
    followed = SztpClient(api.url, api.token).apply_state({"device": renamed}, summary=True)
    assert followed.revision == 2
    assert [(change.action, change.name) for change in followed.changes] == [
        ("update", name) for name in sorted(renamed)
    ]


def test_a_job_keeps_a_large_result_compressed() -> None:
    plan = json.dumps({"revision": 3, "changes": [{"name": f"SN-{n}"} for n in range(5000)]})

    async def scenario() -> None:
        registry = jobs.Jobs()

        async def large(_progress: jobs.Progress) -> jobs.JsonAnswer:
            return jobs.JsonAnswer(3, plan.encode(), True)

        async def small(_progress: jobs.Progress) -> jobs.JsonAnswer:
            return jobs.JsonAnswer(3, b"{}", True)

        kept, as_is = registry.start("admin", large), registry.start("admin", small)
        await registry.close()
        assert len(plan) > jobs.COMPRESS_RESULT_BYTES / 16
        assert kept.compressed and kept.result is not None
        assert len(kept.result.body) < len(plan) / 4
        assert await kept.result_body() == plan.encode()
        assert json.loads(await kept.document())["result"] == json.loads(plan)
        assert not as_is.compressed and await as_is.result_body() == b"{}"

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jobs, "COMPRESS_RESULT_BYTES", 1024)
        asyncio.run(scenario())


def test_jobs_end_readable_for_an_hour_and_few_run_at_once() -> None:
    clock = ManualClock()

    async def scenario() -> None:
        registry = jobs.Jobs(clock=clock)
        release = asyncio.Event()

        async def blocked(_progress: jobs.Progress) -> jobs.JsonAnswer:
            await release.wait()
            return jobs.JsonAnswer(1, b"{}")

        running = [registry.start("admin", blocked) for _ in range(jobs.MAX_RUNNING_JOBS)]
        with pytest.raises(jobs.ApiError) as refused:
            registry.start("admin", blocked)
        assert refused.value.status == 503
        release.set()
        await registry.close()
        assert {job.state for job in running} == {"succeeded"}
        clock.now += jobs.JOB_TTL_SECONDS - 1
        assert registry.get(running[0].id) is running[0]
        clock.now += 2
        assert registry.get(running[0].id) is None
        # However recent, only the latest ended jobs are kept.

        async def quick(_progress: jobs.Progress) -> jobs.JsonAnswer:
            return jobs.JsonAnswer(1, b"{}")

        ended = []
        for _ in range(jobs.MAX_ENDED_JOBS + 2):
            ended.append(registry.start("admin", quick))
            await registry.close()
            clock.now += 1
        assert registry.get(ended[0].id) is None and registry.get(ended[1].id) is None
        assert registry.get(ended[2].id) is ended[2] and registry.get(ended[-1].id) is ended[-1]

    asyncio.run(scenario())


def test_a_large_write_renews_the_writer_process(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process that parsed a large bulk write hands over to a fresh one that holds only
    the state; writes go on, planned on that state."""
    monkeypatch.setattr(writes, "LARGE_WRITE_BYTES", 2048)
    writer = api.app[STATE_SERVICE].writer
    assert api.put("/api/v1/devices/SN-SMALL", json={"spec": {}}).status_code == 201
    small_write_pid = writer.pid
    assert api.put("/api/v1/devices/SN-SMALL-2", json={"spec": {}}).status_code == 201
    assert writer.pid == small_write_pid
    fleet = {f"SN-BULK-{index}": {"model": "m"} for index in range(100)}
    applied = api.post("/api/v1/state", json={"resources": {"device": fleet}})
    assert applied.status_code == 200, applied.text
    renewed = api.put("/api/v1/devices/SN-BULK-1", json={"spec": {"model": "n"}})
    assert renewed.status_code == 200, renewed.text
    assert writer.pid not in (None, small_write_pid)
    # The new process planned on the stored state: an unchanged re-apply changes nothing.
    again = api.post("/api/v1/state", json={"resources": {"device": {"SN-BULK-2": {"model": "m"}}}})
    assert again.json()["changes"] == []
    # A large write that changes nothing leaves the process as it was: it keeps its state.
    renewed_pid = writer.pid
    fleet["SN-BULK-1"] = {"model": "n"}
    unchanged = api.post("/api/v1/state", json={"resources": {"device": fleet}})
    assert unchanged.status_code == 200 and unchanged.json()["changes"] == [], unchanged.text
    assert api.put("/api/v1/devices/SN-BULK-3", json={"spec": {}}).status_code == 200
    assert writer.pid == renewed_pid

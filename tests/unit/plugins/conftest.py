"""The plugins' unit tests run against the real sztp-server admin API, served in-process.

One server per test process serves the server's own admin application (`build_admin_app`
over a SQLite store) on 127.0.0.1 from a background thread; `admin_server` empties its state
before each test. It starts once collection is done, in the process that runs the tests: under
ansible-test each test runs in a fork of that process, which reaches the server over TCP and
touches none of its objects (no thread, connection or loop survives a fork). Tests seed it
through the admin API (`seed`) and store progress reports as devices would send them
(`report`), so statuses, listings, canonical forms and errors are the server's own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestServer

from sztp.client import SztpClient
from sztp.state.resources import KINDS
from sztp_server.admin import build_admin_app
from sztp_server.config import ServerConfig
from sztp_server.context import ServerContext
from sztp_server.secret_key import SecretKey
from sztp_server.store import ProgressRecord, StoredResource, open_store
from sztp_server.store.model import DeviceEvent, IssuedCertificate, ReportOutcome
from sztp_server.tokens import ADMIN, new_token_record

_Result = TypeVar("_Result")


class AdminServer:
    """sztp-server's admin application over a new SQLite store in `directory`, served on
    127.0.0.1 (plain HTTP, which the client allows for loopback) from a background loop."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.store_url = f"sqlite://{directory / 'sztp.db'}"
        self.store = open_store(self.store_url)
        self.token, record = new_token_record("unit-tests", ADMIN)
        self.store.add_token(record, actor="unit-tests")
        self.secret_key = SecretKey(os.urandom(32))
        self.context = ServerContext(self.store, ServerConfig(), self.secret_key)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._run(self._start())
        self.url = str(self.server.make_url("")).rstrip("/")

    async def _start(self) -> TestServer:
        server = TestServer(build_admin_app(self.context), host="127.0.0.1")
        await server.start_server()
        return server

    def _run(self, coroutine: Coroutine[Any, Any, _Result]) -> _Result:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def close(self) -> None:
        self._run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
        self.context.close()
        self.store.close()
        shutil.rmtree(self.directory)

    def stored(self, kind: str, name: str) -> StoredResource | None:
        """A resource as stored, read through a store connection of the caller's own (the
        server's are not the caller's if it runs in a fork)."""
        store = open_store(self.store_url)
        try:
            return store.get(kind, name)
        finally:
            store.close()

    def seed(self, resources: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """Store `resources` ({kind: {name: spec}}) through the admin API, which normalises
        and checks them; resources of other kinds, or not named, are left alone."""
        with SztpClient(self.url, self.token) as client:
            client.apply_state(resources, kinds=list(resources))

    def add_device_events(self, events: list[DeviceEvent]) -> None:
        """Store device requests as the flight recorder does."""
        store = open_store(self.store_url)
        try:
            store.add_device_events(events, keep=1000)
        finally:
            store.close()

    def queue_webhook_event(self, webhook: str, event_type: str) -> None:
        """An event waiting in the webhook outbox, as the server queues one."""
        store = open_store(self.store_url)
        try:
            now = datetime.now(UTC)
            mark = f"unit-test:{event_type}:{now.isoformat()}"
            store.queue_webhook_events_once(mark, now, [(webhook, event_type, "{}")])
        finally:
            store.close()

    def add_report(self, record: ProgressRecord) -> None:
        """Store a device's progress report as if the device had sent it."""
        store = open_store(self.store_url)
        try:
            assert store.add_report(record) is ReportOutcome.STORED, (
                f"no device {record.serial!r} to report"
            )
        finally:
            store.close()

    def report(
        self,
        serial: str,
        progress_type: str,
        *,
        ago: timedelta = timedelta(),
        message: str | None = None,
        source_address: str | None = None,
        ssh_host_keys: Iterable[tuple[str, str]] = (),
    ) -> None:
        """A progress report from device `serial` (its first attempt), received `ago` before
        now; `ssh_host_keys` as (algorithm, base64 key data), stored as they come."""
        self.add_report(
            ProgressRecord(
                serial=serial,
                received_at=datetime.now(UTC) - ago,
                progress_type=progress_type,
                message=message,
                source_address=source_address,
                attempt=1,
                ssh_host_keys=tuple(ssh_host_keys),
            )
        )

    def issue_ldevid(
        self,
        serial: str,
        *,
        issuer: str = "lab",
        issued_ago: timedelta = timedelta(),
        valid_for: timedelta = timedelta(days=365),
        revoked: bool = False,
    ) -> IssuedCertificate:
        """An LDevID recorded as issued to device `serial` `issued_ago` before now, valid for
        `valid_for` from then, and revoked at once if `revoked`. Its serial number is new:
        issued certificates outlive `reset`, as they outlive the devices on the server."""
        issued_at = datetime.now(UTC) - issued_ago
        record = IssuedCertificate(
            issuer=issuer,
            serial_number=secrets.token_hex(8),
            device=serial,
            profile=None,
            subject=f"serialNumber={serial}",
            not_before=issued_at,
            not_after=issued_at + valid_for,
            issued_at=issued_at,
            certificate_pem="-----BEGIN CERTIFICATE-----\n",
        )
        store = open_store(self.store_url)
        try:
            store.add_issued_certificate(record)
            if revoked:
                store.revoke_certificate(
                    issuer, record.serial_number, issued_at, "keyCompromise", actor="unit-tests"
                )
        finally:
            store.close()
        return record

    def reset(self) -> None:
        """Delete every resource (and with the devices, their reports)."""
        with SztpClient(self.url, self.token) as client:
            client.apply_state({}, kinds=list(KINDS), prune=True)


SERVER = pytest.StashKey[AdminServer]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if any("admin_server" in getattr(item, "fixturenames", ()) for item in session.items):
        session.config.stash[SERVER] = AdminServer(Path(tempfile.mkdtemp(prefix="sztp-unit-")))


def pytest_sessionfinish(session: pytest.Session) -> None:
    server = session.config.stash.get(SERVER, None)
    if server is not None:
        server.close()


@pytest.fixture
def admin_server(request: pytest.FixtureRequest) -> AdminServer:
    """The server of this test process, with no resources."""
    server = request.config.stash[SERVER]
    server.reset()
    return server

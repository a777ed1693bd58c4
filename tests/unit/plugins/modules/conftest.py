"""The modules' unit tests run against the real sztp-server admin API, served in-process.

One server per test process serves the server's own admin application (`build_admin_app`
over a SQLite store) on 127.0.0.1 from a background thread; `admin_server` empties its state
before each test. It starts once collection is done, in the process that runs the tests: under
ansible-test each test runs in a fork of that process, which reaches the server over TCP and
touches none of its objects (no thread, connection or loop survives a fork). `FakeClient` takes
the place of `SztpClient` in the module_utils: it records every call, refuses any write in
check mode, fails the test on any method the modules are not expected to call, and forwards
the rest to a real `SztpClient` connected to that server, so plans, canonical forms, errors and
"<hidden>" secrets are the server's own.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp.test_utils import TestServer
from ansible.module_utils.testing import patch_module_args

from sztp.client import SztpClient
from sztp.errors import ServerUnreachable
from sztp.state.model import STORED_SECRET
from sztp.state.resources import KINDS, OWNER
from sztp_server.admin import build_admin_app
from sztp_server.config import ServerConfig
from sztp_server.context import ServerContext
from sztp_server.secret_key import SecretKey
from sztp_server.store import ProgressRecord, StoredResource, open_store
from sztp_server.tokens import ADMIN, new_token_record

MODULE_UTILS = "ansible_collections.sztp.bootstrap.plugins.module_utils.sztp"
TOKEN = "s3cr3t-t0ken-value"
# The writes among the client methods the modules call; apply_state is one unless a dry run.
WRITES = ("apply_state", "delete", "put_voucher")

_Result = TypeVar("_Result")


class UnexpectedCall(AssertionError):
    pass


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

    def add_report(self, record: ProgressRecord) -> None:
        """Store a device's progress report as if the device had sent it."""
        store = open_store(self.store_url)
        try:
            assert store.add_report(record), f"no device {record.serial!r} to report"
        finally:
            store.close()

    def reset(self) -> None:
        """Delete every resource."""
        with SztpClient(self.url, self.token) as client:
            client.apply_state({}, kinds=list(KINDS), prune=True)


class FakeClient:
    """`SztpClient` for the modules: each call recorded (method, arguments by name), then
    made by a real client against the in-process server."""

    ALLOWED = (
        "get",
        "get_state",
        "apply_state",
        "delete",
        "put_voucher",
        "devices_with_status",
        "device_status",
        "fleet_status",
    )

    def __init__(self, server: AdminServer) -> None:
        self.server = server
        self.client = SztpClient(server.url, server.token)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.check_mode = False
        self.connection: dict[str, Any] | None = None
        self.fail_with: Exception | None = None

    # -- construction, as module_utils does: SztpClient(server, token, ca_bundle=, ...)
    def __call__(self, server: str, token: str | None, **kwargs: Any) -> FakeClient:
        self.connection = {"server": server, "token": token, **kwargs}
        return self

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self.ALLOWED:
            raise UnexpectedCall(f"the module called SztpClient.{name}, which no test expects")
        method = getattr(self.client, name)

        def forwarded(*args: Any, **kwargs: Any) -> Any:
            bound = inspect.signature(method).bind(*args, **kwargs)
            bound.apply_defaults()
            self._record(name, **bound.arguments)
            if name in WRITES and not bound.arguments.get("dry_run") and self.check_mode:
                raise UnexpectedCall(f"{name} in check mode")
            return method(*args, **kwargs)

        return forwarded

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))
        if self.fail_with is not None:
            raise self.fail_with

    def methods(self) -> list[str]:
        return [call[0] for call in self.calls]

    # -- test helpers: straight to the server, not recorded
    def seed(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        """Store one resource as `spec` says (the server normalises and checks it)."""
        self.client.apply_state({kind: {name: spec}}, kinds=[kind])

    @property
    def state(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every resource as the server shows it (secrets "<hidden>")."""
        return self.client.get_state()[1]

    @property
    def revision(self) -> int:
        return self.client.get_state()[0]

    def report(
        self, serial: str, progress_type: str, *, ago: timedelta = timedelta(), **fields: Any
    ) -> None:
        """A progress report from device `serial`, received `ago` before now."""
        self.server.add_report(
            ProgressRecord(
                serial=serial,
                received_at=datetime.now(UTC) - ago,
                progress_type=progress_type,
                message=fields.get("message"),
                source_address=fields.get("source_address"),
                attempt=1,
                ssh_host_keys=tuple(fields.get("ssh_host_keys", ())),
            )
        )

    def secret(self, kind: str, name: str) -> str | None:
        """The secret stored for a resource, in clear (a device's password hash, an owner's
        private key), from the server's store: the API never shows it."""
        stored = self.server.stored(kind, name)
        assert stored is not None, f"no {kind} {name!r} is stored"
        value = stored.spec.get(STORED_SECRET[kind])
        if kind == OWNER and value is not None:
            return self.server.secret_key.open(name, value)
        return value


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


@pytest.fixture
def fake(admin_server: AdminServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClient]:
    client = FakeClient(admin_server)
    monkeypatch.setattr(f"{MODULE_UTILS}.SztpClient", client)
    for variable in ("SZTP_SERVER", "SZTP_TOKEN", "SZTP_TOKEN_FILE", "SZTP_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    yield client
    client.client.close()


@pytest.fixture
def run_module(
    fake: FakeClient, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """run_module(main, args, check_mode=False, diff=True) -> the module's JSON result, with
    `failed` set on failure; fails the test if the raw output contains the token."""
    # Controller-side tests in the same process (the inventory plugin's) flip this flag, and
    # module warnings then go to the controller's display instead of the result.
    from ansible.module_utils import _internal

    monkeypatch.setattr(_internal, "is_controller", False)

    def run(main: Any, args: dict[str, Any], check_mode: bool = False, diff: bool = True) -> Any:
        full = {"server": "https://sztp.example.test:8443", "token": TOKEN, **args}
        # None leaves an option out (so its environment fallback applies).
        full = {key: value for key, value in full.items() if value is not None}
        full["_ansible_check_mode"] = check_mode
        full["_ansible_diff"] = diff
        fake.check_mode = check_mode
        with patch_module_args(full), pytest.raises(SystemExit) as exited:
            main()
        out = capsys.readouterr().out
        assert TOKEN not in out
        result = json.loads(out)
        assert bool(result.get("failed")) == (exited.value.code != 0)
        return result

    return run


@pytest.fixture
def unreachable() -> Exception:
    return ServerUnreachable("cannot reach https://sztp.example.test:8443: Connection refused")

"""The modules' unit tests run against the real sztp-server admin API, served in-process by
../conftest.py (`admin_server`). `FakeClient` takes the place of `SztpClient` in the
module_utils: it records every call, refuses any write in check mode, fails the test on any
method the modules are not expected to call, and forwards the rest to a real `SztpClient`
connected to that server, so plans, canonical forms, errors and "<hidden>" secrets are the
server's own.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from ansible_collections.sztp.bootstrap.tests.unit.compat.ansible_core import (
    patch_module_args,
    run_as_module,
)

from sztp.client import SztpClient
from sztp.errors import ServerUnreachable
from sztp.state.model import STORED_SECRET
from sztp.state.resources import OWNER
from sztp_server.store.model import DeviceEvent

if TYPE_CHECKING:  # ../conftest.py, which pytest loads by path, not by this name
    from ansible_collections.sztp.bootstrap.tests.unit.plugins.conftest import AdminServer

MODULE_UTILS = "ansible_collections.sztp.bootstrap.plugins.module_utils.sztp"
TOKEN = "s3cr3t-t0ken-value"
# The writes among the client methods the modules call; apply_state is one unless a dry run.
WRITES = ("apply_state", "delete", "put_voucher")


class UnexpectedCall(AssertionError):
    pass


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
        "device_pages",
        "device_status",
        "fleet_status",
        "device_events",
        "webhooks",
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
        self.server.seed({kind: {name: spec}})

    @property
    def state(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Every resource as the server shows it (secrets "<hidden>")."""
        return self.client.get_state()[1]

    @property
    def revision(self) -> int:
        return self.client.get_state()[0]

    def report(self, serial: str, progress_type: str, **fields: Any) -> None:
        """A progress report from device `serial` (AdminServer.report's options)."""
        self.server.report(serial, progress_type, **fields)

    def events(self, events: list[DeviceEvent]) -> None:
        """Device requests as the flight recorder stores them."""
        self.server.add_device_events(events)

    def queue_webhook_event(self, webhook: str, event_type: str) -> None:
        """An event waiting in the server's webhook outbox."""
        self.server.queue_webhook_event(webhook, event_type)

    def secret(self, kind: str, name: str) -> str | None:
        """The secret stored for a resource, in clear (a device's password hash, an owner's
        private key), from the server's store: the API never shows it."""
        stored = self.server.stored(kind, name)
        assert stored is not None, f"no {kind} {name!r} is stored"
        value = stored.spec.get(STORED_SECRET[kind])
        if kind == OWNER and value is not None:
            return self.server.secret_key.open(name, value)
        return value


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
    run_as_module(monkeypatch)

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

"""A strict in-memory fake of the sztp-server admin API, and a runner for modules.

`FakeClient` replaces `SztpClient` in the module_utils: it keeps resources in memory, runs the
kit's own normalisation and planning (so canonical forms and "<hidden>" secrets behave as on
the server), records every call, refuses any write in check mode, and fails the test on any
method the modules are not expected to call.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args

from sztpctl.client import ApplyResult, ResourceChange
from sztpctl.errors import (
    ApiConflictError,
    ApiValidationError,
    NotFoundApiError,
    ServerUnreachable,
    ValidationError,
)
from sztpctl.state.plan import apply_changes, check_references, plan
from sztpctl.state.resources import HIDDEN, KINDS, normalize_spec, public_view

MODULE_UTILS = "ansible_collections.sztp.bootstrap.plugins.module_utils.sztp"
SECRET_FIELDS = {"owner": "private_key", "device": "password_hash"}
TOKEN = "s3cr3t-t0ken-value"


class UnexpectedCall(AssertionError):
    pass


class FakeClient:
    ALLOWED = ("get", "get_state", "apply_state", "delete", "put_voucher")

    def __init__(self) -> None:
        self.state: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in KINDS}
        self.revision = 1
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.check_mode = False
        self.connection: dict[str, Any] | None = None
        self.fail_with: Exception | None = None

    # -- construction, as module_utils does: SztpClient(server, token, ca_bundle=, ...)
    def __call__(self, server: str, token: str | None, **kwargs: Any) -> FakeClient:
        self.connection = {"server": server, "token": token, **kwargs}
        return self

    def __getattr__(self, name: str) -> Any:
        raise UnexpectedCall(f"the module called SztpClient.{name}, which no test expects")

    def _record(self, method: str, **kwargs: Any) -> None:
        self.calls.append((method, kwargs))
        if self.fail_with is not None:
            raise self.fail_with

    def methods(self) -> list[str]:
        return [call[0] for call in self.calls]

    def _write(self, what: str) -> None:
        if self.check_mode:
            raise UnexpectedCall(f"{what} in check mode")

    # -- the API
    def get(self, kind: str, name: str) -> dict[str, Any]:
        self._record("get", kind=kind, name=name)
        spec = self.state[kind].get(name)
        if spec is None:
            raise NotFoundApiError(404, "not-found", f"no {kind} named {name!r}")
        return {"name": name, "spec": public_view(kind, spec), "revision": self.revision}

    def get_state(self) -> tuple[int, dict[str, dict[str, dict[str, Any]]]]:
        self._record("get_state")
        return self.revision, {
            kind: {name: public_view(kind, spec) for name, spec in specs.items()}
            for kind, specs in self.state.items()
        }

    def apply_state(
        self,
        resources: dict[str, dict[str, dict[str, Any]]],
        *,
        prune: bool = False,
        kinds: list[str] | None = None,
        dry_run: bool = False,
        if_match: int | None = None,
        summary: bool = False,
    ) -> ApplyResult:
        self._record(
            "apply_state",
            resources=resources,
            prune=prune,
            kinds=kinds,
            dry_run=dry_run,
            if_match=if_match,
            summary=summary,
        )
        if not dry_run:
            self._write("apply_state without dry_run")
        json.dumps(resources)  # what the real client sends must be JSON
        if if_match is not None and if_match != self.revision:
            raise ApiConflictError(412, "precondition-failed", "the state moved on")
        desired: dict[str, dict[str, Any]] = {}
        try:
            for kind, specs in resources.items():
                desired[kind] = {}
                for name, spec in specs.items():
                    current = self.state[kind].get(name)
                    field = SECRET_FIELDS.get(kind)
                    if field and spec.get(field) == HIDDEN:
                        if not current or current.get(field) is None:
                            raise ValidationError(f"{kind}[{name}].{field}", "none is stored")
                        spec = {**spec, field: current[field]}
                    desired[kind][name] = normalize_spec(kind, name, spec, current)
            changes = plan(desired, self.state, prune=prune, kinds=kinds)
            after = apply_changes(self.state, changes)
            check_references(after)
        except ValidationError as exc:
            raise ApiValidationError(422, "invalid", exc.message, exc.field) from None
        if not dry_run and changes:
            self.state = after
            self.revision += 1
        return ApplyResult(
            revision=self.revision,
            dry_run=dry_run,
            changes=[
                ResourceChange(
                    action=change.action,
                    kind=change.kind,
                    name=change.name,
                    before=None if change.before is None else public_view(kind, change.before),
                    after=None if change.spec is None else public_view(kind, change.spec),
                )
                for change in changes
                for kind in [change.kind]
            ],
        )

    def delete(self, kind: str, name: str) -> None:
        self._record("delete", kind=kind, name=name)
        self._write("delete")
        if name not in self.state[kind]:
            raise NotFoundApiError(404, "not-found", f"no {kind} named {name!r}")
        after = {k: dict(v) for k, v in self.state.items()}
        del after[kind][name]
        try:
            check_references(after)
        except ValidationError as exc:
            raise ApiConflictError(
                409, "conflict", f"{kind} {name!r} is still in use: {exc.field}", exc.field
            ) from None
        self.state = after
        self.revision += 1

    def put_voucher(self, serial: str, voucher: bytes) -> dict[str, Any]:
        self._record("put_voucher", serial=serial)
        self._write("put_voucher")
        raise UnexpectedCall("put_voucher is not used by the modules")

    # -- test helpers
    def seed(self, kind: str, name: str, spec: dict[str, Any]) -> None:
        self.state[kind][name] = normalize_spec(kind, name, spec, self.state[kind].get(name))
        self.revision += 1


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeClient:
    client = FakeClient()
    monkeypatch.setattr(f"{MODULE_UTILS}.SztpClient", client)
    for variable in ("SZTP_SERVER", "SZTP_TOKEN", "SZTP_TOKEN_FILE", "SZTP_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    return client


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

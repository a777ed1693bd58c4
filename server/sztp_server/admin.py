"""The admin API under `/api/v1`: resources, bulk desired state, status, audit and tokens.

Decisions worth knowing as a client:

- Authentication: `Authorization: Bearer <token>` on every route except `GET /healthz` (for
  load balancers) and `GET /api/v1/openapi.json` (the document holds no data). A `read-only`
  token may only read (GET/HEAD); everything else needs an `admin` token.
- Every error is JSON: `{"error": {"code": ..., "message": ..., "field": ...?}}`. Bad input is
  always a 4xx and leaves the stored state unchanged.
- The ETag is the revision of the whole state (`"<revision>"`): every resource and bulk
  response carries it, and every write honours `If-Match` (412 when the state has moved on).
  Without `If-Match`, writes made concurrently on this instance are serialised, and a write
  that races another instance is recomputed on the new state.
- `POST /api/v1/state` answers with the plan: every change with its whole before and after
  by default, or with `?plan=summary` only the names of the fields it touches (and, for an
  update, their old and new values), which keeps the answer small for a large fleet.
- Secrets never leave the server: an owner's `private_key` and a device's `password_hash` are
  shown as `"<hidden>"`. Sending `"<hidden>"` back in a write keeps the stored secret, so
  `GET /state` followed by `POST /state` with the same document changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, overload

from aiohttp import web

from sztpctl.errors import SztpError, ValidationError
from sztpctl.progress import (
    MAX_PROGRESS_PAGE,
    DeviceStatus,
    StoredReport,
    derive_status,
    group_by_attempt,
    summarize,
)
from sztpctl.protocol import strict_json
from sztpctl.state.ownership import check_vouchers_authorise_owners
from sztpctl.state.plan import Change, apply_changes, check_references, plan
from sztpctl.state.resources import (
    DEVICE,
    HIDDEN,
    IMAGE,
    KINDS,
    OWNER,
    PROFILE,
    TRUST_ANCHOR,
    StorableVoucher,
    checked_voucher,
    public_fields,
    public_view,
)

from .context import ServerContext, Snapshot
from .openapi import openapi_document
from .report_limits import DEFAULT_PROGRESS_LIMIT
from .secret_key import SecretKey
from .store.base import AUDIT_MAX_AGE_DAYS, utc_now
from .store.errors import ConflictError, NotFoundError, StoreError
from .store.model import ProgressRecord, StoredResource, TokenRecord
from .tokens import ADMIN, ROLES, TOKEN_NAME_PATTERN, hash_token, new_token_record

LOG = logging.getLogger(__name__)

API = "/api/v1"
COLLECTIONS: Mapping[str, str] = {
    "trust-anchors": TRUST_ANCHOR,
    "owners": OWNER,
    "images": IMAGE,
    "profiles": PROFILE,
    "devices": DEVICE,
}
# The bulk endpoint carries the whole fleet: 10,000 devices with vouchers is tens of MiB.
DEFAULT_MAX_BULK_BYTES = 64 * 1024 * 1024
MAX_AUDIT_LIMIT = 1000
JSON_TYPE = "application/json"
STATUSES = tuple(status.value for status in DeviceStatus)
RECENT_ERRORS = 50
VOUCHER_TYPES = ("application/voucher-cms+json", "application/octet-stream")
# Secret fields: shown as HIDDEN, and HIDDEN in a write means "keep the stored value".
SECRET_FIELDS: Mapping[str, str] = {OWNER: "private_key", DEVICE: "password_hash"}
_PUBLIC_ROUTES = frozenset({"/healthz", f"{API}/openapi.json"})
_READ_METHODS = frozenset({"GET", "HEAD"})
_CALLER = web.RequestKey("caller", TokenRecord)
_ERROR_CODES = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    503: "unavailable",
}
_COMMIT_ATTEMPTS = 3


class ApiError(Exception):
    """An error answered as-is: HTTP status, error code, message, optional field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return error_response(self.status, self.message, field=self.field, headers=self.headers)


def error_response(
    status: int,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    error: dict[str, Any] = {"code": _ERROR_CODES.get(status, "internal-error"), "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status, headers=headers)


def build_admin_app(
    context: ServerContext, *, max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES
) -> web.Application:
    """The admin application; `max_bulk_bytes` bounds `POST /api/v1/state` bodies, every other
    body is bounded by `context.config.max_body_bytes`."""
    api = _AdminApi(context, max_bulk_bytes)
    app = web.Application(
        middlewares=[_error_middleware, api.auth_middleware],
        client_max_size=max(max_bulk_bytes, context.config.max_body_bytes),
    )
    kinds = "|".join(COLLECTIONS)
    collection = f"{API}/{{collection:{kinds}}}"
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get(f"{API}/openapi.json", api.openapi)
    app.router.add_get(f"{API}/state", api.get_state)
    app.router.add_post(f"{API}/state", api.post_state)
    app.router.add_get(f"{API}/status", api.fleet_status)
    app.router.add_get(f"{API}/audit", api.audit)
    app.router.add_post(f"{API}/audit/prune", api.prune_audit)
    app.router.add_get(f"{API}/tokens", api.list_tokens)
    app.router.add_post(f"{API}/tokens", api.create_token)
    app.router.add_delete(f"{API}/tokens/{{name}}", api.delete_token)
    app.router.add_put(f"{API}/devices/{{name}}/voucher", api.put_voucher)
    app.router.add_delete(f"{API}/devices/{{name}}/voucher", api.delete_voucher)
    app.router.add_get(f"{API}/devices/{{name}}/status", api.device_status)
    app.router.add_get(f"{API}/devices/{{name}}/progress", api.device_progress)
    app.router.add_get(collection, api.list_resources)
    app.router.add_post(collection, api.create_resource)
    app.router.add_get(f"{collection}/{{name}}", api.get_resource)
    app.router.add_put(f"{collection}/{{name}}", api.put_resource)
    app.router.add_delete(f"{collection}/{{name}}", api.delete_resource)
    app.on_cleanup.append(api.close)
    return app


@web.middleware
async def _error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a JSON error; only a bug gives a 500, logged, without details."""
    try:
        return await handler(request)
    except ApiError as exc:
        return exc.response()
    except ValidationError as exc:
        return error_response(422, exc.message, field=exc.field)
    except ConflictError as exc:
        return error_response(409, str(exc))
    except NotFoundError as exc:
        return error_response(404, str(exc))
    except StoreError as exc:
        LOG.error("admin API %s %s: store unavailable: %s", request.method, request.path, exc)
        return error_response(503, "the state store is unavailable; retry later")
    except SztpError as exc:
        return error_response(422, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, _http_message(exc), headers=headers)
    except Exception:
        LOG.exception("admin API %s %s failed", request.method, request.path)
        return error_response(500, "internal error; the server log has the details")


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "no such route"
    if exc.status == 405:
        return "method not allowed on this route"
    return exc.reason


@dataclass(frozen=True)
class _Commit:
    revision: int
    changes: list[Change]


class _AdminApi:
    def __init__(self, context: ServerContext, max_bulk_bytes: int) -> None:
        self.context = context
        self.store = context.admin_store
        self.max_body_bytes = context.config.max_body_bytes
        self.max_bulk_bytes = max_bulk_bytes
        self.write_lock = asyncio.Lock()
        self.openapi_body = json.dumps(openapi_document())
        self.vouchers = VoucherChecker()
        self.secret_key = context.secret_key
        self.refusals = RefusalLog()

    async def close(self, _app: web.Application) -> None:
        self.vouchers.close()

    # ---- authentication

    @web.middleware
    async def auth_middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.path in _PUBLIC_ROUTES and request.method in _READ_METHODS:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self.refusals.log(request.remote, "no bearer token")
            raise ApiError(
                401,
                "this route needs an API token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="sztp"'},
            )
        record = await self.store.find_token(hash_token(token))
        if record is None:
            self.refusals.log(request.remote, "unknown token")
            raise ApiError(
                401,
                "the API token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="sztp", error="invalid_token"'},
            )
        if record.role != ADMIN and not _reads_only(request):
            raise ApiError(403, f"a {record.role} token cannot change anything")
        request[_CALLER] = record
        return await handler(request)

    # ---- public routes

    async def healthz(self, _request: web.Request) -> web.Response:
        await self.store.revision()  # proves the store answers; a StoreError becomes a 503
        return web.json_response({"status": "ok"})

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.openapi_body, content_type=JSON_TYPE)

    # ---- resources

    async def list_resources(self, request: web.Request) -> web.Response:
        kind = COLLECTIONS[request.match_info["collection"]]
        revision = await self.store.revision()
        resources = await self.store.list(kind)
        if kind == DEVICE:
            resources = await self._filter_devices(request, resources)
        return _json([_resource_view(resource) for resource in resources], revision=revision)

    async def _filter_devices(
        self, request: web.Request, devices: list[StoredResource]
    ) -> list[StoredResource]:
        for field in ("profile", "model"):
            wanted = request.query.get(field)
            if wanted is not None:
                devices = [device for device in devices if device.spec.get(field) == wanted]
        wanted_status = request.query.get("status")
        if wanted_status is None:
            return devices
        if wanted_status not in STATUSES:
            raise ApiError(400, f"must be one of {', '.join(STATUSES)}", field="status")
        latest = await self.store.latest_reports()
        stall_after = self._stall_after()
        return [
            device
            for device in devices
            if _status(latest.get(device.name), stall_after) == wanted_status
        ]

    def _stall_after(self) -> timedelta:
        return timedelta(minutes=self.context.config.stall_after_minutes)

    async def get_resource(self, request: web.Request) -> web.Response:
        kind, name = self._kind_and_name(request)
        revision = await self.store.revision()
        resource = await self.store.get(kind, name)
        if resource is None:
            raise ApiError(404, f"no {kind} named {name!r}")
        return _json(_resource_view(resource), revision=revision)

    async def create_resource(self, request: web.Request) -> web.Response:
        kind = COLLECTIONS[request.match_info["collection"]]
        body = _object(await self._read_json(request, self.max_body_bytes), "body")
        _only(body, "body", ("name", "spec"))
        name = body.get("name")
        if not isinstance(name, str):
            raise ValidationError("name", "is required and must be a string")
        spec = _object(body.get("spec"), "spec")

        def compute(snapshot: Snapshot) -> list[Change]:
            if snapshot.get(kind, name) is not None:
                raise ApiError(409, f"{kind} {name!r} exists; use PUT to replace it")
            wanted = _restore_secrets(kind, name, spec, None)
            normalized = self.secret_key.normalize(kind, name, wanted, None, hash_passwords=True)
            return _checked(snapshot, [Change("create", kind, name, normalized)])

        commit = await self._commit(request, compute)
        response = await self._resource_response(kind, name, commit.revision, status=201)
        response.headers["Location"] = f"{API}/{request.match_info['collection']}/{name}"
        return response

    async def put_resource(self, request: web.Request) -> web.Response:
        kind, name = self._kind_and_name(request)
        body = _object(await self._read_json(request, self.max_body_bytes), "body")
        _only(body, "body", ("spec",))
        spec = _object(body.get("spec"), "spec")

        def compute(snapshot: Snapshot) -> list[Change]:
            current = snapshot.get(kind, name)
            wanted = _restore_secrets(kind, name, spec, current)
            normalized = self.secret_key.normalize(kind, name, wanted, current, hash_passwords=True)
            if current is None:
                return _checked(snapshot, [Change("create", kind, name, normalized)])
            if dict(current) == normalized:
                return []
            return _checked(snapshot, [Change("update", kind, name, normalized, current)])

        commit = await self._commit(request, compute)
        created = any(change.action == "create" for change in commit.changes)
        return await self._resource_response(
            kind, name, commit.revision, status=201 if created else 200
        )

    async def delete_resource(self, request: web.Request) -> web.Response:
        kind, name = self._kind_and_name(request)

        def compute(snapshot: Snapshot) -> list[Change]:
            current = snapshot.get(kind, name)
            if current is None:
                raise ApiError(404, f"no {kind} named {name!r}")
            changes = [Change("delete", kind, name, None, current)]
            try:
                check_references(apply_changes(snapshot.state, changes))
            except ValidationError as exc:
                raise ApiError(
                    409, f"{kind} {name!r} is still in use: {exc.field}", field=exc.field
                ) from None
            return changes

        commit = await self._commit(request, compute)
        return web.Response(status=204, headers=_etag(commit.revision))

    async def _resource_response(
        self, kind: str, name: str, revision: int, *, status: int
    ) -> web.Response:
        resource = await self.store.get(kind, name)
        if resource is None:  # deleted by another instance in the meantime
            raise ApiError(409, f"{kind} {name!r} was deleted concurrently")
        return _json(_resource_view(resource), status=status, revision=revision)

    @staticmethod
    def _kind_and_name(request: web.Request) -> tuple[str, str]:
        return COLLECTIONS[request.match_info["collection"]], request.match_info["name"]

    # ---- device extras

    async def put_voucher(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]
        if request.content_type not in VOUCHER_TYPES:
            raise ApiError(415, f"send the signed voucher (DER) as {' or '.join(VOUCHER_TYPES)}")
        der = await _read_body(request, self.max_body_bytes)
        if not der:
            raise ValidationError(f"{DEVICE}[{serial}].voucher", "the body is empty")
        encoded = base64.b64encode(der).decode()

        def compute(snapshot: Snapshot) -> list[Change]:
            current = self._device(snapshot, serial)
            wanted = {**public_fields(current), "voucher": encoded}
            normalized = self.secret_key.normalize(
                DEVICE, serial, wanted, current, hash_passwords=True
            )
            if dict(current) == normalized:
                return []
            return _checked(snapshot, [Change("update", DEVICE, serial, normalized, current)])

        commit = await self._commit(request, compute)
        return await self._resource_response(DEVICE, serial, commit.revision, status=200)

    async def delete_voucher(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]

        def compute(snapshot: Snapshot) -> list[Change]:
            current = self._device(snapshot, serial)
            if current.get("voucher") is None:
                return []
            return [Change("update", DEVICE, serial, {**current, "voucher": None}, current)]

        commit = await self._commit(request, compute)
        return web.Response(status=204, headers=_etag(commit.revision))

    async def device_status(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]
        self._device(await self._fresh_snapshot(), serial)
        # The latest report decides status and attempt number; the history is never read.
        stored = await self.store.report_summary(serial)
        latest = [_stored(stored.latest)] if stored is not None else []
        summary = summarize(latest, utc_now(), self._stall_after())
        return web.json_response(
            {
                "serial": serial,
                "status": summary.status.value,
                "attempts": summary.attempts,
                "last_report": _report_view(stored.latest) if stored is not None else None,
                "reports": stored.report_count if stored is not None else 0,
                "report_bytes": stored.report_bytes if stored is not None else 0,
            }
        )

    async def device_progress(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]
        limit = _int_query(
            request, "limit", default=DEFAULT_PROGRESS_LIMIT, maximum=MAX_PROGRESS_PAGE
        )
        before = _int_query(request, "before", default=None)
        self._device(await self._fresh_snapshot(), serial)
        # One more than asked tells whether an older page exists.
        records = await self.store.reports(serial, limit=limit + 1, before_id=before)
        older = len(records) > limit
        records = records[-limit:]
        # group_by_attempt keeps the order, so the records can be handed out alongside.
        in_order = iter(records)
        attempts = [
            {"attempt": group[0].attempt, "reports": [_report_view(next(in_order)) for _ in group]}
            for group in group_by_attempt([_stored(record) for record in records])
        ]
        return web.json_response(
            {
                "serial": serial,
                "attempts": attempts,
                "next_before": records[0].id if older else None,
            }
        )

    async def fleet_status(self, _request: web.Request) -> web.Response:
        serials = [device.name for device in await self.store.list(DEVICE)]
        latest = await self.store.latest_reports()
        stall_after = self._stall_after()
        counts = dict.fromkeys(STATUSES, 0)
        stalled: list[dict[str, Any]] = []
        errors: list[ProgressRecord] = []
        for serial in serials:
            report = latest.get(serial)
            derived = _status(report, stall_after)
            counts[derived] += 1
            if report is not None and derived == DeviceStatus.STALLED.value:
                stalled.append({"serial": serial, "last_report": _report_view(report)})
            elif report is not None and derived == DeviceStatus.FAILED.value:
                errors.append(report)
        errors.sort(key=lambda report: report.received_at, reverse=True)
        return web.json_response(
            {
                "devices": len(serials),
                "counts": counts,
                "stalled": stalled,
                "recent_errors": [_report_view(report) for report in errors[:RECENT_ERRORS]],
            }
        )

    @staticmethod
    def _device(snapshot: Snapshot, serial: str) -> Mapping[str, Any]:
        device = snapshot.device(serial)
        if device is None:
            raise ApiError(404, f"no device with serial number {serial!r}")
        return device

    # ---- bulk desired state

    async def get_state(self, _request: web.Request) -> web.Response:
        snapshot = await self._fresh_snapshot()
        resources = {
            kind: {
                name: public_view(kind, spec)
                for name, spec in sorted(snapshot.state.get(kind, {}).items())
            }
            for kind in KINDS
        }
        return _json({"revision": snapshot.revision, "resources": resources}, snapshot.revision)

    async def post_state(self, request: web.Request) -> web.Response:
        dry_run = _bool_query(request, "dry_run")
        change_view = _PLAN_VIEWS.get(request.query.get("plan", "full"))
        if change_view is None:
            raise ApiError(400, f"must be one of {', '.join(_PLAN_VIEWS)}", field="plan")
        body = _object(await self._read_json(request, self.max_bulk_bytes), "body")
        _only(body, "body", ("resources", "prune", "kinds"))
        resources = _desired_resources(body.get("resources"))
        prune = body.get("prune", False)
        if not isinstance(prune, bool):
            raise ValidationError("prune", "must be true or false")
        kinds = _kinds_scope(body["kinds"], resources) if "kinds" in body else None

        def compute(snapshot: Snapshot) -> list[Change]:
            # A dry run (allowed to read-only tokens) never hashes a password.
            normalizer = _Normalizer(self.secret_key, self.vouchers, hash_passwords=not dry_run)
            desired = {
                kind: normalizer.desired(kind, specs, snapshot.state.get(kind, {}))
                for kind, specs in resources.items()
            }
            changes = plan(desired, snapshot.state, prune=prune, kinds=kinds)
            return _checked(snapshot, changes, pins=normalizer.pins)

        if dry_run:
            snapshot = await self._fresh_snapshot()
            changes = await asyncio.to_thread(compute, snapshot)
            _expected_revision(request, snapshot.revision)
            commit = _Commit(snapshot.revision, changes)
        else:
            commit = await self._commit(request, compute)
        body_out = {
            "revision": commit.revision,
            "dry_run": dry_run,
            "changes": [change_view(change) for change in commit.changes],
        }
        return _json(body_out, commit.revision)

    # ---- audit and tokens

    async def audit(self, request: web.Request) -> web.Response:
        limit = _int_query(request, "limit", default=100, maximum=MAX_AUDIT_LIMIT)
        after_id = _int_query(request, "after_id", default=None, minimum=0)
        entries = await self.store.audit(limit=limit, after_id=after_id)
        return web.json_response(
            {
                "entries": [
                    {
                        "id": entry.id,
                        "at": _time(entry.at),
                        "actor": entry.actor,
                        "action": entry.action,
                        "kind": entry.kind,
                        "name": entry.name,
                        "detail": dict(entry.detail),
                    }
                    for entry in entries
                ]
            }
        )

    async def prune_audit(self, request: web.Request) -> web.Response:
        dry_run = _bool_query(request, "dry_run")
        days = _days_query(request, "older_than_days")
        if days is None:
            days = self.context.config.audit_retention_days
            if not days:
                raise ApiError(
                    400,
                    "give older_than_days: this server keeps audit entries forever "
                    "(audit_retention_days is 0)",
                    field="older_than_days",
                )
        before = utc_now() - timedelta(days=days)
        actor = request[_CALLER].name
        entries = await self.store.prune_audit(
            before, actor=None if dry_run else actor, dry_run=dry_run
        )
        if not dry_run:
            LOG.info(
                "audit entries pruned",
                extra={"entries": entries, "before": _time(before), "actor": actor},
            )
        return web.json_response({"dry_run": dry_run, "before": _time(before), "entries": entries})

    async def list_tokens(self, _request: web.Request) -> web.Response:
        tokens = await self.store.tokens()
        return web.json_response({"tokens": [_token_view(token) for token in tokens]})

    async def create_token(self, request: web.Request) -> web.Response:
        body = _object(await self._read_json(request, self.max_body_bytes), "body")
        _only(body, "body", ("name", "role"))
        name, role = body.get("name"), body.get("role", ADMIN)
        if not isinstance(name, str) or not TOKEN_NAME_PATTERN.fullmatch(name):
            raise ValidationError("name", "must be 1-64 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise ValidationError("role", f"must be one of {', '.join(ROLES)}")
        token, record = new_token_record(name, role)
        try:
            await self.store.add_token(record, actor=request[_CALLER].name)
        except ConflictError:
            raise ApiError(409, f"a token named {name!r} exists", field="name") from None
        LOG.info("API token %r (%s) created by %r", name, role, request[_CALLER].name)
        return web.json_response({**_token_view(record), "token": token}, status=201)

    async def delete_token(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        # The store refuses the last admin token (409) within the delete's own transaction: a
        # check made here first would race with another instance deleting the other one.
        deleted = await self.store.delete_token(
            name, actor=request[_CALLER].name, keep_one_of_role=ADMIN
        )
        if not deleted:
            raise ApiError(404, f"no token named {name!r}")
        LOG.info("API token %r deleted by %r", name, request[_CALLER].name)
        return web.Response(status=204)

    # ---- plumbing

    async def _fresh_snapshot(self) -> Snapshot:
        """The snapshot at the store's current revision (admin reads must not lag)."""
        return await self.context.poll()

    async def _commit(
        self, request: web.Request, compute: Callable[[Snapshot], list[Change]]
    ) -> _Commit:
        """Compute changes on the current state and store them atomically.

        `compute` runs in a worker thread (normalising specs can be CPU-heavy) and may raise
        to refuse the write; invalid input is reported before a stale If-Match. A revision
        race with another server instance recomputes on the new state, unless the client
        pinned the revision with If-Match (412 then).
        """
        actor = request[_CALLER].name
        async with self.write_lock:
            for _attempt in range(_COMMIT_ATTEMPTS):
                snapshot = await self._fresh_snapshot()
                changes = await asyncio.to_thread(compute, snapshot)
                pinned = _expected_revision(request, snapshot.revision)
                if not changes:
                    return _Commit(snapshot.revision, changes)
                try:
                    revision = await self.store.apply(
                        changes,
                        actor=actor,
                        expected_revision=snapshot.revision,
                        audit_details=[_audit_detail(change) for change in changes],
                    )
                except ConflictError:
                    current = await self.store.revision()
                    if current == snapshot.revision:
                        raise
                    if pinned is not None:
                        _expected_revision(request, current)
                    continue
                await self.context.refresh(revision)
                return _Commit(revision, changes)
        raise ApiError(409, "the state kept changing during this write; retry")

    async def _read_json(self, request: web.Request, limit: int) -> Any:
        if request.content_type != JSON_TYPE:
            raise ApiError(415, f"send the body as {JSON_TYPE}")
        raw = await _read_body(request, limit)
        # Off the event loop: a bulk body of tens of MiB takes long enough to parse that every
        # device request would wait for it.
        return await asyncio.to_thread(_decode_json, raw)


def _decode_json(raw: bytes) -> Any:
    """The JSON document `raw` holds; ApiError 400 if it is not valid JSON."""
    try:
        # Decoded as json.loads decodes bytes, so that the text can be checked below.
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        document = json.loads(
            text,
            object_pairs_hook=partial(strict_json.unique_members, "body"),
            parse_constant=_reject_constant,
        )
        # Lone surrogates (\ud800) parse but cannot be encoded: refuse them here. Only
        # non-ASCII text or a \uD... escape can hold one; a bulk body of tens of MiB of
        # plain ASCII is spared a second pass.
        if not text.isascii() or "\\ud" in text or "\\uD" in text:
            json.dumps(document, ensure_ascii=False).encode()
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc.msg} at {exc.pos}") from None
    except ValidationError as exc:  # a repeated member: which value was meant is unknown
        raise ApiError(400, f"the body is not valid JSON: {exc.message}") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON (UTF-8, no NaN)") from None
    return document


def _reads_only(request: web.Request) -> bool:
    """GETs, and dry runs of the bulk endpoint: `sztpctl diff` needs no write permission."""
    if request.method in _READ_METHODS:
        return True
    return (
        request.method == "POST"
        and request.path == "/api/v1/state"
        and request.query.get("dry_run") == "true"
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    too_large = ApiError(413, f"the body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(field, "must be an object")
    return value


def _only(body: Mapping[str, Any], field: str, allowed: Sequence[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationError(unknown[0], f"unknown field in {field}")


@overload
def _int_query(
    request: web.Request, name: str, *, default: int, minimum: int = 1, maximum: int = 2**62
) -> int: ...


@overload
def _int_query(
    request: web.Request, name: str, *, default: None, minimum: int = 1, maximum: int = 2**62
) -> int | None: ...


def _int_query(
    request: web.Request, name: str, *, default: int | None, minimum: int = 1, maximum: int = 2**62
) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ApiError(400, "must be a non-negative integer", field=name)
    value = int(text)
    if not minimum <= value <= maximum:
        raise ApiError(400, f"must be between {minimum} and {maximum}", field=name)
    return value


def _days_query(request: web.Request, name: str) -> float | None:
    """A positive number of days (fractions allowed), or None when not given."""
    text = request.query.get(name)
    if text is None:
        return None
    try:
        days = float(text)
    except ValueError:
        raise ApiError(400, "must be a number of days", field=name) from None
    if not 0 < days <= AUDIT_MAX_AGE_DAYS:
        raise ApiError(
            400, f"must be more than 0 and at most {AUDIT_MAX_AGE_DAYS} days", field=name
        )
    return days


def _bool_query(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false")
    if text not in ("true", "false"):
        raise ApiError(400, "must be true or false", field=name)
    return text == "true"


def _expected_revision(request: web.Request, current: int) -> int | None:
    """The revision If-Match pins (None without one); 412 when it is not the current one."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    tags = {tag.strip() for tag in header.split(",")}
    if "*" in tags:
        return None
    if f'"{current}"' in tags:
        return current
    raise ApiError(
        412,
        f"the state is at revision {current}, not the one If-Match names",
        headers=_etag(current),
    )


def _restore_secrets(
    kind: str, name: str, spec: Mapping[str, Any], current: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """Replace a secret field's HIDDEN marker with the stored secret."""
    field = SECRET_FIELDS.get(kind)
    if field is None or spec.get(field) != HIDDEN:
        return spec
    stored = (current or {}).get(field)
    if stored is None:
        raise ValidationError(
            f"{kind}[{name}].{field}", f"{HIDDEN} keeps the stored value, but none is stored"
        )
    return {**spec, field: stored}


def _desired_resources(value: Any) -> dict[str, dict[str, Any]]:
    resources = _object(value, "resources")
    for kind, specs in resources.items():
        if kind not in KINDS:
            raise ValidationError(f"resources.{kind}", f"unknown kind; use {', '.join(KINDS)}")
        _object(specs, f"resources.{kind}")
    return resources


def _kinds_scope(value: Any, resources: Mapping[str, Any]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
        raise ValidationError("kinds", "must be a list of kinds")
    for kind in value:
        if kind not in KINDS:
            raise ValidationError("kinds", f"{kind!r} is not one of {', '.join(KINDS)}")
    for kind in resources:
        if kind not in value:
            raise ValidationError(f"resources.{kind}", "is outside the 'kinds' scope")
    return value


@dataclass(frozen=True)
class _Normalizer:
    """Canonical desired specs for the bulk endpoint, their secrets in stored form."""

    secret_key: SecretKey
    vouchers: VoucherChecker
    hash_passwords: bool
    # The pinned-domain-cert (DER) of each voucher checked in a worker process, by its text:
    # the owner checks of `_checked` read these rather than parse the vouchers again.
    pins: dict[str, bytes] = dataclass_field(default_factory=dict)

    def desired(
        self, kind: str, specs: Mapping[str, Any], stored: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """The specs of one kind, cheaply where the stored state vouches for them.

        A spec equal to the stored (canonical) spec is canonical already, also when it leaves
        out the fields the stored spec has empty (normalising reads a missing field as None or
        []), as a fleet file does; a device voucher equal to the stored one was verified for
        this serial when it was stored; a device password whose check value matches the
        stored one is the stored password: none is checked or hashed again, so a no-op
        re-apply of 10,000 devices with vouchers and passwords stays fast.
        """
        checked = self.vouchers.check(specs, stored) if kind == DEVICE else {}
        self.pins.update(checked.values())  # (text, pinned-domain-cert) pairs
        desired: dict[str, Mapping[str, Any]] = {}
        for name, spec in specs.items():
            current = stored.get(name)
            if not isinstance(spec, dict):
                raise ValidationError(f"{kind}[{name}]", "must be an object")
            wanted = _restore_secrets(kind, name, spec, current)
            if kind == DEVICE and current is not None:
                wanted = self.secret_key.recognise_password(name, wanted, current)
            if current is not None and _same_spec(wanted, public_fields(current)):
                desired[name] = current
            elif kind == DEVICE and current is not None and _same_voucher(wanted, current):
                normalized = self._normalize(kind, name, {**wanted, "voucher": None}, current)
                desired[name] = {**normalized, "voucher": current["voucher"]}
            elif name in checked:
                normalized = self._normalize(kind, name, {**wanted, "voucher": None}, current)
                desired[name] = {**normalized, "voucher": checked[name].text}
            else:
                desired[name] = self._normalize(kind, name, wanted, current)
        return desired

    def _normalize(
        self, kind: str, name: str, wanted: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return self.secret_key.normalize(
            kind, name, wanted, current, hash_passwords=self.hash_passwords
        )


class RefusalLog:
    """Logs refused admin API requests (no token, unknown token) with the peer's address,
    never what was presented, at most `burst` lines per `window` seconds: a client guessing
    tokens cannot flood the log, and the first line of the next window says how many
    refusals went unlogged."""

    def __init__(
        self,
        burst: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._window_start: float | None = None
        self._logged = 0
        self._unlogged = 0

    def log(self, remote: str | None, reason: str) -> None:
        now = self._clock()
        if self._window_start is None or now - self._window_start >= self.window:
            self._window_start = now
            self._logged = 0
        if self._logged >= self.burst:
            self._unlogged += 1
            return
        self._logged += 1
        LOG.warning(
            "admin API request refused",
            extra={"remote": remote, "reason": reason, "unlogged_refusals": self._unlogged},
        )
        self._unlogged = 0


class VoucherChecker:
    """Checks the vouchers of a large bulk apply in worker processes, one per core.

    Each new voucher costs about 0.15 ms (DER walk, the MASA's signature, the JSON), half
    of it the signature: 10,000 of them would hold one core for 1.5 s. Small batches
    stay in this process. (Having this process take a share too, while the pool starts or
    by cancelling chunks no worker has taken yet, measured no faster on 2 busy cores; the
    pool takes about 0.3 s to start.)
    """

    THRESHOLD = 500

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def check(
        self, specs: Mapping[str, Any], stored: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, StorableVoucher]:
        """The new vouchers, checked, by device name; ValidationError on the first (by name)
        that cannot be stored."""
        pending = sorted(
            (name, spec["voucher"])
            for name, spec in specs.items()
            if isinstance(spec, dict)
            and spec.get("voucher") is not None
            and spec.get("voucher") != (stored.get(name) or {}).get("voucher")
        )
        if len(pending) < self.THRESHOLD:
            return {}
        workers = os.cpu_count() or 1
        chunk = -(-len(pending) // (workers * 4))
        results = self._executor(workers).map(
            checked_voucher, *zip(*pending, strict=True), chunksize=chunk
        )
        accepted: dict[str, StorableVoucher] = {}
        for (name, _), (voucher, problem) in zip(pending, results, strict=True):
            if voucher is None:
                raise ValidationError(f"{DEVICE}[{name}].voucher", problem or "not accepted")
            accepted[name] = voucher
        return accepted

    def _executor(self, workers: int) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers start from a clean process, not a fork of this threaded one.
            context = multiprocessing.get_context("forkserver")
            # Workers fork from a server that has the voucher code (cryptography, asn1crypto)
            # imported already, rather than each importing it for its first voucher.
            context.set_forkserver_preload(["sztpctl.state.resources", "sztpctl.protocol.voucher"])
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def _same_spec(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """`wanted` is the canonical `current`, written in full or without its empty fields."""
    return dict(current) == wanted or wanted == {
        field: value for field, value in current.items() if value not in (None, [])
    }


def _same_voucher(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    return wanted.get("voucher") is not None and wanted.get("voucher") == current.get("voucher")


def _checked(
    snapshot: Snapshot, changes: list[Change], *, pins: Mapping[str, bytes] | None = None
) -> list[Change]:
    deleted = {(change.kind, change.name) for change in changes if change.action == "delete"}
    after = apply_changes(snapshot.state, changes)
    check_references(after, deleted=deleted)
    check_vouchers_authorise_owners(after, before=snapshot.state, pins=pins)
    return changes


def _audit_detail(change: Change) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    if change.before is not None:
        detail["before"] = public_view(change.kind, change.before)
    if change.spec is not None:
        detail["after"] = public_view(change.kind, change.spec)
    return detail


def _change_view(change: Change) -> dict[str, Any]:
    return {
        "action": change.action,
        "kind": change.kind,
        "name": change.name,
        "before": None if change.before is None else public_view(change.kind, change.before),
        "after": None if change.spec is None else public_view(change.kind, change.spec),
    }


def _change_summary(change: Change) -> dict[str, Any]:
    """A change without its bodies: the fields it sets, changes or removes, in spec order.

    An update also carries the old and new values of its changed fields alone (secrets
    hidden), so a client can show what changed; a create or delete carries no values. A
    10,000-device plan shrinks from the whole fleet (every voucher) to its names.
    """
    summary: dict[str, Any] = {"action": change.action, "kind": change.kind, "name": change.name}
    if change.action != "update":
        body = change.spec if change.spec is not None else change.before or {}
        summary["fields"] = [
            field for field, value in public_fields(body).items() if value not in (None, [])
        ]
        return summary
    before, after = change.before or {}, change.spec or {}
    shown_before = public_view(change.kind, before)
    shown_after = public_view(change.kind, after)
    fields = [
        field for field in {**shown_before, **shown_after} if before.get(field) != after.get(field)
    ]
    summary["fields"] = fields
    summary["before"] = {field: shown_before.get(field) for field in fields}
    summary["after"] = {field: shown_after.get(field) for field in fields}
    return summary


# `?plan=` of POST /state: full before/after bodies (the default, for the Ansible modules'
# diffs) or a summary (what `sztpctl apply` and `diff` print).
_PLAN_VIEWS: Mapping[str, Callable[[Change], dict[str, Any]]] = {
    "full": _change_view,
    "summary": _change_summary,
}


def _resource_view(resource: StoredResource) -> dict[str, Any]:
    return {
        "name": resource.name,
        "spec": public_view(resource.kind, resource.spec),
        "revision": resource.revision,
        "created_at": _time(resource.created_at),
        "updated_at": _time(resource.updated_at),
    }


def _stored(record: ProgressRecord) -> StoredReport:
    return StoredReport(
        received_at=record.received_at,
        progress_type=record.progress_type,
        message=record.message,
        source_address=record.source_address,
        attempt=record.attempt,
    )


def _status(latest: ProgressRecord | None, stall_after: timedelta) -> str:
    """Derived status from the latest report alone (all that `derive_status` looks at)."""
    reports = [_stored(latest)] if latest is not None else []
    return derive_status(reports, now=utc_now(), stall_after=stall_after).value


def _report_view(record: ProgressRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "serial": record.serial,
        "received_at": _time(record.received_at),
        "progress_type": record.progress_type,
        "message": record.message,
        "source_address": record.source_address,
        "attempt": record.attempt,
        "ssh_host_keys": [
            {"algorithm": algorithm, "key_data": key} for algorithm, key in record.ssh_host_keys
        ],
        "truncated": record.truncated,
    }


def _token_view(token: TokenRecord) -> dict[str, Any]:
    return {"name": token.name, "role": token.role, "created_at": _time(token.created_at)}


def _time(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _etag(revision: int) -> dict[str, str]:
    return {"ETag": f'"{revision}"'}


def _json(data: Any, revision: int, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=_etag(revision))

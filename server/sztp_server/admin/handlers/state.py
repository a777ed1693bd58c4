"""`/api/v1/state`: the whole desired state, read or applied in one request (or as a job,
`/api/v1/jobs/{id}`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sztp.errors import ValidationError
from sztp.state.resources import KINDS, public_view

from ..auth import caller
from ..errors import ApiError
from ..jobs import Jobs, Progress
from ..requests import API, bool_query, json_object, json_with_etag, only_fields, read_json
from ..service import StateService
from ..views import PLAN_VIEWS

# The bulk endpoint carries the whole fleet: 10,000 devices with vouchers is tens of MiB.
DEFAULT_MAX_BULK_BYTES = 64 * 1024 * 1024


class StateHandlers:
    def __init__(self, service: StateService, max_bulk_bytes: int) -> None:
        self.service = service
        self.max_bulk_bytes = max_bulk_bytes
        self.jobs = Jobs()

    async def get_state(self, _request: web.Request) -> web.Response:
        snapshot = await self.service.fresh_snapshot()
        resources = {
            kind: {
                name: public_view(kind, spec)
                for name, spec in sorted(snapshot.state.get(kind, {}).items())
            }
            for kind in KINDS
        }
        return json_with_etag(
            {"revision": snapshot.revision, "resources": resources}, snapshot.revision
        )

    async def post_state(self, request: web.Request) -> web.Response:
        """Plan or apply the desired state; with `Prefer: respond-async`, as a job (202 and its
        URL at once; see jobs.py)."""
        dry_run = bool_query(request, "dry_run")
        change_view = PLAN_VIEWS.get(request.query.get("plan", "full"))
        if change_view is None:
            raise ApiError(400, f"must be one of {', '.join(PLAN_VIEWS)}", field="plan")
        body = json_object(await read_json(request, self.max_bulk_bytes), "body")
        only_fields(body, "body", ("resources", "prune", "kinds"))
        resources = _desired_resources(body.get("resources"))
        prune = body.get("prune", False)
        if not isinstance(prune, bool):
            raise ValidationError("prune", "must be true or false")
        kinds = _kinds_scope(body["kinds"], resources) if "kinds" in body else None
        if_match = request.headers.get("If-Match")
        actor = caller(request).name

        async def work(progress: Progress) -> dict[str, Any]:
            # A dry run (allowed to read-only tokens) never hashes a password.
            compute = self.service.desired_state(
                resources, prune=prune, kinds=kinds, hash_passwords=not dry_run, progress=progress
            )
            if dry_run:
                commit = await self.service.dry_run(compute, if_match=if_match)
            else:
                commit = await self.service.commit(compute, actor=actor, if_match=if_match)
            return {
                "revision": commit.revision,
                "dry_run": dry_run,
                "changes": [change_view(change) for change in commit.changes],
            }

        preferences = _preferences(request)
        if "respond-async" not in preferences:
            answer = await work(Progress())
            return json_with_etag(answer, answer["revision"])
        job = self.jobs.start(actor, work)
        if not await self.jobs.settle(job, _seconds(preferences.get("wait"))):
            return web.json_response(
                job.view(), status=202, headers={"Location": f"{API}/jobs/{job.id}"}
            )
        if job.exception is not None:
            raise job.exception
        if job.result is None:  # cancelled: the server is stopping
            raise ApiError(503, "the server stopped during this write; retry it")
        return json_with_etag(job.result, job.result["revision"])

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise ApiError(404, "no such job (or it ended over an hour ago)")
        return web.json_response(job.view())


def _preferences(request: web.Request) -> dict[str, str]:
    """RFC 7240 preferences, by lowercase name: `respond-async, wait=10` gives
    {"respond-async": "", "wait": "10"} (parameters after `;` are not used here)."""
    found: dict[str, str] = {}
    for header in request.headers.getall("Prefer", []):
        for preference in header.split(","):
            name, _, value = preference.split(";")[0].partition("=")
            found.setdefault(name.strip().lower(), value.strip().strip('"'))
    return found


def _seconds(text: str | None) -> float | None:
    """A `wait` preference's seconds; anything else is no wish (RFC 7240 §4.3)."""
    return float(text) if text is not None and text.isdigit() else None


def _desired_resources(value: Any) -> dict[str, dict[str, Any]]:
    resources = json_object(value, "resources")
    for kind, specs in resources.items():
        if kind not in KINDS:
            raise ValidationError(f"resources.{kind}", f"unknown kind; use {', '.join(KINDS)}")
        json_object(specs, f"resources.{kind}")
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

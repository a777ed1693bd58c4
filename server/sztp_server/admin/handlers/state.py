"""`/api/v1/state`: the whole desired state, read or applied in one request (or as a job,
`/api/v1/jobs/{id}`)."""

from __future__ import annotations

from aiohttp import web

from sztp.state.resources import KINDS, public_view

from ..auth import caller
from ..errors import ApiError
from ..jobs import Jobs, Progress
from ..requests import API, JSON_TYPE, bool_query, json_with_etag, read_body, require_json
from ..service import StateService
from ..views import PLAN_VIEWS, etag
from ..writes import ApplyState, JsonAnswer

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
        plan_view = request.query.get("plan", "full")
        if plan_view not in PLAN_VIEWS:
            raise ApiError(400, f"must be one of {', '.join(PLAN_VIEWS)}", field="plan")
        require_json(request)
        # Read here, parsed and checked in the writer process with the rest of the write.
        write = ApplyState(
            await read_body(request, self.max_bulk_bytes), plan_view, dry_run=dry_run
        )
        if_match = request.headers.get("If-Match")
        actor = caller(request).name

        async def work(progress: Progress) -> JsonAnswer:
            return await self.service.apply_state(
                write, actor=actor, if_match=if_match, progress=progress
            )

        preferences = _preferences(request)
        if "respond-async" not in preferences:
            return _answer(await work(Progress()))
        job = self.jobs.start(actor, work)
        if not await self.jobs.settle(job, _seconds(preferences.get("wait"))):
            return web.json_response(
                job.view(), status=202, headers={"Location": f"{API}/jobs/{job.id}"}
            )
        if job.exception is not None:
            raise job.exception
        if job.result is None:  # cancelled: the server is stopping
            raise ApiError(503, "the server stopped during this write; retry it")
        return _answer(job.result)

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise ApiError(404, "no such job (or it ended over an hour ago)")
        return web.Response(body=job.document(), content_type=JSON_TYPE)


def _answer(answer: JsonAnswer) -> web.Response:
    return web.Response(body=answer.body, content_type=JSON_TYPE, headers=etag(answer.revision))


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

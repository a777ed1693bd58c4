"""`/api/v1/state`: the whole desired state, read or applied in one request (or as a job,
`/api/v1/jobs/{id}`)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

from aiohttp import web

from sztp.state.resources import KINDS, public_view

from ...context import Snapshot
from ..auth import caller
from ..errors import ApiError
from ..jobs import Jobs, Progress
from ..requests import API, JSON_TYPE, bool_query, read_body, require_json
from ..service import StateService
from ..views import PLAN_VIEWS, etag
from ..writes import ApplyState, JsonAnswer

LOG = logging.getLogger(__name__)
# The bulk endpoint carries the whole fleet: 10,000 devices with vouchers is tens of MiB.
DEFAULT_MAX_BULK_BYTES = 64 * 1024 * 1024
# The state streams out encoded a slice at a time, the event loop free between slices: at most
# STREAM_SLICE resources and, after the first, about STREAM_SLICE_BYTES of JSON (specs range
# from a device's few fields to profiles of megabytes). Names are sorted in runs of SORT_RUN.
STREAM_SLICE = 250
STREAM_SLICE_BYTES = 64 * 1024
SORT_RUN = 65536


class StateHandlers:
    def __init__(self, service: StateService, max_bulk_bytes: int) -> None:
        self.service = service
        self.max_bulk_bytes = max_bulk_bytes
        self.jobs = Jobs()

    async def get_state(self, request: web.Request) -> web.StreamResponse:
        """`{"revision", "resources": {kind: {name: spec}}}` of one snapshot, streamed: the
        kinds in KINDS order (devices last), names in order, secrets hidden. A million devices
        are tens of MiB of JSON, so the document is encoded a slice at a time, yielding
        to the event loop between slices, and never held whole."""
        snapshot = await self.service.fresh_snapshot()
        response = web.StreamResponse(
            headers={**etag(snapshot.revision), "Content-Type": JSON_TYPE}
        )
        await response.prepare(request)
        if request.method == "HEAD":  # the ETag alone: the revision, without the state
            await response.write_eof()
            return response
        try:
            async with aclosing(_state_document(snapshot)) as pieces:
                async for text in pieces:
                    await response.write(text.encode())
            await response.write_eof()
        except ConnectionError:
            # The client went away: nothing to clean up (the snapshot is shared and immutable).
            pass
        except Exception:
            # The status is sent: the client can only tell by a document that breaks off.
            LOG.exception("admin API %s %s failed while streaming", request.method, request.path)
            if request.transport is not None:
                request.transport.close()
        return response

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
            answer = await work(Progress())
            return _answer(answer.revision, answer.body)
        job = self.jobs.start(actor, work)
        if not await self.jobs.settle(job, _seconds(preferences.get("wait"))):
            return web.json_response(
                job.view(), status=202, headers={"Location": f"{API}/jobs/{job.id}"}
            )
        if job.exception is not None:
            raise job.exception
        if job.result is None:  # cancelled: the server is stopping
            raise ApiError(503, "the server stopped during this write; retry it")
        return _answer(job.result.revision, await job.result_body())

    async def get_job(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise ApiError(404, "no such job (or it ended over an hour ago)")
        wait = _seconds(_preferences(request).get("wait"))
        if wait is not None:
            await self.jobs.ended(job, wait)
        return web.Response(body=await job.document(), content_type=JSON_TYPE)


async def _state_document(snapshot: Snapshot) -> AsyncGenerator[str]:
    """The JSON text of `snapshot`'s state, a slice at a time."""
    yield f'{{"revision":{snapshot.revision},"resources":{{'
    for kind_index, kind in enumerate(KINDS):
        specs = snapshot.state.get(kind, {})
        yield f"{',' if kind_index else ''}{json.dumps(kind)}:{{"
        names = iter(await _sorted_in_runs(specs))
        separator = ""
        size = 1  # a first resource alone tells the size of the next slices
        while batch := list(itertools.islice(names, size)):
            members = json.dumps({name: public_view(kind, specs[name]) for name in batch})
            yield separator + members[1:-1]
            separator = ","
            size = min(STREAM_SLICE, max(1, STREAM_SLICE_BYTES * len(batch) // len(members)))
            await asyncio.sleep(0)
        yield "}"
    yield "}}"


async def _sorted_in_runs(names: Iterable[str]) -> Iterable[str]:
    """`names` in order, sorted in runs of SORT_RUN between turns of the event loop (a sort
    holds the interpreter, in a thread too) and merged lazily; runs that are already in order
    (the store loads the state sorted) are only chained."""
    remaining = iter(names)
    runs: list[list[str]] = []
    while run := sorted(itertools.islice(remaining, SORT_RUN)):
        runs.append(run)
        await asyncio.sleep(0)
    if all(earlier[-1] < later[0] for earlier, later in itertools.pairwise(runs)):
        return itertools.chain.from_iterable(runs)
    return heapq.merge(*runs)


def _answer(revision: int, body: bytes) -> web.Response:
    return web.Response(body=body, content_type=JSON_TYPE, headers=etag(revision))


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

"""Long admin writes as jobs.

A bulk apply can outlast any sensible HTTP timeout (every new device password is a
deliberately slow scrypt hash), and a client that gives up on its request must not report a
failure for a write that then lands. With `Prefer: respond-async` (RFC 7240) the server
answers `POST /api/v1/state` with 202 at once and the job's URL; the write goes on whatever
happens to the client, and `GET /api/v1/jobs/{id}` says how far it got and how it ended.

Jobs live in the memory of the instance that accepted them (their URL names it) and are
readable for JOB_TTL_SECONDS after they end (the latest MAX_ENDED_JOBS of them, a large
result compressed); at most MAX_RUNNING_JOBS run at once.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from .errors import ApiError, error_body, error_of
from .writes import JsonAnswer

JOB_TTL_SECONDS = 3600.0
MAX_RUNNING_JOBS = 8
# Ended jobs kept at most (the oldest go first): a result can hold a whole fleet's plan.
MAX_ENDED_JOBS = 32
# A job that ends this soon is answered as a plain request would be (RFC 7240 lets the server
# ignore the preference): most writes are quick, and a 202 would cost the client a round trip.
ANSWER_WITHIN_SECONDS = 5.0
# A result at least this large is kept compressed once its job ends: a million devices' plan
# is about 90 MB of JSON, readable for an hour in the memory of the process serving the API.
COMPRESS_RESULT_BYTES = 1024 * 1024


@dataclass
class Progress:
    """How many of the write's specs are checked (copied from the writer process while the
    job waits for it, read by views)."""

    done: int = 0
    total: int = 0


Work = Callable[[Progress], Awaitable[JsonAnswer]]


@dataclass
class Job:
    id: str
    actor: str
    progress: Progress = field(default_factory=Progress)
    result: JsonAnswer | None = None
    error: dict[str, Any] | None = None
    status_code: int | None = None
    ended_at: float | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    exception: Exception | None = field(default=None, repr=False)
    # Whether `result.body` is kept compressed (zlib; see COMPRESS_RESULT_BYTES).
    compressed: bool = field(default=False, repr=False)

    @property
    def state(self) -> Literal["running", "succeeded", "failed"]:
        if self.ended_at is None:
            return "running"
        return "failed" if self.error is not None else "succeeded"

    def view(self) -> dict[str, Any]:
        """The job without its result (what a 202 answers)."""
        return {
            "id": self.id,
            "state": self.state,
            "actor": self.actor,
            "progress": {"done": self.progress.done, "total": self.progress.total},
            "status": self.status_code,
            "error": self.error,
            "result": None,
        }

    async def result_body(self) -> bytes:
        """The write's answer as it was encoded (b"" before the job succeeds); a compressed
        one is expanded in a thread, off the event loop."""
        if self.result is None:
            return b""
        body = self.result.body
        return await asyncio.to_thread(zlib.decompress, body) if self.compressed else body

    async def document(self) -> bytes:
        """The job as JSON, its result (the write's answer, already encoded) included."""
        view = json.dumps(self.view())
        if self.result is None:
            return view.encode()
        # The view ends with `"result": null}`: the answer takes null's place.
        return view[: -len("null}")].encode() + await self.result_body() + b"}"


class Jobs:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, actor: str, work: Work) -> Job:
        self._forget_old()
        if sum(job.state == "running" for job in self._jobs.values()) >= MAX_RUNNING_JOBS:
            raise ApiError(503, f"{MAX_RUNNING_JOBS} jobs are running already; retry later")
        job = Job(secrets.token_hex(8), actor)
        self._jobs[job.id] = job
        task = asyncio.create_task(self._run(job, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        job.task = task
        return job

    async def settle(self, job: Job, wait: float | None = None) -> bool:
        """Wait up to ANSWER_WITHIN_SECONDS (or the client's shorter `wait`) for `job` to end;
        if it did, it is the caller's to answer and is no longer kept."""
        within = ANSWER_WITHIN_SECONDS if wait is None else min(wait, ANSWER_WITHIN_SECONDS)
        if job.task is not None:
            await asyncio.wait({job.task}, timeout=within)
        if job.state == "running":
            return False
        self._jobs.pop(job.id, None)
        return True

    async def ended(self, job: Job, wait: float) -> None:
        """Return once `job` has ended, or after `wait` seconds (ANSWER_WITHIN_SECONDS at
        most): a client following a job learns at once that it ended, without polling often."""
        if job.task is not None and job.state == "running":
            await asyncio.wait({job.task}, timeout=min(wait, ANSWER_WITHIN_SECONDS))

    def get(self, job_id: str) -> Job | None:
        self._forget_old()
        return self._jobs.get(job_id)

    async def close(self) -> None:
        """Let running jobs end (a write is atomic, but one half-way is the client's loss)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _run(self, job: Job, work: Work) -> None:
        try:
            job.result = await work(job.progress)
            job.status_code = 200
        except asyncio.CancelledError:
            job.error = error_body(503, "the server stopped during this job; retry it")
            job.status_code = 503
            raise
        except Exception as exc:
            job.exception = exc
            error = error_of(exc, f"job {job.id} of {job.actor}")
            job.error = error_body(error.status, error.message, error.field)
            job.status_code = error.status
        finally:
            job.ended_at = self._clock()
        # Once ended, and not as part of the write: being stopped now cannot undo its success.
        if job.result is not None and len(job.result.body) >= COMPRESS_RESULT_BYTES:
            compressed = await asyncio.to_thread(zlib.compress, job.result.body, 1)
            job.result, job.compressed = replace(job.result, body=compressed), True

    def _forget_old(self) -> None:
        now = self._clock()
        ended = sorted(
            (job for job in self._jobs.values() if job.ended_at is not None),
            key=lambda job: job.ended_at or 0.0,
        )
        for index, job in enumerate(ended):
            too_many = len(ended) - index > MAX_ENDED_JOBS
            if too_many or now - (job.ended_at or now) > JOB_TTL_SECONDS:
                del self._jobs[job.id]

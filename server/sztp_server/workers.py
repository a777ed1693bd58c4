"""Device worker processes, as the main process sees them: started, told each new revision,
restarted when one dies, stopped with the server.

A device worker (device_worker.py) serves the device listeners beside the main process, on
sockets of its own bound to the same addresses (SO_REUSEPORT). Each keeps its own snapshot;
the main process tells every worker the revision it now serves, and an admin write is
answered only once every worker serves it too (`caught_up`), so a device reaching any process
sees what an operator just wrote, trust anchors included (the worker's TLS layer learns them
with its snapshot). Workers send their request counts every second; every process's /metrics
shows them all. The rate limits (failed logins, progress reports) are the main process's, in
memory every worker is given as it starts (device_api/shared_buckets.py): one count for the
server, whichever process a connection reaches.

Messages over each worker's pipe are tuples: from the worker `("ready", revision)`,
`("failed", reason)`, `("serving", revision)`, `("metrics", counts)`; to it `("revision", n)`,
`("metrics", counts of every other process)` and `("counts?",)`, which the worker answers
with its counts at once: the main process's /metrics asks before it renders.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from sztp.errors import SztpError

from .children import server_processes
from .config import ServerConfig
from .context import Snapshot
from .device_api import RateLimits
from .device_worker import run_device_worker
from .logs import get_logger
from .metrics import CounterKey, Metrics
from .serving import SHUTDOWN_GRACE_SECONDS

_LOG = get_logger()
# A worker that does not answer within this long has not started (its snapshot load, at a
# million devices, is the slow part).
START_TIMEOUT_SECONDS = 120.0
# How long an admin write waits for the workers to serve its revision before it is answered
# anyway (with a warning logged): a worker stuck in a load must not hold the admin API.
CATCH_UP_TIMEOUT_SECONDS = 30.0
METRICS_INTERVAL_SECONDS = 1.0
GATHER_TIMEOUT_SECONDS = 0.5
# A worker that died is started again after this long, doubled while it keeps dying soon
# after starting, up to the maximum.
RESTART_DELAY_SECONDS = 1.0
MAX_RESTART_DELAY_SECONDS = 30.0
STABLE_AFTER_SECONDS = 60.0


class WorkerError(SztpError):
    """A device worker did not start; the message is its reason."""


@dataclass
class _Worker:
    number: int  # from 1; the main process is the server's first process
    process: BaseProcess
    connection: Connection
    started: float
    ready: asyncio.Future[None]
    serving: int = -1  # the revision it last said it serves
    counts: Counter[CounterKey] = field(default_factory=Counter)
    counts_received: int = 0


class DeviceWorkers:
    """The device workers of this server (`count` of them, numbered from 1)."""

    def __init__(
        self, config: ServerConfig, count: int, metrics: Metrics, limits: RateLimits
    ) -> None:
        self._config = config
        self._count = count
        self._metrics = metrics
        self._limits = limits  # shared: every worker, a restarted one too, counts in them
        self._processes = server_processes()
        self._workers: dict[int, _Worker] = {}
        self._retired: Counter[CounterKey] = Counter()  # counts of workers that ended
        self._revision = -1  # the newest revision this process published
        self._changed = asyncio.Condition()
        self._stopping = False
        self._running = False  # every worker started once: from then on, one that ends is replaced
        self._delays: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start every worker and wait until each serves; WorkerError names the first that
        did not (the others are stopped by `stop`)."""
        for number in range(1, self._count + 1):
            await self._start(number)
        self._running = True
        self._spawn(self._exchange_metrics())

    async def _start(self, number: int) -> None:
        receiving, sending = self._processes.Pipe()
        process = self._processes.Process(
            target=run_device_worker,
            args=(self._config, number, sending, self._limits),
            name=f"sztp-device-worker-{number}",
        )
        # Starting asks the forkserver (which may itself be starting): not on the event loop.
        await asyncio.to_thread(process.start)
        sending.close()
        loop = asyncio.get_running_loop()
        worker = _Worker(number, process, receiving, time.monotonic(), loop.create_future())
        self._workers[number] = worker
        loop.add_reader(receiving.fileno(), self._receive, worker)
        self._spawn(self._supervise(worker))
        try:
            await asyncio.wait_for(asyncio.shield(worker.ready), START_TIMEOUT_SECONDS)
        except TimeoutError:
            raise WorkerError(
                f"device worker {number} did not start within {START_TIMEOUT_SECONDS:g} s"
            ) from None
        _LOG.info("device worker started", extra={"worker": number, "pid": process.pid})

    def publish(self, snapshot: Snapshot) -> None:
        """Tell every worker the revision this process serves now (an on_refresh listener)."""
        self._revision = snapshot.revision
        for worker in self._workers.values():
            self._send(worker, ("revision", snapshot.revision))

    async def caught_up(self, revision: int) -> None:
        """Return once every running worker serves `revision` (or after a warning)."""

        def served() -> bool:
            return all(
                worker.serving >= revision
                for worker in self._workers.values()
                if worker.ready.done() and worker.process.exitcode is None
            )

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(served), CATCH_UP_TIMEOUT_SECONDS)
            except TimeoutError:
                _LOG.warning(
                    "device workers still load an older revision; answering the admin write",
                    extra={"revision": revision},
                )

    async def gather_counts(self) -> None:
        """Ask every running worker for its counts now and wait for them (a worker that does
        not answer within `GATHER_TIMEOUT_SECONDS` is shown with the counts it sent last)."""
        asked = {
            worker.number: worker.counts_received
            for worker in self._workers.values()
            if worker.ready.done() and worker.process.exitcode is None
        }
        for number in asked:
            self._send(self._workers[number], ("counts?",))

        def answered() -> bool:
            return all(
                self._workers[number].counts_received > received
                or self._workers[number].connection.closed
                for number, received in asked.items()
            )

        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(answered), GATHER_TIMEOUT_SECONDS)

    def reload_tls(self) -> None:
        """Forward SIGHUP: every worker reloads its listeners' certificates."""
        for worker in self._workers.values():
            with contextlib.suppress(ProcessLookupError):
                if worker.process.pid is not None and worker.process.exitcode is None:
                    os.kill(worker.process.pid, signal.SIGHUP)

    def terminate(self) -> None:
        """SIGTERM every worker: each stops accepting and finishes the requests it has."""
        self._stopping = True
        for worker in self._workers.values():
            if worker.process.exitcode is None:
                worker.process.terminate()

    async def stop(self) -> None:
        """Stop every worker (`terminate`) and wait for them; one still running after the
        grace period is killed."""
        self.terminate()
        running = list(self._workers.values())
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS + 5
        for worker in running:
            await asyncio.to_thread(worker.process.join, max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                _LOG.warning(
                    "device worker did not stop in time; killed", extra={"worker": worker.number}
                )
                worker.process.kill()
                await asyncio.to_thread(worker.process.join)
        for task in list(self._tasks):
            task.cancel()
        for worker in self._workers.values():
            self._close(worker)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        if worker.connection.closed:
            return
        try:
            worker.connection.send(message)
        except OSError:  # it is ending; its supervisor sees that
            self._close(worker)

    def _close(self, worker: _Worker) -> None:
        if not worker.connection.closed:
            asyncio.get_running_loop().remove_reader(worker.connection.fileno())
            worker.connection.close()

    def _receive(self, worker: _Worker) -> None:
        try:
            while worker.connection.poll():
                self._handle(worker, worker.connection.recv())
        except (EOFError, OSError):
            self._close(worker)

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.serving = message[1]
            if not worker.ready.done():
                worker.ready.set_result(None)
            # A revision published while it started: it loaded the state once, before that.
            if worker.serving < self._revision:
                self._send(worker, ("revision", self._revision))
        elif kind == "failed":
            if not worker.ready.done():
                worker.ready.set_exception(
                    WorkerError(f"device worker {worker.number}: {message[1]}")
                )
        elif kind == "serving":
            worker.serving = max(worker.serving, message[1])
        elif kind == "metrics":
            worker.counts = message[1]
            worker.counts_received += 1
            self._metrics.count_elsewhere(self._others(None))
        self._notify()

    def _notify(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        self._spawn(notify())

    def _others(self, number: int | None) -> Counter[CounterKey]:
        """Every process's counts but worker `number`'s (None: but the main process's)."""
        counts = Counter(self._retired)
        for worker in self._workers.values():
            if worker.number != number:
                counts.update(worker.counts)
        if number is not None:
            counts.update(self._metrics.counts())
        return counts

    async def _exchange_metrics(self) -> None:
        while True:
            await asyncio.sleep(METRICS_INTERVAL_SECONDS)
            for worker in list(self._workers.values()):
                self._send(worker, ("metrics", self._others(worker.number)))

    async def _supervise(self, worker: _Worker) -> None:
        """Wait for the worker to end; unless the server is stopping, start another."""
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[None] = loop.create_future()
        sentinel = worker.process.sentinel
        loop.add_reader(sentinel, _set_once, ended)
        try:
            await ended
        finally:
            loop.remove_reader(sentinel)
        worker.process.join()
        if not worker.connection.closed:
            self._receive(worker)  # what it said last
        self._close(worker)
        if not worker.ready.done():
            worker.ready.set_exception(
                WorkerError(
                    f"device worker {worker.number} ended while starting (exit status "
                    f"{worker.process.exitcode}); the log says why"
                )
            )
        self._retired.update(worker.counts)
        worker.counts = Counter()
        self._notify()  # an admin write waits for it no longer
        if self._stopping or not self._running:
            return
        # Started again at once after a long run; later and later while it keeps dying.
        delay = self._delays.get(worker.number, RESTART_DELAY_SECONDS)
        if time.monotonic() - worker.started > STABLE_AFTER_SECONDS:
            delay = RESTART_DELAY_SECONDS
        self._delays[worker.number] = min(2 * delay, MAX_RESTART_DELAY_SECONDS)
        _LOG.error(
            "device worker ended; starting another",
            extra={
                "worker": worker.number,
                "exit_status": worker.process.exitcode,
                "delay_seconds": delay,
            },
        )
        await asyncio.sleep(delay)
        if self._stopping:
            return
        try:
            await self._start(worker.number)
        except WorkerError as exc:  # its own supervisor starts the next one
            _LOG.error("device worker did not start again", extra={"reason": str(exc)})


def _set_once(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

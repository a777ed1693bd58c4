"""The writer process: every admin write is planned and committed there, one at a time.

A bulk write's Python work (parsing tens of MiB, normalising and planning 10,000 specs,
encoding them and the answer) holds the GIL for seconds and fills the heap the cycle collector
walks; in the process serving devices, that work, not any lock, is what made a device's
request wait during a large apply (bench/RESULTS.md, "Device latency during a 10,000-device
bulk apply"). So the server hands each write (writes.py: plain data) to a process of its own,
started from the forkserver, which opens the same store, keeps its own snapshot of the state
(reloaded only when another writer moved the revision on), commits, and sends back the commit
or the encoded answer. The serving process then reloads its snapshot, as it does for a write
made by another server instance.

A write the writer process dies during (killed, out of memory) answers 503; the process is
started again for the next write. Whether the write landed is then the store's to say (its
revision), as for any interrupted client.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.util import Finalize
from typing import Any, Protocol

from sztp.collector import cyclic_gc_paused

from ..children import exit_with_parent, release_free_memory, server_processes
from ..context import Snapshot, load_snapshot
from ..logs import get_logger
from ..secret_key import SecretKey
from ..store.base import Store
from ..store.errors import ConflictError
from .errors import ApiError
from .views import change_audit_detail, etag
from .vouchers import VoucherChecker
from .writes import Commit, Progress, Write, WriteTools, check_issuers

_LOG = get_logger()
_COMMIT_ATTEMPTS = 3
# How often a waiting write copies the writer's progress into its job.
PROGRESS_INTERVAL_SECONDS = 0.25


class Writer:
    """Runs writes against `store`, keeping a snapshot of the state between them."""

    def __init__(
        self, store: Store, secret_key: SecretKey, progress: Progress, issuers: frozenset[str]
    ) -> None:
        self.store = store
        self.tools = WriteTools(secret_key, VoucherChecker(), progress, issuers)
        self._snapshot: Snapshot | None = None

    def close(self) -> None:
        self.tools.vouchers.close()

    def run(self, write: Write, *, actor: str, if_match: str | None) -> Any:
        """Compute `write`'s changes on the current state and commit them atomically.

        `write` may raise to refuse; invalid input is reported before a stale If-Match. A
        revision race with another server instance recomputes on the new state, unless the
        client pinned the revision with If-Match (412 then).
        """
        with cyclic_gc_paused():
            return self._run(write, actor=actor, if_match=if_match)

    def _run(self, write: Write, *, actor: str, if_match: str | None) -> Any:
        for _attempt in range(_COMMIT_ATTEMPTS):
            snapshot = self.snapshot()
            changes = write.changes(snapshot, self.tools)
            check_issuers(changes, self.tools.issuers)
            pinned = expected_revision(if_match, snapshot.revision)
            if write.dry_run or not changes:
                return write.answer(Commit(snapshot.revision, changes))
            try:
                revision = self.store.apply(
                    changes,
                    actor=actor,
                    expected_revision=snapshot.revision,
                    audit_details=(change_audit_detail(change) for change in changes),
                )
            except ConflictError:
                current = self.store.revision()
                if current == snapshot.revision:
                    raise
                if pinned is not None:
                    expected_revision(if_match, current)
                continue
            # The store bumps the revision by one per apply: the state is the one planned on.
            # A large write's process is replaced after it; the next one reads the state.
            self._snapshot = None if write.is_large() else snapshot.with_changes(revision, changes)
            return write.answer(Commit(revision, changes))
        raise ApiError(409, "the state kept changing during this write; retry")

    def snapshot(self) -> Snapshot:
        """The state at the store's revision: the one kept since the last write, unless
        another writer moved the revision on."""
        revision = self.store.revision()
        if self._snapshot is None or self._snapshot.revision != revision:
            self._snapshot = load_snapshot(self.store, self.tools.secret_key, since=self._snapshot)
        return self._snapshot


def expected_revision(if_match: str | None, current: int) -> int | None:
    """The revision If-Match pins (None without one); 412 when it is not the current one."""
    if if_match is None:
        return None
    tags = {tag.strip() for tag in if_match.split(",")}
    if "*" in tags:
        return None
    if f'"{current}"' in tags:
        return current
    raise ApiError(
        412,
        f"the state is at revision {current}, not the one If-Match names",
        headers=etag(current),
    )


class WriterHandle(Protocol):
    """What the admin API needs of a writer: WriterProcess, or a test's writer in a thread."""

    async def start(self) -> None: ...

    async def run(
        self, write: Write, *, actor: str, if_match: str | None, progress: Progress | None = None
    ) -> Any: ...

    def retire(self) -> None: ...

    def renew(self) -> None: ...

    def close(self) -> None: ...


class WriterProcess:
    """The serving process's handle on the writer process."""

    def __init__(self, store: Store, secret_key: SecretKey, issuers: frozenset[str]) -> None:
        self._reopen = store.reopener()
        self._secret_key = secret_key
        self._issuers = issuers
        self._context = server_processes()
        # The writer's progress (done, total), shared memory it writes and jobs read.
        self._progress = self._context.RawArray("q", 2)
        self._pool: ProcessPoolExecutor | None = None
        self._pid: int | None = None
        self._lock = asyncio.Lock()
        self._handovers: set[asyncio.Task[None]] = set()

    async def run(
        self, write: Write, *, actor: str, if_match: str | None, progress: Progress | None = None
    ) -> Any:
        """`write`'s answer from the writer process; its refusal raised here."""
        async with self._lock:
            return await self._run(write, actor, if_match, progress)

    def retire(self) -> None:
        """Stop the writer process in the background, after a large write (see
        `Write.is_large`): it keeps what the write took until it ends. Writes wait for it;
        the next one, or `renew`, starts another."""
        self._hand_over(self._retire())

    def renew(self) -> None:
        """Start a writer process that reads the state, in the background, unless one runs:
        after `retire`, once the other processes have the new state (reading it at the same
        time as they do would only slow them down). Writes wait for it."""
        self._hand_over(self._renew())

    def _hand_over(self, step: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(step)
        self._handovers.add(task)
        task.add_done_callback(self._handovers.discard)

    async def _run(
        self, write: Write, actor: str, if_match: str | None, progress: Progress | None
    ) -> Any:
        pool = await self._started_pool()
        self._progress[:] = [0, 0]
        future = asyncio.get_running_loop().run_in_executor(pool, _run, write, actor, if_match)
        try:
            while True:
                done, _ = await asyncio.wait({future}, timeout=PROGRESS_INTERVAL_SECONDS)
                if progress is not None:
                    progress.done, progress.total = self._progress
                if done:
                    return future.result()
        except BrokenProcessPool:
            self._stop()
            raise ApiError(
                503,
                "the server's writer process ended during this write; read the state's "
                "revision to see whether it landed, then retry",
            ) from None

    async def _retire(self) -> None:
        async with self._lock:
            old, self._pool, self._pid = self._pool, None, None
            if old is not None:
                await asyncio.to_thread(old.shutdown, wait=True)

    async def _renew(self) -> None:
        async with self._lock:
            if self._pool is not None:
                return  # a write started one since: it has read the state
            try:
                pool = await self._started_pool()
                await asyncio.get_running_loop().run_in_executor(pool, _read_state)
            except (ApiError, BrokenProcessPool):
                self._stop()
                _LOG.error("admin writer process did not start again; the next write tries")
            else:
                _LOG.info(
                    "admin writer process renewed after a large write", extra={"pid": self._pid}
                )

    @property
    def pid(self) -> int | None:
        """The writer process's id while one runs."""
        return self._pid

    def close(self) -> None:
        """Let the write in progress end, then stop the writer process."""
        for task in self._handovers:
            task.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool, self._pid = None, None

    async def start(self) -> None:
        """Start the writer process now rather than at the first write; one that cannot start
        is logged, and the first write tries again (devices are served meanwhile)."""
        async with self._lock:
            try:
                await self._started_pool()
            except ApiError:
                _LOG.error("admin writer process did not start; admin writes answer 503")

    async def _started_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            pool = ProcessPoolExecutor(
                max_workers=1,
                mp_context=self._context,
                initializer=_start,
                initargs=(self._reopen, self._secret_key, self._progress, self._issuers),
            )
            # A pool starts its process (the first one also the forkserver, which imports the
            # server's code) when it is first given work: in a thread, not on the event loop.
            try:
                pid = await asyncio.to_thread(lambda: pool.submit(os.getpid).result())
            except BrokenProcessPool:  # its initializer failed (the store did not open)
                pool.shutdown(wait=False)
                raise ApiError(
                    503, "the server's writer process cannot start; the server log says why"
                ) from None
            _LOG.info("admin writer process started", extra={"pid": pid})
            self._pool, self._pid = pool, pid
        return self._pool

    def _stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._pid = None, None


class _SharedCell:
    """One integer of the shared progress array, read and written as an attribute."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __get__(self, progress: _SharedProgress, owner: type | None = None) -> int:
        return int(progress.cells[self.index])

    def __set__(self, progress: _SharedProgress, value: int) -> None:
        progress.cells[self.index] = value


class _SharedProgress:
    """Progress in shared memory, where the serving process reads it."""

    done = _SharedCell(0)
    total = _SharedCell(1)

    def __init__(self, cells: Any) -> None:
        self.cells = cells


# The writer process's one Writer, made by `_start` (the pool's initializer).
_writer: Writer | None = None


def _start(
    reopen: Callable[[], Store], secret_key: SecretKey, progress: Any, issuers: frozenset[str]
) -> None:
    global _writer
    # The serving process decides when to stop: Ctrl-C or a service manager's SIGTERM reach
    # the whole process group, and a write must not end half-way because of them.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    exit_with_parent()
    _writer = Writer(reopen(), secret_key, _SharedProgress(progress), issuers)
    # Run as the process ends (the pool's worker leaves through multiprocessing's exit path,
    # not atexit): the voucher checker's own pool goes with it. Before the queues' own
    # finalizers (priority 10), which would leave its workers waiting for a stop message.
    Finalize(_writer, _writer.close, exitpriority=100)


def _read_state() -> None:
    if _writer is None:
        raise RuntimeError("the writer process was not started by its pool")
    _writer.snapshot()


def _run(write: Write, actor: str, if_match: str | None) -> Any:
    if _writer is None:
        raise RuntimeError("the writer process was not started by its pool")
    try:
        return _writer.run(write, actor=actor, if_match=if_match)
    finally:
        release_free_memory()

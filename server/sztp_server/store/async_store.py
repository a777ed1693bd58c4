"""`AsyncStore`: the `Store` API for the event loop, every call run in a worker thread.

A store call may wait: on SQLite's write lock while an admin commit runs, on a PostgreSQL round
trip or row lock. Run on the event loop, that wait would stall every connection the process
serves, devices and admins alike. The facade hands each call to a bounded thread pool of its
own; the server keeps one facade (and pool) for device requests and one for the admin API, so
a bulk apply occupying an admin worker never takes the thread a progress report needs.

The synchronous `Store` stays the API of tools and tests that have no event loop.
"""

from __future__ import annotations

import asyncio
import builtins  # a bare `list` would name the list() method
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from .base import Store
from .model import (
    AuditEntry,
    Change,
    DeviceEvent,
    DeviceHead,
    HeadCounts,
    HeadFilter,
    ProgressRecord,
    ReportOutcome,
    ReportSummary,
    StoredResource,
    TokenRecord,
    WebhookStatus,
)

_Result = TypeVar("_Result")


class AsyncStore:
    """`store`'s methods as coroutines, each run on one of `workers` threads named `name`."""

    def __init__(self, store: Store, *, workers: int, name: str) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    async def run(self, call: Callable[..., _Result], *args: Any, **kwargs: Any) -> _Result:
        """`call(*args, **kwargs)` on one of this facade's workers (for work that makes
        several store calls, such as loading a snapshot)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(call, *args, **kwargs))

    def close(self) -> None:
        """Stop the workers once their calls are done; the store itself stays open."""
        self._executor.shutdown(wait=True)

    async def revision(self) -> int:
        return await self.run(self.store.revision)

    async def get(self, kind: str, name: str) -> StoredResource | None:
        return await self.run(self.store.get, kind, name)

    async def list(self, kind: str | None = None) -> builtins.list[StoredResource]:
        return await self.run(self.store.list, kind)

    async def apply(
        self,
        changes: Sequence[Change],
        *,
        actor: str,
        expected_revision: int | None = None,
        audit_details: Iterable[Mapping[str, Any]] | None = None,
    ) -> int:
        return await self.run(
            self.store.apply,
            changes,
            actor=actor,
            expected_revision=expected_revision,
            audit_details=audit_details,
        )

    async def add_report(
        self,
        record: ProgressRecord,
        *,
        keep_per_device: int = 1000,
        bytes_per_device: int | None = None,
        decides_status: bool = True,
        repeat_window: timedelta | None = None,
    ) -> ReportOutcome:
        return await self.run(
            self.store.add_report,
            record,
            keep_per_device=keep_per_device,
            bytes_per_device=bytes_per_device,
            decides_status=decides_status,
            repeat_window=repeat_window,
        )

    async def reports(
        self, serial: str, *, limit: int = 1000, before_id: int | None = None
    ) -> builtins.list[ProgressRecord]:
        return await self.run(self.store.reports, serial, limit=limit, before_id=before_id)

    async def device_events(
        self,
        *,
        serial: str | None = None,
        refused: bool = False,
        before_id: int | None = None,
        limit: int = 100,
    ) -> builtins.list[DeviceEvent]:
        return await self.run(
            self.store.device_events,
            serial=serial,
            refused=refused,
            before_id=before_id,
            limit=limit,
        )

    async def report_summary(self, serial: str) -> ReportSummary | None:
        return await self.run(self.store.report_summary, serial)

    async def device_page(
        self,
        *,
        after: str | None,
        limit: int,
        spec_equals: Mapping[str, str] | None = None,
        heads: HeadFilter | None = None,
        ldevid_at: datetime | None = None,
    ) -> builtins.list[DeviceHead]:
        return await self.run(
            self.store.device_page,
            after=after,
            limit=limit,
            spec_equals=spec_equals,
            heads=heads,
            ldevid_at=ldevid_at,
        )

    async def head_reports(self, heads: HeadFilter, *, limit: int) -> builtins.list[ProgressRecord]:
        return await self.run(self.store.head_reports, heads, limit=limit)

    async def head_counts_by(
        self, fields: Sequence[str], stale_before: datetime
    ) -> dict[str, dict[str | None, dict[tuple[str | None, bool], int]]]:
        return await self.run(self.store.head_counts_by, fields, stale_before)

    async def head_counts(self, stale_before: datetime) -> HeadCounts:
        return await self.run(self.store.head_counts, stale_before)

    async def webhook_status(self) -> builtins.list[WebhookStatus]:
        return await self.run(self.store.webhook_status)

    async def audit(
        self, *, limit: int = 100, after_id: int | None = None
    ) -> builtins.list[AuditEntry]:
        return await self.run(self.store.audit, limit=limit, after_id=after_id)

    async def prune_audit(
        self, before: datetime, *, actor: str | None = None, dry_run: bool = False
    ) -> int:
        return await self.run(self.store.prune_audit, before, actor=actor, dry_run=dry_run)

    async def add_token(self, record: TokenRecord, *, actor: str) -> None:
        await self.run(self.store.add_token, record, actor=actor)

    async def find_token(self, token_hash: str) -> TokenRecord | None:
        return await self.run(self.store.find_token, token_hash)

    async def tokens(self) -> builtins.list[TokenRecord]:
        return await self.run(self.store.tokens)

    async def delete_token(
        self, name: str, *, actor: str, keep_one_of_role: str | None = None
    ) -> bool:
        return await self.run(
            self.store.delete_token, name, actor=actor, keep_one_of_role=keep_one_of_role
        )

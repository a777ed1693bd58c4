"""`/api/v1/audit`: who changed what, and pruning old entries."""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from ...config import ServerConfig
from ...store.async_store import AsyncStore
from ...store.base import utc_now
from ..auth import caller
from ..errors import ApiError
from ..requests import MAX_AUDIT_LIMIT, bool_query, days_query, int_query
from ..views import audit_entry_view, time_text

LOG = logging.getLogger(__name__)


class AuditHandlers:
    def __init__(self, store: AsyncStore, config: ServerConfig) -> None:
        self.store = store
        self.config = config

    async def audit(self, request: web.Request) -> web.Response:
        limit = int_query(request, "limit", default=100, maximum=MAX_AUDIT_LIMIT)
        after_id = int_query(request, "after_id", default=None, minimum=0)
        entries = await self.store.audit(limit=limit, after_id=after_id)
        return web.json_response({"entries": [audit_entry_view(entry) for entry in entries]})

    async def prune_audit(self, request: web.Request) -> web.Response:
        dry_run = bool_query(request, "dry_run")
        days = days_query(request, "older_than_days")
        if days is None:
            days = self.config.audit_retention_days
            if not days:
                raise ApiError(
                    400,
                    "give older_than_days: this server keeps audit entries forever "
                    "(audit_retention_days is 0)",
                    field="older_than_days",
                )
        before = utc_now() - timedelta(days=days)
        actor = caller(request).name
        entries = await self.store.prune_audit(
            before, actor=None if dry_run else actor, dry_run=dry_run
        )
        if not dry_run:
            LOG.info(
                "audit entries pruned",
                extra={"entries": entries, "before": time_text(before), "actor": actor},
            )
        return web.json_response(
            {"dry_run": dry_run, "before": time_text(before), "entries": entries}
        )

"""`/api/v1/webhooks`: each configured webhook and how its deliveries stand."""

from __future__ import annotations

from aiohttp import web

from ...config import ServerConfig
from ...store.async_store import AsyncStore
from ..views import webhook_view


class WebhookHandlers:
    def __init__(self, store: AsyncStore, config: ServerConfig) -> None:
        self.store = store
        self.config = config

    async def webhooks(self, _request: web.Request) -> web.Response:
        """The configured webhooks (never their keys) with their outbox counts; a webhook
        removed from the configuration is listed while its entries are kept."""
        found = {status.webhook: status for status in await self.store.webhook_status()}
        configured = {hook.name: hook for hook in self.config.webhooks}
        names = [*configured, *sorted(set(found) - set(configured))]
        return web.json_response(
            {
                "webhooks": [
                    webhook_view(name, configured.get(name), found.get(name)) for name in names
                ]
            }
        )

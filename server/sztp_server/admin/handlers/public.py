"""The routes open without a token: the health check and the OpenAPI document."""

from __future__ import annotations

import json

from aiohttp import web

from ...store.async_store import AsyncStore
from ..openapi import openapi_document
from ..requests import JSON_TYPE


class PublicHandlers:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.openapi_body = json.dumps(openapi_document())

    async def healthz(self, _request: web.Request) -> web.Response:
        await self.store.revision()  # proves the store answers; a StoreError becomes a 503
        return web.json_response({"status": "ok"})

    async def openapi(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.openapi_body, content_type=JSON_TYPE)

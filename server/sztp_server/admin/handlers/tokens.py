"""`/api/v1/tokens`: the API tokens, listed, created (the secret shown once) and deleted."""

from __future__ import annotations

import logging

from aiohttp import web

from sztp.errors import ValidationError

from ...store.async_store import AsyncStore
from ...store.errors import ConflictError
from ...tokens import ADMIN, ROLES, TOKEN_NAME_PATTERN, new_token_record
from ..auth import caller
from ..errors import ApiError
from ..requests import json_object, only_fields, read_json
from ..views import token_view

LOG = logging.getLogger(__name__)


class TokenHandlers:
    def __init__(self, store: AsyncStore, max_body_bytes: int) -> None:
        self.store = store
        self.max_body_bytes = max_body_bytes

    async def list_tokens(self, _request: web.Request) -> web.Response:
        tokens = await self.store.tokens()
        return web.json_response({"tokens": [token_view(token) for token in tokens]})

    async def create_token(self, request: web.Request) -> web.Response:
        body = json_object(await read_json(request, self.max_body_bytes), "body")
        only_fields(body, "body", ("name", "role"))
        name, role = body.get("name"), body.get("role", ADMIN)
        if not isinstance(name, str) or not TOKEN_NAME_PATTERN.fullmatch(name):
            raise ValidationError("name", "must be 1-64 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise ValidationError("role", f"must be one of {', '.join(ROLES)}")
        token, record = new_token_record(name, role)
        actor = caller(request).name
        try:
            await self.store.add_token(record, actor=actor)
        except ConflictError:
            raise ApiError(409, f"a token named {name!r} exists", field="name") from None
        LOG.info("API token %r (%s) created by %r", name, role, actor)
        return web.json_response({**token_view(record), "token": token}, status=201)

    async def delete_token(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        actor = caller(request).name
        # The store refuses the last admin token (409) within the delete's own transaction: a
        # check made here first would race with another instance deleting the other one.
        deleted = await self.store.delete_token(name, actor=actor, keep_one_of_role=ADMIN)
        if not deleted:
            raise ApiError(404, f"no token named {name!r}")
        LOG.info("API token %r deleted by %r", name, actor)
        return web.Response(status=204)

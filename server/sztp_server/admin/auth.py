"""Admin API authentication: `Authorization: Bearer <token>` on every route but the public
ones; a `read-only` token may only read, everything else needs an `admin` token."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from ..store.async_store import AsyncStore
from ..store.model import TokenRecord
from ..tokens import ADMIN, hash_token
from .errors import ApiError
from .handlers.api_reference import REFERENCE_ASSETS, REFERENCE_PAGE
from .handlers.dashboard import DASHBOARD_PAGES
from .requests import API

LOG = logging.getLogger(__name__)

# Load balancers probe /healthz; the OpenAPI document holds no data, nor does its reference
# page, nor the dashboard's page, which reads the API with the token the operator gives it.
PUBLIC_ROUTES = frozenset({"/healthz", f"{API}/openapi.json", REFERENCE_PAGE, *DASHBOARD_PAGES})
# Every path under these is public too: the reference's files, so that a name it does not serve
# is answered 404 rather than 401.
PUBLIC_PREFIXES = (REFERENCE_ASSETS,)
_READ_METHODS = frozenset({"GET", "HEAD"})
_CALLER = web.RequestKey("caller", TokenRecord)


def caller(request: web.Request) -> TokenRecord:
    """The token the request was authenticated with (not for public routes)."""
    return request[_CALLER]


class TokenAuth:
    def __init__(self, store: AsyncStore) -> None:
        self.store = store
        self.refusals = RefusalLog()

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        public = request.path in PUBLIC_ROUTES or request.path.startswith(PUBLIC_PREFIXES)
        if public and request.method in _READ_METHODS:
            return await handler(request)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            self.refusals.log(request.remote, "no bearer token")
            raise ApiError(
                401,
                "this route needs an API token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="sztp"'},
            )
        record = await self.store.find_token(hash_token(token))
        if record is None:
            self.refusals.log(request.remote, "unknown token")
            raise ApiError(
                401,
                "the API token is not valid",
                headers={"WWW-Authenticate": 'Bearer realm="sztp", error="invalid_token"'},
            )
        if record.role != ADMIN and not _reads_only(request):
            raise ApiError(403, f"a {record.role} token cannot change anything")
        request[_CALLER] = record
        return await handler(request)


def _reads_only(request: web.Request) -> bool:
    """GETs, and dry runs of the bulk endpoint: `sztpctl diff` needs no write permission."""
    if request.method in _READ_METHODS:
        return True
    return (
        request.method == "POST"
        and request.path == f"{API}/state"
        and request.query.get("dry_run") == "true"
    )


class RefusalLog:
    """Logs refused admin API requests (no token, unknown token) with the peer's address,
    never what was presented, at most `burst` lines per `window` seconds: a client guessing
    tokens cannot flood the log, and the first line of the next window says how many
    refusals went unlogged."""

    def __init__(
        self,
        burst: int = 20,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst = burst
        self.window = window
        self._clock = clock
        self._window_start: float | None = None
        self._logged = 0
        self._unlogged = 0

    def log(self, remote: str | None, reason: str) -> None:
        now = self._clock()
        if self._window_start is None or now - self._window_start >= self.window:
            self._window_start = now
            self._logged = 0
        if self._logged >= self.burst:
            self._unlogged += 1
            return
        self._logged += 1
        LOG.warning(
            "admin API request refused",
            extra={"remote": remote, "reason": reason, "unlogged_refusals": self._unlogged},
        )
        self._unlogged = 0

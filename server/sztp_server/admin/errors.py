"""Admin API errors: every failure is answered as JSON,
`{"error": {"code": ..., "message": ..., "field": ...?}}`, and only a bug gives a 500."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from sztp.errors import SztpError, ValidationError

from ..store.errors import ConflictError, NotFoundError, StoreError

LOG = logging.getLogger(__name__)

ERROR_CODES: Mapping[int, str] = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    412: "precondition-failed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    503: "unavailable",
}
# The code of any other status: a bug, answered as a 500.
INTERNAL_ERROR = "internal-error"


class ApiError(Exception):
    """An error answered as-is: HTTP status, error code, message, optional field."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in the admin writer process, re-raised in the serving one.
        return (ApiError, (self.status, self.message), dict(self.__dict__))

    def response(self) -> web.Response:
        return error_response(self.status, self.message, field=self.field, headers=self.headers)


def error_response(
    status: int,
    message: str,
    *,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    return web.json_response(
        {"error": error_body(status, message, field)}, status=status, headers=headers
    )


def error_body(status: int, message: str, field: str | None = None) -> dict[str, Any]:
    """The `error` object of an error answer (also what a failed job reports)."""
    error: dict[str, Any] = {"code": ERROR_CODES.get(status, INTERNAL_ERROR), "message": message}
    if field is not None:
        error["field"] = field
    return error


def error_of(exc: Exception, doing: str) -> ApiError:
    """`exc` as the error the client is told; a bug (logged with `doing`) says no more than
    that. HTTP exceptions are the middleware's to handle."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError):
        return ApiError(422, exc.message, field=exc.field)
    if isinstance(exc, ConflictError):
        return ApiError(409, str(exc))
    if isinstance(exc, NotFoundError):
        return ApiError(404, str(exc))
    if isinstance(exc, StoreError):
        LOG.error("%s: store unavailable: %s", doing, exc)
        return ApiError(503, "the state store is unavailable; retry later")
    if isinstance(exc, SztpError):
        return ApiError(422, str(exc))
    LOG.error("%s failed", doing, exc_info=exc)
    return ApiError(500, "internal error; the server log has the details")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every failure becomes a JSON error; only a bug gives a 500, logged, without details."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return error_response(exc.status, _http_message(exc), headers=headers)
    except Exception as exc:
        return error_of(exc, f"admin API {request.method} {request.path}").response()


def _http_message(exc: web.HTTPException) -> str:
    if exc.status == 404:
        return "no such route"
    if exc.status == 405:
        return "method not allowed on this route"
    return exc.reason

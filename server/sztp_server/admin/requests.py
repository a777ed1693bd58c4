"""Reading admin API requests: paths, bounded bodies, strict JSON, query parameters; and the
JSON response that carries the state's revision as its ETag."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, overload

from aiohttp import web

from sztp.errors import ValidationError
from sztp.protocol import strict_json
from sztp.state import model

from ..store.base import AUDIT_MAX_AGE_DAYS
from .errors import ApiError
from .views import etag

API = "/api/v1"
# The kind each collection path holds: /api/v1/<collection>[/<name>].
COLLECTIONS: Mapping[str, str] = {
    collection: kind for kind, collection in model.COLLECTIONS.items()
}
JSON_TYPE = "application/json"
# Pages: reports per page of GET /api/v1/devices/{serial}/progress unless `limit` asks
# otherwise (at most sztp.progress.MAX_PROGRESS_PAGE); audit entries per page at most.
DEFAULT_PROGRESS_LIMIT = 100
MAX_AUDIT_LIMIT = 1000
# Device events (GET /api/v1/events) per page unless `limit` asks otherwise, and at most.
DEFAULT_EVENTS_LIMIT = 100
MAX_EVENTS_LIMIT = 1000
# GET /api/v1/status: the failures shown, newest first, and the stalled devices named, in name
# order (its counts say how many there are in all).
RECENT_ERRORS = 50
STALLED_SHOWN = 100
# The most devices one page of GET /api/v1/devices holds: a page is built in memory.
MAX_DEVICE_PAGE = 10_000


def json_with_etag(data: Any, revision: int, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=etag(revision))


def require_json(request: web.Request) -> None:
    """415 unless the body is declared as JSON."""
    if request.content_type != JSON_TYPE:
        raise ApiError(415, f"send the body as {JSON_TYPE}")


async def read_json(request: web.Request, limit: int) -> Any:
    require_json(request)
    raw = await read_body(request, limit)
    # Off the event loop: a bulk body of tens of MiB takes long enough to parse that every
    # device request would wait for it.
    return await asyncio.to_thread(decode_json, raw)


async def read_body(request: web.Request, limit: int) -> bytes:
    too_large = ApiError(413, f"the body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(raw: bytes) -> Any:
    """The JSON document `raw` holds; ApiError 400 if it is not valid JSON."""
    try:
        # Decoded as json.loads decodes bytes, so that the text can be checked below.
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
        document = json.loads(
            text,
            object_pairs_hook=partial(strict_json.unique_members, "body"),
            parse_constant=_reject_constant,
        )
        # Lone surrogates (\ud800) parse but cannot be encoded: refuse them here. Only
        # non-ASCII text or a \uD... escape can hold one; a bulk body of tens of MiB of
        # plain ASCII is spared a second pass.
        if not text.isascii() or "\\ud" in text or "\\uD" in text:
            json.dumps(document, ensure_ascii=False).encode()
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc.msg} at {exc.pos}") from None
    except ValidationError as exc:  # a repeated member: which value was meant is unknown
        raise ApiError(400, f"the body is not valid JSON: {exc.message}") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "the body is not valid JSON (UTF-8, no NaN)") from None
    return document


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def json_object(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(field, "must be an object")
    return value


def only_fields(body: Mapping[str, Any], field: str, allowed: Sequence[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise ValidationError(unknown[0], f"unknown field in {field}")


@overload
def int_query(
    request: web.Request, name: str, *, default: int, minimum: int = 1, maximum: int = 2**62
) -> int: ...


@overload
def int_query(
    request: web.Request, name: str, *, default: None, minimum: int = 1, maximum: int = 2**62
) -> int | None: ...


def int_query(
    request: web.Request, name: str, *, default: int | None, minimum: int = 1, maximum: int = 2**62
) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ApiError(400, "must be a non-negative integer", field=name)
    value = int(text)
    if not minimum <= value <= maximum:
        raise ApiError(400, f"must be between {minimum} and {maximum}", field=name)
    return value


def days_query(request: web.Request, name: str) -> float | None:
    """A positive number of days (fractions allowed), or None when not given."""
    text = request.query.get(name)
    if text is None:
        return None
    try:
        days = float(text)
    except ValueError:
        raise ApiError(400, "must be a number of days", field=name) from None
    if not 0 < days <= AUDIT_MAX_AGE_DAYS:
        raise ApiError(
            400, f"must be more than 0 and at most {AUDIT_MAX_AGE_DAYS} days", field=name
        )
    return days


def text_query(request: web.Request, name: str) -> str | None:
    """A text parameter, or None when not given. No stored name or field holds a NUL (and
    PostgreSQL refuses it in a parameter), so one is refused here."""
    text = request.query.get(name)
    if text is not None and "\x00" in text:
        raise ApiError(400, "must not contain a NUL character", field=name)
    return text


def bool_query(request: web.Request, name: str) -> bool:
    text = request.query.get(name, "false")
    if text not in ("true", "false"):
        raise ApiError(400, "must be true or false", field=name)
    return text == "true"

"""Strict JSON reading shared by the RFC 7951 codecs: every defect is a ValidationError."""

from __future__ import annotations

import base64
import binascii
import json
from functools import partial
from typing import NoReturn

from ..errors import ValidationError


def document_text(body: bytes, path: str, max_size: int) -> str:
    """`body` as text once it is at most `max_size` bytes of UTF-8 (JSON and XML alike)."""
    if len(body) > max_size:
        raise ValidationError(path, f"larger than {max_size} bytes")
    try:
        return bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(path, f"not UTF-8: {error.reason} at byte {error.start}") from None


def loads(text: str, path: str) -> object:
    """Parse `text`; duplicate member names, NaN/Infinity and deep nesting are refused, since
    json.loads would silently keep the last duplicate and accept non-JSON constants."""
    try:
        return json.loads(
            text,
            object_pairs_hook=partial(unique_members, path),
            parse_constant=partial(_reject_constant, path),
        )
    except (ValueError, RecursionError) as error:
        raise ValidationError(path, f"not valid JSON: {error}") from None


def unique_members(path: str, pairs: list[tuple[str, object]]) -> dict[str, object]:
    """A json `object_pairs_hook`: the object, or ValidationError naming a repeated member."""
    members = dict(pairs)
    if len(members) != len(pairs):
        # Only a defective object pays for the search; large valid bodies take the dict() path.
        seen: set[str] = set()
        for name, _value in pairs:
            if name in seen:
                raise ValidationError(path, f"duplicate JSON member {name!r}")
            seen.add(name)
    return members


def _reject_constant(path: str, name: str) -> NoReturn:
    raise ValidationError(path, f"{name} is not a JSON number")


def type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def array(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise ValidationError(path, f"must be a JSON array, not {type_name(value)}")
    return value


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(path, f"must be a JSON string, not {type_name(value)}")
    return value


def encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode_base64(text: str, path: str) -> bytes:
    # RFC 4648 §3.3: reject characters outside the alphabet, whitespace included.
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(path, "not valid base64 (RFC 4648, with padding)") from None

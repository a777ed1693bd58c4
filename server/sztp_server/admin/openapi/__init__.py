"""The OpenAPI 3.1 document of the admin API (served at `GET /api/v1/openapi.json`): the
operations of every path (`paths`, made of the responses and parameters in `parts`) and the
component schemas (`schemas`)."""

from __future__ import annotations

from typing import Any

from sztp import __version__

from .paths import api_paths
from .schemas import schemas


def openapi_document() -> dict[str, Any]:
    """The whole document; built on each call, so callers may modify their copy."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sztp-server admin API",
            "version": __version__,
            "description": (
                "Manage the resources of an RFC 8572 bootstrap server. Secrets (owner "
                'private_key, device password_hash) are shown as `"<hidden>"`; sending '
                '`"<hidden>"` back keeps the stored value. The ETag is the revision of the '
                "whole state; every write accepts If-Match."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": api_paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas(),
            "parameters": {
                "IfMatch": {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": 'The state revision the write expects, e.g. "42".',
                    "schema": {"type": "string"},
                }
            },
        },
    }

"""Structured logs: one JSON object per line on stderr, ready for journald or a log shipper."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

LOGGER_NAME = "sztp_server"
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.fields = fields or {}  # on every record, e.g. which device worker logs it

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            **self.fields,
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request its HTTP parser refuses (a line too long, a bad header name) as
    an error with a traceback, though the client got its 400 and anyone can send one: such a
    record becomes one debug line with the reason as a value."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        if not logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG):
            return False
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        record.msg, record.args, record.exc_info, record.exc_text = (
            "malformed HTTP request refused",
            None,
            None,
            None,
        )
        record.remote = remote
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        record.reason = f"{error.code} {error.message}"
        return True


def configure(level: str, *, worker: int | None = None) -> logging.Logger:
    """Log as `level` asks; a device worker's records say which worker (numbered from 1)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter({} if worker is None else {"worker": worker}))
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    # aiohttp's own records (errors in its request handling) in the same one-line format.
    framework = logging.getLogger("aiohttp")
    framework.handlers[:] = [handler]
    framework.setLevel(logging.WARNING)
    framework.propagate = False
    server = logging.getLogger("aiohttp.server")
    server.filters[:] = [MalformedRequestFilter()]
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)

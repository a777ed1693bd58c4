"""Persistent state of sztp-server: admin resources, progress reports, audit log, API tokens.

`open_store(url)` picks the backend from the URL:

- `sqlite:///var/lib/sztp/sztp.db`: SQLite file at an absolute path (the default backend);
  `sqlite:///./sztp.db` (or `sqlite:///../dir/sztp.db`): relative to the working directory.
  Percent-escapes are decoded; no host, query or fragment is allowed.
- `postgresql://user:password@host:5432/dbname` (or `postgres://`): PostgreSQL, any libpq
  URL; needs the `psycopg` package (the `server` extra). Use it when several server instances
  share one state.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from .base import Store
from .errors import ConflictError, NotFoundError, StoreError
from .model import AuditEntry, Change, ProgressRecord, StoredResource, TokenRecord
from .sqlite import SqliteStore

__all__ = [
    "AuditEntry",
    "Change",
    "ConflictError",
    "NotFoundError",
    "ProgressRecord",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoredResource",
    "TokenRecord",
    "open_store",
    "sqlite_path",
]

_URL_FORMS = "sqlite:///absolute/path.db, sqlite:///./relative/path.db or postgresql://..."


def open_store(url: str, *, statement_timeout: float | None = None, pool_size: int = 1) -> Store:
    """Open (creating and migrating if needed) the store that `url` names.

    `statement_timeout` (seconds) bounds every statement, and every idle moment inside a
    transaction, of a PostgreSQL store; `pool_size` is how many connections it may hold, as
    many calls as may run at once. SQLite, whose statements never wait on a network and which
    opens one connection per calling thread, ignores both.
    """
    scheme, separator, _ = url.partition(":")
    # Echo the scheme only when it looks like one: a mangled URL may start with a password.
    if not separator or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        raise StoreError(f"store URL has no scheme; use {_URL_FORMS}")
    scheme = scheme.lower()
    if scheme == "sqlite":
        return SqliteStore(sqlite_path(url))
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresStore
        except ImportError:
            raise StoreError(
                "a postgresql:// store needs psycopg 3: pip install 'sztp[server]'"
            ) from None
        return PostgresStore(url, statement_timeout=statement_timeout, pool_size=pool_size)
    raise StoreError(f"unsupported store URL scheme {scheme!r}; use {_URL_FORMS}")


def sqlite_path(url: str) -> Path:
    """The file a `sqlite:` URL names (see the module docstring for the accepted forms)."""
    prefix = "sqlite://"
    if not url.lower().startswith(prefix) or any(char in url for char in "?#"):
        raise StoreError(f"malformed SQLite URL {url!r}; use {_URL_FORMS}")
    path = unquote(url[len(prefix) :])
    if not path.startswith("/") or path == "/":
        raise StoreError(f"malformed SQLite URL {url!r} (no host allowed); use {_URL_FORMS}")
    if path.startswith(("/./", "/../")):
        return Path.cwd() / path[1:]
    return Path(path)

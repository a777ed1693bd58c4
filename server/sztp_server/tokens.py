"""Admin API tokens: generation, hashing and the first admin token written at first start.

Only a token's hash is stored. SHA-256 is enough here, unlike for passwords: a token is 32
random bytes (256 bits of entropy), so guessing one from its hash is as hard as guessing it
outright and a slow hash (scrypt, bcrypt) would add cost to every request without adding
security. A plain digest also lets the store look a token up by its hash in one query.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from pathlib import Path

from .store.base import Store, utc_now
from .store.model import TokenRecord

TOKEN_PREFIX = "sztp_"  # noqa: S105 - a public prefix, not a secret
ADMIN = "admin"
READ_ONLY = "read-only"
ROLES = (ADMIN, READ_ONLY)
FIRST_TOKEN_NAME = "admin"  # noqa: S105 - the token's name, not the token
# The audit log's actor for what the server does by itself; no token name has parentheses.
SERVER_ACTOR = "(server)"
TOKEN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def generate_token() -> str:
    """A new bearer token: the prefix (easy to spot in secret scanners) + 32 random bytes."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The SHA-256 hex digest under which a token is stored and looked up."""
    # surrogatepass: a garbled header (undecodable bytes) still hashes, and simply never matches.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token_record(name: str, role: str) -> tuple[str, TokenRecord]:
    """A fresh token and the record to store for it (the token itself is not in the record)."""
    token = generate_token()
    return token, TokenRecord(
        name=name, token_hash=hash_token(token), role=role, created_at=utc_now()
    )


def ensure_first_admin_token(store: Store, path: Path) -> str | None:
    """Create the first admin token when the store has none; write it once to `path`.

    The file is created with mode 0600 and must not exist yet (FileExistsError otherwise);
    missing parent directories are created with mode 0700. Returns the token, or None when
    tokens exist already. The token is never logged: whoever installs the server reads it
    from the file.
    """
    if store.tokens():
        return None
    token, record = new_token_record(FIRST_TOKEN_NAME, ADMIN)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # O_EXCL: never follow a planted symlink or overwrite a file someone else prepared.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(token + "\n")
    try:
        store.add_token(record, actor=SERVER_ACTOR)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return token

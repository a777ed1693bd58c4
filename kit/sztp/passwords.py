"""Device passwords (HTTP Basic) stored as scrypt hashes, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass

from .errors import ValidationError

# RFC 7914 scrypt. N=2^14, r=8 needs 16 MiB (128 * N * r bytes) per check and is slow enough to
# make offline guessing expensive, cheap enough for a device login now and then. These are the only
# parameters accepted in a stored hash, so every check costs the same (a server can then make a
# failure for an unknown serial cost exactly what a wrong password costs) and a stored value can
# never ask for more memory or time than this.
_N, _R, _P = 2**14, 8, 1
# 128·r·N bytes plus OpenSSL's working space.
_MAX_MEMORY = 2 * 128 * _R * _N
SALT_BYTES = 16
KEY_BYTES = 32
_PREFIX = "$scrypt$"
_FORMAT = re.compile(
    r"\$scrypt\$n=(?P<n>\d{1,9}),r=(?P<r>\d{1,9}),p=(?P<p>\d{1,9})"
    r"\$(?P<salt>[A-Za-z0-9+/]{1,256})\$(?P<key>[A-Za-z0-9+/]{1,256})"
)
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True, repr=False)
class PasswordHash:
    """A stored hash, checked: its salt and derived key (never shown in a repr)."""

    salt: bytes
    key: bytes


def hash_password(password: str) -> str:
    """`$scrypt$n=…,r=…,p=…$salt$hash` for storage; the password itself is never stored."""
    if not password:
        raise ValidationError("password", "must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"longer than {MAX_PASSWORD_LENGTH} characters")
    salt = os.urandom(SALT_BYTES)
    return f"{_PREFIX}n={_N},r={_R},p={_P}${_b64(salt)}${_b64(_derive(password, salt))}"


def parse_password_hash(text: str) -> PasswordHash:
    """The hash in `text`, exactly as `hash_password` writes it; ValidationError (field
    `password_hash`) naming what is wrong otherwise."""
    match = _FORMAT.fullmatch(text)
    if match is None:
        raise ValidationError(
            "password_hash", f"is not a password hash made by sztp ({_PREFIX}n=…,r=…,p=…$salt$hash)"
        )
    parameters = f"n={int(match['n'])},r={int(match['r'])},p={int(match['p'])}"
    if parameters != f"n={_N},r={_R},p={_P}":
        raise ValidationError(
            "password_hash",
            f"scrypt parameters {parameters} are not the ones sztp uses (n={_N},r={_R},p={_P})",
        )
    salt = _canonical_b64("salt", match["salt"], SALT_BYTES)
    key = _canonical_b64("hash", match["key"], KEY_BYTES)
    return PasswordHash(salt=salt, key=key)


def unmatchable_hash() -> PasswordHash:
    """A hash no password matches (its key is random, not derived), costing a real check."""
    return PasswordHash(salt=os.urandom(SALT_BYTES), key=os.urandom(KEY_BYTES))


def matches(password: str, stored: PasswordHash) -> bool:
    """True when `password` matches `stored`. Always exactly one scrypt derivation, whatever the
    password, so how long it takes says nothing about either."""
    derived = _derive(password, stored.salt)
    return hmac.compare_digest(derived, stored.key) and len(password) <= MAX_PASSWORD_LENGTH


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; malformed stored values never match."""
    try:
        parsed = parse_password_hash(stored)
    except ValidationError:
        return False
    return matches(password, parsed)


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAX_MEMORY, dklen=KEY_BYTES
    )


def _canonical_b64(part: str, text: str, size: int) -> bytes:
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        data = b""
    # Round-tripping refuses lengths base64 cannot have and stray low bits in the last
    # character: one hash has one spelling.
    if len(data) != size or _b64(data) != text:
        raise ValidationError("password_hash", f"{part} must be {size} bytes in unpadded base64")
    return data


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")

"""Device secrets for HTTP Basic: passwords and activation codes, stored hashed, compared in
constant time.

A password a person chose is stored as a scrypt hash: slow on purpose, so a stolen database
does not give it away by guessing. An activation code is machine-generated with 160 random
bits (`generate_activation_code`); no guessing attack gets near that, so a salted SHA-256
protects it as well and costs a login next to nothing. The stored text says which it is:
`$scrypt$n=…,r=…,p=…$salt$hash` or `$sha256$salt$hash`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from enum import Enum

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
_FAST_PREFIX = "$sha256$"
_FAST_FORMAT = re.compile(
    r"\$sha256\$(?P<salt>[A-Za-z0-9+/]{1,256})\$(?P<key>[A-Za-z0-9+/]{1,256})"
)
MAX_PASSWORD_LENGTH = 1024
# An activation code: 20 random bytes (160 bits) in base64url, as `generate_activation_code`
# makes them. Codes made elsewhere are accepted when they have the same form: 27 or more
# characters of that alphabet hold at least 160 bits if they are random, which only the maker
# can vouch for.
ACTIVATION_CODE_BYTES = 20
ACTIVATION_CODE_MIN_LENGTH = 27
ACTIVATION_CODE_LIMIT = 128
ACTIVATION_CODE = re.compile(
    rf"[A-Za-z0-9_-]{{{ACTIVATION_CODE_MIN_LENGTH},{ACTIVATION_CODE_LIMIT}}}"
)


class SecretKind(Enum):
    """What a device's Basic secret is, and so how it is stored."""

    PASSWORD = "password"  # noqa: S105 - a field name
    ACTIVATION_CODE = "activation_code"


# Iterating an Enum class is slow, and every device of a bulk write is read for each kind.
SECRET_KINDS: tuple[SecretKind, ...] = tuple(SecretKind)


@dataclass(frozen=True, repr=False)
class PasswordHash:
    """A stored hash, checked: its salt and derived key (never shown in a repr), and whether
    it is an activation code's fast hash."""

    salt: bytes
    key: bytes
    kind: SecretKind = SecretKind.PASSWORD


def hash_password(password: str) -> str:
    """`$scrypt$n=…,r=…,p=…$salt$hash` for storage; the password itself is never stored."""
    if not password:
        raise ValidationError("password", "must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"longer than {MAX_PASSWORD_LENGTH} characters")
    salt = os.urandom(SALT_BYTES)
    return f"{_PREFIX}n={_N},r={_R},p={_P}${_b64(salt)}${_b64(_derive(password, salt))}"


def generate_activation_code() -> str:
    """A new activation code: 160 random bits, base64url (27 characters)."""
    return secrets.token_urlsafe(ACTIVATION_CODE_BYTES)


def check_activation_code(code: str) -> None:
    """ValidationError (field `activation_code`) unless `code` has an activation code's form."""
    if not ACTIVATION_CODE.fullmatch(code):
        raise ValidationError(
            "activation_code",
            f"must be {ACTIVATION_CODE_MIN_LENGTH} to {ACTIVATION_CODE_LIMIT} characters of "
            "A-Z, a-z, 0-9, '-' and '_' (at least 160 random bits: `sztpctl device "
            "activation-code` makes them); a secret a person chose is a password",
        )


def hash_activation_code(code: str) -> str:
    """`$sha256$salt$hash` for storage."""
    check_activation_code(code)
    salt = os.urandom(SALT_BYTES)
    return f"{_FAST_PREFIX}{_b64(salt)}${_b64(_digest(code, salt))}"


def hash_secret(secret: str, kind: SecretKind) -> str:
    """The stored form of a device secret of `kind`."""
    if kind is SecretKind.ACTIVATION_CODE:
        return hash_activation_code(secret)
    return hash_password(secret)


def parse_password_hash(text: str) -> PasswordHash:
    """The hash in `text`, exactly as `hash_password` or `hash_activation_code` writes it;
    ValidationError (field `password_hash`) naming what is wrong otherwise."""
    fast = _FAST_FORMAT.fullmatch(text)
    if fast is not None:
        return PasswordHash(
            salt=_canonical_b64("salt", fast["salt"], SALT_BYTES),
            key=_canonical_b64("hash", fast["key"], KEY_BYTES),
            kind=SecretKind.ACTIVATION_CODE,
        )
    match = _FORMAT.fullmatch(text)
    if match is None:
        raise ValidationError(
            "password_hash",
            f"is not a password hash made by sztp ({_PREFIX}n=…,r=…,p=…$salt$hash or "
            f"{_FAST_PREFIX}salt$hash)",
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
    """True when `password` matches `stored`. Always exactly one derivation of the stored
    kind (scrypt, or SHA-256 for an activation code), whatever the password, so how long it
    takes says nothing about the password."""
    if stored.kind is SecretKind.ACTIVATION_CODE:
        derived = _digest(password, stored.salt)
    else:
        derived = _derive(password, stored.salt)
    return hmac.compare_digest(derived, stored.key) and len(password) <= MAX_PASSWORD_LENGTH


def verify_password(password: str, stored: str, kind: SecretKind | None = None) -> bool:
    """True when `password` matches `stored` (and `stored` is of `kind`, when given);
    malformed stored values never match."""
    try:
        parsed = parse_password_hash(stored)
    except ValidationError:
        return False
    return (kind is None or parsed.kind is kind) and matches(password, parsed)


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=_MAX_MEMORY, dklen=KEY_BYTES
    )


def _digest(code: str, salt: bytes) -> bytes:
    return hashlib.sha256(salt + code.encode("utf-8", "surrogatepass")).digest()


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

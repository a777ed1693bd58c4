"""Device passwords (HTTP Basic) stored as scrypt hashes, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from .errors import ValidationError

# RFC 7914 scrypt. N=2^14, r=8 costs about 16 MiB and 60 ms per check here: slow enough to make
# offline guessing expensive, cheap enough for a device login now and then.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_KEY_BYTES = 32
_PREFIX = "$scrypt$"
MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    """`$scrypt$n=…,r=…,p=…$salt$hash` for storage; the password itself is never stored."""
    if not password:
        raise ValidationError("password", "must not be empty")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError("password", f"longer than {MAX_PASSWORD_LENGTH} characters")
    salt = os.urandom(_SALT_BYTES)
    derived = _derive(password, salt, _N, _R, _P)
    return f"{_PREFIX}n={_N},r={_R},p={_P}${_b64(salt)}${_b64(derived)}"


def verify_password(password: str, stored: str) -> bool:
    """True when `password` matches `stored`; malformed stored values never match."""
    try:
        parameters, salt_text, hash_text = stored.removeprefix(_PREFIX).split("$")
        settings = dict(item.split("=") for item in parameters.split(","))
        n, r, p = int(settings["n"]), int(settings["r"]), int(settings["p"])
        salt, expected = _unb64(salt_text), _unb64(hash_text)
    except (ValueError, KeyError):
        return False
    if not stored.startswith(_PREFIX) or len(password) > MAX_PASSWORD_LENGTH:
        return False
    return hmac.compare_digest(_derive(password, salt, n, r, p), expected)


def is_password_hash(value: str) -> bool:
    return value.startswith(_PREFIX)


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=_KEY_BYTES
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)

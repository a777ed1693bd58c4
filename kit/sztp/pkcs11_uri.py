"""PKCS#11 URIs (RFC 7512) naming a private key in a token, as an owner's `private_key` may.

Only what selects a token and a key is accepted: `token`, `manufacturer`, `serial`, `model`
(the token), `object`, `id` and `type=private` (the key). What RFC 7512 puts in the query is
refused: the PIN (`pin-source`, `pin-value`) and the library (`module-name`, `module-path`)
come from the server's configuration, never from the state, which is not secret to whoever
may read the fleet. Unknown attributes are refused too: a misspelt `objekt=` would otherwise
select some other key. Pure: parsing needs no PKCS#11 library (the server resolves the URI).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import TypeGuard
from urllib.parse import unquote_to_bytes

from .errors import ValidationError

SCHEME = "pkcs11:"
# The path attributes, in the order the canonical form writes them.
_ATTRIBUTES = ("token", "manufacturer", "serial", "model", "object", "type", "id")
_QUERY_ATTRIBUTES = ("pin-source", "pin-value", "module-name", "module-path")
# RFC 7512 §2.3: pk11-pchar, what a path attribute value may hold unencoded.
_PLAIN = frozenset(string.ascii_letters + string.digits + "-._~:[]@!$'()*+,=&")
_ENCODED = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 7512 bounds the token fields by their CK_TOKEN_INFO sizes.
_FIELD_BYTES = {"token": 32, "manufacturer": 32, "model": 16, "serial": 16}


@dataclass(frozen=True)
class Pkcs11Uri:
    """A key in a token: the token's label, manufacturer, serial and model narrow which token
    (none: the only one), the key's label (`object`) and CKA_ID (`id`) which key."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    object: str | None = None
    type: str | None = None
    id: bytes | None = None

    def __str__(self) -> str:
        """The canonical form: attributes in a fixed order, `id` byte by byte as %XX, other
        values encoded only where RFC 7512 requires."""
        parts = []
        for name in _ATTRIBUTES:
            value = getattr(self, name)
            if value is None:
                continue
            raw = value if isinstance(value, bytes) else value.encode()
            parts.append(f"{name}={_encode(raw, everything=name == 'id')}")
        return SCHEME + ";".join(parts)

    def describe(self) -> str:
        """The key's attributes alone (object, id), for messages about a missing key."""
        named = [] if self.object is None else [f"object={self.object}"]
        if self.id is not None:
            named.append(f"id={_encode(self.id)}")
        return ", ".join(named)


def is_pkcs11_uri(text: object) -> TypeGuard[str]:
    """Whether `text` is meant as a PKCS#11 URI (its scheme), valid or not."""
    return isinstance(text, str) and text[: len(SCHEME)].lower() == SCHEME


def parse_pkcs11_uri(text: str) -> Pkcs11Uri:
    """The URI's attributes; ValidationError (field "pkcs11 URI") saying what is wrong."""
    if not is_pkcs11_uri(text):
        raise _error(f"must start with {SCHEME!r}")
    path, _, query = text[len(SCHEME) :].partition("?")
    if query:
        names = sorted({item.partition("=")[0] for item in query.split("&")})
        refused = [name for name in names if name in _QUERY_ATTRIBUTES]
        if refused:
            raise _error(
                f"{', '.join(refused)} is not allowed in the URI: the server's configuration "
                "gives the PIN (pkcs11_pin_file) and the library (pkcs11_module)"
            )
        raise _error(f"unknown query attribute {names[0]!r} (the URI takes no query)")
    texts: dict[str, str] = {}
    key_id: bytes | None = None
    for item in path.split(";") if path else ():
        name, equals, encoded = item.partition("=")
        if not equals:
            raise _error(f"{item!r} is not name=value")
        if name not in _ATTRIBUTES:
            known = ", ".join(_ATTRIBUTES)
            raise _error(f"unknown attribute {name!r} (known: {known})")
        if name in texts or (name == "id" and key_id is not None):
            raise _error(f"attribute {name!r} given twice")
        raw = _decode(name, encoded)
        if name == "id":
            key_id = raw
        else:
            texts[name] = _text(name, raw)
    if "object" not in texts and key_id is None:
        raise _error("name the key with object= (its label) or id= (its CKA_ID)")
    if texts.get("type", "private") != "private":
        raise _error(f"type={texts['type']!r}: the owner key is a private key (type=private)")
    return Pkcs11Uri(**texts, id=key_id)


def canonical_pkcs11_uri(text: str) -> str:
    """The canonical form of a valid URI (see `Pkcs11Uri.__str__`)."""
    return str(parse_pkcs11_uri(text))


def _decode(name: str, encoded: str) -> bytes:
    if not encoded:
        raise _error(f"attribute {name!r} is empty")
    bad = sorted({char for char in encoded if char not in _PLAIN and char != "%"})
    if bad:
        raise _error(f"attribute {name!r}: {''.join(bad)!r} must be percent-encoded")
    if _ENCODED.search(encoded):
        raise _error(f"attribute {name!r}: '%' must start a %XX escape")
    return unquote_to_bytes(encoded)


def _text(name: str, raw: bytes) -> str:
    try:
        value = raw.decode()
    except UnicodeDecodeError:
        raise _error(f"attribute {name!r} is not UTF-8 text") from None
    limit = _FIELD_BYTES.get(name)
    if limit is not None and len(raw) > limit:
        raise _error(f"attribute {name!r} is longer than the token's {limit} bytes")
    return value


def _encode(raw: bytes, *, everything: bool = True) -> str:
    return "".join(
        chr(byte) if not everything and chr(byte) in _PLAIN else f"%{byte:02X}" for byte in raw
    )


def _error(message: str) -> ValidationError:
    return ValidationError("pkcs11 URI", message)

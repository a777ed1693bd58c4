"""The server's secret key: kept outside the database, it protects what the database holds.

- Owner private keys are stored sealed: AES-256-GCM under a key derived for that purpose
  (HKDF-SHA256), with the owner's name as associated data so a sealed key copied onto another
  owner does not open. The stored text is `sztp-sealed:v1:` + base64(nonce + ciphertext), so
  a plaintext PEM and a sealed key can never be mistaken for one another. Only signing opens
  it (`Snapshot.owner_credential`). A PKCS#11 URI in its place names a key in a token: it
  holds no key material, so it is stored as it is.
- A device password is stored as its scrypt hash plus a check value: HMAC-SHA256 over the
  serial number and the password under another derived key. Re-applying the same password
  then compares check values instead of running scrypt (deliberately slow); without the
  secret key the check value gives no shortcut for guessing the password. An activation code
  is stored the same way but with a fast hash (sztp.passwords), its check value marked as a
  code's, so a password and a code of the same text are never taken for one another.

The key is 32 random bytes, written as 64 hex digits on one line, in a file that only the
service user may read: `secret_key_file` when set, else the systemd credential `secret-key`
(`LoadCredential=`), else `secret-key` beside `admin_token_file`, created at first start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sztp.errors import SztpError, ValidationError
from sztp.passwords import SECRET_KINDS, SecretKind, hash_secret, verify_password
from sztp.pkcs11_uri import is_pkcs11_uri
from sztp.state.resources import (
    DEVICE,
    OWNER,
    PASSWORD_CHECK,
    BasicSecret,
    checked_secret,
    normalize_spec,
)

from .config import ServerConfig
from .logs import get_logger
from .store.base import Store
from .store.errors import ConflictError
from .store.model import Change
from .tokens import SERVER_ACTOR

_LOG = get_logger()

CREDENTIAL_NAME = "secret-key"
SEALED_PREFIX = "sztp-sealed:v1:"
# What a dry run puts in place of a new password's hash: dry runs never run scrypt, and this
# value is never stored (a dry run writes nothing) nor shown (password_hash is hidden).
UNHASHED = "<not hashed in a dry run>"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_SEAL_ATTEMPTS = 3


class SecretKeyError(SztpError):
    """The secret key file is missing, unreadable, too open or malformed."""


class SecretKey:
    """Seals owner private keys and computes password check values under one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise SecretKeyError(f"a secret key is {_KEY_BYTES} bytes, not {len(key)}")
        self._key = key
        self._sealing = AESGCM(_derive(key, b"sztp owner private key v1"))
        self._checking = _derive(key, b"sztp password check v1")

    def __reduce__(self) -> tuple[type[SecretKey], tuple[bytes]]:
        # Pickled only to hand the key to the admin writer process, over a local pipe.
        return (SecretKey, (self._key,))

    def __repr__(self) -> str:
        return "SecretKey(<hidden>)"

    # ---- owner private keys

    def seal(self, owner: str, private_key_pem: str) -> str:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._sealing.encrypt(nonce, private_key_pem.encode(), _owner_label(owner))
        return SEALED_PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, owner: str, sealed: str) -> str:
        """The PEM private key; SecretKeyError when `sealed` does not open under this key."""
        try:
            raw = base64.b64decode(sealed.removeprefix(SEALED_PREFIX), validate=True)
            nonce, ciphertext = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
            return self._sealing.decrypt(nonce, ciphertext, _owner_label(owner)).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SecretKeyError(
                f"the stored private key of owner {owner!r} cannot be decrypted with this "
                "server's secret key"
            ) from None

    # ---- device passwords

    def password_check(
        self, serial: str, secret: str, kind: SecretKind = SecretKind.PASSWORD
    ) -> str:
        message = serial.encode() + b"\0" + secret.encode("utf-8", "surrogatepass")
        if kind is SecretKind.ACTIVATION_CODE:
            message = b"activation code\0" + message
        return hmac.digest(self._checking, message, hashlib.sha256).hex()

    def password_matches(self, serial: str, secret: BasicSecret, check: object) -> bool:
        return isinstance(check, str) and hmac.compare_digest(
            self.password_check(serial, secret.text, secret.kind), check
        )

    def recognise_secret(
        self, serial: str, spec: Mapping[str, Any], current: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """`spec` with its `password` or `activation_code` replaced by the stored hash when it
        is the stored secret (its check value matches), else `spec` as it is: lets an
        unchanged device be recognised as such without normalising it."""
        if current.get("password_hash") is None or spec.get("password_hash") is not None:
            return spec  # most devices of a large fleet: nothing to recognise
        for kind in SECRET_KINDS:
            text = spec.get(kind.value)
            if isinstance(text, str) and self.password_matches(
                serial, BasicSecret(kind, text), current.get(PASSWORD_CHECK)
            ):
                return {**_without(spec, kind.value), "password_hash": current["password_hash"]}
        return spec

    # ---- specs bound for the store

    def normalize(
        self,
        kind: str,
        name: str,
        spec: Mapping[str, Any],
        current: Mapping[str, Any] | None,
        *,
        hash_passwords: bool,
    ) -> dict[str, Any]:
        """`normalize_spec` for a spec to be stored: its secrets in stored form.

        An owner's private key comes out sealed (the stored sealed text when the key is the
        stored one). A device password comes out as its hash plus check value; scrypt runs only
        for a password whose check value does not match, and never when `hash_passwords` is
        false (a dry run; the hash is then `UNHASHED`). `spec` may carry the stored secrets
        back (the admin API restores `"<hidden>"` to them).
        """
        if kind == OWNER:
            return self._normalize_owner(name, spec, current)
        if kind == DEVICE:
            return self._normalize_device(name, spec, current, hash_passwords=hash_passwords)
        return normalize_spec(kind, name, spec, current)

    def _normalize_owner(
        self, name: str, spec: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        stored = (current or {}).get("private_key")
        stored_pem = self.try_open(name, stored)
        wanted = dict(spec)
        if is_sealed(wanted.get("private_key")) and wanted["private_key"] == stored:
            if stored_pem is None:
                raise ValidationError(
                    f"{OWNER}[{name}].private_key",
                    "the stored key cannot be decrypted with this server's secret key (was the "
                    "key file replaced?); send the private key again",
                )
            wanted["private_key"] = stored_pem
        opened_current = None if current is None else {**current, "private_key": stored_pem}
        normalized = normalize_spec(OWNER, name, wanted, opened_current)
        pem = normalized["private_key"]
        if pem is not None and not is_pkcs11_uri(pem):
            kept = pem == stored_pem and is_sealed(stored)
            normalized["private_key"] = stored if kept else self.seal(name, pem)
        return normalized

    def try_open(self, owner: str, stored: object) -> str | None:
        """The PEM private key (or PKCS#11 URI) in a stored spec's `private_key`, or None when
        there is none or it does not open under this key."""
        if not isinstance(stored, str):
            return None
        if not is_sealed(stored):  # not sealed yet (sealed at the next start)
            return stored
        try:
            return self.open(owner, stored)
        except SecretKeyError:
            return None

    def _normalize_device(
        self,
        serial: str,
        spec: Mapping[str, Any],
        current: Mapping[str, Any] | None,
        *,
        hash_passwords: bool,
    ) -> dict[str, Any]:
        current = current or {}
        stored_hash = current.get("password_hash")
        check = current.get(PASSWORD_CHECK)
        as_stored = _without(current, PASSWORD_CHECK)
        secret = checked_secret(serial, spec)
        if secret is None:
            normalized = normalize_spec(DEVICE, serial, spec, as_stored)
            kept = stored_hash is not None and normalized["password_hash"] == stored_hash
            return _with_check(normalized, check if kept else None)
        # The rest of the spec is checked first: a refused spec costs no scrypt.
        normalized = normalize_spec(DEVICE, serial, _without(spec, secret.kind.value), as_stored)
        unchanged = stored_hash is not None and self.password_matches(serial, secret, check)
        if unchanged:
            normalized["password_hash"] = stored_hash
        elif not hash_passwords:
            normalized["password_hash"] = UNHASHED
        elif (
            check is None
            and stored_hash is not None
            and verify_password(secret.text, stored_hash, secret.kind)
        ):
            normalized["password_hash"] = stored_hash  # stored before check values: record one
        else:
            normalized["password_hash"] = hash_secret(secret.text, secret.kind)
        if not unchanged:
            check = self.password_check(serial, secret.text, secret.kind)
        return _with_check(normalized, check)


def _without(spec: Mapping[str, Any], field: str) -> dict[str, Any]:
    return {name: value for name, value in spec.items() if name != field}


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


def _with_check(spec: dict[str, Any], check: str | None) -> dict[str, Any]:
    # Only present when there is one, so specs stored before check values existed compare
    # equal to their re-applied form.
    if check is not None:
        spec[PASSWORD_CHECK] = check
    return spec


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(key)


def _owner_label(owner: str) -> bytes:
    return f"{OWNER}\0{owner}\0private_key".encode()


# ---- the key file


def key_file_location(config: ServerConfig, environ: Mapping[str, str]) -> tuple[Path, bool]:
    """Where the key is read from, and whether it may be created there when absent (only at
    the default place: a configured file or credential that is missing is an error)."""
    if config.secret_key_file is not None:
        return config.secret_key_file, False
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    if credentials:
        credential = Path(credentials) / CREDENTIAL_NAME
        try:
            given = credential.exists()
        except OSError as exc:
            # Taking the default file instead would start the server on another key.
            raise SecretKeyError(
                f"secret key credential {credential}: cannot read: {exc.strerror}"
            ) from None
        if given:
            return credential, False
    return config.admin_token_file.parent / CREDENTIAL_NAME, True


def load_secret_key(
    config: ServerConfig, environ: Mapping[str, str] | None = None, *, create: bool = True
) -> SecretKey:
    """The server's secret key; the default key file is created (0600) when absent and
    `create` allows. SecretKeyError names the file and the problem."""
    path, creatable = key_file_location(config, os.environ if environ is None else environ)
    if creatable and create and not path.exists():
        _create_key_file(path)
        _LOG.info("secret key created", extra={"path": str(path)})
    return SecretKey(read_key_file(path))


def check_key_file(config: ServerConfig, environ: Mapping[str, str]) -> None:
    """SecretKeyError when the key file cannot be used; writes nothing (a missing default file
    is fine: the server creates it)."""
    path, creatable = key_file_location(config, environ)
    if not creatable or path.exists():
        read_key_file(path)


def read_key_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise SecretKeyError(f"secret key file {path} is not a regular file")
            if mode & 0o077:
                raise SecretKeyError(
                    f"secret key file {path} is open to its group or others (mode "
                    f"{stat.S_IMODE(mode):04o}); make it 0600, owned by the service user"
                )
            text = handle.read(4 * _KEY_BYTES)
    except FileNotFoundError:
        raise SecretKeyError(
            f"secret key file {path} does not exist; restore it from your backup of the key "
            "(without it, stored owner keys cannot be used: see docs/server.md)"
        ) from None
    except OSError as exc:
        raise SecretKeyError(f"secret key file {path}: cannot read: {exc.strerror}") from None
    try:
        key = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != _KEY_BYTES:
        raise SecretKeyError(
            f"secret key file {path} must hold {2 * _KEY_BYTES} hex digits "
            f"({_KEY_BYTES} random bytes, e.g. from `openssl rand -hex {_KEY_BYTES}`)"
        )
    return key


def _create_key_file(path: Path) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: never follow a planted link or overwrite a file someone else prepared.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise SecretKeyError(f"cannot create secret key file {path}: {exc.strerror}") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(_KEY_BYTES) + "\n")


# ---- start-up


def seal_stored_private_keys(store: Store, secret_key: SecretKey) -> list[str]:
    """Seal the owner private keys stored in the clear (by a server before sealing existed);
    return their owners' names."""
    for _attempt in range(_SEAL_ATTEMPTS):
        revision = store.revision()
        plain = [
            owner
            for owner in store.list(OWNER)
            if owner.spec.get("private_key")
            and not is_sealed(owner.spec["private_key"])
            and not is_pkcs11_uri(owner.spec["private_key"])
        ]
        if not plain:
            return []
        changes = [
            Change(
                "update",
                OWNER,
                owner.name,
                {
                    **owner.spec,
                    "private_key": secret_key.seal(owner.name, owner.spec["private_key"]),
                },
                owner.spec,
            )
            for owner in plain
        ]
        try:
            store.apply(
                changes,
                actor=SERVER_ACTOR,
                expected_revision=revision,
                audit_details=[{"sealed": "private_key"}] * len(changes),
            )
        except ConflictError:
            continue  # another instance wrote meanwhile (perhaps sealing these): look again
        names = [change.name for change in changes]
        _LOG.info("owner private keys encrypted under the secret key", extra={"owners": names})
        return names
    raise SecretKeyError("the state kept changing while sealing owner private keys; restart")


def unopenable_owner_keys(store: Store, secret_key: SecretKey) -> list[str]:
    """Owners whose stored private key does not open under `secret_key` (a replaced or lost
    key file): they cannot sign until their key is applied again."""
    return [
        owner.name
        for owner in store.list(OWNER)
        if owner.spec.get("private_key") is not None
        and secret_key.try_open(owner.name, owner.spec["private_key"]) is None
    ]

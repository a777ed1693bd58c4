"""Keys held in a PKCS#11 token, named by a PKCS#11 URI: an owner's `private_key` (the
owner signing key) or a builtin LDevID issuer's `private_key_uri` (its CA key).

The library is `pkcs11_module`, the user PIN is in `pkcs11_pin_file` (never in the URI, which
is part of the state). Each server process opens the library, and one logged-in session per
token, at its first signature: a process that forked from one holding a session would share
the token's state without knowing it. The binding serialises nothing on its own, so every use
of the sessions goes through one lock; a signature takes the lock for its C_Sign alone.

A key is proven to match its certificate before it signs for it (a probe signature,
verified with the certificate's public key: no public key object is needed in the token).
Whatever goes wrong (no library, refused PIN, no such key, a mismatch, a token gone) is a
`TokenError` naming the token and the problem; it is logged once, and the key signs nothing
until a retry succeeds: a refused PIN is not tried again until the PIN file changes (tokens
lock after a few wrong PINs), other failures are retried after `RETRY_SECONDS`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pkcs11
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import exceptions as p11

from sztp.errors import SztpError, ValidationError
from sztp.pkcs11_uri import SCHEME, Pkcs11Uri, parse_pkcs11_uri
from sztp.protocol import pki

from .config import ServerConfig
from .logs import get_logger

if TYPE_CHECKING:
    from pkcs11._pkcs11 import lib as Library

_LOG = get_logger()

RETRY_SECONDS = 10.0
# Long enough for any PIN; a longer file is not a PIN file.
_MAX_PIN_BYTES = 256
_RSA_MECHANISMS = {
    "sha256": pkcs11.Mechanism.SHA256_RSA_PKCS,
    "sha384": pkcs11.Mechanism.SHA384_RSA_PKCS,
    "sha512": pkcs11.Mechanism.SHA512_RSA_PKCS,
}


class TokenError(SztpError):
    """A key in a token cannot be used; the message says which and why (never the PIN)."""


@dataclass
class _Session:
    session: pkcs11.Session
    label: str


class Pkcs11Keys:
    """This process's sessions on the tokens of one PKCS#11 library, opened at first use."""

    def __init__(
        self, module: Path | None, pin_file: Path | None, *, log_failures: bool = True
    ) -> None:
        self.module = module
        self.pin_file = pin_file
        # `sztp-server check` reports the failure itself, once.
        self._log_failures = log_failures
        self._lock = threading.Lock()
        self._library: Library | None = None
        self._sessions: dict[tuple[str, bytes], _Session] = {}
        # The key objects found, by URI: handles of the sessions above, dropped with them.
        self._keys: dict[str, pkcs11.SignMixin] = {}
        self._refused_pin: str | None = None
        # URI -> (monotonic time of the failure, the failure), while it is remembered.
        self._failures: dict[str, tuple[float, TokenError]] = {}

    @classmethod
    def from_config(cls, config: ServerConfig) -> Pkcs11Keys:
        return cls(config.pkcs11_module, config.pkcs11_pin_file)

    def credential(
        self, uri: str, certificates: Sequence[x509.Certificate]
    ) -> pki.SignerCredential:
        """A signing credential: `certificates[0]` with the token key `uri` names, proven to
        match it. TokenError (logged) when the key cannot be used."""
        with self._lock:
            key_type = self._key(uri).key_type
        try:
            signer = TokenKey(self, uri, key_type, certificates[0].public_key())
            signer.prove()
        except TokenError as exc:
            with self._lock:
                self._failed(uri, exc)
        with self._lock:
            self._failures.pop(uri, None)
        return pki.SignerCredential(certificates[0], signer, tuple(certificates[1:]))

    def sign(self, uri: str, data: bytes, mechanism: pkcs11.Mechanism) -> bytes:
        """`data` signed in its token by the key `uri` names; TokenError when the token
        fails (its sessions are then dropped, to be opened again at the next use)."""
        with self._lock:
            key = self._key(uri)
            try:
                return key.sign(data, mechanism=mechanism)
            except p11.PKCS11Error as exc:
                self._close_sessions()
                self._failed(uri, TokenError(f"{uri}: the token refused to sign: {_describe(exc)}"))

    def close(self) -> None:
        """Log out and close the sessions (the library stays loaded: it cannot be loaded
        twice in a process)."""
        with self._lock:
            self._close_sessions()

    # ---- with the lock held

    def _key(self, uri: str) -> pkcs11.SignMixin:
        failed = self._failures.get(uri)
        if failed is not None and time.monotonic() - failed[0] < RETRY_SECONDS:
            raise failed[1]
        if uri in self._keys:
            return self._keys[uri]
        try:
            key = self._find(parse_pkcs11_uri(uri))
        except (TokenError, ValidationError) as exc:
            self._failed(uri, TokenError(f"{uri}: {exc}"))
        self._keys[uri] = key
        return key

    def _find(self, uri: Pkcs11Uri) -> pkcs11.SignMixin:
        session = self._session(uri)
        try:
            key = session.session.get_key(
                object_class=pkcs11.ObjectClass.PRIVATE_KEY, label=uri.object, id=uri.id
            )
        except p11.NoSuchKey:
            raise TokenError(
                f"token {session.label!r} has no private key with {uri.describe()}"
            ) from None
        except p11.MultipleObjectsReturned:
            raise TokenError(
                f"token {session.label!r} has several private keys with {uri.describe()}: "
                "name one with both object= and id="
            ) from None
        except p11.PKCS11Error as exc:
            self._close_sessions()
            raise TokenError(f"token {session.label!r}: {_describe(exc)}") from None
        if not isinstance(key, pkcs11.SignMixin):
            raise TokenError(f"token {session.label!r}: the key with {uri.describe()} may not sign")
        return key

    def _session(self, uri: Pkcs11Uri) -> _Session:
        token = self._token(uri)
        # By the token itself: URIs that select it differently share its one login.
        known = (token.label, token.serial)
        if known in self._sessions:
            return self._sessions[known]
        pin = self._pin()
        if pin == self._refused_pin:
            raise TokenError(
                f"token {token.label!r} refused the PIN in {self.pin_file}; it is not tried "
                "again until that file changes"
            )
        try:
            session = token.open(user_pin=pin)
        except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange):
            self._refused_pin = pin
            raise TokenError(
                f"token {token.label!r} refused the PIN in {self.pin_file}; it is not tried "
                "again until that file changes"
            ) from None
        except p11.PKCS11Error as exc:
            raise TokenError(f"cannot log in to token {token.label!r}: {_describe(exc)}") from None
        opened = _Session(session, token.label)
        self._sessions[known] = opened
        return opened

    def _token(self, uri: Pkcs11Uri) -> pkcs11.Token:
        library = self._open_library()
        try:
            tokens = [
                token
                for token in library.get_tokens(
                    token_label=uri.token, token_flags=pkcs11.TokenFlag.TOKEN_INITIALIZED
                )
                if (uri.manufacturer is None or token.manufacturer_id == uri.manufacturer)
                and (uri.serial is None or _text(token.serial) == uri.serial)
                and (uri.model is None or token.model == uri.model)
            ]
        except p11.PKCS11Error as exc:
            raise TokenError(f"cannot list the tokens of {self.module}: {_describe(exc)}") from None
        if len(tokens) != 1:
            selection = str(Pkcs11Uri(uri.token, uri.manufacturer, uri.serial, uri.model))
            raise TokenError(
                f"{len(tokens) or 'no'} initialised tokens of {self.module} match "
                + (selection if selection != SCHEME else "(the URI names no token)")
                + ("; narrow the URI with token= or serial=" if tokens else "")
            )
        return tokens[0]

    def _open_library(self) -> Library:
        if self._library is None:
            if self.module is None:
                raise TokenError("a key is a PKCS#11 URI but the server has no pkcs11_module")
            try:
                self._library = pkcs11.lib(str(self.module))
            except p11.PKCS11Error as exc:
                raise TokenError(
                    f"cannot load PKCS#11 module {self.module}: {_describe(exc)}"
                ) from None
        return self._library

    def _pin(self) -> str:
        path = self.pin_file
        if path is None:
            raise TokenError("a key is a PKCS#11 URI but the server has no pkcs11_pin_file")
        try:
            with path.open("rb") as handle:
                mode = os.fstat(handle.fileno()).st_mode
                if mode & 0o077:
                    raise TokenError(
                        f"PIN file {path} is open to its group or others (mode "
                        f"{stat.S_IMODE(mode):04o}); make it 0600, owned by the service user"
                    )
                pin = handle.read(_MAX_PIN_BYTES + 1).rstrip(b"\r\n")
        except OSError as exc:
            raise TokenError(f"PIN file {path}: cannot read: {exc.strerror}") from None
        if not pin or len(pin) > _MAX_PIN_BYTES:
            raise TokenError(f"PIN file {path} must hold the PIN on one line")
        try:
            return pin.decode()  # PKCS#11 PINs are UTF-8
        except UnicodeDecodeError:
            raise TokenError(f"PIN file {path} is not UTF-8 text") from None

    def _failed(self, uri: str, error: TokenError) -> NoReturn:
        """Remember `error` for `uri`, log it when it is news, and raise it."""
        known = self._failures.get(uri)
        if self._log_failures and (known is None or str(known[1]) != str(error)):
            _LOG.warning("key in PKCS#11 token unusable", extra={"uri": uri, "problem": str(error)})
        self._failures[uri] = (time.monotonic(), error)
        raise error

    def _close_sessions(self) -> None:
        for opened in self._sessions.values():
            with contextlib.suppress(p11.PKCS11Error):  # already gone with its token
                opened.session.close()
        self._sessions.clear()
        self._keys.clear()


class TokenKey:
    """A `pki.Signer`: the private key `uri` names, signing in its token for the public key
    of a certificate (once `prove` has shown they match)."""

    def __init__(
        self,
        keys: Pkcs11Keys,
        uri: str,
        key_type: pkcs11.KeyType,
        certified: CertificatePublicKeyTypes,
    ) -> None:
        if not isinstance(certified, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise TokenError(f"{uri}: the certificate's key is neither EC nor RSA")
        wanted = (
            pkcs11.KeyType.RSA if isinstance(certified, rsa.RSAPublicKey) else pkcs11.KeyType.EC
        )
        if key_type != wanted:
            raise TokenError(
                f"{uri} is a {key_type.name} key but the certificate's is {wanted.name}"
            )
        self.uri = uri
        self._keys = keys
        self._public_key: pki.PublicKey = certified

    def public_key(self) -> pki.PublicKey:
        return self._public_key

    def sign(self, data: bytes, hash: hashes.HashAlgorithm) -> bytes:
        if isinstance(self._public_key, rsa.RSAPublicKey):
            mechanism = _RSA_MECHANISMS.get(hash.name)
            if mechanism is None:
                raise TokenError(f"{self.uri}: no RSA signing mechanism for {hash.name}")
            return self._keys.sign(self.uri, data, mechanism)
        # Hashed here, signed raw (CKM_ECDSA): every token has that mechanism.
        digest = hashes.Hash(hash)
        digest.update(data)
        raw = self._keys.sign(self.uri, digest.finalize(), pkcs11.Mechanism.ECDSA)
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )

    def prove(self) -> None:
        """TokenError unless the token key signs for the certificate's public key."""
        probe = secrets.token_bytes(32)
        hash = pki.signature_hash(self)
        signature = self.sign(probe, hash)
        try:
            if isinstance(self._public_key, rsa.RSAPublicKey):
                self._public_key.verify(signature, probe, padding.PKCS1v15(), hash)
            else:
                self._public_key.verify(signature, probe, ec.ECDSA(hash))
        except InvalidSignature:
            raise TokenError(f"{self.uri} is not the key of its certificate") from None


def _text(value: bytes) -> str:
    return value.decode(errors="replace").rstrip(" \0")


def _describe(error: p11.PKCS11Error) -> str:
    """The binding's error as a phrase: its class names the PKCS#11 return value."""
    detail = str(error)
    return type(error).__name__ + (f" ({detail})" if detail else "")

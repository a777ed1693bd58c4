"""Who is this device? IDevID client certificate (direct TLS or a trusted proxy) or HTTP Basic.

Every failure looks the same to the device (one `access-denied`), so a caller cannot learn
which serial numbers exist; the precise reason goes to the log. Every failed Basic login (past
base64) costs the same single scrypt check, so the time an answer takes does not tell either.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import ipaddress
import os
import threading
from dataclasses import dataclass
from functools import partial
from urllib.parse import unquote

from cryptography import x509

from sztp.errors import SztpError, ValidationError
from sztp.passwords import (
    PasswordHash,
    SecretKind,
    matches,
    parse_password_hash,
    unmatchable_hash,
)
from sztp.protocol import certs, pki
from sztp.refusals import Refusal

from ..config import ServerConfig
from ..context import Snapshot
from ..logs import get_logger
from .password_logins import (
    LoginLimits,
    PasswordWorkers,
    client_address,
    shown,
)
from .rate_limits import RateLimits

_LOG = get_logger()

# Bounds for the memo of verified identities, so a flood of distinct certificates or
# passwords cannot grow memory without limit.
_MEMO_LIMIT = 50_000


class AuthenticationFailed(SztpError):
    """The request does not prove a device identity; `reason` and the message are for the
    operator only, and so is `serial`: the serial a trusted certificate named, when that was
    not enough (a serial the fleet does not hold)."""

    def __init__(self, reason: Refusal, message: str, *, serial: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.serial = serial


# How much of a refused proxy header the log may show: enough to tell a proxy's format from
# garbage, never a whole certificate.
_HEADER_PREVIEW = 16
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class PeerInfo:
    """What the transport knows: the remote address, the certificates the TLS client sent
    (DER, its own first, then the intermediates it chose to send; empty without one), and
    every request header field as received, repeats included, as (name, value) pairs."""

    remote: str | None
    client_chain: tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...]

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name`; names are case-insensitive (RFC 9110 §5.1)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


@dataclass(frozen=True)
class Identified:
    serial: str
    # Proved by its IDevID (TLS or a trusted proxy's header), not only by a password.
    by_certificate: bool


class DeviceAuthenticator:
    def __init__(self, config: ServerConfig, login_limits: LoginLimits | None = None) -> None:
        """`login_limits`: the server's (shared by its processes); by default, tables of
        this authenticator's own, as `config` sets them."""
        self._config = config
        self._lock = threading.Lock()
        self._certificate_memo: dict[tuple[int, tuple[bytes, ...] | str], _ChainIdentity] = {}
        self._password_memo: dict[tuple[int, str], bytes] = {}
        # Password memo entries are HMACs under a per-process key: nothing stored in memory
        # lets anyone recover or test a password without this process's key.
        self._memo_key = os.urandom(32)
        self._unmatchable = unmatchable_hash()
        if login_limits is None:
            login_limits = RateLimits.of(config, shared=False).logins
        self._login_limits = login_limits
        self._password_workers = PasswordWorkers(config.password_workers, config.password_queue)

    def close(self) -> None:
        self._password_workers.close()

    async def authenticate(self, snapshot: Snapshot, peer: PeerInfo) -> str:
        """The device serial number, or AuthenticationFailed."""
        return (await self.identify(snapshot, peer)).serial

    async def identify(self, snapshot: Snapshot, peer: PeerInfo) -> Identified:
        """Who the device is, and whether its certificate proved it; or AuthenticationFailed."""
        certificate_serial = self._certificate_identity(snapshot, peer)
        authorizations = peer.header_values("Authorization")
        if len(authorizations) > 1:
            raise AuthenticationFailed(
                Refusal.MALFORMED_CREDENTIALS, f"{len(authorizations)} Authorization headers"
            )
        password_serial = None
        if authorizations:
            password_serial = await self._password_identity(
                snapshot, authorizations[0], peer.remote, certificate_serial
            )
        serial = certificate_serial or password_serial
        if serial is None:
            raise AuthenticationFailed(
                Refusal.NO_CREDENTIALS, "no client certificate and no Basic credentials"
            )
        if snapshot.device(serial) is None:
            raise AuthenticationFailed(
                Refusal.UNKNOWN_SERIAL,
                f"device {serial} authenticated but is not known",
                serial=certificate_serial,
            )
        return Identified(serial, by_certificate=serial == certificate_serial)

    def _presented_chain(self, peer: PeerInfo) -> tuple[bytes, ...] | str | None:
        """The client certificate and its intermediates as presented: DER from TLS, or the
        proxy header's text (URL-encoded PEM, the client's certificate first).

        The header counts only from a trusted proxy, and only once: a proxy that appends its
        header to one the client already sent would otherwise let the client choose the
        identity. A comma is never part of (URL-encoded) PEM certificates, so a comma means an
        intermediary merged repeated headers into one.
        """
        name = self._config.client_cert_header
        values = peer.header_values(name)
        if not values:
            return peer.client_chain or None
        if not self._from_trusted_proxy(peer.remote):
            raise AuthenticationFailed(
                Refusal.UNTRUSTED_PROXY_HEADER,
                f"{name} header from untrusted address {peer.remote}",
            )
        if len(values) > 1 or "," in values[0]:
            what = f"{len(values)} {name} headers" if len(values) > 1 else f"merged {name} header"
            raise AuthenticationFailed(
                Refusal.UNTRUSTED_PROXY_HEADER,
                f"{what}; exactly one header is accepted "
                f"(values starting {', '.join(_preview(value) for value in values)})",
            )
        if not values[0].strip():
            raise AuthenticationFailed(Refusal.UNTRUSTED_PROXY_HEADER, f"empty {name} header")
        return values[0]

    def _from_trusted_proxy(self, remote: str | None) -> bool:
        if remote is None:
            return False
        try:
            address = ipaddress.ip_address(remote)
        except ValueError:
            return False
        # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d; match it against IPv4
        # entries too (IPv6 entries still see the address as it came).
        candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        return any(
            candidate in network
            for candidate in candidates
            for network in self._config.trusted_proxies
        )

    def _certificate_identity(self, snapshot: Snapshot, peer: PeerInfo) -> str | None:
        presented = self._presented_chain(peer)
        if presented is None:
            return None
        # Keyed by what was presented, so a returning device costs one dictionary lookup:
        # no URL decoding, PEM parsing or chain check until the state changes or a
        # certificate of the path expires.
        memo_key = (snapshot.revision, presented)
        with self._lock:
            known = self._certificate_memo.get(memo_key)
        if known is not None and dt.datetime.now(dt.UTC) < known.valid_until:
            return known.serial
        identity = _identity_from_trusted_chain(snapshot, _load_presented(presented))
        with self._lock:
            if len(self._certificate_memo) >= _MEMO_LIMIT:
                self._certificate_memo.clear()
            self._certificate_memo[memo_key] = identity
        return identity.serial

    async def _password_identity(
        self,
        snapshot: Snapshot,
        authorization: str,
        remote: str | None,
        certified: str | None,
    ) -> str:
        """The serial whose password `authorization` gives, which must be `certified` when a
        client certificate named it; AuthenticationFailed, TooManyFailures or
        PasswordWorkersBusy otherwise (the last two without a check)."""
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise AuthenticationFailed(
                Refusal.MALFORMED_CREDENTIALS, f"unsupported authorization scheme {scheme!r}"
            )
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise AuthenticationFailed(
                Refusal.MALFORMED_CREDENTIALS, "malformed Basic credentials"
            ) from None
        # From here on every failure is checked like a wrong password, against a hash that
        # nothing matches when there is none to use.
        try:
            serial, separator, password = decoded.decode().partition(":")
        except UnicodeDecodeError:
            serial, separator, password = "", "", ""
        if certified is not None and serial != certified:
            # Refused before any check: a certificate holder learns nothing about another
            # serial's password, not even from a remembered login's speed.
            raise AuthenticationFailed(
                Refusal.SERIAL_MISMATCH,
                f"client certificate names {certified} but Basic auth {shown(serial)}",
            )
        if separator:
            stored, problem = self._stored_hash(snapshot, serial)
        else:
            stored, problem = None, (Refusal.MALFORMED_CREDENTIALS, "malformed Basic credentials")
        target = stored or self._unmatchable
        fingerprint = hmac.new(
            self._memo_key, target.salt + target.key + password.encode(), hashlib.sha256
        ).digest()
        memo_key = (snapshot.revision, serial)
        with self._lock:
            remembered = self._password_memo.get(memo_key)
        if remembered is not None and hmac.compare_digest(remembered, fingerprint):
            return serial
        # A proxy's address is every device behind it: only serials are limited through it.
        address = None if self._from_trusted_proxy(remote) else client_address(remote)
        # A certificate has proved who this is: no one else's failures may lock it out.
        limited = certified is None
        if limited:
            self._login_limits.check(address, serial)
        # An activation code is checked at once (a hash of microseconds). A wrong one then
        # costs a scrypt like every other failure, so how long a refusal takes tells no
        # known serial from an unknown one, nor a code from a password.
        code = target.kind is SecretKind.ACTIVATION_CODE
        checking = None
        if not (code and matches(password, target)):
            slow_target = self._unmatchable if code else target
            checking = self._password_workers.start(partial(matches, password, slow_target))
        if checking is not None:
            if limited:
                self._login_limits.charge(address, serial)
            if not await checking:
                wrong = "activation code" if code else "password"
                raise AuthenticationFailed(
                    *(problem or (Refusal.WRONG_SECRET, f"wrong {wrong} for {shown(serial)}"))
                )
            if limited:
                self._login_limits.refund(address, serial)
        with self._lock:
            if len(self._password_memo) >= _MEMO_LIMIT:
                self._password_memo.clear()
            self._password_memo[memo_key] = fingerprint
        return serial

    @staticmethod
    def _stored_hash(
        snapshot: Snapshot, serial: str
    ) -> tuple[PasswordHash | None, tuple[Refusal, str] | None]:
        """(the device's password hash, None), or (None, why there is none to check)."""
        device = snapshot.device(serial)
        if device is None:
            return None, (Refusal.UNKNOWN_SERIAL, f"no device {shown(serial)}")
        text = device.get("password_hash")
        if not text:
            return None, (Refusal.NO_PASSWORD, f"no password login for {shown(serial)}")
        try:
            return parse_password_hash(text), None
        except ValidationError as exc:
            # Refused when written; one that got into the store anyway is the server's
            # problem, not the device's.
            _LOG.error(
                "stored password hash unusable; set the device password again",
                extra={"serial": serial, "reason": exc.message},
            )
            return None, (
                Refusal.UNUSABLE_STORED_SECRET,
                f"stored password_hash of {shown(serial)} is unusable",
            )


def _preview(value: str) -> str:
    """A short prefix of a header value for the log, never the whole content."""
    shown = value[:_HEADER_PREVIEW]
    return repr(shown + "…") if len(value) > _HEADER_PREVIEW else repr(shown)


def _load_presented(presented: tuple[bytes, ...] | str) -> list[x509.Certificate]:
    """The presented certificates, the client's own first; at most as many as a path may
    hold (`certs.MAX_PATH_LENGTH`), counted before any is parsed."""
    if isinstance(presented, str):
        # URL-encoded PEM is ASCII; other bytes reach us as lone surrogates (aiohttp decodes
        # headers with surrogateescape) and could not even be encoded again.
        if not presented.isascii():
            raise AuthenticationFailed(
                Refusal.MALFORMED_CREDENTIALS,
                "client certificate header holds bytes other than ASCII",
            )
        text = unquote(presented)
        count = text.count(_PEM_BEGIN)
    else:
        count = len(presented)
    if count > certs.MAX_PATH_LENGTH:
        raise AuthenticationFailed(
            Refusal.MALFORMED_CREDENTIALS,
            f"client presented {count} certificates; at most {certs.MAX_PATH_LENGTH} are accepted",
        )
    if isinstance(presented, str):
        try:
            return pki.load_certificates_pem(text.encode())
        except SztpError as exc:
            raise AuthenticationFailed(
                Refusal.MALFORMED_CREDENTIALS, f"client certificate header: {exc}"
            ) from None
    try:
        return [x509.load_der_x509_certificate(der) for der in presented]
    except ValueError:
        raise AuthenticationFailed(
            Refusal.MALFORMED_CREDENTIALS, "client certificate is not valid DER"
        ) from None


@dataclass(frozen=True)
class _ChainIdentity:
    """The serial a verified chain names, and until when that chain is valid."""

    serial: str
    valid_until: dt.datetime


def _identity_from_trusted_chain(
    snapshot: Snapshot, presented: list[x509.Certificate]
) -> _ChainIdentity:
    """The serial number in the client's certificate (`presented[0]`), once it chains to a
    trust anchor, the rest presented being untrusted intermediates, and may authenticate a
    TLS client; with the first expiry along the path."""
    certificate, intermediates = presented[0], presented[1:]
    reasons = []
    for anchor in snapshot.trust_anchors:
        try:
            path = certs.verify_chain(
                certificate, intermediates=intermediates, trust_anchors=anchor.certificates
            )
        except SztpError as exc:
            reasons.append(f"{anchor.name}: {exc}")
            continue
        try:
            certs.check_client_auth(certificate)
            serial = pki.serial_from_certificate(certificate, anchor.serial_pattern)
        except SztpError as exc:
            raise AuthenticationFailed(
                Refusal.UNUSABLE_CERTIFICATE, f"client certificate: {exc}"
            ) from None
        return _ChainIdentity(serial, min(item.not_valid_after_utc for item in path))
    subject = certs.describe(certificate)
    detail = "; ".join(reasons) or "no trust anchors are configured"
    now = dt.datetime.now(dt.UTC)
    outside = not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc
    reason = Refusal.EXPIRED_CERTIFICATE if outside else Refusal.UNTRUSTED_CERTIFICATE
    raise AuthenticationFailed(reason, f"client certificate {subject} is not trusted ({detail})")

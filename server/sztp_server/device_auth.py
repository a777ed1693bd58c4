"""Who is this device? IDevID client certificate (direct TLS or a trusted proxy) or HTTP Basic.

Every failure looks the same to the device (one `access-denied`), so a caller cannot learn
which serial numbers exist; the precise reason goes to the log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import threading
from dataclasses import dataclass
from urllib.parse import unquote

from cryptography import x509

from sztpctl.errors import SztpError
from sztpctl.passwords import verify_password
from sztpctl.protocol import certs, pki

from .config import ServerConfig
from .context import Snapshot

# Bounds for the memo of verified identities, so a flood of distinct certificates or
# passwords cannot grow memory without limit.
_MEMO_LIMIT = 50_000


class AuthenticationFailed(SztpError):
    """The request does not prove a device identity; the message is for the log only."""


# How much of a refused proxy header the log may show: enough to tell a proxy's format from
# garbage, never a whole certificate.
_HEADER_PREVIEW = 16


@dataclass(frozen=True)
class PeerInfo:
    """What the transport knows: the remote address, the TLS client certificate (DER), and
    every request header field as received, repeats included, as (name, value) pairs."""

    remote: str | None
    client_certificate: bytes | None
    headers: tuple[tuple[str, str], ...]

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name`; names are case-insensitive (RFC 9110 §5.1)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]


class DeviceAuthenticator:
    def __init__(self, config: ServerConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._certificate_memo: dict[tuple[int, bytes | str], str] = {}
        self._password_memo: dict[tuple[int, str], bytes] = {}
        # Password memo entries are HMACs under a per-process key: nothing stored in memory
        # lets anyone recover or test a password without this process's key.
        self._memo_key = os.urandom(32)

    async def authenticate(self, snapshot: Snapshot, peer: PeerInfo) -> str:
        """The device serial number, or AuthenticationFailed."""
        certificate_serial = self._certificate_identity(snapshot, peer)
        authorizations = peer.header_values("Authorization")
        if len(authorizations) > 1:
            raise AuthenticationFailed(f"{len(authorizations)} Authorization headers")
        password_serial = None
        if authorizations:
            password_serial = await self._password_identity(snapshot, authorizations[0])
        if certificate_serial and password_serial and certificate_serial != password_serial:
            raise AuthenticationFailed(
                f"client certificate names {certificate_serial} but Basic auth {password_serial}"
            )
        serial = certificate_serial or password_serial
        if serial is None:
            raise AuthenticationFailed("no client certificate and no Basic credentials")
        if snapshot.device(serial) is None:
            raise AuthenticationFailed(f"device {serial} authenticated but is not known")
        return serial

    def _presented_certificate(self, peer: PeerInfo) -> bytes | str | None:
        """The client certificate as presented: DER from TLS, or the proxy header's text.

        The header counts only from a trusted proxy, and only once: a proxy that appends its
        header to one the client already sent would otherwise let the client choose the
        identity. A comma is never part of a (URL-encoded) PEM certificate, so a comma means an
        intermediary merged repeated headers into one.
        """
        name = self._config.client_cert_header
        values = peer.header_values(name)
        if not values:
            return peer.client_certificate
        if not self._from_trusted_proxy(peer.remote):
            raise AuthenticationFailed(f"{name} header from untrusted address {peer.remote}")
        if len(values) > 1 or "," in values[0]:
            what = f"{len(values)} {name} headers" if len(values) > 1 else f"merged {name} header"
            raise AuthenticationFailed(
                f"{what}; exactly one certificate is accepted "
                f"(values starting {', '.join(_preview(value) for value in values)})"
            )
        if not values[0].strip():
            raise AuthenticationFailed(f"empty {name} header")
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
        presented = self._presented_certificate(peer)
        if presented is None:
            return None
        # Keyed by what was presented, so a returning device costs one dictionary lookup:
        # no URL decoding, PEM parsing or chain check until the state changes.
        memo_key = (snapshot.revision, presented)
        with self._lock:
            known = self._certificate_memo.get(memo_key)
        if known is not None:
            return known
        serial = _serial_from_trusted_certificate(snapshot, _load_presented(presented))
        with self._lock:
            if len(self._certificate_memo) >= _MEMO_LIMIT:
                self._certificate_memo.clear()
            self._certificate_memo[memo_key] = serial
        return serial

    async def _password_identity(self, snapshot: Snapshot, authorization: str) -> str:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise AuthenticationFailed(f"unsupported authorization scheme {scheme!r}")
        try:
            serial, separator, password = (
                base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise AuthenticationFailed("malformed Basic credentials") from None
        if not separator:
            raise AuthenticationFailed("malformed Basic credentials")
        device = snapshot.device(serial)
        stored = device.get("password_hash") if device is not None else None
        if not stored:
            raise AuthenticationFailed(f"no password login for {serial!r}")
        fingerprint = hmac.new(self._memo_key, f"{stored}\0{password}".encode(), hashlib.sha256)
        memo_key = (snapshot.revision, serial)
        with self._lock:
            remembered = self._password_memo.get(memo_key)
        if remembered is not None and hmac.compare_digest(remembered, fingerprint.digest()):
            return serial
        # scrypt is deliberately slow: keep it off the event loop.
        if not await asyncio.to_thread(verify_password, password, stored):
            raise AuthenticationFailed(f"wrong password for {serial!r}")
        with self._lock:
            if len(self._password_memo) >= _MEMO_LIMIT:
                self._password_memo.clear()
            self._password_memo[memo_key] = fingerprint.digest()
        return serial


def _preview(value: str) -> str:
    """A short prefix of a header value for the log, never the whole content."""
    shown = value[:_HEADER_PREVIEW]
    return repr(shown + "…") if len(value) > _HEADER_PREVIEW else repr(shown)


def _load_presented(presented: bytes | str) -> x509.Certificate:
    if isinstance(presented, bytes):
        try:
            return x509.load_der_x509_certificate(presented)
        except ValueError:
            raise AuthenticationFailed("client certificate is not valid DER") from None
    try:
        return pki.load_certificates_pem(unquote(presented).encode())[0]
    except SztpError as exc:
        raise AuthenticationFailed(f"client certificate header: {exc}") from None


def _serial_from_trusted_certificate(snapshot: Snapshot, certificate: x509.Certificate) -> str:
    reasons = []
    for anchor in snapshot.trust_anchors:
        try:
            certs.verify_chain(certificate, trust_anchors=anchor.certificates)
        except SztpError as exc:
            reasons.append(f"{anchor.name}: {exc}")
            continue
        try:
            return pki.serial_from_certificate(certificate, anchor.serial_pattern)
        except SztpError as exc:
            raise AuthenticationFailed(f"client certificate: {exc}") from None
    subject = certificate.subject.rfc4514_string()
    detail = "; ".join(reasons) or "no trust anchors are configured"
    raise AuthenticationFailed(f"client certificate {subject} is not trusted ({detail})")

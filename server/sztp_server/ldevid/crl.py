"""Certificate revocation lists (RFC 5280) of the builtin LDevID issuers.

The device workers hold their issuers (`IssuerPool`); the admin process, which answers for a
CRL, loads a builtin issuer's CA credential itself, from the same configuration, the first
time that issuer's CRL is asked for, and keeps it. A `cmp` or `hook` issuer's CA publishes its
own CRL.

The CRL number is the moment the CRL was signed, in microseconds since 1970: it grows with
each CRL signed, by any instance of the server and after a restore of the database from a
backup, where a count of revocations would repeat numbers.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Final

from cryptography import x509

from sztp.protocol import pki
from sztp.revocation import DEFAULT_REVOCATION_REASON

from ..config import LdevidIssuer
from ..pkcs11_keys import Pkcs11Keys
from ..store.base import RevokedEntry
from .issuers import BuiltinIssuer, authority_key_identifier

# RFC 5280 CRLReason names as the extension encodes them; `unspecified` is left out of an
# entry, as RFC 5280 (5.3.1) asks.
REASON_FLAGS: Final[Mapping[str, x509.ReasonFlags]] = {
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
}


class CrlSigners:
    """The builtin issuers' CA credentials, each loaded once, when its first CRL is signed
    (a key that cannot be read fails that CRL, and is read again for the next)."""

    def __init__(self, configs: Sequence[LdevidIssuer], tokens: Pkcs11Keys | None) -> None:
        self._configs = {config.name: config for config in configs if config.type == "builtin"}
        self._tokens = tokens
        self._loaded: dict[str, BuiltinIssuer] = {}
        self._lock = threading.Lock()

    def sign(
        self, name: str, revoked: Sequence[RevokedEntry], now: datetime
    ) -> x509.CertificateRevocationList:
        """Blocking: the key file is read, or the token opened, the first time. IssuerError
        when that fails."""
        validity = timedelta(days=self._configs[name].crl_validity_days)
        return build_crl(self._issuer(name).ca, revoked, now, validity)

    def _issuer(self, name: str) -> BuiltinIssuer:
        with self._lock:  # admin requests run in several threads: one load per issuer
            issuer = self._loaded.get(name)
            if issuer is None:
                issuer = self._loaded[name] = BuiltinIssuer(self._configs[name], self._tokens)
            return issuer


def build_crl(
    ca: pki.Credential | pki.SignerCredential,
    revoked: Sequence[RevokedEntry],
    now: datetime,
    validity: timedelta,
) -> x509.CertificateRevocationList:
    """The CA's CRL listing `revoked`, current from `now` for `validity`."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + validity)
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1_000_000)), critical=False)
        .add_extension(authority_key_identifier(ca), critical=False)
    )
    for serial_number, revoked_at, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial_number, 16))
            .revocation_date(revoked_at)
        )
        if reason != DEFAULT_REVOCATION_REASON:
            entry = entry.add_extension(x509.CRLReason(REASON_FLAGS[reason]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return pki.sign_crl(builder, ca)

"""When what the server hands out or relies on stops being valid: device vouchers
(`expires-on`), owner certificate chains, trust anchors, the server's own TLS certificates and
the LDevIDs it issued (each device's newest that is not revoked); what expires within
`expiry_warning_days` is shown by `GET /api/v1/status` (`sztpctl status`) and /metrics.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509

from sztp.errors import SztpError
from sztp.protocol import pki
from sztp.protocol.voucher import read_stored_voucher
from sztp.state.resources import DEVICE, OWNER, TRUST_ANCHOR

from .compact_specs import CompactSpecs

if TYPE_CHECKING:
    from .context import Snapshot

VOUCHER = "voucher"
OWNER_CERTIFICATE = "owner-certificate"
TRUST_ANCHOR_CERTIFICATE = "trust-anchor"
TLS_CERTIFICATE = "tls-certificate"
LDEVID = "ldevid"
EXPIRY_KINDS = (VOUCHER, OWNER_CERTIFICATE, TRUST_ANCHOR_CERTIFICATE, TLS_CERTIFICATE, LDEVID)
# The issued LDevIDs are read from the store again after this long: other processes issue
# them, and a status or metrics read must not scan them each time.
LDEVID_REFRESH = timedelta(minutes=1)
# The soonest expiries the status names; the counts cover them all.
SOONEST_SHOWN = 50
# Weeks (from the Monday, 00:00 UTC, of the current one) the expiry calendar covers.
CALENDAR_WEEKS = 13


@dataclass(frozen=True, order=True)
class Expiry:
    not_after: datetime
    kind: str
    name: str  # the resource (device serial, owner, trust anchor) or the listener


@dataclass(frozen=True)
class ExpiringSoon:
    """What expires before `until` (or has expired): counted by kind, the soonest named."""

    until: datetime
    counts: dict[str, int]
    soonest: tuple[Expiry, ...]
    next_by_kind: dict[str, datetime]  # the earliest expiry of each kind, however far
    # By week from this one's Monday: (its Monday, count by kind); and what expired before.
    calendar: tuple[tuple[datetime, dict[str, int]], ...]
    earlier: dict[str, int]


class ExpiryDates:
    """Every expiry date of a snapshot and of the TLS certificate files, worked out once per
    snapshot revision (on a store thread: a fleet's vouchers are parsed there); a voucher
    already seen, by its text, is not parsed again, nor a TLS file whose size and modification
    time are those of its last reading."""

    def __init__(
        self,
        tls_files: Sequence[tuple[str, Path]],
        ldevids: Callable[[], Iterable[tuple[str, datetime]]] = tuple,
    ) -> None:
        self._tls_files = tls_files
        self._ldevids = ldevids
        self._ldevid_dates = _Dated([])
        self._ldevids_read: datetime | None = None
        self._lock = threading.Lock()
        self._revision = -1
        self._state_dates = _Dated([])
        self._voucher_dates: dict[str, datetime | None] = {}
        self._tls_dates: dict[Path, tuple[tuple[int, int], datetime | None]] = {}

    def soon(self, snapshot: Snapshot, now: datetime, within: timedelta) -> ExpiringSoon:
        until = now + within
        state = self._of_state(snapshot)
        tls = _Dated(sorted([*self._of_tls_files(), *self._of_ldevids(now).dates]))
        counts = {kind: state.count(kind, until) + tls.count(kind, until) for kind in EXPIRY_KINDS}
        next_by_kind = {**state.first_by_kind, **tls.first_by_kind}
        first = heapq.merge(state.dates, tls.dates)
        soonest = tuple(
            expiry for expiry in itertools.islice(first, SOONEST_SHOWN) if expiry.not_after <= until
        )
        monday = (now - timedelta(days=now.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        bounds = [monday + timedelta(weeks=week) for week in range(CALENDAR_WEEKS + 1)]

        def before(moment: datetime) -> dict[str, int]:
            return {
                kind: state.count_before(kind, moment) + tls.count_before(kind, moment)
                for kind in EXPIRY_KINDS
            }

        counted = [before(bound) for bound in bounds]
        calendar = tuple(
            (start, {kind: later[kind] - earlier[kind] for kind in EXPIRY_KINDS})
            for start, earlier, later in zip(bounds, counted, counted[1:], strict=False)
        )
        return ExpiringSoon(until, counts, soonest, next_by_kind, calendar, counted[0])

    def _of_state(self, snapshot: Snapshot) -> _Dated:
        with self._lock:
            if snapshot.revision != self._revision:
                self._state_dates = _Dated(
                    sorted(
                        [
                            *self._of_vouchers(snapshot.state.get(DEVICE, {})),
                            *_of_certificate_specs(
                                snapshot, OWNER, "certificate_chain", OWNER_CERTIFICATE
                            ),
                            *_of_certificate_specs(
                                snapshot, TRUST_ANCHOR, "certificates", TRUST_ANCHOR_CERTIFICATE
                            ),
                        ]
                    )
                )
                self._revision = snapshot.revision
            return self._state_dates

    def _of_vouchers(self, devices: Any) -> list[Expiry]:
        pairs: Iterable[tuple[str, Any]] = (
            devices.values_of(VOUCHER)
            if isinstance(devices, CompactSpecs)
            else ((name, spec.get(VOUCHER)) for name, spec in devices.items())
        )
        seen, found = self._voucher_dates, []
        dates: dict[str, datetime | None] = {}
        for serial, text in pairs:
            if not text:
                continue
            expires = seen[text] if text in seen else _voucher_expiry(text)
            dates[text] = expires
            if expires is not None:
                found.append(Expiry(expires, VOUCHER, serial))
        self._voucher_dates = dates  # vouchers no longer stored are forgotten
        return found

    def _of_ldevids(self, now: datetime) -> _Dated:
        with self._lock:
            read = self._ldevids_read
        if read is None or not read <= now < read + LDEVID_REFRESH:
            dated = _Dated(
                sorted(Expiry(until, LDEVID, device) for device, until in self._ldevids())
            )
            with self._lock:
                self._ldevid_dates, self._ldevids_read = dated, now
        with self._lock:
            return self._ldevid_dates

    def _of_tls_files(self) -> Iterator[Expiry]:
        for name, path in self._tls_files:
            expires = self._tls_file_expiry(path)
            if expires is not None:
                yield Expiry(expires, TLS_CERTIFICATE, name)

    def _tls_file_expiry(self, path: Path) -> datetime | None:
        """When the first certificate of `path` to expire does (None: unreadable, which the TLS
        set-up reports), read again only when the file has changed."""
        try:
            status = path.stat()
        except OSError:
            return None
        version = (status.st_mtime_ns, status.st_size)
        with self._lock:
            known = self._tls_dates.get(path)
        if known is not None and known[0] == version:
            return known[1]
        try:
            expires: datetime | None = _earliest(pki.load_certificates_pem(path.read_bytes()))
        except (OSError, SztpError, ValueError):
            expires = None
        with self._lock:
            self._tls_dates[path] = (version, expires)
        return expires


class _Dated:
    """Expiries in date order, with each kind's dates for counting by bisection: a status
    call costs a look-up, not a pass over the fleet's vouchers."""

    def __init__(self, dates: list[Expiry]) -> None:
        self.dates = dates
        self._by_kind: dict[str, list[datetime]] = {}
        for expiry in dates:
            self._by_kind.setdefault(expiry.kind, []).append(expiry.not_after)
        self.first_by_kind = {kind: found[0] for kind, found in self._by_kind.items()}

    def count(self, kind: str, until: datetime) -> int:
        """Those of `kind` that expire at `until` or before."""
        return bisect.bisect_right(self._by_kind.get(kind, []), until)

    def count_before(self, kind: str, moment: datetime) -> int:
        """Those of `kind` that expire before `moment`."""
        return bisect.bisect_left(self._by_kind.get(kind, []), moment)


def _of_certificate_specs(snapshot: Snapshot, kind: str, field: str, shown: str) -> list[Expiry]:
    found = []
    for name, spec in snapshot.state.get(kind, {}).items():
        certificates = pki.load_certificates_pem(spec[field].encode())
        found.append(Expiry(_earliest(certificates), shown, name))
    return found


def _earliest(certificates: Sequence[x509.Certificate]) -> datetime:
    return min(certificate.not_valid_after_utc for certificate in certificates)


def _voucher_expiry(text: str) -> datetime | None:
    try:
        return read_stored_voucher(base64.b64decode(text)).expires_on
    except (SztpError, ValueError):
        return None  # verified when stored; a voucher unreadable now has no date to show

"""Token buckets per key, in bounded memory: the one rate limiter behind failed password
logins (per address, per claimed serial) and progress reports (per device). `TokenBuckets`
keeps them in this process; `shared_buckets.SharedTokenBuckets`, in memory every server
process shares."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Protocol

# Keys a table tracks at most unless told otherwise. A key is dropped early only when this
# many others were charged more recently.
TRACKED_KEYS = 50_000


class Buckets(Protocol):
    """What a limit needs of a table of token buckets, wherever it keeps them."""

    @property
    def refill_seconds(self) -> float: ...

    def wait(self, key: Hashable) -> float: ...

    def take(self, key: Hashable) -> bool: ...

    def charge(self, key: Hashable) -> None: ...

    def refund(self, key: Hashable) -> None: ...


class TokenBuckets:
    """A token bucket per key: `burst` charges at once, then one more every `refill_seconds`.
    Buckets are kept in the order they were last charged; the oldest go once refilled (as good
    as none), or when `tracked` keys are in the table, so memory stays bounded whatever the
    keys. Used from the event loop only (no lock)."""

    def __init__(
        self,
        burst: int,
        refill_seconds: float,
        *,
        tracked: int = TRACKED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._burst = burst
        self._refill_seconds = refill_seconds
        self._tracked = tracked
        self._clock = clock
        # key -> (tokens, when they were counted); oldest charge first
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    @property
    def refill_seconds(self) -> float:
        return self._refill_seconds

    def wait(self, key: Hashable) -> float:
        """Seconds until `key` may be charged once more; 0 when it may now (or burst is 0:
        no limit)."""
        if self._burst == 0:
            return 0.0
        return max(0.0, (1 - self._tokens(key, self._clock())) * self._refill_seconds)

    def take(self, key: Hashable) -> bool:
        """Charge `key` if it may be charged now; False, and nothing charged, otherwise."""
        if self.wait(key):
            return False
        self.charge(key)
        return True

    def charge(self, key: Hashable) -> None:
        """Count one use (even beyond the burst: a charge made before the outcome is known,
        such as a login being checked, counts attempts made at the same time too)."""
        if self._burst == 0:
            return
        now = self._clock()
        tokens = self._tokens(key, now) - 1
        self._buckets.pop(key, None)
        self._make_room(now)
        self._buckets[key] = (tokens, now)

    def refund(self, key: Hashable) -> None:
        """Give back a charge (a login that did not fail)."""
        if key in self._buckets:
            now = self._clock()
            tokens = self._tokens(key, now) + 1
            if tokens >= self._burst:
                del self._buckets[key]  # as good as none
            else:
                self._buckets[key] = (tokens, now)

    def _tokens(self, key: Hashable, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return float(self._burst)
        tokens, counted = bucket
        return min(float(self._burst), tokens + (now - counted) / self._refill_seconds)

    def _make_room(self, now: float) -> None:
        while self._buckets:
            oldest = next(iter(self._buckets))
            if len(self._buckets) < self._tracked and self._tokens(oldest, now) < self._burst:
                return
            del self._buckets[oldest]

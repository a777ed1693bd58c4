"""The device API's rate limits as the settings make them: failed password logins per client
address and per claimed serial, and progress reports per device.

The main process makes them once. One process keeps them in its own memory; with device
workers (`workers` above one) they are in memory every process shares (`SharedTokenBuckets`),
passed to each worker as it starts, so every limit holds for the server as a whole whichever
process the kernel gives a connection. An operation on a shared table costs a keyed hash and
a lock, several times one on a table of its own: a single process does not pay for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import ServerConfig
from .password_logins import LoginLimits
from .report_limits import MAX_TRACKED_DEVICES
from .shared_buckets import SharedTokenBuckets
from .token_buckets import TRACKED_KEYS, Buckets, TokenBuckets


@dataclass(frozen=True)
class RateLimits:
    """The tables every limited device request counts in; passed to each device worker."""

    logins: LoginLimits
    reports: Buckets  # per device serial

    @classmethod
    def of(cls, config: ServerConfig, *, shared: bool) -> RateLimits:
        """The tables `config` asks for: `shared` by the processes the caller starts (and
        passes this to), or in this process alone."""
        table = SharedTokenBuckets if shared else TokenBuckets
        refill = config.password_failure_refill_seconds
        return cls(
            logins=LoginLimits(
                table(config.password_failures_per_address, refill, tracked=TRACKED_KEYS),
                table(config.password_failures_per_serial, refill, tracked=TRACKED_KEYS),
            ),
            reports=table(
                config.report_burst,
                60 / config.report_rate_per_minute,
                tracked=MAX_TRACKED_DEVICES,
            ),
        )

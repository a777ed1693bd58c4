"""What keeps HTTP Basic logins from being a way in or a way down: failure limits per client
address and per claimed serial, and scrypt on threads of its own with a bounded queue.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import math
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from sztp.errors import SztpError

from .token_buckets import Buckets

# What a device refused because the workers are busy is told to wait, in seconds.
BUSY_RETRY_AFTER_SECONDS = 1
# IPv6 clients get a /64 each; one address of it is as good as another to them.
_IPV6_CLIENT_PREFIX = 64
# How much of a claimed serial number a log line shows; no serial is longer.
_SERIAL_PREVIEW = 64

_Result = TypeVar("_Result")


class TooManyFailures(SztpError):
    """Refused without a check: too many failed logins; `retry_after` seconds until the next."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PasswordWorkersBusy(SztpError):
    """Refused without a check: every password worker is busy and the queue is full."""


class LoginLimits:
    """Failure limits for password logins, per client address and per claimed serial.

    A key is charged only for a check the password workers took on, so new keys come no
    faster than scrypt runs: an attacker cannot churn a victim's key out of a table within
    its refill time.

    The tables are given (`rate_limits.RateLimits` makes them from the settings): with device
    workers, every process counts in the same ones.
    """

    def __init__(self, addresses: Buckets, serials: Buckets) -> None:
        self._addresses = addresses
        self._serials = serials

    def check(self, address: Hashable | None, serial: str) -> None:
        """TooManyFailures when the address or the serial has no failure left."""
        address_wait = self._addresses.wait(address) if address is not None else 0.0
        serial_wait = self._serials.wait(_serial_key(serial))
        if address_wait or serial_wait:
            which = "from this address" if address_wait >= serial_wait else "for this serial"
            raise TooManyFailures(
                f"too many failed password logins {which} "
                f"(address {address}, serial {shown(serial)})",
                math.ceil(max(address_wait, serial_wait)),
            )

    def charge(self, address: Hashable | None, serial: str) -> None:
        """Count an attempt as failed until `refund` (before the check: attempts made at the
        same time count too)."""
        if address is not None:
            self._addresses.charge(address)
        self._serials.charge(_serial_key(serial))

    def refund(self, address: Hashable | None, serial: str) -> None:
        if address is not None:
            self._addresses.refund(address)
        self._serials.refund(_serial_key(serial))


def shown(serial: str) -> str:
    """A claimed serial number for the log: quoted, and no longer than any real one."""
    return repr(serial[:_SERIAL_PREVIEW] + "…" if len(serial) > _SERIAL_PREVIEW else serial)


def _serial_key(serial: str) -> bytes:
    """A fixed-size key for a claimed serial, however long the claim."""
    return hashlib.blake2b(serial.encode(), digest_size=16).digest()


def client_address(
    remote: str | None,
) -> ipaddress.IPv4Address | ipaddress.IPv6Network | None:
    """What one client is, for limits: its IPv4 address (also when IPv4-mapped) or its IPv6
    /64; None when the transport gives no IP address."""
    if remote is None:
        return None
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return ipaddress.IPv6Network((address, _IPV6_CLIENT_PREFIX), strict=False)


class PasswordWorkers:
    """scrypt on `workers` threads of its own, with at most `queue` checks waiting: a flood of
    password logins neither takes the threads other work runs on nor queues without bound."""

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sztp-password")
        self._capacity = workers + queue
        self._lock = threading.Lock()
        self._pending = 0

    def start(self, check: Callable[[], _Result]) -> asyncio.Future[_Result]:
        """`check()` on a worker, to be awaited; PasswordWorkersBusy at once when the queue is
        full. Call it from the event loop."""
        with self._lock:
            if self._pending >= self._capacity:
                raise PasswordWorkersBusy(f"all {self._capacity} password check places are taken")
            self._pending += 1
        try:
            future = self._executor.submit(check)
        except RuntimeError:  # shut down
            self._release(None)
            raise PasswordWorkersBusy("password workers are shut down") from None
        # Released when the check ends or is cancelled, not when this coroutine does: a
        # request given up early must not free a place its check still holds.
        future.add_done_callback(self._release)
        return asyncio.wrap_future(future)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _release(self, _future: Future[_Result] | None) -> None:
        with self._lock:
            self._pending -= 1

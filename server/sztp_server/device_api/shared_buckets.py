"""Token buckets in memory every server process shares: with device workers beside the main
process (`workers` above one), a limit holds for the server as a whole, whichever process the
kernel gives each connection.

The main process makes a table before it starts the workers and passes it to each (pickled
while a process starts: the memory's file descriptor goes along). A table is a set-associative
hash table of `sets` x `ways` slots in a memfd every process maps:

- A key is stored as a 16-byte keyed digest (BLAKE2b, a random salt per table made when the
  main process makes it): an attacker cannot choose keys that land in a victim's set, nor
  merge two keys' buckets, which share one only if their 128-bit digests collide.
- A key lives in one of the `ways` slots of the set its digest picks. A new key takes an empty
  or refilled slot of its set, else the one least recently charged (or refunded): the
  eviction order of `TokenBuckets`, kept per set instead of over the whole table. The table
  never holds more than `tracked` keys.
- Every operation holds a POSIX record lock on the memfd (`fcntl.lockf`) for one lookup and
  a little arithmetic: no I/O and no await inside, so an event loop waiting for it waits for
  that at most (or for a holder the scheduler paused), far less than handing the wait to a
  thread would cost. The kernel drops the lock of a process that ends, even killed outright,
  where a semaphore (`multiprocessing.Lock`) would stay taken and stop every process's event
  loop for good; a process killed in the middle of an operation leaves at worst one key with
  another's count.

Times come from `time.monotonic()`, CLOCK_MONOTONIC on Linux: one clock for every process.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from multiprocessing import reduction
from typing import Any

from .token_buckets import TRACKED_KEYS

# Slots a key may take: few enough for a lookup to be one search of a short byte string,
# enough for eviction to stay close to the least recently charged of the whole table.
WAYS = 8
_DIGEST_BYTES = 16
_EMPTY = bytes(_DIGEST_BYTES)  # an unused slot; a key's digest is all zeros once in 2**128
_SALT_BYTES = 16
# A slot's values: its tokens and when they were counted, two doubles.
_VALUES_PER_SLOT = 2
_VALUE_BYTES = 8 * _VALUES_PER_SLOT


class SharedTokenBuckets:
    """`TokenBuckets` (same methods, same meaning) in memory shared by every process it is
    passed to. Any thread may call it; the processes exclude each other with a record lock,
    the threads of one process with a thread lock."""

    def __init__(
        self,
        burst: int,
        refill_seconds: float,
        *,
        tracked: int = TRACKED_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        ways = min(WAYS, tracked)
        sets = tracked // ways
        memory_fd = os.memfd_create("sztp-token-buckets", os.MFD_CLOEXEC)
        os.ftruncate(memory_fd, sets * ways * (_VALUE_BYTES + _DIGEST_BYTES))  # zeros: empty
        self._attach(memory_fd, burst, refill_seconds, ways, sets, os.urandom(_SALT_BYTES), clock)

    def _attach(
        self,
        memory_fd: int,
        burst: int,
        refill_seconds: float,
        ways: int,
        sets: int,
        salt: bytes,
        clock: Callable[[], float],
    ) -> None:
        self._memory_fd = memory_fd
        self._burst = burst
        self._refill_seconds = refill_seconds
        self._ways = ways
        self._sets = sets
        self._salt = salt
        # Keyed once; each digest starts from a copy.
        self._keyed_hash = hashlib.blake2b(key=salt, digest_size=_DIGEST_BYTES)
        self._clock = clock
        self._locked = _RecordLock(threading.Lock(), memory_fd)
        slots = sets * ways
        self._memory = mmap.mmap(memory_fd, slots * (_VALUE_BYTES + _DIGEST_BYTES))
        # slot i: tokens at [2i], when counted at [2i + 1]
        self._values = memoryview(self._memory)[: slots * _VALUE_BYTES].cast("d")
        self._digests_start = slots * _VALUE_BYTES  # slot i's digest at start + 16i
        weakref.finalize(self, os.close, memory_fd)

    def __reduce__(self) -> tuple[Any, ...]:
        # The descriptor goes along (SCM_RIGHTS) when a process is started with this table;
        # the clock does not: another process counts by time.monotonic(). Pickled only to
        # start a process: pickled otherwise, a copy of the descriptor is made and closed in
        # this process, and closing any descriptor of the file drops its record lock.
        shared = (self._burst, self._refill_seconds, self._ways, self._sets, self._salt)
        return _attached, (reduction.DupFd(self._memory_fd), *shared)

    @property
    def refill_seconds(self) -> float:
        return self._refill_seconds

    def __len__(self) -> int:
        """Keys in the table (a refilled one stays until its slot is needed)."""
        with self._locked:
            digests = self._memory[self._digests_start :]
        return sum(
            digests[at : at + _DIGEST_BYTES] != _EMPTY
            for at in range(0, len(digests), _DIGEST_BYTES)
        )

    def wait(self, key: Hashable) -> float:
        """Seconds until `key` may be charged once more; 0 when it may now (or burst is 0:
        no limit)."""
        if self._burst == 0:
            return 0.0
        digest = self._digest(key)
        with self._locked:
            _first, slot = self._find(digest)
            tokens = self._tokens(slot, self._clock())
        return max(0.0, (1 - tokens) * self._refill_seconds)

    def take(self, key: Hashable) -> bool:
        """Charge `key` if it may be charged now; False, and nothing charged, otherwise. One
        step: two processes cannot both take the last token."""
        if self._burst == 0:
            return True
        digest = self._digest(key)
        with self._locked:
            now = self._clock()
            first, slot = self._find(digest)
            tokens = self._tokens(slot, now)
            if tokens < 1:
                return False
            self._store(slot if slot >= 0 else self._claim(first, digest, now), tokens - 1, now)
        return True

    def charge(self, key: Hashable) -> None:
        """Count one use (even beyond the burst: a charge made before the outcome is known,
        such as a login being checked, counts attempts made at the same time too)."""
        if self._burst == 0:
            return
        digest = self._digest(key)
        with self._locked:
            now = self._clock()
            first, slot = self._find(digest)
            tokens = self._tokens(slot, now) - 1
            self._store(slot if slot >= 0 else self._claim(first, digest, now), tokens, now)

    def refund(self, key: Hashable) -> None:
        """Give back a charge (a login that did not fail)."""
        if self._burst == 0:
            return
        digest = self._digest(key)
        with self._locked:
            _first, slot = self._find(digest)
            if slot < 0:
                return
            now = self._clock()
            tokens = self._tokens(slot, now) + 1
            if tokens >= self._burst:
                self._set_digest(slot, _EMPTY)  # as good as none
            else:
                self._store(slot, tokens, now)

    def _digest(self, key: Hashable) -> bytes:
        keyed = self._keyed_hash.copy()
        keyed.update(_stable_form(key))
        return keyed.digest()

    def _find(self, digest: bytes) -> tuple[int, int]:
        """(the first slot of `digest`'s set, the slot holding it or -1)."""
        first = int.from_bytes(digest[:8], "little") % self._sets * self._ways
        start = self._digests_start + first * _DIGEST_BYTES
        window = self._memory[start : start + self._ways * _DIGEST_BYTES]
        at = window.find(digest)
        while at > 0 and at % _DIGEST_BYTES:  # across two slots' digests: not a match
            at = window.find(digest, at + 1)
        return first, (first + at // _DIGEST_BYTES if at >= 0 else -1)

    def _tokens(self, slot: int, now: float) -> float:
        if slot < 0:
            return float(self._burst)
        tokens = self._values[_VALUES_PER_SLOT * slot]
        counted = self._values[_VALUES_PER_SLOT * slot + 1]
        return min(float(self._burst), tokens + (now - counted) / self._refill_seconds)

    def _store(self, slot: int, tokens: float, now: float) -> None:
        self._values[_VALUES_PER_SLOT * slot] = tokens
        self._values[_VALUES_PER_SLOT * slot + 1] = now

    def _set_digest(self, slot: int, digest: bytes) -> None:
        start = self._digests_start + slot * _DIGEST_BYTES
        self._memory[start : start + _DIGEST_BYTES] = digest

    def _claim(self, first: int, digest: bytes, now: float) -> int:
        """A slot of the set for `digest`: an empty one, a refilled one (as good as none), or
        else the one least recently charged, whose key is forgotten."""
        start = self._digests_start + first * _DIGEST_BYTES
        window = self._memory[start : start + self._ways * _DIGEST_BYTES]
        chosen, oldest = first, float("inf")
        for way in range(self._ways):
            slot = first + way
            if window[way * _DIGEST_BYTES : (way + 1) * _DIGEST_BYTES] == _EMPTY:
                chosen = slot
                break
            if self._tokens(slot, now) >= self._burst:
                chosen = slot
                break
            counted = self._values[_VALUES_PER_SLOT * slot + 1]
            if counted < oldest:
                chosen, oldest = slot, counted
        self._set_digest(chosen, digest)
        return chosen


class _RecordLock:
    """Held by one thread of one process: the thread lock, then the record lock on the
    whole memfd (which excludes other processes, not other threads of this one)."""

    __slots__ = ("_fd", "_thread_lock")

    def __init__(self, thread_lock: threading.Lock, fd: int) -> None:
        self._thread_lock = thread_lock
        self._fd = fd

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


def _attached(
    memory_fd: Any, burst: int, refill_seconds: float, ways: int, sets: int, salt: bytes
) -> SharedTokenBuckets:
    """A table as another process passed it (`memory_fd` detaches to its descriptor)."""
    table = SharedTokenBuckets.__new__(SharedTokenBuckets)
    table._attach(memory_fd.detach(), burst, refill_seconds, ways, sets, salt, time.monotonic)
    return table


def _stable_form(key: Hashable) -> bytes:
    """`key` as bytes, the same in every process (`hash()` of a str is salted per process),
    tagged by kind so that keys of different kinds never share a form."""
    if isinstance(key, bytes):
        return b"b" + key
    if isinstance(key, str):
        return b"s" + key.encode("utf-8", "surrogatepass")
    if isinstance(key, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return b"a" + key.packed  # the length tells the version
    if isinstance(key, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return b"n" + key.network_address.packed + bytes([key.prefixlen])
    raise TypeError(f"a shared token bucket key is bytes, str or an IP address, not {key!r}")

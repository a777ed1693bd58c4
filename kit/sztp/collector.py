"""Python's cyclic garbage collector, paused while a large amount of data becomes objects.

Each collection walks the objects made since the last one; a whole fleet being parsed, planned
or loaded is millions of them, walked again and again although such data holds no reference
cycles to free. Pausing the collector for that work halves its time (bench/RESULTS.md). Memory
is still freed by reference counting meanwhile; cycles wait for the collector's next run.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """The collector off for the duration, also when threads pause it at overlapping times:
    it is back on (unless it was off before) once the last of them is done."""
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()

"""The server's own processes: started from one forkserver, and never outliving the process
that started them.

A process pool's workers wait for work on a queue whose both ends they hold, so they never see
their parent go: a parent killed outright (SIGKILL, out of memory) would leave them, and what
they hold open (the database, the forkserver), for good.
"""

from __future__ import annotations

import ctypes
import functools
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from multiprocessing.context import ForkServerContext

# What the serving process starts (device workers, the admin writer) forks from a server that
# has their code, and cryptography, imported already.
_PRELOADED = ["sztp_server.device_worker", "sztp_server.admin.writer"]


def server_processes() -> ForkServerContext:
    """The context the serving process starts its processes from."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOADED)
    return context


def exit_with_parent() -> None:
    """End this process as soon as its parent ends (a pool's initializer calls it)."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_when_ready, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()


def _exit_when_ready(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    # Work under way is dropped (a database write rolls back): nobody is left to use it.
    os._exit(1)


def release_free_memory() -> None:
    """Give the heap memory this process has freed back to the system (glibc keeps it for
    reuse otherwise): the writer parses a whole fleet for a bulk write, then holds only the
    state. A no-op without glibc."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    return getattr(ctypes.CDLL(None), "malloc_trim", None)

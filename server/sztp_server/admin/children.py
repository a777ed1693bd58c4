"""Worker processes that never outlive the process that started them.

A process pool's workers wait for work on a queue whose both ends they hold, so they never see
their parent go: a parent killed outright (SIGKILL, out of memory) would leave them, and what
they hold open (the database, the forkserver), for good.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading


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

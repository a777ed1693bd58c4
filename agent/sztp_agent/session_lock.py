"""One session at a time: an exclusive `flock` on `session.lock` in the state directory, held
for the session's life and released by the kernel however the process ends (a crash or a
reboot leaves no stale lock). The holder writes its process id into the file, so that
`ztp disable` knows whom to send SIGTERM."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

LOCK_FILE = "session.lock"


class SessionBusy(Exception):
    """Another session holds the lock."""

    def __init__(self, pid: int | None) -> None:
        shown = f" (process {pid})" if pid else ""
        super().__init__(f"a bootstrapping session is already running{shown}")
        self.pid = pid


class SessionLock:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_FILE
        self._descriptor: int | None = None

    def __enter__(self) -> SessionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise SessionBusy(self.holder()) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._descriptor = descriptor
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._descriptor is not None:
            os.ftruncate(self._descriptor, 0)
            os.close(self._descriptor)  # closing releases the lock
            self._descriptor = None

    def holder(self) -> int | None:
        """The process id of the running session (0 when it has not written it yet), or None
        when none runs."""
        try:
            descriptor = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.read(descriptor, 32).decode("ascii", "replace").strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(descriptor, fcntl.LOCK_UN)
            return None
        finally:
            os.close(descriptor)

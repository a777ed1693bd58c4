"""Files written whole or not at all: through a temporary file beside the target, then a rename,
so a reader (or a crash) never sees half a file, and with the mode set before any byte lands."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_atomically(path: Path, data: bytes, *, mode: int, dir_mode: int = 0o777) -> None:
    """Write `data` to `path` with `mode`; missing parent directories are made with `dir_mode`
    (less the umask)."""
    with atomic_writer(path, mode=mode, dir_mode=dir_mode) as handle:
        handle.write(data)


@contextmanager
def atomic_writer(path: Path, *, mode: int, dir_mode: int = 0o777) -> Iterator[BinaryIO]:
    """A file to write in parts that becomes `path` (with `mode`) when the block ends, and
    is removed if it raises: a failure half-way leaves `path` as it was."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=dir_mode)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

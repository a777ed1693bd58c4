"""The agent's log: a line per event, to standard error (the journal, under systemd) and to
`agent.log` in the state directory for `ztp logs`, which keeps the last `MAX_LOG_SIZE` bytes
twice over (`agent.log.1`). Text from servers and leases is hostile: control characters are
escaped, so a message can never forge a line of its own."""

from __future__ import annotations

import sys
from collections import deque
from pathlib import Path
from typing import TextIO

from .status import utc_now

LOG_FILE = "agent.log"
MAX_LOG_SIZE = 1024 * 1024
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


def one_line(text: str) -> str:
    """`text` with every control character escaped (`\\x0a` for a newline)."""
    return text.translate(_CONTROL)


class AgentLog:
    def __init__(self, state_dir: Path, *, echo: TextIO | None = sys.stderr) -> None:
        self.path = state_dir / LOG_FILE
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"{utc_now()} {one_line(message)}\n"
        if self.echo is not None:
            self.echo.write(line)
            self.echo.flush()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            if self.path.exists() and self.path.stat().st_size > MAX_LOG_SIZE:
                self.path.replace(self.path.with_name(LOG_FILE + ".1"))
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
        except OSError as exc:
            if self.echo is not None:
                self.echo.write(f"cannot write {self.path}: {exc.strerror or exc}\n")


def last_lines(state_dir: Path, count: int) -> list[str]:
    """The newest `count` lines of the log, oldest first."""
    kept: deque[str] = deque(maxlen=count)
    for path in (state_dir / (LOG_FILE + ".1"), state_dir / LOG_FILE):
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                kept.extend(line.rstrip("\n") for line in handle)
        except FileNotFoundError:
            continue
    return list(kept)

"""Shared by the generators of single doc pages (gen_cli_docs.py, gen_server_docs.py): the
last step, which writes the page or, with --check, only compares it."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(
    output: Path, text: str, current: str | None, *, check: bool, up_to_date: str, stale: str
) -> int:
    """The exit status: with `check`, 0 if `current` (the page as it is) is `text` already,
    else 1 with `stale` on stderr; without, `text` is written to `output`."""
    if check:
        if current == text:
            print(up_to_date)
            return 0
        print(stale, file=sys.stderr)
        return 1
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0

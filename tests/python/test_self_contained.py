"""Nothing in the repository reads a path outside it: users have no sibling folders."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Spelled in pieces so that this file does not match itself.
_OUTSIDE = re.compile("|".join([r"\.\./" + "shared", "shared" + "/reference", r"parents\[[3-9]\]"]))

_GENERATED = {".git", ".venv", ".venv-molecule", "build", "__pycache__", ".pytest_cache"}


def tracked_text_files() -> list[Path]:
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=False, text=True
    )
    if listing.returncode != 0:  # a copy without .git: every file but what builds make
        return [
            path
            for path in ROOT.rglob("*")
            if path.is_file() and not _GENERATED.intersection(path.relative_to(ROOT).parts)
        ]
    return [ROOT / name for name in listing.stdout.split("\0") if name]


def test_no_file_refers_to_a_folder_beside_the_checkout() -> None:
    offenders = []
    for path in tracked_text_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)

"""Turning command-line arguments into kit objects."""

from __future__ import annotations

import typer


def parse_hex(text: str, option: str) -> bytes:
    """Hex with or without colons, as operators paste it."""
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not hex", param_hint=option) from None

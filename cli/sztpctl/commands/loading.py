"""Command-line arguments several commands take, and turning them into kit objects."""

from __future__ import annotations

from typing import Annotated

import typer

SerialOption = Annotated[str, typer.Option("--serial", "-s", help="The device's serial number.")]


def parse_hex(text: str, option: str) -> bytes:
    """Hex with or without colons, as operators paste it."""
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not hex", param_hint=option) from None

"""The optional parts of the sztp distribution and the modules each brings.

pyproject.toml declares the extras' requirements (a test keeps this table in step with it); the
console scripts look here first, so that a kit-only install (what an Ansible controller needs)
answers `sztpctl` with the install command instead of an ImportError.
"""

from __future__ import annotations

from importlib.util import find_spec

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "cli": ("typer", "rich"),
    "server": ("aiohttp", "psycopg"),
}


def missing_extra(extra: str, program: str) -> str | None:
    """None when the extra's modules are importable; else what is missing and how to install it."""
    missing = [module for module in EXTRA_MODULES[extra] if find_spec(module) is None]
    if not missing:
        return None
    return (
        f"{program} needs the sztp distribution's '{extra}' extra "
        f"(missing: {', '.join(missing)}): pip install 'sztp[{extra}]'"
    )

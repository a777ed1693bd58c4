"""The optional parts of the sztp distribution and the modules each brings.

pyproject.toml declares the extras' requirements (a test keeps this table in step with it); the
console scripts look here first, so that a kit-only install (what an Ansible controller needs)
answers `sztpctl` with the install command instead of an ImportError.
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "cli": ("typer", "rich"),
    "server": ("aiohttp", "psycopg", "prometheus_client", "pkcs11", "zeroconf"),
    "agent": (),
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


def require_extra(extra: str, program: str) -> None:
    """Exit with status 1 and the install command when the extra's modules are missing."""
    problem = missing_extra(extra, program)
    if problem:
        print(problem, file=sys.stderr)
        raise SystemExit(1)

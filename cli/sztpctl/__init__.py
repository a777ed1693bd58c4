"""sztpctl: the admin kit and CLI for secure zero touch provisioning (RFC 8572).

Keep this module free of heavy imports: `sztpctl --help` must start fast.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    # The distribution's version, declared once in pyproject.toml (galaxy.yml is held to it by
    # a test, since Ansible reads it as written); looked up only when asked for, since reading
    # package metadata costs every command's start-up.
    if name == "__version__":
        from importlib.metadata import version

        return version("sztp")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

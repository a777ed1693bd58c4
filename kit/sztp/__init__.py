"""sztp: the kit for secure zero touch provisioning (RFC 8572).

The protocol (pure and byte-exact), the desired-state model, the admin API client and the
device procedure the simulator runs. It needs neither the CLI's libraries nor the server's: the
`sztpctl` CLI (extra `cli`), `sztp-server` (extra `server`) and the Ansible collection build on
it. Kept free of heavy imports: every command's start-up imports this module.
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

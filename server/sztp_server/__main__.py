"""`sztp-server`: run the bootstrap server, or check its configuration."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .config import ServerConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sztp-server", description="The RFC 8572 bootstrap server."
    )
    parser.add_argument("--version", action="version", version=f"sztp-server {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="serve devices and the admin API",
        description="Serve devices and the admin API. Settings: the config file, then "
        "SZTP_SERVER_* environment variables (e.g. SZTP_SERVER_DATABASE_URL).",
    )
    run.add_argument("-c", "--config", type=Path, help="YAML configuration file")
    check = commands.add_parser(
        "check",
        help="validate the configuration and exit",
        description="Validate the configuration (the config file, then SZTP_SERVER_* "
        "environment variables) without starting: every setting, the database URL's form and "
        "each listener's TLS certificate and key. Connects to nothing and writes nothing. "
        "Exit status 0 when valid, 2 with one line naming the defect otherwise.",
    )
    check.add_argument("-c", "--config", type=Path, help="YAML configuration file")
    arguments = parser.parse_args(argv)

    from sztpctl.errors import SztpError

    from .config import load_config

    if arguments.command == "check":
        try:
            _check(load_config(arguments.config))
        except SztpError as exc:
            print(f"sztp-server: {exc}", file=sys.stderr)
            sys.exit(2)
        print(f"sztp-server: configuration OK ({arguments.config or 'defaults'})")
        return

    from .app import BindError, serve
    from .logs import configure

    try:
        config = load_config(arguments.config)
        configure(config.log_level)
        asyncio.run(serve(config))
    except BindError as exc:  # the configuration is fine; the machine is not ready for it
        print(f"sztp-server: {exc}", file=sys.stderr)
        sys.exit(1)
    except SztpError as exc:
        print(f"sztp-server: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # e.g. a database directory that cannot be created
        print(f"sztp-server: {exc}", file=sys.stderr)
        sys.exit(1)


def _check(config: ServerConfig) -> None:
    """Raise SztpError on the first defect `run` would meet."""
    from sztpctl.errors import SztpError

    from .store import StoreError, sqlite_path
    from .tls import server_context

    scheme = config.database_url.partition(":")[0].lower()
    try:
        if scheme == "sqlite":
            sqlite_path(config.database_url)
        elif scheme not in ("postgresql", "postgres"):
            # Never echo the URL: a mangled one may start with a password.
            raise StoreError(
                "database_url: unsupported scheme; use sqlite:///absolute/path.db or "
                "postgresql://..."
            )
    except StoreError as exc:
        raise SztpError(str(exc)) from None
    for name, listener in config.named_listeners():
        if listener.uses_tls:
            server_context(name, listener)  # TlsFileError names the listener and the file


if __name__ == "__main__":
    main()

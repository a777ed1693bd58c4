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
        except (SztpError, OSError) as exc:
            print(f"sztp-server: {exc}", file=sys.stderr)
            sys.exit(2)
        print(f"sztp-server: configuration OK ({arguments.config or 'defaults'})")
        return

    from .app import serve
    from .logs import configure

    try:
        config = load_config(arguments.config)
        configure(config.log_level)
        asyncio.run(serve(config))
    except SztpError as exc:
        print(f"sztp-server: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # e.g. a port in use or an unreadable certificate
        print(f"sztp-server: {exc}", file=sys.stderr)
        sys.exit(1)


def _check(config: ServerConfig) -> None:
    """Raise SztpError (or OSError for TLS files) on the first defect `run` would meet."""
    import ssl

    from sztpctl.errors import SztpError

    from .store import StoreError, sqlite_path

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
    listeners = [
        (f"device_listeners[{index}]", listener)
        for index, listener in enumerate(config.device_listeners)
    ]
    listeners.append(("admin_listener", config.admin_listener))
    for name, listener in listeners:
        if not listener.uses_tls:
            continue
        for path in (listener.tls_cert, listener.tls_key):
            try:
                path.read_bytes()  # type: ignore[union-attr]  # both set when uses_tls
            except OSError as exc:
                raise SztpError(f"{name}: cannot read {path}: {exc.strerror}") from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(str(listener.tls_cert), str(listener.tls_key))
        except ssl.SSLError as exc:
            raise SztpError(
                f"{name}: {listener.tls_cert} and {listener.tls_key} are not a matching "
                f"certificate and private key ({exc.reason or exc})"
            ) from None


if __name__ == "__main__":
    main()

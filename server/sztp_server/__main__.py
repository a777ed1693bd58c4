"""`sztp-server`: run the bootstrap server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from . import __version__


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
    arguments = parser.parse_args(argv)

    from sztpctl.errors import SztpError

    from .app import serve
    from .config import load_config
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


if __name__ == "__main__":
    main()

"""`sztp-server` entry point."""

from __future__ import annotations

import argparse

from . import __version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sztp-server",
        description="The open RFC 8572 bootstrap server (serving arrives with the `run` command).",
    )
    parser.add_argument("--version", action="version", version=f"sztp-server {__version__}")
    parser.parse_args(argv)
    parser.print_help()


if __name__ == "__main__":
    main()

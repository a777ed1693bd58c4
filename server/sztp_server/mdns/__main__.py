"""`sztp-mdns`: publish RFC 8572 records under `.local`, or check the records file."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from pathlib import Path

from sztp import __version__


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="sztp-mdns",
        description="Answer mDNS queries for the RFC 8572 §4.2 records of a zone fragment "
        "(`sztpctl dns render`): TXT at <serial>._sztp.local, SRV at _sztp._tcp.local and the "
        "A/AAAA records of its targets.",
    )
    parser.add_argument("--version", action="version", version=f"sztp-mdns {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="answer queries until SIGTERM; SIGHUP reloads the records",
        description="Answer queries until SIGTERM. SIGHUP reads the records file again; a file "
        "that fails the checks is logged and the previous records stay.",
    )
    check = commands.add_parser(
        "check",
        help="check the records file and exit",
        description="Check the records file as `run` does at start, without opening a socket. "
        "Exit status 0 when it can be published (warnings on stderr), 2 with one line naming "
        "the defect otherwise.",
    )
    for command in (run, check):
        command.add_argument(
            "records", type=Path, help="zone fragment; relative names are read under local."
        )
    run.add_argument(
        "-i",
        "--interface",
        action="append",
        default=[],
        type=_address,
        metavar="ADDRESS",
        help="answer on the interface with this IPv4 or IPv6 address (repeatable); "
        "default every interface",
    )
    run.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="debug logs every dropped query",
    )
    arguments = parser.parse_args(argv)

    from sztp.extras import require_extra

    require_extra("server", "sztp-mdns")

    from .records import RecordsError, load_records

    if arguments.command == "check":
        try:
            records, warnings = load_records(arguments.records)
        except RecordsError as exc:
            print(f"sztp-mdns: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        for warning in warnings:
            print(f"sztp-mdns: warning: {warning}", file=sys.stderr)
        print(
            f"{arguments.records}: {records.devices} devices, {records.servers} SRV records, "
            f"{records.hosts} hosts"
        )
        return

    from ..logs import configure
    from .service import run as serve

    logger = configure(arguments.log_level)
    # python-zeroconf says why an interface could not join the group; same format, same stream.
    library = logging.getLogger("zeroconf")
    library.handlers[:] = logger.handlers
    library.setLevel(logging.WARNING)
    library.propagate = False
    try:
        serve(arguments.records, arguments.interface, logger)
    except RecordsError as exc:
        print(f"sztp-mdns: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        print(f"sztp-mdns: cannot open the mDNS sockets: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 or IPv6 address") from None


if __name__ == "__main__":
    main()

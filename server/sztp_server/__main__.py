"""`sztp-server`: run the bootstrap server, or check its configuration."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from sztp import __version__
from sztp.loopback import is_loopback

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
        "environment variables) without starting: every setting, the database URL's form, "
        "each listener's TLS certificate and key, and each LDevID issuer's CA certificate and "
        "key (a key in a PKCS#11 token is found and proven to sign). Connects to no database "
        "and writes nothing. "
        "Exit status 0 when valid (with a warning for a PostgreSQL database on another "
        "machine reached without sslmode=verify-full), 2 with one line naming the defect "
        "otherwise.",
    )
    check.add_argument("-c", "--config", type=Path, help="YAML configuration file")
    arguments = parser.parse_args(argv)

    from sztp.extras import require_extra

    require_extra("server", "sztp-server")

    from sztp.errors import SztpError

    from .config import load_config

    if arguments.command == "check":
        try:
            warnings = _check(load_config(arguments.config))
        except SztpError as exc:
            print(f"sztp-server: {exc}", file=sys.stderr)
            sys.exit(2)
        for warning in warnings:
            print(f"sztp-server: warning: {warning}", file=sys.stderr)
        print(f"sztp-server: configuration OK ({arguments.config or 'defaults'})")
        return

    from .app import serve
    from .logs import configure
    from .serving import BindError

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


def _check(config: ServerConfig) -> list[str]:
    """Raise SztpError on the first defect `run` would meet; return what is risky but runs."""
    from sztp.errors import SztpError

    from .events_out.webhook_delivery import load_secrets
    from .ldevid.issuers import BuiltinIssuer, build_issuer
    from .pkcs11_keys import Pkcs11Keys
    from .secret_key import check_key_file
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
    check_key_file(config, os.environ)  # SecretKeyError names the file
    load_secrets(config)  # each webhook's signing key: ValidationError names the file
    tokens = Pkcs11Keys(config.pkcs11_module, config.pkcs11_pin_file, log_failures=False)
    try:
        for issuer_config in config.ldevid_issuers:
            issuer = build_issuer(issuer_config, tokens)  # IssuerError names issuer and file
            if isinstance(issuer, BuiltinIssuer):
                issuer.ca  # noqa: B018 - a key in a token is found and proven to sign
    finally:
        tokens.close()
    warnings: list[str] = []
    if scheme in ("postgresql", "postgres"):
        warnings.extend(_unverified_database_hosts(config.database_url, os.environ))
    return warnings


def _unverified_database_hosts(url: str, environ: Mapping[str, str]) -> list[str]:
    """A warning when the PostgreSQL URL reaches another machine without sslmode=verify-full,
    which alone both encrypts and checks the server's certificate and name. Only host names
    and the mode are quoted: never the URL, which may hold a password."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)

    def last(name: str, fallback: str) -> str:
        # libpq's own environment variables stand in for what the URL leaves out.
        values = query.get(name)
        return values[-1] if values else environ.get(fallback, "")

    hosts = last("host", "PGHOST")
    if "host" not in query:
        netloc_hosts = ",".join(
            _without_port(unquote(item))
            for item in parts.netloc.rpartition("@")[2].split(",")
            if item
        )
        hosts = netloc_hosts or hosts
    addresses = [*hosts.split(","), *last("hostaddr", "PGHOSTADDR").split(",")]
    # Empty: the default socket; "/..." or "@...": a Unix-domain socket on this machine.
    remote = sorted(
        {host for host in addresses if host and host[0] not in "/@" and not is_loopback(host)}
    )
    mode = last("sslmode", "PGSSLMODE") or "prefer"
    if not remote or mode == "verify-full":
        return []
    return [
        f"database_url: PostgreSQL on {', '.join(remote)} with sslmode={mode}: only "
        "sslmode=verify-full (and sslrootcert naming the database's CA) keeps the password and "
        "the stored secrets from being read or altered on the network"
    ]


def _without_port(item: str) -> str:
    if item.startswith("["):
        return item[1 : item.find("]")] if "]" in item else item[1:]
    return item.partition(":")[0]


if __name__ == "__main__":
    main()

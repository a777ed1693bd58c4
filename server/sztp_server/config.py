"""Server configuration: a YAML file, then `SZTP_SERVER_*` environment overrides.

Example (every key optional; these are the defaults except the TLS paths):

    database_url: sqlite:///var/lib/sztp/sztp.db
    device_listeners:
      - host: 0.0.0.0
        port: 8443
        tls_cert: /etc/sztp/tls/server.pem
        tls_key: /etc/sztp/tls/server.key
    admin_listener: {host: 127.0.0.1, port: 7080}
    trusted_proxies: [127.0.0.1/32]
    client_cert_header: X-SSL-Client-Cert
    admin_token_file: /var/lib/sztp/admin-token
    log_level: info
    stall_after_minutes: 30
    reports_per_device: 1000
    refresh_interval: 1.0
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

from sztpctl.errors import ValidationError

ENV_PREFIX = "SZTP_SERVER_"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def uses_tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class ServerConfig:
    database_url: str = "sqlite:///var/lib/sztp/sztp.db"
    device_listeners: tuple[Listener, ...] = (Listener("0.0.0.0", 8443),)  # noqa: S104 - devices come from the network
    admin_listener: Listener = Listener("127.0.0.1", 7080)
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    client_cert_header: str = "X-SSL-Client-Cert"
    admin_token_file: Path = Path("/var/lib/sztp/admin-token")
    log_level: str = "info"
    stall_after_minutes: float = 30.0
    reports_per_device: int = 1000
    refresh_interval: float = 1.0
    # Device requests are small; admin bodies carry certificates, scripts and configurations
    # (up to 1 MiB per field); the bulk state of a whole fleet is larger still.
    max_body_bytes: int = 4 * 1024 * 1024
    max_bulk_body_bytes: int = 64 * 1024 * 1024


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    """Read `path` (if given), apply environment overrides, validate; ValidationError on defects."""
    document: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise ValidationError(str(path), f"cannot read: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValidationError(str(path), f"not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ValidationError(str(path), "must be a mapping of settings")
        document = loaded or {}
    environ = os.environ if environ is None else environ
    for setting in _SCALAR_SETTINGS:
        value = environ.get(f"{ENV_PREFIX}{setting.upper()}")
        if value is not None:
            document[setting] = value
    return _build(document)


_SCALAR_SETTINGS = (
    "database_url",
    "client_cert_header",
    "admin_token_file",
    "log_level",
    "stall_after_minutes",
    "reports_per_device",
    "refresh_interval",
    "max_body_bytes",
    "max_bulk_body_bytes",
)


def _build(document: Mapping[str, Any]) -> ServerConfig:
    known = {item.name for item in fields(ServerConfig)}
    unknown = sorted(set(document) - known)
    if unknown:
        raise ValidationError(unknown[0], "unknown setting")
    config = ServerConfig()
    values: dict[str, Any] = {}
    for name, value in document.items():
        values[name] = _convert(name, value)
    config = replace(config, **values)
    if config.log_level not in LOG_LEVELS:
        raise ValidationError("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    return config


def _convert(name: str, value: Any) -> Any:
    if name == "device_listeners":
        if not isinstance(value, list) or not value:
            raise ValidationError(name, "must be a non-empty list of listeners")
        return tuple(_listener(f"{name}[{index}]", item) for index, item in enumerate(value))
    if name == "admin_listener":
        return _listener(name, value)
    if name == "trusted_proxies":
        if not isinstance(value, list):
            raise ValidationError(name, "must be a list of addresses or networks")
        try:
            return tuple(ipaddress.ip_network(str(item)) for item in value)
        except ValueError as exc:
            raise ValidationError(name, str(exc)) from None
    if name == "admin_token_file":
        return Path(str(value))
    if name in ("stall_after_minutes", "refresh_interval"):
        return _number(name, value, float)
    if name in ("reports_per_device", "max_body_bytes", "max_bulk_body_bytes"):
        return _number(name, value, int)
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    return value


def _number(name: str, value: Any, kind: type[int] | type[float]) -> int | float:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValidationError(name, f"must be a {kind.__name__}") from None
    if number <= 0:
        raise ValidationError(name, "must be positive")
    return number


def _listener(name: str, value: Any) -> Listener:
    if not isinstance(value, dict):
        raise ValidationError(name, "must be a mapping with host and port")
    unknown = sorted(set(value) - {"host", "port", "tls_cert", "tls_key"})
    if unknown:
        raise ValidationError(f"{name}.{unknown[0]}", "unknown setting")
    port = value.get("port")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValidationError(f"{name}.port", "must be a port number (0 picks a free one)")
    cert, key = value.get("tls_cert"), value.get("tls_key")
    if (cert is None) != (key is None):
        raise ValidationError(name, "tls_cert and tls_key go together")
    return Listener(
        host=str(value.get("host", "127.0.0.1")),
        port=port,
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
    )

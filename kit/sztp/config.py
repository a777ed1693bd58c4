"""Client contexts: which sztp-server to talk to, with which token, trusting which CA.

The config file is `$XDG_CONFIG_HOME/sztp/config.yaml` (default `~/.config/sztp/config.yaml`):

    current_context: lab
    contexts:
      lab:
        server: https://sztp.lab:7080
        token_file: ~/.config/sztp/lab.token    # or token: ... (the file is kept 0600)
        ca_bundle: ~/lab-pki/tls/ca.pem
        verify: true
        allow_plain_http: false   # true: allow an http:// server that is not loopback

Precedence, highest first: command-line options, environment (`SZTP_SERVER`, `SZTP_TOKEN`,
`SZTP_TOKEN_FILE`, `SZTP_CA_BUNDLE`, `SZTP_CONTEXT`, `SZTP_ALLOW_PLAIN_HTTP`), then the
context. Relative paths in the file are relative to the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SztpError
from .loopback import PLAIN_HTTP_VARIABLE, flag

if TYPE_CHECKING:
    from .client import SztpClient

CONTEXT_FIELDS = ("server", "token", "token_file", "ca_bundle", "verify", "allow_plain_http")
_FILE_MODE = 0o600


class ConfigError(SztpError):
    """The config file or a connection setting is missing or malformed."""


@dataclass(frozen=True)
class Connection:
    """Everything needed to build an `SztpClient`; `token` is secret and never printed."""

    server: str
    token: str | None
    ca_bundle: Path | None
    verify: bool
    context: str | None
    allow_plain_http: bool = False

    def client(self, timeout: float = 30) -> SztpClient:
        from .client import SztpClient

        return SztpClient(
            self.server,
            self.token,
            ca_bundle=self.ca_bundle,
            verify=self.verify,
            timeout=timeout,
            allow_plain_http=self.allow_plain_http,
        )


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sztp" / "config.yaml"


def load_config(path: Path) -> dict[str, Any]:
    """The config file as {current_context, contexts}; empty when the file does not exist."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"current_context": None, "contexts": {}}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {_first_line(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping with current_context and contexts")
    contexts = data.get("contexts") or {}
    if not isinstance(contexts, dict):
        raise ConfigError(f"{path}: contexts must be a mapping of name to settings")
    for name, settings in contexts.items():
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: contexts.{name} must be a mapping")
        unknown = sorted(set(settings) - set(CONTEXT_FIELDS))
        if unknown:
            raise ConfigError(f"{path}: contexts.{name}.{unknown[0]}: unknown setting")
    current = data.get("current_context")
    if current is not None and not isinstance(current, str):
        raise ConfigError(f"{path}: current_context must be a context name")
    return {"current_context": current, "contexts": contexts}


def save_config(path: Path, config: Mapping[str, Any]) -> None:
    """Write the config file atomically with mode 0600 (it may hold tokens)."""
    import yaml

    from .files import write_atomically

    text = yaml.safe_dump(dict(config), sort_keys=False)
    write_atomically(path, text.encode(), mode=_FILE_MODE, dir_mode=0o700)


def resolve_connection(
    *,
    context: str | None = None,
    server: str | None = None,
    token_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
) -> Connection:
    """The connection the options, the environment and the config file ask for."""
    environ = os.environ if environ is None else environ
    path = path or config_path(environ)
    config = load_config(path)
    contexts: dict[str, dict[str, Any]] = config["contexts"]
    name = context or environ.get("SZTP_CONTEXT") or config["current_context"]
    if name is not None and name not in contexts:
        known = ", ".join(sorted(contexts)) or "none configured"
        raise ConfigError(f"no context named {name!r} in {path} ({known})")
    settings = contexts.get(name, {}) if name is not None else {}

    url = server or environ.get("SZTP_SERVER") or settings.get("server")
    if not url:
        raise ConfigError(
            "no server: pass --server, set SZTP_SERVER, or configure a context in "
            f"{path} (sztpctl config set-context)"
        )
    token = _token(token_file, environ, settings, path.parent)
    ca_text = environ.get("SZTP_CA_BUNDLE") or settings.get("ca_bundle")
    verify = settings.get("verify", True)
    if not isinstance(verify, bool):
        raise ConfigError(f"{path}: contexts.{name}.verify must be true or false")
    # The variable, when set, decides (either way); otherwise the context does.
    if environ.get(PLAIN_HTTP_VARIABLE, "").strip():
        allow_plain_http = flag(PLAIN_HTTP_VARIABLE, environ[PLAIN_HTTP_VARIABLE])
    else:
        allow_plain_http = settings.get("allow_plain_http", False)
        if not isinstance(allow_plain_http, bool):
            raise ConfigError(f"{path}: contexts.{name}.allow_plain_http must be true or false")
    return Connection(
        server=str(url),
        token=token,
        ca_bundle=_path(ca_text, path.parent) if ca_text else None,
        verify=verify,
        context=name,
        allow_plain_http=allow_plain_http,
    )


def _token(
    option_file: Path | None,
    environ: Mapping[str, str],
    settings: Mapping[str, Any],
    base: Path,
) -> str | None:
    if option_file is not None:
        return read_token_file(option_file)
    if environ.get("SZTP_TOKEN"):
        return environ["SZTP_TOKEN"].strip()
    if environ.get("SZTP_TOKEN_FILE"):
        return read_token_file(Path(environ["SZTP_TOKEN_FILE"]))
    if settings.get("token"):
        return str(settings["token"]).strip()
    if settings.get("token_file"):
        return read_token_file(_path(str(settings["token_file"]), base))
    return None


def read_token_file(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not readable text"
        raise ConfigError(f"cannot read token file {path}: {reason}") from None
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def _path(text: str, base: Path) -> Path:
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

"""Server configuration: a YAML file, then `SZTP_SERVER_*` environment overrides.

A variable holds a scalar setting's value, or a structured setting (a listener, a list) as YAML;
`SZTP_SERVER_<SETTING>_FILE` names a file holding that value instead (a container's secret).

Every setting is declared once, below, with its default and its meaning; docs/server.md
renders its settings table from these declarations (`scripts/gen_server_docs.py`).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar, get_type_hints
from urllib.parse import urlsplit

import yaml

from sztp.errors import ValidationError
from sztp.loopback import is_loopback
from sztp.pkcs11_uri import parse_pkcs11_uri

from .events_out.syslog_format import FACILITIES, parse_syslog_url
from .events_out.webhook_events import EVENT_TYPES

ENV_PREFIX = "SZTP_SERVER_"
LOG_LEVELS = ("debug", "info", "warning", "error")
# Where /metrics and /healthz are served (`monitoring_listeners`); device listeners face
# the devices' network, so by default they answer neither.
MONITORING_PLACES = ("admin", "device", "both")
DEFAULT_LISTENER_HOST = "127.0.0.1"
# Of `database_pool_size`, the store workers (and connections) kept for the admin API: one may
# be busy with a long apply while the other serves token checks and reads.
ADMIN_STORE_WORKERS = 2
WEBHOOK_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _about(doc: str, *, structured: bool = False, zero: str | None = None) -> dict[str, Any]:
    """A ServerConfig field's metadata: its meaning, whether it is structured (a mapping or a
    list, which its `SZTP_SERVER_*` variable gives as YAML), and what 0 does where it is
    allowed (a number otherwise must be positive)."""
    return {"doc": doc, "structured": structured, "zero": zero}


@dataclass(frozen=True)
class Listener:
    # No dataclass default (port, required, follows); `default` is what an omitted host means.
    host: str = field(
        metadata={
            "doc": "address to bind; `0.0.0.0` or `::` for every interface",
            "default": DEFAULT_LISTENER_HOST,
        }
    )
    port: int = field(metadata={"doc": "TCP port; 0 picks a free one"})
    tls_cert: Path | None = field(
        default=None,
        metadata={"doc": "PEM server certificate, then its chain; without it: plain HTTP"},
    )
    tls_key: Path | None = field(
        default=None, metadata={"doc": "PEM private key (unencrypted) of `tls_cert`"}
    )

    @property
    def uses_tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Webhook:
    name: str = field(metadata={"doc": "what the delivery status and the log call it"})
    url: str = field(
        metadata={
            "doc": "where events are POSTed: `https://...` (plain `http://` only to loopback)"
        }
    )
    secret_file: Path = field(
        metadata={
            "doc": "file (mode 0600, at least 16 bytes) with the key of the HMAC-SHA256 each "
            "body is signed with (`X-Sztp-Signature`)"
        }
    )
    events: tuple[str, ...] = field(
        default=tuple(EVENT_TYPES),
        metadata={"doc": "the event types sent to it; see the table of event types"},
    )
    ca_file: Path | None = field(
        default=None,
        metadata={"doc": "PEM CA certificates the receiver's certificate is checked against"},
    )


ISSUER_TYPES = ("builtin", "cmp", "hook")


@dataclass(frozen=True)
class LdevidIssuer:
    name: str = field(metadata={"doc": "what a profile's `ldevid_issuer` names"})
    type: str = field(
        metadata={
            "doc": "`builtin` (this server signs with the CA key below), `cmp` (an external "
            "CA over CMP, RFC 9483 `p10cr`) or `hook` (an executable that is given the CSR)"
        }
    )
    certificate_file: Path | None = field(
        default=None,
        metadata={
            "doc": "PEM certificate of the issuing CA, then its issuers (builtin; cmp: the "
            "CA certificates an answer must chain to)"
        },
    )
    private_key_file: Path | None = field(
        default=None,
        metadata={"doc": "PEM private key of the issuing CA, mode 0600 (builtin)"},
    )
    private_key_password_file: Path | None = field(
        default=None,
        metadata={
            "doc": "file (mode 0600) with the passphrase of an encrypted `private_key_file` "
            "(PKCS#8 `ENCRYPTED PRIVATE KEY`), e.g. a systemd credential "
            "(`/run/credentials/sztp-server.service/...`), so that the key is encrypted at rest "
            "(builtin)"
        },
    )
    private_key_uri: str | None = field(
        default=None,
        metadata={
            "doc": "instead of `private_key_file`, the issuing CA's key in a token of "
            "`pkcs11_module`, named by a PKCS#11 URI (RFC 7512, e.g. "
            "`pkcs11:token=ca;object=ldevid-ca`): the key is never in a file nor in memory "
            "(builtin)"
        },
    )
    validity_days: int = field(
        default=365,
        metadata={"doc": "how long an LDevID is valid (builtin; bounded by the CA's own)"},
    )
    crl_validity_days: int = field(
        default=7,
        metadata={
            "doc": "how long a CRL the server signs is current, its nextUpdate (builtin): a file "
            "server that fetches it daily keeps relying parties served through that many days "
            "of the server being away"
        },
    )
    url: str | None = field(
        default=None,
        metadata={"doc": "the CMP server's URL, e.g. `http://ca.example:8080/pkix/` (cmp)"},
    )
    reference: str | None = field(
        default=None,
        metadata={"doc": "the sender key identifier of the shared-secret MAC (cmp)"},
    )
    secret_file: Path | None = field(
        default=None,
        metadata={"doc": "file (mode 0600) with the shared secret of the MAC (cmp)"},
    )
    command: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "the executable and its arguments (hook); see the hook's contract in "
            "docs/ldevid.md"
        },
    )
    timeout: float = field(
        default=10.0,
        metadata={"doc": "seconds an issuance may take before the device is told to retry"},
    )
    concurrency: int = field(
        default=4,
        metadata={"doc": "issuances under way at once per server process; more wait their turn"},
    )


@dataclass(frozen=True)
class ServerConfig:
    database_url: str = field(
        default="sqlite:///var/lib/sztp/sztp.db",
        metadata=_about("`sqlite:///absolute/path.db` or `postgresql://user:password@host/db`"),
    )
    database_statement_timeout: float = field(
        default=60.0,
        metadata=_about(
            "seconds; PostgreSQL cancels a statement of this server that runs (or waits for a "
            "lock) longer, and the request fails with 503 instead of hanging (`statement_timeout` "
            "of every connection), and ends a transaction left idle as long "
            "(`idle_in_transaction_session_timeout`); SQLite ignores it"
        ),
    )
    database_pool_size: int = field(
        default=6,
        metadata=_about(
            f"store calls this server runs at once, each in a worker thread of its own with its "
            f"own connection (a PostgreSQL pool of this size; SQLite opens one per thread); "
            f"{ADMIN_STORE_WORKERS} serve the admin API, the others devices, so a long admin "
            f"write never holds up a device; at least {ADMIN_STORE_WORKERS + 1}"
        ),
    )
    workers: int = field(
        default=0,
        metadata=_about(
            "processes serving the device listeners, each on a core of its own: this one (which "
            "also serves the admin API) and `workers` - 1 device workers beside it, on the same "
            "addresses (SO_REUSEPORT, the kernel spreading connections); 0 is one per core the "
            "server may run on. Login and report rate limits hold for all of them together; "
            "each process keeps its own connection caps, response cache and "
            "`database_pool_size` connections",
            zero="is one per core",
        ),
    )
    device_listeners: tuple[Listener, ...] = field(
        default=(Listener("0.0.0.0", 8443),),  # noqa: S104 - devices come from the network
        metadata=_about(
            "where devices connect; give each a `tls_cert` and `tls_key` unless a TLS-terminating "
            "proxy sits in front",
            structured=True,
        ),
    )
    admin_listener: Listener = field(
        default=Listener(DEFAULT_LISTENER_HOST, 7080),
        metadata=_about(
            "the admin API (`sztpctl`, Ansible); a host other than loopback (127.0.0.0/8, `::1`, "
            "`localhost`) needs `tls_cert`/`tls_key`, or `admin_allow_plain_http`",
            structured=True,
        ),
    )
    admin_allow_plain_http: bool = field(
        default=False,
        metadata=_about(
            "serve the admin API over plain HTTP on a host other than loopback, e.g. behind a "
            "TLS-terminating proxy on the same network segment: bearer tokens and secrets then "
            "cross that network unencrypted"
        ),
    )
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        default=(),
        metadata=_about(
            "addresses or networks of TLS-terminating proxies allowed to pass a device's client "
            "certificate in `client_cert_header` (IPv4 entries also match IPv4-mapped IPv6 peers)",
            structured=True,
        ),
    )
    client_cert_header: str = field(
        default="X-SSL-Client-Cert",
        metadata=_about(
            "header carrying the URL-encoded PEM client certificate from a trusted proxy, e.g. "
            "nginx `$ssl_client_escaped_cert`; its name matches in any case, and a request with "
            "more than one is refused"
        ),
    )
    password_failures_per_address: int = field(
        default=20,
        metadata=_about(
            "failed HTTP Basic logins one client address (an IPv6 /64) may make in a burst; "
            "beyond that, and until `password_failure_refill_seconds` gives one back, it gets "
            "`429`; not applied to `trusted_proxies`; 0 turns it off",
            zero="turns it off",
        ),
    )
    password_failures_per_serial: int = field(
        default=10,
        metadata=_about(
            "failed HTTP Basic logins for one claimed serial number (known or not), from "
            "anywhere, in a burst; beyond that it gets `429`; 0 turns it off",
            zero="turns it off",
        ),
    )
    password_failure_refill_seconds: float = field(
        default=30.0,
        metadata=_about("seconds in which each address and each serial regain one failed login"),
    )
    password_workers: int = field(
        default=4,
        metadata=_about(
            "threads checking device passwords (scrypt: deliberately slow, 16 MiB each), "
            "apart from all other work; about the number of CPU cores"
        ),
    )
    password_queue: int = field(
        default=64,
        metadata=_about(
            "device password checks that may wait for a `password_workers` thread; beyond "
            "that a login gets `503` at once"
        ),
    )
    admin_token_file: Path = field(
        default=Path("/var/lib/sztp/admin-token"),
        metadata=_about(
            "where the first admin token is written (mode 0600) when the database has no token"
        ),
    )
    secret_key_file: Path | None = field(
        default=None,
        metadata=_about(
            "file (mode 0600, 64 hex digits) with the key that encrypts owner private keys and "
            "keys device password check values in the database; keep it out of database backups "
            "and give every instance sharing a database the same one; unset: the systemd "
            "credential `secret-key` (`LoadCredential=`) if given, else `secret-key` beside "
            "`admin_token_file`, created at first start"
        ),
    )
    pkcs11_module: Path | None = field(
        default=None,
        metadata=_about(
            "PKCS#11 library (e.g. `/usr/lib/softhsm/libsofthsm2.so`) holding owner keys that "
            "an owner's `private_key` names by PKCS#11 URI, and LDevID CA keys an issuer's "
            "`private_key_uri` names; each server process opens it at its first signature"
        ),
    )
    pkcs11_pin_file: Path | None = field(
        default=None,
        metadata=_about(
            "file (mode 0600) with the user PIN of the `pkcs11_module` tokens, read at each "
            "login; a PIN the token refused is not tried again until the file changes"
        ),
    )
    log_level: str = field(default="info", metadata=_about(f"one of {', '.join(LOG_LEVELS)}"))
    stall_after_minutes: float = field(
        default=30.0,
        metadata=_about('a device silent this long in the middle of a bootstrap is "stalled"'),
    )
    expiry_warning_days: float = field(
        default=14.0,
        metadata=_about(
            "vouchers, owner certificates, trust anchors, TLS certificates and issued LDevIDs "
            "that expire "
            "within this many days (or have expired) are shown by `sztpctl status` and counted "
            "in /metrics (vouchers are often issued for 30 days: a longer warning would flag "
            "every new one)"
        ),
    )
    reports_per_device: int = field(
        default=1000,
        metadata=_about("progress reports kept per device; the oldest go first"),
    )
    report_bytes_per_device: int = field(
        default=4 * 1024 * 1024,
        metadata=_about(
            "bytes of progress reports (messages, SSH host keys, trust anchors) kept per device; "
            "the oldest reports go first, the newest always stays"
        ),
    )
    repeated_report_seconds: float = field(
        default=60.0,
        metadata=_about(
            "a progress report equal to the device's newest one and sent within this many "
            "seconds of it is answered but not stored again: a device whose answer was lost "
            "sends its report again, and RFC 8572 reports carry no id; 0 stores every copy",
            zero="stores every copy",
        ),
    )
    max_report_bytes: int = field(
        default=16 * 1024,
        metadata=_about(
            "largest progress report stored (message, SSH host keys, trust anchors), in bytes, "
            "and at most `report_bytes_per_device`; beyond it surplus keys and anchors are left "
            "out, the message is cut, and the report is marked `truncated`"
        ),
    )
    device_events_kept: int = field(
        default=200_000,
        metadata=_about(
            "device requests the flight recorder keeps, served and refused, of every device and "
            "instance together; the oldest go first"
        ),
    )
    device_events_max_age_days: float = field(
        default=90.0,
        metadata=_about(
            "days the flight recorder keeps a device request, whatever `device_events_kept` "
            "allows; 0 keeps them until that count pushes them out",
            zero="keeps them until `device_events_kept` pushes them out",
        ),
    )
    refused_events_per_second: float = field(
        default=50.0,
        metadata=_about(
            "refused device requests the flight recorder records per second and server process; "
            "beyond, they are only counted (`sztp_device_events_dropped_total`), so that a flood "
            "of bad logins cannot push out what matters"
        ),
    )
    webhooks: tuple[Webhook, ...] = field(
        default=(),
        metadata=_about(
            "receivers of device events (status changed, failed, complete), each a mapping of "
            "the keys below; delivered at least once from an outbox in the store",
            structured=True,
        ),
    )
    ldevid_issuers: tuple[LdevidIssuer, ...] = field(
        default=(),
        metadata=_about(
            "certificate authorities that issue LDevIDs to devices (RFC 9646), each a mapping "
            "of the keys below; a profile names one with `ldevid_issuer`",
            structured=True,
        ),
    )
    webhook_retry_hours: float = field(
        default=24.0,
        metadata=_about(
            "how long an event is retried (after 1 s, doubling up to an hour) before its "
            "delivery is given up and counted as failed"
        ),
    )
    webhook_refused_per_minute: int = field(
        default=60,
        metadata=_about(
            "refused device requests in a minute (all reasons, the flight recorder's count) at "
            "which a `refused-requests` webhook event is sent"
        ),
    )
    syslog_url: str | None = field(
        default=None,
        metadata=_about(
            "where the flight recorder's events also go, as RFC 5424 syslog messages: "
            "`udp://HOST[:514]`, `tcp://HOST[:601]` (RFC 6587, octet counting) or "
            "`tls://HOST[:6514]` (RFC 5425); unset: nowhere"
        ),
    )
    syslog_facility: str = field(
        default="daemon",
        metadata=_about("syslog facility of those messages: `daemon`, `auth`, `local0`..."),
    )
    syslog_ca_file: Path | None = field(
        default=None,
        metadata=_about(
            "PEM CA certificates a `tls://` receiver's certificate is checked against (its "
            "name too); unset: the system's"
        ),
    )
    syslog_tls_cert: Path | None = field(
        default=None,
        metadata=_about(
            "PEM client certificate (then its chain) for a `tls://` receiver that asks"
        ),
    )
    syslog_tls_key: Path | None = field(
        default=None, metadata=_about("PEM private key (unencrypted) of `syslog_tls_cert`")
    )
    report_rate_per_minute: float = field(
        default=12.0,
        metadata=_about(
            "progress reports per minute a device may send once its `report_burst` is spent; "
            "faster ones are refused (HTTP 429) and not stored. Counted per server instance"
        ),
    )
    report_burst: int = field(
        default=60,
        metadata=_about(
            "progress reports a device may send in a row before `report_rate_per_minute` applies"
        ),
    )
    refresh_interval: float = field(
        default=1.0,
        metadata=_about("seconds; how soon changes made through another server instance are seen"),
    )
    # A few hundred slow clients must not use up the descriptors every device needs
    # (docs/server.md, "Connection limits").
    request_head_timeout: float = field(
        default=10.0,
        metadata=_about(
            "seconds a client has, from being accepted (TLS handshake included, a wait for a "
            "`max_tls_handshakes` slot not) or from the first byte of a further request on a "
            "kept-alive connection, to send a whole request head; then the connection is "
            "closed (every listener)"
        ),
    )
    request_body_timeout: float = field(
        default=30.0,
        metadata=_about(
            "seconds an authenticated device has to send its request body; then it gets `408` "
            "and the connection is closed"
        ),
    )
    keepalive_timeout: float = field(
        default=15.0,
        metadata=_about(
            "seconds a kept-alive connection may wait idle for its next request (every listener)"
        ),
    )
    max_connections_per_address: int = field(
        default=256,
        metadata=_about(
            "device connections open at once from one address (a NAT gateway counts once), TLS "
            "handshakes included, per server process; one more is closed at once (reset); "
            "`trusted_proxies` are exempt"
        ),
    )
    listen_backlog: int = field(
        default=4096,
        metadata=_about(
            "connections the kernel queues on each listener socket until the server accepts "
            "them (the `listen()` backlog, capped by the kernel's `net.core.somaxconn`): when a "
            "pod powers on at once, devices beyond it have their connection attempts dropped "
            "and resent by TCP, seconds later"
        ),
    )
    max_connections: int = field(
        default=4096,
        metadata=_about(
            "device connections open at once over all device listeners, per server process; "
            "while it is reached, new connections are not accepted but wait in the kernel's "
            "queue (`listen_backlog`) until others close; keep it well below the process's "
            "file-descriptor limit (`LimitNOFILE`)"
        ),
    )
    # All of a burst's handshakes at once on one event loop finish together, too late
    # (docs/server.md, "Connection limits").
    max_tls_handshakes: int = field(
        default=64,
        metadata=_about(
            "TLS handshakes one server process runs at once on the device listeners; a further "
            "client waits, once its ClientHello has arrived, for one to end (the wait does not "
            "count against `request_head_timeout`); one address runs at most an eighth of them "
            "(`trusted_proxies` exempt)"
        ),
    )
    monitoring_listeners: str = field(
        default="admin",
        metadata=_about(
            "where `GET /metrics` is served: `admin` (with any API token), `device` (every "
            "device listener, with `GET /healthz` too, to anyone on the devices' network) or "
            "`both`; the admin listener answers `GET /healthz` without a token in any case"
        ),
    )
    # Device requests are small; admin bodies carry certificates, scripts and configurations
    # (up to 1 MiB per field); the bulk state of a whole fleet is larger still.
    max_body_bytes: int = field(
        default=4 * 1024 * 1024,
        metadata=_about("largest admin API request body, in bytes (except `POST /api/v1/state`)"),
    )
    max_bulk_body_bytes: int = field(
        default=64 * 1024 * 1024,
        metadata=_about("largest `POST /api/v1/state` body (a whole fleet), in bytes"),
    )
    # One profile's data is up to a few MiB (configuration and scripts up to 1 MiB each).
    response_cache_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata=_about(
            "memory, in bytes, for rendered bootstrapping data: each profile's data is kept once "
            "(signed and unsigned apart), pre-signed data once per device; the least recently "
            "used goes first beyond this"
        ),
    )
    audit_retention_days: float = field(
        default=0.0,
        metadata=_about(
            "days audit entries are kept; older ones are pruned at start and every hour "
            "(`sztpctl audit prune` prunes on demand); 0 keeps them forever",
            zero="turns it off",
        ),
    )

    @property
    def process_count(self) -> int:
        """Processes serving devices: `workers`, or one per core this process may run on."""
        if self.workers:
            return self.workers
        try:
            return len(os.sched_getaffinity(0))
        except OSError:  # a seccomp filter may refuse the call: every core, then
            return os.cpu_count() or 1

    def issuer_names(self) -> frozenset[str]:
        """What a profile's `ldevid_issuer` may name."""
        return frozenset(issuer.name for issuer in self.ldevid_issuers)

    def tls_certificate_files(self) -> list[tuple[str, Path]]:
        """(listener name, certificate file) of every listener with TLS."""
        return [
            (name, listener.tls_cert)
            for name, listener in self.named_listeners()
            if listener.tls_cert is not None
        ]

    def named_listeners(self) -> list[tuple[str, Listener]]:
        """Every listener with the name errors give it: device_listeners[0], ..., then
        admin_listener."""
        named = [
            (f"device_listeners[{index}]", listener)
            for index, listener in enumerate(self.device_listeners)
        ]
        return [*named, ("admin_listener", self.admin_listener)]


SETTINGS = tuple(item.name for item in fields(ServerConfig))
STRUCTURED_SETTINGS = frozenset(
    item.name for item in fields(ServerConfig) if item.metadata["structured"]
)
# `SZTP_SERVER_<SETTING>_FILE`: the value in a file, as container secrets are mounted.
FILE_SUFFIX = "_FILE"
# A value file is a secret or a setting, never bulk data: a larger one is a wrong path.
MAX_VALUE_FILE_BYTES = 64 * 1024
# Scalar settings are converted by their declared type, so a new setting needs no converter.
_SETTING_TYPES: dict[str, Any] = get_type_hints(ServerConfig)
_ZERO_MEANS = {
    item.name: item.metadata["zero"] for item in fields(ServerConfig) if item.metadata["zero"]
}


def env_variable(setting: str) -> str:
    """The environment variable that overrides `setting`, e.g. SZTP_SERVER_LOG_LEVEL."""
    return f"{ENV_PREFIX}{setting.upper()}"


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
    document.update(_environment_overrides(environ))
    return _build(document)


def _environment_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    # A misspelt variable must not be ignored silently: the server would run on a default.
    overrides: dict[str, Any] = {}
    given_by: dict[str, str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        setting = name.removeprefix(ENV_PREFIX).lower()
        if setting in SETTINGS:
            text = environ[name]
        elif name.endswith(FILE_SUFFIX) and setting.removesuffix("_file") in SETTINGS:
            setting = setting.removesuffix("_file")
            text = _value_file(name, environ[name])
        else:
            # Compared without the prefix, which every candidate shares.
            close = difflib.get_close_matches(setting, SETTINGS, n=1)
            hint = f" (did you mean {env_variable(close[0])}?)" if close else ""
            raise ValidationError(name, f"unknown environment variable{hint}")
        if setting in given_by:
            raise ValidationError(name, f"{given_by[setting]} sets {setting} too: set one of them")
        given_by[setting] = name
        overrides[setting] = _structured(name, text) if setting in STRUCTURED_SETTINGS else text
    return overrides


def _value_file(variable: str, location: str) -> str:
    """The value `variable` names a file for: its text without the final line break."""
    try:
        with Path(location).open("rb") as file:
            data = file.read(MAX_VALUE_FILE_BYTES + 1)
    except OSError as exc:
        raise ValidationError(variable, f"cannot read {location}: {exc.strerror}") from None
    if len(data) > MAX_VALUE_FILE_BYTES:
        raise ValidationError(variable, f"{location} is larger than {MAX_VALUE_FILE_BYTES} bytes")
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValidationError(variable, f"{location} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def _structured(variable: str, text: str) -> Any:
    """A structured setting's YAML, e.g. `{host: 0.0.0.0, port: 7080}` for a listener."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # Only where it failed: the text may hold a secret.
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValidationError(variable, f"not valid YAML{where}") from None


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _build(document: Mapping[str, Any]) -> ServerConfig:
    known = [item.name for item in fields(ServerConfig)]
    unknown = sorted(set(document) - set(known))
    if unknown:
        raise ValidationError(unknown[0], "unknown setting" + _did_you_mean(unknown[0], known))
    values = {name: _convert(name, value) for name, value in document.items()}
    config = replace(ServerConfig(), **values)
    if config.log_level not in LOG_LEVELS:
        raise ValidationError("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    if config.monitoring_listeners not in MONITORING_PLACES:
        raise ValidationError(
            "monitoring_listeners", f"must be one of {', '.join(MONITORING_PLACES)}"
        )
    if config.database_pool_size <= ADMIN_STORE_WORKERS:
        raise ValidationError(
            "database_pool_size",
            f"must be at least {ADMIN_STORE_WORKERS + 1}: {ADMIN_STORE_WORKERS} serve the "
            "admin API, the others devices",
        )
    _check_syslog(config)
    if (config.pkcs11_module is None) != (config.pkcs11_pin_file is None):
        raise ValidationError("pkcs11_module", "pkcs11_module and pkcs11_pin_file go together")
    for issuer in config.ldevid_issuers:
        if issuer.private_key_uri and config.pkcs11_module is None:
            raise ValidationError(
                "pkcs11_module",
                f"issuer {issuer.name}'s private_key_uri names a PKCS#11 token: set pkcs11_module "
                "and pkcs11_pin_file",
            )
    admin = config.admin_listener
    if not admin.uses_tls and not is_loopback(admin.host) and not config.admin_allow_plain_http:
        raise ValidationError(
            "admin_listener",
            f"plain HTTP on {admin.host}, which is not loopback: bearer tokens and secrets would "
            "cross the network unencrypted; add tls_cert and tls_key, bind 127.0.0.1, or set "
            "admin_allow_plain_http: true to accept the risk",
        )
    return config


def _check_syslog(config: ServerConfig) -> None:
    if config.syslog_facility not in FACILITIES:
        raise ValidationError("syslog_facility", f"must be one of {', '.join(FACILITIES)}")
    tls_files = {
        name: getattr(config, name)
        for name in ("syslog_ca_file", "syslog_tls_cert", "syslog_tls_key")
        if getattr(config, name) is not None
    }
    if config.syslog_url is None:
        if tls_files:
            raise ValidationError(next(iter(tls_files)), "only with a tls:// syslog_url")
        return
    if parse_syslog_url(config.syslog_url).transport != "tls" and tls_files:
        raise ValidationError(next(iter(tls_files)), "only with a tls:// syslog_url")
    if (config.syslog_tls_cert is None) != (config.syslog_tls_key is None):
        raise ValidationError("syslog_tls_cert", "syslog_tls_cert and syslog_tls_key go together")


def _convert(name: str, value: Any) -> Any:
    if name == "device_listeners":
        if not isinstance(value, list) or not value:
            raise ValidationError(name, "must be a non-empty list of listeners")
        return tuple(_listener(f"{name}[{index}]", item) for index, item in enumerate(value))
    if name == "admin_listener":
        return _listener(name, value)
    if name == "webhooks":
        return _named_entries(name, value, _webhook, "webhooks")
    if name == "ldevid_issuers":
        return _named_entries(name, value, _issuer, "issuers")
    if name == "trusted_proxies":
        if not isinstance(value, list):
            raise ValidationError(name, "must be a list of addresses or networks")
        try:
            return tuple(ipaddress.ip_network(str(item)) for item in value)
        except ValueError as exc:
            raise ValidationError(name, str(exc)) from None
    kind = _SETTING_TYPES[name]
    if kind is Path or kind == Path | None:
        return Path(str(value))
    if kind is bool:
        return _boolean(name, value)
    if kind in (int, float):
        return _number(name, value, kind)
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    return value


_Named = TypeVar("_Named", Webhook, LdevidIssuer)


def _named_entries(
    name: str, value: Any, entry: Callable[[str, Any], _Named], what: str
) -> tuple[_Named, ...]:
    """A list setting of mappings, each read by `entry`, their names distinct."""
    if not isinstance(value, list):
        raise ValidationError(name, f"must be a list of {what}")
    entries = tuple(entry(f"{name}[{index}]", item) for index, item in enumerate(value))
    names = [item.name for item in entries]
    if len(set(names)) != len(names):
        raise ValidationError(name, f"two {what} have the same name")
    return entries


def _number(name: str, value: Any, kind: type[int] | type[float]) -> int | float:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ValidationError(name, f"must be a {kind.__name__}") from None
    if not math.isfinite(number):
        raise ValidationError(name, "must be a finite number")
    if name in _ZERO_MEANS:
        if number < 0:
            raise ValidationError(name, f"must not be negative (0 {_ZERO_MEANS[name]})")
    elif number <= 0:
        raise ValidationError(name, "must be positive")
    return number


def _boolean(name: str, value: Any) -> bool:
    # From the file: a YAML boolean; from the environment: text.
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in ("true", "yes", "on", "1"):
        return True
    if text in ("false", "no", "off", "0"):
        return False
    raise ValidationError(name, "must be true or false")


def _known_keys(name: str, value: Any, kind: type, what: str) -> None:
    """`value` is a mapping of `kind`'s fields (a dataclass), or a ValidationError says why."""
    if not isinstance(value, dict):
        raise ValidationError(name, f"must be a mapping with {what}")
    keys = [item.name for item in fields(kind)]
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ValidationError(
            f"{name}.{unknown[0]}", "unknown setting" + _did_you_mean(unknown[0], keys)
        )


def _webhook(name: str, value: Any) -> Webhook:
    _known_keys(name, value, Webhook, "name, url and secret_file")
    for required in ("name", "url", "secret_file"):
        if not isinstance(value.get(required), str) or not value[required]:
            raise ValidationError(f"{name}.{required}", "is required (text)")
    if not WEBHOOK_NAME.fullmatch(value["name"]):
        raise ValidationError(f"{name}.name", "must be 1-64 letters, digits, '.', '_' or '-'")
    parts = urlsplit(value["url"])
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValidationError(f"{name}.url", "must be an https:// URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValidationError(
            f"{name}.url",
            "plain http:// only to loopback: device events would cross the network unencrypted",
        )
    events = value.get("events", list(EVENT_TYPES))
    if not isinstance(events, list) or not events:
        raise ValidationError(f"{name}.events", "must be a non-empty list of event types")
    for event in events:
        if event not in EVENT_TYPES:
            raise ValidationError(
                f"{name}.events", f"unknown event type {event!r}; one of {', '.join(EVENT_TYPES)}"
            )
    ca_file = value.get("ca_file")
    return Webhook(
        name=value["name"],
        url=value["url"],
        secret_file=Path(value["secret_file"]),
        events=tuple(dict.fromkeys(events)),
        ca_file=Path(ca_file) if ca_file else None,
    )


# What each issuer type needs, beyond name and type.
_ISSUER_NEEDS: Mapping[str, tuple[str, ...]] = {
    "builtin": ("certificate_file",),
    "cmp": ("url", "reference", "secret_file", "certificate_file"),
    "hook": ("command",),
}


def _issuer(name: str, value: Any) -> LdevidIssuer:
    _known_keys(name, value, LdevidIssuer, "name and type")
    if not isinstance(value.get("name"), str) or not WEBHOOK_NAME.fullmatch(value["name"]):
        raise ValidationError(f"{name}.name", "must be 1-64 letters, digits, '.', '_' or '-'")
    issuer_type = value.get("type")
    if issuer_type not in ISSUER_TYPES:
        raise ValidationError(f"{name}.type", f"must be one of {', '.join(ISSUER_TYPES)}")
    for needed in _ISSUER_NEEDS[issuer_type]:
        if not value.get(needed):
            raise ValidationError(f"{name}.{needed}", f"is required for a {issuer_type} issuer")
    command = value.get("command", [])
    if not isinstance(command, list) or not all(isinstance(item, str) for item in command):
        raise ValidationError(f"{name}.command", "must be a list: the executable, then arguments")
    url = value.get("url")
    if url is not None:
        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValidationError(f"{name}.url", "must be an http:// or https:// URL")
    key_uri = value.get("private_key_uri")
    if issuer_type == "builtin" and bool(value.get("private_key_file")) == bool(key_uri):
        raise ValidationError(
            f"{name}.private_key_file",
            "a builtin issuer needs one of private_key_file and private_key_uri",
        )
    if value.get("private_key_password_file") and not value.get("private_key_file"):
        raise ValidationError(
            f"{name}.private_key_password_file", "is the passphrase of a private_key_file"
        )
    if key_uri is not None:
        try:
            parse_pkcs11_uri(str(key_uri))
        except ValidationError as exc:
            raise ValidationError(f"{name}.private_key_uri", exc.message) from None
    paths = {
        key: Path(str(value[key])) if value.get(key) else None
        for key in (
            "certificate_file",
            "private_key_file",
            "private_key_password_file",
            "secret_file",
        )
    }
    return LdevidIssuer(
        name=value["name"],
        type=issuer_type,
        validity_days=int(_number(f"{name}.validity_days", value.get("validity_days", 365), int)),
        crl_validity_days=int(
            _number(f"{name}.crl_validity_days", value.get("crl_validity_days", 7), int)
        ),
        url=str(url) if url is not None else None,
        reference=str(value["reference"]) if value.get("reference") else None,
        private_key_uri=str(key_uri) if key_uri else None,
        command=tuple(command),
        timeout=float(_number(f"{name}.timeout", value.get("timeout", 10.0), float)),
        concurrency=int(_number(f"{name}.concurrency", value.get("concurrency", 4), int)),
        **paths,
    )


def _listener(name: str, value: Any) -> Listener:
    _known_keys(name, value, Listener, "host and port")
    port = value.get("port")
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValidationError(f"{name}.port", "must be a port number (0 picks a free one)")
    cert, key = value.get("tls_cert"), value.get("tls_key")
    if (cert is None) != (key is None):
        raise ValidationError(name, "tls_cert and tls_key go together")
    return Listener(
        host=str(value.get("host", DEFAULT_LISTENER_HOST)),
        port=port,
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
    )

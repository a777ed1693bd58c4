"""The agent's configuration file (`/etc/sztp-agent/agent.yaml` unless `--config` says
otherwise): each setting declared once below, with its default and what it means (docs/agent.md
renders the table from these declarations). Loading checks every value and names the first
problem with the setting's name; nothing here reaches the network."""

from __future__ import annotations

import re
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from sztp.dns_discovery import DEFAULT_TIMEOUT, DnsSettings, check_settings
from sztp.errors import SztpError, ValidationError
from sztp.protocol import dhcp, pki
from sztp.protocol.csr import KEY_ALGORITHMS
from sztp.protocol.restconf import WireFormat
from sztp.simulator.model import KEY_STORES, KeyStore

from .discovery.leases import DEFAULT_LOCATIONS, LeaseLocations

DEFAULT_CONFIG = Path("/etc/sztp-agent/agent.yaml")
MAX_CONFIG_SIZE = 1024 * 1024
REPROVISION_POLICIES = ("never", "network-change")
_INTERFACE_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class AgentConfig:
    idevid_certificate: Path = field(
        metadata=_doc("PEM file of the device's IDevID certificate (with its chain, if any)")
    )
    idevid_key: Path = field(
        metadata=_doc(
            "PEM file of the IDevID private key (0600; never logged or sent), or of its TPM key "
            "blob with `idevid_key_store: tpm2`"
        )
    )
    trust_anchors: Path = field(
        metadata=_doc(
            "PEM file of the manufacturer trust anchors that ownership vouchers must chain to"
        )
    )
    idevid_key_store: KeyStore = field(
        default="file",
        metadata=_doc(
            "where the IDevID key is: `file`, `idevid_key` is the private key; `tpm2`, a TPM 2.0 "
            "holds it and `idevid_key` is its blob (TSS2 PRIVATE KEY), used through OpenSSL's "
            "tpm2 provider (OPENSSL_CONF; see docs/agent.md)"
        ),
    )
    serial_number: str | None = field(
        default=None,
        metadata=_doc("the device's serial number; default: the IDevID's subject serialNumber"),
    )
    hw_model: str | None = field(
        default=None, metadata=_doc("hardware model sent in get-bootstrapping-data")
    )
    os_release: Path = field(
        default=Path("/etc/os-release"),
        metadata=_doc(
            "os-release file whose NAME and VERSION_ID are the OS the device runs (compared with "
            "the boot image's os-name and os-version)"
        ),
    )
    bootstrap_uris: tuple[str, ...] = field(
        default=(),
        metadata=_doc("bootstrap servers tried before those DHCP names, `https://host[:port]`"),
    )
    dhcp: bool = field(
        default=True,
        metadata=_doc("read bootstrap servers from DHCP leases (option 143 / 136; untrusted)"),
    )
    dns: bool = field(
        default=False,
        metadata=_doc(
            "after the DHCP leases, look in DNS (RFC 8572 §4.2; untrusted): TXT "
            "`<serial>._sztp` for bootstrapping data, then SRV `_sztp._tcp` for bootstrap "
            "servers, each over mDNS (`.local`) first, then in each of `dns_domains`; the "
            "queries carry the serial number in clear"
        ),
    )
    dns_domains: tuple[str, ...] = field(
        default=(),
        metadata=_doc("domains `dns` looks in, in order; empty: the search domains of resolv.conf"),
    )
    dns_nameservers: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "nameservers `dns` asks, `address` or `address:port` (`[v6]:port`); empty: those "
            "of resolv.conf"
        ),
    )
    mdns: bool = field(
        default=True,
        metadata=_doc("with `dns`: one-shot mDNS queries (`.local`) before unicast DNS"),
    )
    dns_timeout: float = field(
        default=DEFAULT_TIMEOUT,
        metadata=_doc("seconds one unicast DNS lookup may take, every nameserver tried"),
    )
    dhclient_lease_dirs: tuple[str, ...] = field(
        default=("/var/lib/dhcp", "/var/lib/dhclient"),
        metadata=_doc("where ISC dhclient writes its lease files (`dhclient*.leases`)"),
    )
    interfaces: tuple[str, ...] = field(
        default=(), metadata=_doc("only these interfaces' leases, in this order; empty: all")
    )
    server_ca: Path | None = field(
        default=None,
        metadata=_doc(
            "PEM TLS trust anchors for bootstrap servers: a server that verifies against them "
            "is trusted (its unsigned data accepted, reports sent); without it only signed "
            "data is accepted"
        ),
    )
    file_server_ca: Path | None = field(
        default=None,
        metadata=_doc("PEM TLS trust anchors for boot-image downloads (default: the system's)"),
    )
    password_file: Path | None = field(
        default=None,
        metadata=_doc(
            "file whose first line is an HTTP Basic password, sent only to trusted servers"
        ),
    )
    state_dir: Path = field(
        default=Path("/var/lib/sztp-agent"),
        metadata=_doc("where the agent keeps its status, log, lock and downloads"),
    )
    handlers_dir: Path = field(
        default=Path("/etc/sztp-agent/handlers"),
        metadata=_doc(
            "directory of the install handlers (`install-image`, `apply-configuration`); "
            "see docs/agent.md for their contract"
        ),
    )
    handler_environment: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=_doc(
            "environment variables given to the install handlers (a mapping), e.g. "
            "SZTP_INSTALL_ROOT or SZTP_CONFIG_RELOAD for the shipped ones"
        ),
    )
    reboot_command: tuple[str, ...] = field(
        default=("systemctl", "reboot"),
        metadata=_doc("what reboots the device after an image install"),
    )
    ssh_host_keys: str = field(
        default="/etc/ssh/ssh_host_*_key.pub",
        metadata=_doc("glob of the SSH host public keys sent with bootstrap-complete"),
    )
    attempts: int = field(
        default=5, metadata=_doc("how many times a session tries every bootstrap server")
    )
    retry_seconds: float = field(
        default=30.0,
        metadata=_doc("the wait after a failed attempt, doubled after each one (at most 15 min)"),
    )
    timeout: float = field(default=30.0, metadata=_doc("seconds a server has to answer"))
    script_timeout: float = field(
        default=300.0, metadata=_doc("seconds a pre- or post-configuration script may run")
    )
    handler_timeout: float = field(
        default=1800.0, metadata=_doc("seconds an install handler may run")
    )
    max_reboots: int = field(
        default=2,
        metadata=_doc("boot-image installs in one session before the image counts as failed"),
    )
    max_image_size: int = field(default=8 * 1024**3, metadata=_doc("bytes a boot image may have"))
    wire_format: str = field(
        default="json", metadata=_doc("`json` or `xml`: the RESTCONF encoding used")
    )
    send_nonce: bool = field(
        default=False,
        metadata=_doc("ask for a voucher made for this request (RFC 8366 nonce)"),
    )
    ldevid_keys: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "key algorithms (`ec-p256`, `ec-p384`, `ec-p521`, `rsa`, `ed25519`) the device "
            "offers a trusted server to make an LDevID key with (RFC 9646), preferred first; the "
            "LDevID is kept as `work/ldevid.pem`, its key as `work/ldevid.key` (0600) under "
            "`state_dir`; empty: it asks for none"
        ),
    )
    reprovision: str = field(
        default="never",
        metadata=_doc(
            "`network-change`: bootstrap again at boot when the DHCP server or subnet differs "
            "from those of the session that completed; `never`: only `ztp run --force`"
        ),
    )

    @property
    def dns_settings(self) -> DnsSettings:
        return DnsSettings(
            domains=self.dns_domains or None,
            nameservers=self.dns_nameservers,
            mdns=self.mdns,
            timeout=self.dns_timeout,
        )

    @property
    def encoding(self) -> WireFormat:
        return WireFormat.XML if self.wire_format == "xml" else WireFormat.JSON


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the setting."""


def lease_locations(config: AgentConfig) -> LeaseLocations:
    """Where the DHCP clients' leases are, as configured."""
    return replace(
        DEFAULT_LOCATIONS, dhclient=tuple(Path(path) for path in config.dhclient_lease_dirs)
    )


def setting_docs() -> list[tuple[str, str, str]]:
    """(name, default, meaning) of every setting, for the documentation."""
    rows = []
    for declared in fields(AgentConfig):
        if declared.default is MISSING:
            default = "required"
        elif declared.default is None or declared.default == ():
            default = "none"
        else:
            value = declared.default
            default = " ".join(value) if isinstance(value, tuple) else str(value)
        rows.append((declared.name, default, declared.metadata["doc"]))
    return rows


def load_config(path: Path) -> AgentConfig:
    """The configuration in `path`, checked; `ConfigError` names what is wrong."""
    try:
        with path.open("rb") as handle:
            text = handle.read(MAX_CONFIG_SIZE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror or exc}") from None
    if len(text) > MAX_CONFIG_SIZE:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_SIZE} bytes")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: must be a mapping of settings")
    try:
        return config_from_mapping(document, base=path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_mapping(document: dict[str, Any], *, base: Path) -> AgentConfig:
    """Settings from a mapping; relative paths are taken relative to `base`."""
    known = {declared.name: declared for declared in fields(AgentConfig)}
    unknown = sorted(str(name) for name in document if name not in known)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, declared in known.items():
        if name not in document:
            if declared.default is MISSING:
                raise ConfigError(f"{name} is required")
            continue
        values[name] = _convert(declared, document[name], base)
    config = AgentConfig(**values)
    _check(config)
    return config


def _convert(declared: Field[Any], value: Any, base: Path) -> Any:
    name, default = declared.name, declared.default
    # The annotations are text (postponed evaluation): a path setting says Path there.
    path_setting = "Path" in str(declared.type)
    if value is None:
        if default is MISSING or (default is not None and not path_setting):
            raise ConfigError(f"{name} must have a value")
        return None
    if path_setting:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a path")
        return base / value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a whole number, 0 or more")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{name} must be a number of seconds above 0")
        return float(value)
    if name == "handler_environment":
        if not isinstance(value, dict) or not all(
            isinstance(key, str) and _VARIABLE.fullmatch(key) and isinstance(text, str)
            for key, text in value.items()
        ):
            raise ConfigError(f"{name} must map variable names to strings")
        return tuple(sorted(value.items()))
    if isinstance(default, tuple):
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{name} must be a list of strings")
        return tuple(value)
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string")
    return value


def _check(config: AgentConfig) -> None:
    for uri in config.bootstrap_uris:
        try:
            dhcp.validate_bootstrap_uri(uri)
        except SztpError as exc:
            raise ConfigError(f"bootstrap_uris: {exc}") from None
    for interface in config.interfaces:
        if not _INTERFACE_NAME.fullmatch(interface):
            raise ConfigError(f"interfaces: {interface!r} is not an interface name")
    if not config.bootstrap_uris and not config.dhcp and not config.dns:
        raise ConfigError(
            "no way to find a bootstrap server: give bootstrap_uris, dhcp: true or dns: true"
        )
    try:
        check_settings(config.dns_settings)
    except ValidationError as exc:
        raise ConfigError(f"dns_{exc.field}: {exc.message}") from None
    if config.idevid_key_store not in KEY_STORES:
        raise ConfigError(f"idevid_key_store must be one of {', '.join(KEY_STORES)}")
    if config.wire_format not in ("json", "xml"):
        raise ConfigError("wire_format must be json or xml")
    unknown = [key for key in config.ldevid_keys if key not in KEY_ALGORITHMS]
    if unknown:
        raise ConfigError(f"ldevid_keys: {unknown[0]!r} is not one of {', '.join(KEY_ALGORITHMS)}")
    if config.reprovision not in REPROVISION_POLICIES:
        raise ConfigError(f"reprovision must be one of {', '.join(REPROVISION_POLICIES)}")
    if config.attempts < 1:
        raise ConfigError("attempts must be 1 or more")
    if not config.reboot_command:
        raise ConfigError("reboot_command must name a program")


def read_serial_number(config: AgentConfig) -> str:
    """The configured serial number, else the IDevID certificate's subject serialNumber."""
    if config.serial_number:
        return config.serial_number
    try:
        certificates = pki.load_certificates_pem(config.idevid_certificate.read_bytes())
        return pki.serial_from_certificate(certificates[0])
    except OSError as exc:
        raise ConfigError(f"idevid_certificate: {exc.strerror or exc}") from None
    except SztpError as exc:
        raise ConfigError(
            f"idevid_certificate: {exc}; give serial_number in the configuration"
        ) from None


def read_os_release(path: Path) -> tuple[str | None, str | None]:
    """NAME and VERSION_ID of an os-release file (None for either when absent)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")[:MAX_CONFIG_SIZE]
    except OSError:
        return None, None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, separator, value = line.partition("=")
        if separator and key.strip() in ("NAME", "VERSION_ID"):
            values[key.strip()] = value.strip().strip("\"'")
    return values.get("NAME"), values.get("VERSION_ID")

"""What the simulator is given and what it returns: the device's identity, how it finds and
trusts bootstrap servers, and the result of a run, step by step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from cryptography import x509

from ..dns_discovery import DnsSettings
from ..protocol.restconf import SshHostKey, WireFormat

Log = Callable[[str], None]
# "rebooting": the platform took the device down to boot a new image; the procedure starts
# again after boot (the simulator's platform reboots in place and never returns it).
Outcome = Literal["success", "failed", "rebooting"]

DEFAULT_MAX_IMAGE_SIZE = 8 * 1024**3
# Where the IDevID private key is: "file", a PEM private key this package reads; "tpm2", in a
# TPM 2.0, `idevid_key` being the key's blob (a TSS2 PRIVATE KEY PEM), which only OpenSSL with
# its tpm2 provider can use.
KeyStore = Literal["file", "tpm2"]
KEY_STORES: tuple[str, ...] = get_args(KeyStore)


@dataclass(frozen=True)
class DeviceIdentity:
    """The simulated device: serial number, IDevID files (and where the key is: `KeyStore`)
    and what it runs now."""

    serial_number: str
    idevid_certificate: Path
    idevid_key: Path
    password: str | None = field(default=None, repr=False)
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    idevid_key_store: KeyStore = "file"


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated device finds, trusts and talks to bootstrap servers.

    Give `bootstrap_uris` or `dhcp_option` (the raw option 143/136 payload), not both, or
    neither with `dns`. `dns`: look the device up in DNS too (RFC 8572 §4.2), its sources
    tried after those URIs.
    `trust_anchors` are the manufacturer anchors that vouchers must chain to. `server_ca` is a
    PEM bundle of TLS anchors for bootstrap servers: a server that verifies against it is
    trusted; without it every server is untrusted (provisional TLS). `file_server_ca` is the
    TLS trust for image downloads (system CAs when absent). `ssh_host_keys`: None generates an
    ed25519 host key; an empty tuple sends none.
    """

    bootstrap_uris: tuple[str, ...] = ()
    dhcp_option: bytes | None = None
    dns: DnsSettings | None = None
    trust_anchors: tuple[x509.Certificate, ...] = ()
    server_ca: Path | None = None
    file_server_ca: Path | None = None
    work_dir: Path = Path("sztp-device")
    run_scripts: bool = False
    wire_format: WireFormat = WireFormat.JSON
    send_nonce: bool = False
    timeout: float = 30.0
    script_timeout: float = 300.0
    max_redirects: int = 4
    max_reboots: int = 1
    max_image_size: int = DEFAULT_MAX_IMAGE_SIZE
    ssh_host_keys: tuple[SshHostKey, ...] | None = None
    # Key algorithms (`csr.KEY_ALGORITHMS`) the device offers to make an LDevID key with, to
    # trusted servers (RFC 9646 csr-support); empty: it asks for no LDevID.
    ldevid_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Step:
    """One step of the procedure: a progress type, its message and whether it was reported."""

    progress_type: str
    message: str
    reported: bool
    server: str | None = None


@dataclass(frozen=True)
class ServerCheck:
    """What the device made of one bootstrap server: whether its TLS certificate verified
    (None: no answer came), and what became of its bootstrapping data, in words."""

    uri: str
    server_trusted: bool | None
    data: str


@dataclass(frozen=True)
class Download:
    """One boot-image download: its URI and how it went, in words."""

    uri: str
    outcome: str


@dataclass(frozen=True)
class SimulationResult:
    """What happened: outcome, reason on failure, every step, servers and files touched."""

    outcome: Outcome
    reason: str | None
    steps: tuple[Step, ...]
    servers_contacted: tuple[str, ...]
    os_name: str | None
    os_version: str | None
    files_written: tuple[Path, ...]
    reboots: int = 0
    server_checks: tuple[ServerCheck, ...] = ()
    # The LDevID accepted (certificate and its issuers, PEM; its key beside it), if any.
    ldevid: Path | None = None
    downloads: tuple[Download, ...] = ()

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    @property
    def reports(self) -> list[tuple[str, str]]:
        """The (progress-type, message) pairs actually sent to bootstrap servers."""
        return [(step.progress_type, step.message) for step in self.steps if step.reported]

"""A simulated SZTP device: a real RFC 8572 client (the network and file-system edge).

`simulate()` plays the device procedure of RFC 8572 §5 against real bootstrap servers:

1. Bootstrap-server URIs come from the configuration or from a DHCP option 143/136 payload
   (RFC 8572 §8), tried in order (§5.2).
2. For each server (§5.3): TLS with the IDevID as client certificate. The server is *trusted*
   when its TLS certificate verifies against trust anchors the device holds (`server_ca`, or a
   trust anchor from trusted redirect information); otherwise the connection is provisional and
   the device sends `signed-data-preferred`. An HTTP Basic password, when configured, goes only
   to a trusted server: presenting the IDevID certificate discloses nothing reusable, but a
   password sent over unverified TLS (or to a server named by an unsigned redirect, §9)
   would be handed to whoever answers. The RESTCONF root comes from `/.well-known/host-meta`
   (`/restconf` when that answers 404), then `get-bootstrapping-data` is called.
3. The answer is verified (§5.4): voucher → owner certificate → signature, or accepted
   unsigned only from a trusted server (unsigned redirects are always usable, provisionally).
   Any failure abandons this server and the device moves on to the next source.
4. Redirect information (§5.5): its bootstrap servers are tried in order, up to a bounded
   depth. A `trust-anchor` is honoured only when the redirect came from a trusted source
   (signed, or from a trusted server); the redirected server must then verify against it.
5. Onboarding information (§5.6): boot image → pre-configuration script → configuration →
   post-configuration script, then `bootstrap-complete` with the device's SSH host keys.
   A boot-image mismatch downloads the image (download URIs in order, SHA-256 checked),
   "installs" it into the work directory, reports `boot-image-installed-rebooting` and
   "reboots": the whole procedure starts again with the new OS version in effect.

Progress reports (§5.6 and the `reporting-level` leaf of the bootstrap-server module) go
only to a *trusted* bootstrap server that supplied the onboarding information: a device never
reports to a server it does not trust, even when the data it got there was signed, and never
while processing redirect information. With `reporting-level` `minimal` (the default) the
device sends `bootstrap-initiated` and the terminating report (`bootstrap-complete`,
`boot-image-installed-rebooting` or an `*-error`); with `verbose` it sends every step. A trusted
server whose data fails verification gets `bootstrap-initiated` + `parsing-error`.
Every step is recorded in the result, with whether it was reported.

Every response body is read as it streams and abandoned once it exceeds the limit for its kind
(`restconf.MAX_OUTPUT_SIZE` for bootstrapping data, `MAX_HOST_META_SIZE`, `MAX_ERRORS_SIZE`), so a
hostile server cannot make the device buffer an endless answer.

Scripts are written to the work directory and executed only with `run_scripts=True` (in a
sandbox directory under it, with a timeout). The IDevID key and the Basic password are never
logged, nor put into reprs, exceptions or the scripts' environment.
"""

from __future__ import annotations

import base64
import hmac
import os
import re
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from urllib3.exceptions import InsecureRequestWarning

from .errors import SimulationError, SztpError
from .files import write_atomically
from .protocol import bootstrapping_data, cms, dhcp, pki, restconf
from .protocol.bootstrapping_data import BootstrappingData, VerifiedBootstrappingData
from .protocol.conveyed_info import (
    BootImage,
    BootstrapServer,
    OnboardingInformation,
    RedirectInformation,
)
from .protocol.restconf import (
    BOOT_IMAGE_INSTALLED_REBOOTING,
    BOOTSTRAP_COMPLETE,
    BOOTSTRAP_INITIATED,
    ERROR_PROGRESS_TYPES,
    RestconfError,
    SshHostKey,
    WireFormat,
)

Log = Callable[[str], None]
Outcome = Literal["success", "failed"]

HOST_META_PATH = "/.well-known/host-meta"
DEFAULT_RESTCONF_ROOT = restconf.DEFAULT_RESTCONF_ROOT
NONCE_SIZE = 16
DEFAULT_MAX_IMAGE_SIZE = 8 * 1024**3
_CHUNK_SIZE = 1024 * 1024
_BODY_CHUNK_SIZE = 64 * 1024
_MESSAGE_LIMIT = 2000
# Progress types sent even at reporting-level "minimal" (besides every "*-error").
_MINIMAL_REPORTS = frozenset(
    {BOOTSTRAP_INITIATED, BOOT_IMAGE_INSTALLED_REBOOTING, BOOTSTRAP_COMPLETE}
)
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+-]")


# --------------------------------------------------------------------------- public model


@dataclass(frozen=True)
class DeviceIdentity:
    """The simulated device: serial number, IDevID files and what it runs now."""

    serial_number: str
    idevid_certificate: Path
    idevid_key: Path
    password: str | None = field(default=None, repr=False)
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None


@dataclass(frozen=True)
class SimulatorConfig:
    """How the simulated device finds, trusts and talks to bootstrap servers.

    Give `bootstrap_uris` or `dhcp_option` (the raw option 143/136 payload), not both.
    `trust_anchors` are the manufacturer anchors that vouchers must chain to. `server_ca` is a
    PEM bundle of TLS anchors for bootstrap servers: a server that verifies against it is
    trusted; without it every server is untrusted (provisional TLS). `file_server_ca` is the
    TLS trust for image downloads (system CAs when absent). `ssh_host_keys`: None generates an
    ed25519 host key; an empty tuple sends none.
    """

    bootstrap_uris: tuple[str, ...] = ()
    dhcp_option: bytes | None = None
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


@dataclass(frozen=True)
class Step:
    """One step of the procedure: a progress type, its message and whether it was reported."""

    progress_type: str
    message: str
    reported: bool
    server: str | None = None


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

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"

    @property
    def reports(self) -> list[tuple[str, str]]:
        """The (progress-type, message) pairs actually sent to bootstrap servers."""
        return [(step.progress_type, step.message) for step in self.steps if step.reported]


def simulate(
    config: SimulatorConfig, identity: DeviceIdentity, *, log: Log | None = None
) -> SimulationResult:
    """Run the device procedure once (plus reboots after an image install); never raises
    for what servers do, only `SimulationError` for an unusable configuration or identity."""
    uris = bootstrap_uris(config)
    _check_identity(identity)
    _check_config(config)
    return _Device(config, identity, log or _ignore).run(uris)


def bootstrap_uris(config: SimulatorConfig) -> list[str]:
    """The bootstrap-server URIs the device starts from (configured, or from DHCP)."""
    if config.bootstrap_uris and config.dhcp_option is not None:
        raise SimulationError("give bootstrap URIs or a DHCP option payload, not both")
    if config.dhcp_option is not None:
        try:
            return dhcp.decode_uri_list(config.dhcp_option, validate=True)
        except SztpError as exc:
            raise SimulationError(f"DHCP option payload: {exc}") from None
    if not config.bootstrap_uris:
        raise SimulationError("no bootstrap server: give a URI or a DHCP option payload")
    uris = []
    for uri in config.bootstrap_uris:
        try:
            uris.append(dhcp.validate_bootstrap_uri(uri))
        except SztpError as exc:
            raise SimulationError(f"bootstrap URI: {exc}") from None
    return uris


def generate_ssh_host_key() -> tuple[SshHostKey, bytes]:
    """A fresh ed25519 host key: what `bootstrap-complete` carries, and the OpenSSH public line."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    algorithm, blob = line.split(b" ")[:2]
    return SshHostKey(algorithm.decode("ascii"), base64.b64decode(blob)), line + b"\n"


# --------------------------------------------------------------------------- checks


def _ignore(_message: str) -> None:
    return None


def _check_identity(identity: DeviceIdentity) -> None:
    if not identity.serial_number or not identity.serial_number.strip():
        raise SimulationError("the device needs a serial number")
    for what, path in (
        ("IDevID certificate", identity.idevid_certificate),
        ("IDevID key", identity.idevid_key),
    ):
        if not Path(path).is_file():
            raise SimulationError(f"{what} {path} is not a readable file")
    try:
        certificates = pki.load_certificates_pem(Path(identity.idevid_certificate).read_bytes())
        pki.load_private_key_pem(Path(identity.idevid_key).read_bytes())
    except (OSError, SztpError) as exc:
        raise SimulationError(f"IDevID: {_describe(exc)}") from None
    try:
        serial_in_certificate = pki.serial_from_certificate(certificates[0])
    except SztpError:
        return
    if serial_in_certificate != identity.serial_number:
        raise SimulationError(
            f"serial number {identity.serial_number!r} differs from the IDevID's "
            f"serialNumber {serial_in_certificate!r}"
        )


def _check_config(config: SimulatorConfig) -> None:
    if not config.trust_anchors:
        raise SimulationError("no manufacturer trust anchor: vouchers could not be verified")
    for what, path in (("server CA", config.server_ca), ("file-server CA", config.file_server_ca)):
        if path is None:
            continue
        try:
            pki.load_certificates_pem(Path(path).read_bytes())
        except (OSError, SztpError) as exc:
            raise SimulationError(f"{what} {path}: {_describe(exc)}") from None
    for name in ("max_redirects", "max_reboots"):
        if getattr(config, name) < 0:
            raise SimulationError(f"{name} cannot be negative")
    if config.timeout <= 0 or config.script_timeout <= 0 or config.max_image_size <= 0:
        raise SimulationError("timeouts and the image size limit must be positive")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        target = f"{exc.filename}: " if exc.filename else ""
        return f"{target}{exc.strerror or exc}"
    return str(exc)


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


# --------------------------------------------------------------------------- the procedure


class _Verdict(Enum):
    CONTINUE = "continue"  # this step is done, go on with the next one
    ABANDON = "abandon"  # this source failed; try the next one
    REBOOT = "reboot"  # a new image is installed; start over
    DONE = "done"  # bootstrap-complete


@dataclass(frozen=True)
class _Server:
    """A bootstrap server as the device knows it: URI and how it authenticates it."""

    uri: str
    ca_file: str | None  # TLS anchors; None = provisional (unauthenticated) connection
    fall_back_to_provisional: bool  # the anchors are a general list, not pinned for this server


@dataclass
class _Connection:
    server: _Server
    verify: str | bool
    trusted: bool
    restconf_root: str = DEFAULT_RESTCONF_ROOT
    reporting_level: str = "minimal"


class _Abandon(Exception):
    """Internal: the current source failed for the reason given (never leaves this module)."""


@dataclass(frozen=True)
class _Reply:
    """An HTTP answer whose body was read within its limit."""

    status_code: int
    content_type: str | None
    content: bytes


def _read_reply(response: requests.Response, limit: int, what: str) -> _Reply:
    """Read a streamed response's body, abandoning it as soon as it exceeds `limit` bytes
    (error bodies: `restconf.MAX_ERRORS_SIZE`), so an oversized or endless answer is never
    held in memory."""
    if response.status_code not in (200, 204):
        limit = restconf.MAX_ERRORS_SIZE
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limit:
        raise _Abandon(
            f"{what}: response of {announced} bytes is larger than the {limit}-byte limit; not read"
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_BODY_CHUNK_SIZE):
        size += len(chunk)
        if size > limit:
            raise _Abandon(
                f"{what}: response larger than the {limit}-byte limit; abandoned while reading"
            )
        chunks.append(chunk)
    return _Reply(response.status_code, response.headers.get("Content-Type"), b"".join(chunks))


def _http_error(response: _Reply) -> str:
    status = f"HTTP {response.status_code}"
    content_type = (response.content_type or "").lower()
    wire_format = WireFormat.XML if "xml" in content_type else WireFormat.JSON
    errors: Sequence[RestconfError] = ()
    if response.content:
        try:
            errors = restconf.parse_errors(response.content, wire_format)
        except SztpError:
            errors = ()
    details = "; ".join(_format_error(error) for error in errors)
    return f"{status}: {_clip(details)}" if details else status


class _Device:
    def __init__(self, config: SimulatorConfig, identity: DeviceIdentity, log: Log) -> None:
        self.config = config
        self.identity = identity
        self.log = log
        self.os_name = identity.os_name
        self.os_version = identity.os_version
        self.installed_image_sha256: bytes | None = None
        self.reboots = 0
        self.steps: list[Step] = []
        self.servers_contacted: list[str] = []
        self.files_written: list[Path] = []
        self.failures: list[str] = []
        self.session = requests.Session()
        self.session.cert = (str(identity.idevid_certificate), str(identity.idevid_key))
        self.session.trust_env = False
        self.ssh_host_keys = config.ssh_host_keys
        self._temporary_dir = Path(tempfile.gettempdir())
        self._nonce: bytes | None = None
        self._anchor_files = 0

    # ---- top level

    def run(self, uris: Sequence[str]) -> SimulationResult:
        with (
            self.session,
            tempfile.TemporaryDirectory(prefix="sztp-sim-") as temporary,
            warnings.catch_warnings(),
        ):
            # Provisional (unverified) TLS is part of the protocol, and logged as such.
            warnings.simplefilter("ignore", InsecureRequestWarning)
            self._temporary_dir = Path(temporary)
            return self._run(uris)

    def _run(self, uris: Sequence[str]) -> SimulationResult:
        initial = [
            _Server(
                uri,
                str(self.config.server_ca) if self.config.server_ca else None,
                fall_back_to_provisional=True,
            )
            for uri in uris
        ]
        while True:
            self.log(
                f"device {self.identity.serial_number} starts bootstrapping "
                f"(running {self._running()})"
            )
            self.failures = []
            verdict = self._walk(initial, depth=0)
            if verdict is _Verdict.DONE:
                return self._result("success", None)
            if verdict is _Verdict.REBOOT:
                self.reboots += 1
                self.log(f"rebooting into {self._running()} (reboot {self.reboots})")
                continue
            reason = "; ".join(self.failures) or "no bootstrap server answered"
            return self._result("failed", reason)

    def _result(self, outcome: Outcome, reason: str | None) -> SimulationResult:
        return SimulationResult(
            outcome=outcome,
            reason=reason,
            steps=tuple(self.steps),
            servers_contacted=tuple(self.servers_contacted),
            os_name=self.os_name,
            os_version=self.os_version,
            files_written=tuple(dict.fromkeys(self.files_written)),
            reboots=self.reboots,
        )

    def _running(self) -> str:
        return f"{self.os_name or '?'} {self.os_version or '?'}"

    def _walk(self, servers: Sequence[_Server], depth: int) -> _Verdict:
        for server in servers:
            verdict = self._bootstrap_from(server, depth)
            if verdict is not _Verdict.ABANDON:
                return verdict
        return _Verdict.ABANDON

    def _abandon(self, server: _Server, reason: str, *, logged: bool = False) -> _Verdict:
        if not logged:
            self.log(f"{server.uri}: {reason}")
        self.failures.append(f"{server.uri}: {reason}")
        return _Verdict.ABANDON

    # ---- one bootstrap server (RFC 8572 §5.3, §5.4)

    def _bootstrap_from(self, server: _Server, depth: int) -> _Verdict:
        self.servers_contacted.append(server.uri)
        try:
            connection, data = self._get_bootstrapping_data(server)
        except _Abandon as exc:
            return self._abandon(server, str(exc))
        nonce = self._nonce
        try:
            verified = bootstrapping_data.verify_bootstrapping_data(
                data,
                serial_number=self.identity.serial_number,
                trust_anchors=self.config.trust_anchors,
                server_trusted=connection.trusted,
                nonce=nonce,
            )
        except SztpError as exc:
            reason = f"bootstrapping data rejected: {exc}"
            if connection.trusted:
                self._step(connection, "bootstrap-initiated", "get-bootstrapping-data answered")
                self._step(connection, "parsing-error", reason)
            return self._abandon(server, reason, logged=connection.trusted)
        if isinstance(verified.information, RedirectInformation):
            return self._redirect(server, connection, verified, verified.information, depth)
        connection.reporting_level = data.reporting_level or "minimal"
        return self._onboard(connection, verified, verified.information)

    def _get_bootstrapping_data(self, server: _Server) -> tuple[_Connection, BootstrappingData]:
        trusted = server.ca_file is not None
        connection = _Connection(server, server.ca_file or False, trusted)
        try:
            connection.restconf_root = self._discover_root(connection)
        except requests.exceptions.SSLError as exc:
            if not (trusted and server.fall_back_to_provisional):
                raise _Abandon(f"TLS failed: {_tls_reason(exc)}") from None
            self.log(
                f"{server.uri}: server certificate not trusted ({_tls_reason(exc)}); "
                "continuing provisionally"
            )
            connection = _Connection(server, False, trusted=False)
            try:
                connection.restconf_root = self._discover_root(connection)
            except requests.exceptions.SSLError as retry:
                raise _Abandon(f"TLS failed: {_tls_reason(retry)}") from None
        state = "trusted" if connection.trusted else "untrusted (provisional)"
        self.log(f"{server.uri}: {state} server, RESTCONF root {connection.restconf_root}")
        self._nonce = os.urandom(NONCE_SIZE) if self.config.send_nonce else None
        request = restconf.GetBootstrappingDataInput(
            signed_data_preferred=not connection.trusted,
            hw_model=self.identity.hw_model,
            os_name=self.os_name,
            os_version=self.os_version,
            nonce=self._nonce,
        )
        body = restconf.encode_get_bootstrapping_data_input(request, self.config.wire_format)
        response = self._post(
            connection, restconf.RPC_GET_BOOTSTRAPPING_DATA, body, restconf.MAX_OUTPUT_SIZE
        )
        if response.status_code != 200:
            withheld = ""
            if self.identity.password is not None and not connection.trusted:
                withheld = " (Basic password withheld: it goes only to a trusted server)"
            raise _Abandon(f"get-bootstrapping-data failed: {_http_error(response)}{withheld}")
        try:
            data = restconf.parse_get_bootstrapping_data_output(
                response.content, self.config.wire_format
            )
        except SztpError as exc:
            raise _Abandon(f"get-bootstrapping-data answer unreadable: {exc}") from None
        kind = "signed" if data.ownership_voucher is not None else "unsigned"
        self.log(f"{server.uri}: received {kind} bootstrapping data")
        return connection, data

    def _discover_root(self, connection: _Connection) -> str:
        try:
            with self.session.get(
                connection.server.uri + HOST_META_PATH,
                verify=connection.verify,
                auth=self._auth(connection),
                timeout=self.config.timeout,
                headers={"Accept": "application/xrd+xml"},
                stream=True,
            ) as response:
                if response.status_code == 404:
                    return DEFAULT_RESTCONF_ROOT
                reply = _read_reply(response, restconf.MAX_HOST_META_SIZE, "host-meta")
        except requests.exceptions.SSLError:
            raise
        except requests.RequestException as exc:
            raise _Abandon(f"unreachable: {_request_reason(exc)}") from None
        if reply.status_code != 200:
            raise _Abandon(f"host-meta: {_http_error(reply)}")
        try:
            root = restconf.parse_host_meta(reply.content, reply.content_type)
        except SztpError as exc:
            raise _Abandon(f"host-meta unreadable: {exc}") from None
        return _same_origin_root(connection.server.uri, root)

    def _post(self, connection: _Connection, rpc: str, body: bytes, limit: int) -> _Reply:
        """POST an RPC; the answer's body is read up to `limit` bytes (error bodies up to
        `restconf.MAX_ERRORS_SIZE`), or the source is abandoned."""
        media_type = self.config.wire_format.media_type
        url = connection.server.uri + restconf.operation_path(connection.restconf_root, rpc)

        try:
            with self.session.post(
                url,
                data=body,
                verify=connection.verify,
                auth=self._auth(connection),
                timeout=self.config.timeout,
                headers={"Content-Type": media_type, "Accept": media_type},
                stream=True,
            ) as response:
                return _read_reply(response, limit, rpc)
        except requests.RequestException as exc:
            raise _Abandon(f"{rpc}: {_request_reason(exc)}") from None

    def _auth(self, connection: _Connection) -> tuple[str, str] | None:
        """HTTP Basic credentials, only for a server whose TLS certificate verified against
        trust the device holds: never on a provisional connection."""
        if self.identity.password is None or not connection.trusted:
            return None
        return (self.identity.serial_number, self.identity.password)

    # ---- redirect information (§5.5)

    def _redirect(
        self,
        server: _Server,
        connection: _Connection,
        verified: VerifiedBootstrappingData,
        information: RedirectInformation,
        depth: int,
    ) -> _Verdict:
        if depth >= self.config.max_redirects:
            return self._abandon(
                server, f"redirect refused: more than {self.config.max_redirects} redirects"
            )
        trusted_source = verified.signed or connection.trusted
        origin = "signed" if verified.signed else ("trusted" if connection.trusted else "untrusted")
        self.log(
            f"{server.uri}: {origin} redirect to "
            + ", ".join(_server_uri(target) for target in information.bootstrap_servers)
        )
        targets: list[_Server] = []
        for index, target in enumerate(information.bootstrap_servers):
            uri = _server_uri(target)
            ca_file = None
            if target.trust_anchor is not None and trusted_source:
                try:
                    ca_file = self._write_trust_anchor(target.trust_anchor, depth, index)
                except SztpError as exc:
                    self._abandon(_Server(uri, None, False), f"trust-anchor unusable: {exc}")
                    continue
            elif target.trust_anchor is not None:
                self.log(f"{uri}: trust-anchor from an untrusted redirect ignored")
            targets.append(_Server(uri, ca_file, fall_back_to_provisional=False))
        return self._walk(targets, depth + 1)

    def _write_trust_anchor(self, artifact: bytes, depth: int, index: int) -> str:
        certificates = cms.read_certs_only(artifact)
        self._anchor_files += 1
        path = self._temporary_dir / f"redirect-{depth}-{index}-{self._anchor_files}.pem"
        path.write_bytes(b"".join(pki.certificate_to_pem(cert) for cert in certificates))
        return str(path)

    # ---- onboarding information (§5.6)

    def _onboard(
        self,
        connection: _Connection,
        verified: VerifiedBootstrappingData,
        information: OnboardingInformation,
    ) -> _Verdict:
        origin = "signed" if verified.signed else "unsigned (trusted server)"
        self._step(connection, "bootstrap-initiated", f"{origin} onboarding information received")
        self._step(connection, "parsing-initiated", "verifying and parsing onboarding information")
        self._step(connection, "parsing-complete", f"{origin} onboarding information accepted")
        stages: list[Callable[[], _Verdict]] = []
        if information.boot_image is not None:
            image = information.boot_image
            stages.append(lambda: self._boot_image(connection, image))
        if information.pre_configuration_script is not None:
            pre = information.pre_configuration_script
            stages.append(lambda: self._script(connection, "pre", pre))
        if information.configuration is not None:
            configuration = information.configuration
            handling = information.configuration_handling or "merge"
            stages.append(lambda: self._configuration(connection, configuration, handling))
        if information.post_configuration_script is not None:
            post = information.post_configuration_script
            stages.append(lambda: self._script(connection, "post", post))
        for stage in stages:
            verdict = stage()
            if verdict is _Verdict.ABANDON:
                return verdict
            if verdict is _Verdict.REBOOT:
                return verdict
        return self._complete(connection)

    def _fail(self, connection: _Connection, progress_type: str, reason: str) -> _Verdict:
        self._step(connection, progress_type, reason)
        return self._abandon(connection.server, f"{progress_type}: {reason}", logged=True)

    def _boot_image(self, connection: _Connection, image: BootImage) -> _Verdict:
        wanted = f"{image.os_name or '?'} {image.os_version or '?'}"
        self._step(connection, "boot-image-initiated", f"boot image {wanted}")
        if self._image_matches(image):
            self._step(connection, "boot-image-complete", f"already running {self._running()}")
            return _Verdict.CONTINUE
        self._step(
            connection, "boot-image-mismatch", f"running {self._running()}, {wanted} required"
        )
        if self.reboots >= self.config.max_reboots:
            return self._fail(
                connection,
                "boot-image-error",
                f"still not running {wanted} after {self.reboots} reboot(s)",
            )
        if not image.download_uris:
            return self._fail(connection, "boot-image-error", "no download-uri for the image")
        if image.sha256 is None:
            return self._fail(
                connection,
                "boot-image-error",
                "no sha-256 image-verification: an unverifiable image is not installed",
            )
        problems = []
        for uri in image.download_uris:
            try:
                path = self._download(uri, image.sha256)
            except _Abandon as exc:
                self.log(f"download {uri}: {exc}")
                problems.append(f"{uri}: {exc}")
                continue
            self.files_written.append(path)
            self.installed_image_sha256 = image.sha256
            self.os_name = image.os_name or self.os_name
            self.os_version = image.os_version or self.os_version
            self._step(
                connection,
                "boot-image-installed-rebooting",
                f"installed {wanted} from {uri} (sha-256 verified), rebooting",
            )
            return _Verdict.REBOOT
        return self._fail(connection, "boot-image-error", "; ".join(problems))

    def _image_matches(self, image: BootImage) -> bool:
        if image.os_name is None and image.os_version is None:
            return image.sha256 is not None and self.installed_image_sha256 == image.sha256
        return (image.os_name is None or image.os_name == self.os_name) and (
            image.os_version is None or image.os_version == self.os_version
        )

    def _download(self, uri: str, sha256: bytes) -> Path:
        verify: str | bool = str(self.config.file_server_ca) if self.config.file_server_ca else True
        images = self.config.work_dir / "images"
        images.mkdir(parents=True, exist_ok=True)
        target = images / _file_name(uri)
        digest = hashes.Hash(hashes.SHA256())
        size = 0
        descriptor, partial = tempfile.mkstemp(dir=images, prefix=f".{target.name}.")
        try:
            with (
                os.fdopen(descriptor, "wb") as handle,
                self.session.get(uri, verify=verify, timeout=self.config.timeout, stream=True) as r,
            ):
                if r.status_code != 200:
                    raise _Abandon(f"HTTP {r.status_code}")
                for chunk in r.iter_content(_CHUNK_SIZE):
                    size += len(chunk)
                    if size > self.config.max_image_size:
                        raise _Abandon(f"larger than {self.config.max_image_size} bytes")
                    digest.update(chunk)
                    handle.write(chunk)
            actual = digest.finalize()
            if not hmac.compare_digest(actual, sha256):
                raise _Abandon(
                    f"sha-256 mismatch: got {actual.hex(':')}, expected {sha256.hex(':')}"
                )
            Path(partial).replace(target)
        except requests.RequestException as exc:
            Path(partial).unlink(missing_ok=True)
            raise _Abandon(_request_reason(exc)) from None
        except OSError as exc:
            Path(partial).unlink(missing_ok=True)
            raise _Abandon(f"cannot store the image: {_describe(exc)}") from None
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        self.log(f"downloaded {uri} ({size} bytes, sha-256 verified) to {target}")
        return target

    def _script(
        self, connection: _Connection, stage: Literal["pre", "post"], script: bytes
    ) -> _Verdict:
        name = f"{stage}-configuration-script"
        kind = f"{stage}-script"
        self._step(connection, f"{kind}-initiated", f"{name} ({len(script)} bytes)")
        try:
            path = self._write(name, script, mode=0o700)
        except OSError as exc:
            return self._fail(connection, f"{kind}-error", f"cannot write {name}: {_describe(exc)}")
        if not self.config.run_scripts:
            self._step(connection, f"{kind}-complete", f"written to {path}, not executed")
            return _Verdict.CONTINUE
        sandbox = self.config.work_dir / "sandbox"
        sandbox.mkdir(parents=True, exist_ok=True)
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(sandbox),
            "SZTP_SERIAL_NUMBER": self.identity.serial_number,
        }
        try:
            completed = subprocess.run(  # noqa: S603 - the owner's script, only with run_scripts
                [str(path.resolve())],
                cwd=sandbox,
                env=environment,
                capture_output=True,
                timeout=self.config.script_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return self._fail(
                connection,
                f"{kind}-error",
                f"{name} ran longer than {self.config.script_timeout:g} s and was killed",
            )
        except OSError as exc:
            return self._fail(
                connection, f"{kind}-error", f"cannot execute {name}: {_describe(exc)}"
            )
        output = _clip((completed.stdout + completed.stderr).decode("utf-8", "replace"))
        if completed.returncode != 0:
            detail = f": {output}" if output else ""
            return self._fail(
                connection, f"{kind}-error", f"{name} exited with {completed.returncode}{detail}"
            )
        self._step(connection, f"{kind}-complete", output or f"{name} exited with 0")
        return _Verdict.CONTINUE

    def _configuration(
        self, connection: _Connection, configuration: bytes, handling: str
    ) -> _Verdict:
        self._step(connection, "config-initiated", f"{handling} {len(configuration)} bytes")
        try:
            existing = b""
            target = self.config.work_dir / "configuration"
            if handling == "merge" and target.is_file():
                existing = target.read_bytes()
            path = self._write("configuration", existing + configuration, mode=0o600)
        except OSError as exc:
            return self._fail(connection, "config-error", f"cannot commit: {_describe(exc)}")
        verb = "merged into" if handling == "merge" else "replaced"
        self._step(connection, "config-complete", f"configuration {verb} {path}")
        return _Verdict.CONTINUE

    def _complete(self, connection: _Connection) -> _Verdict:
        keys = self._host_keys()
        names = ", ".join(key.algorithm for key in keys) or "none"
        self._step(
            connection,
            "bootstrap-complete",
            f"running {self._running()}; SSH host keys: {names}",
            ssh_host_keys=keys,
        )
        return _Verdict.DONE

    def _host_keys(self) -> tuple[SshHostKey, ...]:
        if self.ssh_host_keys is None:
            key, public_line = generate_ssh_host_key()
            try:
                self._write("ssh_host_ed25519_key.pub", public_line, mode=0o644)
            except OSError as exc:
                self.log(f"cannot keep the SSH host public key: {_describe(exc)}")
            self.ssh_host_keys = (key,)
        return self.ssh_host_keys

    def _write(self, name: str, data: bytes, *, mode: int) -> Path:
        path = self.config.work_dir / name
        write_atomically(path, data, mode=mode)
        self.files_written.append(path)
        return path

    # ---- progress reports

    def _step(
        self,
        connection: _Connection,
        progress_type: str,
        message: str,
        *,
        ssh_host_keys: Sequence[SshHostKey] = (),
    ) -> None:
        reported = False
        if not connection.trusted:
            marker = "not reported: untrusted server"
        elif not _wanted(progress_type, connection.reporting_level):
            marker = f"not reported: reporting-level {connection.reporting_level}"
        else:
            reported = self._report(connection, progress_type, message, ssh_host_keys)
            marker = "reported" if reported else "report failed"
        self.steps.append(Step(progress_type, message, reported, connection.server.uri))
        self.log(f"{progress_type}: {message} [{marker}]")

    def _report(
        self,
        connection: _Connection,
        progress_type: str,
        message: str,
        ssh_host_keys: Sequence[SshHostKey],
    ) -> bool:
        report = restconf.ProgressReport(
            progress_type=progress_type,
            message=message,
            ssh_host_keys=tuple(ssh_host_keys),
        )
        body = restconf.encode_report_progress_input(report, self.config.wire_format)
        try:
            response = self._post(
                connection, restconf.RPC_REPORT_PROGRESS, body, restconf.MAX_ERRORS_SIZE
            )
        except _Abandon as exc:
            self.log(f"report {progress_type} not delivered: {exc}")
            return False
        if response.status_code not in (200, 204):
            self.log(f"report {progress_type} refused: {_http_error(response)}")
            return False
        return True


# --------------------------------------------------------------------------- helpers


def _wanted(progress_type: str, reporting_level: str) -> bool:
    if reporting_level == "verbose":
        return True
    return progress_type in _MINIMAL_REPORTS or progress_type in ERROR_PROGRESS_TYPES


def _server_uri(server: BootstrapServer) -> str:
    host = f"[{server.address}]" if ":" in server.address else server.address
    return f"https://{host}:{server.port}"


def _file_name(uri: str) -> str:
    name = Path(urlsplit(uri).path).name
    name = _UNSAFE_FILE_CHARACTERS.sub("_", name).lstrip(".")
    return name or "boot-image"


def _format_error(error: RestconfError) -> str:
    return f"{error.error_tag}: {error.error_message}" if error.error_message else error.error_tag


def _same_origin_root(server_uri: str, root: str) -> str:
    """The RESTCONF root as a path; an absolute root must stay on the bootstrap server."""
    if root.startswith("/"):
        return root
    server, target = urlsplit(server_uri), urlsplit(root)
    if (target.scheme.lower(), target.netloc.lower()) != (
        server.scheme.lower(),
        server.netloc.lower(),
    ):
        raise _Abandon(f"host-meta points the RESTCONF root to another server ({root})")
    return target.path or "/"


def _tls_reason(exc: requests.exceptions.SSLError) -> str:
    text = str(exc)
    match = re.search(r"certificate verify failed: ([^(\]]+)", text)
    return match.group(1).strip() if match else "TLS handshake failed"


def _request_reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed: {_tls_reason(exc)}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        return f"connection failed: {match.group(1).strip()}" if match else "connection failed"
    return type(exc).__name__

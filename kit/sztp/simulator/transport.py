"""The device's HTTP side: one session presenting the IDevID as TLS client certificate, the
RESTCONF root found through `/.well-known/host-meta`, RPCs posted, image downloads opened, every
reply body read within the limit for its kind, and why a request or TLS handshake failed. Hosts
under `.local` are reached at the addresses mDNS gives them (`local_names`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests

from ..errors import SztpError
from ..protocol import restconf
from ..protocol.restconf import RestconfError, WireFormat
from .local_names import LocalNameAdapter, LocalNames
from .model import DeviceIdentity, Log, SimulatorConfig
from .verdicts import Abandon, clip

HOST_META_PATH = "/.well-known/host-meta"
DEFAULT_RESTCONF_ROOT = restconf.DEFAULT_RESTCONF_ROOT
_BODY_CHUNK_SIZE = 64 * 1024


@dataclass(frozen=True)
class Server:
    """A bootstrap server as the device knows it: URI and how it authenticates it."""

    uri: str
    ca_file: str | None  # TLS anchors; None = provisional (unauthenticated) connection
    fall_back_to_provisional: bool  # the anchors are a general list, not pinned for this server


@dataclass
class Connection:
    """How the device talks to one server: TLS verification, trust, and what it learned."""

    server: Server
    verify: str | bool
    trusted: bool
    restconf_root: str = DEFAULT_RESTCONF_ROOT
    reporting_level: str = "minimal"


@dataclass(frozen=True)
class Reply:
    """An HTTP answer whose body was read within its limit."""

    status_code: int
    content_type: str | None
    content: bytes


class Transport:
    """HTTP for one simulated device. `session` is closed by whoever runs the device."""

    def __init__(self, config: SimulatorConfig, identity: DeviceIdentity, log: Log) -> None:
        self.config = config
        self.identity = identity
        dns = config.dns
        self.local_names = (
            LocalNames(log, timeout=dns.mdns_timeout)
            if dns is not None and dns.mdns
            else LocalNames(log, ask=False)
        )
        self.session = requests.Session()
        self.session.cert = (str(identity.idevid_certificate), str(identity.idevid_key))
        self.session.trust_env = False
        adapter = LocalNameAdapter(self.local_names)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def discover_root(self, connection: Connection) -> str:
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
            raise Abandon(f"unreachable: {request_reason(exc)}") from None
        if reply.status_code != 200:
            raise Abandon(f"host-meta: {http_error(reply)}")
        try:
            root = restconf.parse_host_meta(reply.content, reply.content_type)
        except SztpError as exc:
            raise Abandon(f"host-meta unreadable: {exc}") from None
        return _same_origin_root(connection.server.uri, root)

    def post(self, connection: Connection, rpc: str, body: bytes, limit: int) -> Reply:
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
            raise Abandon(f"{rpc}: {request_reason(exc)}") from None

    def get_file(self, uri: str) -> requests.Response:
        """A streamed GET of a boot image, trusting `file_server_ca` (system CAs without it)."""
        verify: str | bool = str(self.config.file_server_ca) if self.config.file_server_ca else True
        return self.session.get(uri, verify=verify, timeout=self.config.timeout, stream=True)

    def _auth(self, connection: Connection) -> tuple[str, str] | None:
        """HTTP Basic credentials, only for a server whose TLS certificate verified against
        trust the device holds: never on a provisional connection."""
        if self.identity.password is None or not connection.trusted:
            return None
        return (self.identity.serial_number, self.identity.password)


def _read_reply(response: requests.Response, limit: int, what: str) -> Reply:
    """Read a streamed response's body, abandoning it as soon as it exceeds `limit` bytes
    (error bodies: `restconf.MAX_ERRORS_SIZE`), so an oversized or endless answer is never
    held in memory."""
    if response.status_code not in (200, 204):
        limit = restconf.MAX_ERRORS_SIZE
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limit:
        raise Abandon(
            f"{what}: response of {announced} bytes is larger than the {limit}-byte limit; not read"
        )
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(_BODY_CHUNK_SIZE):
        size += len(chunk)
        if size > limit:
            raise Abandon(
                f"{what}: response larger than the {limit}-byte limit; abandoned while reading"
            )
        chunks.append(chunk)
    return Reply(response.status_code, response.headers.get("Content-Type"), b"".join(chunks))


def reply_errors(response: Reply) -> Sequence[RestconfError]:
    """The RESTCONF errors of an error answer; none when its body does not parse."""
    content_type = (response.content_type or "").lower()
    wire_format = WireFormat.XML if "xml" in content_type else WireFormat.JSON
    if not response.content:
        return ()
    try:
        return restconf.parse_errors(response.content, wire_format)
    except SztpError:
        return ()


def http_error(response: Reply) -> str:
    status = f"HTTP {response.status_code}"
    errors = reply_errors(response)
    details = "; ".join(_format_error(error) for error in errors)
    return f"{status}: {clip(details)}" if details else status


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
        raise Abandon(f"host-meta points the RESTCONF root to another server ({root})")
    return target.path or "/"


def tls_reason(exc: requests.exceptions.SSLError) -> str:
    text = str(exc)
    match = re.search(r"certificate verify failed: ([^(\]]+)", text)
    return match.group(1).strip() if match else "TLS handshake failed"


def request_reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed: {tls_reason(exc)}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
        return f"connection failed: {match.group(1).strip()}" if match else "connection failed"
    return type(exc).__name__

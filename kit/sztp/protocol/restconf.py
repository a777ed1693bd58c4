"""The RESTCONF (RFC 8040) wire format of the two RFC 8572 RPCs, for server and device alike.

`ietf-sztp-bootstrap-server@2019-04-30` defines `get-bootstrapping-data` and `report-progress`.
A device POSTs their input to `{restconf-root}/operations/{module}:{rpc}`, after discovering the
root through `/.well-known/host-meta` (RFC 6415, RFC 8040 §3.1).

Encodings (RFC 8040 §3.6.1, RFC 7951, RFC 7950 §7.14):
- JSON: `{"ietf-sztp-bootstrap-server:input": {...}}`; compact, ASCII only, schema order. The
  `get-bootstrapping-data` output is encoded by `bootstrapping_data.encode_output_json`, so the
  server and the `sztpctl bootstrap-data` files share one JSON shape.
- XML: `<input xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">`, UTF-8 without
  declaration, no whitespace between elements, children in schema order. Parsing accepts any
  child order and insignificant whitespace (pretty-printed bodies from devices).

Parsers treat their input as untrusted: anything wrong raises `ValidationError` whose `field`
is an instance-identifier-like path without its leading slash, e.g.
`ietf-sztp-bootstrap-server:input/ssh-host-keys/ssh-host-key[1]/key-data` (keyless list entries
numbered from 1), or `Content-Type` / `Accept` from `negotiate`. Unknown members are rejected,
except RFC 9646 `csr-support`, whose presence is recorded and whose content is ignored.
"""

import contextlib
import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

from ..errors import ValidationError
from . import strict_json, strict_xml
from .bootstrapping_data import BootstrappingData, encode_output_json
from .oids import MEDIA_TYPE_JSON, MEDIA_TYPE_XML

MODULE = "ietf-sztp-bootstrap-server"
NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server"
RESTCONF_MODULE = "ietf-restconf"
RESTCONF_NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-restconf"
# RFC 9646 augments the get-bootstrapping-data input from its own module.
CSR_MODULE = "ietf-sztp-csr"
CSR_NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-sztp-csr"
XRD_NAMESPACE = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
_NAMESPACE_BY_MODULE = {
    MODULE: NAMESPACE,
    RESTCONF_MODULE: RESTCONF_NAMESPACE,
    CSR_MODULE: CSR_NAMESPACE,
}
_MODULE_BY_NAMESPACE = {namespace: module for module, namespace in _NAMESPACE_BY_MODULE.items()}

RPC_GET_BOOTSTRAPPING_DATA = f"{MODULE}:get-bootstrapping-data"
RPC_REPORT_PROGRESS = f"{MODULE}:report-progress"
INPUT_PATH = f"{MODULE}:input"
OUTPUT_PATH = f"{MODULE}:output"
ERRORS_PATH = f"{RESTCONF_MODULE}:errors"
HOST_META_PATH = "host-meta"
DEFAULT_RESTCONF_ROOT = "/restconf"

# Body size limits. get-bootstrapping-data input is a few short strings; a progress report may
# carry script output, SSH host keys and trust anchors; the output carries conveyed information
# (up to 8 MiB of document, see conveyed_info) base64-encoded, plus owner certificate and voucher.
MAX_INPUT_SIZE = 64 * 1024
MAX_REPORT_SIZE = 1024 * 1024
MAX_OUTPUT_SIZE = 16 * 1024 * 1024
MAX_ERRORS_SIZE = 1024 * 1024
MAX_HOST_META_SIZE = 64 * 1024

NONCE_MIN_SIZE = 16
NONCE_MAX_SIZE = 32

# The 27 enum values of report-progress/input/progress-type, in YANG order.
PROGRESS_TYPES: tuple[str, ...] = (
    "bootstrap-initiated",
    "parsing-initiated",
    "parsing-warning",
    "parsing-error",
    "parsing-complete",
    "boot-image-initiated",
    "boot-image-warning",
    "boot-image-error",
    "boot-image-mismatch",
    "boot-image-installed-rebooting",
    "boot-image-complete",
    "pre-script-initiated",
    "pre-script-warning",
    "pre-script-error",
    "pre-script-complete",
    "config-initiated",
    "config-warning",
    "config-error",
    "config-complete",
    "post-script-initiated",
    "post-script-warning",
    "post-script-error",
    "post-script-complete",
    "bootstrap-warning",
    "bootstrap-error",
    "bootstrap-complete",
    "informational",
)
BOOTSTRAP_INITIATED = "bootstrap-initiated"
BOOTSTRAP_COMPLETE = "bootstrap-complete"
BOOT_IMAGE_INSTALLED_REBOOTING = "boot-image-installed-rebooting"
ERROR_PROGRESS_TYPES = frozenset(name for name in PROGRESS_TYPES if name.endswith("-error"))
# After these the device does not contact the server again in this run (YANG descriptions).
TERMINAL_PROGRESS_TYPES = ERROR_PROGRESS_TYPES | {
    BOOTSTRAP_COMPLETE,
    BOOT_IMAGE_INSTALLED_REBOOTING,
}

ERROR_TYPES: tuple[str, ...] = ("transport", "rpc", "protocol", "application")
# RFC 8040 §7. Where the RFC allows two codes: access-denied is 403 (401 belongs to failed
# authentication, answered with WWW-Authenticate before any RPC runs); invalid-value 400;
# operation-not-supported 501 (405 is the HTTP layer's answer to a wrong method);
# operation-failed 500; too-big 413 (the request was too big).
HTTP_STATUS_FOR_TAG: Mapping[str, int] = MappingProxyType(
    {
        "in-use": 409,
        "invalid-value": 400,
        "too-big": 413,
        "missing-attribute": 400,
        "bad-attribute": 400,
        "unknown-attribute": 400,
        "bad-element": 400,
        "unknown-element": 400,
        "unknown-namespace": 400,
        "access-denied": 403,
        "lock-denied": 409,
        "resource-denied": 409,
        "rollback-failed": 500,
        "data-exists": 409,
        "data-missing": 409,
        "operation-not-supported": 501,
        "operation-failed": 500,
        "partial-operation": 500,
        "malformed-message": 400,
    }
)

# Characters a YANG string may hold (XML 1.0 characters); also rejects lone surrogates, which
# JSON escapes can produce, and NUL, which no database text column stores.
_NON_XML_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# type/subtype, each an RFC 9110 token.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+/[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
# Module-name prefixes of an instance-identifier in JSON form (RFC 7951 §6.11).
_PATH_MODULE = re.compile(r"/([A-Za-z_][A-Za-z0-9_.-]*):")
# An instance-identifier as this codec writes one: steps of [module:]name, each maybe with
# list positions, e.g. ietf-sztp-bootstrap-server:input/ssh-host-keys[0]/key-data.
_STEP = r"(?:[A-Za-z_][A-Za-z0-9_.-]*:)?[A-Za-z_][A-Za-z0-9_.-]*(?:\[[0-9]+\])*"
_PLAIN_PATH = re.compile(rf"/?{_STEP}(?:/{_STEP})*")
_PATH_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*):")
# Longest piece of a client's text an error repeats back to it.
_MAX_ECHO = 256
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


class WireFormat(enum.Enum):
    """A RESTCONF encoding; the value is its media type (RFC 8040 §11.3)."""

    JSON = MEDIA_TYPE_JSON
    XML = MEDIA_TYPE_XML

    @property
    def media_type(self) -> str:
        return self.value


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class GetBootstrappingDataInput:
    """The `get-bootstrapping-data` input; every parameter is optional.

    `csr_support` records that a device sent RFC 9646 `csr-support`; its content (the device's
    key and CSR capabilities) is not kept, and is encoded back as an empty presence container.
    """

    signed_data_preferred: bool = False
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    nonce: bytes | None = None
    csr_support: bool = False

    def __post_init__(self) -> None:
        if self.nonce is not None and not NONCE_MIN_SIZE <= len(self.nonce) <= NONCE_MAX_SIZE:
            raise ValidationError(
                f"{INPUT_PATH}/nonce",
                f"must be {NONCE_MIN_SIZE}..{NONCE_MAX_SIZE} octets, not {len(self.nonce)}",
            )


@dataclass(frozen=True)
class SshHostKey:
    """An SSH host key: IANA algorithm name and the RFC 4253 §6.6 public key blob."""

    algorithm: str
    key_data: bytes


@dataclass(frozen=True)
class ProgressReport:
    """The `report-progress` input.

    `trust_anchor_certs` are DER CMS certs-only bundles. Keys and trust anchors are only
    allowed with `bootstrap-complete` (the YANG `when` statements).
    """

    progress_type: str
    message: str | None = None
    ssh_host_keys: tuple[SshHostKey, ...] = ()
    trust_anchor_certs: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.progress_type not in PROGRESS_TYPES:
            raise ValidationError(
                f"{INPUT_PATH}/progress-type", f"unknown progress type {self.progress_type!r}"
            )
        if self.ssh_host_keys:
            _require_complete(self.progress_type, "ssh-host-keys")
        if self.trust_anchor_certs:
            _require_complete(self.progress_type, "trust-anchor-certs")


def _require_complete(progress_type: str, member: str) -> None:
    if progress_type != BOOTSTRAP_COMPLETE:
        raise ValidationError(
            f"{INPUT_PATH}/{member}",
            f"only allowed with progress-type {BOOTSTRAP_COMPLETE}, not {progress_type}",
        )


@dataclass(frozen=True)
class RestconfError:
    """One `ietf-restconf:errors/error` entry (RFC 8040 §7.1).

    `error_path` is an instance-identifier in JSON form (module names as prefixes, e.g.
    `/ietf-sztp-bootstrap-server:input/nonce`); XML encoding declares those modules' namespaces.
    From a parsed XML body it is kept as written (its prefixes unresolved): for display only.
    """

    error_type: str
    error_tag: str
    error_message: str | None = None
    error_path: str | None = None

    def __post_init__(self) -> None:
        if self.error_type not in ERROR_TYPES:
            raise ValidationError(
                f"{ERRORS_PATH}/error/error-type",
                f"must be one of {', '.join(ERROR_TYPES)}, not {self.error_type!r}",
            )


def invalid_value_error(exc: ValidationError) -> RestconfError:
    """The `invalid-value` error refusing a request body, safe to encode in either format.

    The path and message of `exc` may repeat member names and values the client chose: a path
    is kept only when it is a plain instance-identifier of modules we know (otherwise it is
    quoted in the message instead), and characters XML cannot carry are escaped.
    """
    path: str | None = exc.field
    message = echo(exc.message)
    if path is not None and not _encodable_path(path):
        message = f"{echo(path)}: {message}"
        path = None
    return RestconfError("protocol", "invalid-value", error_message=message, error_path=path)


def _encodable_path(path: str) -> bool:
    return (
        len(path) <= _MAX_ECHO
        and _PLAIN_PATH.fullmatch(path) is not None
        and all(module in _NAMESPACE_BY_MODULE for module in _PATH_PREFIX.findall(path))
    )


def echo(text: str) -> str:
    """`text` shortened to `_MAX_ECHO` characters, with those XML cannot carry escaped."""
    shown = text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + "…"
    return _NON_XML_CHARACTER.sub(lambda match: f"\\u{ord(match.group()):04x}", shown)


# --------------------------------------------------------------------------- negotiation


def negotiate(
    content_type_header: str | None,
    accept_header: str | None,
    *,
    has_body: bool = True,
) -> tuple[WireFormat, WireFormat]:
    """The (request, response) formats of an RPC call, from its Content-Type and Accept.

    Content-Type must be one of the two yang-data media types (parameters ignored), else
    ValidationError field `Content-Type` (answer 415). Accept picks the response format by
    quality; `*/*`, `application/*`, an absent header or a tie gives the request's format; no
    acceptable yang-data type raises field `Accept` (answer 406). A request without a body
    (`has_body=False`, no input) needs no Content-Type: its format is then the preferred one.
    """
    request: WireFormat | None = None
    if has_body:
        request = _request_format(content_type_header)
    elif content_type_header is not None:
        # Nothing to decode, so a wrong Content-Type does not matter; a right one is a hint.
        with contextlib.suppress(ValidationError):
            request = _request_format(content_type_header)
    response = _response_format(accept_header, request or WireFormat.JSON)
    return request or response, response


def _request_format(header: str | None) -> WireFormat:
    if header is None:
        raise ValidationError("Content-Type", "missing; a request body needs a media type")
    media_type = header.split(";", 1)[0].strip().lower()
    for wire_format in WireFormat:
        if media_type == wire_format.media_type:
            return wire_format
    raise ValidationError(
        "Content-Type", f"{header!r} is not {MEDIA_TYPE_JSON} or {MEDIA_TYPE_XML}"
    )


def _response_format(header: str | None, preferred: WireFormat) -> WireFormat:
    if header is None or not header.strip():
        return preferred
    ranges = _accept_ranges(header)

    def quality(wire_format: WireFormat) -> float:
        # The most specific matching range decides, even when its quality is 0 (RFC 9110 §12.5.1).
        for candidate in (wire_format.media_type, "application/*", "*/*"):
            qualities = [q for media_range, q in ranges if media_range == candidate]
            if qualities:
                return max(qualities)
        return 0.0

    best = max(WireFormat, key=lambda wire_format: (quality(wire_format), wire_format is preferred))
    if quality(best) <= 0:
        raise ValidationError(
            "Accept", f"{header!r} accepts neither {MEDIA_TYPE_JSON} nor {MEDIA_TYPE_XML}"
        )
    return best


def _accept_ranges(header: str) -> list[tuple[str, float]]:
    ranges = []
    for element in header.split(","):
        if not element.strip():
            continue  # RFC 9110 §5.6.1: empty list elements are ignored
        media_range, *parameters = (part.strip() for part in element.split(";"))
        if not _MEDIA_TYPE.fullmatch(media_range):
            raise ValidationError("Accept", f"{media_range!r} is not a media range")
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                if not _QVALUE.fullmatch(value.strip()):
                    raise ValidationError("Accept", f"{value!r} is not a quality value")
                q = float(value)
        ranges.append((media_range.lower(), q))
    return ranges


def operation_path(restconf_root: str, rpc: str) -> str:
    """The URL path (or URL, for an absolute root) of an RPC: `{root}/operations/{rpc}`."""
    return f"{restconf_root.rstrip('/')}/operations/{rpc}"


# --------------------------------------------------------------------------- schemas


class _Leaf(enum.Enum):
    STRING = "string"
    EMPTY = "empty"
    BINARY = "binary"
    # An instance-identifier, kept in its JSON form (module names as prefixes).
    PATH = "instance-identifier"
    # anydata, or a container accepted without reading it; only its presence is recorded.
    OPAQUE = "opaque"


@dataclass(frozen=True)
class _Container:
    # Member names in schema order; a member from another module is qualified `module:name`.
    members: Mapping[str, "_Schema"]
    mandatory: tuple[str, ...] = ()


@dataclass(frozen=True)
class _List:
    entry: _Container


@dataclass(frozen=True)
class _LeafList:
    leaf: _Leaf


_Schema = _Leaf | _Container | _List | _LeafList
# A decoded node: str, bytes, True (empty leaf, opaque node), dict (container), list.
_Tree = dict[str, Any]


@dataclass(frozen=True)
class _Document:
    module: str
    name: str
    schema: _Container
    max_size: int
    # RFC 8040 §3.6.1: an RPC request without input has no body.
    empty_body_allowed: bool = False

    @property
    def namespace(self) -> str:
        return _NAMESPACE_BY_MODULE[self.module]

    @property
    def path(self) -> str:
        return f"{self.module}:{self.name}"


_CSR_SUPPORT = f"{CSR_MODULE}:csr-support"
_GET_INPUT = _Document(
    MODULE,
    "input",
    _Container(
        {
            "signed-data-preferred": _Leaf.EMPTY,
            "hw-model": _Leaf.STRING,
            "os-name": _Leaf.STRING,
            "os-version": _Leaf.STRING,
            "nonce": _Leaf.BINARY,
            _CSR_SUPPORT: _Leaf.OPAQUE,
        }
    ),
    MAX_INPUT_SIZE,
    empty_body_allowed=True,
)
_REPORT_INPUT = _Document(
    MODULE,
    "input",
    _Container(
        {
            "progress-type": _Leaf.STRING,
            "message": _Leaf.STRING,
            "ssh-host-keys": _Container(
                {
                    "ssh-host-key": _List(
                        _Container(
                            {"algorithm": _Leaf.STRING, "key-data": _Leaf.BINARY},
                            mandatory=("algorithm", "key-data"),
                        )
                    )
                }
            ),
            "trust-anchor-certs": _Container({"trust-anchor-cert": _LeafList(_Leaf.BINARY)}),
        },
        mandatory=("progress-type",),
    ),
    MAX_REPORT_SIZE,
    empty_body_allowed=True,
)
_GET_OUTPUT = _Document(
    MODULE,
    "output",
    _Container(
        {
            "reporting-level": _Leaf.STRING,
            "conveyed-information": _Leaf.BINARY,
            "owner-certificate": _Leaf.BINARY,
            "ownership-voucher": _Leaf.BINARY,
        },
        mandatory=("conveyed-information",),
    ),
    MAX_OUTPUT_SIZE,
)
_ERRORS = _Document(
    RESTCONF_MODULE,
    "errors",
    _Container(
        {
            "error": _List(
                _Container(
                    {
                        "error-type": _Leaf.STRING,
                        "error-tag": _Leaf.STRING,
                        "error-app-tag": _Leaf.STRING,
                        "error-path": _Leaf.PATH,
                        "error-message": _Leaf.STRING,
                        "error-info": _Leaf.OPAQUE,
                    },
                    mandatory=("error-type", "error-tag"),
                )
            )
        }
    ),
    MAX_ERRORS_SIZE,
)


# --------------------------------------------------------------------------- public codecs


def parse_get_bootstrapping_data_input(body: bytes, fmt: WireFormat) -> GetBootstrappingDataInput:
    """Parse a device's `get-bootstrapping-data` input; an empty body means no parameters."""
    tree = _decode(body, fmt, _GET_INPUT)
    return GetBootstrappingDataInput(
        signed_data_preferred="signed-data-preferred" in tree,
        hw_model=tree.get("hw-model"),
        os_name=tree.get("os-name"),
        os_version=tree.get("os-version"),
        nonce=tree.get("nonce"),
        csr_support=_CSR_SUPPORT in tree,
    )


def encode_get_bootstrapping_data_input(inp: GetBootstrappingDataInput, fmt: WireFormat) -> bytes:
    """The input as a device sends it; always a body, `{...:input: {}}` when all are absent."""
    tree: _Tree = {}
    if inp.signed_data_preferred:
        tree["signed-data-preferred"] = True
    for name, value in (
        ("hw-model", inp.hw_model),
        ("os-name", inp.os_name),
        ("os-version", inp.os_version),
        ("nonce", inp.nonce),
    ):
        if value is not None:
            tree[name] = value
    if inp.csr_support:
        tree[_CSR_SUPPORT] = True
    return _encode(tree, fmt, _GET_INPUT)


def parse_report_progress_input(body: bytes, fmt: WireFormat) -> ProgressReport:
    """Parse a device's `report-progress` input (progress-type is mandatory)."""
    tree = _decode(body, fmt, _REPORT_INPUT)
    report = ProgressReport(
        progress_type=tree["progress-type"],
        message=tree.get("message"),
        ssh_host_keys=tuple(
            SshHostKey(algorithm=entry["algorithm"], key_data=entry["key-data"])
            for entry in tree.get("ssh-host-keys", {}).get("ssh-host-key", [])
        ),
        trust_anchor_certs=tuple(tree.get("trust-anchor-certs", {}).get("trust-anchor-cert", [])),
    )
    # The dataclass checks non-empty containers; `when` forbids even empty ones.
    for member in ("ssh-host-keys", "trust-anchor-certs"):
        if member in tree:
            _require_complete(report.progress_type, member)
    return report


def encode_report_progress_input(report: ProgressReport, fmt: WireFormat) -> bytes:
    """The `report-progress` input as a device sends it."""
    tree: _Tree = {"progress-type": report.progress_type}
    if report.message is not None:
        tree["message"] = report.message
    if report.ssh_host_keys:
        tree["ssh-host-keys"] = {
            "ssh-host-key": [
                {"algorithm": key.algorithm, "key-data": key.key_data}
                for key in report.ssh_host_keys
            ]
        }
    if report.trust_anchor_certs:
        tree["trust-anchor-certs"] = {"trust-anchor-cert": list(report.trust_anchor_certs)}
    return _encode(tree, fmt, _REPORT_INPUT)


def encode_get_bootstrapping_data_output(data: BootstrappingData, fmt: WireFormat) -> bytes:
    """The `get-bootstrapping-data` output (the server's 200 response body)."""
    if fmt is WireFormat.JSON:
        return encode_output_json(data)
    tree: _Tree = {"conveyed-information": data.conveyed_information}
    if data.reporting_level is not None:
        tree["reporting-level"] = data.reporting_level
    if data.owner_certificate is not None and data.ownership_voucher is not None:
        tree["owner-certificate"] = data.owner_certificate
        tree["ownership-voucher"] = data.ownership_voucher
    return _encode(tree, fmt, _GET_OUTPUT)


def parse_get_bootstrapping_data_output(body: bytes, fmt: WireFormat) -> BootstrappingData:
    """Parse a server's `get-bootstrapping-data` output; the artifacts stay unverified bytes."""
    tree = _decode(body, fmt, _GET_OUTPUT)
    reporting_level = tree.get("reporting-level")
    if reporting_level not in (None, "minimal", "verbose"):
        raise ValidationError(
            f"{OUTPUT_PATH}/reporting-level", f"must be minimal or verbose, not {reporting_level!r}"
        )
    # The YANG must statements: the owner certificate and the voucher go together.
    for member, other in (
        ("owner-certificate", "ownership-voucher"),
        ("ownership-voucher", "owner-certificate"),
    ):
        if member in tree and other not in tree:
            raise ValidationError(f"{OUTPUT_PATH}/{member}", f"only allowed together with {other}")
    return BootstrappingData(
        conveyed_information=tree["conveyed-information"],
        owner_certificate=tree.get("owner-certificate"),
        ownership_voucher=tree.get("ownership-voucher"),
        reporting_level=reporting_level,
    )


def encode_errors(errors: Sequence[RestconfError], fmt: WireFormat) -> bytes:
    """An `ietf-restconf:errors` body (RFC 8040 §7.1)."""
    entries = []
    for error in errors:
        entry: _Tree = {"error-type": error.error_type, "error-tag": error.error_tag}
        if error.error_path is not None:
            entry["error-path"] = error.error_path
        if error.error_message is not None:
            entry["error-message"] = error.error_message
        entries.append(entry)
    return _encode({"error": entries} if entries else {}, fmt, _ERRORS)


def parse_errors(body: bytes, fmt: WireFormat) -> tuple[RestconfError, ...]:
    """Parse a server's `ietf-restconf:errors` body; error-app-tag and error-info are dropped."""
    tree = _decode(body, fmt, _ERRORS)
    return tuple(
        RestconfError(
            error_type=entry["error-type"],
            error_tag=entry["error-tag"],
            error_message=entry.get("error-message"),
            error_path=entry.get("error-path"),
        )
        for entry in tree.get("error", [])
    )


# --------------------------------------------------------------------------- host-meta


def encode_host_meta(restconf_root: str = DEFAULT_RESTCONF_ROOT) -> bytes:
    """The XRD document served at `/.well-known/host-meta` (RFC 8040 §3.1)."""
    _check_restconf_root(restconf_root, f"{HOST_META_PATH}/Link/href")
    href = strict_xml.escape(restconf_root).replace('"', "&quot;")
    return f'<XRD xmlns="{XRD_NAMESPACE}"><Link rel="restconf" href="{href}"/></XRD>'.encode()


def parse_host_meta(body: bytes, content_type: str | None = None) -> str:
    """The RESTCONF root (href of the `rel="restconf"` link) from a host-meta document.

    XRD XML by default; JSON host-meta (RFC 6415 §3) when `content_type` is application/json.
    The root is a path (`/restconf`) or an absolute http(s) URL, without query or fragment;
    other links and XRD elements are ignored.
    """
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        href = _host_meta_json_href(body)
    else:
        href = _host_meta_xml_href(body)
    if href is None:
        raise ValidationError(f"{HOST_META_PATH}/Link", 'no link with rel="restconf" and an href')
    _check_restconf_root(href, f"{HOST_META_PATH}/Link/href")
    return href


def _host_meta_json_href(body: bytes) -> str | None:
    document = _load_json(body, HOST_META_PATH, MAX_HOST_META_SIZE)
    if not isinstance(document, dict):
        raise ValidationError(
            HOST_META_PATH, f"must be a JSON object, not {strict_json.type_name(document)}"
        )
    links = strict_json.array(document.get("links", []), f"{HOST_META_PATH}/links")
    for index, link in enumerate(links, start=1):
        if not isinstance(link, dict):
            raise ValidationError(f"{HOST_META_PATH}/links[{index}]", "must be a JSON object")
        if link.get("rel") == "restconf":
            return _json_string(link.get("href"), f"{HOST_META_PATH}/links[{index}]/href")
    return None


def _host_meta_xml_href(body: bytes) -> str | None:
    root = strict_xml.parse(body, HOST_META_PATH, MAX_HOST_META_SIZE)
    if root.tag != f"{{{XRD_NAMESPACE}}}XRD":
        raise ValidationError(HOST_META_PATH, f"top-level element must be XRD, not {root.tag!r}")
    for link in root.iterfind(f"{{{XRD_NAMESPACE}}}Link"):
        if link.get("rel") == "restconf":
            return link.get("href")
    return None


def _check_restconf_root(href: str, field: str) -> None:
    if not _URI_CHARACTERS.fullmatch(href):
        raise ValidationError(field, f"{href!r} is not a URI reference")
    try:
        parts = urlsplit(href)
    except ValueError:
        raise ValidationError(field, f"{href!r} is not a URI reference") from None
    if parts.query or parts.fragment or "?" in href or "#" in href:
        raise ValidationError(field, f"{href!r} must not have a query or fragment")
    if parts.scheme:
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValidationError(field, f"{href!r} is not an http(s) URL")
    elif not href.startswith("/") or href.startswith("//"):
        raise ValidationError(field, f"{href!r} must be an absolute path like /restconf")


# --------------------------------------------------------------------------- generic codec


def _decode(body: bytes, fmt: WireFormat, document: _Document) -> _Tree:
    if not body and document.empty_body_allowed:
        tree: _Tree = {}
        _check_mandatory(tree, document.schema, document.path)
        return tree
    if fmt is WireFormat.JSON:
        value = _load_json(body, document.path, document.max_size)
        if not isinstance(value, dict) or list(value) != [document.path]:
            raise ValidationError(
                document.path, f"must be a JSON object with the single member {document.path!r}"
            )
        return _json_members(value[document.path], document.schema, document.path)
    root = strict_xml.parse(body, document.path, document.max_size)
    if root.tag != f"{{{document.namespace}}}{document.name}":
        raise ValidationError(
            document.path,
            f'top-level element must be <{document.name} xmlns="{document.namespace}">, '
            f"not {root.tag!r}",
        )
    return _xml_members(root, document.schema, document.path)


def _encode(tree: _Tree, fmt: WireFormat, document: _Document) -> bytes:
    if fmt is WireFormat.JSON:
        members = _json_tree(tree, document.schema, document.path)
        return json.dumps(
            {document.path: members}, separators=(",", ":"), ensure_ascii=True
        ).encode("ascii")
    content = _xml_content(tree, document.schema, document.path)
    name = document.name
    return f'<{name} xmlns="{document.namespace}">{content}</{name}>'.encode()


def _check_mandatory(tree: _Tree, schema: _Container, path: str) -> None:
    for name in schema.mandatory:
        if name not in tree:
            raise ValidationError(f"{path}/{name}", "missing (it is mandatory)")


def _check_text(value: str, path: str) -> None:
    if _NON_XML_CHARACTER.search(value):
        raise ValidationError(path, "contains a control character or an unpaired surrogate")


# --------------------------------------------------------------------------- JSON


def _load_json(body: bytes, path: str, max_size: int) -> object:
    return strict_json.loads(strict_json.document_text(body, path, max_size), path)


def _json_string(value: object, path: str) -> str:
    text = strict_json.string(value, path)
    _check_text(text, path)
    return text


def _json_members(value: object, schema: _Container, path: str) -> _Tree:
    if not isinstance(value, dict):
        raise ValidationError(path, f"must be a JSON object, not {strict_json.type_name(value)}")
    tree: _Tree = {}
    for name, member in value.items():
        kind = schema.members.get(name)
        if kind is None:
            raise ValidationError(f"{path}/{name}", "unknown member")
        tree[name] = _json_node(member, kind, f"{path}/{name}")
    _check_mandatory(tree, schema, path)
    return tree


def _json_node(value: object, kind: _Schema, path: str) -> Any:
    if isinstance(kind, _Container):
        return _json_members(value, kind, path)
    if isinstance(kind, _List):
        return [
            _json_members(entry, kind.entry, f"{path}[{index}]")
            for index, entry in enumerate(strict_json.array(value, path), start=1)
        ]
    if isinstance(kind, _LeafList):
        return [
            _json_leaf(item, kind.leaf, f"{path}[{index}]")
            for index, item in enumerate(strict_json.array(value, path), start=1)
        ]
    return _json_leaf(value, kind, path)


def _json_leaf(value: object, leaf: _Leaf, path: str) -> Any:
    if leaf is _Leaf.EMPTY:
        # RFC 7951 §6.9: the only value of an empty leaf is [null].
        if not (isinstance(value, list) and len(value) == 1 and value[0] is None):
            raise ValidationError(path, "an empty leaf is written [null]")
        return True
    if leaf is _Leaf.OPAQUE:
        if not isinstance(value, dict):
            raise ValidationError(
                path, f"must be a JSON object, not {strict_json.type_name(value)}"
            )
        return True
    text = _json_string(value, path)
    return strict_json.decode_base64(text, path) if leaf is _Leaf.BINARY else text


def _json_tree(tree: _Tree, schema: _Container, path: str) -> dict[str, object]:
    members: dict[str, object] = {}
    for name, kind in schema.members.items():
        if name in tree:
            members[name] = _json_value(tree[name], kind, f"{path}/{name}")
    return members


def _json_value(value: Any, kind: _Schema, path: str) -> object:
    if isinstance(kind, _Container):
        return _json_tree(value, kind, path)
    if isinstance(kind, _List):
        return [_json_tree(entry, kind.entry, path) for entry in value]
    if isinstance(kind, _LeafList):
        return [_json_leaf_value(item, kind.leaf, path) for item in value]
    return _json_leaf_value(value, kind, path)


def _json_leaf_value(value: Any, leaf: _Leaf, path: str) -> object:
    if leaf is _Leaf.EMPTY:
        return [None]
    if leaf is _Leaf.OPAQUE:
        return {}
    if leaf is _Leaf.BINARY:
        return strict_json.encode_base64(value)
    _check_text(value, path)
    return value


# --------------------------------------------------------------------------- XML


def _xml_members(element: Element, schema: _Container, path: str) -> _Tree:
    strict_xml.refuse_attributes(element, path)
    strict_xml.refuse_text(element.text, path)
    parent_namespace, _ = strict_xml.split_tag(element.tag)
    tree: _Tree = {}
    for child in element:
        strict_xml.refuse_text(child.tail, path)
        namespace, local_name = strict_xml.split_tag(child.tag)
        # Children in the parent's namespace use the simple name, as in JSON (RFC 7951 §4).
        if namespace == parent_namespace:
            name = local_name
        elif namespace in _MODULE_BY_NAMESPACE:
            name = f"{_MODULE_BY_NAMESPACE[namespace]}:{local_name}"
        else:
            raise ValidationError(
                f"{path}/{local_name}", f"unknown member (namespace {namespace!r})"
            )
        kind = schema.members.get(name)
        child_path = f"{path}/{name}"
        if kind is None:
            raise ValidationError(child_path, "unknown member")
        if isinstance(kind, _List | _LeafList):
            items = tree.setdefault(name, [])
            item_path = f"{child_path}[{len(items) + 1}]"
            if isinstance(kind, _List):
                items.append(_xml_members(child, kind.entry, item_path))
            else:
                items.append(_xml_leaf(child, kind.leaf, item_path))
        elif name in tree:
            raise ValidationError(child_path, "appears more than once")
        elif isinstance(kind, _Container):
            tree[name] = _xml_members(child, kind, child_path)
        else:
            tree[name] = _xml_leaf(child, kind, child_path)
    _check_mandatory(tree, schema, path)
    return tree


def _xml_leaf(element: Element, leaf: _Leaf, path: str) -> Any:
    if leaf is _Leaf.OPAQUE:
        return True
    strict_xml.refuse_attributes(element, path)
    if len(element):
        raise ValidationError(path, "a leaf cannot contain elements")
    text = element.text or ""
    if leaf is _Leaf.EMPTY:
        strict_xml.refuse_text(text, path)
        return True
    # The XML parser has already refused characters that XML cannot hold.
    return strict_json.decode_base64(text, path) if leaf is _Leaf.BINARY else text


def _xml_content(tree: _Tree, schema: _Container, path: str) -> str:
    parts = []
    for name, kind in schema.members.items():
        if name not in tree:
            continue
        value = tree[name]
        # A list or leaf-list is one element per entry (RFC 7950 §7.8.5, §7.7.8).
        for item in value if isinstance(kind, _List | _LeafList) else [value]:
            parts.append(_xml_node(name, item, kind, f"{path}/{name}"))
    return "".join(parts)


def _xml_node(name: str, value: Any, kind: _Schema, path: str) -> str:
    module, _, local_name = name.rpartition(":")
    declarations = f' xmlns="{_NAMESPACE_BY_MODULE[module]}"' if module else ""
    if isinstance(kind, _List):
        content = _xml_content(value, kind.entry, path)
    elif isinstance(kind, _Container):
        content = _xml_content(value, kind, path)
    else:
        leaf = kind.leaf if isinstance(kind, _LeafList) else kind
        if leaf is _Leaf.PATH:
            declarations += _xml_path_declarations(value, path)
        content = _xml_leaf_text(value, leaf, path)
    if not content:
        return f"<{local_name}{declarations}/>"
    return f"<{local_name}{declarations}>{content}</{local_name}>"


def _xml_path_declarations(value: str, path: str) -> str:
    # An instance-identifier's prefixes are XML prefixes in XML (RFC 7950 §9.13.2): declare
    # each module name as the prefix for its own namespace, so the JSON form stays valid.
    declarations = []
    for module in dict.fromkeys(_PATH_MODULE.findall(value)):
        if module not in _NAMESPACE_BY_MODULE:
            raise ValidationError(path, f"unknown module {module!r} in {value!r}")
        declarations.append(f' xmlns:{module}="{_NAMESPACE_BY_MODULE[module]}"')
    return "".join(declarations)


def _xml_leaf_text(value: Any, leaf: _Leaf, path: str) -> str:
    if leaf in (_Leaf.EMPTY, _Leaf.OPAQUE):
        return ""
    if leaf is _Leaf.BINARY:
        return strict_json.encode_base64(value)
    _check_text(value, path)
    return strict_xml.escape(value)

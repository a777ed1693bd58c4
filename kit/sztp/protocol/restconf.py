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
numbered from 1), or `Content-Type` / `Accept` from `negotiate`. Unknown members are rejected.

RFC 9646 (`csr`) augments the `get-bootstrapping-data` input with `csr-support` or a CSR leaf,
and puts a `csr-request` structure in the error-info of the server's 400 missing-attribute
answer: both are read and written here, identities of ietf-ztp-types included.

Over 500 lines on purpose: the two RPCs' schemas, their JSON and XML forms, content negotiation
and RESTCONF errors are the whole wire contract between device and server, kept in one place.
"""

import contextlib
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from ..errors import ValidationError
from . import strict_json, strict_xml, yang_codec
from .bootstrapping_data import BootstrappingData, encode_output_json
from .csr import (
    CSR_MODULE,
    CSR_NAMESPACE,
    CSR_REQUEST_PATH,
    FORMATS,
    ZTP_TYPES_MODULE,
    ZTP_TYPES_NAMESPACE,
    Csr,
    CsrRequest,
    CsrSupport,
    csr_path,
)
from .oids import MEDIA_TYPE_JSON, MEDIA_TYPE_XML
from .yang_codec import Container, Document, Leaf, LeafList, List, Tree

MODULE = "ietf-sztp-bootstrap-server"
NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server"
RESTCONF_MODULE = "ietf-restconf"
RESTCONF_NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-restconf"
XRD_NAMESPACE = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
# RFC 9646 augments the get-bootstrapping-data input from ietf-sztp-csr (CSR_MODULE), whose
# format identities are ietf-ztp-types'.
_NAMESPACE_BY_MODULE = {
    MODULE: NAMESPACE,
    RESTCONF_MODULE: RESTCONF_NAMESPACE,
    CSR_MODULE: CSR_NAMESPACE,
    ZTP_TYPES_MODULE: ZTP_TYPES_NAMESPACE,
}

# The RPCs by name, as the server counts and records them, and qualified by their module.
GET_BOOTSTRAPPING_DATA = "get-bootstrapping-data"
REPORT_PROGRESS = "report-progress"
RPC_NAMES = (GET_BOOTSTRAPPING_DATA, REPORT_PROGRESS)
RPC_GET_BOOTSTRAPPING_DATA = f"{MODULE}:{GET_BOOTSTRAPPING_DATA}"
RPC_REPORT_PROGRESS = f"{MODULE}:{REPORT_PROGRESS}"
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

# type/subtype, each an RFC 9110 token.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+/[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_QVALUE = re.compile(r"0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?")
# An instance-identifier as this codec writes one: steps of [module:]name, each maybe with
# list positions, e.g. ietf-sztp-bootstrap-server:input/ssh-host-keys[0]/key-data.
_STEP = r"(?:[A-Za-z_][A-Za-z0-9_.-]*:)?[A-Za-z_][A-Za-z0-9_.-]*(?:\[[0-9]+\])*"
_PLAIN_PATH = re.compile(rf"/?{_STEP}(?:/{_STEP})*")
_PATH_PREFIX = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*):")
# Longest piece of a client's text an error repeats back to it.
_MAX_ECHO = 256


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

    RFC 9646 adds a choice: `csr_support` (what CSRs the device can generate) or `csr` (the
    CSR a server asked for), never both.
    """

    signed_data_preferred: bool = False
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    nonce: bytes | None = None
    csr_support: CsrSupport | None = None
    csr: Csr | None = None

    def __post_init__(self) -> None:
        if self.nonce is not None and not NONCE_MIN_SIZE <= len(self.nonce) <= NONCE_MAX_SIZE:
            raise ValidationError(
                f"{INPUT_PATH}/nonce",
                f"must be {NONCE_MIN_SIZE}..{NONCE_MAX_SIZE} octets, not {len(self.nonce)}",
            )
        if self.csr_support is not None and self.csr is not None:
            raise ValidationError(csr_path(self.csr.format), _NOT_WITH_CSR_SUPPORT)


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
    error_app_tag: str | None = None
    # RFC 9646: the CSR a server asks for, in error-info (see `csr_request_error`).
    csr_request: CsrRequest | None = None

    def __post_init__(self) -> None:
        if self.error_type not in ERROR_TYPES:
            raise ValidationError(
                f"{ERRORS_PATH}/error/error-type",
                f"must be one of {', '.join(ERROR_TYPES)}, not {self.error_type!r}",
            )


def csr_request_error(request: CsrRequest) -> RestconfError:
    """The error asking a device for a CSR (RFC 9646 §3.2): 400 missing-attribute whose
    error-info holds the `csr-request`."""
    return RestconfError(
        "application",
        "missing-attribute",
        error_message="a CSR is required: generate it as error-info csr-request describes",
        csr_request=request,
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
    return yang_codec.NON_XML_CHARACTER.sub(lambda match: f"\\u{ord(match.group()):04x}", shown)


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


def _rpc_document(
    module: str,
    name: str,
    schema: Container,
    max_size: int,
    *,
    empty_body_allowed: bool = False,
) -> Document:
    return Document(
        module=module,
        namespaces=_NAMESPACE_BY_MODULE,
        path=f"{module}:{name}",
        roots={name: schema},
        max_size=max_size,
        empty_body_allowed=empty_body_allowed,
        # The CSR formats (format-identifier) are identities of ietf-ztp-types.
        identity_modules=(ZTP_TYPES_MODULE,),
    )


# ietf-sztp-csr@2024-10-10: the augment's `choice msg-type` puts, directly in the input, either
# case csr-support (container csr-support) or case csr (zt:csr-grouping: `choice csr-type` of
# the leaves p10-csr, cmc-csr, cmp-csr). Every node is in the ietf-sztp-csr namespace.
_CSR_SUPPORT = f"{CSR_MODULE}:csr-support"
_CSR_LEAVES = {fmt: f"{CSR_MODULE}:{fmt.rpartition(':')[2]}" for fmt in FORMATS}
_CSR_REQUEST_MEMBER = f"{CSR_MODULE}:csr-request"
_NOT_WITH_CSR_SUPPORT = "cannot be sent with csr-support (choice msg-type: one or the other)"
_GET_INPUT = _rpc_document(
    MODULE,
    "input",
    Container(
        {
            "signed-data-preferred": Leaf.EMPTY,
            "hw-model": Leaf.STRING,
            "os-name": Leaf.STRING,
            "os-version": Leaf.STRING,
            "nonce": Leaf.BINARY,
            # ietf-ztp-types:csr-support-grouping; key-generation is a presence container.
            _CSR_SUPPORT: Container(
                {
                    "key-generation": Container(
                        {
                            "supported-algorithms": Container(
                                {"algorithm-identifier": LeafList(Leaf.BINARY)}
                            )
                        }
                    ),
                    "csr-generation": Container(
                        {
                            "supported-formats": Container(
                                {"format-identifier": LeafList(Leaf.IDENTITYREF)}
                            )
                        }
                    ),
                }
            ),
            **dict.fromkeys(_CSR_LEAVES.values(), Leaf.BINARY),
        }
    ),
    MAX_INPUT_SIZE,
    empty_body_allowed=True,
)
# ietf-ztp-types:csr-request-grouping, the content of the `sx:structure csr-request`. The
# mandatory leaves sit below non-presence containers, so `_csr_request` checks them.
_CSR_REQUEST = Container(
    {
        "key-generation": Container(
            {"selected-algorithm": Container({"algorithm-identifier": Leaf.BINARY})}
        ),
        "csr-generation": Container(
            {"selected-format": Container({"format-identifier": Leaf.IDENTITYREF})}
        ),
        "cert-req-info": Leaf.BINARY,
    }
)
_REPORT_INPUT = _rpc_document(
    MODULE,
    "input",
    Container(
        {
            "progress-type": Leaf.STRING,
            "message": Leaf.STRING,
            "ssh-host-keys": Container(
                {
                    "ssh-host-key": List(
                        Container(
                            {"algorithm": Leaf.STRING, "key-data": Leaf.BINARY},
                            mandatory=("algorithm", "key-data"),
                        )
                    )
                }
            ),
            "trust-anchor-certs": Container({"trust-anchor-cert": LeafList(Leaf.BINARY)}),
        },
        mandatory=("progress-type",),
    ),
    MAX_REPORT_SIZE,
    empty_body_allowed=True,
)
_GET_OUTPUT = _rpc_document(
    MODULE,
    "output",
    Container(
        {
            "reporting-level": Leaf.STRING,
            "conveyed-information": Leaf.BINARY,
            "owner-certificate": Leaf.BINARY,
            "ownership-voucher": Leaf.BINARY,
        },
        mandatory=("conveyed-information",),
    ),
    MAX_OUTPUT_SIZE,
)
_ERRORS = _rpc_document(
    RESTCONF_MODULE,
    "errors",
    Container(
        {
            "error": List(
                Container(
                    {
                        "error-type": Leaf.STRING,
                        "error-tag": Leaf.STRING,
                        "error-app-tag": Leaf.STRING,
                        "error-path": Leaf.PATH,
                        "error-message": Leaf.STRING,
                        # anydata: a csr-request is read (a device needs it); any other
                        # content is skipped, so the errors of other servers still parse.
                        # One schema tolerant of the rest, rather than a second document
                        # tried after a failure, keeps a malformed csr-request an error.
                        "error-info": Container({_CSR_REQUEST_MEMBER: _CSR_REQUEST}, anydata=True),
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
    csr_support, csr = _csr_choice(tree)
    return GetBootstrappingDataInput(
        signed_data_preferred="signed-data-preferred" in tree,
        hw_model=tree.get("hw-model"),
        os_name=tree.get("os-name"),
        os_version=tree.get("os-version"),
        nonce=tree.get("nonce"),
        csr_support=csr_support,
        csr=csr,
    )


def _csr_choice(tree: Tree) -> tuple[CsrSupport | None, Csr | None]:
    """The RFC 9646 choice of an input: at most one of csr-support and the CSR leaves; the
    second one present, in schema order, is the one refused."""
    present = [name for name in (_CSR_SUPPORT, *_CSR_LEAVES.values()) if name in tree]
    if len(present) > 1:
        message = (
            _NOT_WITH_CSR_SUPPORT
            if present[0] == _CSR_SUPPORT
            else f"cannot be sent with {present[0]} (choice csr-type: one CSR format)"
        )
        raise ValidationError(f"{INPUT_PATH}/{present[1]}", message)
    if _CSR_SUPPORT in tree:
        support = tree[_CSR_SUPPORT]
        # An absent non-presence container holds no values: CsrSupport's min-elements checks
        # refuse it. key-generation is a presence container: absent, the device makes no key.
        algorithms = None
        if "key-generation" in support:
            algorithms = tuple(
                _nested(support, "key-generation", "supported-algorithms", "algorithm-identifier")
                or ()
            )
        formats = _nested(support, "csr-generation", "supported-formats", "format-identifier")
        return CsrSupport(algorithms, tuple(formats or ())), None
    for fmt, name in _CSR_LEAVES.items():
        if name in tree:
            return None, Csr(fmt, tree[name])
    return None, None


def _nested(tree: Tree, *names: str) -> Any:
    """The node at `names` below `tree`, None when a container on the way is absent."""
    node: Any = tree
    for name in names:
        node = node.get(name)
        if node is None:
            return None
    return node


def encode_get_bootstrapping_data_input(inp: GetBootstrappingDataInput, fmt: WireFormat) -> bytes:
    """The input as a device sends it; always a body, `{...:input: {}}` when all are absent."""
    tree: Tree = {}
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
    if inp.csr_support is not None:
        support: Tree = {
            "csr-generation": {
                "supported-formats": {"format-identifier": list(inp.csr_support.formats)}
            }
        }
        if inp.csr_support.key_algorithms is not None:
            algorithms = list(inp.csr_support.key_algorithms)
            support["key-generation"] = {
                "supported-algorithms": {"algorithm-identifier": algorithms}
            }
        tree[_CSR_SUPPORT] = support
    if inp.csr is not None:
        tree[_CSR_LEAVES[inp.csr.format]] = inp.csr.der
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
    tree: Tree = {"progress-type": report.progress_type}
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
    tree: Tree = {"conveyed-information": data.conveyed_information}
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
        entry: Tree = {"error-type": error.error_type, "error-tag": error.error_tag}
        for name, value in (
            ("error-app-tag", error.error_app_tag),
            ("error-path", error.error_path),
            ("error-message", error.error_message),
        ):
            if value is not None:
                entry[name] = value
        if error.csr_request is not None:
            entry["error-info"] = {_CSR_REQUEST_MEMBER: _csr_request_tree(error.csr_request)}
        entries.append(entry)
    return _encode({"error": entries} if entries else {}, fmt, _ERRORS)


def _csr_request_tree(request: CsrRequest) -> Tree:
    tree: Tree = {}
    if request.key_algorithm is not None:
        tree["key-generation"] = {
            "selected-algorithm": {"algorithm-identifier": request.key_algorithm}
        }
    tree["csr-generation"] = {"selected-format": {"format-identifier": request.format}}
    if request.cert_req_info is not None:
        tree["cert-req-info"] = request.cert_req_info
    return tree


def parse_errors(body: bytes, fmt: WireFormat) -> tuple[RestconfError, ...]:
    """Parse a server's `ietf-restconf:errors` body. Of error-info, only an RFC 9646
    `csr-request` is read; other content is skipped."""
    tree = _decode(body, fmt, _ERRORS)
    errors = []
    for index, entry in enumerate(tree.get("error", []), start=1):
        request = None
        info = entry.get("error-info", {})
        if _CSR_REQUEST_MEMBER in info:
            path = f"{ERRORS_PATH}/error[{index}]/error-info/{CSR_REQUEST_PATH}"
            request = _csr_request(info[_CSR_REQUEST_MEMBER], path)
        errors.append(
            RestconfError(
                error_type=entry["error-type"],
                error_tag=entry["error-tag"],
                error_message=entry.get("error-message"),
                error_path=entry.get("error-path"),
                error_app_tag=entry.get("error-app-tag"),
                csr_request=request,
            )
        )
    return tuple(errors)


def _csr_request(tree: Tree, path: str) -> CsrRequest:
    """A decoded `csr-request` at `path`, its mandatory leaves present and values checked."""
    key_algorithm = None
    if "key-generation" in tree:
        # A presence container: its mandatory leaf is required once it is there.
        key_algorithm = _nested(
            tree, "key-generation", "selected-algorithm", "algorithm-identifier"
        )
        if key_algorithm is None:
            raise ValidationError(
                f"{path}/key-generation/selected-algorithm/algorithm-identifier",
                "missing (it is mandatory)",
            )
    format_identifier = _nested(tree, "csr-generation", "selected-format", "format-identifier")
    if format_identifier is None:
        raise ValidationError(
            f"{path}/csr-generation/selected-format/format-identifier", "missing (it is mandatory)"
        )
    try:
        return CsrRequest(key_algorithm, format_identifier, tree.get("cert-req-info"))
    except ValidationError as exc:
        # The structure names its nodes from its own root; here it sits inside an error.
        raise ValidationError(
            path + exc.field.removeprefix(CSR_REQUEST_PATH), exc.message
        ) from None


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
    text = strict_json.document_text(body, HOST_META_PATH, MAX_HOST_META_SIZE)
    document = strict_json.loads(text, HOST_META_PATH)
    if not isinstance(document, dict):
        raise ValidationError(
            HOST_META_PATH, f"must be a JSON object, not {strict_json.type_name(document)}"
        )
    links = strict_json.array(document.get("links", []), f"{HOST_META_PATH}/links")
    for index, link in enumerate(links, start=1):
        if not isinstance(link, dict):
            raise ValidationError(f"{HOST_META_PATH}/links[{index}]", "must be a JSON object")
        if link.get("rel") == "restconf":
            return yang_codec.json_string(link.get("href"), f"{HOST_META_PATH}/links[{index}]/href")
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
    if not yang_codec.URI_CHARACTERS.fullmatch(href):
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


# --------------------------------------------------------------------------- codec


def _decode(body: bytes, fmt: WireFormat, document: Document) -> Tree:
    decode = yang_codec.decode_json if fmt is WireFormat.JSON else yang_codec.decode_xml
    _, tree = decode(body, document)
    return tree


def _encode(tree: Tree, fmt: WireFormat, document: Document) -> bytes:
    encode = yang_codec.encode_json if fmt is WireFormat.JSON else yang_codec.encode_xml
    (name,) = document.roots
    return encode(name, tree, document)

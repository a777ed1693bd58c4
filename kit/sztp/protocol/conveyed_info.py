"""Conveyed information of RFC 8572 (YANG module `ietf-sztp-conveyed-info@2019-04-30`).

The module defines `rc:yang-data conveyed-information` holding a mandatory choice between
`redirect-information` and `onboarding-information`. A yang-data template is not itself a data
node (RFC 8040 §8), so an instance document has the chosen container as its top-level node:
`{"ietf-sztp-conveyed-info:redirect-information": {...}}` or
`{"ietf-sztp-conveyed-info:onboarding-information": {...}}` in JSON, exactly as in the examples
of RFC 8572 §6.2, and `<redirect-information xmlns="urn:...:ietf-sztp-conveyed-info">` in XML.

Encoders produce deterministic bytes:
- JSON (RFC 7951): members in YANG schema order, compact separators, ASCII only (non-ASCII
  escaped), `port` always written even when it is the default 443.
- XML (RFC 7950 §7): UTF-8 without an XML declaration (UTF-8 is the XML default and the bytes
  travel inside CMS, not as a file), no whitespace between elements, list keys first.

Decoders treat their input as untrusted: anything wrong raises `ValidationError`, whose `field`
is the path of the offending node, e.g. `redirect-information/bootstrap-server[1]/port`
(list entries are numbered from 1). Unknown members are rejected rather than ignored.
"""

import enum
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

from ..errors import ValidationError
from . import strict_json, strict_xml
from .oids import (
    ID_CT_SZTP_CONVEYED_INFO_JSON,
    ID_CT_SZTP_CONVEYED_INFO_XML,
    MEDIA_TYPE_JSON,
    MEDIA_TYPE_XML,
)

MODULE_NAME = "ietf-sztp-conveyed-info"
NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info"
# The module's own prefix, used to qualify identityref values in XML.
XML_PREFIX = "sztp-info"
SHA_256_IDENTITY = f"{MODULE_NAME}:sha-256"
SHA_256_SIZE = 32
DEFAULT_PORT = 443

# Conveyed information carries no image (only its URIs), so even a large configuration plus
# scripts, base64-encoded, stays well below this.
MAX_DOCUMENT_SIZE = 8 * 1024 * 1024
# Bounds the parsed tree, whatever the document size; real documents have a few dozen elements.
MAX_XML_ELEMENTS = 10_000
MAX_STRING_LENGTH = 1024
MAX_URI_LENGTH = 8192

ConfigurationHandling = Literal["merge", "replace"]
CONFIGURATION_HANDLINGS: tuple[str, ...] = get_args(ConfigurationHandling)

ROOT = "conveyed-information"
REDIRECT = "redirect-information"
ONBOARDING = "onboarding-information"
_BOOTSTRAP_SERVER = f"{REDIRECT}/bootstrap-server"
_BOOT_IMAGE = f"{ONBOARDING}/boot-image"
_IMAGE_VERIFICATION = f"{_BOOT_IMAGE}/image-verification"
_HASH_ALGORITHM_PATH = f"{_IMAGE_VERIFICATION}/hash-algorithm"
HASH_VALUE_PATH = f"{_IMAGE_VERIFICATION}/hash-value"

_BOOTSTRAP_SERVER_MEMBERS = ("address", "port", "trust-anchor")
_BOOT_IMAGE_MEMBERS = ("os-name", "os-version", "download-uri", "image-verification")
_IMAGE_VERIFICATION_MEMBERS = ("hash-algorithm", "hash-value")
_ONBOARDING_MEMBERS = (
    "boot-image",
    "configuration-handling",
    "pre-configuration-script",
    "configuration",
    "post-configuration-script",
)
_BINARY_MEMBERS = ("pre-configuration-script", "configuration", "post-configuration-script")

# yang:hex-string, but with at least one octet.
_COLON_HEX = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2})*")
_PLAIN_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
# inet:domain-name: labels of at most 63 characters, ending in a letter or digit.
_LABEL = r"(?:[A-Za-z0-9_][A-Za-z0-9_-]{0,61})?[A-Za-z0-9]"
_DOMAIN_NAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\.?")
_MAX_DOMAIN_NAME_LENGTH = 253
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
# RFC 3986 characters: unreserved, reserved and "%" (checked to start an escape below).
_URI_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")
_BROKEN_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# Characters a YANG string may hold (those legal in XML 1.0); this also rejects lone
# surrogates, which JSON escapes can produce but UTF-8 cannot encode.
_NON_XML_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# RFC 7950 §9.2.1 integer lexical form (optional sign; a minus sign is never in range here).
_XML_UNSIGNED = re.compile(r"\+?[0-9]{1,10}")


@dataclass(frozen=True)
class BootImage:
    """The boot image a device must run; `sha256` is the raw SHA-256 digest of the image file."""

    os_name: str | None = None
    os_version: str | None = None
    download_uris: tuple[str, ...] = ()
    sha256: bytes | None = None


@dataclass(frozen=True)
class OnboardingInformation:
    """Everything a device needs to bootstrap itself (RFC 8572 §2.2); scripts are opaque."""

    boot_image: BootImage | None = None
    configuration_handling: ConfigurationHandling | None = None
    pre_configuration_script: bytes | None = None
    configuration: bytes | None = None
    post_configuration_script: bytes | None = None


@dataclass(frozen=True)
class BootstrapServer:
    """A bootstrap server to redirect to; `trust_anchor` is a DER CMS degenerate SignedData."""

    address: str
    port: int = DEFAULT_PORT
    trust_anchor: bytes | None = None


@dataclass(frozen=True)
class RedirectInformation:
    """Bootstrap servers to try, in order (RFC 8572 §2.1)."""

    bootstrap_servers: tuple[BootstrapServer, ...]


ConveyedInformation = RedirectInformation | OnboardingInformation


class Encoding(enum.Enum):
    """How conveyed information is serialised, with its CMS content type and media type."""

    JSON = "json"
    XML = "xml"

    @property
    def content_type_oid(self) -> str:
        """The CMS content type of conveyed information in this encoding (RFC 8572 §3.1)."""
        if self is Encoding.JSON:
            return ID_CT_SZTP_CONVEYED_INFO_JSON
        return ID_CT_SZTP_CONVEYED_INFO_XML

    @property
    def media_type(self) -> str:
        """The RESTCONF media type of this encoding (RFC 8040 §11.3)."""
        if self is Encoding.JSON:
            return MEDIA_TYPE_JSON
        return MEDIA_TYPE_XML


# --------------------------------------------------------------------------- helpers


def sha256_hex_colon(data: bytes) -> str:
    """SHA-256 of `data` (e.g. a boot image file) as a `yang:hex-string` (`ab:cd:…`)."""
    return _hex_colon(hashlib.sha256(data).digest())


def parse_hash_value(text: str, field: str = HASH_VALUE_PATH) -> bytes:
    """Parse a SHA-256 value typed by an operator into its 32 raw bytes.

    Accepts `yang:hex-string` (`ab:cd:…`, as on the wire) and plain hex (`sha256sum` output),
    in either case; leading and trailing whitespace is ignored.
    """
    candidate = text.strip() if isinstance(text, str) else ""
    if _COLON_HEX.fullmatch(candidate):
        digest = bytes.fromhex(candidate.replace(":", ""))
    elif _PLAIN_HEX.fullmatch(candidate):
        digest = bytes.fromhex(candidate)
    else:
        raise ValidationError(field, "not hex octets like 'ab:cd:…' or 'abcd…'")
    _check_digest_size(digest, field)
    return digest


def _hex_colon(data: bytes) -> str:
    return data.hex(":")


def _parse_hex_string(text: str, field: str) -> bytes:
    """Strict `yang:hex-string` as found on the wire (colons required)."""
    if not _COLON_HEX.fullmatch(text):
        raise ValidationError(field, "not a hex-string of colon-separated octets ('ab:cd:…')")
    return bytes.fromhex(text.replace(":", ""))


def _check_digest_size(digest: bytes, field: str) -> None:
    if len(digest) != SHA_256_SIZE:
        raise ValidationError(
            field, f"a SHA-256 value has {SHA_256_SIZE} octets, not {len(digest)}"
        )


# --------------------------------------------------------------------------- validation


def validate(info: ConveyedInformation) -> None:
    """Check `info` against the YANG module; raise `ValidationError` naming the bad node.

    Stricter than the module where its values are useless to a device: port 0, the root
    domain `.` as an address, download URIs without a host, duplicated download URIs.
    """
    if isinstance(info, RedirectInformation):
        _validate_redirect(info)
    elif isinstance(info, OnboardingInformation):
        _validate_onboarding(info)
    else:
        raise ValidationError(
            ROOT, "must be exactly one of redirect-information and onboarding-information"
        )


def _validate_redirect(info: RedirectInformation) -> None:
    servers = info.bootstrap_servers
    if not isinstance(servers, tuple):
        raise ValidationError(_BOOTSTRAP_SERVER, "must be a tuple of BootstrapServer")
    if not servers:
        raise ValidationError(_BOOTSTRAP_SERVER, "at least one bootstrap server is required")
    addresses: set[str] = set()
    for index, server in enumerate(servers, start=1):
        entry = f"{_BOOTSTRAP_SERVER}[{index}]"
        if not isinstance(server, BootstrapServer):
            raise ValidationError(entry, "must be a BootstrapServer")
        _check_host(server.address, f"{entry}/address")
        # The list is keyed by address, so an address may appear only once.
        if server.address in addresses:
            raise ValidationError(f"{entry}/address", f"duplicate address {server.address!r}")
        addresses.add(server.address)
        port = server.port
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise ValidationError(f"{entry}/port", f"must be an integer 1..65535, not {port!r}")
        if server.trust_anchor is not None:
            _check_bytes(server.trust_anchor, f"{entry}/trust-anchor")
            if not server.trust_anchor:
                raise ValidationError(f"{entry}/trust-anchor", "a CMS structure cannot be empty")


def _validate_onboarding(info: OnboardingInformation) -> None:
    if info.boot_image is not None:
        if not isinstance(info.boot_image, BootImage):
            raise ValidationError(_BOOT_IMAGE, "must be a BootImage")
        _validate_boot_image(info.boot_image)
    handling_path = f"{ONBOARDING}/configuration-handling"
    if info.configuration_handling is not None:
        if info.configuration_handling not in CONFIGURATION_HANDLINGS:
            raise ValidationError(
                handling_path, f"must be merge or replace, not {info.configuration_handling!r}"
            )
        # must '../configuration'
        if info.configuration is None:
            raise ValidationError(handling_path, "only allowed together with configuration")
    # must '../configuration-handling': a device must know how to apply the configuration.
    if info.configuration is not None and info.configuration_handling is None:
        raise ValidationError(
            f"{ONBOARDING}/configuration", "requires configuration-handling (merge or replace)"
        )
    for name, value in zip(
        _BINARY_MEMBERS,
        (info.pre_configuration_script, info.configuration, info.post_configuration_script),
        strict=True,
    ):
        if value is not None:
            _check_bytes(value, f"{ONBOARDING}/{name}")


def _validate_boot_image(image: BootImage) -> None:
    for name, value in (("os-name", image.os_name), ("os-version", image.os_version)):
        if value is not None:
            _check_string(value, f"{_BOOT_IMAGE}/{name}")
    uris = image.download_uris
    if not isinstance(uris, tuple):
        raise ValidationError(f"{_BOOT_IMAGE}/download-uri", "must be a tuple of strings")
    for index, uri in enumerate(uris, start=1):
        path = f"{_BOOT_IMAGE}/download-uri[{index}]"
        _check_uri(uri, path)
        if uri in uris[: index - 1]:
            raise ValidationError(path, f"duplicate URI {uri!r}")
    if image.sha256 is not None:
        # must '../download-uri': there is nothing to verify without an image to download.
        if not uris:
            raise ValidationError(_IMAGE_VERIFICATION, "only allowed together with download-uri")
        _check_bytes(image.sha256, HASH_VALUE_PATH)
        _check_digest_size(image.sha256, HASH_VALUE_PATH)


def _check_bytes(value: object, field: str) -> None:
    if not isinstance(value, bytes):
        raise ValidationError(field, f"must be bytes, not {type(value).__name__}")


def _check_string(value: object, field: str) -> None:
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    if len(value) > MAX_STRING_LENGTH:
        raise ValidationError(field, f"longer than {MAX_STRING_LENGTH} characters")
    if _NON_XML_CHARACTER.search(value):
        raise ValidationError(field, "contains a control character or an unpaired surrogate")


def _check_host(value: object, field: str) -> None:
    """inet:host: an IPv4 or IPv6 address (IPv6 may carry a zone) or a DNS domain name."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            raise ValidationError(field, f"{value!r} is not an IPv6 address") from None
    elif _DOTTED_NUMBERS.fullmatch(value):
        # All-numeric names are never host names (RFC 1123 §2.1); insist on a real IPv4 address.
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValidationError(field, f"{value!r} is not an IPv4 address") from None
    elif len(value) > _MAX_DOMAIN_NAME_LENGTH or not _DOMAIN_NAME.fullmatch(value):
        raise ValidationError(
            field, f"{value!r} is not an IP address or domain name (a host, not a URL)"
        )


def _check_uri(value: object, field: str) -> None:
    """inet:uri, restricted to URIs naming a host to download from (`scheme://host/...`)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    if len(value) > MAX_URI_LENGTH:
        raise ValidationError(field, f"longer than {MAX_URI_LENGTH} characters")
    if not _URI_CHARACTERS.fullmatch(value) or _BROKEN_PERCENT_ESCAPE.search(value):
        raise ValidationError(field, f"{value!r} is not a URI (RFC 3986 characters only)")
    scheme, separator, _ = value.partition("://")
    if not separator or not _URI_SCHEME.fullmatch(scheme):
        raise ValidationError(field, f"{value!r} is not a URI of the form scheme://host/...")
    try:
        parts = urlsplit(value)
        has_host = bool(parts.hostname)
        _ = parts.port  # raises ValueError on a malformed or out-of-range port
    except ValueError:
        raise ValidationError(field, f"{value!r} has a malformed host or port") from None
    if not has_host:
        raise ValidationError(field, f"{value!r} names no host")


# --------------------------------------------------------------------------- public codecs


def encode(info: ConveyedInformation, encoding: Encoding) -> bytes:
    """Validate `info` and serialise it in `encoding`."""
    if encoding is Encoding.XML:
        return encode_xml(info)
    return encode_json(info)


def decode(data: bytes, encoding: Encoding) -> ConveyedInformation:
    """Parse and validate conveyed information received from a peer."""
    if encoding is Encoding.XML:
        return decode_xml(data)
    return decode_json(data)


def _top_level_name(info: ConveyedInformation) -> str:
    return REDIRECT if isinstance(info, RedirectInformation) else ONBOARDING


# --------------------------------------------------------------------------- JSON


def encode_json(info: ConveyedInformation) -> bytes:
    """RFC 7951 JSON: schema order, compact, ASCII-only; see the module docstring."""
    validate(info)
    if isinstance(info, RedirectInformation):
        body = _redirect_to_json(info)
    else:
        body = _onboarding_to_json(info)
    document = {f"{MODULE_NAME}:{_top_level_name(info)}": body}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _redirect_to_json(info: RedirectInformation) -> dict[str, object]:
    servers: list[dict[str, object]] = []
    for server in info.bootstrap_servers:
        entry: dict[str, object] = {"address": server.address, "port": server.port}
        if server.trust_anchor is not None:
            entry["trust-anchor"] = strict_json.encode_base64(server.trust_anchor)
        servers.append(entry)
    return {"bootstrap-server": servers}


def _onboarding_to_json(info: OnboardingInformation) -> dict[str, object]:
    body: dict[str, object] = {}
    if info.boot_image is not None:
        body["boot-image"] = _boot_image_to_json(info.boot_image)
    if info.configuration_handling is not None:
        body["configuration-handling"] = info.configuration_handling
    for name, value in _binary_members(info):
        body[name] = strict_json.encode_base64(value)
    return body


def _binary_members(info: OnboardingInformation) -> Iterator[tuple[str, bytes]]:
    """The binary leaves that are present, in schema order."""
    values = (info.pre_configuration_script, info.configuration, info.post_configuration_script)
    for name, value in zip(_BINARY_MEMBERS, values, strict=True):
        if value is not None:
            yield name, value


def _boot_image_to_json(image: BootImage) -> dict[str, object]:
    body: dict[str, object] = {}
    if image.os_name is not None:
        body["os-name"] = image.os_name
    if image.os_version is not None:
        body["os-version"] = image.os_version
    if image.download_uris:
        body["download-uri"] = list(image.download_uris)
    if image.sha256 is not None:
        body["image-verification"] = [
            {"hash-algorithm": SHA_256_IDENTITY, "hash-value": _hex_colon(image.sha256)}
        ]
    return body


def decode_json(data: bytes) -> ConveyedInformation:
    """Parse RFC 7951 JSON conveyed information; strict about types and unknown members."""
    text = strict_json.document_text(data, ROOT, MAX_DOCUMENT_SIZE)
    top = _json_object(strict_json.loads(text, ROOT), ROOT)
    # RFC 7951 §4: top-level member names are always qualified with the module name.
    for name in top:
        if name not in (f"{MODULE_NAME}:{REDIRECT}", f"{MODULE_NAME}:{ONBOARDING}"):
            raise ValidationError(
                name,
                f"unknown top-level member; expected {MODULE_NAME}:{REDIRECT} or :{ONBOARDING}",
            )
    if len(top) != 1:
        raise ValidationError(
            ROOT, "must hold exactly one of redirect-information and onboarding-information"
        )
    ((name, body),) = top.items()
    info: ConveyedInformation = (
        _redirect_from_json(body) if name.endswith(REDIRECT) else _onboarding_from_json(body)
    )
    validate(info)
    return info


def _json_object(value: object, path: str, members: tuple[str, ...] = ()) -> dict[str, object]:
    """`value` as a JSON object whose member names are all in `members` (if given)."""
    if not isinstance(value, dict):
        raise ValidationError(path, f"must be a JSON object, not {strict_json.type_name(value)}")
    if members:
        for name in value:
            if name not in members:
                raise ValidationError(f"{path}/{name}", "unknown member")
    return value


def _json_binary(value: object, path: str) -> bytes:
    return strict_json.decode_base64(strict_json.string(value, path), path)


def _redirect_from_json(value: object) -> RedirectInformation:
    body = _json_object(value, REDIRECT, ("bootstrap-server",))
    if "bootstrap-server" not in body:
        raise ValidationError(_BOOTSTRAP_SERVER, "at least one bootstrap server is required")
    entries = strict_json.array(body["bootstrap-server"], _BOOTSTRAP_SERVER)
    servers = []
    for index, entry_value in enumerate(entries, start=1):
        path = f"{_BOOTSTRAP_SERVER}[{index}]"
        entry = _json_object(entry_value, path, _BOOTSTRAP_SERVER_MEMBERS)
        if "address" not in entry:
            raise ValidationError(f"{path}/address", "missing (it is the list key)")
        port = entry.get("port", DEFAULT_PORT)
        # RFC 7951 §6.1: a uint16 is a JSON number; Python's bool is an int, so exclude it.
        if not isinstance(port, int) or isinstance(port, bool):
            raise ValidationError(
                f"{path}/port", f"must be a JSON integer, not {strict_json.type_name(port)}"
            )
        trust_anchor = None
        if "trust-anchor" in entry:
            trust_anchor = _json_binary(entry["trust-anchor"], f"{path}/trust-anchor")
        servers.append(
            BootstrapServer(
                address=strict_json.string(entry["address"], f"{path}/address"),
                port=port,
                trust_anchor=trust_anchor,
            )
        )
    return RedirectInformation(tuple(servers))


def _onboarding_from_json(value: object) -> OnboardingInformation:
    body = _json_object(value, ONBOARDING, _ONBOARDING_MEMBERS)
    boot_image = None
    if "boot-image" in body:
        boot_image = _boot_image_from_json(body["boot-image"])
    handling = None
    if "configuration-handling" in body:
        path = f"{ONBOARDING}/configuration-handling"
        handling = strict_json.string(body["configuration-handling"], path)
        if handling not in CONFIGURATION_HANDLINGS:
            raise ValidationError(path, f"must be merge or replace, not {handling!r}")
    binaries = {
        name: _json_binary(body[name], f"{ONBOARDING}/{name}")
        for name in _BINARY_MEMBERS
        if name in body
    }
    return OnboardingInformation(
        boot_image=boot_image,
        configuration_handling=handling,  # type: ignore[arg-type]  # checked just above
        pre_configuration_script=binaries.get("pre-configuration-script"),
        configuration=binaries.get("configuration"),
        post_configuration_script=binaries.get("post-configuration-script"),
    )


def _boot_image_from_json(value: object) -> BootImage:
    body = _json_object(value, _BOOT_IMAGE, _BOOT_IMAGE_MEMBERS)
    names = {
        name: strict_json.string(body[name], f"{_BOOT_IMAGE}/{name}")
        for name in ("os-name", "os-version")
        if name in body
    }
    uris: list[str] = []
    if "download-uri" in body:
        uri_list = strict_json.array(body["download-uri"], f"{_BOOT_IMAGE}/download-uri")
        for index, uri in enumerate(uri_list, start=1):
            uris.append(strict_json.string(uri, f"{_BOOT_IMAGE}/download-uri[{index}]"))
    sha256 = None
    if "image-verification" in body:
        entries = strict_json.array(body["image-verification"], _IMAGE_VERIFICATION)
        verifications = []
        for entry_value in entries:
            entry = _json_object(entry_value, _IMAGE_VERIFICATION, _IMAGE_VERIFICATION_MEMBERS)
            if "hash-algorithm" not in entry:
                raise ValidationError(_HASH_ALGORITHM_PATH, "missing (it is the list key)")
            algorithm = strict_json.string(entry["hash-algorithm"], _HASH_ALGORITHM_PATH)
            # RFC 7951 §6.8: an identity of the node's own module may be written unqualified.
            if algorithm not in (SHA_256_IDENTITY, "sha-256"):
                raise _unknown_hash_algorithm(algorithm)
            if "hash-value" not in entry:
                raise ValidationError(HASH_VALUE_PATH, "missing (it is mandatory)")
            verifications.append(strict_json.string(entry["hash-value"], HASH_VALUE_PATH))
        sha256 = _single_hash_value(verifications)
    return BootImage(
        os_name=names.get("os-name"),
        os_version=names.get("os-version"),
        download_uris=tuple(uris),
        sha256=sha256,
    )


def _unknown_hash_algorithm(written: str) -> ValidationError:
    return ValidationError(
        _HASH_ALGORITHM_PATH, f"{written!r} is not a known hash algorithm (only sha-256)"
    )


def _single_hash_value(hash_values: list[str]) -> bytes | None:
    """The list is keyed by hash algorithm and sha-256 is the only one, so at most one entry."""
    if not hash_values:
        return None
    if len(hash_values) > 1:
        raise ValidationError(_IMAGE_VERIFICATION, f"duplicate entry for {SHA_256_IDENTITY}")
    return _parse_hex_string(hash_values[0], HASH_VALUE_PATH)


# --------------------------------------------------------------------------- XML


def encode_xml(info: ConveyedInformation) -> bytes:
    """RFC 7950 XML, UTF-8, no declaration, no insignificant whitespace."""
    validate(info)
    name = _top_level_name(info)
    if isinstance(info, RedirectInformation):
        declarations = f'xmlns="{NAMESPACE}"'
        content = _redirect_to_xml(info)
    else:
        # The prefix qualifies the identityref value `sztp-info:sha-256` (RFC 7950 §9.10.3).
        declarations = f'xmlns="{NAMESPACE}" xmlns:{XML_PREFIX}="{NAMESPACE}"'
        content = _onboarding_to_xml(info)
    return f"<{name} {declarations}>{content}</{name}>".encode()


def _xml_element(name: str, content: str) -> str:
    return f"<{name}>{content}</{name}>"


def _xml_leaf(name: str, text: str) -> str:
    return _xml_element(name, strict_xml.escape(text))


def _redirect_to_xml(info: RedirectInformation) -> str:
    entries = []
    for server in info.bootstrap_servers:
        # The list key (address) comes first (RFC 7950 §7.8.5).
        leaves = [_xml_leaf("address", server.address), _xml_leaf("port", str(server.port))]
        if server.trust_anchor is not None:
            leaves.append(_xml_leaf("trust-anchor", strict_json.encode_base64(server.trust_anchor)))
        entries.append(_xml_element("bootstrap-server", "".join(leaves)))
    return "".join(entries)


def _onboarding_to_xml(info: OnboardingInformation) -> str:
    parts = []
    if info.boot_image is not None:
        parts.append(_xml_element("boot-image", _boot_image_to_xml(info.boot_image)))
    if info.configuration_handling is not None:
        parts.append(_xml_leaf("configuration-handling", info.configuration_handling))
    parts.extend(
        _xml_leaf(name, strict_json.encode_base64(value)) for name, value in _binary_members(info)
    )
    return "".join(parts)


def _boot_image_to_xml(image: BootImage) -> str:
    parts = []
    if image.os_name is not None:
        parts.append(_xml_leaf("os-name", image.os_name))
    if image.os_version is not None:
        parts.append(_xml_leaf("os-version", image.os_version))
    parts.extend(_xml_leaf("download-uri", uri) for uri in image.download_uris)
    if image.sha256 is not None:
        verification = _xml_leaf("hash-algorithm", f"{XML_PREFIX}:sha-256") + _xml_leaf(
            "hash-value", _hex_colon(image.sha256)
        )
        parts.append(_xml_element("image-verification", verification))
    return "".join(parts)


def decode_xml(data: bytes) -> ConveyedInformation:
    """Parse RFC 7950 XML conveyed information; DTDs and entity declarations are refused."""
    builder = strict_xml.ScopedTreeBuilder(ROOT, MAX_XML_ELEMENTS)
    root = strict_xml.parse(data, ROOT, MAX_DOCUMENT_SIZE, target=builder)
    reader = _XmlReader(builder.scopes)
    namespace, name = strict_xml.split_tag(root.tag)
    if namespace != NAMESPACE:
        raise ValidationError(
            ROOT, f"top-level element must be in namespace {NAMESPACE}, not {namespace!r}"
        )
    info: ConveyedInformation
    if name == REDIRECT:
        info = _redirect_from_xml(reader, root)
    elif name == ONBOARDING:
        info = _onboarding_from_xml(reader, root)
    else:
        raise ValidationError(
            name,
            "unknown top-level element; expected redirect-information or onboarding-information",
        )
    validate(info)
    return info


class _XmlReader:
    """Reads YANG-encoded XML elements strictly: known children only, no mixed content."""

    def __init__(self, scopes: dict[Element, dict[str, str]]) -> None:
        self._scopes = scopes

    def children(
        self, element: Element, path: str, members: tuple[str, ...]
    ) -> dict[str, list[Element]]:
        """The child elements of a container or list entry, grouped by name in document order."""
        strict_xml.refuse_attributes(element, path)
        strict_xml.refuse_text(element.text, path)
        groups: dict[str, list[Element]] = {}
        for child in element:
            namespace, name = strict_xml.split_tag(child.tag)
            if namespace != NAMESPACE or name not in members:
                raise ValidationError(f"{path}/{name}", f"unknown member (namespace {namespace!r})")
            strict_xml.refuse_text(child.tail, path)
            groups.setdefault(name, []).append(child)
        return groups

    def leaf(self, element: Element, path: str) -> str:
        strict_xml.refuse_attributes(element, path)
        if len(element):
            raise ValidationError(path, "a leaf cannot contain elements")
        return element.text or ""

    def single_leaf(self, groups: dict[str, list[Element]], name: str, path: str) -> str | None:
        """The text of leaf `name`, which may appear at most once; None if absent."""
        elements = groups.get(name, [])
        if len(elements) > 1:
            raise ValidationError(f"{path}/{name}", "appears more than once")
        return self.leaf(elements[0], f"{path}/{name}") if elements else None

    def identity(self, element: Element, path: str) -> tuple[str, str]:
        """An identityref value as (namespace, identity name), resolving its prefix in scope."""
        text = self.leaf(element, path)
        prefix, separator, name = text.rpartition(":")
        scope = self._scopes.get(element, {})
        # Without a prefix the default namespace applies (RFC 7950 §9.10.3).
        namespace = scope.get(prefix if separator else "")
        if namespace is None:
            raise ValidationError(path, f"namespace prefix {prefix!r} is not declared")
        return namespace, name


def _redirect_from_xml(reader: _XmlReader, root: Element) -> RedirectInformation:
    groups = reader.children(root, REDIRECT, ("bootstrap-server",))
    servers = []
    for index, entry in enumerate(groups.get("bootstrap-server", []), start=1):
        path = f"{_BOOTSTRAP_SERVER}[{index}]"
        leaves = reader.children(entry, path, _BOOTSTRAP_SERVER_MEMBERS)
        address = reader.single_leaf(leaves, "address", path)
        if address is None:
            raise ValidationError(f"{path}/address", "missing (it is the list key)")
        port_text = reader.single_leaf(leaves, "port", path)
        port = DEFAULT_PORT
        if port_text is not None:
            if not _XML_UNSIGNED.fullmatch(port_text):
                raise ValidationError(f"{path}/port", f"{port_text!r} is not an integer")
            port = int(port_text)
        trust_anchor_text = reader.single_leaf(leaves, "trust-anchor", path)
        trust_anchor = None
        if trust_anchor_text is not None:
            trust_anchor = strict_json.decode_base64(trust_anchor_text, f"{path}/trust-anchor")
        servers.append(BootstrapServer(address=address, port=port, trust_anchor=trust_anchor))
    return RedirectInformation(tuple(servers))


def _onboarding_from_xml(reader: _XmlReader, root: Element) -> OnboardingInformation:
    groups = reader.children(root, ONBOARDING, _ONBOARDING_MEMBERS)
    boot_images = groups.get("boot-image", [])
    if len(boot_images) > 1:
        raise ValidationError(_BOOT_IMAGE, "appears more than once")
    boot_image = _boot_image_from_xml(reader, boot_images[0]) if boot_images else None
    handling = reader.single_leaf(groups, "configuration-handling", ONBOARDING)
    if handling is not None and handling not in CONFIGURATION_HANDLINGS:
        raise ValidationError(
            f"{ONBOARDING}/configuration-handling", f"must be merge or replace, not {handling!r}"
        )
    binaries: dict[str, bytes] = {}
    for name in _BINARY_MEMBERS:
        text = reader.single_leaf(groups, name, ONBOARDING)
        if text is not None:
            binaries[name] = strict_json.decode_base64(text, f"{ONBOARDING}/{name}")
    return OnboardingInformation(
        boot_image=boot_image,
        configuration_handling=handling,  # type: ignore[arg-type]  # checked just above
        pre_configuration_script=binaries.get("pre-configuration-script"),
        configuration=binaries.get("configuration"),
        post_configuration_script=binaries.get("post-configuration-script"),
    )


def _boot_image_from_xml(reader: _XmlReader, element: Element) -> BootImage:
    groups = reader.children(element, _BOOT_IMAGE, _BOOT_IMAGE_MEMBERS)
    uris = tuple(
        reader.leaf(uri, f"{_BOOT_IMAGE}/download-uri[{index}]")
        for index, uri in enumerate(groups.get("download-uri", []), start=1)
    )
    hash_values = []
    for entry in groups.get("image-verification", []):
        leaves = reader.children(entry, _IMAGE_VERIFICATION, _IMAGE_VERIFICATION_MEMBERS)
        algorithms = leaves.get("hash-algorithm", [])
        if len(algorithms) != 1:
            raise ValidationError(
                _HASH_ALGORITHM_PATH, "must appear exactly once (it is the list key)"
            )
        namespace, identity = reader.identity(algorithms[0], _HASH_ALGORITHM_PATH)
        if (namespace, identity) != (NAMESPACE, "sha-256"):
            raise _unknown_hash_algorithm(f"{{{namespace}}}{identity}")
        hash_value = reader.single_leaf(leaves, "hash-value", _IMAGE_VERIFICATION)
        if hash_value is None:
            raise ValidationError(HASH_VALUE_PATH, "missing (it is mandatory)")
        hash_values.append(hash_value)
    return BootImage(
        os_name=reader.single_leaf(groups, "os-name", _BOOT_IMAGE),
        os_version=reader.single_leaf(groups, "os-version", _BOOT_IMAGE),
        download_uris=uris,
        sha256=_single_hash_value(hash_values),
    )

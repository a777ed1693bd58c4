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

Both encodings go through `yang_codec` with this module's schema; this module maps its tree to
and from the dataclasses and adds the rules the schema cannot state (`validate`).

Just over 500 lines: the module's schema, its dataclasses and their rules are one YANG module's
worth, and splitting them would put a node's shape and its checks in different files.
"""

import enum
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlsplit

from ..errors import ValidationError
from . import yang_codec
from .oids import (
    ID_CT_SZTP_CONVEYED_INFO_JSON,
    ID_CT_SZTP_CONVEYED_INFO_XML,
    MEDIA_TYPE_JSON,
    MEDIA_TYPE_XML,
)
from .yang_codec import Container, Document, Leaf, LeafList, List, Tree

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
_BROKEN_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_URI_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


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
    yang_codec.check_text(value, field)


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
    if not yang_codec.URI_CHARACTERS.fullmatch(value) or _BROKEN_PERCENT_ESCAPE.search(value):
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


# --------------------------------------------------------------------------- codecs

_DOCUMENT = Document(
    module=MODULE_NAME,
    namespaces={MODULE_NAME: NAMESPACE},
    path=ROOT,
    roots={
        REDIRECT: Container(
            {
                "bootstrap-server": List(
                    Container(
                        {"address": Leaf.STRING, "port": Leaf.UINT16, "trust-anchor": Leaf.BINARY},
                        key=("address",),
                    )
                )
            }
        ),
        ONBOARDING: Container(
            {
                "boot-image": Container(
                    {
                        "os-name": Leaf.STRING,
                        "os-version": Leaf.STRING,
                        "download-uri": LeafList(Leaf.STRING),
                        # Keyed by hash algorithm, and sha-256 is the only one: one entry.
                        "image-verification": List(
                            Container(
                                {"hash-algorithm": Leaf.IDENTITYREF, "hash-value": Leaf.STRING},
                                mandatory=("hash-value",),
                                key=("hash-algorithm",),
                            ),
                            numbered=False,
                        ),
                    }
                ),
                "configuration-handling": Leaf.STRING,
                "pre-configuration-script": Leaf.BINARY,
                "configuration": Leaf.BINARY,
                "post-configuration-script": Leaf.BINARY,
            }
        ),
    },
    max_size=MAX_DOCUMENT_SIZE,
    max_elements=MAX_XML_ELEMENTS,
    # Paths start at the chosen container, e.g. redirect-information/bootstrap-server[1].
    qualified_paths=False,
    # `<boot-image></boot-image>`: the bytes this module has always written (and signed).
    short_empty_elements=False,
    prefix=XML_PREFIX,
)


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


def encode_json(info: ConveyedInformation) -> bytes:
    """RFC 7951 JSON: schema order, compact, ASCII-only; see the module docstring."""
    validate(info)
    return yang_codec.encode_json(*_to_tree(info), _DOCUMENT)


def decode_json(data: bytes) -> ConveyedInformation:
    """Parse RFC 7951 JSON conveyed information; strict about types and unknown members."""
    return _from_tree(*yang_codec.decode_json(data, _DOCUMENT))


def encode_xml(info: ConveyedInformation) -> bytes:
    """RFC 7950 XML, UTF-8, no declaration, no insignificant whitespace."""
    validate(info)
    return yang_codec.encode_xml(*_to_tree(info), _DOCUMENT)


def decode_xml(data: bytes) -> ConveyedInformation:
    """Parse RFC 7950 XML conveyed information; DTDs and entity declarations are refused."""
    return _from_tree(*yang_codec.decode_xml(data, _DOCUMENT))


def _present(members: dict[str, object]) -> Tree:
    """`members` without the absent (None) ones."""
    return {name: value for name, value in members.items() if value is not None}


def _to_tree(info: ConveyedInformation) -> tuple[str, Tree]:
    """The top-level container's name and content for `info` (already validated)."""
    if isinstance(info, RedirectInformation):
        servers = [
            _present(
                {
                    "address": server.address,
                    "port": server.port,
                    "trust-anchor": server.trust_anchor,
                }
            )
            for server in info.bootstrap_servers
        ]
        return REDIRECT, {"bootstrap-server": servers}
    image = info.boot_image
    boot_image = None
    if image is not None:
        verification = None
        if image.sha256 is not None:
            verification = [
                {"hash-algorithm": SHA_256_IDENTITY, "hash-value": _hex_colon(image.sha256)}
            ]
        boot_image = _present(
            {
                "os-name": image.os_name,
                "os-version": image.os_version,
                "download-uri": list(image.download_uris) or None,
                "image-verification": verification,
            }
        )
    return ONBOARDING, _present(
        {
            "boot-image": boot_image,
            "configuration-handling": info.configuration_handling,
            "pre-configuration-script": info.pre_configuration_script,
            "configuration": info.configuration,
            "post-configuration-script": info.post_configuration_script,
        }
    )


def _from_tree(name: str, tree: Tree) -> ConveyedInformation:
    """The validated information of a decoded top-level container."""
    info: ConveyedInformation
    if name == REDIRECT:
        info = RedirectInformation(
            tuple(
                BootstrapServer(
                    address=entry["address"],
                    port=entry.get("port", DEFAULT_PORT),
                    trust_anchor=entry.get("trust-anchor"),
                )
                for entry in tree.get("bootstrap-server", [])
            )
        )
    else:
        image = tree.get("boot-image")
        info = OnboardingInformation(
            boot_image=None if image is None else _boot_image_from_tree(image),
            configuration_handling=tree.get("configuration-handling"),
            pre_configuration_script=tree.get("pre-configuration-script"),
            configuration=tree.get("configuration"),
            post_configuration_script=tree.get("post-configuration-script"),
        )
    validate(info)
    return info


def _boot_image_from_tree(tree: Tree) -> BootImage:
    verifications = tree.get("image-verification", [])
    for entry in verifications:
        if entry["hash-algorithm"] != SHA_256_IDENTITY:
            raise ValidationError(
                _HASH_ALGORITHM_PATH,
                f"{entry['hash-algorithm']!r} is not a known hash algorithm (only sha-256)",
            )
    # The list is keyed by hash algorithm and sha-256 is the only one, so at most one entry.
    if len(verifications) > 1:
        raise ValidationError(_IMAGE_VERIFICATION, f"duplicate entry for {SHA_256_IDENTITY}")
    sha256 = None
    if verifications:
        sha256 = _parse_hex_string(verifications[0]["hash-value"], HASH_VALUE_PATH)
    return BootImage(
        os_name=tree.get("os-name"),
        os_version=tree.get("os-version"),
        download_uris=tuple(tree.get("download-uri", ())),
        sha256=sha256,
    )

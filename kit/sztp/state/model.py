"""The resource model, declared once: each kind's fields with their type, limits, choices and
defaults, whether they are required or secret, what they refer to, and their help text.

From this table come the fleet file's JSON Schema (`fleet_schema.py`, checked in as
`fleet.schema.json`), the admin API's OpenAPI component schemas, the secret fields every view
hides and the choices and limits the normalisers in `resources.py` enforce. What a table cannot
say — a certificate parses, a key matches its certificate, a voucher names its device — stays
in those normalisers.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from ..passwords import ACTIVATION_CODE_LIMIT, MAX_PASSWORD_LENGTH

TRUST_ANCHOR: Final = "trust-anchor"
OWNER: Final = "owner"
IMAGE: Final = "image"
PROFILE: Final = "profile"
DEVICE: Final = "device"
# Dependency order: a kind may refer only to kinds before it.
KINDS: Final = (TRUST_ANCHOR, OWNER, IMAGE, PROFILE, DEVICE)
DEFAULT_OWNER: Final = "default"
# Each kind's collection: its path in the admin API (/api/v1/trust-anchors) and, with `_` for
# `-`, its section in a fleet file (trust_anchors).
COLLECTIONS: Final[Mapping[str, str]] = {
    TRUST_ANCHOR: "trust-anchors",
    OWNER: "owners",
    IMAGE: "images",
    PROFILE: "profiles",
    DEVICE: "devices",
}
# The name of every resource but a device (whose key is its serial number), and of API tokens.
NAME_PATTERN: Final = "[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
# Serial numbers end up in X.509 serialNumber (PrintableString) and in URLs.
SERIAL_PATTERN: Final = "[A-Za-z0-9][A-Za-z0-9 '()+,\\-./:=?]{0,63}"

# The longest text a field takes unless it says otherwise, and the longest configuration or
# script (they travel inside conveyed information, whose whole document is bounded too).
TEXT_LIMIT: Final = 255
LONG_TEXT_LIMIT: Final = 1024 * 1024
NAME_LIMIT: Final = 64  # what NAME_PATTERN allows
# Template variables: names a template can write as `vars.NAME`, and the most their values
# take as JSON (they are kept with every device of a fleet).
VARIABLE_PATTERN: Final = "[A-Za-z_][A-Za-z0-9_]{0,63}"
VARIABLES_LIMIT: Final = 16 * 1024
MAX_VARIABLES: Final = 64


class FieldType(enum.Enum):
    TEXT = "text"  # a string; in a fleet file also {file: ...} or {env: ...}
    NAME = "name"  # another resource's name (NAME_PATTERN)
    SERIAL = "serial"  # a device's serial number
    CHOICE = "choice"  # one of `choices`
    PORT = "port"  # a TCP port number
    TEXT_LIST = "text-list"  # a list of texts
    ENTRY_LIST = "entry-list"  # a list of objects, each described by `entry`
    VARIABLES = "variables"  # names (VARIABLE_PATTERN) to JSON values, for templates


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    help: str
    required: bool = False
    choices: tuple[str, ...] = ()
    default: str | int | None = None
    limit: int = TEXT_LIMIT
    secret: bool = False
    refers_to: str | None = None
    entry: Entry | None = None
    min_items: int = 0
    item_format: str | None = None  # a JSON Schema format of a list's texts, e.g. "uri"
    # Never stored as given: the server keeps something derived (a password's hash).
    write_only: bool = False

    @property
    def max_length(self) -> int:
        return NAME_LIMIT if self.type is FieldType.NAME else self.limit


@dataclass(frozen=True)
class Entry:
    """An object: a resource's spec, or an entry of a list inside one."""

    schema_name: str  # its name among the JSON Schema's $defs and OpenAPI's components
    fields: tuple[Field, ...]

    def field(self, name: str) -> Field:
        found = self._by_name.get(name)
        if found is None:
            raise LookupError(f"the model declares no field {name!r} in {self.schema_name}")
        return found

    @cached_property
    def _by_name(self) -> dict[str, Field]:
        return {field.name: field for field in self.fields}

    @cached_property
    def text_limits(self) -> dict[str, tuple[bool, int]]:
        """(required, max_length) of each field by name: read for every text field of every
        spec normalised, a million devices at a time."""
        return {field.name: (field.required, field.max_length) for field in self.fields}


@dataclass(frozen=True)
class Kind:
    kind: str
    help: str
    key: str  # the field that names a resource in a fleet file: "name", or "serial"
    entry: Entry

    @property
    def collection(self) -> str:
        return COLLECTIONS[self.kind]

    @property
    def section(self) -> str:
        return self.collection.replace("-", "_")


_BOOTSTRAP_SERVER = Entry(
    "bootstrap_server",
    (
        Field("address", FieldType.TEXT, "Host name or IP address.", required=True),
        Field("port", FieldType.PORT, "TCP port (default 443).", default=443),
        Field(
            "trust_anchor",
            FieldType.TEXT,
            "PEM CA certificate(s) for the server's TLS certificate.",
            limit=LONG_TEXT_LIMIT,
        ),
    ),
)
_SELECTION_RULE = Entry(
    "selection_rule",
    (
        Field("hw_model", FieldType.TEXT, "Match the device's hardware model."),
        Field("os_name", FieldType.TEXT, "Match the OS the device runs."),
        Field("os_version", FieldType.TEXT, "Match the OS version the device runs."),
        Field(
            "profile",
            FieldType.NAME,
            "The profile for a device that matches.",
            required=True,
            refers_to=PROFILE,
        ),
    ),
)

MODEL: Final[Mapping[str, Kind]] = {
    kind.kind: kind
    for kind in (
        Kind(
            TRUST_ANCHOR,
            "Manufacturer CAs that issue device IDevIDs.",
            "name",
            Entry(
                "trust_anchor",
                (
                    Field(
                        "certificates",
                        FieldType.TEXT,
                        "PEM CA certificate(s).",
                        required=True,
                        limit=LONG_TEXT_LIMIT,
                    ),
                    Field(
                        "serial_pattern",
                        FieldType.TEXT,
                        "Regular expression with a (?P<serial>...) group that extracts the "
                        "serial number from the IDevID subject.",
                    ),
                ),
            ),
        ),
        Kind(
            OWNER,
            "Several owners; profiles choose one with `owner`.",
            "name",
            Entry(
                "owner",
                (
                    Field(
                        "certificate_chain",
                        FieldType.TEXT,
                        "PEM owner certificate followed by its issuers.",
                        required=True,
                        limit=LONG_TEXT_LIMIT,
                    ),
                    Field(
                        "private_key",
                        FieldType.TEXT,
                        "PEM private key of the owner certificate, or a PKCS#11 URI "
                        "(pkcs11:token=...;object=...) of the key in a token the server reaches "
                        "(its pkcs11_module); omit it when devices get artifacts signed offline "
                        "(their `presigned` field).",
                        limit=64 * 1024,
                        secret=True,
                    ),
                ),
            ),
        ),
        Kind(
            IMAGE,
            "Boot images.",
            "name",
            Entry(
                "image",
                (
                    Field(
                        "os_name",
                        FieldType.TEXT,
                        "OS name, as the device reports it.",
                        required=True,
                    ),
                    Field(
                        "os_version",
                        FieldType.TEXT,
                        'OS version (quote numbers: "2.0").',
                        required=True,
                    ),
                    Field(
                        "download_uris",
                        FieldType.TEXT_LIST,
                        "Where devices download the image.",
                        required=True,
                        min_items=1,
                        item_format="uri",
                    ),
                    Field(
                        "sha256",
                        FieldType.TEXT,
                        "SHA-256 of the image, hex; {file: image} hashes the file.",
                        required=True,
                    ),
                ),
            ),
        ),
        Kind(
            PROFILE,
            "What a device receives: onboarding or redirect.",
            "name",
            Entry(
                "profile",
                (
                    Field(
                        "type",
                        FieldType.CHOICE,
                        "Onboarding information, or a redirect to other bootstrap servers.",
                        required=True,
                        choices=("onboarding", "redirect"),
                    ),
                    Field(
                        "signing",
                        FieldType.CHOICE,
                        "Sign conveyed information always, or only when the device asks "
                        "(default required).",
                        choices=("required", "when-requested"),
                        default="required",
                    ),
                    Field(
                        "owner",
                        FieldType.NAME,
                        "Owner that signs (default 'default').",
                        refers_to=OWNER,
                        default=DEFAULT_OWNER,
                    ),
                    Field(
                        "encoding",
                        FieldType.CHOICE,
                        "Encoding of the conveyed information (default json).",
                        choices=("json", "xml"),
                        default="json",
                    ),
                    Field(
                        "reporting_level",
                        FieldType.CHOICE,
                        "Progress reporting level asked of the device.",
                        choices=("minimal", "verbose"),
                    ),
                    Field("image", FieldType.NAME, "Boot image (onboarding).", refers_to=IMAGE),
                    Field(
                        "templating",
                        FieldType.CHOICE,
                        "jinja2: the configuration and scripts are templates rendered for "
                        "each device in a sandbox (default none: sent as written).",
                        choices=("none", "jinja2"),
                        default="none",
                    ),
                    Field(
                        "vars",
                        FieldType.VARIABLES,
                        "Template variables every device of the profile gets; a device's own "
                        "`vars` override them.",
                        limit=VARIABLES_LIMIT,
                    ),
                    Field(
                        "ldevid_issuer",
                        FieldType.TEXT,
                        "The server's LDevID issuer (its `ldevid_issuers`) that certifies a key "
                        "each device makes (RFC 9646); the certificate reaches the device in "
                        "its templated configuration as `ldevid.certificate`.",
                    ),
                    Field(
                        "ldevid_keys",
                        FieldType.TEXT_LIST,
                        "Key algorithms a device may make its LDevID key with, in order of "
                        "preference (default ec-p256, ec-p384, rsa).",
                    ),
                    Field(
                        "configuration",
                        FieldType.TEXT,
                        "Configuration (onboarding).",
                        limit=LONG_TEXT_LIMIT,
                    ),
                    Field(
                        "configuration_handling",
                        FieldType.CHOICE,
                        "How the device applies the configuration (default merge).",
                        choices=("merge", "replace"),
                    ),
                    Field(
                        "pre_configuration_script",
                        FieldType.TEXT,
                        "Script run before the configuration (onboarding).",
                        limit=LONG_TEXT_LIMIT,
                    ),
                    Field(
                        "post_configuration_script",
                        FieldType.TEXT,
                        "Script run after the configuration (onboarding).",
                        limit=LONG_TEXT_LIMIT,
                    ),
                    Field(
                        "bootstrap_servers",
                        FieldType.ENTRY_LIST,
                        "Where to redirect the device (redirect).",
                        entry=_BOOTSTRAP_SERVER,
                    ),
                ),
            ),
        ),
        Kind(
            DEVICE,
            "Devices by serial number.",
            "serial",
            Entry(
                "device",
                (
                    Field(
                        "profile", FieldType.NAME, "Profile sent to the device.", refers_to=PROFILE
                    ),
                    Field(
                        "selection",
                        FieldType.ENTRY_LIST,
                        "Profiles chosen by what the device reports; the first match wins.",
                        entry=_SELECTION_RULE,
                    ),
                    Field("model", FieldType.TEXT, "Hardware model."),
                    Field(
                        "site",
                        FieldType.TEXT,
                        "Where the device is installed: devices are counted and found by site.",
                    ),
                    Field("mac", FieldType.TEXT, "MAC address."),
                    Field("duid", FieldType.TEXT, "DHCPv6 DUID, hex."),
                    Field(
                        "vars",
                        FieldType.VARIABLES,
                        "This device's template variables (over its profile's): visible to "
                        "admins, so never a secret.",
                        limit=VARIABLES_LIMIT,
                    ),
                    Field(
                        "password",
                        FieldType.TEXT,
                        "HTTP Basic password; stored hashed.",
                        limit=MAX_PASSWORD_LENGTH,
                        secret=True,
                        write_only=True,
                    ),
                    Field(
                        "activation_code",
                        FieldType.TEXT,
                        "HTTP Basic activation code, machine-generated (at least 160 random "
                        "bits): checked in microseconds where a password takes a slow hash; "
                        "stored hashed.",
                        limit=ACTIVATION_CODE_LIMIT,
                        secret=True,
                        write_only=True,
                    ),
                    Field(
                        "password_hash",
                        FieldType.TEXT,
                        'Stored hash of the password or activation code; "<hidden>" keeps the '
                        "stored one.",
                        limit=512,
                        secret=True,
                    ),
                    Field(
                        "voucher",
                        FieldType.TEXT,
                        "Ownership voucher: base64, or {file: voucher.vcj}.",
                        limit=LONG_TEXT_LIMIT,
                    ),
                    Field(
                        "presigned",
                        FieldType.TEXT,
                        "Bootstrapping data signed offline: the RPC output JSON of `sztpctl "
                        "bootstrap-data sign`, usually {file: SN.json}. Served as-is; the owner "
                        "key stays offline.",
                        limit=4 * LONG_TEXT_LIMIT,
                    ),
                ),
            ),
        ),
    )
}


def field(kind: str, name: str) -> Field:
    """The declared field `name` of `kind`."""
    return MODEL[kind].entry.field(name)


def secret_fields(kind: str) -> tuple[str, ...]:
    return tuple(item.name for item in MODEL[kind].entry.fields if item.secret)


# The fields that hold a secret, per kind: written by clients, never shown back (a device's
# `password` or `activation_code` is stored only as its `password_hash`).
SECRET_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    kind: secret_fields(kind) for kind in KINDS if secret_fields(kind)
}
# The secret each kind stores: shown as HIDDEN, and HIDDEN in a write keeps the stored value.
STORED_SECRET: Final[Mapping[str, str]] = {
    kind: item.name
    for kind in KINDS
    for item in MODEL[kind].entry.fields
    if item.secret and not item.write_only
}


def _referred_kinds(entry: Entry) -> set[str]:
    kinds: set[str] = set()
    for item in entry.fields:
        if item.refers_to is not None:
            kinds.add(item.refers_to)
        if item.entry is not None:
            kinds |= _referred_kinds(item.entry)
    return kinds


# The kinds some field of some resource names: a write that deletes none of them cannot leave
# a reference dangling, and changing resources of no such kind changes no other resource's.
REFERRED_KINDS: Final[frozenset[str]] = frozenset(
    kind for resource in MODEL.values() for kind in _referred_kinds(resource.entry)
)

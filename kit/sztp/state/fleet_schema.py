"""The fleet file's JSON Schema (draft 2020-12), rendered from the declared model.

The loader reads the checked-in `fleet.schema.json` (published for editors and pipelines);
`python -m sztp.state.fleet_schema` writes it again, and a test fails when the two differ.
The `dhcp` and `dns` sections are not resource kinds and are declared here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .model import (
    MAX_VARIABLES,
    MODEL,
    NAME_PATTERN,
    OWNER,
    SERIAL_PATTERN,
    VARIABLE_PATTERN,
    Entry,
    Field,
    FieldType,
)

SCHEMA_FILE = Path(__file__).with_name("fleet.schema.json")

_TEXT = {"$ref": "#/$defs/text"}
_OPTIONAL_TEXT = {"$ref": "#/$defs/optional_text"}
_NAME = {"$ref": "#/$defs/name"}
_OPTIONAL_NAME = {"$ref": "#/$defs/optional_name"}

# Values a fleet file may give instead of a text: a file's content or a variable's value.
_COMMON_DEFS: dict[str, Any] = {
    "reference": {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {
            "file": {
                "description": "Path relative to the fleet file, or a list of paths to "
                "concatenate.",
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                ],
            },
            "env": {
                "type": "string",
                "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                "description": "Environment variable holding the value.",
            },
        },
    },
    "text": {
        "type": ["string", "object"],
        "if": {"type": "object"},
        "then": {"$ref": "#/$defs/reference"},
    },
    "optional_text": {
        "type": ["string", "object", "null"],
        "if": {"type": "object"},
        "then": {"$ref": "#/$defs/reference"},
    },
    "name": {
        "type": "string",
        "pattern": f"^{NAME_PATTERN}$",
        "description": "1-64 letters, digits, '.', '_' or '-'.",
    },
    "optional_name": {"type": ["string", "null"], "pattern": f"^{NAME_PATTERN}$"},
}

_BOOTSTRAP_URIS: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "string", "minLength": 1},
    "description": "Bootstrap-server URIs, https://host[:port].",
}


def _uris(description: str) -> dict[str, Any]:
    return {"$ref": "#/$defs/bootstrap_uris", "description": description}


_DHCP: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "encoding": {
            "enum": ["rfc8572", "legacy-text", None],
            "description": "Option encoding: rfc8572 (default) or legacy-text (one plain URI, "
            "NOT RFC 8572 conformant; some lab agents only).",
        },
        "bootstrap_uris": {"$ref": "#/$defs/bootstrap_uris"},
        "subnets": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["subnet"],
                "properties": {
                    "subnet": {
                        "type": "string",
                        "description": "IPv4 or IPv6 prefix, e.g. 10.0.0.0/24.",
                    },
                    "bootstrap_uris": _uris("URIs for this subnet (default: the global list)."),
                },
            },
        },
        "reservations": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "mac": {"type": "string", "description": "Client MAC address."},
                    "client_id": {
                        "type": "string",
                        "description": "DHCPv4 client identifier, hex.",
                    },
                    "duid": {"type": "string", "description": "DHCPv6 DUID, hex."},
                    "bootstrap_uris": _uris("URIs for this client (default: the global list)."),
                },
            },
            "description": "One client each, by exactly one of mac, client_id or duid.",
        },
    },
}


_DOMAIN: dict[str, Any] = {"type": "string", "minLength": 1, "description": "A domain name."}
_DNS_NUMBER: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 65535}
_DNS: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["bootstrap_servers"],
    "properties": {
        "domain": {
            **_DOMAIN,
            "description": "The domain the devices search: records go under it.",
        },
        "domains": {
            "type": "array",
            "minItems": 1,
            "items": _DOMAIN,
            "description": "Several domains, each given the same records (instead of domain).",
        },
        "ttl": {
            "type": "integer",
            "minimum": 0,
            "maximum": 2**31 - 1,
            "description": "TTL of every record, seconds (default 300).",
        },
        "bootstrap_servers": {
            "type": "array",
            "minItems": 1,
            "description": "SRV records at _sztp._tcp.<domain>, and the servers of the "
            "devices' redirect information (in order of priority).",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["host"],
                "properties": {
                    "host": {"type": "string", "description": "Host name (not an address)."},
                    "port": {**_DNS_NUMBER, "minimum": 1, "description": "Default 443."},
                    "priority": {**_DNS_NUMBER, "description": "Lower first (default 0)."},
                    "weight": {
                        **_DNS_NUMBER,
                        "description": "Share within a priority (default 0).",
                    },
                    "trust_anchor": {
                        **_TEXT,
                        "description": "PEM CA certificate(s) of the server's TLS certificate, "
                        "in signed redirect information.",
                    },
                    "addresses": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"type": "string"},
                        "description": "IPv4/IPv6 addresses of a .local host: its A/AAAA "
                        "records in the mDNS records (sztpctl dns render --format mdns).",
                    },
                },
            },
        },
        "device_records": {
            "type": "object",
            "additionalProperties": False,
            "description": "TXT records at <serial>._sztp.<domain>: redirect information per "
            "device.",
            "properties": {
                "devices": {
                    "description": "all (default), a list of serials, or {profile: NAME}.",
                    "anyOf": [
                        {"const": "all"},
                        {"type": "array", "items": {"type": "string"}},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["profile"],
                            "properties": {"profile": _NAME},
                        },
                    ],
                },
                "signed": {
                    "type": "boolean",
                    "description": "Signed by the owner of the device's profile, with its "
                    "certificate and the device's voucher (default true); false: unsigned.",
                },
            },
        },
    },
}


def fleet_schema() -> dict[str, Any]:
    definitions: dict[str, Any] = dict(_COMMON_DEFS)
    sections: dict[str, Any] = {}
    for kind in MODEL.values():
        _define(kind.entry, definitions, key=kind.key)
        entries: dict[str, Any] = {"$ref": f"#/$defs/{kind.entry.schema_name}"}
        if kind.kind == OWNER:
            sections["owner"] = {
                "$ref": "#/$defs/owner",
                "description": "The owner (named 'default' unless `name` says otherwise).",
            }
            entries = {"allOf": [entries, {"required": ["name"]}]}
        sections[kind.section] = {"type": "array", "description": kind.help, "items": entries}
    definitions["bootstrap_uris"] = _BOOTSTRAP_URIS
    definitions["dhcp"] = _DHCP
    sections["dhcp"] = {
        "$ref": "#/$defs/dhcp",
        "description": "DHCP discovery (option 143 / 136): bootstrap-server URIs globally, per "
        "subnet and per reservation; rendered by sztpctl dhcp render.",
    }
    definitions["dns"] = _DNS
    sections["dns"] = {
        "$ref": "#/$defs/dns",
        "description": "DNS discovery (RFC 8572 §4.2): SRV records for the bootstrap servers "
        "and TXT records per device; rendered by sztpctl dns render.",
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sztp fleet file",
        "description": "Desired state for sztpctl apply/diff: trust anchors, owner, images, "
        "profiles, devices, DHCP and DNS. Any text field may be given as {file: path} (relative to "
        "the fleet file; a list of paths is concatenated) or {env: VARIABLE}. For `voucher` the "
        "file's bytes are base64-encoded; for `sha256` the file is hashed.",
        "type": "object",
        "additionalProperties": False,
        "not": {"required": ["owner", "owners"]},
        "properties": sections,
        "$defs": definitions,
    }


def _define(entry: Entry, definitions: dict[str, Any], *, key: str | None = None) -> None:
    """Add `entry` (and the entries of its lists) to `definitions`."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    if key == "serial":
        properties["serial"] = {
            "type": "string",
            "pattern": f"^{SERIAL_PATTERN}$",
            "description": "Serial number, as in the IDevID certificate.",
        }
    elif key is not None:
        properties[key] = _NAME
    # An owner's name has a default; every other key is required.
    if key is not None and entry.schema_name != "owner":
        required.append(key)
    for field in entry.fields:
        if field.entry is not None:
            _define(field.entry, definitions)
        properties[field.name] = _property(field)
        if field.required:
            required.append(field.name)
    definitions[entry.schema_name] = {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


def variables_schema() -> dict[str, Any]:
    """Template variables: names a template can write as `vars.NAME`, any JSON values."""
    return {
        "type": ["object", "null"],
        "maxProperties": MAX_VARIABLES,
        "propertyNames": {"pattern": f"^{VARIABLE_PATTERN}$"},
    }


def _property(field: Field) -> dict[str, Any]:
    if field.type is FieldType.TEXT:
        shape: dict[str, Any] = dict(_TEXT if field.required else _OPTIONAL_TEXT)
    elif field.type is FieldType.NAME:
        shape = dict(_NAME if field.required else _OPTIONAL_NAME)
    elif field.type is FieldType.CHOICE:
        shape = {"enum": [*field.choices, *([] if field.required else [None])]}
    elif field.type is FieldType.PORT:
        shape = {"type": ["integer", "null"], "minimum": 1, "maximum": 65535}
    elif field.type is FieldType.TEXT_LIST:
        shape = {"type": "array", "minItems": field.min_items, "items": _TEXT}
    elif field.type is FieldType.ENTRY_LIST and field.entry is not None:
        shape = {"type": ["array", "null"], "items": {"$ref": f"#/$defs/{field.entry.schema_name}"}}
    elif field.type is FieldType.VARIABLES:
        shape = variables_schema()
    else:
        raise AssertionError(f"no schema for {field}")
    # A secret belongs in the environment or a file of its own, not in the fleet file.
    secret = " A secret: give it as {env: VARIABLE} or {file: path}." if field.secret else ""
    shape["description"] = field.help + secret
    return shape


def render() -> str:
    return json.dumps(fleet_schema(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {SCHEMA_FILE}\n")

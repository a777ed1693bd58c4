"""The component schemas of the admin API's OpenAPI document.

The spec schemas are rendered from the kit's resource model (`sztp.state.model`): the same
fields, types, limits, choices and help the fleet file's schema and the normalisers use. They
are a guide for clients and for contract tests; `normalize_spec` stays the authority (it also
checks what JSON Schema cannot: certificates, vouchers, references).
"""

from __future__ import annotations

from typing import Any

from sztp.current_ldevid import CURRENT_LDEVID_FIELDS, CURRENT_LDEVID_TIMES
from sztp.state import model
from sztp.state.fleet_schema import variables_schema
from sztp.state.model import KINDS, MODEL, Entry, Field, FieldType

from ..errors import ERROR_CODES, INTERNAL_ERROR

Schema = dict[str, Any]

NAME_PATTERN = f"^{model.NAME_PATTERN}$"
SERIAL_PATTERN = f"^{model.SERIAL_PATTERN}$"
ERROR_CODE_NAMES = [*ERROR_CODES.values(), INTERNAL_ERROR]


def spec_schema_name(kind: str) -> str:
    """`TrustAnchorSpec` for `trust-anchor`."""
    return "".join(part.capitalize() for part in kind.split("-")) + "Spec"


# Each kind's collection (its path segment) and the name of its spec schema.
COLLECTIONS = {kind: (model.COLLECTIONS[kind], spec_schema_name(kind)) for kind in KINDS}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def entry_schema(entry: Entry) -> Schema:
    schema: Schema = {
        "type": "object",
        "properties": {field.name: _field_schema(field) for field in entry.fields},
        "additionalProperties": False,
    }
    required = [field.name for field in entry.fields if field.required]
    if required:
        schema["required"] = required
    return schema


def _field_schema(field: Field) -> Schema:
    nullable: list[str] = [] if field.required else ["null"]
    if field.type in (FieldType.TEXT, FieldType.NAME):
        schema: Schema = {"type": ["string", *nullable], "maxLength": field.max_length}
        if field.type is FieldType.NAME:
            schema["pattern"] = NAME_PATTERN
    elif field.type is FieldType.CHOICE:
        schema = {"type": ["string", *nullable], "enum": [*field.choices]}
        if nullable:
            schema["enum"].append(None)
    elif field.type is FieldType.PORT:
        schema = {"type": ["integer", "null"], "minimum": 1, "maximum": 65535}
    elif field.type is FieldType.TEXT_LIST:
        item: Schema = {"type": "string"}
        if field.item_format:
            item["format"] = field.item_format
        schema = {"type": ["array", *nullable], "items": item}
        if field.min_items:
            schema["minItems"] = field.min_items
    elif field.type is FieldType.ENTRY_LIST and field.entry is not None:
        schema = {"type": ["array", *nullable], "items": entry_schema(field.entry)}
    elif field.type is FieldType.VARIABLES:
        schema = variables_schema()
    else:
        raise AssertionError(f"no schema for {field}")
    if len(schema["type"]) == 1:
        schema["type"] = schema["type"][0]
    secret = " Secret: write-only, shown as <hidden>." if field.secret else ""
    schema["description"] = field.help + secret
    if field.default is not None:
        schema["default"] = field.default
    return schema


def schemas() -> dict[str, Schema]:
    moment = {"type": "string", "format": "date-time"}
    report = {
        "type": "object",
        "required": ["id", "serial", "received_at", "progress_type", "attempt", "truncated"],
        "properties": {
            "id": {"type": "integer", "description": "Grows with arrival; a page cursor"},
            "serial": {"type": "string"},
            "received_at": moment,
            "progress_type": {"type": "string"},
            "message": {"type": ["string", "null"]},
            "source_address": {"type": ["string", "null"]},
            "attempt": {"type": "integer"},
            "ssh_host_keys": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "algorithm": {"type": "string"},
                        "key_data": {"type": "string"},
                    },
                },
            },
            "truncated": {
                "type": "boolean",
                "description": "The server cut the message or left out keys or trust anchors",
            },
        },
    }
    public_spec = {"type": "object", "description": "A spec with secrets shown as <hidden>"}
    schemas: dict[str, Schema] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": ERROR_CODE_NAMES},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                }
            },
        },
        "Report": report,
        "CurrentLdevid": _current_ldevid(),
        "Change": {
            "type": "object",
            "required": ["action", "kind", "name", "before", "after"],
            "properties": {
                "action": {"type": "string", "enum": ["create", "update", "delete"]},
                "kind": {"type": "string", "enum": list(KINDS)},
                "name": {"type": "string"},
                "before": {"type": ["object", "null"]},
                "after": {"type": ["object", "null"]},
            },
        },
        "ChangeSummary": {
            "type": "object",
            "description": "A change without its bodies (plan=summary)",
            "required": ["action", "kind", "name", "fields"],
            "properties": {
                "action": {"type": "string", "enum": ["create", "update", "delete"]},
                "kind": {"type": "string", "enum": list(KINDS)},
                "name": {"type": "string"},
                "fields": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "In spec order: the fields a create sets, an update "
                    "changes (a changed secret by name only) or a delete removes",
                },
                "before": {
                    "type": "object",
                    "description": "Updates only: the old values of the changed fields",
                },
                "after": {
                    "type": "object",
                    "description": "Updates only: the new values of the changed fields",
                },
            },
        },
        "PlanResult": {
            "type": "object",
            "required": ["revision", "dry_run", "changes"],
            "properties": {
                "revision": {"type": "integer"},
                "dry_run": {"type": "boolean"},
                "changes": {
                    "type": "array",
                    "items": {"anyOf": [ref("Change"), ref("ChangeSummary")]},
                },
            },
        },
        "State": {
            "type": "object",
            "required": ["revision", "resources"],
            "properties": {
                "revision": {"type": "integer"},
                "resources": {
                    "type": "object",
                    "properties": {
                        kind: {"type": "object", "additionalProperties": public_spec}
                        for kind in KINDS
                    },
                },
            },
        },
        "DesiredState": {
            "type": "object",
            "required": ["resources"],
            "additionalProperties": False,
            "properties": {
                "resources": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        kind: {"type": "object", "additionalProperties": ref(schema)}
                        for kind, (_, schema) in COLLECTIONS.items()
                    },
                },
                "prune": {"type": "boolean", "default": False},
                "kinds": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(KINDS)},
                    "description": "Scope of plan and prune; default: the kinds in resources",
                },
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "state", "actor", "progress", "status", "result", "error"],
            "properties": {
                "id": {"type": "string"},
                "state": {"type": "string", "enum": ["running", "succeeded", "failed"]},
                "actor": {"type": "string", "description": "The token that started it"},
                "progress": {
                    "type": "object",
                    "required": ["done", "total"],
                    "properties": {
                        "done": {"type": "integer", "description": "Specs checked so far"},
                        "total": {"type": "integer"},
                    },
                },
                "status": {
                    "type": ["integer", "null"],
                    "description": "Once ended: the HTTP status the write would have answered",
                },
                "result": {"anyOf": [ref("PlanResult"), {"type": "null"}]},
                "error": {
                    "type": ["object", "null"],
                    "description": "Once failed: {code, message, field}, as in an error answer",
                },
            },
        },
        "Token": {
            "type": "object",
            "required": ["name", "role", "created_at"],
            "properties": {
                "name": {"type": "string"},
                "role": {"type": "string", "enum": ["admin", "read-only"]},
                "created_at": moment,
            },
        },
    }
    for kind, (_, spec_schema) in COLLECTIONS.items():
        schemas[spec_schema] = entry_schema(MODEL[kind].entry)
        schemas[resource_schema(spec_schema)] = {
            "type": "object",
            "required": ["name", "spec", "revision", "created_at", "updated_at"],
            "properties": {
                "name": {"type": "string"},
                "spec": ref(spec_schema),
                "revision": {"type": "integer"},
                "created_at": moment,
                "updated_at": moment,
            },
            "description": f"A stored {kind}",
        }
    return schemas


def _current_ldevid() -> Schema:
    """Rendered from the kit's declaration, as the listing and the inventory plugin show it."""
    properties: dict[str, Schema] = {}
    for name, meaning in CURRENT_LDEVID_FIELDS.items():
        properties[name] = {"type": "string", "description": meaning}
        if name in CURRENT_LDEVID_TIMES:
            properties[name]["format"] = "date-time"
    return {
        "type": "object",
        "description": "A device's current LDevID (RFC 9646): the newest certificate issued to "
        "it, while that one is neither revoked nor expired",
        "required": list(CURRENT_LDEVID_FIELDS),
        "properties": properties,
    }


def resource_schema(spec_schema: str) -> str:
    return spec_schema.removesuffix("Spec")

"""The OpenAPI 3.1 document of the admin API (served at `GET /api/v1/openapi.json`).

The spec schemas mirror `sztpctl.state.resources`: the same fields, types and length limits.
They are a guide for clients and for contract tests; `normalize_spec` stays the authority
(it also checks what JSON Schema cannot: certificates, vouchers, references).
"""

from __future__ import annotations

from typing import Any

from sztpctl.progress import MAX_PROGRESS_PAGE
from sztpctl.state.resources import KINDS

from . import __version__
from .report_limits import DEFAULT_PROGRESS_LIMIT
from .store.base import AUDIT_MAX_AGE_DAYS

Schema = dict[str, Any]

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SERIAL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 '()+,\-./:=?]{0,63}$"
_MAX_TEXT = 1024 * 1024
_ERROR_CODES = [
    "bad-request",
    "unauthorized",
    "forbidden",
    "not-found",
    "method-not-allowed",
    "conflict",
    "precondition-failed",
    "payload-too-large",
    "unsupported-media-type",
    "validation-error",
    "unavailable",
    "internal-error",
]
_STATUSES = ["not-seen", "in-progress", "rebooting", "complete", "failed", "stalled"]
_DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    204: "Done, no content",
    400: "Malformed request (JSON syntax, a member name given twice, query parameter)",
    401: "Missing or invalid API token",
    403: "The token's role does not allow this",
    404: "No such resource",
    409: "Conflicts with the stored state (exists, still referenced, concurrent change)",
    412: "If-Match names another revision of the state",
    413: "Body too large",
    415: "Wrong Content-Type",
    422: "The content is invalid; `field` names the offending field",
    503: "The state store is unavailable",
}
_COLLECTIONS = {
    "trust-anchor": ("trust-anchors", "TrustAnchorSpec"),
    "owner": ("owners", "OwnerSpec"),
    "image": ("images", "ImageSpec"),
    "profile": ("profiles", "ProfileSpec"),
    "device": ("devices", "DeviceSpec"),
}


def openapi_document() -> dict[str, Any]:
    """The whole document; built on each call, so callers may modify their copy."""
    paths: dict[str, Any] = {
        "/healthz": {"get": _health()},
        "/api/v1/openapi.json": {"get": _openapi()},
        "/api/v1/state": {"get": _get_state(), "post": _post_state()},
        "/api/v1/status": {"get": _fleet_status()},
        "/api/v1/audit": {"get": _audit()},
        "/api/v1/audit/prune": {"post": _prune_audit()},
        "/api/v1/tokens": {"get": _list_tokens(), "post": _create_token()},
        "/api/v1/tokens/{name}": {"delete": _delete_token()},
    }
    for kind in KINDS:
        collection, spec_schema = _COLLECTIONS[kind]
        paths[f"/api/v1/{collection}"] = {
            "get": _list_resources(kind, collection, spec_schema),
            "post": _create_resource(kind, collection, spec_schema),
        }
        paths[f"/api/v1/{collection}/{{name}}"] = {
            "get": _get_resource(kind, collection, spec_schema),
            "put": _put_resource(kind, collection, spec_schema),
            "delete": _delete_resource(kind, collection),
        }
    paths["/api/v1/devices/{name}/voucher"] = {"put": _put_voucher(), "delete": _delete_voucher()}
    paths["/api/v1/devices/{name}/status"] = {"get": _device_status()}
    paths["/api/v1/devices/{name}/progress"] = {"get": _device_progress()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sztp-server admin API",
            "version": __version__,
            "description": (
                "Manage the resources of an RFC 8572 bootstrap server. Secrets (owner "
                'private_key, device password_hash) are shown as "<hidden>"; sending '
                '"<hidden>" back keeps the stored value. The ETag is the revision of the '
                "whole state; every write accepts If-Match."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
            "parameters": {
                "IfMatch": {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": 'The state revision the write expects, e.g. "42".',
                    "schema": {"type": "string"},
                }
            },
        },
    }


# ---- schemas


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(limit: int = 255, *, nullable: bool = True) -> Schema:
    return {"type": ["string", "null"] if nullable else "string", "maxLength": limit}


def _choice(*values: str) -> Schema:
    return {"type": ["string", "null"], "enum": [*values, None]}


def _reference() -> Schema:
    return {"type": ["string", "null"], "maxLength": 64}


def _spec(properties: Schema, required: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _schemas() -> dict[str, Schema]:
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
                        "code": {"type": "string", "enum": _ERROR_CODES},
                        "message": {"type": "string"},
                        "field": {"type": "string"},
                    },
                }
            },
        },
        "TrustAnchorSpec": _spec(
            {
                "certificates": {
                    "type": "string",
                    "maxLength": _MAX_TEXT,
                    "description": "PEM CA certificates (manufacturer IDevID issuers)",
                },
                "serial_pattern": {
                    **_text(),
                    "description": "Regex with a (?P<serial>...) group over the subject",
                },
            },
            ["certificates"],
        ),
        "OwnerSpec": _spec(
            {
                "certificate_chain": {
                    "type": "string",
                    "maxLength": _MAX_TEXT,
                    "description": "PEM owner certificate first, then its issuers",
                },
                "private_key": {
                    **_text(64 * 1024),
                    "description": "PEM key of the owner certificate; write-only",
                },
            },
            ["certificate_chain"],
        ),
        "ImageSpec": _spec(
            {
                "os_name": _text(nullable=False),
                "os_version": _text(nullable=False),
                "download_uris": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "format": "uri"},
                },
                "sha256": {"type": "string", "maxLength": 255},
            },
            ["os_name", "os_version", "download_uris", "sha256"],
        ),
        "ProfileSpec": _spec(
            {
                "type": {"type": "string", "enum": ["onboarding", "redirect"]},
                "signing": _choice("required", "when-requested"),
                "owner": _reference(),
                "encoding": _choice("json", "xml"),
                "reporting_level": _choice("minimal", "verbose"),
                "image": _reference(),
                "configuration": _text(_MAX_TEXT),
                "configuration_handling": _choice("merge", "replace"),
                "pre_configuration_script": _text(_MAX_TEXT),
                "post_configuration_script": _text(_MAX_TEXT),
                "bootstrap_servers": {
                    "type": ["array", "null"],
                    "items": _spec(
                        {
                            "address": _text(nullable=False),
                            "port": {"type": ["integer", "null"]},
                            "trust_anchor": _text(_MAX_TEXT),
                        },
                        ["address"],
                    ),
                },
            },
            ["type"],
        ),
        "DeviceSpec": _spec(
            {
                "profile": _reference(),
                "selection": {
                    "type": ["array", "null"],
                    "items": _spec(
                        {
                            "hw_model": _text(),
                            "os_name": _text(),
                            "os_version": _text(),
                            "profile": {"type": "string", "maxLength": 64},
                        },
                        ["profile"],
                    ),
                },
                "model": _text(),
                "mac": _text(),
                "duid": _text(),
                "password": {**_text(1024), "description": "HTTP Basic password; write-only"},
                "password_hash": {**_text(512), "description": "scrypt hash; shown as <hidden>"},
                "voucher": {**_text(_MAX_TEXT), "description": "Base64 signed voucher (CMS)"},
                "presigned": {
                    **_text(4 * _MAX_TEXT),
                    "description": "get-bootstrapping-data output signed offline (RPC output "
                    "JSON from `sztpctl bootstrap-data sign`); served as-is",
                },
            }
        ),
        "Report": report,
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
                    "items": {"anyOf": [_ref("Change"), _ref("ChangeSummary")]},
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
                        kind: {"type": "object", "additionalProperties": _ref(schema)}
                        for kind, (_, schema) in _COLLECTIONS.items()
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
    for kind, (_, spec_schema) in _COLLECTIONS.items():
        schemas[_resource_schema(spec_schema)] = {
            "type": "object",
            "required": ["name", "spec", "revision", "created_at", "updated_at"],
            "properties": {
                "name": {"type": "string"},
                "spec": _ref(spec_schema),
                "revision": {"type": "integer"},
                "created_at": moment,
                "updated_at": moment,
            },
            "description": f"A stored {kind}",
        }
    return schemas


def _resource_schema(spec_schema: str) -> str:
    return spec_schema.removesuffix("Spec")


# ---- operations


def _json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def _etag_header() -> Schema:
    return {"ETag": {"description": "Revision of the whole state", "schema": {"type": "string"}}}


def _responses(success: dict[int, Schema], errors: tuple[int, ...]) -> Schema:
    responses: Schema = {}
    for status, body in sorted(success.items()):
        responses[str(status)] = body
    for status in errors:
        response: Schema = {
            "description": _DESCRIPTIONS[status],
            "content": _json_content(_ref("Error")),
        }
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        responses[str(status)] = response
    return responses


def _ok(status: int, schema: Schema | None, *, etag: bool = False) -> dict[int, Schema]:
    response: Schema = {"description": _DESCRIPTIONS[status]}
    if schema is not None:
        response["content"] = _json_content(schema)
    if etag:
        response["headers"] = _etag_header()
    return {status: response}


_READ = (401, 503)
_WRITE = (400, 401, 403, 409, 412, 413, 415, 422, 503)


def _name_parameter(description: str) -> Schema:
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _if_match() -> Schema:
    return {"$ref": "#/components/parameters/IfMatch"}


def _json_body(schema: Schema) -> Schema:
    return {"required": True, "content": _json_content(schema)}


def _health() -> Schema:
    return {
        "operationId": "healthz",
        "summary": "Liveness and store reachability (no token needed)",
        "security": [],
        "responses": _responses(
            _ok(200, {"type": "object", "properties": {"status": {"const": "ok"}}}), (503,)
        ),
    }


def _openapi() -> Schema:
    return {
        "operationId": "openapi",
        "summary": "This document (no token needed)",
        "security": [],
        "responses": _responses(_ok(200, {"type": "object"}), ()),
    }


def _list_resources(kind: str, collection: str, spec_schema: str) -> Schema:
    parameters: list[Schema] = []
    errors: tuple[int, ...] = _READ
    if kind == "device":
        parameters = [
            _query("profile", {"type": "string"}, "Only devices with this profile"),
            _query("model", {"type": "string"}, "Only devices of this model"),
            _query("status", {"type": "string", "enum": _STATUSES}, "Only this derived status"),
        ]
        errors = (400, *_READ)
    return {
        "operationId": f"list_{collection.replace('-', '_')}",
        "summary": f"List every {kind}",
        "tags": [collection],
        "parameters": parameters,
        "responses": _responses(
            _ok(200, {"type": "array", "items": _ref(_resource_schema(spec_schema))}, etag=True),
            errors,
        ),
    }


def _create_resource(kind: str, collection: str, spec_schema: str) -> Schema:
    name_schema = {
        "type": "string",
        "pattern": _SERIAL_PATTERN if kind == "device" else _NAME_PATTERN,
    }
    body = {
        "type": "object",
        "required": ["name", "spec"],
        "additionalProperties": False,
        "properties": {"name": name_schema, "spec": _ref(spec_schema)},
    }
    return {
        "operationId": f"create_{kind.replace('-', '_')}",
        "summary": f"Create a {kind} (409 if it exists)",
        "tags": [collection],
        "parameters": [_if_match()],
        "requestBody": _json_body(body),
        "responses": _responses(_ok(201, _ref(_resource_schema(spec_schema)), etag=True), _WRITE),
    }


def _get_resource(kind: str, collection: str, spec_schema: str) -> Schema:
    return {
        "operationId": f"get_{kind.replace('-', '_')}",
        "summary": f"Show one {kind}",
        "tags": [collection],
        "parameters": [_name_parameter(f"Name of the {kind}")],
        "responses": _responses(
            _ok(200, _ref(_resource_schema(spec_schema)), etag=True), (401, 404, 503)
        ),
    }


def _put_resource(kind: str, collection: str, spec_schema: str) -> Schema:
    body = {
        "type": "object",
        "required": ["spec"],
        "additionalProperties": False,
        "properties": {"spec": _ref(spec_schema)},
    }
    resource = _ref(_resource_schema(spec_schema))
    return {
        "operationId": f"put_{kind.replace('-', '_')}",
        "summary": f"Create or replace a {kind}",
        "tags": [collection],
        "parameters": [_name_parameter(f"Name of the {kind}"), _if_match()],
        "requestBody": _json_body(body),
        "responses": _responses(
            {**_ok(200, resource, etag=True), **_ok(201, resource, etag=True)}, _WRITE
        ),
    }


def _delete_resource(kind: str, collection: str) -> Schema:
    return {
        "operationId": f"delete_{kind.replace('-', '_')}",
        "summary": f"Delete a {kind} (409 while another resource refers to it)",
        "tags": [collection],
        "parameters": [_name_parameter(f"Name of the {kind}"), _if_match()],
        "responses": _responses(_ok(204, None, etag=True), (401, 403, 404, 409, 412, 503)),
    }


def _put_voucher() -> Schema:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "operationId": "put_device_voucher",
        "summary": "Upload the device's signed ownership voucher (DER CMS)",
        "tags": ["devices"],
        "parameters": [_name_parameter("Device serial number"), _if_match()],
        "requestBody": {
            "required": True,
            "content": {
                "application/voucher-cms+json": binary,
                "application/octet-stream": binary,
            },
        },
        "responses": _responses(
            _ok(200, _ref("Device"), etag=True), (401, 403, 404, 409, 412, 413, 415, 422, 503)
        ),
    }


def _delete_voucher() -> Schema:
    return {
        "operationId": "delete_device_voucher",
        "summary": "Remove the device's voucher",
        "tags": ["devices"],
        "parameters": [_name_parameter("Device serial number"), _if_match()],
        "responses": _responses(_ok(204, None, etag=True), (401, 403, 404, 409, 412, 503)),
    }


def _device_status() -> Schema:
    summary = {
        "type": "object",
        "required": ["serial", "status", "attempts", "last_report", "reports", "report_bytes"],
        "properties": {
            "serial": {"type": "string"},
            "status": {"type": "string", "enum": _STATUSES},
            "attempts": {"type": "integer"},
            "last_report": {"anyOf": [_ref("Report"), {"type": "null"}]},
            "reports": {"type": "integer", "description": "Progress reports stored"},
            "report_bytes": {"type": "integer", "description": "Their size, as budgeted"},
        },
    }
    return {
        "operationId": "device_status",
        "summary": "Derived bootstrapping status of one device",
        "tags": ["devices"],
        "parameters": [_name_parameter("Device serial number")],
        "responses": _responses(_ok(200, summary), (401, 404, 503)),
    }


def _device_progress() -> Schema:
    progress = {
        "type": "object",
        "required": ["serial", "attempts", "next_before"],
        "properties": {
            "serial": {"type": "string"},
            "next_before": {
                "type": ["integer", "null"],
                "description": "Pass as `before` for the next older page; null on the oldest",
            },
            "attempts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["attempt", "reports"],
                    "properties": {
                        "attempt": {"type": "integer"},
                        "reports": {"type": "array", "items": _ref("Report")},
                    },
                },
            },
        },
    }
    limit = {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_PROGRESS_PAGE,
        "default": DEFAULT_PROGRESS_LIMIT,
    }
    return {
        "operationId": "device_progress",
        "summary": "A page of the device's progress reports (the newest `limit` before "
        "`before`), oldest first, grouped by attempt; an attempt may span pages",
        "tags": ["devices"],
        "parameters": [
            _name_parameter("Device serial number"),
            _query("limit", limit, "How many reports"),
            _query("before", {"type": "integer", "minimum": 1}, "Only reports with a lower id"),
        ],
        "responses": _responses(_ok(200, progress), (400, 401, 404, 503)),
    }


def _fleet_status() -> Schema:
    fleet = {
        "type": "object",
        "required": ["devices", "counts", "stalled", "recent_errors"],
        "properties": {
            "devices": {"type": "integer"},
            "counts": {
                "type": "object",
                "properties": {status: {"type": "integer"} for status in _STATUSES},
            },
            "stalled": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"serial": {"type": "string"}, "last_report": _ref("Report")},
                },
            },
            "recent_errors": {"type": "array", "items": _ref("Report")},
        },
    }
    return {
        "operationId": "fleet_status",
        "summary": "Device counts by derived status, stalled devices, recent failures",
        "tags": ["status"],
        "responses": _responses(_ok(200, fleet), _READ),
    }


def _get_state() -> Schema:
    return {
        "operationId": "get_state",
        "summary": "Every resource (secrets hidden) and the revision: the export",
        "tags": ["state"],
        "responses": _responses(_ok(200, _ref("State"), etag=True), _READ),
    }


def _post_state() -> Schema:
    return {
        "operationId": "post_state",
        "summary": "Plan, and unless dry_run, apply a desired state in one transaction",
        "tags": ["state"],
        "parameters": [
            _query("dry_run", {"type": "boolean", "default": False}, "Plan only"),
            _query(
                "plan",
                {"type": "string", "enum": ["full", "summary"], "default": "full"},
                "How the answer shows each change: full (before and after, secrets hidden) "
                "or summary (the changed field names; the changed values for updates)",
            ),
            _if_match(),
        ],
        "requestBody": _json_body(_ref("DesiredState")),
        "responses": _responses(_ok(200, _ref("PlanResult"), etag=True), _WRITE),
    }


def _audit() -> Schema:
    entry = {
        "type": "object",
        "required": ["id", "at", "actor", "action", "kind", "name", "detail"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "kind": {"type": "string"},
            "name": {"type": "string"},
            "detail": {"type": "object"},
        },
    }
    return {
        "operationId": "audit",
        "summary": "Admin changes, newest first; after_id pages forward without gaps",
        "tags": ["audit"],
        "parameters": [
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Entries"),
            _query("after_id", {"type": "integer", "minimum": 0}, "Entries after this id"),
        ],
        "responses": _responses(
            _ok(
                200,
                {"type": "object", "properties": {"entries": {"type": "array", "items": entry}}},
            ),
            (400, *_READ),
        ),
    }


def _prune_audit() -> Schema:
    result = {
        "type": "object",
        "required": ["dry_run", "before", "entries"],
        "properties": {
            "dry_run": {"type": "boolean"},
            "before": {"type": "string", "format": "date-time"},
            "entries": {"type": "integer", "description": "Entries pruned (or, dry, to prune)"},
        },
    }
    return {
        "operationId": "prune_audit",
        "summary": "Delete audit entries older than some days (admin token; dry_run counts them)",
        "tags": ["audit"],
        "parameters": [
            _query(
                "older_than_days",
                {"type": "number", "exclusiveMinimum": 0, "maximum": AUDIT_MAX_AGE_DAYS},
                "Age in days of the oldest entries kept; default: audit_retention_days",
            ),
            _query("dry_run", {"type": "boolean", "default": False}, "Count only"),
        ],
        "responses": _responses(_ok(200, result), (400, 401, 403, 503)),
    }


def _list_tokens() -> Schema:
    listing = {
        "type": "object",
        "properties": {"tokens": {"type": "array", "items": _ref("Token")}},
    }
    return {
        "operationId": "list_tokens",
        "summary": "API tokens (names and roles, never the tokens)",
        "tags": ["tokens"],
        "responses": _responses(_ok(200, listing), _READ),
    }


def _create_token() -> Schema:
    body = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": _NAME_PATTERN},
            "role": {"type": "string", "enum": ["admin", "read-only"], "default": "admin"},
        },
    }
    created = {
        "allOf": [
            _ref("Token"),
            {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
        ]
    }
    return {
        "operationId": "create_token",
        "summary": "Create a token; the response shows it once",
        "tags": ["tokens"],
        "requestBody": _json_body(body),
        "responses": _responses(_ok(201, created), (400, 401, 403, 409, 413, 415, 422, 503)),
    }


def _delete_token() -> Schema:
    return {
        "operationId": "delete_token",
        "summary": "Revoke a token (409 for the last admin token)",
        "tags": ["tokens"],
        "parameters": [_name_parameter("Token name")],
        "responses": _responses(_ok(204, None), (401, 403, 404, 409, 503)),
    }

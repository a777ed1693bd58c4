"""The operations of the admin API's OpenAPI document, path by path."""

from __future__ import annotations

from typing import Any

from sztp.device_status import STATUSES
from sztp.progress import MAX_PROGRESS_PAGE
from sztp.protocol.restconf import RPC_NAMES
from sztp.refusals import REFUSALS, TLS_HANDSHAKE, Refusal
from sztp.revocation import DEFAULT_REVOCATION_REASON, REVOCATION_REASONS
from sztp.state import model
from sztp.state.device_templates import TEMPLATE_FIELDS
from sztp.state.resources import KINDS

from ...events_out.webhook_events import EVENT_TYPES
from ...expiry import CALENDAR_WEEKS, EXPIRY_KINDS, SOONEST_SHOWN
from ...store.base import AUDIT_MAX_AGE_DAYS, DEVICE_FILTER_FIELDS
from ..handlers.issuers import CRL_FORMATS
from ..requests import (
    DEFAULT_EVENTS_LIMIT,
    DEFAULT_PROGRESS_LIMIT,
    MAX_AUDIT_LIMIT,
    MAX_DEVICE_PAGE,
    MAX_EVENTS_LIMIT,
    RECENT_ERRORS,
    STALLED_SHOWN,
)
from .parts import (
    DESCRIPTIONS,
    READ,
    WRITE,
    if_match,
    json_body,
    json_content,
    name_parameter,
    ok,
    query,
    responses,
)
from .schemas import COLLECTIONS, NAME_PATTERN, SERIAL_PATTERN, Schema, ref, resource_schema


def api_paths() -> dict[str, Any]:
    """Every path of the admin API with its operations."""
    paths: dict[str, Any] = {
        "/healthz": {"get": _health()},
        "/api/v1/openapi.json": {"get": _openapi()},
        "/api/v1/state": {"get": _get_state(), "post": _post_state()},
        "/api/v1/jobs/{id}": {"get": _get_job()},
        "/api/v1/status": {"get": _fleet_status()},
        "/api/v1/status/by": {"get": _fleet_status_by()},
        "/api/v1/events": {"get": _device_events()},
        "/api/v1/audit": {"get": _audit()},
        "/api/v1/webhooks": {"get": _webhooks()},
        "/api/v1/audit/prune": {"post": _prune_audit()},
        "/api/v1/tokens": {"get": _list_tokens(), "post": _create_token()},
        "/api/v1/tokens/{name}": {"delete": _delete_token()},
    }
    for kind in KINDS:
        collection, spec_schema = COLLECTIONS[kind]
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
    paths["/api/v1/devices/{name}/rendered"] = {"get": _device_rendered()}
    paths["/api/v1/devices/{name}/certificates"] = {"get": _device_certificates()}
    paths["/api/v1/devices/{name}/certificates/{serial_number}/revoke"] = {
        "post": _revoke_certificate()
    }
    paths["/api/v1/issuers/{name}/crl"] = {"get": _issuer_crl()}
    paths["/api/v1/devices/{name}/progress"] = {"get": _device_progress()}
    return paths


# ---- operations


def _health() -> Schema:
    return {
        "operationId": "healthz",
        "summary": "Liveness and store reachability (no token needed)",
        "security": [],
        "responses": responses(
            ok(200, {"type": "object", "properties": {"status": {"const": "ok"}}}), (503,)
        ),
    }


def _openapi() -> Schema:
    return {
        "operationId": "openapi",
        "summary": "This document (no token needed)",
        "security": [],
        "responses": responses(ok(200, {"type": "object"}), ()),
    }


def _list_resources(kind: str, collection: str, spec_schema: str) -> Schema:
    if kind == "device":
        return _list_devices(collection, spec_schema)
    return {
        "operationId": f"list_{collection.replace('-', '_')}",
        "summary": f"List every {kind}",
        "tags": [collection],
        "parameters": [],
        "responses": responses(
            ok(200, {"type": "array", "items": ref(resource_schema(spec_schema))}, etag=True),
            READ,
        ),
    }


def _list_devices(collection: str, spec_schema: str) -> Schema:
    item = {
        "allOf": [
            ref(resource_schema(spec_schema)),
            {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": list(STATUSES)},
                    "last_report": {"oneOf": [ref("Report"), {"type": "null"}]},
                    "ldevid": {"oneOf": [ref("CurrentLdevid"), {"type": "null"}]},
                },
            },
        ]
    }
    listing = ok(200, {"type": "array", "items": item}, etag=True)
    listing[200]["headers"]["Link"] = {
        "description": 'With `limit`: `<url>; rel="next"` while more devices follow (every '
        "page but the last is full)",
        "schema": {"type": "string"},
    }
    return {
        "operationId": f"list_{collection}",
        "summary": "List devices, filtered, optionally with each one's status, last report "
        "and current LDevID, in name order and in pages",
        "description": "A page costs the server the devices it reads to fill it: those it "
        "returns, and with `status` those in other statuses that it passes over (`profile`, "
        "`model` and `site` are indexed). Without `limit` the whole listing is one streamed JSON "
        "array (a failure midway cuts it short); page through a large fleet with `limit` and "
        "`after` instead.",
        "tags": [collection],
        "parameters": [
            query("profile", {"type": "string"}, "Only devices with this profile"),
            query("model", {"type": "string"}, "Only devices of this model"),
            query("site", {"type": "string"}, "Only devices installed at this site"),
            query("status", {"type": "string", "enum": list(STATUSES)}, "Only this derived status"),
            query(
                "with_status",
                {"type": "boolean", "default": False},
                "Add each device's derived `status`, `last_report` (null before any) and "
                "`ldevid`, its current LDevID (its newest issued certificate; null when it has "
                "none, or that one is revoked or expired)",
            ),
            query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_DEVICE_PAGE},
                "At most this many devices, in name order (default: all, streamed)",
            ),
            query(
                "after",
                {"type": "string"},
                "Only devices whose name sorts after this one, in name order (the next page)",
            ),
        ],
        "responses": responses(listing, (400, *READ)),
    }


def _create_resource(kind: str, collection: str, spec_schema: str) -> Schema:
    name_schema = {
        "type": "string",
        "pattern": SERIAL_PATTERN if kind == "device" else NAME_PATTERN,
    }
    body = {
        "type": "object",
        "required": ["name", "spec"],
        "additionalProperties": False,
        "properties": {"name": name_schema, "spec": ref(spec_schema)},
    }
    return {
        "operationId": f"create_{kind.replace('-', '_')}",
        "summary": f"Create a {kind} (409 if it exists)",
        "tags": [collection],
        "parameters": [if_match()],
        "requestBody": json_body(body),
        "responses": responses(ok(201, ref(resource_schema(spec_schema)), etag=True), WRITE),
    }


def _get_resource(kind: str, collection: str, spec_schema: str) -> Schema:
    return {
        "operationId": f"get_{kind.replace('-', '_')}",
        "summary": f"Show one {kind}",
        "tags": [collection],
        "parameters": [name_parameter(f"Name of the {kind}")],
        "responses": responses(
            ok(200, ref(resource_schema(spec_schema)), etag=True), (401, 404, 503)
        ),
    }


def _put_resource(kind: str, collection: str, spec_schema: str) -> Schema:
    body = {
        "type": "object",
        "required": ["spec"],
        "additionalProperties": False,
        "properties": {"spec": ref(spec_schema)},
    }
    resource = ref(resource_schema(spec_schema))
    return {
        "operationId": f"put_{kind.replace('-', '_')}",
        "summary": f"Create or replace a {kind}",
        "tags": [collection],
        "parameters": [name_parameter(f"Name of the {kind}"), if_match()],
        "requestBody": json_body(body),
        "responses": responses(
            {**ok(200, resource, etag=True), **ok(201, resource, etag=True)}, WRITE
        ),
    }


def _delete_resource(kind: str, collection: str) -> Schema:
    return {
        "operationId": f"delete_{kind.replace('-', '_')}",
        "summary": f"Delete a {kind} (409 while another resource refers to it)",
        "tags": [collection],
        "parameters": [name_parameter(f"Name of the {kind}"), if_match()],
        "responses": responses(ok(204, None, etag=True), (401, 403, 404, 409, 412, 503)),
    }


def _put_voucher() -> Schema:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "operationId": "put_device_voucher",
        "summary": "Upload the device's signed ownership voucher (DER CMS)",
        "tags": ["devices"],
        "parameters": [name_parameter("Device serial number"), if_match()],
        "requestBody": {
            "required": True,
            "content": {
                "application/voucher-cms+json": binary,
                "application/octet-stream": binary,
            },
        },
        "responses": responses(
            ok(200, ref("Device"), etag=True), (401, 403, 404, 409, 412, 413, 415, 422, 503)
        ),
    }


def _delete_voucher() -> Schema:
    return {
        "operationId": "delete_device_voucher",
        "summary": "Remove the device's voucher",
        "tags": ["devices"],
        "parameters": [name_parameter("Device serial number"), if_match()],
        "responses": responses(ok(204, None, etag=True), (401, 403, 404, 409, 412, 503)),
    }


def _device_status() -> Schema:
    summary = {
        "type": "object",
        "required": ["serial", "status", "attempts", "last_report", "reports", "report_bytes"],
        "properties": {
            "serial": {"type": "string"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "attempts": {"type": "integer"},
            "last_report": {"anyOf": [ref("Report"), {"type": "null"}]},
            "reports": {"type": "integer", "description": "Progress reports stored"},
            "report_bytes": {"type": "integer", "description": "Their size, as budgeted"},
        },
    }
    return {
        "operationId": "device_status",
        "summary": "Derived bootstrapping status of one device",
        "tags": ["devices"],
        "parameters": [name_parameter("Device serial number")],
        "responses": responses(ok(200, summary), (401, 404, 503)),
    }


def _device_rendered() -> Schema:
    text = {"type": ["string", "null"]}
    view = {
        "type": "object",
        "required": ["profile", "type"],
        "properties": {
            "profile": {"type": "string"},
            "type": {"type": "string", "enum": list(model.field("profile", "type").choices)},
            "templating": {
                "type": "string",
                "enum": list(model.field("profile", "templating").choices),
            },
            "image": text,
            "configuration_handling": text,
            **{name: text for name in TEMPLATE_FIELDS},
            "bootstrap_servers": {"type": "array", "items": {"type": "string"}},
        },
    }
    rendered = {
        "type": "object",
        "required": ["serial", "profiles"],
        "properties": {
            "serial": {"type": "string"},
            "profiles": {
                "type": "array",
                "items": view,
                "description": "Each profile the device can select, in selection order",
            },
        },
    }
    return {
        "operationId": "device_rendered",
        "summary": "What the device would receive: its profiles' templates rendered for it",
        "tags": ["devices"],
        "parameters": [name_parameter("Device serial number")],
        "responses": responses(ok(200, rendered), (401, 404, 422, 503)),
    }


def _issued_certificate() -> Schema:
    moment = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "required": [
            "issuer",
            "serial_number",
            "device",
            "subject",
            "not_before",
            "not_after",
            "issued_at",
            "certificate",
        ],
        "properties": {
            "issuer": {"type": "string", "description": "The server's issuer that signed it"},
            "serial_number": {"type": "string", "description": "The certificate's, hex"},
            "device": {"type": "string"},
            "profile": {"type": ["string", "null"]},
            "subject": {"type": "string"},
            "not_before": moment,
            "not_after": moment,
            "issued_at": moment,
            "revoked_at": {"anyOf": [moment, {"type": "null"}]},
            "revocation_reason": {
                "anyOf": [{"type": "string", "enum": list(REVOCATION_REASONS)}, {"type": "null"}],
                "description": "Why it was revoked (RFC 5280 CRLReason); null while it is not",
            },
            "certificate": {"type": "string", "description": "PEM"},
        },
    }


def _device_certificates() -> Schema:
    listing = {
        "type": "object",
        "required": ["serial", "certificates"],
        "properties": {
            "serial": {"type": "string"},
            "certificates": {"type": "array", "items": _issued_certificate()},
        },
    }
    return {
        "operationId": "device_certificates",
        "summary": "The LDevIDs issued to the device (RFC 9646), newest first",
        "tags": ["devices"],
        "parameters": [
            name_parameter("Device serial number"),
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": MAX_DEVICE_PAGE},
            },
        ],
        "responses": responses(ok(200, listing), (400, 401, 404, 503)),
    }


def _revoke_certificate() -> Schema:
    body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "reason": {
                "type": "string",
                "enum": list(REVOCATION_REASONS),
                "default": DEFAULT_REVOCATION_REASON,
                "description": "Why (RFC 5280 CRLReason)",
            },
            "issuer": {
                "type": "string",
                "description": "The issuer, needed only when two issued the serial number",
            },
        },
    }
    return {
        "operationId": "revoke_certificate",
        "summary": "Revoke an LDevID issued to the device (admin token): its issuer's CRL lists "
        "it from then on; revoking it again keeps the first time and reason",
        "tags": ["devices"],
        "parameters": [
            name_parameter("Device serial number"),
            {
                "name": "serial_number",
                "in": "path",
                "required": True,
                "description": "The certificate's serial number: hex, any case, colons allowed",
                "schema": {"type": "string"},
            },
        ],
        "requestBody": json_body(body),
        "responses": responses(
            ok(200, _issued_certificate()), (400, 401, 403, 404, 409, 413, 415, 422, 503)
        ),
    }


def _issuer_crl() -> Schema:
    binary = {"type": "string", "format": "binary"}
    return {
        "operationId": "issuer_crl",
        "summary": "The CRL of a builtin LDevID issuer, signed now by its CA key (404 for a cmp "
        "or hook issuer: its CA publishes its own)",
        "tags": ["issuers"],
        "parameters": [
            name_parameter("Issuer name (of the server's ldevid_issuers)"),
            query("format", {"type": "string", "enum": list(CRL_FORMATS)}, "DER (default) or PEM"),
        ],
        "responses": responses(
            {
                200: {
                    "description": DESCRIPTIONS[200],
                    "content": {
                        media_type: {"schema": binary} for _, media_type in CRL_FORMATS.values()
                    },
                }
            },
            (400, *READ, 404),
        ),
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
                        "reports": {"type": "array", "items": ref("Report")},
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
            name_parameter("Device serial number"),
            query("limit", limit, "How many reports"),
            query("before", {"type": "integer", "minimum": 1}, "Only reports with a lower id"),
        ],
        "responses": responses(ok(200, progress), (400, 401, 404, 503)),
    }


def _device_events() -> Schema:
    event = {
        "type": "object",
        "required": [
            "id",
            "at",
            "rpc",
            "status",
            "serial",
            "authenticated",
            "refusal",
            "remote",
            "duration_ms",
            "profile",
            "image",
            "detail",
        ],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "rpc": {
                "type": "string",
                "enum": [*RPC_NAMES, TLS_HANDSHAKE],
                "description": f"`{TLS_HANDSHAKE}`: a TLS handshake that refused the client's "
                "certificate, before any RPC",
            },
            "status": {
                "type": "integer",
                "description": "The HTTP status answered; 0 when there was no HTTP answer (a "
                "refused TLS handshake)",
            },
            "serial": {
                "type": ["string", "null"],
                "description": "The device the request proved to be (`authenticated`), else "
                "the serial its Basic credentials claimed (untrusted text), else null",
            },
            "authenticated": {"type": "boolean"},
            "refusal": {
                "description": "Why the request was refused; null when it was served. "
                + "; ".join(f"`{refusal.value}`: {refusal.meaning}" for refusal in Refusal),
                "oneOf": [{"type": "string", "enum": list(REFUSALS)}, {"type": "null"}],
            },
            "remote": {"type": ["string", "null"], "description": "The client's address"},
            "duration_ms": {"type": "number", "description": "From the request to its answer"},
            "profile": {
                "type": ["string", "null"],
                "description": "The profile a served get-bootstrapping-data came from (its "
                "name then); null otherwise, and for pre-signed data",
            },
            "image": {
                "type": ["string", "null"],
                "description": "The boot image of that profile, if it has one",
            },
            "detail": {
                "type": ["string", "null"],
                "description": "For get-bootstrapping-data: what the device said of itself "
                "(hw-model, os-name, os-version; its text, cut to 64 characters each) and why "
                "no data could be served",
            },
        },
    }
    page = {
        "type": "object",
        "required": ["events", "next_before"],
        "properties": {
            "events": {"type": "array", "items": event},
            "next_before": {
                "type": ["integer", "null"],
                "description": "Pass as `before` for the next older page; null on the oldest",
            },
        },
    }
    limit = {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_EVENTS_LIMIT,
        "default": DEFAULT_EVENTS_LIMIT,
    }
    return {
        "operationId": "device_events",
        "summary": "The flight recorder: device requests, served and refused, newest first "
        "(the newest `device_events_kept` are kept)",
        "tags": ["devices"],
        "parameters": [
            query("serial", {"type": "string"}, "Only requests naming this serial"),
            query("refused", {"type": "boolean", "default": False}, "Only refused requests"),
            query("limit", limit, "How many events"),
            query("before", {"type": "integer", "minimum": 1}, "Only events with a lower id"),
        ],
        "responses": responses(ok(200, page), (400, 401, 503)),
    }


def _fleet_status() -> Schema:
    by_kind = {
        "type": "object",
        "properties": {kind: {"type": "integer"} for kind in EXPIRY_KINDS},
    }
    fleet = {
        "type": "object",
        "required": ["devices", "counts", "stalled", "recent_errors", "expiring"],
        "properties": {
            "devices": {"type": "integer"},
            "counts": {
                "type": "object",
                "properties": {status: {"type": "integer"} for status in STATUSES},
            },
            "stalled": {
                "type": "array",
                "description": f"The first {STALLED_SHOWN} stalled devices in name order; "
                "`counts.stalled` is how many there are",
                "items": {
                    "type": "object",
                    "properties": {"serial": {"type": "string"}, "last_report": ref("Report")},
                },
            },
            "recent_errors": {
                "type": "array",
                "description": f"The last reports of the {RECENT_ERRORS} devices that failed "
                "most recently, newest first",
                "items": ref("Report"),
            },
            "expiring": {
                "type": "object",
                "description": "Vouchers, owner certificates, trust anchors and TLS "
                "certificates that expire within `expiry_warning_days` or have expired: how "
                f"many of each kind, and the {SOONEST_SHOWN} soonest",
                "required": ["within_days", "counts", "soonest", "earlier", "calendar"],
                "properties": {
                    "within_days": {"type": "number"},
                    "counts": by_kind,
                    "soonest": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["kind", "name", "not_after", "expired"],
                            "properties": {
                                "kind": {"type": "string", "enum": list(EXPIRY_KINDS)},
                                "name": {"type": "string"},
                                "not_after": {"type": "string", "format": "date-time"},
                                "expired": {"type": "boolean"},
                            },
                        },
                    },
                    "earlier": {
                        "description": "How many of each kind expired before this week",
                        **by_kind,
                    },
                    "calendar": {
                        "type": "array",
                        "description": f"The next {CALENDAR_WEEKS} weeks from this one's "
                        "Monday (UTC): how many of each kind expire in each, however far "
                        "`expiry_warning_days` reaches",
                        "items": {
                            "type": "object",
                            "required": ["week", "counts"],
                            "properties": {
                                "week": {"type": "string", "format": "date"},
                                "counts": by_kind,
                            },
                        },
                    },
                },
            },
        },
    }
    return {
        "operationId": "fleet_status",
        "summary": "Device counts by derived status, stalled devices, recent failures",
        "tags": ["status"],
        "responses": responses(ok(200, fleet), READ),
    }


def _fleet_status_by() -> Schema:
    counts = {
        "type": "object",
        "properties": {status: {"type": "integer"} for status in STATUSES},
    }
    group = {
        "type": "object",
        "required": ["value", "devices", "counts"],
        "properties": {
            "value": {"type": ["string", "null"], "description": "null: devices without it"},
            "devices": {"type": "integer"},
            "counts": counts,
        },
    }
    return {
        "operationId": "fleet_status_by",
        "summary": "Device counts by derived status for each profile, model or site",
        "description": "Every field asked for is counted in the same pass over the devices.",
        "tags": ["status"],
        "parameters": [
            {
                **query(
                    "field",
                    {
                        "type": "array",
                        "items": {"type": "string", "enum": list(DEVICE_FILTER_FIELDS)},
                    },
                    "The device fields to group by, the parameter repeated (default: all)",
                ),
                "style": "form",
                "explode": True,
            }
        ],
        "responses": responses(
            ok(
                200,
                {
                    "type": "object",
                    "required": ["by"],
                    "properties": {
                        "by": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["field", "groups"],
                                "properties": {
                                    "field": {"type": "string"},
                                    "groups": {"type": "array", "items": group},
                                },
                            },
                        }
                    },
                },
            ),
            (400, *READ),
        ),
    }


def _get_state() -> Schema:
    return {
        "operationId": "get_state",
        "summary": "Every resource (secrets hidden) and the revision: the export",
        "description": "One revision (the ETag's), streamed as it is encoded: the revision "
        "first, then the kinds in the order of the schema's properties, each kind's resources "
        "in name order. A body that ends before the document does broke off and is not the "
        "state.",
        "tags": ["state"],
        "responses": responses(ok(200, ref("State"), etag=True), READ),
    }


def _post_state() -> Schema:
    return {
        "operationId": "post_state",
        "summary": "Plan, and unless dry_run, apply a desired state in one transaction",
        "tags": ["state"],
        "parameters": [
            query("dry_run", {"type": "boolean", "default": False}, "Plan only"),
            query(
                "plan",
                {"type": "string", "enum": ["full", "summary"], "default": "full"},
                "How the answer shows each change: full (before and after, secrets hidden) "
                "or summary (the changed field names; the changed values for updates)",
            ),
            if_match(),
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "description": "respond-async: answer 202 at once and run the write as a job "
                "(GET /api/v1/jobs/{id}); the write goes on whatever happens to the client. "
                "Other preferences are ignored, as RFC 7240 asks",
                "schema": {"type": "string"},
            },
        ],
        "requestBody": json_body(ref("DesiredState")),
        "responses": responses(
            {
                **ok(200, ref("PlanResult"), etag=True),
                202: {
                    "description": DESCRIPTIONS[202],
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": json_content(ref("Job")),
                },
            },
            WRITE,
        ),
    }


def _get_job() -> Schema:
    return {
        "operationId": "get_job",
        "summary": "How far a job got and how it ended (kept an hour after its end)",
        "tags": ["state"],
        "parameters": [
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "The job's id, from the Location of its 202",
                "schema": {"type": "string"},
            },
            {
                "name": "Prefer",
                "in": "header",
                "required": False,
                "description": "wait=N (RFC 7240): answer once the job ends, or after N "
                "seconds (5 at most) if it is still running",
                "schema": {"type": "string", "pattern": "^wait=[0-9]+$"},
            },
        ],
        "responses": responses(ok(200, ref("Job")), (401, 404, 503)),
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
            query(
                "limit", {"type": "integer", "minimum": 1, "maximum": MAX_AUDIT_LIMIT}, "Entries"
            ),
            query("after_id", {"type": "integer", "minimum": 0}, "Entries after this id"),
        ],
        "responses": responses(
            ok(
                200,
                {"type": "object", "properties": {"entries": {"type": "array", "items": entry}}},
            ),
            (400, *READ),
        ),
    }


def _webhooks() -> Schema:
    time_or_null = {"type": ["string", "null"], "format": "date-time"}
    webhook = {
        "type": "object",
        "required": [
            "name", "url", "events", "configured", "pending", "delivered", "given_up",
            "oldest_pending_at", "last_delivered_at", "last_error",
        ],
        "properties": {
            "name": {"type": "string"},
            "url": {"type": ["string", "null"], "description": "null: no longer configured"},
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENT_TYPES)}},
            "configured": {"type": "boolean"},
            "pending": {"type": "integer", "description": "Events not delivered yet"},
            "delivered": {"type": "integer", "description": "Delivered, of those kept a day"},
            "given_up": {
                "type": "integer",
                "description": "Not delivered within webhook_retry_hours, of those kept a day",
            },
            "oldest_pending_at": time_or_null,
            "last_delivered_at": time_or_null,
            "last_error": {
                "type": ["string", "null"],
                "description": "Why the newest failed try failed",
            },
        },
    }  # fmt: skip
    return {
        "operationId": "webhooks",
        "summary": "The configured webhooks (never their keys) and how their deliveries stand",
        "tags": ["status"],
        "responses": responses(
            ok(
                200,
                {
                    "type": "object",
                    "required": ["webhooks"],
                    "properties": {"webhooks": {"type": "array", "items": webhook}},
                },
            ),
            READ,
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
            query(
                "older_than_days",
                {"type": "number", "exclusiveMinimum": 0, "maximum": AUDIT_MAX_AGE_DAYS},
                "Age in days of the oldest entries kept; default: audit_retention_days",
            ),
            query("dry_run", {"type": "boolean", "default": False}, "Count only"),
        ],
        "responses": responses(ok(200, result), (400, 401, 403, 503)),
    }


def _list_tokens() -> Schema:
    listing = {
        "type": "object",
        "properties": {"tokens": {"type": "array", "items": ref("Token")}},
    }
    return {
        "operationId": "list_tokens",
        "summary": "API tokens (names and roles, never the tokens)",
        "tags": ["tokens"],
        "responses": responses(ok(200, listing), READ),
    }


def _create_token() -> Schema:
    body = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "role": {"type": "string", "enum": ["admin", "read-only"], "default": "admin"},
        },
    }
    created = {
        "allOf": [
            ref("Token"),
            {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}},
        ]
    }
    return {
        "operationId": "create_token",
        "summary": "Create a token; the response shows it once",
        "tags": ["tokens"],
        "requestBody": json_body(body),
        "responses": responses(ok(201, created), (400, 401, 403, 409, 413, 415, 422, 503)),
    }


def _delete_token() -> Schema:
    return {
        "operationId": "delete_token",
        "summary": "Revoke a token (409 for the last admin token)",
        "tags": ["tokens"],
        "parameters": [name_parameter("Token name")],
        "responses": responses(ok(204, None), (401, 403, 404, 409, 503)),
    }

"""The pieces the operations of the admin API's OpenAPI document are made of: responses
(success and error), parameters and request bodies."""

from __future__ import annotations

from .schemas import Schema, ref

DESCRIPTIONS = {
    200: "OK",
    201: "Created",
    202: "Accepted as a job: its URL is in Location; GET it until it ends",
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


def json_content(schema: Schema) -> Schema:
    return {"application/json": {"schema": schema}}


def etag_header() -> Schema:
    return {"ETag": {"description": "Revision of the whole state", "schema": {"type": "string"}}}


def responses(success: dict[int, Schema], errors: tuple[int, ...]) -> Schema:
    answers: Schema = {}
    for status, body in sorted(success.items()):
        answers[str(status)] = body
    for status in errors:
        response: Schema = {
            "description": DESCRIPTIONS[status],
            "content": json_content(ref("Error")),
        }
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        answers[str(status)] = response
    return answers


def ok(status: int, schema: Schema | None, *, etag: bool = False) -> dict[int, Schema]:
    response: Schema = {"description": DESCRIPTIONS[status]}
    if schema is not None:
        response["content"] = json_content(schema)
    if etag:
        response["headers"] = etag_header()
    return {status: response}


READ = (401, 503)
WRITE = (400, 401, 403, 409, 412, 413, 415, 422, 503)


def name_parameter(description: str) -> Schema:
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def if_match() -> Schema:
    return {"$ref": "#/components/parameters/IfMatch"}


def json_body(schema: Schema) -> Schema:
    return {"required": True, "content": json_content(schema)}

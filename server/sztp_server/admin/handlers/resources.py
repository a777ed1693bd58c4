"""`/api/v1/<collection>[/<name>]`: list, read, create, replace and delete one resource."""

from __future__ import annotations

from aiohttp import web

from sztp.errors import ValidationError

from ...store.async_store import AsyncStore
from ..auth import caller
from ..errors import ApiError
from ..requests import API, COLLECTIONS, json_object, json_with_etag, only_fields, read_json
from ..service import StateService
from ..views import etag, resource_view
from ..writes import CreateResource, DeleteResource, PutResource


class ResourceHandlers:
    def __init__(self, service: StateService, max_body_bytes: int) -> None:
        self.service = service
        self.store = service.store
        self.max_body_bytes = max_body_bytes

    async def list_resources(self, request: web.Request) -> web.Response:
        """Every resource of the collection (devices have a listing of their own)."""
        kind = COLLECTIONS[request.match_info["collection"]]
        revision = await self.store.revision()
        resources = await self.store.list(kind)
        return json_with_etag([resource_view(resource) for resource in resources], revision)

    async def get_resource(self, request: web.Request) -> web.Response:
        kind, name = _kind_and_name(request)
        revision = await self.store.revision()
        resource = await self.store.get(kind, name)
        if resource is None:
            raise ApiError(404, f"no {kind} named {name!r}")
        return json_with_etag(resource_view(resource), revision)

    async def create_resource(self, request: web.Request) -> web.Response:
        kind = COLLECTIONS[request.match_info["collection"]]
        body = json_object(await read_json(request, self.max_body_bytes), "body")
        only_fields(body, "body", ("name", "spec"))
        name = body.get("name")
        if not isinstance(name, str):
            raise ValidationError("name", "is required and must be a string")
        spec = json_object(body.get("spec"), "spec")
        commit = await self.service.commit(
            CreateResource(kind, name, spec),
            actor=caller(request).name,
            if_match=request.headers.get("If-Match"),
        )
        response = await resource_response(self.store, kind, name, commit.revision, status=201)
        response.headers["Location"] = f"{API}/{request.match_info['collection']}/{name}"
        return response

    async def put_resource(self, request: web.Request) -> web.Response:
        kind, name = _kind_and_name(request)
        body = json_object(await read_json(request, self.max_body_bytes), "body")
        only_fields(body, "body", ("spec",))
        spec = json_object(body.get("spec"), "spec")
        commit = await self.service.commit(
            PutResource(kind, name, spec),
            actor=caller(request).name,
            if_match=request.headers.get("If-Match"),
        )
        created = any(change.action == "create" for change in commit.changes)
        return await resource_response(
            self.store, kind, name, commit.revision, status=201 if created else 200
        )

    async def delete_resource(self, request: web.Request) -> web.Response:
        kind, name = _kind_and_name(request)
        commit = await self.service.commit(
            DeleteResource(kind, name),
            actor=caller(request).name,
            if_match=request.headers.get("If-Match"),
        )
        return web.Response(status=204, headers=etag(commit.revision))


async def resource_response(
    store: AsyncStore, kind: str, name: str, revision: int, *, status: int
) -> web.Response:
    """The resource as stored after a write at `revision`."""
    resource = await store.get(kind, name)
    if resource is None:  # deleted by another instance in the meantime
        raise ApiError(409, f"{kind} {name!r} was deleted concurrently")
    return json_with_etag(resource_view(resource), revision, status=status)


def _kind_and_name(request: web.Request) -> tuple[str, str]:
    return COLLECTIONS[request.match_info["collection"]], request.match_info["name"]

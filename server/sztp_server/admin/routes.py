"""The admin application: its middlewares and route table."""

from __future__ import annotations

from aiohttp import web

from ..context import ServerContext
from .auth import TokenAuth
from .errors import error_middleware
from .handlers.api_reference import REFERENCE_ASSETS, REFERENCE_PAGE, ApiReference
from .handlers.audit import AuditHandlers
from .handlers.dashboard import DASHBOARD_PAGES
from .handlers.devices import DeviceHandlers
from .handlers.issuers import IssuerHandlers
from .handlers.public import PublicHandlers
from .handlers.resources import ResourceHandlers
from .handlers.state import DEFAULT_MAX_BULK_BYTES, StateHandlers
from .handlers.tokens import TokenHandlers
from .handlers.webhooks import WebhookHandlers
from .requests import API, COLLECTIONS
from .service import StateService
from .writer import WriterHandle

# The app's desired-state service (its writer process), for whoever holds the app.
STATE_SERVICE = web.AppKey("state_service", StateService)


def build_admin_app(
    context: ServerContext,
    *,
    max_bulk_bytes: int = DEFAULT_MAX_BULK_BYTES,
    writer: WriterHandle | None = None,
) -> web.Application:
    """The admin application; `max_bulk_bytes` bounds `POST /api/v1/state` bodies, every other
    body is bounded by `context.config.max_body_bytes`. Writes go to `writer`, by default a
    writer process of the app's own."""
    max_body_bytes = context.config.max_body_bytes
    store = context.admin_store
    service = StateService(context, writer)
    public = PublicHandlers(store)
    reference = ApiReference()
    resources = ResourceHandlers(service, max_body_bytes)
    devices = DeviceHandlers(service, max_body_bytes)
    state = StateHandlers(service, max_bulk_bytes)
    audit = AuditHandlers(store, context.config)
    tokens = TokenHandlers(store, max_body_bytes)
    webhooks = WebhookHandlers(store, context.config)
    issuers = IssuerHandlers(store, context.config, context.tokens)
    app = web.Application(
        middlewares=[error_middleware, TokenAuth(store).middleware],
        client_max_size=max(max_bulk_bytes, max_body_bytes),
    )
    kinds = "|".join(COLLECTIONS)
    collection = f"{API}/{{collection:{kinds}}}"
    app.router.add_get("/healthz", public.healthz)
    app.router.add_get(f"{API}/openapi.json", public.openapi)
    app.router.add_get(REFERENCE_PAGE, reference.serve_page)
    app.router.add_get(REFERENCE_ASSETS, reference.to_page)
    app.router.add_get(f"{REFERENCE_ASSETS}{{name}}", reference.serve_asset)
    app.router.add_get(f"{API}/state", state.get_state)
    app.router.add_post(f"{API}/state", state.post_state)
    app.router.add_get(f"{API}/jobs/{{id}}", state.get_job)
    app.router.add_get(f"{API}/status", devices.fleet_status)
    app.router.add_get(f"{API}/status/by", devices.fleet_status_by)
    for path, page in DASHBOARD_PAGES.items():
        app.router.add_get(path, page)
    app.router.add_get(f"{API}/events", devices.device_events)
    app.router.add_get(f"{API}/audit", audit.audit)
    app.router.add_get(f"{API}/webhooks", webhooks.webhooks)
    app.router.add_post(f"{API}/audit/prune", audit.prune_audit)
    app.router.add_get(f"{API}/tokens", tokens.list_tokens)
    app.router.add_post(f"{API}/tokens", tokens.create_token)
    app.router.add_delete(f"{API}/tokens/{{name}}", tokens.delete_token)
    app.router.add_put(f"{API}/devices/{{name}}/voucher", devices.put_voucher)
    app.router.add_delete(f"{API}/devices/{{name}}/voucher", devices.delete_voucher)
    app.router.add_get(f"{API}/devices/{{name}}/status", devices.device_status)
    app.router.add_get(f"{API}/devices/{{name}}/progress", devices.device_progress)
    app.router.add_get(f"{API}/devices/{{name}}/rendered", devices.device_rendered)
    app.router.add_get(f"{API}/devices/{{name}}/certificates", devices.device_certificates)
    app.router.add_post(
        f"{API}/devices/{{name}}/certificates/{{serial_number}}/revoke", devices.revoke_certificate
    )
    app.router.add_get(f"{API}/issuers/{{name}}/crl", issuers.crl)
    # Before the collections: devices have a listing of their own (filters, status, pages).
    app.router.add_get(f"{API}/devices", devices.list_devices)
    app.router.add_get(collection, resources.list_resources)
    app.router.add_post(collection, resources.create_resource)
    app.router.add_get(f"{collection}/{{name}}", resources.get_resource)
    app.router.add_put(f"{collection}/{{name}}", resources.put_resource)
    app.router.add_delete(f"{collection}/{{name}}", resources.delete_resource)

    async def start(_app: web.Application) -> None:
        # The first write should not wait for the writer process to start.
        await service.writer.start()

    async def close(_app: web.Application) -> None:
        await state.jobs.close()
        service.close()

    app[STATE_SERVICE] = service
    app.on_startup.append(start)
    app.on_cleanup.append(close)
    return app

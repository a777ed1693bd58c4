"""`/dashboard/`: the fleet dashboard, a page, a script and a style sheet of this package's own
(no asset from elsewhere: data centres are often air-gapped). The page holds no data; its
script reads the admin API with the token the operator types in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib.resources import files

from aiohttp import web

# Only this server's own script, style and API; no frames, forms sent elsewhere or plugins.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ASSETS = {
    "/dashboard/": ("index.html", "text/html"),
    "/dashboard/dashboard.js": ("dashboard.js", "text/javascript"),
    "/dashboard/dashboard.css": ("dashboard.css", "text/css"),
}


def _page(name: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    body = files(__package__.rpartition(".")[0]).joinpath("dashboard", name).read_bytes()

    async def serve(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type=content_type, charset="utf-8", headers=_HEADERS)

    return serve


async def _to_page(_request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/dashboard/")


DASHBOARD_PAGES: dict[str, Callable[[web.Request], Awaitable[web.Response]]] = {
    "/dashboard": _to_page,
    **{path: _page(name, kind) for path, (name, kind) in _ASSETS.items()},
}

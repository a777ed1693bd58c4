"""`/api/v1/docs`: the admin API's reference, Swagger UI showing the OpenAPI document beside it
(`/api/v1/openapi.json`). Swagger UI's script and style sheet come from the installed
swagger-ui-py package, not from this repository nor a CDN (data centres are often air-gapped);
the page and the script that starts the viewer are this package's own. Every file is read once,
when the app is built, and only the names listed here are served."""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from aiohttp import web

from ..errors import ApiError
from ..requests import API

REFERENCE_PAGE = f"{API}/docs"
# The page's files: docs/<name> from the page's URL.
REFERENCE_ASSETS = f"{REFERENCE_PAGE}/"
# The distribution the `server` extra installs, and the module it provides.
VIEWER_DISTRIBUTION = "swagger-ui-py"
VIEWER_MODULE = "swagger_ui"
_OWN_FILES = {"api-reference.js": "text/javascript"}
_VIEWER_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# As the dashboard's, with one addition: Swagger UI's style sheet draws its icons as data: URL
# images. Its script sets styles through the DOM, which style-src does not govern.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated with the ETag: an upgraded package must not be served from a stale cache.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


def _file(body: bytes, content_type: str) -> _File:
    return _File(body, content_type, hashlib.sha256(body).hexdigest()[:32])


class ApiReference:
    """The page and its files; without the viewer package, each answers 503 naming it."""

    def __init__(self) -> None:
        own = files(__package__.rpartition(".")[0]).joinpath("api_reference")
        self.page = _file(own.joinpath("index.html").read_bytes(), "text/html")
        self.assets = {
            name: _file(own.joinpath(name).read_bytes(), kind) for name, kind in _OWN_FILES.items()
        }
        viewer = _read_viewer(VIEWER_MODULE)
        self.assets.update(viewer or {})
        self.missing: str | None = None
        if viewer is None:
            # The admin API works without its reference, which then says what to install.
            self.missing = (
                f"the API reference needs the Python package {VIEWER_DISTRIBUTION} (Swagger UI's "
                "files), which is not installed or incomplete; install sztp with the server "
                "extra: pip install 'sztp[server]'"
            )

    async def serve_page(self, request: web.Request) -> web.Response:
        return self._serve(request, self.page)

    async def to_page(self, _request: web.Request) -> web.Response:
        # The page's relative links (docs/..., openapi.json) hold from its own URL only.
        raise web.HTTPMovedPermanently(REFERENCE_PAGE)

    async def serve_asset(self, request: web.Request) -> web.Response:
        return self._serve(request, self.assets.get(request.match_info["name"]))

    def _serve(self, request: web.Request, served: _File | None) -> web.Response:
        if self.missing is not None:
            raise ApiError(503, self.missing)
        if served is None:
            raise ApiError(404, "no such file of the API reference")
        if any(tag.value in (served.etag, "*") for tag in request.if_none_match or ()):
            response = web.Response(status=304, headers=_HEADERS)
        else:
            text = served.content_type.startswith("text/")
            response = web.Response(
                body=served.body,
                content_type=served.content_type,
                charset="utf-8" if text else None,
                headers=_HEADERS,
            )
        response.etag = served.etag
        return response


def _read_viewer(module: str) -> dict[str, _File] | None:
    """Swagger UI's files from the viewer package, found without importing it (only its files
    are used); None when it is not installed or lacks one of them."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / "static"
    try:
        return {
            name: _file((directory / name).read_bytes(), kind)
            for name, kind in _VIEWER_FILES.items()
        }
    except OSError:
        return None

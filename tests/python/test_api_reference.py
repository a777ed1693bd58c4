"""The admin API reference at /api/v1/docs: Swagger UI from the installed swagger-ui-py package
with a page and an initializer of our own, served by a real server without a token, with
nothing from elsewhere; and in Debian's headless Chromium, the rendered operations of the
OpenAPI document, one of them tried with a token."""

from __future__ import annotations

import http.client
import importlib.util
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from sztp_server.admin.handlers import api_reference
from sztp_testing import RunningServer, running_server
from test_admin_api import make_api
from test_dashboard import Browser, browser  # noqa: F401  (the module-scoped Chromium)

OWN = Path(api_reference.__file__).parents[1] / "api_reference"
FILES = {
    "/api/v1/docs": "text/html",
    "/api/v1/docs/api-reference.js": "text/javascript",
    "/api/v1/docs/swagger-ui-bundle.js": "text/javascript",
    "/api/v1/docs/swagger-ui.css": "text/css",
    "/api/v1/docs/favicon-32x32.png": "image/png",
}
ABSOLUTE_URL = re.compile(r"https?://", re.IGNORECASE)
# Records every CSP violation; added through DevTools, so it runs before the page's scripts.
RECORD_VIOLATIONS = (
    "window.violations = [];"
    "document.addEventListener('securitypolicyviolation', event =>"
    " window.violations.push(event.violatedDirective + ' ' + event.blockedURI));"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


def get(server: RunningServer, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(f"{server.admin_url}{path}", timeout=30, **kwargs)


def viewer_file(name: str) -> bytes:
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None and spec.submodule_search_locations, "install swagger-ui-py"
    return (Path(next(iter(spec.submodule_search_locations))) / "static" / name).read_bytes()


def test_the_page_and_its_files_are_served_without_a_token(server: RunningServer) -> None:
    for path, kind in FILES.items():
        answer = get(server, path)
        assert answer.status_code == 200, path
        assert answer.headers["Content-Type"].split(";")[0] == kind, path
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Cache-Control"] == "no-cache"
        assert answer.headers["ETag"]
        head = requests.head(f"{server.admin_url}{path}", timeout=30)
        assert head.status_code == 200 and head.headers["ETag"] == answer.headers["ETag"]
    # Swagger UI's files are the installed package's, byte for byte; the page's are ours.
    assert get(server, "/api/v1/docs/swagger-ui-bundle.js").content == viewer_file(
        "swagger-ui-bundle.js"
    )
    assert get(server, "/api/v1/docs/swagger-ui.css").content == viewer_file("swagger-ui.css")
    assert get(server, "/api/v1/docs").content == (OWN / "index.html").read_bytes()
    # The data stays behind the token.
    assert get(server, "/api/v1/devices").status_code == 401


def test_the_page_runs_only_its_own_scripts(server: RunningServer) -> None:
    policy = get(server, "/api/v1/docs").headers["Content-Security-Policy"]
    directives = dict(item.strip().partition(" ")[::2] for item in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["img-src"] == "'self' data:"
    assert directives["frame-ancestors"] == "'none'"
    page = (OWN / "index.html").read_text(encoding="utf-8")
    # No inline script nor event handler attribute.
    assert "<script>" not in page and not re.search(r"\son\w+=", page)
    # Every script and style sheet the page names is one the server serves.
    named = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {f"/api/v1/{name}" for name in named} == set(FILES) - {"/api/v1/docs"}


def test_nothing_is_loaded_from_elsewhere(server: RunningServer) -> None:
    page = get(server, "/api/v1/docs").text
    initializer = get(server, "/api/v1/docs/api-reference.js").text
    for text in (page, initializer):
        assert not ABSOLUTE_URL.search(text)
    assert '"openapi.json"' in initializer
    assert "validatorUrl: null" in initializer  # Swagger UI's default asks an online validator
    # The style sheet imports nothing and its images are inline data (whose SVG names its XML
    # namespace with an http URL: not a load).
    css = get(server, "/api/v1/docs/swagger-ui.css").text
    assert "@import" not in css
    targets = re.findall(r"url\(\s*['\"]?([^'\")]*)", css)
    assert targets and all(target.startswith("data:") for target in targets)


def test_only_the_listed_files_are_served(server: RunningServer) -> None:
    for name in ("nope.js", "swagger-ui.js", "swagger-initializer.js", "LICENSE", "index.html"):
        answer = get(server, f"/api/v1/docs/{name}")
        assert answer.status_code == 404, name
        assert answer.json()["error"]["code"] == "not-found"
    # Out of the directory, as sent rather than as a client would normalize it: public under
    # the reference's prefix, these reach no file and no other route.
    url = urlsplit(server.admin_url)
    for raw in (
        "/api/v1/docs/../devices",
        "/api/v1/docs/./../devices",
        "/api/v1/docs/..%2Fdevices",
        "/api/v1/docs/%2E%2E%2Fdevices",
        "/api/v1/docs/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/docs/%2E%2E/handlers/__init__.py",
    ):
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
        try:
            connection.request("GET", raw)
            answer = connection.getresponse()
            status, body = answer.status, json.loads(answer.read())
        finally:
            connection.close()
        assert status == 404 and body["error"]["code"] == "not-found", raw
    # Reading is public, nothing else is.
    assert requests.post(f"{server.admin_url}/api/v1/docs", timeout=30).status_code == 401
    moved = get(server, "/api/v1/docs/", allow_redirects=False)
    assert moved.status_code == 301 and moved.headers["Location"] == "/api/v1/docs"


def test_an_unchanged_file_is_not_sent_again(server: RunningServer) -> None:
    first = get(server, "/api/v1/docs/swagger-ui-bundle.js")
    again = get(
        server,
        "/api/v1/docs/swagger-ui-bundle.js",
        headers={"If-None-Match": first.headers["ETag"]},
    )
    assert again.status_code == 304 and again.content == b""
    other = get(server, "/api/v1/docs/swagger-ui-bundle.js", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200 and other.content == first.content


def test_without_the_viewer_package_the_page_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_reference, "VIEWER_MODULE", "sztp_test_no_such_viewer")
    with contextmanager(make_api)(tmp_path) as api:
        for path in ("/api/v1/docs", "/api/v1/docs/swagger-ui-bundle.js"):
            answer = api.get(path, auth=False)
            assert answer.status_code == 503, path
            assert "swagger-ui-py" in answer.json()["error"]["message"]
        # The API itself does not need it.
        assert api.get("/api/v1/openapi.json", auth=False).status_code == 200
        assert api.get("/api/v1/devices").status_code == 200


def test_the_page_renders_every_operation_offline(
    browser: Browser,  # noqa: F811
    server: RunningServer,
) -> None:
    # Through chromedriver's Chrome DevTools endpoint: the recorder runs before the page does.
    browser._call(
        "POST",
        "/goog/cdp/execute",
        {"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": RECORD_VIOLATIONS}},
    )
    browser.open(f"{server.admin_url}/api/v1/docs")
    browser.wait_for(lambda: browser.find_all(".opblock"), "no operation was rendered")
    document = get(server, "/api/v1/openapi.json").json()
    shown = browser.run(
        "return [...document.querySelectorAll('.opblock-summary-path')]"
        ".map(path => path.dataset.path)"
    )
    assert set(shown) == set(document["paths"])
    assert "/api/v1/devices" in shown
    operations = sum(len(methods) for methods in document["paths"].values())
    assert len(browser.find_all(".opblock")) == operations
    assert not browser.find_all(".errors-wrapper")
    browser.screenshot("api-reference")

    # Everything it fetched came from this server; nothing it tried was refused.
    fetched = browser.run("return performance.getEntriesByType('resource').map(e => e.name)")
    assert f"{server.admin_url}/api/v1/openapi.json" in fetched
    assert all(url.startswith((f"{server.admin_url}/", "data:")) for url in fetched), fetched
    assert browser.run("return window.violations") == []

    # An integrator tries an operation with a token.
    browser.click(browser.find(".btn.authorize"))
    browser.type(browser.find(".auth-container input"), server.token)
    browser.click(browser.find(".auth-btn-wrapper .authorize"))
    browser.click(browser.find(".btn-done"))
    operation = "#operations-devices-list_devices"
    browser.click(browser.find(f"{operation} .opblock-summary-control"))
    browser.click(browser.wait_for(lambda: browser.find(f"{operation} .try-out__btn"), "no try"))
    browser.click(browser.wait_for(lambda: browser.find(f"{operation} .execute"), "no execute"))
    status = browser.wait_for(
        lambda: browser.text(
            browser.find(f"{operation} .live-responses-table tbody .response-col_status")
        ),
        "the operation was not answered",
    )
    assert status.strip() == "200"
    assert browser.run("return window.violations") == []

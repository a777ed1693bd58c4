"""The fleet dashboard in a real browser: Debian's headless Chromium, driven through its
chromedriver (W3C WebDriver over HTTP), against a running server. Screenshots are kept under
build/test-artifacts/."""

from __future__ import annotations

import base64
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from sztp.labpki import write_lab_pki
from sztp.passwords import generate_activation_code
from sztp.protocol import restconf
from sztp.protocol.restconf import ProgressReport, WireFormat
from sztp_testing import (
    ROOT,
    RunningServer,
    basic,
    free_port,
    lab_voucher,
    running_server,
    simulate_lab_device,
)

ARTIFACTS = ROOT / "build" / "test-artifacts"
DASHBOARD = ROOT / "server" / "sztp_server" / "admin" / "dashboard"
REPORT_PATH = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)
GET_DATA_PATH = restconf.operation_path("/restconf", restconf.RPC_GET_BOOTSTRAPPING_DATA)
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
HOSTILE = "<img src=x onerror=\"document.title='pwned'\"> disk full"
DISK_CHECK = "#!/bin/sh\necho 'disk /dev/nvme0n1 not found' >&2\nexit 3\n"
STATUSES = ("not-seen", "in-progress", "rebooting", "complete", "failed", "stalled")


class Browser:
    """One headless Chromium session, the few WebDriver commands these tests need."""

    def __init__(self, driver: str, session: str) -> None:
        self._base = f"{driver}/session/{session}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = requests.request(method, self._base + path, json=body, timeout=60)
        value = answer.json()["value"]
        if answer.status_code != 200:
            raise AssertionError(f"WebDriver {method} {path}: {value}")
        return value

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return str(self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT])

    def find_all(self, css: str) -> list[str]:
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [str(item[ELEMENT]) for item in found]

    def text(self, element: str) -> str:
        return str(self._call("GET", f"/element/{element}/text"))

    def type(self, element: str, keys: str) -> None:
        self._call("POST", f"/element/{element}/value", {"text": keys})

    def click(self, element: str) -> None:
        self._call("POST", f"/element/{element}/click", {})

    def run(self, script: str) -> Any:
        return self._call("POST", "/execute/sync", {"script": script, "args": []})

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"dashboard-{name}.png"
        path.write_bytes(base64.b64decode(self._call("GET", "/screenshot")))
        return path

    def wait_for(self, check: Callable[[], Any], what: str, seconds: float = 20) -> Any:
        deadline = time.monotonic() + seconds
        while True:
            try:
                found = check()
            except AssertionError:
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                self.screenshot("timeout")
                raise AssertionError(what)
            time.sleep(0.2)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    driver = shutil.which("chromedriver")
    chromium = shutil.which("chromium")
    assert driver and chromium, "install Debian's chromium and chromium-driver (make test does)"
    port = free_port()
    process = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/status", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "chromedriver did not start"
                time.sleep(0.1)
        profile = tmp_path_factory.mktemp("chromium")
        options = {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1366,768", f"--user-data-dir={profile}",
            ],
        }  # fmt: skip
        created = requests.post(
            f"{url}/session",
            json={"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}},
            timeout=60,
        ).json()["value"]
        session = created["sessionId"]
        yield Browser(url, session)
        requests.delete(f"{url}/session/{session}", timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=30)


def report(
    server: RunningServer, ca: Path, serial: str, code: str, kind: str, message: str
) -> None:
    answer = requests.post(
        f"{server.device_url}{REPORT_PATH}",
        data=restconf.encode_report_progress_input(ProgressReport(kind, message), WireFormat.JSON),
        headers={"Content-Type": WireFormat.JSON.media_type, "Authorization": basic(serial, code)},
        timeout=30,
        verify=str(ca),
    )
    assert answer.status_code == 204


def funnel(browser: Browser) -> dict[str, int]:
    shown = {}
    for status in STATUSES:
        count = browser.find(f'#funnel li[data-status="{status}"] .count')
        shown[status] = int(browser.text(count))
    return shown


def test_the_dashboard_shows_the_fleet_and_follows_it_live(
    browser: Browser, tmp_path: Path
) -> None:
    lab = write_lab_pki(tmp_path / "pki", ["SN-SIM"])
    codes = {f"SN-{number}": generate_activation_code() for number in range(1, 5)}
    devices: dict[str, dict[str, Any]] = {
        serial: {"activation_code": code, "profile": "day0", "model": "DPU-A"}
        for serial, code in codes.items()
    }
    devices["SN-4"].pop("profile")
    for serial, site in (("SN-1", "fra1"), ("SN-2", "fra1"), ("SN-3", "ams2")):
        devices[serial]["site"] = site
    devices["SN-SIM"] = {
        "profile": "checked",
        "model": "DPU-B",
        "site": "ams2",
        "voucher": base64.b64encode(lab_voucher(lab, "SN-SIM")).decode(),
    }
    day0 = {"type": "onboarding", "configuration": "hostname x\n", "signing": "when-requested"}
    resources = {
        **lab.trust_resources(),
        "profile": {"day0": day0, "checked": {**day0, "pre_configuration_script": DISK_CHECK}},
        "device": devices,
    }
    with running_server(tmp_path / "server", lab=lab) as server:
        server.apply(resources)
        report(
            server, lab.tls_ca.certificate, "SN-1", codes["SN-1"], "bootstrap-initiated", "starting"
        )
        report(server, lab.tls_ca.certificate, "SN-1", codes["SN-1"], "bootstrap-complete", "done")
        report(
            server, lab.tls_ca.certificate, "SN-3", codes["SN-3"], "bootstrap-initiated", "starting"
        )

        browser.open(f"{server.admin_url}/dashboard")
        browser.type(browser.find("#token"), server.token)
        browser.click(browser.find("#login-form button[type=submit]"))
        expected = server.client().fleet_status()["counts"]
        browser.wait_for(lambda: funnel(browser) == expected, "the funnel differs from the API")
        assert expected["complete"] == 1 and expected["in-progress"] == 1
        assert expected["not-seen"] == 3
        rows = [browser.text(row) for row in browser.find_all("#by-profile tbody tr")]
        assert [row.split() for row in rows] == [
            ["checked", "1", "0", "0", "0", "0", "0"],
            ["day0", "1", "1", "0", "1", "0", "0"],
            ["(none)", "1", "0", "0", "0", "0", "0"],
        ]
        sites = [browser.text(row).split() for row in browser.find_all("#by-site tbody tr")]
        assert sites == [
            ["ams2", "1", "1", "0", "0", "0", "0"],
            ["fra1", "1", "0", "0", "1", "0", "0"],
            ["(none)", "1", "0", "0", "0", "0", "0"],
        ]
        browser.screenshot("fleet")

        # A simulated device fails while the page is open: it shows up without a reload, with
        # the failing step and its message.
        result = simulate_lab_device(
            lab, server.device_url, "SN-SIM", tmp_path / "device", run_scripts=True
        )
        assert not result.succeeded
        failed = browser.wait_for(
            lambda: [
                text
                for text in map(browser.text, browser.find_all("#failed tbody tr"))
                if "SN-SIM" in text
            ],
            "the failed device did not appear",
        )
        assert "pre-script-error" in failed[0] and "disk /dev/nvme0n1 not found" in failed[0]
        browser.wait_for(lambda: funnel(browser)["failed"] == 1, "the failed count is not shown")

        # A device's own words are shown as text.
        report(server, lab.tls_ca.certificate, "SN-3", codes["SN-3"], "bootstrap-error", HOSTILE)
        browser.wait_for(
            lambda: HOSTILE in browser.text(browser.find("#failed tbody")),
            "the message was not shown as text",
        )
        assert browser.run("return document.title") == "sztp fleet"
        assert browser.run("return document.querySelectorAll('#failed img').length") == 0

        # A refused request, with its reason.
        wrong = requests.post(
            f"{server.device_url}{GET_DATA_PATH}",
            headers={
                "Content-Type": WireFormat.JSON.media_type,
                "Authorization": basic("SN-2", generate_activation_code()),
            },
            timeout=30,
            verify=str(lab.tls_ca.certificate),
        )
        assert wrong.status_code == 401
        browser.wait_for(
            lambda: "wrong-secret" in browser.text(browser.find("#refused tbody")),
            "the refused request did not appear",
        )

        # The simulated device's timeline, from its button (a button: reachable by keyboard).
        buttons = browser.find_all("#failed tbody button.serial")
        sim = next(button for button in buttons if browser.text(button) == "SN-SIM")
        browser.click(sim)
        timeline = browser.wait_for(
            lambda: browser.text(browser.find("#device-attempts")), "no timeline"
        )
        assert "Attempt 1" in timeline and "pre-script-error" in timeline
        assert "+" in timeline  # the time since the previous report
        assert len(browser.find_all("#calendar tbody tr")) == 13  # weeks, none expired before
        assert browser.run("return document.activeElement.id") == "device-close"
        browser.screenshot("failed-device")


def test_the_page_is_self_contained_and_needs_a_token_for_data(tmp_path: Path) -> None:
    with running_server(tmp_path / "server") as server:
        page = requests.get(f"{server.admin_url}/dashboard/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        policy = page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert requests.get(f"{server.admin_url}/api/v1/status", timeout=10).status_code == 401
    for asset in DASHBOARD.iterdir():
        text = asset.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text, asset.name

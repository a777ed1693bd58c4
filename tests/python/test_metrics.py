"""Prometheus metrics: what a running server exposes, checked by Prometheus's own promtool, and
the alert rules and Grafana dashboard under monitoring/, which must name only metrics the
server declares and parse as Prometheus parses them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import sztp
from sztp.passwords import generate_activation_code
from sztp.protocol import restconf
from sztp.protocol.restconf import ProgressReport, WireFormat
from sztp_server.metrics import DEVICE_HIDDEN_LABELS, Metrics, metric_names
from sztp_testing import RunningServer, basic, running_server

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "sztp-alerts.yml"
DASHBOARD = MONITORING / "sztp-dashboard.json"
REPORT_PATH = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)
GET_DATA_PATH = restconf.operation_path("/restconf", restconf.RPC_GET_BOOTSTRAPPING_DATA)
DURATION = "sztp_request_duration_seconds"
_METRIC_NAME = re.compile(r"\bsztp_[a-z_]+\b")


def promtool(*arguments: str, stdin: str | None = None, cwd: Path | None = None) -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool not found: install Debian's prometheus package (make test does)"
    result = subprocess.run(
        [binary, *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def samples(page: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(page) for sample in family.samples]


def value(page: str, name: str, **labels: str) -> float:
    """The value of the one sample `name` with exactly these labels; 0 without one."""
    found = [s.value for s in samples(page) if s.name == name and s.labels == labels]
    assert len(found) <= 1, found
    return found[0] if found else 0.0


# -- the counts ----------------------------------------------------------------------------


def test_histograms_add_up_across_processes_and_buckets_are_cumulative() -> None:
    main, worker = Metrics(), Metrics()
    for seconds in (0.0004, 0.003, 0.003):
        main.observe(DURATION, seconds, rpc="report-progress", outcome="served")
    for seconds in (0.2, 11.0):
        worker.observe(DURATION, seconds, rpc="report-progress", outcome="served")
    worker.observe(DURATION, 0.001, rpc="get-bootstrapping-data", outcome="refused")
    main.count_elsewhere(worker.counts())
    page = main.render()
    served = {"rpc": "report-progress", "outcome": "served"}
    expected = {"0.001": 1, "0.0025": 1, "0.005": 3, "0.1": 3, "0.25": 4, "10.0": 4, "+Inf": 5}
    for bound, count in expected.items():
        assert value(page, f"{DURATION}_bucket", **served, le=bound) == count, bound
    assert value(page, f"{DURATION}_count", **served) == 5
    assert value(page, f"{DURATION}_sum", **served) == pytest.approx(11.2064)
    # A value on a bound is counted in that bound's bucket (le: less than or equal).
    refused = {"rpc": "get-bootstrapping-data", "outcome": "refused"}
    assert value(page, f"{DURATION}_bucket", **refused, le="0.001") == 1
    promtool("check", "metrics", stdin=page)


def test_the_devices_network_sees_no_reasons_and_no_build() -> None:
    metrics = Metrics()
    for reason in ("unknown-serial", "wrong-secret", "wrong-secret"):
        metrics.increment(
            "sztp_refused_requests_total", rpc="get-bootstrapping-data", reason=reason
        )
    operator, device = metrics.render(), metrics.render(DEVICE_HIDDEN_LABELS)
    refused = "sztp_refused_requests_total"
    assert value(operator, refused, rpc="get-bootstrapping-data", reason="wrong-secret") == 2
    assert value(device, refused, rpc="get-bootstrapping-data") == 3
    assert "wrong-secret" not in device and "unknown-serial" not in device
    assert [s.labels["version"] for s in samples(operator) if s.name == "sztp_build_info"] == [
        sztp.__version__
    ]
    assert "sztp_build_info" not in device


# -- a running server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    directory = tmp_path_factory.mktemp("metrics")
    with running_server(directory, settings={"monitoring_listeners": "both"}) as running:
        yield running


def admin_page(server: RunningServer, accept: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {server.token}"}
    if accept is not None:
        headers["Accept"] = accept
    return requests.get(f"{server.admin_url}/metrics", headers=headers, timeout=10)


def test_a_running_server_shows_durations_devices_and_its_build(server: RunningServer) -> None:
    code = generate_activation_code()
    server.apply({"device": {"SN-M1": {"activation_code": code}, "SN-M2": {}}})
    report = restconf.encode_report_progress_input(
        ProgressReport("bootstrap-initiated", "starting"), WireFormat.JSON
    )
    json_type = {"Content-Type": WireFormat.JSON.media_type}
    served = requests.post(
        f"{server.device_url}{REPORT_PATH}",
        data=report,
        headers={**json_type, "Authorization": basic("SN-M1", code)},
        timeout=30,
    )
    assert served.status_code == 204
    refused = requests.post(
        f"{server.device_url}{GET_DATA_PATH}",
        headers={**json_type, "Authorization": basic("SN-M1", generate_activation_code())},
        timeout=30,
    )
    assert refused.status_code == 401

    response = admin_page(server)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    page = response.text
    promtool("check", "metrics", stdin=page)
    for rpc, outcome in (("report-progress", "served"), ("get-bootstrapping-data", "refused")):
        assert value(page, f"{DURATION}_count", rpc=rpc, outcome=outcome) == 1, (rpc, outcome)
        assert 0 < value(page, f"{DURATION}_sum", rpc=rpc, outcome=outcome) < 10
    # The gauge counts as the status API does.
    counts = server.client().fleet_status()["counts"]
    shown = {s.labels["status"]: s.value for s in samples(page) if s.name == "sztp_devices"}
    assert shown == counts and shown["in-progress"] == 1 and shown["not-seen"] == 1
    (build,) = [s for s in samples(page) if s.name == "sztp_build_info"]
    assert build.labels["version"] == sztp.__version__ and build.value == 1

    # OpenMetrics when asked for; a version no one can compare is not an error.
    open_metrics = admin_page(server, "application/openmetrics-text; version=1.0.0")
    assert open_metrics.headers["Content-Type"].startswith("application/openmetrics-text")
    parsed = list(openmetrics_parser.text_string_to_metric_families(open_metrics.text))
    assert {family.name for family in parsed} >= {"sztp_requests", DURATION, "sztp_devices"}
    # A device worker's page shows the other processes' counts as they last sent them.
    deadline = time.monotonic() + 10
    while True:
        odd = requests.get(
            f"{server.device_url}/metrics",
            headers={"Accept": "text/plain; version=abc"},
            timeout=10,
        )
        assert odd.status_code == 200 and "version=abc" not in odd.headers["Content-Type"]
        device_page = odd.text
        summed = value(device_page, "sztp_refused_requests_total", rpc="get-bootstrapping-data")
        if summed or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert summed == 1
    promtool("check", "metrics", stdin=device_page)
    assert "sztp_devices" not in device_page and "sztp_build_info" not in device_page


def test_without_a_token_the_admin_page_is_refused(server: RunningServer) -> None:
    assert requests.get(f"{server.admin_url}/metrics", timeout=10).status_code == 401


# -- alert rules and dashboard -------------------------------------------------------------


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    promtool("check", "rules", str(ALERTS))
    promtool("test", "rules", "sztp-alerts.test.yml", cwd=MONITORING)


def dashboard_queries() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", ())
        if "expr" in target
    ]


def test_dashboard_and_rules_name_only_declared_metrics() -> None:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    queries = dashboard_queries()
    assert len(queries) >= 10
    named = {name for expr in [*expressions, *queries] for name in _METRIC_NAME.findall(expr)}
    assert named and named <= metric_names(), named - metric_names()
    # Every metric the server declares is on the dashboard.
    histogram_parts = {name for name in metric_names() if name.endswith(("_sum", "_count"))}
    assert metric_names() - histogram_parts <= named, metric_names() - histogram_parts - named


def test_dashboard_queries_parse_as_prometheus_parses_them(tmp_path: Path) -> None:
    """Each query becomes a recording rule, which promtool parses (Grafana's variables
    replaced by what they stand for)."""
    rules = [
        {
            "record": f"sztp:dashboard_query_{number}",
            "expr": query.replace("$__rate_interval", "1m").replace("$job", "sztp-server"),
        }
        for number, query in enumerate(dashboard_queries())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(path))


def test_the_scrape_job_on_the_server_page_passes_promtool(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "server.md").read_text(encoding="utf-8")
    (block,) = [
        found
        for found in re.findall(r"```yaml\n(.*?)```", page, re.DOTALL)
        if "scrape_configs" in found
    ]
    config = yaml.safe_load(block)
    config["rule_files"] = [str(ALERTS)]
    job = config["scrape_configs"][0]
    assert job["job_name"] == "sztp-server"  # what the alert rules select
    for key, holder in (("ca_file", job["tls_config"]), ("credentials_file", job["authorization"])):
        stand_in = tmp_path / Path(holder[key]).name
        stand_in.write_text("stand-in\n")
        holder[key] = str(stand_in)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    promtool("check", "config", str(path))

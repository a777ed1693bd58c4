"""The compose lab, built and run for real with podman: container/Containerfile's server and
tools images and the services' images from a locally built Debian base (no registry is
reachable here), then container/compose.yaml under podman-compose until the simulated device
has onboarded. What an operator relies on is asserted: the device ends `complete`, on
PostgreSQL; the server runs as its own user, its health check passes, SIGTERM stops it cleanly
and its state survives a restart.

Needs root, podman, podman-compose and the base image (`make container` provides them);
SZTP_CONTAINER_KEEP=1 leaves the lab running for a look.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "container" / "compose.yaml"
BASE_IMAGE = os.environ.get("SZTP_BASE_IMAGE", "localhost/sztp-debian-systemd:bookworm")
TAG = "e2e"
SERVER_IMAGES = {"server": "localhost/sztp-server", "tools": "localhost/sztp-tools"}
SERVICE_IMAGES = {
    "postgres": "localhost/sztp-lab-postgres",
    "kea": "localhost/sztp-lab-kea",
    "nginx": "localhost/sztp-lab-nginx",
}
SERIAL = "SN-0001"
SERVICE_UID = "10001"  # container/Containerfile's sztp user
BUILD_TIMEOUT = 1200
DEVICE_TIMEOUT = 300
STOP_GRACE = 20
SZTPCTL = str(Path(sys.executable).with_name("sztpctl"))


def podman(*args: str, check: bool = True, timeout: float = 120) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout.strip()


@dataclass(frozen=True)
class Lab:
    project: str
    compose: list[str]
    environ: dict[str, str]
    admin_port: str

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def volume(self, name: str) -> Path:
        """Where the compose volume `name` is on this host (rootful podman)."""
        volume = f"{self.project}_{name}"
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume))

    def sztpctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """sztpctl on this host, against the admin listener compose publishes on loopback."""
        environ = {
            **os.environ,
            "SZTP_SERVER": f"https://localhost:{self.admin_port}",
            "SZTP_TOKEN_FILE": str(self.volume("admin-token") / "admin-token"),
            "SZTP_CA_BUNDLE": str(self.volume("lab") / "pki" / "tls" / "ca.pem"),
        }
        return subprocess.run(
            [SZTPCTL, *args], capture_output=True, text=True, env=environ, timeout=60
        )


def _build(containerfile: str, targets: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """One process building `targets` of `containerfile` in turn (they share its stages)."""
    commands = [
        f"podman build --format docker --build-arg BASE_IMAGE={BASE_IMAGE} --target {target} "
        f"-t {image}:{TAG} -f {containerfile} ."
        for target, image in targets.items()
    ]
    with log.open("wb") as output:
        return subprocess.Popen(
            ["sh", "-ec", " && ".join(commands)], cwd=ROOT, stdout=output, stderr=output
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    for tool in ("podman", "podman-compose"):
        assert shutil.which(tool), f"{tool} is missing: `make container` installs it"
    exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False)
    assert exists.returncode == 0, f"no base image {BASE_IMAGE}: `make test-image` builds it"
    work = tmp_path_factory.mktemp("compose-lab")
    # This host's hard limit on open files is below podman's default for containers.
    conf = work / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]\n')
    builds = {
        "server": _build("container/Containerfile", SERVER_IMAGES, work / "build-server.log"),
        "services": _build(
            "container/services.Containerfile", SERVICE_IMAGES, work / "build-services.log"
        ),
    }
    for name, process in builds.items():
        code = process.wait(timeout=BUILD_TIMEOUT)
        log = (work / f"build-{name}.log").read_text(errors="replace")
        assert code == 0, f"{name} images failed to build:\n{log[-4000:]}"
    subprocess.run(
        ["sh", str(ROOT / "container" / "make-secrets.sh"), str(work / "secrets")],
        check=True,
        capture_output=True,
    )
    project = f"sztp-lab-{secrets.token_hex(3)}"
    admin_port = str(_free_port())
    lab = Lab(
        project=project,
        compose=["podman-compose", "-p", project, "-f", str(COMPOSE_FILE)],
        environ={
            **os.environ,
            "CONTAINERS_CONF": str(conf),
            "SZTP_VERSION": TAG,
            "SZTP_LAB_SECRETS": str(work / "secrets"),
            "SZTP_ADMIN_PORT": admin_port,
        },
        admin_port=admin_port,
    )
    started = subprocess.run(
        [*lab.compose, "up", "-d"], env=lab.environ, capture_output=True, text=True, timeout=300
    )
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        yield lab
    finally:
        if os.environ.get("SZTP_CONTAINER_KEEP") != "1":
            subprocess.run(
                [*lab.compose, "down", "-v"], env=lab.environ, capture_output=True, timeout=300
            )


def _log(container: str) -> str:
    """What the container printed, both streams (podman logs keeps them apart)."""
    shown = subprocess.run(
        ["podman", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return shown.stdout


def _logs(lab: Lab, *services: str) -> str:
    return "\n".join(
        f"--- {service}\n{_log(lab.container(service))[-3000:]}" for service in services
    )


def _device_status(lab: Lab) -> dict[str, object]:
    shown = lab.sztpctl("device", "status", SERIAL, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def test_the_simulated_device_onboards_from_dhcp_to_complete(lab: Lab) -> None:
    device = lab.container("device")
    exit_code = podman("wait", device, timeout=DEVICE_TIMEOUT)
    logs = _logs(lab, "device", "apply", "sztp-server", "kea")
    assert exit_code == "0", logs
    device_log = _log(device)
    assert "option 143 from DHCP" in device_log  # Kea's lease named the server
    assert "bootstrap-complete" in device_log
    assert f"bootstrap complete: {SERIAL} runs LabOS 1.2" in device_log
    status = _device_status(lab)
    assert status["status"] == "complete", status


def test_the_server_keeps_its_state_in_postgresql(lab: Lab) -> None:
    tables = podman(
        "exec",
        lab.container("postgres"),
        "psql",
        "-h",
        "/run/postgresql",
        "-U",
        "sztp",
        "-d",
        "sztp",
        "-tAc",
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    assert int(tables) > 0
    config = podman("exec", lab.container("sztp-server"), "env")
    assert "SZTP_SERVER_DATABASE_URL_FILE=/run/secrets/database-url" in config
    assert "hunter" not in config and "postgresql://" not in config  # the URL stays in its file


def test_the_server_runs_as_its_own_user_and_reports_healthy(lab: Lab) -> None:
    server = lab.container("sztp-server")
    assert podman("exec", server, "id", "-u") == SERVICE_UID
    healthy = subprocess.run(["podman", "healthcheck", "run", server], capture_output=True)
    assert healthy.returncode == 0, healthy.stderr
    # Every process of the server, not only the first.
    owners = podman("top", server, "user", "args").splitlines()[1:]
    assert owners and all(line.split()[0] in {"sztp", SERVICE_UID} for line in owners), owners


def test_sigterm_stops_the_server_cleanly_and_its_state_survives(lab: Lab) -> None:
    server = lab.container("sztp-server")
    token_before = (lab.volume("admin-token") / "admin-token").read_text()
    started = time.monotonic()
    podman("stop", "-t", str(STOP_GRACE), server, timeout=STOP_GRACE + 30)
    stopped_in = time.monotonic() - started
    # 0: sztp-server ended on SIGTERM; podman's SIGKILL after the grace period gives 137.
    assert podman("inspect", "--format", "{{.State.ExitCode}}", server) == "0"
    assert stopped_in < STOP_GRACE
    podman("start", server)
    deadline = time.monotonic() + 60
    while subprocess.run(["podman", "healthcheck", "run", server], capture_output=True).returncode:
        assert time.monotonic() < deadline, _logs(lab, "sztp-server")
        time.sleep(1)
    assert (lab.volume("admin-token") / "admin-token").read_text() == token_before
    assert _device_status(lab)["status"] == "complete"

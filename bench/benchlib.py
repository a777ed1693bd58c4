"""Shared by the benchmarks: a real sztp-server subprocess and RESULTS.md section updates."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from sztp.labpki import LabPki
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def console_script(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        sys.exit(f"{name} is not installed beside this Python; run `make test` first")
    return path


@dataclass(frozen=True)
class Server:
    admin_url: str
    token: str
    urls: dict[str, str]
    process_id: int


@contextmanager
def running_server(
    work: Path,
    device_listeners: dict[str, dict[str, Any]],
    *,
    server_log: Path | None = None,
    **settings: Any,
) -> Iterator[Server]:
    """sztp-server on SQLite in `work`; `device_listeners` maps a name to listener settings
    (host and port are filled in). The server's log goes to `server_log`, else to stderr."""
    listeners = {
        name: {"host": "127.0.0.1", "port": free_port(), **extra}
        for name, extra in device_listeners.items()
    }
    admin_port = free_port()
    config = {
        "database_url": f"sqlite:///{work / 'sztp.db'}",
        "device_listeners": list(listeners.values()),
        "admin_listener": {"host": "127.0.0.1", "port": admin_port},
        "admin_token_file": str(work / "admin-token"),
        "log_level": "warning",
        # One process, as every figure before `workers` was measured, unless a bench says.
        "workers": 1,
        **settings,
    }
    (work / "server.yaml").write_text(json.dumps(config))
    log = server_log.open("ab") if server_log is not None else None
    process = subprocess.Popen(
        [console_script("sztp-server"), "run", "-c", str(work / "server.yaml")], stderr=log
    )
    admin_url = f"http://127.0.0.1:{admin_port}"
    urls = {
        name: f"{'https' if 'tls_cert' in listener else 'http'}://127.0.0.1:{listener['port']}"
        for name, listener in listeners.items()
    }
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if (work / "admin-token").exists() and requests.get(
                    f"{admin_url}/healthz", timeout=1
                ).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                sys.exit("sztp-server did not start")
            time.sleep(0.1)
        yield Server(admin_url, (work / "admin-token").read_text().strip(), urls, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        if log is not None:
            log.close()


def lab_vouchers(lab: LabPki, serials: Iterable[str]) -> dict[str, str]:
    """serial → base64 voucher signed by the lab's MASA for the lab's owner."""
    masa = lab.masa.load()
    owner_ca = pki.load_certificates_pem(lab.owner_ca.certificate.read_bytes())[0]
    return {
        serial: base64.b64encode(sign_voucher(create_voucher(serial, owner_ca), masa)).decode()
        for serial in serials
    }


def lab_fleet(lab: LabPki, devices: dict[str, dict[str, Any]], **profile: Any) -> dict[str, Any]:
    """Resources trusting the lab, one image and the onboarding profile `day0` (with
    `profile`'s fields on top), and `devices`."""
    return {
        **lab.trust_resources(),
        "image": {
            "os-2": {
                "os_name": "LabOS",
                "os_version": "2.0",
                "download_uris": ["https://files.lab.example/os-2.img"],
                "sha256": hashlib.sha256(b"image").hexdigest(),
            }
        },
        "profile": {"day0": {"type": "onboarding", "image": "os-2", **profile}},
        "device": devices,
    }


def post_state(admin_url: str, token: str, resources: dict[str, Any]) -> float:
    """Apply `resources` through one `POST /api/v1/state`; the seconds it took."""
    started = time.perf_counter()
    response = requests.post(
        f"{admin_url}/api/v1/state",
        json={"resources": resources},
        headers={"Authorization": f"Bearer {token}"},
        timeout=900,
    )
    response.raise_for_status()
    return time.perf_counter() - started


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")


def table_section(
    heading: str, measured: str, columns: Sequence[str], rows: Iterable[str], where: str
) -> str:
    """A RESULTS.md section: how it was measured, a table of `rows`, where the time goes."""
    return "\n".join(
        [
            heading,
            "",
            measured,
            "",
            "| " + " | ".join(columns) + " |",
            "|" + "---|" * len(columns),
            *rows,
            "",
            where,
            "",
        ]
    )


def write_section(results: Path, heading: str, section: str) -> None:
    """Replace one benchmark's section of RESULTS.md, keeping the others."""
    text = results.read_text() if results.exists() else "# Benchmark results\n\n"
    section = section.rstrip("\n") + "\n\n"
    start = text.find(heading)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    results.write_text(text.rstrip("\n") + "\n")


def publish(section: str, results: Path | None, heading: str) -> None:
    """Print a benchmark's section and, when given a RESULTS.md (--write), update it there."""
    print(section)
    if results is not None:
        write_section(results, heading, section)

"""sztp-server start-up and TLS reload, on real sockets: every listener is bound before the
first admin token is written, and a listener that cannot start, or a certificate that cannot
be reloaded, is reported with the listener's name and the address or file at fault."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from sztp.labpki import LabPki, write_lab_pki
from sztp_testing import SZTP_SERVER, free_port, run_sztp_server, start_server


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("startup") / "pki", ["SN-U1"])


@contextlib.contextmanager
def occupied_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another socket is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def write_config(directory: Path, device: dict[str, object], admin: dict[str, object]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "server.yaml"
    config.write_text(
        json.dumps(
            {
                "database_url": f"sqlite:///{directory / 'state' / 'sztp.db'}",
                "device_listeners": [device],
                "admin_listener": admin,
                "admin_token_file": str(directory / "state" / "admin-token"),
            }
        )
    )
    return config


def log_entries(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.parametrize("taken", ["device", "admin"])
def test_a_port_in_use_stops_the_server_before_the_token_is_written(
    tmp_path: Path, taken: str
) -> None:
    with occupied_port() as port:
        device = {"host": "127.0.0.1", "port": port if taken == "device" else free_port()}
        admin = {"host": "127.0.0.1", "port": port if taken == "admin" else free_port()}
        result = run_sztp_server("run", write_config(tmp_path, device, admin))
    name = "device_listeners[0]" if taken == "device" else "admin_listener"
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == f"sztp-server: {name} 127.0.0.1:{port}: address already in use"
    assert not (tmp_path / "state" / "admin-token").exists()


def test_a_broken_key_at_start_names_the_listener_and_file(tmp_path: Path, lab: LabPki) -> None:
    broken = tmp_path / "admin.key"
    broken.write_text("not a key\n")
    device = {"host": "127.0.0.1", "port": free_port()}
    admin = {
        "host": "127.0.0.1",
        "port": free_port(),
        "tls_cert": str(lab.server.certificate),
        "tls_key": str(broken),
    }
    result = run_sztp_server("run", write_config(tmp_path, device, admin))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"sztp-server: admin_listener: {broken}: no valid PEM private key in the file"
    )
    assert not (tmp_path / "state" / "admin-token").exists()


def test_the_token_is_written_after_every_listener_listens(tmp_path: Path) -> None:
    server = start_server(tmp_path / "server", settings={"workers": 2})
    try:
        entries = log_entries(server.log)
    finally:
        server.stop()
    events = [entry["event"] for entry in entries]
    written = events.index("first admin token written")
    listening = [
        (entry["api"], entry.get("worker")) for entry in entries if entry["event"] == "listening"
    ]
    # The device worker's too: the token means devices are served by every process.
    assert sorted(listening, key=str) == [("admin", None), ("device", 1), ("device", None)]
    assert all(index < written for index, event in enumerate(events) if event == "listening")


def test_every_listener_socket_has_the_configured_backlog(tmp_path: Path) -> None:
    """A pod powering on at once must queue in the kernel, not have its SYNs dropped at
    asyncio's default of 100: the backlog is what `ss` shows as a listener's Send-Q."""
    server = start_server(tmp_path / "server", settings={"workers": 2, "listen_backlog": 1000})
    try:
        ports = {int(url.rsplit(":", 1)[1]) for url in (server.device_url, server.admin_url)}
        listing = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    finally:
        server.stop()
    backlogs = [
        (int(columns[3].rsplit(":", 1)[1]), int(columns[2]))
        for columns in (line.split() for line in listing.splitlines())
        if int(columns[3].rsplit(":", 1)[1]) in ports
    ]
    # Two device sockets (the main process's and the worker's), one admin socket.
    assert sorted(backlog for _port, backlog in backlogs) == [1000, 1000, 1000], listing


def test_a_broken_reload_names_the_listener_and_file(tmp_path: Path, lab: LabPki) -> None:
    """The admin listener has its own files; breaking them keeps every listener serving and
    logs which listener, which file and what is wrong."""
    admin_cert, admin_key = tmp_path / "admin.pem", tmp_path / "admin.key"
    shutil.copyfile(lab.server.certificate, admin_cert)
    shutil.copyfile(lab.server.private_key, admin_key)
    device_port, admin_port = free_port(), free_port()
    config = write_config(
        tmp_path / "server",
        {
            "host": "127.0.0.1",
            "port": device_port,
            "tls_cert": str(lab.server.certificate),
            "tls_key": str(lab.server.private_key),
        },
        {
            "host": "127.0.0.1",
            "port": admin_port,
            "tls_cert": str(admin_cert),
            "tls_key": str(admin_key),
        },
    )
    log = tmp_path / "server.log"
    assert SZTP_SERVER
    with log.open("wb") as stderr:
        process = subprocess.Popen([SZTP_SERVER, "run", "--config", str(config)], stderr=stderr)
    try:
        admin_url = f"https://127.0.0.1:{admin_port}/healthz"
        verify = str(lab.tls_ca.certificate)
        deadline = time.monotonic() + 30
        while not (tmp_path / "server" / "state" / "admin-token").exists():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

        def failures() -> list[dict[str, object]]:
            return [
                entry
                for entry in log_entries(log.read_text())
                if entry["event"] == "TLS reload failed; keeping the previous certificates"
            ]

        def reload_failure() -> dict[str, object]:
            before = len(failures())
            process.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                logged = failures()
                if len(logged) > before:
                    return logged[-1]
                time.sleep(0.1)
            raise AssertionError(f"no reload failure logged:\n{log.read_text()}")

        admin_key.write_text("not a key\n")
        failure = reload_failure()
        assert failure["level"] == "error"
        assert failure["listener"] == "admin_listener"
        assert failure["path"] == str(admin_key)
        assert failure["reason"] == "no valid PEM private key in the file"
        assert requests.get(admin_url, verify=verify, timeout=5).ok

        shutil.copyfile(lab.server.private_key, admin_key)
        admin_cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
        failure = reload_failure()
        assert failure["listener"] == "admin_listener"
        assert failure["path"] == str(admin_cert)
        assert failure["reason"] == "no valid PEM certificate in the file"
        assert requests.get(admin_url, verify=verify, timeout=5).ok
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)

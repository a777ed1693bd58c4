"""A server killed with SIGKILL during a bulk apply comes back with the old or the new state,
and none of its processes (its writer) lives on holding the database."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest
import requests

from sztp_testing import assert_released, onboarding_resources, start_server

DEVICES = 10_000


def bulk_state(count: int) -> dict[str, object]:
    return {
        "resources": {
            **onboarding_resources("lab", os_version="1.0", signing="when-requested"),
            "device": {f"CRASH-{number:05d}": {"profile": "lab"} for number in range(count)},
        }
    }


def device_count(admin_url: str, token: str) -> int:
    response = requests.get(
        f"{admin_url}/api/v1/state", headers={"Authorization": f"Bearer {token}"}, timeout=60
    )
    response.raise_for_status()
    return len(response.json()["resources"].get("device", {}))


# Kills spread from before a 10,000-device apply to after it (its duration: bench/RESULTS.md).
@pytest.mark.parametrize("kill_after", [0.05, 0.15, 0.25, 0.35, 0.45, 0.8])
def test_sigkill_mid_apply_leaves_old_or_new_state(tmp_path: Path, kill_after: float) -> None:
    server = start_server(tmp_path / "server")
    token = server.token
    body = bulk_state(DEVICES)

    def apply() -> None:
        # The connection dies with the server; only the outcome in the database matters.
        with contextlib.suppress(requests.RequestException):
            requests.post(
                f"{server.admin_url}/api/v1/state",
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
            )

    writer = threading.Thread(target=apply)
    writer.start()
    time.sleep(kill_after)
    server.process.kill()
    server.process.wait()
    writer.join()
    assert_released(tmp_path / "server")

    restarted = start_server(tmp_path / "server")
    try:
        assert device_count(restarted.admin_url, token) in (0, DEVICES)
    finally:
        restarted.stop()

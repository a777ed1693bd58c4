"""The agent's parts one by one: handler and script exit statuses, SSH host keys, the status
file, the session lock, the log, re-provisioning, the configuration page."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sztp.protocol.conveyed_info import BootImage
from sztp.simulator import WARNING_EXIT_STATUS, PlatformError, generate_ssh_host_key
from sztp_agent.agent_log import AgentLog, last_lines, one_line
from sztp_agent.bootstrap_servers import network_changed
from sztp_agent.cli import render_status
from sztp_agent.config import config_from_mapping
from sztp_agent.host_platform import HostPlatform, read_ssh_host_keys
from sztp_agent.session_lock import SessionBusy, SessionLock
from sztp_agent.status import (
    STATE_MEANINGS,
    Discovery,
    RunState,
    Status,
    StatusFile,
    StepRecord,
)
from sztp_testing import ROOT

IMAGE = BootImage(os_name="LabOS", os_version="2.0", sha256=b"\x01" * 32)


def platform(tmp_path: Path, handler: str, **changes: object) -> HostPlatform:
    handlers = tmp_path / "handlers"
    handlers.mkdir(exist_ok=True)
    for name in ("install-image", "apply-configuration"):
        path = handlers / name
        path.write_text("#!/bin/sh\n" + handler)
        path.chmod(0o755)
    settings: dict[str, object] = {
        "handlers_dir": handlers,
        "work_dir": tmp_path / "work",
        "serial_number": "SN-1",
        "ssh_host_keys": str(tmp_path / "ssh_host_*_key.pub"),
        "script_timeout": 5.0,
        "handler_timeout": 5.0,
        "handler_environment": {"SITE": "fra1"},
        **changes,
    }
    (tmp_path / "work").mkdir(exist_ok=True)
    return HostPlatform(**settings)  # type: ignore[arg-type]


def test_handlers_get_their_arguments_and_environment(tmp_path: Path) -> None:
    host = platform(
        tmp_path,
        'echo "$0 $* $SITE $SZTP_SERIAL_NUMBER $SZTP_IMAGE_OS_VERSION $SZTP_IMAGE_SHA256"\n',
    )
    result = host.install_image(tmp_path / "image.img", IMAGE)
    assert not result.warning
    assert result.message == (
        f"{tmp_path}/handlers/install-image {tmp_path}/image.img fra1 SN-1 2.0 {'01' * 32}"
    )
    applied = host.commit_configuration(b"hostname x\n", "replace")
    # No image variables for a configuration: the output is clipped of the blanks they leave.
    assert applied.message.endswith(f"replace {tmp_path}/work/configuration fra1 SN-1")
    assert (tmp_path / "work" / "configuration").read_bytes() == b"hostname x\n"


@pytest.mark.parametrize(
    ("handler", "warning", "error"),
    [
        ("echo fine\n", False, None),
        (f"echo slow fan\nexit {WARNING_EXIT_STATUS}\n", True, None),
        ("echo disk full >&2\nexit 3\n", None, "install-image exited with 3: disk full"),
        ("kill -TERM $$\n", None, "install-image was killed by signal 15"),
        ("sleep 10\n", None, "install-image ran longer than 0.5 s and was killed"),
    ],
)
def test_a_handler_exit_status_reads_as_done_warning_or_error(
    tmp_path: Path, handler: str, warning: bool | None, error: str | None
) -> None:
    host = platform(tmp_path, handler, handler_timeout=0.5)
    if error is None:
        assert host.install_image(tmp_path / "image.img", IMAGE).warning is warning
    else:
        with pytest.raises(PlatformError) as raised:
            host.install_image(tmp_path / "image.img", IMAGE)
        assert str(raised.value) == error


def test_a_missing_handler_is_named(tmp_path: Path) -> None:
    host = platform(tmp_path, "true\n", handlers_dir=tmp_path / "nowhere")
    with pytest.raises(PlatformError, match="no apply-configuration handler"):
        host.commit_configuration(b"x", "merge")


def test_scripts_run_in_their_own_directory_with_the_serial(tmp_path: Path) -> None:
    host = platform(tmp_path, "true\n")
    result = host.run_script(
        "post", b'#!/bin/sh\necho "$SZTP_SCRIPT_STAGE $PWD $SZTP_SERIAL_NUMBER"\n'
    )
    assert result.message == f"post {tmp_path}/work/scripts SN-1"
    script = tmp_path / "work" / "scripts" / "post-configuration-script"
    assert script.stat().st_mode & 0o777 == 0o700


def test_ssh_host_keys_are_the_hosts_and_malformed_ones_are_skipped(tmp_path: Path) -> None:
    key, line = generate_ssh_host_key()
    (tmp_path / "ssh_host_ed25519_key.pub").write_bytes(line)
    (tmp_path / "ssh_host_rsa_key.pub").write_text("ssh-rsa not-base64!\n")
    (tmp_path / "ssh_host_dsa_key.pub").write_text("")
    assert read_ssh_host_keys(str(tmp_path / "ssh_host_*_key.pub")) == (key,)
    assert read_ssh_host_keys(str(tmp_path / "none_*.pub")) == ()


def test_the_status_file_survives_damage_and_keeps_its_bounds(tmp_path: Path) -> None:
    status_file = StatusFile(tmp_path)
    assert status_file.read().state is RunState.NEVER_RUN
    status = Status(state=RunState.RUNNING, session=2, attempt=1, attempts=5)
    for number in range(600):
        status.add_step(
            StepRecord("2026-12-05T00:00:00Z", "informational", str(number), False, None)
        )
    status.completed_on = [Discovery("", "dhcpv4", "eth0", "dhclient", "10.0.0.1", "10.0.0.0/24")]
    status_file.write(status)
    again = status_file.read()
    assert again == status and len(again.steps) == 500 and again.steps[0].message == "100"
    assert status_file.path.stat().st_mode & 0o777 == 0o644
    status_file.path.write_text("{not json")
    damaged = status_file.read()
    assert damaged.state is RunState.NEVER_RUN and "damaged" in damaged.problems[0]
    status_file.path.write_text(json.dumps({"state": "exploded"}))
    assert status_file.read().state is RunState.NEVER_RUN


def test_enable_and_disable_leave_a_marker(tmp_path: Path) -> None:
    status_file = StatusFile(tmp_path / "state")
    assert status_file.enabled
    status_file.set_enabled(False)
    assert not status_file.enabled and status_file.disabled_marker.exists()
    status_file.set_enabled(True)
    assert status_file.enabled


def test_one_session_at_a_time(tmp_path: Path) -> None:
    lock = SessionLock(tmp_path)
    assert lock.holder() is None
    with lock:
        assert SessionLock(tmp_path).holder() is not None
        with pytest.raises(SessionBusy, match="already running"), SessionLock(tmp_path):
            pass
    assert lock.holder() is None
    # Another process's lock is seen, with its process id.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sztp_agent.session_lock import "
            "SessionLock\nwith SessionLock(Path(sys.argv[1])):\n print('held', flush=True)\n"
            " time.sleep(30)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert lock.holder() == holder.pid
    finally:
        holder.kill()
        holder.wait()
    assert lock.holder() is None  # the kernel released it with the process


def test_the_log_escapes_what_servers_say(tmp_path: Path) -> None:
    log = AgentLog(tmp_path, echo=None)
    log("server said: ok\n2026-01-01T00:00:00Z session 9 complete\x1b[2J")
    (line,) = last_lines(tmp_path, 10)
    assert line.endswith("server said: ok\\x0a2026-01-01T00:00:00Z session 9 complete\\x1b[2J")
    assert one_line("a\tb") == "a\\x09b"


def test_network_change_needs_leases_on_both_sides() -> None:
    home = [Discovery("", "dhcpv4", "eth0", "dhclient", "10.0.0.1", "10.0.0.0/24")]
    moved = [Discovery("", "dhcpv4", "eth0", "dhclient", "192.0.2.1", "192.0.2.0/24")]
    assert network_changed(home, moved)
    assert not network_changed(home, home + moved)  # still on a network it knew
    assert not network_changed(home, []) and not network_changed([], moved)


def test_status_text_shows_the_summary_and_with_verbose_every_step() -> None:
    status = Status(
        state=RunState.RETRYING,
        session=1,
        attempt=2,
        attempts=5,
        next_attempt_at="2026-12-05T00:05:00Z",
        discovered=[
            Discovery("https://10.0.0.2:8443", "DHCPv4 option 143", "eth0", "dhclient", "10.0.0.1")
        ],
        steps=[
            StepRecord("2026-12-05T00:00:00Z", "bootstrap-initiated", "hello", True, None),
            StepRecord("2026-12-05T00:00:01Z", "informational", "\x1b]0;pwned\x07", True, None),
        ],
        problems=["https://10.0.0.2:8443: TLS failed"],
    )
    short = render_status(status, enabled=True, pid=None, verbose=False)
    assert "attempt 2 of 5" in short and "next attempt: 2026-12-05T00:05:00Z" in short
    assert "TLS failed" not in short
    full = render_status(status, enabled=False, pid=None, verbose=True)
    assert "(DHCPv4 option 143 on eth0 via dhclient, DHCP server 10.0.0.1)" in full
    assert "bootstrap-initiated  hello  [reported]" in full
    assert "enabled:      no (ztp enable)" in full and "TLS failed" in full
    assert "\x1b" not in full and "\\x1b]0;pwned\\x07" in full  # a server's text stays text


def test_every_state_has_its_meaning_on_the_page() -> None:
    assert set(STATE_MEANINGS) == set(RunState)
    page = (ROOT / "docs" / "agent.md").read_text(encoding="utf-8")
    assert all(f"| `{state.value}` |" in page for state in RunState)


def test_the_configuration_on_the_page_loads_and_the_table_is_current() -> None:
    page = (ROOT / "docs" / "agent.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(idevid_certificate:.*?)```", page, re.DOTALL)
    assert block is not None
    config = config_from_mapping(yaml.safe_load(block.group(1)), base=Path("/etc/sztp-agent"))
    assert config.reprovision == "network-change"
    assert dict(config.handler_environment) == {"SZTP_CONFIG_RELOAD": "systemctl reload frr"}
    checked = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_agent_docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr

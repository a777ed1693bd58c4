"""The agent's status file (`status.json` in the state directory): what `ztp status` shows and
what a device's own monitoring may read. It is the agent's memory across reboots too: the
session in progress, its attempt, the boot-image installs so far and the network the
bootstrapping completed on. Written atomically after every step (0644: it holds no secret);
a damaged or missing file reads as a device that never bootstrapped."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sztp.files import write_atomically
from sztp.simulator import Download, ServerCheck

STATUS_FILE = "status.json"
DISABLED_FILE = "disabled"
MAX_STATUS_SIZE = 4 * 1024 * 1024
# Steps kept in the file: a session's own are a few dozen; this bounds a hostile server's
# endless redirects and retries.
MAX_STEPS = 500
MAX_PROBLEMS = 50


class RunState(StrEnum):
    """Where the agent stands (each state's meaning in STATE_MEANINGS, for the docs)."""

    NEVER_RUN = "never-run"
    RUNNING = "running"
    REBOOTING = "rebooting"
    RETRYING = "retrying"
    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"


STATE_MEANINGS = {
    RunState.NEVER_RUN: "no session yet (or the status file was damaged)",
    RunState.RUNNING: "a session is trying the bootstrap servers",
    RunState.REBOOTING: "an image is installed; the session resumes after the reboot",
    RunState.RETRYING: "an attempt failed; the next one comes at `next_attempt_at`",
    RunState.COMPLETE: "`bootstrap-complete` sent: nothing more to do at boot",
    RunState.FAILED: "every attempt failed; `reason` says why (the next boot tries again)",
    RunState.ABORTED: "stopped by SIGTERM (`ztp disable`, shutdown) or by a problem of the "
    "device itself (its configuration, IDevID or reboot command); `reason` says which",
}

FINISHED = frozenset({RunState.COMPLETE, RunState.FAILED, RunState.ABORTED})


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class StepRecord:
    at: str
    progress_type: str
    message: str
    reported: bool
    server: str | None


@dataclass
class Discovery:
    """Where a bootstrap server came from: `configuration`, a DHCP lease's interface, or DNS
    (`DNS SRV _sztp._tcp.example.net`); bootstrapping data from DNS TXT records has no URI."""

    uri: str
    source: str
    interface: str | None = None
    client: str | None = None
    dhcp_server: str | None = None
    network: str | None = None


@dataclass
class Status:
    state: RunState = RunState.NEVER_RUN
    agent_version: str = ""
    serial_number: str | None = None
    session: int = 0  # sessions started on this device
    attempt: int = 0
    attempts: int = 0
    started_at: str | None = None  # the session's start
    attempt_started_at: str | None = None
    finished_at: str | None = None
    next_attempt_at: str | None = None
    reboots: int = 0
    installed_image_sha256: str | None = None
    os_name: str | None = None
    os_version: str | None = None
    discovered: list[Discovery] = field(default_factory=list)
    servers_contacted: list[str] = field(default_factory=list)
    # The last run of the procedure's: each server's trust and data, each image download.
    server_checks: list[ServerCheck] = field(default_factory=list)
    downloads: list[Download] = field(default_factory=list)
    steps: list[StepRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the last attempt's, per server
    reason: str | None = None  # why the session failed or was aborted
    # The DHCP leases the device had at bootstrap-complete: its network identity, compared at
    # boot by the `network-change` re-provisioning policy.
    completed_on: list[Discovery] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["state"] = self.state.value
        return document

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> Status:
        values = dict(document)
        values["state"] = RunState(values.get("state", RunState.NEVER_RUN.value))
        values["discovered"] = [Discovery(**item) for item in values.get("discovered", [])]
        values["steps"] = [StepRecord(**item) for item in values.get("steps", [])]
        values["server_checks"] = [ServerCheck(**item) for item in values.get("server_checks", [])]
        values["downloads"] = [Download(**item) for item in values.get("downloads", [])]
        values["completed_on"] = [Discovery(**item) for item in values.get("completed_on", [])]
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in values.items() if key in known})

    def add_step(self, step: StepRecord) -> None:
        self.steps.append(step)
        del self.steps[:-MAX_STEPS]

    def add_problems(self, problems: list[str]) -> None:
        self.problems = problems[-MAX_PROBLEMS:]


class StatusFile:
    """The status file and the enable/disable marker of one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / STATUS_FILE
        self.disabled_marker = state_dir / DISABLED_FILE

    def read(self) -> Status:
        """The stored status; a device that never ran (or whose file is damaged) reads as
        `never-run`, the damage named in `problems`."""
        try:
            with self.path.open("rb") as handle:
                text = handle.read(MAX_STATUS_SIZE + 1)
        except FileNotFoundError:
            return Status()
        except OSError as exc:
            return Status(problems=[f"cannot read {self.path}: {exc.strerror or exc}"])
        try:
            if len(text) > MAX_STATUS_SIZE:
                raise ValueError(f"larger than {MAX_STATUS_SIZE} bytes")
            return Status.from_json(json.loads(text))
        except (ValueError, TypeError, KeyError) as exc:
            return Status(problems=[f"{self.path} is damaged ({exc}); starting afresh"])

    def write(self, status: Status) -> None:
        data = json.dumps(status.to_json(), indent=2, ensure_ascii=False).encode()
        write_atomically(self.path, data + b"\n", mode=0o644, dir_mode=0o755)

    @property
    def enabled(self) -> bool:
        return not self.disabled_marker.exists()

    def set_enabled(self, enabled: bool) -> None:
        if enabled:
            self.disabled_marker.unlink(missing_ok=True)
        else:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            write_atomically(self.disabled_marker, f"{utc_now()}\n".encode(), mode=0o644)

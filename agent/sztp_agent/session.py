"""One bootstrapping session: servers found, the kit's RFC 8572 §5 procedure run with the
device's own platform, attempts retried with a growing wait, the status file written after
every step. A boot-image install ends the process with a reboot; the session resumes after
boot from the status file (same session, same attempt, one more reboot counted), starting the
procedure over as RFC 8572 has it: the image now matches, and onboarding goes on.

SIGTERM (`ztp disable`, systemd stopping the unit) ends the session where it stands: the status
says `aborted` and why, the lock is released, and the next boot or `ztp run` starts afresh."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from sztp.errors import SimulationError, SztpError
from sztp.protocol import pki
from sztp.simulator import Device, DeviceIdentity, SimulatorConfig, Step
from sztp.simulator.checks import check_config, check_identity
from sztp.simulator.onboarding import RunningSystem

from . import __version__
from .bootstrap_servers import (
    describe,
    discover,
    discover_dns,
    network_changed,
    network_identity,
)
from .config import (
    AgentConfig,
    ConfigError,
    lease_locations,
    read_os_release,
    read_serial_number,
)
from .host_platform import HANDLER_NAMES, HostPlatform
from .key_store import check_key_store
from .session_lock import SessionLock
from .status import FINISHED, RunState, Status, StatusFile, StepRecord, utc_now

MAX_RETRY_WAIT = 15 * 60.0
ABORTED_BY_SIGTERM = "stopped by SIGTERM"


class Aborted(Exception):
    """SIGTERM arrived: the session stops where it stands."""


@dataclass(frozen=True)
class SessionOutcome:
    state: RunState
    reason: str | None = None


class Session:
    """A session of one device; `run` is the whole of it (the caller holds no lock)."""

    def __init__(
        self,
        config: AgentConfig,
        log: Callable[[str], None],
    ) -> None:
        self.config = config
        self.log = log
        self.locations = lease_locations(config)
        self.status_file = StatusFile(config.state_dir)
        self._device: Device | None = None  # the attempt's, while it runs

    # ---- deciding whether to run

    def wanted_at_boot(self) -> str | None:
        """Why the boot-time service has nothing to do (None: it runs a session)."""
        if not self.status_file.enabled:
            return "disabled (ztp enable turns it back on)"
        status = self.status_file.read()
        if status.state is not RunState.COMPLETE:
            return None
        if self.config.reprovision == "network-change" and network_changed(
            status.completed_on, network_identity(self.config, self.locations)
        ):
            self.log(
                "the network differs from the one bootstrapping completed on: bootstrapping again"
            )
            return None
        return "already bootstrapped (ztp run --force bootstraps again)"

    # ---- the session

    def run(self, *, new: bool) -> SessionOutcome:
        """Run (or, unless `new`, resume) the session; never raises for what servers do."""
        with SessionLock(self.config.state_dir), _terminated_by_sigterm():
            status = self.status_file.read()
            for problem in status.problems:
                self.log(problem)
            if new or status.state in FINISHED or status.state is RunState.NEVER_RUN:
                status = self._start(status)
            else:
                self.log(
                    f"resuming session {status.session} ({status.state.value}, attempt "
                    f"{status.attempt} of {status.attempts}, {status.reboots} reboot(s))"
                )
            try:
                return self._attempts(status)
            except Aborted:
                # A second SIGTERM must not cut the last report short; systemd's SIGKILL
                # after TimeoutStopSec still ends a report that hangs.
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                if self._device is not None:
                    self._device.abort(ABORTED_BY_SIGTERM)
                return self._finish(status, RunState.ABORTED, ABORTED_BY_SIGTERM)
            except (ConfigError, SimulationError, SztpError, OSError) as exc:
                return self._finish(status, RunState.ABORTED, f"cannot bootstrap: {exc}")

    def _start(self, previous: Status) -> Status:
        status = Status(
            state=RunState.RUNNING,
            agent_version=__version__,
            session=previous.session + 1,
            attempts=self.config.attempts,
            started_at=utc_now(),
        )
        self.log(f"session {status.session} starts (sztp-agent {__version__})")
        self.status_file.write(status)
        return status

    def _attempts(self, status: Status) -> SessionOutcome:
        identity = self._identity()
        status.serial_number = identity.serial_number
        status.attempts = self.config.attempts
        while True:
            if status.state is RunState.REBOOTING:
                self.log(f"back after reboot {status.reboots}: attempt {status.attempt} goes on")
            else:
                status.attempt += 1
            status.state = RunState.RUNNING
            status.attempt_started_at = utc_now()
            status.next_attempt_at = None
            outcome = self._attempt(status, identity)
            if outcome is not None:
                return outcome
            if status.attempt >= status.attempts:
                reason = "; ".join(status.problems) or "no bootstrap server answered"
                return self._finish(status, RunState.FAILED, reason)
            wait = min(self.config.retry_seconds * 2 ** (status.attempt - 1), MAX_RETRY_WAIT)
            status.state = RunState.RETRYING
            status.next_attempt_at = (
                (datetime.now(UTC) + timedelta(seconds=wait))
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z")
            )
            self.status_file.write(status)
            self.log(
                f"attempt {status.attempt} of {status.attempts} failed; the next in {wait:g} s"
            )
            time.sleep(wait)

    def _attempt(self, status: Status, identity: DeviceIdentity) -> SessionOutcome | None:
        """One pass over every server: the session's outcome, or None to try again."""
        servers, problems = discover(self.config, self.locations)
        for problem in problems:
            self.log(f"discovery: {problem}")
        uris = [server.uri for server in servers]
        from_dns, found = discover_dns(self.config, identity.serial_number, servers, self.log)
        servers += from_dns
        status.discovered = servers
        if not servers:
            nowhere = "none configured and no DHCP lease carries option 143 or 136"
            if self.config.dns:
                nowhere += ", nor DNS any record"
            status.add_problems([f"no bootstrap server: {nowhere}", *problems])
            self.status_file.write(status)
            self.log(status.problems[0])
            return None
        self.log(f"attempt {status.attempt} of {status.attempts}: {describe(servers)}")
        self.status_file.write(status)
        left = status.attempts - status.attempt
        context = (
            f"sztp-agent {__version__}, session {status.session}, attempt {status.attempt} of "
            f"{status.attempts} ({left} left), reboots {status.reboots}; servers: "
            f"{describe(servers)}"
        )
        os_name, os_version = read_os_release(self.config.os_release)
        status.os_name, status.os_version = os_name, os_version
        system = RunningSystem(
            os_name,
            os_version,
            bytes.fromhex(status.installed_image_sha256) if status.installed_image_sha256 else None,
            status.reboots,
        )

        def observe(step: Step) -> None:
            status.add_step(
                StepRecord(utc_now(), step.progress_type, step.message, step.reported, step.server)
            )
            self.status_file.write(status)

        device = Device(
            self._procedure_config(uris),
            identity,
            self.log,
            platform=HostPlatform(
                handlers_dir=self.config.handlers_dir,
                work_dir=self._work_dir(),
                serial_number=identity.serial_number,
                ssh_host_keys=self.config.ssh_host_keys,
                script_timeout=self.config.script_timeout,
                handler_timeout=self.config.handler_timeout,
                handler_environment=dict(self.config.handler_environment),
            ),
            system=system,
            observer=observe,
            context=context,
        )
        self._device = device
        result = device.run(uris, found)
        self._device = None
        status.servers_contacted = list(result.servers_contacted)
        status.server_checks = list(result.server_checks)
        if result.downloads:  # kept from before the reboot when this run needed none
            status.downloads = list(result.downloads)
        if result.outcome == "success":
            status.completed_on = network_identity(self.config, self.locations)
            status.add_problems([])
            return self._finish(status, RunState.COMPLETE, None)
        if result.outcome == "rebooting":
            status.state = RunState.REBOOTING
            status.reboots = system.reboots
            sha = system.installed_image_sha256
            status.installed_image_sha256 = sha.hex() if sha else None
            self.status_file.write(status)
            command = " ".join(self.config.reboot_command)
            self.log(f"rebooting to run {system.name_and_version()}: {command}")
            _reboot(self.config.reboot_command)
            return SessionOutcome(RunState.REBOOTING)
        status.add_problems((result.reason or "no bootstrap server answered").split("; "))
        self.status_file.write(status)
        return None

    def _finish(self, status: Status, state: RunState, reason: str | None) -> SessionOutcome:
        status.state = state
        status.reason = reason
        status.finished_at = utc_now()
        status.next_attempt_at = None
        self.status_file.write(status)
        self.log(f"session {status.session} {state.value}" + (f": {reason}" if reason else ""))
        return SessionOutcome(state, reason)

    def preflight(self) -> list[str]:
        """What would stop a session before it reaches any server: the IDevID, the trust
        anchors, the serial number, the handlers (each problem in words; none when all is
        well)."""
        problems = []
        try:
            self._identity()
            self._procedure_config(list(self.config.bootstrap_uris))
        except (ConfigError, SimulationError, SztpError, OSError) as exc:
            problems.append(str(exc))
        for name in HANDLER_NAMES:
            handler = self.config.handlers_dir / name
            if not handler.is_file() or not os.access(handler, os.X_OK):
                problems.append(f"{handler} is not an executable file")
        return problems

    # ---- what the procedure is given

    def _identity(self) -> DeviceIdentity:
        password = None
        if self.config.password_file is not None:
            try:
                lines = self.config.password_file.read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise ConfigError(f"password_file: {exc.strerror or exc}") from None
            password = lines[0] if lines and lines[0] else None
            if password is None:
                raise ConfigError("password_file: the first line is empty")
        identity = DeviceIdentity(
            serial_number=read_serial_number(self.config),
            idevid_certificate=self.config.idevid_certificate,
            idevid_key=self.config.idevid_key,
            password=password,
            hw_model=self.config.hw_model,
            idevid_key_store=self.config.idevid_key_store,
        )
        check_key_store(self.config, os.environ)
        check_identity(identity)
        for secret in (self.config.idevid_key, self.config.password_file):
            if secret is not None and secret.stat().st_mode & 0o077:
                mode = secret.stat().st_mode & 0o777
                risk = ""
                if secret == self.config.idevid_key and identity.idevid_key_store == "tpm2":
                    # Useless off the device; on it, the blob is all the TPM asks of a signer.
                    risk = "whoever reads it and may use the TPM signs as this device: "
                self.log(
                    f"warning: {secret} is readable by others (mode {mode:04o}): {risk}chmod 600"
                )
        return identity

    def _procedure_config(self, uris: list[str]) -> SimulatorConfig:
        try:
            anchors = tuple(pki.load_certificates_pem(self.config.trust_anchors.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"trust_anchors: {exc.strerror or exc}") from None
        config = SimulatorConfig(
            bootstrap_uris=tuple(uris),
            trust_anchors=anchors,
            server_ca=self.config.server_ca,
            file_server_ca=self.config.file_server_ca,
            work_dir=self._work_dir(),
            wire_format=self.config.encoding,
            send_nonce=self.config.send_nonce,
            timeout=self.config.timeout,
            script_timeout=self.config.script_timeout,
            max_reboots=self.config.max_reboots,
            max_image_size=self.config.max_image_size,
            ldevid_keys=self.config.ldevid_keys,
        )
        check_config(config)
        return config

    def _work_dir(self) -> Path:
        return self.config.state_dir / "work"


def _reboot(command: tuple[str, ...]) -> None:
    completed = subprocess.run(  # noqa: S603 - the configured reboot command
        list(command), check=False, capture_output=True, text=True
    )
    if completed.returncode != 0:
        raise OSError(
            f"{' '.join(command)} exited with {completed.returncode}: {completed.stderr.strip()}"
        )


@contextmanager
def _terminated_by_sigterm() -> Iterator[None]:
    """SIGTERM raises `Aborted` in the session (Python runs the handler between bytecodes, a
    blocking socket call included), so every `finally` on the way out runs."""

    def abort(_signal: int, _frame: FrameType | None) -> None:
        raise Aborted

    previous = signal.signal(signal.SIGTERM, abort)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

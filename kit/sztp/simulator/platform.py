"""What a device does with verified onboarding information (RFC 8572 §5.6), apart from the
procedure that decides it: install a boot image already downloaded and checked, run a script,
commit configuration, name its SSH host keys, reboot. The simulator's `WorkDirectoryPlatform`
does it all in its work directory; the device agent does it on the host, through handlers.

A platform never sees unverified data: the procedure hands it only what came in bootstrapping
data it accepted, and an image only once its SHA-256 matched.

How an action ends: an `ActionResult` (done, or done with a warning: RFC 8572's soft error,
"will not affect manageability"), or `PlatformError` naming why it failed (the hard error that
abandons the bootstrap server). A script or handler tells which by its exit status
(`action_result`): 0 done, `WARNING_EXIT_STATUS` a warning, anything else an error.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..protocol.conveyed_info import BootImage
from ..protocol.restconf import SshHostKey
from .verdicts import clip, describe
from .workdir import WorkDirectory

# The exit status by which a script or handler reports a soft error: RFC 8572 leaves how a
# script "indicates that a warning occurred" to the device, and this is sztp's choice.
WARNING_EXIT_STATUS = 10

ScriptStage = Literal["pre", "post"]


@dataclass(frozen=True)
class ActionResult:
    """An action that did its work; `warning`: with a soft error, said in `message`."""

    message: str
    warning: bool = False


class PlatformError(Exception):
    """An action failed, for the reason given (reported to the server, so no secrets)."""


class DevicePlatform(Protocol):
    """The device's side of onboarding; every method may raise `PlatformError`."""

    def install_image(self, image_file: Path, image: BootImage) -> ActionResult:
        """Install the downloaded, verified image so that the device boots it next."""
        ...

    def run_script(self, stage: ScriptStage, script: bytes) -> ActionResult:
        """Run the pre- or post-configuration script."""
        ...

    def commit_configuration(self, configuration: bytes, handling: str) -> ActionResult:
        """Merge (`handling` "merge") or replace ("replace") the running configuration."""
        ...

    def ssh_host_keys(self) -> tuple[SshHostKey, ...]:
        """The keys `bootstrap-complete` carries."""
        ...

    def reboot(self) -> bool:
        """Boot the installed image. True: it runs now and the procedure goes on in this
        process (a simulation); False: the device is going down, the procedure stops here and
        starts again after boot."""
        ...


def action_result(name: str, status: int, output: bytes) -> ActionResult:
    """How a script or handler that exited with `status` ended (`PlatformError` for an error),
    its output clipped into the message."""
    text = clip(output.decode("utf-8", "replace"))
    detail = f": {text}" if text else ""
    if status == 0:
        return ActionResult(text or f"{name} exited with 0")
    if status == WARNING_EXIT_STATUS:
        return ActionResult(f"{name} reported a warning (exit {status}){detail}", warning=True)
    if status < 0:
        raise PlatformError(f"{name} was killed by signal {-status}{detail}")
    raise PlatformError(f"{name} exited with {status}{detail}")


def run_program(
    name: str,
    argv: list[str],
    *,
    cwd: Path,
    environment: dict[str, str],
    timeout: float,
) -> ActionResult:
    """Run a script or handler with only `environment` and no terminal, and say how it ended.
    It runs in a process group of its own, killed whole when it overruns `timeout` or the
    caller is interrupted (the agent's SIGTERM): nothing it started outlives it."""
    try:
        process = subprocess.Popen(  # noqa: S603 - verified owner content or the device's handler
            argv,
            cwd=cwd,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **environment},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except OSError as exc:
        raise PlatformError(f"cannot execute {name}: {describe(exc)}") from None
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise PlatformError(f"{name} ran longer than {timeout:g} s and was killed") from None
    except BaseException:
        _kill_group(process)
        raise
    return action_result(name, process.returncode, output)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


class WorkDirectoryPlatform:
    """The simulator's device, all in its work directory: images "installed" by keeping them,
    scripts written (and run only with `run_scripts`, in its sandbox), configuration merged
    into or replacing one file, a fresh ed25519 host key (or the configured keys), and
    reboots that take no time."""

    def __init__(
        self,
        work_dir: WorkDirectory,
        *,
        run_scripts: bool,
        script_timeout: float,
        serial_number: str,
        ssh_host_keys: tuple[SshHostKey, ...] | None,
    ) -> None:
        self.work_dir = work_dir
        self.run_scripts = run_scripts
        self.script_timeout = script_timeout
        self.serial_number = serial_number
        self._ssh_host_keys = ssh_host_keys

    def install_image(self, image_file: Path, image: BootImage) -> ActionResult:
        return ActionResult(f"kept {image_file.name}")

    def run_script(self, stage: ScriptStage, script: bytes) -> ActionResult:
        name = f"{stage}-configuration-script"
        try:
            path = self.work_dir.write(name, script, mode=0o700)
        except OSError as exc:
            raise PlatformError(f"cannot write {name}: {describe(exc)}") from None
        if not self.run_scripts:
            return ActionResult(f"written to {path}, not executed")
        sandbox = self.work_dir.sandbox()
        return run_program(
            name,
            [str(path.resolve())],
            cwd=sandbox,
            environment={"HOME": str(sandbox), "SZTP_SERIAL_NUMBER": self.serial_number},
            timeout=self.script_timeout,
        )

    def commit_configuration(self, configuration: bytes, handling: str) -> ActionResult:
        try:
            path = self.work_dir.commit_configuration(configuration, handling)
        except OSError as exc:
            raise PlatformError(f"cannot commit: {describe(exc)}") from None
        verb = "merged into" if handling == "merge" else "replaced"
        return ActionResult(f"configuration {verb} {path}")

    def ssh_host_keys(self) -> tuple[SshHostKey, ...]:
        if self._ssh_host_keys is None:
            key, public_line = generate_ssh_host_key()
            try:
                self.work_dir.write("ssh_host_ed25519_key.pub", public_line, mode=0o644)
            except OSError as exc:
                self.work_dir.log(f"cannot keep the SSH host public key: {describe(exc)}")
            self._ssh_host_keys = (key,)
        return self._ssh_host_keys

    def reboot(self) -> bool:
        return True


def generate_ssh_host_key() -> tuple[SshHostKey, bytes]:
    """A fresh ed25519 host key: what `bootstrap-complete` carries, and the OpenSSH public line."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    algorithm, blob = line.split(b" ")[:2]
    return SshHostKey(algorithm.decode("ascii"), base64.b64decode(blob)), line + b"\n"

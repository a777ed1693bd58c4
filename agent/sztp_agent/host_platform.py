"""The agent's `DevicePlatform`: onboarding done on the device itself. Boot images and
configuration go to install handlers, executables in the handlers directory that the device's
vendor or operator provides (the contract is in docs/agent.md; the agent ships generic ones);
scripts run as the agent, in a directory of their own; the SSH host keys are the host's own.
The reboot itself is the session's, once the status file says where to resume."""

from __future__ import annotations

import base64
import binascii
import glob
from pathlib import Path

from sztp.files import write_atomically
from sztp.protocol.conveyed_info import BootImage
from sztp.protocol.restconf import SshHostKey
from sztp.simulator import ActionResult, PlatformError
from sztp.simulator.platform import ScriptStage, run_program

INSTALL_IMAGE = "install-image"
APPLY_CONFIGURATION = "apply-configuration"
HANDLER_NAMES = (INSTALL_IMAGE, APPLY_CONFIGURATION)
# An OpenSSH public key line is well under this; anything larger is not one.
MAX_HOST_KEY_LINE = 16 * 1024


class HostPlatform:
    def __init__(
        self,
        *,
        handlers_dir: Path,
        work_dir: Path,
        serial_number: str,
        ssh_host_keys: str,
        script_timeout: float,
        handler_timeout: float,
        handler_environment: dict[str, str],
    ) -> None:
        self.handlers_dir = handlers_dir
        self.work_dir = work_dir
        self.serial_number = serial_number
        self.ssh_host_key_glob = ssh_host_keys
        self.script_timeout = script_timeout
        self.handler_timeout = handler_timeout
        self.handler_environment = handler_environment

    def _environment(self) -> dict[str, str]:
        return {
            "SZTP_SERIAL_NUMBER": self.serial_number,
            "SZTP_WORK_DIR": str(self.work_dir),
            "HOME": str(self.work_dir),
        }

    def _handler(self, name: str) -> Path:
        path = self.handlers_dir / name
        if not path.is_file():
            raise PlatformError(f"no {name} handler: {path} is missing")
        return path

    def install_image(self, image_file: Path, image: BootImage) -> ActionResult:
        environment = {
            **self.handler_environment,
            **self._environment(),
            "SZTP_IMAGE_OS_NAME": image.os_name or "",
            "SZTP_IMAGE_OS_VERSION": image.os_version or "",
            "SZTP_IMAGE_SHA256": image.sha256.hex() if image.sha256 else "",
        }
        return run_program(
            INSTALL_IMAGE,
            [str(self._handler(INSTALL_IMAGE)), str(image_file)],
            cwd=self.work_dir,
            environment=environment,
            timeout=self.handler_timeout,
        )

    def run_script(self, stage: ScriptStage, script: bytes) -> ActionResult:
        name = f"{stage}-configuration-script"
        scripts = self.work_dir / "scripts"
        path = scripts / name
        try:
            write_atomically(path, script, mode=0o700, dir_mode=0o700)
        except OSError as exc:
            raise PlatformError(f"cannot write {name}: {exc.strerror or exc}") from None
        return run_program(
            name,
            [str(path)],
            cwd=scripts,
            environment={**self._environment(), "SZTP_SCRIPT_STAGE": stage},
            timeout=self.script_timeout,
        )

    def commit_configuration(self, configuration: bytes, handling: str) -> ActionResult:
        path = self.work_dir / "configuration"
        try:
            write_atomically(path, configuration, mode=0o600, dir_mode=0o700)
        except OSError as exc:
            raise PlatformError(f"cannot write the configuration: {exc.strerror or exc}") from None
        return run_program(
            APPLY_CONFIGURATION,
            [str(self._handler(APPLY_CONFIGURATION)), handling, str(path)],
            cwd=self.work_dir,
            environment={**self.handler_environment, **self._environment()},
            timeout=self.handler_timeout,
        )

    def ssh_host_keys(self) -> tuple[SshHostKey, ...]:
        return read_ssh_host_keys(self.ssh_host_key_glob)

    def reboot(self) -> bool:
        return False  # the session reboots, after writing where to resume


def read_ssh_host_keys(pattern: str) -> tuple[SshHostKey, ...]:
    """The host's SSH public keys (`algorithm base64 [comment]` files), in file-name order;
    unreadable or malformed files are skipped: the report then carries the others."""
    keys = []
    # An absolute pattern: Path.glob takes only relative ones.
    for name in sorted(glob.glob(pattern)):  # noqa: PTH207
        try:
            with Path(name).open("rb") as handle:
                line = handle.read(MAX_HOST_KEY_LINE).split(b"\n", 1)[0]
            algorithm, blob = line.split()[:2]
            keys.append(
                SshHostKey(algorithm.decode("ascii"), base64.b64decode(blob, validate=True))
            )
        except (OSError, ValueError, binascii.Error, UnicodeDecodeError):
            continue
    return tuple(keys)

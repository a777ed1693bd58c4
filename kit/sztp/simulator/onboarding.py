"""Onboarding information (RFC 8572 §5.6): boot image → pre-configuration script →
configuration → post-configuration script, then `bootstrap-complete` with the device's SSH host
keys. A boot-image mismatch downloads the image, "installs" it and asks for a reboot; a failed
stage raises `StageFailed` for the procedure to report and abandon the source."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..protocol.bootstrapping_data import VerifiedBootstrappingData
from ..protocol.conveyed_info import BootImage, OnboardingInformation
from ..protocol.restconf import SshHostKey
from .model import DeviceIdentity, Log, SimulatorConfig
from .reporting import ProgressReporter
from .transport import Connection, Transport
from .verdicts import Abandon, StageFailed, Verdict, clip, describe
from .workdir import WorkDirectory


def generate_ssh_host_key() -> tuple[SshHostKey, bytes]:
    """A fresh ed25519 host key: what `bootstrap-complete` carries, and the OpenSSH public line."""
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    algorithm, blob = line.split(b" ")[:2]
    return SshHostKey(algorithm.decode("ascii"), base64.b64decode(blob)), line + b"\n"


@dataclass
class RunningSystem:
    """What the device runs, changed by a boot-image install and kept across reboots."""

    os_name: str | None
    os_version: str | None
    installed_image_sha256: bytes | None = None
    reboots: int = 0

    def name_and_version(self) -> str:
        return f"{self.os_name or '?'} {self.os_version or '?'}"

    def matches(self, image: BootImage) -> bool:
        if image.os_name is None and image.os_version is None:
            return image.sha256 is not None and self.installed_image_sha256 == image.sha256
        return (image.os_name is None or image.os_name == self.os_name) and (
            image.os_version is None or image.os_version == self.os_version
        )


class Onboarding:
    """The §5.6 stages of one device, run for each onboarding information it accepts."""

    def __init__(
        self,
        config: SimulatorConfig,
        identity: DeviceIdentity,
        system: RunningSystem,
        reporter: ProgressReporter,
        work_dir: WorkDirectory,
        transport: Transport,
        log: Log,
    ) -> None:
        self.config = config
        self.identity = identity
        self.system = system
        self.reporter = reporter
        self.work_dir = work_dir
        self.transport = transport
        self.log = log
        self.ssh_host_keys = config.ssh_host_keys

    def run(
        self,
        connection: Connection,
        verified: VerifiedBootstrappingData,
        information: OnboardingInformation,
    ) -> Verdict:
        """The stages in order: `REBOOT` after an image install, `DONE` after
        `bootstrap-complete`; a failed stage raises `StageFailed`."""
        origin = "signed" if verified.signed else "unsigned (trusted server)"
        self.reporter.step(
            connection, "bootstrap-initiated", f"{origin} onboarding information received"
        )
        self.reporter.step(
            connection, "parsing-initiated", "verifying and parsing onboarding information"
        )
        self.reporter.step(
            connection, "parsing-complete", f"{origin} onboarding information accepted"
        )
        stages: list[Callable[[], Verdict]] = []
        if information.boot_image is not None:
            image = information.boot_image
            stages.append(lambda: self._boot_image(connection, image))
        if information.pre_configuration_script is not None:
            pre = information.pre_configuration_script
            stages.append(lambda: self._script(connection, "pre", pre))
        if information.configuration is not None:
            configuration = information.configuration
            handling = information.configuration_handling or "merge"
            stages.append(lambda: self._configuration(connection, configuration, handling))
        if information.post_configuration_script is not None:
            post = information.post_configuration_script
            stages.append(lambda: self._script(connection, "post", post))
        for stage in stages:
            if stage() is Verdict.REBOOT:
                return Verdict.REBOOT
        return self._complete(connection)

    def _boot_image(self, connection: Connection, image: BootImage) -> Verdict:
        wanted = f"{image.os_name or '?'} {image.os_version or '?'}"
        self.reporter.step(connection, "boot-image-initiated", f"boot image {wanted}")
        if self.system.matches(image):
            self.reporter.step(
                connection,
                "boot-image-complete",
                f"already running {self.system.name_and_version()}",
            )
            return Verdict.CONTINUE
        self.reporter.step(
            connection,
            "boot-image-mismatch",
            f"running {self.system.name_and_version()}, {wanted} required",
        )
        if self.system.reboots >= self.config.max_reboots:
            raise StageFailed(
                "boot-image-error",
                f"still not running {wanted} after {self.system.reboots} reboot(s)",
            )
        if not image.download_uris:
            raise StageFailed("boot-image-error", "no download-uri for the image")
        if image.sha256 is None:
            raise StageFailed(
                "boot-image-error",
                "no sha-256 image-verification: an unverifiable image is not installed",
            )
        problems = []
        for uri in image.download_uris:
            try:
                self.work_dir.download_image(self.transport, uri, image.sha256)
            except Abandon as exc:
                self.log(f"download {uri}: {exc}")
                problems.append(f"{uri}: {exc}")
                continue
            self.system.installed_image_sha256 = image.sha256
            self.system.os_name = image.os_name or self.system.os_name
            self.system.os_version = image.os_version or self.system.os_version
            self.reporter.step(
                connection,
                "boot-image-installed-rebooting",
                f"installed {wanted} from {uri} (sha-256 verified), rebooting",
            )
            return Verdict.REBOOT
        raise StageFailed("boot-image-error", "; ".join(problems))

    def _script(
        self, connection: Connection, stage: Literal["pre", "post"], script: bytes
    ) -> Verdict:
        name = f"{stage}-configuration-script"
        kind = f"{stage}-script"
        self.reporter.step(connection, f"{kind}-initiated", f"{name} ({len(script)} bytes)")
        try:
            path = self.work_dir.write(name, script, mode=0o700)
        except OSError as exc:
            raise StageFailed(f"{kind}-error", f"cannot write {name}: {describe(exc)}") from None
        if not self.config.run_scripts:
            self.reporter.step(connection, f"{kind}-complete", f"written to {path}, not executed")
            return Verdict.CONTINUE
        sandbox = self.work_dir.sandbox()
        environment = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(sandbox),
            "SZTP_SERIAL_NUMBER": self.identity.serial_number,
        }
        try:
            completed = subprocess.run(  # noqa: S603 - the owner's script, only with run_scripts
                [str(path.resolve())],
                cwd=sandbox,
                env=environment,
                capture_output=True,
                timeout=self.config.script_timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StageFailed(
                f"{kind}-error",
                f"{name} ran longer than {self.config.script_timeout:g} s and was killed",
            ) from None
        except OSError as exc:
            raise StageFailed(f"{kind}-error", f"cannot execute {name}: {describe(exc)}") from None
        output = clip((completed.stdout + completed.stderr).decode("utf-8", "replace"))
        if completed.returncode != 0:
            detail = f": {output}" if output else ""
            raise StageFailed(f"{kind}-error", f"{name} exited with {completed.returncode}{detail}")
        self.reporter.step(connection, f"{kind}-complete", output or f"{name} exited with 0")
        return Verdict.CONTINUE

    def _configuration(
        self, connection: Connection, configuration: bytes, handling: str
    ) -> Verdict:
        self.reporter.step(connection, "config-initiated", f"{handling} {len(configuration)} bytes")
        try:
            path = self.work_dir.commit_configuration(configuration, handling)
        except OSError as exc:
            raise StageFailed("config-error", f"cannot commit: {describe(exc)}") from None
        verb = "merged into" if handling == "merge" else "replaced"
        self.reporter.step(connection, "config-complete", f"configuration {verb} {path}")
        return Verdict.CONTINUE

    def _complete(self, connection: Connection) -> Verdict:
        keys = self._host_keys()
        names = ", ".join(key.algorithm for key in keys) or "none"
        self.reporter.step(
            connection,
            "bootstrap-complete",
            f"running {self.system.name_and_version()}; SSH host keys: {names}",
            ssh_host_keys=keys,
        )
        return Verdict.DONE

    def _host_keys(self) -> tuple[SshHostKey, ...]:
        if self.ssh_host_keys is None:
            key, public_line = generate_ssh_host_key()
            try:
                self.work_dir.write("ssh_host_ed25519_key.pub", public_line, mode=0o644)
            except OSError as exc:
                self.log(f"cannot keep the SSH host public key: {describe(exc)}")
            self.ssh_host_keys = (key,)
        return self.ssh_host_keys

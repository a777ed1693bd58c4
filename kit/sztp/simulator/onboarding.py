"""Onboarding information (RFC 8572 §5.6): boot image → pre-configuration script →
configuration → post-configuration script, then `bootstrap-complete` with the device's SSH host
keys. A boot-image mismatch downloads the image (its SHA-256 checked) and hands it to the
platform to install, then asks for a reboot; each action is the platform's (`DevicePlatform`),
and a failed one raises `StageFailed` for the procedure to report and abandon the source."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ..protocol.bootstrapping_data import VerifiedBootstrappingData
from ..protocol.conveyed_info import BootImage, OnboardingInformation
from .model import Download, Log, SimulatorConfig
from .platform import ActionResult, DevicePlatform, PlatformError, ScriptStage
from .reporting import ProgressReporter
from .transport import Connection, Transport
from .verdicts import Abandon, StageFailed, Verdict
from .workdir import WorkDirectory


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
        system: RunningSystem,
        platform: DevicePlatform,
        reporter: ProgressReporter,
        work_dir: WorkDirectory,
        transport: Transport,
        log: Log,
    ) -> None:
        self.config = config
        self.system = system
        self.platform = platform
        self.reporter = reporter
        self.work_dir = work_dir
        self.transport = transport
        self.log = log
        self.downloads: list[Download] = []

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
                downloaded = self.work_dir.download_image(self.transport, uri, image.sha256)
            except Abandon as exc:
                self.log(f"download {uri}: {exc}")
                self.downloads.append(Download(uri, f"failed: {exc}"))
                problems.append(f"{uri}: {exc}")
                continue
            self.downloads.append(Download(uri, f"{downloaded.describe()}, sha-256 verified"))
            installed = self._act(
                "boot-image", partial(self.platform.install_image, downloaded.path, image)
            )
            if installed.warning:
                self.reporter.step(connection, "boot-image-warning", installed.message)
            self.system.installed_image_sha256 = image.sha256
            self.system.os_name = image.os_name or self.system.os_name
            self.system.os_version = image.os_version or self.system.os_version
            self.reporter.step(
                connection,
                "boot-image-installed-rebooting",
                f"installed {wanted} from {uri} ({downloaded.describe()}, sha-256 verified; "
                f"{installed.message}), rebooting",
            )
            return Verdict.REBOOT
        raise StageFailed("boot-image-error", "; ".join(problems))

    def _act(self, kind: str, action: Callable[[], ActionResult]) -> ActionResult:
        """Run a platform action; its hard error becomes the stage's `{kind}-error`."""
        try:
            return action()
        except PlatformError as exc:
            raise StageFailed(f"{kind}-error", str(exc)) from None

    def _finish(self, connection: Connection, kind: str, result: ActionResult) -> Verdict:
        """Report how an action ended: `{kind}-warning` then `{kind}-complete` for a soft
        error (RFC 8572: it "will not affect manageability"), `{kind}-complete` otherwise."""
        if result.warning:
            self.reporter.step(connection, f"{kind}-warning", result.message)
        self.reporter.step(connection, f"{kind}-complete", result.message)
        return Verdict.CONTINUE

    def _script(self, connection: Connection, stage: ScriptStage, script: bytes) -> Verdict:
        kind = f"{stage}-script"
        self.reporter.step(
            connection, f"{kind}-initiated", f"{stage}-configuration-script ({len(script)} bytes)"
        )
        result = self._act(kind, lambda: self.platform.run_script(stage, script))
        return self._finish(connection, kind, result)

    def _configuration(
        self, connection: Connection, configuration: bytes, handling: str
    ) -> Verdict:
        self.reporter.step(connection, "config-initiated", f"{handling} {len(configuration)} bytes")
        result = self._act(
            "config", lambda: self.platform.commit_configuration(configuration, handling)
        )
        return self._finish(connection, "config", result)

    def _complete(self, connection: Connection) -> Verdict:
        keys = self.platform.ssh_host_keys()
        names = ", ".join(key.algorithm for key in keys) or "none"
        self.reporter.step(
            connection,
            "bootstrap-complete",
            f"running {self.system.name_and_version()}; SSH host keys: {names}",
            ssh_host_keys=keys,
        )
        return Verdict.DONE

"""Progress reports (RFC 8572 §5.6 and the `reporting-level` leaf of the bootstrap-server
module): every step is recorded, but sent only over a trusted connection, and at `minimal` only
when it is `bootstrap-initiated`, a terminating report or an `*-error`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..protocol import restconf
from ..protocol.restconf import (
    BOOT_IMAGE_INSTALLED_REBOOTING,
    BOOTSTRAP_COMPLETE,
    BOOTSTRAP_INITIATED,
    ERROR_PROGRESS_TYPES,
    SshHostKey,
    WireFormat,
)
from .model import Log, Step
from .transport import Connection, Transport, http_error
from .verdicts import Abandon

# Progress types sent even at reporting-level "minimal" (besides every "*-error").
_MINIMAL_REPORTS = frozenset(
    {BOOTSTRAP_INITIATED, BOOT_IMAGE_INSTALLED_REBOOTING, BOOTSTRAP_COMPLETE}
)


class ProgressReporter:
    """Records the device's steps and reports those its server should hear."""

    def __init__(
        self,
        transport: Transport,
        wire_format: WireFormat,
        log: Log,
        observer: Callable[[Step], None] | None = None,
        context: str = "",
    ) -> None:
        self.transport = transport
        self.wire_format = wire_format
        self.log = log
        self.observer = observer
        # What the device says of its session in each `bootstrap-initiated` (the agent: how
        # it found the server, which attempt this is), so the operator sees it server-side.
        self.context = context
        self.steps: list[Step] = []
        # The last trusted server a step went to: where an aborted session says so.
        self.last_trusted: Connection | None = None

    def step(
        self,
        connection: Connection,
        progress_type: str,
        message: str,
        *,
        ssh_host_keys: Sequence[SshHostKey] = (),
    ) -> None:
        if progress_type == BOOTSTRAP_INITIATED and self.context:
            message = f"{message}; {self.context}"
        reported = False
        if connection.trusted:
            self.last_trusted = connection
        if not connection.trusted:
            marker = "not reported: untrusted server"
        elif not _wanted(progress_type, connection.reporting_level):
            marker = f"not reported: reporting-level {connection.reporting_level}"
        else:
            reported = self._report(connection, progress_type, message, ssh_host_keys)
            marker = "reported" if reported else "report failed"
        step = Step(progress_type, message, reported, connection.server.uri)
        self.steps.append(step)
        self.log(f"{progress_type}: {message} [{marker}]")
        if self.observer is not None:
            self.observer(step)

    def _report(
        self,
        connection: Connection,
        progress_type: str,
        message: str,
        ssh_host_keys: Sequence[SshHostKey],
    ) -> bool:
        report = restconf.ProgressReport(
            progress_type=progress_type,
            message=message,
            ssh_host_keys=tuple(ssh_host_keys),
        )
        body = restconf.encode_report_progress_input(report, self.wire_format)
        try:
            response = self.transport.post(
                connection, restconf.RPC_REPORT_PROGRESS, body, restconf.MAX_ERRORS_SIZE
            )
        except Abandon as exc:
            self.log(f"report {progress_type} not delivered: {exc}")
            return False
        if response.status_code not in (200, 204):
            self.log(f"report {progress_type} refused: {http_error(response)}")
            return False
        return True


def _wanted(progress_type: str, reporting_level: str) -> bool:
    if reporting_level == "verbose":
        return True
    return progress_type in _MINIMAL_REPORTS or progress_type in ERROR_PROGRESS_TYPES

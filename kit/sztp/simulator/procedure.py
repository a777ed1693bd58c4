"""The device procedure of RFC 8572 §5, as the package docstring tells it: sources tried in order,
each bootstrap server trusted or provisional (§5.3), its answer verified (§5.4), redirects
followed to a bounded depth (§5.5), onboarding information handed to `Onboarding` (§5.6), and
the whole procedure started again after a boot-image install. Bootstrapping data found in DNS
goes through the same verification as a server's answer over provisional TLS: DNS is no more
trusted than such a server (§4.2)."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import requests
from urllib3.exceptions import InsecureRequestWarning

from ..dns_discovery import DnsData, DnsServer, DnsSource
from ..errors import SztpError
from ..protocol import bootstrapping_data, restconf
from ..protocol.bootstrapping_data import BootstrappingData, VerifiedBootstrappingData
from ..protocol.conveyed_info import BootstrapServer, OnboardingInformation, RedirectInformation
from .ldevid import LdevidEnrollment
from .model import (
    DeviceIdentity,
    Log,
    Outcome,
    ServerCheck,
    SimulationResult,
    SimulatorConfig,
    Step,
)
from .onboarding import Onboarding, RunningSystem
from .platform import DevicePlatform, WorkDirectoryPlatform
from .reporting import ProgressReporter
from .transport import (
    Connection,
    Reply,
    Server,
    Transport,
    http_error,
    reply_errors,
    tls_reason,
)
from .verdicts import Abandon, StageFailed, Verdict
from .workdir import WorkDirectory

NONCE_SIZE = 16


class Device:
    """One device: `run` plays the procedure once (plus reboots the platform takes in its
    stride). The simulator's platform keeps everything in the work directory; the agent passes
    its own, the system as it stands after earlier boots, an observer of every step and the
    `context` its `bootstrap-initiated` reports carry."""

    def __init__(
        self,
        config: SimulatorConfig,
        identity: DeviceIdentity,
        log: Log,
        *,
        platform: DevicePlatform | None = None,
        system: RunningSystem | None = None,
        observer: Callable[[Step], None] | None = None,
        context: str = "",
    ) -> None:
        self.config = config
        self.identity = identity
        self.log = log
        self.system = system or RunningSystem(identity.os_name, identity.os_version)
        self.servers_contacted: list[str] = []
        self.server_checks: list[ServerCheck] = []
        self.failures: list[str] = []
        self.transport = Transport(config, identity, log)
        self.work_dir = WorkDirectory(config.work_dir, config.max_image_size, log)
        self.platform = platform or WorkDirectoryPlatform(
            self.work_dir,
            run_scripts=config.run_scripts,
            script_timeout=config.script_timeout,
            serial_number=identity.serial_number,
            ssh_host_keys=config.ssh_host_keys,
        )
        self.reporter = ProgressReporter(self.transport, config.wire_format, log, observer, context)
        self.onboarding = Onboarding(
            config, self.system, self.platform, self.reporter, self.work_dir, self.transport, log
        )
        self._nonce: bytes | None = None
        self.ldevid: LdevidEnrollment | None = None
        # Whether the server being tried answered over trusted TLS (None: no answer yet).
        self._tls_trusted: bool | None = None

    # ---- top level

    def run(self, uris: Sequence[str], found: Sequence[DnsSource] = ()) -> SimulationResult:
        """Bootstrap from `uris`, then from what DNS `found` (`dns_discovery.discover`)."""
        with (
            self.transport.session,
            tempfile.TemporaryDirectory(prefix="sztp-sim-") as temporary,
            warnings.catch_warnings(),
        ):
            # Provisional (unverified) TLS is part of the protocol, and logged as such.
            warnings.simplefilter("ignore", InsecureRequestWarning)
            self.work_dir.scratch = Path(temporary)
            return self._run(uris, found)

    def _run(self, uris: Sequence[str], found: Sequence[DnsSource]) -> SimulationResult:
        server_ca = str(self.config.server_ca) if self.config.server_ca else None
        for source in found:
            if isinstance(source, DnsServer):
                self.transport.local_names.learn(source.uri, source.addresses)
        initial: list[Server | DnsData] = [
            Server(uri, server_ca, fall_back_to_provisional=True)
            for uri in [*uris, *(source.uri for source in found if isinstance(source, DnsServer))]
        ]
        # TXT data before SRV servers (RFC 8572 §4.2.1), both after the configured URIs.
        initial[len(uris) : len(uris)] = [source for source in found if isinstance(source, DnsData)]
        while True:
            self.log(
                f"device {self.identity.serial_number} starts bootstrapping "
                f"(running {self.system.name_and_version()})"
            )
            self.failures = []
            verdict = self._walk(initial, depth=0)
            if verdict is Verdict.DONE:
                return self._result("success", None)
            if verdict is Verdict.REBOOT:
                self.system.reboots += 1
                self.log(
                    f"rebooting into {self.system.name_and_version()} "
                    f"(reboot {self.system.reboots})"
                )
                if self.platform.reboot():
                    continue
                return self._result("rebooting", None)
            reason = "; ".join(self.failures) or "no bootstrap server answered"
            if not initial:
                reason = "no bootstrap server: DNS offered none"
            return self._result("failed", reason)

    def abort(self, reason: str) -> None:
        """Tell the last trusted server the session ends here (`bootstrap-error`), when one
        was reached: the device stops for its own reasons, not the server's."""
        if self.reporter.last_trusted is not None:
            self.reporter.step(self.reporter.last_trusted, "bootstrap-error", reason)

    def _result(self, outcome: Outcome, reason: str | None) -> SimulationResult:
        return SimulationResult(
            outcome=outcome,
            reason=reason,
            steps=tuple(self.reporter.steps),
            servers_contacted=tuple(self.servers_contacted),
            server_checks=tuple(self.server_checks),
            downloads=tuple(self.onboarding.downloads),
            os_name=self.system.os_name,
            os_version=self.system.os_version,
            files_written=tuple(dict.fromkeys(self.work_dir.files_written)),
            reboots=self.system.reboots,
            ldevid=self.ldevid.accepted if self.ldevid is not None else None,
        )

    def _walk(self, sources: Sequence[Server | DnsData], depth: int) -> Verdict:
        for source in sources:
            if isinstance(source, Server):
                verdict = self._bootstrap_from(source, depth)
            else:
                verdict = self._bootstrap_from_dns(source, depth)
            if verdict is not Verdict.ABANDON:
                return verdict
        return Verdict.ABANDON

    def _abandon(self, server: Server, reason: str, *, logged: bool = False) -> Verdict:
        if not logged:
            self.log(f"{server.uri}: {reason}")
        self.failures.append(f"{server.uri}: {reason}")
        return Verdict.ABANDON

    # ---- one bootstrap server (RFC 8572 §5.3, §5.4)

    def _bootstrap_from(self, server: Server, depth: int) -> Verdict:
        self.servers_contacted.append(server.uri)
        self._tls_trusted = None
        try:
            connection, data = self._get_bootstrapping_data(server)
        except Abandon as exc:
            check = ServerCheck(server.uri, self._tls_trusted, f"no data: {exc}")
            self.server_checks.append(check)
            return self._abandon(server, str(exc))
        return self._process(server, connection, data, depth)

    def _bootstrap_from_dns(self, found: DnsData, depth: int) -> Verdict:
        """Bootstrapping data from TXT records, processed as a server's answer over provisional
        TLS: signed data verified fully, an unsigned redirect followed provisionally, unsigned
        onboarding information refused; no nonce was sent, no LDevID offered, nothing
        reported (there is no server to report to)."""
        self._nonce = None
        self.ldevid = None
        source = Server(found.source, None, fall_back_to_provisional=False)
        kind = "signed" if found.data.signed else "unsigned"
        self.log(f"{found.source}: {kind} bootstrapping data from DNS, an untrusted source")
        return self._process(source, Connection(source, False, trusted=False), found.data, depth)

    def _process(
        self, server: Server, connection: Connection, data: BootstrappingData, depth: int
    ) -> Verdict:
        """Verify a source's bootstrapping data (§5.4), then follow or act on it."""
        nonce = self._nonce
        try:
            verified = bootstrapping_data.verify_bootstrapping_data(
                data,
                serial_number=self.identity.serial_number,
                trust_anchors=self.config.trust_anchors,
                server_trusted=connection.trusted,
                nonce=nonce,
            )
        except SztpError as exc:
            reason = f"bootstrapping data rejected: {exc}"
            self.server_checks.append(ServerCheck(server.uri, connection.trusted, reason))
            if connection.trusted:
                self.reporter.step(
                    connection, "bootstrap-initiated", "get-bootstrapping-data answered"
                )
                self.reporter.step(connection, "parsing-error", reason)
            return self._abandon(server, reason, logged=connection.trusted)
        what = "redirect" if isinstance(verified.information, RedirectInformation) else "onboarding"
        if verified.signed:
            accepted = "signed: voucher, owner certificate and signature verified"
        elif connection.trusted:
            accepted = "unsigned, from a trusted server"
        else:
            accepted = "unsigned, followed provisionally"
        self.server_checks.append(
            ServerCheck(server.uri, connection.trusted, f"{what} information {accepted}")
        )
        if isinstance(verified.information, RedirectInformation):
            return self._redirect(server, connection, verified, verified.information, depth)
        connection.reporting_level = data.reporting_level or "minimal"
        if self.ldevid is not None and self.ldevid.key is not None:
            try:
                accepted = self.ldevid.accept(verified.information, verified)
            except Abandon as exc:
                self.reporter.step(connection, "bootstrap-error", str(exc))
                return self._abandon(server, str(exc), logged=True)
            self.server_checks.append(ServerCheck(server.uri, connection.trusted, accepted))
        return self._onboard(connection, verified, verified.information)

    def _get_bootstrapping_data(self, server: Server) -> tuple[Connection, BootstrappingData]:
        trusted = server.ca_file is not None
        connection = Connection(server, server.ca_file or False, trusted)
        try:
            connection.restconf_root = self.transport.discover_root(connection)
        except requests.exceptions.SSLError as exc:
            if not (trusted and server.fall_back_to_provisional):
                raise Abandon(f"TLS failed: {tls_reason(exc)}") from None
            self.log(
                f"{server.uri}: server certificate not trusted ({tls_reason(exc)}); "
                "continuing provisionally"
            )
            connection = Connection(server, False, trusted=False)
            try:
                connection.restconf_root = self.transport.discover_root(connection)
            except requests.exceptions.SSLError as retry:
                raise Abandon(f"TLS failed: {tls_reason(retry)}") from None
        self._tls_trusted = connection.trusted
        state = "trusted" if connection.trusted else "untrusted (provisional)"
        self.log(f"{server.uri}: {state} server, RESTCONF root {connection.restconf_root}")
        self._nonce = os.urandom(NONCE_SIZE) if self.config.send_nonce else None
        # An LDevID only from a server the device trusts (RFC 9646).
        self.ldevid = (
            LdevidEnrollment(self.config.ldevid_keys, self.identity, self.work_dir, self.log)
            if self.config.ldevid_keys and connection.trusted
            else None
        )
        request = restconf.GetBootstrappingDataInput(
            signed_data_preferred=not connection.trusted,
            hw_model=self.identity.hw_model,
            os_name=self.system.os_name,
            os_version=self.system.os_version,
            nonce=self._nonce,
            csr_support=self.ldevid.support() if self.ldevid is not None else None,
        )
        response = self._post_input(connection, request)
        if response.status_code == 400 and self.ldevid is not None:
            answer = self.ldevid.answer(_errors(response))
            if answer is not None:
                request = dataclasses.replace(request, csr_support=None, csr=answer)
                response = self._post_input(connection, request)
        if response.status_code != 200:
            withheld = ""
            if self.identity.password is not None and not connection.trusted:
                withheld = " (Basic password withheld: it goes only to a trusted server)"
            raise Abandon(f"get-bootstrapping-data failed: {http_error(response)}{withheld}")
        try:
            data = restconf.parse_get_bootstrapping_data_output(
                response.content, self.config.wire_format
            )
        except SztpError as exc:
            raise Abandon(f"get-bootstrapping-data answer unreadable: {exc}") from None
        kind = "signed" if data.ownership_voucher is not None else "unsigned"
        self.log(f"{server.uri}: received {kind} bootstrapping data")
        return connection, data

    def _post_input(
        self, connection: Connection, request: restconf.GetBootstrappingDataInput
    ) -> Reply:
        body = restconf.encode_get_bootstrapping_data_input(request, self.config.wire_format)
        return self.transport.post(
            connection, restconf.RPC_GET_BOOTSTRAPPING_DATA, body, restconf.MAX_OUTPUT_SIZE
        )

    # ---- redirect information (§5.5)

    def _redirect(
        self,
        server: Server,
        connection: Connection,
        verified: VerifiedBootstrappingData,
        information: RedirectInformation,
        depth: int,
    ) -> Verdict:
        if depth >= self.config.max_redirects:
            return self._abandon(
                server, f"redirect refused: more than {self.config.max_redirects} redirects"
            )
        trusted_source = verified.signed or connection.trusted
        origin = "signed" if verified.signed else ("trusted" if connection.trusted else "untrusted")
        self.log(
            f"{server.uri}: {origin} redirect to "
            + ", ".join(_server_uri(target) for target in information.bootstrap_servers)
        )
        targets: list[Server] = []
        for index, target in enumerate(information.bootstrap_servers):
            uri = _server_uri(target)
            ca_file = None
            if target.trust_anchor is not None and trusted_source:
                try:
                    ca_file = self.work_dir.write_trust_anchor(target.trust_anchor, depth, index)
                except SztpError as exc:
                    self._abandon(Server(uri, None, False), f"trust-anchor unusable: {exc}")
                    continue
            elif target.trust_anchor is not None:
                self.log(f"{uri}: trust-anchor from an untrusted redirect ignored")
            targets.append(Server(uri, ca_file, fall_back_to_provisional=False))
        return self._walk(targets, depth + 1)

    # ---- onboarding information (§5.6)

    def _onboard(
        self,
        connection: Connection,
        verified: VerifiedBootstrappingData,
        information: OnboardingInformation,
    ) -> Verdict:
        try:
            return self.onboarding.run(connection, verified, information)
        except StageFailed as failure:
            self.reporter.step(connection, failure.progress_type, failure.reason)
            return self._abandon(connection.server, str(failure), logged=True)


def _errors(response: Reply) -> tuple[restconf.RestconfError, ...]:
    return tuple(reply_errors(response))


def _server_uri(server: BootstrapServer) -> str:
    host = f"[{server.address}]" if ":" in server.address else server.address
    return f"https://{host}:{server.port}"

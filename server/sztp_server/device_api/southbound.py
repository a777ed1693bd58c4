"""The device-facing RESTCONF API of RFC 8572: host-meta and the two RPCs.

Every failure answers with an `ietf-restconf:errors` body in the device's media type; the
body never says whether a serial number exists.
"""

from __future__ import annotations

import _ssl
import asyncio
import base64
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from sztp import progress
from sztp.errors import SztpError, ValidationError
from sztp.progress import StoredReport
from sztp.protocol import restconf
from sztp.protocol.restconf import RestconfError, WireFormat
from sztp.refusals import TLS_HANDSHAKE, Refusal

from ..config import ServerConfig
from ..connections import HANDSHAKE_REFUSED
from ..context import ServerContext
from ..events_out.syslog_sender import SyslogSender
from ..events_out.webhook_events import status_events
from ..fleet_status import stall_after
from ..ldevid import enrollment
from ..ldevid.issuers import IssuerError, IssuerPool
from ..logs import get_logger
from ..metrics import Metrics
from ..store.base import OutboxRow
from ..store.errors import StoreError
from ..store.model import ProgressRecord, ReportOutcome
from .device_auth import AuthenticationFailed, DeviceAuthenticator, PeerInfo
from .password_logins import BUSY_RETRY_AFTER_SECONDS, PasswordWorkersBusy, TooManyFailures
from .rate_limits import RateLimits
from .recorder import Pending, Recorder, claimed_serial, device_events, device_said
from .report_limits import cap_report
from .responder import DeviceRequest, NoBootstrappingData, Responder, WaitsForToken

RESTCONF_ROOT = "/restconf"
# OpenSSL's verify codes for a certificate outside its validity period (X509_V_ERR_CERT_NOT_YET
# _VALID, X509_V_ERR_CERT_HAS_EXPIRED).
_EXPIRY_CODES = frozenset({9, 10})
_LOG = get_logger()


# How long a refusal that carries Retry-After (rate limited, workers busy) is held back.
REFUSAL_PAUSE_SECONDS = 1.0


class _RpcFailure(Exception):
    """Ends an RPC with a RESTCONF error; `refusal` (counted) and `log_reason` (logged) are for
    the operator, never for the device."""

    def __init__(
        self,
        error: RestconfError,
        status: int,
        refusal: Refusal,
        log_reason: str | None = None,
        *,
        close_connection: bool = False,
        retry_after: int | None = None,
        named: str | None = None,
    ) -> None:
        super().__init__(error.error_message)
        self.error = error
        self.status = status
        self.refusal = refusal
        self.log_reason = log_reason
        self.close_connection = close_connection
        self.retry_after = retry_after
        self.named = named  # the serial a trusted certificate named, for the recorder


def build_device_app(
    context: ServerContext, metrics: Metrics, limits: RateLimits
) -> web.Application:
    """The device API of one server process; `limits` are the server's (one set, shared by
    every process serving devices)."""
    # The largest legitimate device body is a progress report; the codec bounds each RPC.
    app = web.Application(client_max_size=restconf.MAX_REPORT_SIZE)
    handlers = _DeviceHandlers(context, metrics, limits)
    app.on_startup.append(handlers.start)
    app.on_cleanup.append(handlers.close)
    app[HANDSHAKE_REFUSED] = handlers.handshake_refused
    root = RESTCONF_ROOT
    app.router.add_get("/.well-known/host-meta", handlers.host_meta)
    app.router.add_post(
        restconf.operation_path(root, restconf.RPC_GET_BOOTSTRAPPING_DATA),
        handlers.get_bootstrapping_data,
    )
    app.router.add_post(
        restconf.operation_path(root, restconf.RPC_REPORT_PROGRESS), handlers.report_progress
    )
    if context.config.monitoring_listeners in ("device", "both"):
        app.router.add_get("/healthz", handlers.healthz)
        app.router.add_get("/metrics", metrics.device_page)
    return app


class _DeviceHandlers:
    def __init__(self, context: ServerContext, metrics: Metrics, limits: RateLimits) -> None:
        self.context = context
        self.metrics = metrics
        self.authenticator = DeviceAuthenticator(context.config, limits.logins)
        self.responder = Responder(context.config.response_cache_bytes)
        self.issuers = IssuerPool(context.config.ldevid_issuers, context.tokens)
        self.report_rate = limits.reports
        self.syslog = SyslogSender.of(context.config, metrics)
        self.recorder = Recorder(
            self._write_events,
            metrics,
            context.config.refused_events_per_second,
            forward=None if self.syslog is None else self.syslog.send,
        )

    async def _write_events(self, batch: list[Pending]) -> None:
        store = self.context.store
        config = self.context.config
        keep, days = config.device_events_kept, config.device_events_max_age_days

        def write() -> None:  # in a store thread, the events made there too
            before = datetime.now(UTC) - timedelta(days=days) if days else None
            store.add_device_events(device_events(batch), keep=keep, before=before)

        await self.context.device_store.run(write)

    async def start(self, _app: web.Application) -> None:
        if self.syslog is not None:
            self.syslog.start()
        self.recorder.start()

    def handshake_refused(
        self, remote: str, error: ssl.SSLCertVerificationError, seconds: float
    ) -> None:
        """Count and record a TLS handshake that refused the client's certificate (one no
        trust anchor ever loaded issued, or expired): it ends before any request."""
        expired = error.verify_code in _EXPIRY_CODES
        refusal = Refusal.EXPIRED_CERTIFICATE if expired else Refusal.UNTRUSTED_CERTIFICATE
        self.metrics.increment(
            "sztp_refused_requests_total", rpc=TLS_HANDSHAKE, reason=refusal.value
        )
        recorded = self.recorder.record(
            TLS_HANDSHAKE, 0, None, False, refusal.value, remote, seconds
        )
        if recorded:  # as often as refusals are recorded: a flood does not flood the log
            _LOG.warning(
                "TLS handshake refused",
                extra={
                    "remote": remote,
                    "refusal": refusal.value,
                    "reason": str(error.verify_message),
                },
            )

    async def close(self, _app: web.Application) -> None:
        await self.recorder.stop()
        if self.syslog is not None:
            await asyncio.to_thread(self.syslog.stop)
        self.authenticator.close()

    async def host_meta(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=restconf.encode_host_meta(RESTCONF_ROOT), content_type="application/xrd+xml"
        )

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "revision": self.context.snapshot().revision})

    async def get_bootstrapping_data(self, request: web.Request) -> web.Response:
        return await self._rpc(request, restconf.GET_BOOTSTRAPPING_DATA, self._bootstrapping_data)

    async def report_progress(self, request: web.Request) -> web.Response:
        return await self._rpc(request, restconf.REPORT_PROGRESS, self._progress)

    async def _rpc(
        self,
        request: web.Request,
        rpc: str,
        body_handler: Callable[
            [web.Request, str, bytes, WireFormat, WireFormat], Awaitable[web.Response]
        ],
    ) -> web.Response:
        response_format = WireFormat.JSON
        started = time.perf_counter()
        answered: float | None = None  # when a refusal held back below was decided
        serial: str | None = None
        named: str | None = None
        refusal: Refusal | None = None
        try:
            try:
                request_format, response_format = restconf.negotiate(
                    request.headers.get("Content-Type"), request.headers.get("Accept")
                )
            except ValidationError as exc:
                status = 406 if exc.field == "Accept" else 415
                raise _RpcFailure(
                    _error("protocol", "invalid-value", restconf.echo(exc.message)),
                    status,
                    Refusal.BAD_REQUEST,
                ) from None
            # The body only once the sender is known: an anonymous client cannot make the
            # server wait for, or buffer, a body it never meant to finish.
            serial = await self._authenticate(request)
            body = await self._read_body(request)
            response = await body_handler(request, serial, body, request_format, response_format)
        except _RpcFailure as failure:
            refusal = failure.refusal
            named = failure.named
            self.metrics.increment(
                "sztp_refused_requests_total", rpc=rpc, reason=failure.refusal.value
            )
            if failure.log_reason:
                _LOG.warning(
                    "device request refused",
                    extra={
                        "rpc": rpc,
                        "remote": request.remote,
                        "refusal": failure.refusal.value,
                        "reason": failure.log_reason,
                    },
                )
            response = web.Response(
                status=failure.status,
                body=restconf.encode_errors([failure.error], response_format),
                content_type=response_format.media_type,
            )
            if failure.close_connection:
                response.force_close()
            if failure.retry_after is not None:
                answered = time.perf_counter()  # the request's time does not count the pause
                response.headers["Retry-After"] = str(failure.retry_after)
                # A client told to wait gets that answer no sooner than REFUSAL_PAUSE_SECONDS:
                # a flood over kept-alive connections then costs the event loop a bounded
                # number of answers per connection, and connections are capped.
                await asyncio.sleep(REFUSAL_PAUSE_SECONDS)
        self.metrics.increment("sztp_requests_total", rpc=rpc, status=str(response.status))
        seconds = (answered or time.perf_counter()) - started
        outcome = "refused" if refusal is not None else "served"
        self.metrics.observe("sztp_request_duration_seconds", seconds, rpc=rpc, outcome=outcome)
        self._record(request, rpc, response.status, serial, refusal, seconds, named)
        return response

    def _record(
        self,
        request: web.Request,
        rpc: str,
        status: int,
        serial: str | None,
        refusal: Refusal | None,
        seconds: float,
        named: str | None,
    ) -> None:
        """The request's event for the flight recorder; a refused request before it proved
        who it is names the serial its trusted certificate named (`named`), or else the one
        its Basic credentials claimed, if any."""
        authenticated = serial is not None
        if not authenticated:
            serial = named or claimed_serial(request.headers.get("Authorization"))
        profile, image = request.get(SERVED, (None, None))
        self.recorder.record(
            rpc,
            status,
            serial,
            authenticated,
            None if refusal is None else refusal.value,
            request.remote,
            seconds,
            profile=profile,
            image=image,
            detail=request.get(DETAIL),
        )

    async def _read_body(self, request: web.Request) -> bytes:
        try:
            async with asyncio.timeout(self.context.config.request_body_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _RpcFailure(
                _error("protocol", "too-big", "request body is too large"),
                413,
                Refusal.BODY_TOO_LARGE,
            ) from None
        except ConnectionError:
            # Nobody is left to answer; the refusal only counts and ends the request quietly.
            raise _RpcFailure(
                _error("transport", "operation-failed", "request body incomplete"),
                400,
                Refusal.BODY_INCOMPLETE,
                close_connection=True,
            ) from None
        except TimeoutError:
            # The rest of the body may still come: the connection cannot carry another request.
            raise _RpcFailure(
                _error("transport", "operation-failed", "request body not received in time"),
                408,
                Refusal.BODY_TOO_SLOW,
                "request body not received in time",
                close_connection=True,
            ) from None

    async def _authenticate(self, request: web.Request) -> str:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        peer = PeerInfo(
            remote=request.remote,
            client_chain=_client_chain(ssl_object) if ssl_object else (),
            headers=tuple(request.headers.items()),
        )
        try:
            identified = await self.authenticator.identify(self.context.snapshot(), peer)
            request[BY_CERTIFICATE] = identified.by_certificate
            return identified.serial
        except AuthenticationFailed as exc:
            self.metrics.increment("sztp_authentication_failures_total")
            raise _RpcFailure(
                _error("protocol", "access-denied", "authentication failed"),
                401,
                exc.reason,
                str(exc),
                named=exc.serial,
            ) from None
        # Neither tells a known serial from an unknown one: limits count claims. Not logged
        # per request (a flood would flood the log); sztp_requests_total counts them.
        except TooManyFailures as exc:
            raise _RpcFailure(
                _error("protocol", "resource-denied", "too many failed logins; retry later"),
                429,
                Refusal.RATE_LIMITED,
                retry_after=exc.retry_after,
            ) from None
        except PasswordWorkersBusy:
            raise _RpcFailure(
                _error("protocol", "resource-denied", "too many logins at once; retry later"),
                503,
                Refusal.BUSY,
                retry_after=BUSY_RETRY_AFTER_SECONDS,
            ) from None

    async def _bootstrapping_data(
        self,
        request: web.Request,
        serial: str,
        body: bytes,
        request_format: WireFormat,
        response_format: WireFormat,
    ) -> web.Response:
        try:
            rpc_input = restconf.parse_get_bootstrapping_data_input(body, request_format)
        except ValidationError as exc:
            raise _RpcFailure(restconf.invalid_value_error(exc), 400, Refusal.BAD_REQUEST) from None
        said = device_said(
            hw_model=rpc_input.hw_model,
            os_name=rpc_input.os_name,
            os_version=rpc_input.os_version,
        )
        if said is not None:
            request[DETAIL] = said
        device_request = DeviceRequest(
            signed_data_preferred=rpc_input.signed_data_preferred,
            hw_model=rpc_input.hw_model,
            os_name=rpc_input.os_name,
            os_version=rpc_input.os_version,
        )
        snapshot = self.context.snapshot()
        ldevid = None
        wanted = self.responder.ldevid_profile(snapshot, serial, device_request)
        if wanted is not None:
            issued = await self._ldevid(request, serial, rpc_input, *wanted, response_format)
            if isinstance(issued, web.Response):
                return issued
            ldevid = issued
        try:
            try:
                answer = self.responder.respond(
                    snapshot, serial, device_request, ldevid, may_wait=False
                )
            except WaitsForToken:
                answer = await asyncio.to_thread(
                    self.responder.respond, snapshot, serial, device_request, ldevid
                )
        except NoBootstrappingData as exc:
            request[DETAIL] = _joined(request.get(DETAIL), str(exc))
            raise _RpcFailure(
                _error("application", "data-missing", "no bootstrapping data for this device"),
                404,
                Refusal.NO_BOOTSTRAPPING_DATA,
                str(exc),
            ) from None
        except SztpError as exc:
            request[DETAIL] = _joined(request.get(DETAIL), f"rendering failed: {exc}")
            raise _RpcFailure(
                _error("application", "operation-failed", "bootstrapping data is unavailable"),
                503,
                Refusal.DATA_UNAVAILABLE,
                f"rendering for {serial} failed: {exc}",
            ) from None
        data = answer.data
        request[SERVED] = (answer.profile, answer.image)
        _LOG.info(
            "bootstrapping data served",
            extra={
                "serial": serial,
                "remote": request.remote,
                "signed": data.signed,
                "profile": answer.profile,
                "image": answer.image,
            },
        )
        return web.Response(
            body=restconf.encode_get_bootstrapping_data_output(data, response_format),
            content_type=response_format.media_type,
        )

    async def _ldevid(
        self,
        request: web.Request,
        serial: str,
        rpc_input: restconf.GetBootstrappingDataInput,
        profile_name: str,
        profile: Mapping[str, Any],
        response_format: WireFormat,
    ) -> dict[str, str] | web.Response:
        """The LDevID issued to the device for its CSR (RFC 9646); or the answer that asks it
        for one (a step of the protocol, not a refusal); or _RpcFailure."""
        step = enrollment.next_step(
            serial,
            profile_name,
            profile,
            rpc_input,
            by_certificate=request.get(BY_CERTIFICATE, False),
        )
        if isinstance(step, enrollment.AskForCsr):
            request[DETAIL] = _joined(request.get(DETAIL), f"CSR asked for ({step.algorithm})")
            return web.Response(
                status=400,
                body=restconf.encode_errors(
                    [restconf.csr_request_error(step.request)], response_format
                ),
                content_type=response_format.media_type,
            )
        if isinstance(step, enrollment.Refused):
            request[DETAIL] = _joined(request.get(DETAIL), step.reason)
            raise _RpcFailure(
                _error("application", step.error_tag, step.message),
                step.status,
                Refusal.LDEVID_REFUSED,
                step.reason,
            )
        issuer = profile["ldevid_issuer"]
        try:
            issued = await self.issuers.issue(issuer, step)
            await self.context.device_store.run(
                self.context.store.add_issued_certificate,
                enrollment.issued_record(issuer, step, issued),
            )
        except (IssuerError, StoreError) as exc:
            request[DETAIL] = _joined(request.get(DETAIL), f"LDevID not issued: {exc}")
            raise _RpcFailure(
                _error("application", "operation-failed", "the LDevID could not be issued"),
                503,
                Refusal.LDEVID_UNAVAILABLE,
                f"LDevID for {serial} not issued: {exc}",
                retry_after=LDEVID_RETRY_AFTER_SECONDS,
            ) from None
        _LOG.info(
            "LDevID issued",
            extra={
                "serial": serial,
                "issuer": issuer,
                "certificate_serial": format(issued.certificate.serial_number, "x"),
                "not_after": issued.certificate.not_valid_after_utc.isoformat(),
            },
        )
        return enrollment.ldevid_variables(issued)

    async def _progress(
        self,
        request: web.Request,
        serial: str,
        body: bytes,
        request_format: WireFormat,
        _response_format: WireFormat,
    ) -> web.Response:
        # Refused rather than accepted and dropped: the device learns its report was not kept
        # (RFC 8572 devices carry on when a report fails), and nothing claims otherwise. Not
        # logged per request: a flood would flood the log; sztp_requests_total counts them.
        if not self.report_rate.take(serial):
            raise _RpcFailure(
                _error("application", "resource-denied", "too many progress reports; slow down"),
                429,
                Refusal.REPORTS_TOO_FAST,
                retry_after=math.ceil(self.report_rate.refill_seconds),
            )
        try:
            report = restconf.parse_report_progress_input(body, request_format)
        except ValidationError as exc:
            raise _RpcFailure(restconf.invalid_value_error(exc), 400, Refusal.BAD_REQUEST) from None
        # Both store calls in one trip to a device worker: every trip is two thread hand-offs.
        outcome, record = await self.context.device_store.run(
            self._store_report, serial, report, request.remote
        )
        if outcome is ReportOutcome.NO_DEVICE:
            raise _RpcFailure(
                _error("protocol", "access-denied", "authentication failed"),
                401,
                Refusal.DEVICE_DELETED,
                f"device {serial} was deleted",
            )
        if outcome is ReportOutcome.REPEATED:
            self.metrics.increment("sztp_progress_reports_repeated_total")
            _LOG.info(
                "progress report repeated, stored once",
                extra={"serial": serial, "progress_type": report.progress_type},
            )
            return web.Response(status=204)
        self.metrics.increment("sztp_progress_reports_total", progress_type=report.progress_type)
        if record.truncated:
            self.metrics.increment("sztp_progress_reports_truncated_total")
        _LOG.info(
            "progress reported",
            extra={
                "serial": serial,
                "progress_type": report.progress_type,
                "attempt": record.attempt,
                "truncated": record.truncated,
            },
        )
        return web.Response(status=204)

    def _store_report(
        self, serial: str, report: restconf.ProgressReport, remote: str | None
    ) -> tuple[ReportOutcome, ProgressRecord]:
        """Number the report's attempt after the report that decides the device's status and
        store it, unless it repeats the device's newest report. Runs on a device worker."""
        config = self.context.config
        store = self.context.store
        previous = store.report_summary(serial)
        last = previous.latest.stored_report() if previous else None
        received = ProgressRecord(
            serial=serial,
            received_at=datetime.now(UTC),
            progress_type=report.progress_type,
            message=report.message,
            source_address=remote,
            attempt=progress.assign_attempt(last, report.progress_type),
            ssh_host_keys=tuple(
                (key.algorithm, _b64(key.key_data)) for key in report.ssh_host_keys
            ),
            trust_anchor_certs=tuple(_b64(cert) for cert in report.trust_anchor_certs),
        )
        record = cap_report(received, min(config.max_report_bytes, config.report_bytes_per_device))
        outcome = store.add_report(
            record,
            keep_per_device=config.reports_per_device,
            bytes_per_device=config.report_bytes_per_device,
            decides_status=progress.decides_status(last, report.progress_type),
            repeat_window=(
                timedelta(seconds=config.repeated_report_seconds)
                if config.repeated_report_seconds
                else None
            ),
            outbox=_webhook_events(config, last, record),
        )
        return outcome, record


# Which profile and image a get-bootstrapping-data request was served from, for the recorder.
SERVED = web.RequestKey("sztp_served", tuple[str | None, str | None])
# What the device said of itself, and why it was not served, for the recorder.
DETAIL = web.RequestKey("sztp_detail", str)
# Whether the device proved its serial number with its IDevID (not only a password).
BY_CERTIFICATE = web.RequestKey("sztp_by_certificate", bool)
# How long a device whose LDevID could not be issued is asked to wait before it asks again.
LDEVID_RETRY_AFTER_SECONDS = 30


def _joined(*parts: str | None) -> str:
    return "; ".join(part for part in parts if part)


def _webhook_events(
    config: ServerConfig, last: StoredReport | None, record: ProgressRecord
) -> list[OutboxRow]:
    """The webhook events a report causes: a change of the device's status, for each webhook
    that asked for its type."""
    if not config.webhooks:
        return []
    silent = stall_after(config)
    now = record.received_at
    before = [last] if last is not None else []
    events = status_events(
        record.serial,
        progress.derive_status(before, now=now, stall_after=silent),
        progress.derive_status([*before, record.stored_report()], now=now, stall_after=silent),
        at=now,
        progress_type=record.progress_type,
        message=record.message,
    )
    return [
        (hook.name, kind, body.decode())
        for kind, body in events
        for hook in config.webhooks
        if kind in hook.events
    ]


def _client_chain(ssl_object: ssl.SSLObject) -> tuple[bytes, ...]:
    """The certificates the TLS client sent (DER), its own first; empty without one.

    IDevIDs are mostly issued by a manufacturer's intermediate CA, which the client sends
    along. OpenSSL uses those as untrusted intermediates when it verifies the client during
    the handshake (against every trust anchor ever loaded: removals are not unloaded), and
    the request is then authorised by `certs.verify_chain` against the current anchors with
    the same intermediates, as in proxy mode. `getpeercert` gives only the client's own
    certificate; the sent chain is public as `get_unverified_chain` from Python 3.13, whose
    method wraps the one on the underlying `_sslobj` that 3.11 and 3.12 have too and this reads.
    """
    if ssl_object.getpeercert(binary_form=True) is None:
        return ()  # without a client certificate the "chain" holds a None
    chain = ssl_object._sslobj.get_unverified_chain()  # type: ignore[attr-defined]
    return tuple(certificate.public_bytes(_ssl.ENCODING_DER) for certificate in chain)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _error(error_type: str, tag: str, message: str, path: str | None = None) -> RestconfError:
    return RestconfError(
        error_type=error_type, error_tag=tag, error_message=message, error_path=path
    )

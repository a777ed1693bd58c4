"""The device-facing RESTCONF API of RFC 8572: host-meta and the two RPCs.

Every failure answers with an `ietf-restconf:errors` body in the device's media type; the
body never says whether a serial number exists.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiohttp import web

from sztpctl import progress
from sztpctl.errors import SztpError, ValidationError
from sztpctl.protocol import restconf
from sztpctl.protocol.restconf import RestconfError, WireFormat

from .context import ServerContext
from .device_auth import AuthenticationFailed, DeviceAuthenticator, PeerInfo
from .logs import get_logger
from .metrics import Metrics
from .responder import DeviceRequest, NoBootstrappingData, Responder
from .store.model import ProgressRecord

RESTCONF_ROOT = "/restconf"
_LOG = get_logger()


class _RpcFailure(Exception):
    """Ends an RPC with a RESTCONF error; `log_reason` goes to the log, never to the device."""

    def __init__(self, error: RestconfError, status: int, log_reason: str | None = None) -> None:
        super().__init__(error.error_message)
        self.error = error
        self.status = status
        self.log_reason = log_reason


def build_device_app(context: ServerContext, metrics: Metrics) -> web.Application:
    # The largest legitimate device body is a progress report; the codec bounds each RPC.
    app = web.Application(client_max_size=restconf.MAX_REPORT_SIZE)
    handlers = _DeviceHandlers(context, metrics)
    root = RESTCONF_ROOT
    app.router.add_get("/.well-known/host-meta", handlers.host_meta)
    app.router.add_post(
        restconf.operation_path(root, restconf.RPC_GET_BOOTSTRAPPING_DATA),
        handlers.get_bootstrapping_data,
    )
    app.router.add_post(
        restconf.operation_path(root, restconf.RPC_REPORT_PROGRESS), handlers.report_progress
    )
    app.router.add_get("/healthz", handlers.healthz)
    app.router.add_get("/metrics", handlers.metrics_page)
    return app


class _DeviceHandlers:
    def __init__(self, context: ServerContext, metrics: Metrics) -> None:
        self.context = context
        self.metrics = metrics
        self.authenticator = DeviceAuthenticator(context.config)
        self.responder = Responder()

    async def host_meta(self, _request: web.Request) -> web.Response:
        return web.Response(
            body=restconf.encode_host_meta(RESTCONF_ROOT), content_type="application/xrd+xml"
        )

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "revision": self.context.snapshot().revision})

    async def metrics_page(self, _request: web.Request) -> web.Response:
        return web.Response(text=self.metrics.render(), content_type="text/plain")

    async def get_bootstrapping_data(self, request: web.Request) -> web.Response:
        return await self._rpc(request, "get-bootstrapping-data", self._bootstrapping_data)

    async def report_progress(self, request: web.Request) -> web.Response:
        return await self._rpc(request, "report-progress", self._progress)

    async def _rpc(
        self,
        request: web.Request,
        rpc: str,
        body_handler: Callable[
            [web.Request, str, bytes, WireFormat, WireFormat], Awaitable[web.Response]
        ],
    ) -> web.Response:
        response_format = WireFormat.JSON
        try:
            try:
                request_format, response_format = restconf.negotiate(
                    request.headers.get("Content-Type"), request.headers.get("Accept")
                )
            except ValidationError as exc:
                status = 406 if exc.field == "Accept" else 415
                raise _RpcFailure(
                    _error("protocol", "invalid-value", exc.message), status
                ) from None
            body = await self._read_body(request)
            serial = await self._authenticate(request)
            response = await body_handler(request, serial, body, request_format, response_format)
        except _RpcFailure as failure:
            if failure.log_reason:
                _LOG.warning(
                    "device request refused",
                    extra={"rpc": rpc, "remote": request.remote, "reason": failure.log_reason},
                )
            response = web.Response(
                status=failure.status,
                body=restconf.encode_errors([failure.error], response_format),
                content_type=response_format.media_type,
            )
        self.metrics.increment("sztp_requests_total", rpc=rpc, status=str(response.status))
        return response

    async def _read_body(self, request: web.Request) -> bytes:
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _RpcFailure(
                _error("protocol", "too-big", "request body is too large"), 413
            ) from None

    async def _authenticate(self, request: web.Request) -> str:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        peer = PeerInfo(
            remote=request.remote,
            client_certificate=ssl_object.getpeercert(binary_form=True) if ssl_object else None,
            headers=tuple(request.headers.items()),
        )
        try:
            return await self.authenticator.authenticate(self.context.snapshot(), peer)
        except AuthenticationFailed as exc:
            self.metrics.increment("sztp_authentication_failures_total")
            raise _RpcFailure(
                _error("protocol", "access-denied", "authentication failed"), 401, str(exc)
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
            raise _RpcFailure(_input_error(exc), 400) from None
        device_request = DeviceRequest(
            signed_data_preferred=rpc_input.signed_data_preferred,
            hw_model=rpc_input.hw_model,
            os_name=rpc_input.os_name,
            os_version=rpc_input.os_version,
        )
        try:
            data = self.responder.respond(self.context.snapshot(), serial, device_request)
        except NoBootstrappingData as exc:
            raise _RpcFailure(
                _error("application", "data-missing", "no bootstrapping data for this device"),
                404,
                str(exc),
            ) from None
        except SztpError as exc:
            raise _RpcFailure(
                _error("application", "operation-failed", "bootstrapping data is unavailable"),
                503,
                f"rendering for {serial} failed: {exc}",
            ) from None
        _LOG.info(
            "bootstrapping data served",
            extra={"serial": serial, "remote": request.remote, "signed": data.signed},
        )
        return web.Response(
            body=restconf.encode_get_bootstrapping_data_output(data, response_format),
            content_type=response_format.media_type,
        )

    async def _progress(
        self,
        request: web.Request,
        serial: str,
        body: bytes,
        request_format: WireFormat,
        _response_format: WireFormat,
    ) -> web.Response:
        try:
            report = restconf.parse_report_progress_input(body, request_format)
        except ValidationError as exc:
            raise _RpcFailure(_input_error(exc), 400) from None
        store = self.context.store
        previous = store.reports(serial, limit=1)
        last = _stored(previous[-1]) if previous else None
        record = ProgressRecord(
            serial=serial,
            received_at=datetime.now(UTC),
            progress_type=report.progress_type,
            message=report.message,
            source_address=request.remote,
            attempt=progress.assign_attempt(last, report.progress_type),
            ssh_host_keys=tuple(
                (key.algorithm, _b64(key.key_data)) for key in report.ssh_host_keys
            ),
            trust_anchor_certs=tuple(_b64(cert) for cert in report.trust_anchor_certs),
        )
        store.add_report(record, keep_per_device=self.context.config.reports_per_device)
        self.metrics.increment("sztp_progress_reports_total", progress_type=report.progress_type)
        _LOG.info(
            "progress reported",
            extra={
                "serial": serial,
                "progress_type": report.progress_type,
                "attempt": record.attempt,
            },
        )
        return web.Response(status=204)


def _stored(record: ProgressRecord) -> progress.StoredReport:
    return progress.StoredReport(
        received_at=record.received_at,
        progress_type=record.progress_type,
        message=record.message,
        source_address=record.source_address,
        attempt=record.attempt,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _error(error_type: str, tag: str, message: str, path: str | None = None) -> RestconfError:
    return RestconfError(
        error_type=error_type, error_tag=tag, error_message=message, error_path=path
    )


def _input_error(exc: ValidationError) -> RestconfError:
    return _error("protocol", "invalid-value", exc.message, exc.field)

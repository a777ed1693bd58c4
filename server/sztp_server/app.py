"""Run the server: open the store, start the device and admin listeners, handle signals.

SIGTERM/SIGINT stop accepting connections and let requests in flight finish; SIGHUP reloads
the TLS certificates and keys of every listener from disk without dropping connections, all
or none. Trust anchors added
through the admin API reach the TLS layer at once (the device listener asks for client
certificates and must know which CAs to accept).
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from dataclasses import dataclass, field

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from sztpctl.errors import SztpError

from .admin import build_admin_app
from .config import Listener, ServerConfig
from .context import ServerContext, Snapshot
from .logs import get_logger
from .metrics import Metrics
from .southbound import build_device_app
from .store import open_store
from .tokens import ensure_first_admin_token

_LOG = get_logger()
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass
class _TlsContexts:
    """The SSL context of every TLS listener, kept so SIGHUP and new anchors can update them."""

    device: list[tuple[Listener, ssl.SSLContext]] = field(default_factory=list)
    admin: list[tuple[Listener, ssl.SSLContext]] = field(default_factory=list)
    loaded_anchors: set[bytes] = field(default_factory=set)

    def device_context(self, listener: Listener) -> ssl.SSLContext:
        context = _server_context(listener)
        # Optional at the TLS layer: Basic-auth devices have no certificate. Whether a
        # certificate identifies a known device is decided per request.
        context.verify_mode = ssl.CERT_OPTIONAL
        self.device.append((listener, context))
        return context

    def admin_context(self, listener: Listener) -> ssl.SSLContext:
        context = _server_context(listener)
        self.admin.append((listener, context))
        return context

    def reload_certificates(self) -> None:
        """Every listener's new files are loaded into a scratch context first: one bad file
        leaves every listener on its previous certificate."""
        listeners = [*self.device, *self.admin]
        for listener, _ in listeners:
            _server_context(listener)
        for listener, context in listeners:
            _load_chain(context, listener)

    def add_anchors(self, snapshot: Snapshot) -> None:
        """Teach the device listeners new trust anchors (removals are enforced per request)."""
        for anchor in snapshot.trust_anchors:
            for certificate in anchor.certificates:
                der = certificate.public_bytes(Encoding.DER)
                if der in self.loaded_anchors:
                    continue
                for _, context in self.device:
                    context.load_verify_locations(cadata=der)
                self.loaded_anchors.add(der)


def _server_context(listener: Listener) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, listener)
    return context


def _load_chain(context: ssl.SSLContext, listener: Listener) -> None:
    context.load_cert_chain(str(listener.tls_cert), str(listener.tls_key))


async def serve(config: ServerConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    store = open_store(config.database_url)
    try:
        try:
            created = ensure_first_admin_token(store, config.admin_token_file)
        except FileExistsError:
            raise SztpError(
                f"{config.admin_token_file} exists but the database has no API token; remove "
                "the stale file so a new first admin token can be written"
            ) from None
        if created:
            _LOG.info("first admin token written", extra={"path": str(config.admin_token_file)})
        context = ServerContext(store, config)
        await _run(context, ready)
    finally:
        store.close()


async def _run(context: ServerContext, ready: asyncio.Event | None) -> None:
    config = context.config
    metrics = Metrics()
    tls = _TlsContexts()
    runners: list[web.AppRunner] = []
    device_app = build_device_app(context, metrics)
    admin_app = build_admin_app(context, max_bulk_bytes=config.max_bulk_body_bytes)
    for app, listeners in (
        (device_app, config.device_listeners),
        (admin_app, (config.admin_listener,)),
    ):
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        await runner.setup()
        runners.append(runner)
        for listener in listeners:
            ssl_context = None
            if listener.uses_tls:
                ssl_context = (
                    tls.device_context(listener)
                    if app is device_app
                    else tls.admin_context(listener)
                )
            if app is device_app and ssl_context is None:
                _LOG.warning(
                    "device listener without TLS: devices cannot authenticate the server or "
                    "present an IDevID; use it only behind a TLS-terminating proxy",
                    extra={"address": f"{listener.host}:{listener.port}"},
                )
            site = web.TCPSite(runner, listener.host, listener.port, ssl_context=ssl_context)
            await site.start()
            _LOG.info(
                "listening",
                extra={
                    "api": "device" if app is device_app else "admin",
                    "address": f"{listener.host}:{listener.port}",
                    "tls": ssl_context is not None,
                },
            )
    tls.add_anchors(context.snapshot())
    context.on_refresh(tls.add_anchors)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload_tls, tls)
    poller = asyncio.create_task(_poll_revision(context))
    if ready is not None:
        ready.set()
    await stop.wait()
    _LOG.info("stopping")
    poller.cancel()
    for runner in runners:
        await runner.cleanup()
    _LOG.info("stopped")


def _reload_tls(tls: _TlsContexts) -> None:
    try:
        tls.reload_certificates()
    except (OSError, ssl.SSLError) as exc:
        _LOG.error(
            "TLS reload failed; keeping the previous certificates", extra={"reason": str(exc)}
        )
        return
    _LOG.info("TLS certificates reloaded")


async def _poll_revision(context: ServerContext) -> None:
    """Pick up changes made by other server instances sharing the database."""
    while True:
        await asyncio.sleep(context.config.refresh_interval)
        try:
            context.snapshot()
        except Exception:  # a database hiccup must not end the poller
            _LOG.exception("state refresh failed")

"""A device worker process: it serves the device listeners beside the main process.

It opens the same store and secret key, binds each device listener's address with a socket of
its own (SO_REUSEPORT), and follows the revision: the main process tells it each new one (and
waits until it serves it), and its poller picks up other server instances' changes. SIGTERM
ends it gracefully (requests in flight finish), SIGHUP reloads its certificates; SIGINT, which
Ctrl-C sends the whole process group, is the main process's to act on. It never outlives the
main process. Its rate limits are the main process's tables, in shared memory.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from multiprocessing.connection import Connection
from typing import Any

from sztp.errors import SztpError

from .children import exit_with_parent
from .config import ServerConfig
from .context import ServerContext
from .device_api import RateLimits, build_device_app
from .logs import configure, get_logger
from .metrics import Metrics
from .secret_key import load_secret_key
from .serving import (
    GIL_SWITCH_INTERVAL_SECONDS,
    Api,
    TlsContexts,
    cancelled,
    device_guard,
    ignore_further,
    listening,
    open_configured_store,
    poll_revision,
)

_LOG = get_logger()
METRICS_INTERVAL_SECONDS = 1.0


def run_device_worker(
    config: ServerConfig, number: int, connection: Connection, limits: RateLimits
) -> None:
    """The worker process's entry point; its exit status is 0 after a graceful stop.
    `limits` are the main process's, in memory every process shares."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    configure(config.log_level, worker=number)
    try:
        asyncio.run(_serve(config, connection, limits))
    except (SztpError, OSError) as exc:
        _LOG.error("device worker failed", extra={"reason": str(exc)})
        connection.send(("failed", str(exc)))
        sys.exit(1)


async def _serve(config: ServerConfig, connection: Connection, limits: RateLimits) -> None:
    secret_key = load_secret_key(config)
    store = open_configured_store(config)
    try:
        context = ServerContext(store, config, secret_key)
        try:
            metrics = Metrics()
            tls = TlsContexts()
            api = Api(
                build_device_app(context, metrics, limits),
                device_guard(config, metrics),
                config.named_listeners()[:-1],  # every listener but the admin one
                device=True,
            )
            async with listening(config, tls, [api], reuse_port=True):
                await _run(context, tls, metrics, connection)
        finally:
            context.close()
    finally:
        store.close()


async def _run(
    context: ServerContext, tls: TlsContexts, metrics: Metrics, connection: Connection
) -> None:
    tls.add_anchors(context.snapshot())
    context.on_refresh(tls.add_anchors)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGHUP, tls.reload)
    main = _MainProcess(context, metrics, connection, stop)
    loop.add_reader(connection.fileno(), main.receive)
    connection.send(("ready", context.snapshot().revision))
    tasks = [
        asyncio.create_task(poll_revision(context)),
        asyncio.create_task(main.send_metrics()),
    ]
    await stop.wait()
    ignore_further(loop, (signal.SIGTERM, signal.SIGHUP))
    loop.remove_reader(connection.fileno())
    await cancelled(*tasks)


class _MainProcess:
    """The pipe to the main process."""

    def __init__(
        self, context: ServerContext, metrics: Metrics, connection: Connection, stop: asyncio.Event
    ) -> None:
        self.context = context
        self.metrics = metrics
        self.connection = connection
        self.stop = stop
        self.catching_up: set[asyncio.Task[None]] = set()

    def receive(self) -> None:
        try:
            while self.connection.poll():
                self._handle(self.connection.recv())
        except (EOFError, OSError):  # the main process is gone: stop with it
            asyncio.get_running_loop().remove_reader(self.connection.fileno())
            self.stop.set()

    def _handle(self, message: tuple[Any, ...]) -> None:
        if message[0] == "revision":
            task = asyncio.create_task(self._catch_up(message[1]))
            self.catching_up.add(task)
            task.add_done_callback(self.catching_up.discard)
        elif message[0] == "metrics":
            self.metrics.count_elsewhere(message[1])
        elif message[0] == "counts?":
            self._send(("metrics", self.metrics.counts()))

    async def _catch_up(self, revision: int) -> None:
        try:
            snapshot = await self.context.refresh(revision)
        except Exception:  # a database hiccup: the poller tries again
            _LOG.exception("state refresh failed")
            return
        self._send(("serving", snapshot.revision))

    async def send_metrics(self) -> None:
        sent = None
        while True:
            await asyncio.sleep(METRICS_INTERVAL_SECONDS)
            counts = self.metrics.counts()
            if counts != sent:
                self._send(("metrics", counts))
                sent = counts

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self.connection.send(message)
        except OSError:
            self.stop.set()

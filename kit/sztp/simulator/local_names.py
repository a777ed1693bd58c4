"""Host names under `.local` resolved over mDNS (RFC 6762 §3) for the device's HTTP session,
as curl's `--resolve` would: the connection goes to the address mDNS gave, while the request
still names the host, so TLS sends it as SNI and checks the certificate against it, and the Host
header carries it. Only `.local` names are resolved this way; every other name, and a `.local`
name mDNS has no address for, is left to the system resolver.

The addresses are those DNS discovery got with the SRV answer (`DnsServer.addresses`), else
those of one-shot A/AAAA queries asked when the device first connects to the name (a server a
redirect names, an image's host), once per name."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import dns.exception
import dns.name
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.poolmanager import PoolManager
from urllib3.util.connection import create_connection

from ..dns_discovery import (
    DEFAULT_MDNS_TIMEOUT,
    MAX_HOST_ADDRESSES,
    MDNS_GROUPS,
    Log,
    local_host,
    local_name,
    mdns_addresses,
)


class LocalNames:
    """The addresses of `.local` hosts: learned from discovery, else asked over mDNS."""

    def __init__(
        self,
        log: Log,
        *,
        ask: bool = True,
        timeout: float = DEFAULT_MDNS_TIMEOUT,
        groups: Sequence[tuple[str, int]] = MDNS_GROUPS,
    ) -> None:
        self.log = log
        # A device told not to use mDNS sends no query for a name it meets later either.
        self.ask = ask
        self.timeout = timeout
        self.groups = groups
        self._addresses: dict[str, tuple[str, ...]] = {}

    def learn(self, uri: str, addresses: Sequence[str]) -> None:
        """Take `addresses` for the host of `uri`, only when it is under `.local`."""
        host = local_host(uri)
        if host is not None and addresses:
            self._addresses[host] = tuple(addresses[:MAX_HOST_ADDRESSES])

    def addresses(self, host: str) -> tuple[str, ...]:
        """Where to connect for `host`: none for a name not under `.local` (the system resolver
        finds it), and none when mDNS does not answer for it."""
        name = local_name(host)
        if name is None:
            return ()
        if name not in self._addresses:
            self._addresses[name] = self._ask(name) if self.ask else ()
        return self._addresses[name]

    def _ask(self, host: str) -> tuple[str, ...]:
        try:
            name = dns.name.from_text(host)
        except dns.exception.DNSException as exc:
            self.log(f"mDNS {host!a}: not a name to ask for ({type(exc).__name__})")
            return ()
        found = mdns_addresses(name, timeout=self.timeout, groups=self.groups, log=self.log)
        if found:
            self.log(f"mDNS {host}: {', '.join(found)}")
        else:
            self.log(f"mDNS {host}: no address; the system resolver is asked")
        return found


class LocalNameAdapter(HTTPAdapter):
    """A transport adapter that connects to the addresses `local_names` gives a `.local` host."""

    def __init__(self, local_names: LocalNames) -> None:
        # Set before HTTPAdapter.__init__, which builds the pool manager.
        self.local_names = local_names
        super().__init__()

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _LocalNamePoolManager(
            self.local_names, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )


class _LocalNamePoolManager(PoolManager):
    def __init__(self, local_names: LocalNames, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.local_names = local_names
        self.pool_classes_by_scheme = {"http": _AddressedHttpPool, "https": _AddressedHttpsPool}

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> HTTPConnectionPool:
        # urllib3's documented hook for customising the pools it creates; each pool serves one
        # (scheme, host, port), so the addresses are decided once per host here.
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        context["addresses"] = self.local_names.addresses(host)
        return super()._new_pool(scheme, host, port, context)


class _AddressedHttpConnection(HTTPConnection):
    """A connection to `host` that, given `addresses`, opens its socket to the first of them
    that accepts, leaving `host` for the Host header, SNI and the certificate check."""

    def __init__(self, *args: Any, addresses: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.addresses = addresses

    def _new_conn(self) -> socket.socket:
        if not self.addresses:
            return super()._new_conn()
        failure: OSError | None = None
        for address in self.addresses:
            try:
                return create_connection(
                    (address, self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
            except OSError as exc:
                failure = exc
        tried = ", ".join(self.addresses)
        if isinstance(failure, TimeoutError):
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} at {tried} timed out ({self.timeout} s)"
            ) from failure
        raise NewConnectionError(
            self, f"Failed to establish a new connection to {self.host} at {tried}: {failure}"
        ) from failure


class _AddressedHttpsConnection(_AddressedHttpConnection, HTTPSConnection):
    pass


class _AddressedHttpPool(HTTPConnectionPool):
    ConnectionCls = _AddressedHttpConnection


class _AddressedHttpsPool(HTTPSConnectionPool):
    ConnectionCls = _AddressedHttpsConnection

"""What every request handler shares: the store, the configuration, and a state snapshot.

Handlers read resources from an immutable `Snapshot` rebuilt only when the store's revision
moves, so the device-facing hot path never queries the database for configuration. A local
write refreshes at once; changes made by another server instance (PostgreSQL) are picked up
within `config.refresh_interval` seconds.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography import x509

from sztpctl.protocol import pki
from sztpctl.protocol.voucher import Voucher, read_stored_voucher
from sztpctl.state.resources import DEVICE, KINDS, OWNER, TRUST_ANCHOR

from .config import ServerConfig
from .secret_key import SecretKey
from .store.base import Store

Spec = Mapping[str, Any]


@dataclass(frozen=True)
class TrustAnchor:
    name: str
    certificates: tuple[x509.Certificate, ...]
    serial_pattern: str | None


@dataclass(frozen=True)
class Snapshot:
    """The whole admin state at one revision; derived material is computed on first use."""

    revision: int
    state: Mapping[str, Mapping[str, Spec]]
    secret_key: SecretKey
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def get(self, kind: str, name: str) -> Spec | None:
        return self.state.get(kind, {}).get(name)

    def device(self, serial: str) -> Spec | None:
        return self.get(DEVICE, serial)

    @cached_property
    def trust_anchors(self) -> tuple[TrustAnchor, ...]:
        return tuple(
            TrustAnchor(
                name=name,
                certificates=tuple(pki.load_certificates_pem(spec["certificates"].encode())),
                serial_pattern=spec.get("serial_pattern"),
            )
            for name, spec in sorted(self.state.get(TRUST_ANCHOR, {}).items())
        )

    def voucher(self, serial: str) -> Voucher | None:
        """The content of the device's stored voucher (None without one), read once per
        snapshot; it was verified when it was stored."""
        key = f"voucher:{serial}"
        if key not in self._memo:
            text = (self.device(serial) or {}).get("voucher")
            self._memo[key] = read_stored_voucher(base64.b64decode(text)) if text else None
        return self._memo[key]

    def owner_credential(self, name: str) -> pki.Credential | None:
        """The owner's signing credential, or None when the server holds no key for it (or
        one its secret key does not open: logged at start-up)."""
        key = f"owner:{name}"
        if key not in self._memo:
            spec = self.get(OWNER, name)
            credential = None
            private_key = (
                None if spec is None else self.secret_key.try_open(name, spec.get("private_key"))
            )
            if spec is not None and private_key is not None:
                certificates = pki.load_certificates_pem(spec["certificate_chain"].encode())
                credential = pki.Credential(
                    certificates[0],
                    pki.load_private_key_pem(private_key.encode()),
                    tuple(certificates[1:]),
                )
            self._memo[key] = credential
        return self._memo[key]


class ServerContext:
    """Store + configuration + secret key + the current snapshot, shared by all handlers."""

    def __init__(self, store: Store, config: ServerConfig, secret_key: SecretKey) -> None:
        self.store = store
        self.config = config
        self.secret_key = secret_key
        self._lock = threading.Lock()
        self._snapshot = self._load()
        self._checked_at = time.monotonic()
        self._listeners: list[Callable[[Snapshot], None]] = []

    def on_refresh(self, listener: Callable[[Snapshot], None]) -> None:
        """Call `listener` with every new snapshot (e.g. to update TLS trust anchors)."""
        self._listeners.append(listener)

    def snapshot(self) -> Snapshot:
        """The current snapshot; polls the store's revision at most every refresh interval."""
        if time.monotonic() - self._checked_at >= self.config.refresh_interval:
            self._checked_at = time.monotonic()
            if self.store.revision() != self._snapshot.revision:
                self.refresh()
        return self._snapshot

    def refresh(self) -> Snapshot:
        """The snapshot at the store's revision, loaded unless the current one is at it: the
        poller and a write's own refresh often both see a new revision, and one load (of the
        whole state) serves both."""
        with self._lock:
            loaded = self.store.revision() != self._snapshot.revision
            if loaded:
                self._snapshot = self._load()
            self._checked_at = time.monotonic()
            snapshot = self._snapshot
        if loaded:
            for listener in self._listeners:
                listener(snapshot)
        return snapshot

    def _load(self) -> Snapshot:
        revision = self.store.revision()
        state: dict[str, dict[str, Spec]] = {kind: {} for kind in KINDS}
        for resource in self.store.list():
            state.setdefault(resource.kind, {})[resource.name] = resource.spec
        return Snapshot(revision=revision, state=state, secret_key=self.secret_key)

"""What every request handler shares: the store, the configuration, and a state snapshot.

Handlers read resources from an immutable `Snapshot` rebuilt only when the store's revision
moves, so the device-facing hot path never queries the database for configuration. A local
write refreshes at once; changes made by another server instance (PostgreSQL) are picked up
within `config.refresh_interval` seconds, by the poller that calls `poll`.

Handlers reach the store only through the two `AsyncStore` facades, never on the event loop:
`device_store` for device requests and `admin_store` for the admin API, snapshot reloads and
the server's own housekeeping, each with its own workers (see `database_pool_size`).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import groupby
from operator import itemgetter
from typing import Any

from cryptography import x509

from sztp.collector import cyclic_gc_paused
from sztp.pkcs11_uri import is_pkcs11_uri
from sztp.protocol import pki
from sztp.protocol.voucher import Voucher, read_stored_voucher
from sztp.state.plan import Change
from sztp.state.resources import DEVICE, KINDS, OWNER, TRUST_ANCHOR

from .children import release_free_memory
from .compact_specs import CompactSpecs
from .config import ADMIN_STORE_WORKERS, ServerConfig
from .expiry import ExpiryDates
from .pkcs11_keys import Pkcs11Keys, TokenError
from .secret_key import SecretKey
from .store.async_store import AsyncStore
from .store.base import Store
from .store.model import StateDelta

Spec = Mapping[str, Any]
# A process catches up from what changed when that is at most this many resources, or at most
# half its devices.
MIN_CATCH_UP = 10_000


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
    # Where owner keys named by PKCS#11 URI sign; None in a process that never signs.
    tokens: Pkcs11Keys | None = None
    _memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def updated(self, delta: StateDelta) -> Snapshot:
        """This state with `delta` applied (see `changed`)."""
        return self.changed(
            delta.revision,
            ((resource.kind, resource.name, resource.spec) for resource in delta.written),
            delta.deleted,
        )

    def with_changes(self, revision: int, changes: Iterable[Change]) -> Snapshot:
        """This state with `changes` (committed as `revision`) applied (see `changed`)."""
        changes = list(changes)
        return self.changed(
            revision,
            ((c.kind, c.name, c.spec) for c in changes if c.spec is not None),
            ((c.kind, c.name) for c in changes if c.spec is None),
        )

    def changed(
        self,
        revision: int,
        written: Iterable[tuple[str, str, Spec]],
        deleted: Iterable[tuple[str, str]],
    ) -> Snapshot:
        """This state with `written` put in and `deleted` taken out, at `revision`: kinds
        they do not touch are shared, not copied."""
        written_by_kind: dict[str, list[tuple[str, Spec]]] = {}
        for kind, name, spec in written:
            written_by_kind.setdefault(kind, []).append((name, spec))
        deleted_by_kind: dict[str, list[str]] = {}
        for kind, name in deleted:
            deleted_by_kind.setdefault(kind, []).append(name)
        state = dict(self.state)
        for kind in written_by_kind.keys() | deleted_by_kind.keys():
            state[kind] = _changed_kind(
                self.state.get(kind, {}),
                written_by_kind.get(kind, []),
                deleted_by_kind.get(kind, []),
            )
        return Snapshot(
            revision=revision, state=state, secret_key=self.secret_key, tokens=self.tokens
        )

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

    def owner_key_in_token(self, name: str) -> bool:
        """Whether the owner signs in a PKCS#11 token (a URI is stored as it is, never
        sealed): known without opening anything."""
        spec = self.get(OWNER, name)
        return spec is not None and is_pkcs11_uri(spec.get("private_key") or "")

    def owner_credential(self, name: str) -> pki.Credential | pki.SignerCredential | None:
        """The owner's signing credential, or None when the server holds no key for it (or
        one its secret key does not open: logged at start-up). A key in a PKCS#11 token that
        cannot sign now raises TokenError (logged), and is tried again at the next call."""
        key = f"owner:{name}"
        if key not in self._memo:
            spec = self.get(OWNER, name)
            private_key = (
                None if spec is None else self.secret_key.try_open(name, spec.get("private_key"))
            )
            if spec is None or private_key is None:
                self._memo[key] = None
                return None
            certificates = pki.load_certificates_pem(spec["certificate_chain"].encode())
            credential: pki.Credential | pki.SignerCredential
            if is_pkcs11_uri(private_key):
                if self.tokens is None:
                    raise TokenError(f"owner {name}: its key is in a PKCS#11 token, out of reach")
                credential = self.tokens.credential(private_key, certificates)
            else:
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
        self.device_store = AsyncStore(
            store, workers=config.database_pool_size - ADMIN_STORE_WORKERS, name="store-device"
        )
        self.admin_store = AsyncStore(store, workers=ADMIN_STORE_WORKERS, name="store-admin")
        self.expiry = ExpiryDates(config.tls_certificate_files(), store.current_ldevids)
        self.tokens = Pkcs11Keys.from_config(config)
        self._snapshot = load_snapshot(store, secret_key, tokens=self.tokens)
        self._reload: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Snapshot], None]] = []
        self._followers: list[Callable[[int], Awaitable[None]]] = []

    def add_follower(self, caught_up: Callable[[int], Awaitable[None]]) -> None:
        """`caught_up(revision)` returns once other processes of this server (device workers)
        serve `revision`: `published` waits for it."""
        self._followers.append(caught_up)

    async def published(self, revision: int) -> Snapshot:
        """A snapshot at `revision` or newer, served by this process and by every follower:
        an admin write is answered once devices see it, whichever process they reach."""
        snapshot = await self.refresh(revision)
        await asyncio.gather(*(caught_up(revision) for caught_up in self._followers))
        return snapshot

    def on_refresh(self, listener: Callable[[Snapshot], None]) -> None:
        """Call `listener` with every new snapshot (e.g. to update TLS trust anchors)."""
        self._listeners.append(listener)

    def snapshot(self) -> Snapshot:
        """The current snapshot, as last loaded; never waits for the store."""
        return self._snapshot

    async def poll(self) -> Snapshot:
        """The snapshot at the store's current revision: loaded if the current one is older,
        or newer (the database was restored from a backup; what it holds now is served)."""
        revision = await self.admin_store.revision()
        if revision < self._snapshot.revision:
            await asyncio.shield(self._start_reload(accept_older=True))
        return await self.refresh(revision)

    async def refresh(self, revision: int) -> Snapshot:
        """A snapshot at `revision` or newer, loaded on an admin worker unless the current one
        is. Callers share the load in progress rather than each reading the whole state; one
        that needs a newer revision than it loaded waits for the next load."""
        while self._snapshot.revision < revision:
            # shield: a caller that goes away must not cancel the load the others wait for.
            await asyncio.shield(self._start_reload())
        return self._snapshot

    def _start_reload(self, *, accept_older: bool = False) -> asyncio.Task[None]:
        """The load in progress, or a new one."""
        if self._reload is None:
            self._reload = asyncio.create_task(self._reload_snapshot(accept_older))
        return self._reload

    async def _reload_snapshot(self, accept_older: bool) -> None:
        try:
            snapshot = await self.admin_store.run(self._load)
        finally:
            self._reload = None
        current = self._snapshot.revision
        if snapshot.revision > current or (accept_older and snapshot.revision != current):
            self._snapshot = snapshot
            for listener in self._listeners:
                listener(snapshot)

    def close(self) -> None:
        """Stop the store workers and close the token sessions (the store itself is the
        caller's to close)."""
        self.device_store.close()
        self.admin_store.close()
        self.tokens.close()

    def _load(self) -> Snapshot:
        try:
            return load_snapshot(
                self.store, self.secret_key, since=self._snapshot, tokens=self.tokens
            )
        finally:
            release_free_memory()  # what reading the state took, beyond the state itself


def _changed_kind(
    resources: Mapping[str, Spec], written: list[tuple[str, Spec]], deleted: list[str]
) -> Mapping[str, Spec]:
    if isinstance(resources, CompactSpecs):
        return resources.updated(written, deleted)
    changed = dict(resources)
    changed.update(written)
    for name in deleted:
        changed.pop(name, None)
    return changed


def load_snapshot(
    store: Store,
    secret_key: SecretKey,
    since: Snapshot | None = None,
    *,
    tokens: Pkcs11Keys | None = None,
) -> Snapshot:
    """The state as stored now (the revision is read first: the state is as new or newer);
    from `since` with what changed after it when the store can tell, so a write costs every
    process what it changed rather than the whole fleet. Owner keys in tokens sign through
    `tokens`."""
    with cyclic_gc_paused():
        return _read_snapshot(store, secret_key, since, tokens)


def _read_snapshot(
    store: Store, secret_key: SecretKey, since: Snapshot | None, tokens: Pkcs11Keys | None
) -> Snapshot:
    if since is not None:
        # Past half the fleet, reading what changed costs more than reading it all.
        most = max(MIN_CATCH_UP, len(since.state.get(DEVICE, {})) // 2)
        delta = store.changes_since(since.revision, most=most)
        if delta is not None:
            return since.updated(delta)
    revision = store.revision()
    state: dict[str, Mapping[str, Spec]] = {}
    for kind, rows in groupby(store.each_spec(), key=itemgetter(0)):
        specs = ((name, spec) for _kind, name, spec in rows)
        state[kind] = CompactSpecs.of(specs) if kind == DEVICE else dict(specs)
    for kind in KINDS:
        state.setdefault(kind, CompactSpecs.of(()) if kind == DEVICE else {})
    return Snapshot(revision=revision, state=state, secret_key=secret_key, tokens=tokens)

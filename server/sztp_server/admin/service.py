"""The desired-state service behind every admin write: it computes changes on a fresh snapshot,
normalises the desired specs (secrets kept, hashed or sealed; vouchers checked), checks the
result and commits it atomically with its audit entries.

A write is a `compute` function of the current snapshot that returns the changes (or raises to
refuse the write); the service runs it off the event loop and retries it when another server
instance moved the state on meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any

from sztp.errors import ValidationError
from sztp.state.model import DEVICE, STORED_SECRET
from sztp.state.ownership import check_vouchers_authorise_owners
from sztp.state.plan import Change, apply_changes, check_references, plan
from sztp.state.resources import HIDDEN, public_fields, public_view

from ..context import ServerContext, Snapshot
from ..secret_key import SecretKey
from ..store.errors import ConflictError
from .errors import ApiError
from .jobs import Progress
from .views import etag
from .vouchers import VoucherChecker

_COMMIT_ATTEMPTS = 3

Compute = Callable[[Snapshot], list[Change]]


@dataclass(frozen=True)
class Commit:
    revision: int
    changes: list[Change]


class StateService:
    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.store = context.admin_store
        self.secret_key = context.secret_key
        self.vouchers = VoucherChecker()
        self.write_lock = asyncio.Lock()

    def close(self) -> None:
        self.vouchers.close()

    async def fresh_snapshot(self) -> Snapshot:
        """The snapshot at the store's current revision (admin reads must not lag)."""
        return await self.context.poll()

    async def commit(self, compute: Compute, *, actor: str, if_match: str | None) -> Commit:
        """Compute changes on the current state and store them atomically.

        `compute` runs in a worker thread (normalising specs can be CPU-heavy) and may raise
        to refuse the write; invalid input is reported before a stale If-Match. A revision
        race with another server instance recomputes on the new state, unless the client
        pinned the revision with If-Match (412 then).
        """
        async with self.write_lock:
            for _attempt in range(_COMMIT_ATTEMPTS):
                snapshot = await self.fresh_snapshot()
                changes = await asyncio.to_thread(compute, snapshot)
                pinned = expected_revision(if_match, snapshot.revision)
                if not changes:
                    return Commit(snapshot.revision, changes)
                try:
                    revision = await self.store.apply(
                        changes,
                        actor=actor,
                        expected_revision=snapshot.revision,
                        audit_details=[_audit_detail(change) for change in changes],
                    )
                except ConflictError:
                    current = await self.store.revision()
                    if current == snapshot.revision:
                        raise
                    if pinned is not None:
                        expected_revision(if_match, current)
                    continue
                await self.context.refresh(revision)
                return Commit(revision, changes)
        raise ApiError(409, "the state kept changing during this write; retry")

    async def dry_run(self, compute: Compute, *, if_match: str | None) -> Commit:
        """What `commit` would store now, stored nowhere."""
        snapshot = await self.fresh_snapshot()
        changes = await asyncio.to_thread(compute, snapshot)
        expected_revision(if_match, snapshot.revision)
        return Commit(snapshot.revision, changes)

    def normalized(
        self, kind: str, name: str, spec: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The canonical form of one written spec, its secrets kept, hashed or sealed."""
        wanted = restore_secrets(kind, name, spec, current)
        return self.secret_key.normalize(kind, name, wanted, current, hash_passwords=True)

    def desired_state(
        self,
        resources: Mapping[str, Mapping[str, Any]],
        *,
        prune: bool,
        kinds: list[str] | None,
        hash_passwords: bool,
        progress: Progress | None = None,
    ) -> Compute:
        """The changes that make the state match `resources` (the bulk endpoint); `progress`
        counts the specs checked."""

        def compute(snapshot: Snapshot) -> list[Change]:
            counted = progress or Progress()
            counted.done, counted.total = 0, sum(len(specs) for specs in resources.values())
            normalizer = _Normalizer(self.secret_key, self.vouchers, hash_passwords, counted)
            desired = {
                kind: normalizer.desired(kind, specs, snapshot.state.get(kind, {}))
                for kind, specs in resources.items()
            }
            changes = plan(desired, snapshot.state, prune=prune, kinds=kinds)
            return checked(snapshot, changes, pins=normalizer.pins)

        return compute


def expected_revision(if_match: str | None, current: int) -> int | None:
    """The revision If-Match pins (None without one); 412 when it is not the current one."""
    if if_match is None:
        return None
    tags = {tag.strip() for tag in if_match.split(",")}
    if "*" in tags:
        return None
    if f'"{current}"' in tags:
        return current
    raise ApiError(
        412,
        f"the state is at revision {current}, not the one If-Match names",
        headers=etag(current),
    )


def checked(
    snapshot: Snapshot, changes: list[Change], *, pins: Mapping[str, bytes] | None = None
) -> list[Change]:
    """`changes`, once the state they lead to keeps its references and voucher owners."""
    deleted = {(change.kind, change.name) for change in changes if change.action == "delete"}
    after = apply_changes(snapshot.state, changes)
    check_references(after, deleted=deleted)
    check_vouchers_authorise_owners(after, before=snapshot.state, pins=pins)
    return changes


def restore_secrets(
    kind: str, name: str, spec: Mapping[str, Any], current: Mapping[str, Any] | None
) -> Mapping[str, Any]:
    """Replace a secret field's HIDDEN marker with the stored secret."""
    field = STORED_SECRET.get(kind)
    if field is None or spec.get(field) != HIDDEN:
        return spec
    stored = (current or {}).get(field)
    if stored is None:
        raise ValidationError(
            f"{kind}[{name}].{field}", f"{HIDDEN} keeps the stored value, but none is stored"
        )
    return {**spec, field: stored}


@dataclass(frozen=True)
class _Normalizer:
    """Canonical desired specs for the bulk endpoint, their secrets in stored form."""

    secret_key: SecretKey
    vouchers: VoucherChecker
    hash_passwords: bool
    progress: Progress
    # The pinned-domain-cert (DER) of each voucher checked in a worker process, by its text:
    # the owner checks of `checked` read these rather than parse the vouchers again.
    pins: dict[str, bytes] = dataclass_field(default_factory=dict)

    def desired(
        self, kind: str, specs: Mapping[str, Any], stored: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """The specs of one kind, cheaply where the stored state vouches for them.

        A spec equal to the stored (canonical) spec is canonical already, also when it leaves
        out the fields the stored spec has empty (normalising reads a missing field as None or
        []), as a fleet file does; a device voucher equal to the stored one was verified for
        this serial when it was stored; a device password whose check value matches the
        stored one is the stored password: none is checked or hashed again, so a no-op
        re-apply of 10,000 devices with vouchers and passwords stays fast.
        """
        checked = self.vouchers.check(specs, stored) if kind == DEVICE else {}
        self.pins.update(checked.values())  # (text, pinned-domain-cert) pairs
        desired: dict[str, Mapping[str, Any]] = {}
        for name, spec in specs.items():
            current = stored.get(name)
            if not isinstance(spec, dict):
                raise ValidationError(f"{kind}[{name}]", "must be an object")
            wanted = restore_secrets(kind, name, spec, current)
            if kind == DEVICE and current is not None:
                wanted = self.secret_key.recognise_password(name, wanted, current)
            if current is not None and _same_spec(wanted, public_fields(current)):
                desired[name] = current
            elif kind == DEVICE and current is not None and _same_voucher(wanted, current):
                normalized = self._normalize(kind, name, {**wanted, "voucher": None}, current)
                desired[name] = {**normalized, "voucher": current["voucher"]}
            elif name in checked:
                normalized = self._normalize(kind, name, {**wanted, "voucher": None}, current)
                desired[name] = {**normalized, "voucher": checked[name].text}
            else:
                desired[name] = self._normalize(kind, name, wanted, current)
            self.progress.done += 1
        return desired

    def _normalize(
        self, kind: str, name: str, wanted: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return self.secret_key.normalize(
            kind, name, wanted, current, hash_passwords=self.hash_passwords
        )


def _same_spec(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """`wanted` is the canonical `current`, written in full or without its empty fields."""
    return dict(current) == wanted or wanted == {
        field: value for field, value in current.items() if value not in (None, [])
    }


def _same_voucher(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    return wanted.get("voucher") is not None and wanted.get("voucher") == current.get("voucher")


def _audit_detail(change: Change) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    if change.before is not None:
        detail["before"] = public_view(change.kind, change.before)
    if change.spec is not None:
        detail["after"] = public_view(change.kind, change.spec)
    return detail

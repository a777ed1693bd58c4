"""Every admin write as a value: what it changes, computed from a snapshot of the state.

A write is plain data (kind, name, spec, or a bulk body), so it can be handed to the writer
process (writer.py), which runs `changes` on its own snapshot and commits the result; the
process serving devices never does this work. `changes` may raise to refuse the write
(ApiError, ValidationError), and leaves the stored state alone when it does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Protocol

from sztp.errors import ValidationError
from sztp.state.device_templates import check_renders
from sztp.state.model import DEVICE, PROFILE, REFERRED_KINDS, STORED_SECRET
from sztp.state.ownership import check_vouchers_authorise_owners
from sztp.state.plan import Change, apply_changes, check_references, plan
from sztp.state.resources import HIDDEN, KINDS, SERVER_ONLY_FIELDS, public_fields

from ..compact_specs import CompactSpecs, same_fields
from ..context import Snapshot
from ..secret_key import SecretKey
from .errors import ApiError
from .requests import decode_json, json_object, only_fields
from .views import PLAN_VIEWS
from .vouchers import VoucherChecker

# A bulk write counts the specs it finds unchanged in its progress once per this many (each
# spec it normalises, which may mean hashing a password, at once).
PROGRESS_STEP = 1024


class Progress(Protocol):
    """How many of a write's specs are checked so far (read while the write runs)."""

    done: int
    total: int


@dataclass(frozen=True)
class WriteTools:
    """What a write may use besides the snapshot."""

    secret_key: SecretKey
    vouchers: VoucherChecker
    progress: Progress
    # The names of this server's `ldevid_issuers`, which a profile written may name.
    issuers: frozenset[str]


@dataclass(frozen=True)
class Commit:
    revision: int
    changes: list[Change]

    @property
    def changed(self) -> bool:
        """Whether the write changed the stored state."""
        return bool(self.changes)


@dataclass(frozen=True)
class JsonAnswer:
    """A write's answer, encoded where it was computed (a whole fleet's plan can be large);
    `changed` says whether the write changed the stored state."""

    revision: int
    body: bytes
    changed: bool = False


class Write:
    """An admin write. `dry_run` writes plan without storing; `answer` is what the caller
    gets back from the writer process (by default the commit itself)."""

    dry_run = False

    def changes(self, snapshot: Snapshot, tools: WriteTools) -> list[Change]:
        raise NotImplementedError

    def is_large(self) -> bool:
        """Whether the writer process should be renewed after this write if it changed the
        state: a process that parsed a large write and then took in the state it changed keeps
        the memory it took (freed, but in pieces that the state is spread over). One whose
        write changed nothing holds what it held before."""
        return False

    def answer(self, commit: Commit) -> Any:
        return commit


# A bulk write of this many bytes or more is `large` (about 150,000 devices without vouchers).
LARGE_WRITE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _SpecWrite(Write):
    """A write of one resource's whole spec."""

    kind: str
    name: str
    spec: Mapping[str, Any]


class CreateResource(_SpecWrite):
    def changes(self, snapshot: Snapshot, tools: WriteTools) -> list[Change]:
        if snapshot.get(self.kind, self.name) is not None:
            raise ApiError(409, f"{self.kind} {self.name!r} exists; use PUT to replace it")
        normalized = _normalized(tools, self.kind, self.name, self.spec, None)
        return checked(snapshot, [Change("create", self.kind, self.name, normalized)])


class PutResource(_SpecWrite):
    def changes(self, snapshot: Snapshot, tools: WriteTools) -> list[Change]:
        current = snapshot.get(self.kind, self.name)
        normalized = _normalized(tools, self.kind, self.name, self.spec, current)
        if current is None:
            return checked(snapshot, [Change("create", self.kind, self.name, normalized)])
        if dict(current) == normalized:
            return []
        return checked(snapshot, [Change("update", self.kind, self.name, normalized, current)])


@dataclass(frozen=True)
class DeleteResource(Write):
    kind: str
    name: str

    def changes(self, snapshot: Snapshot, tools: WriteTools) -> list[Change]:
        current = snapshot.get(self.kind, self.name)
        if current is None:
            raise ApiError(404, f"no {self.kind} named {self.name!r}")
        changes = [Change("delete", self.kind, self.name, None, current)]
        if self.kind not in REFERRED_KINDS:
            return changes  # nothing can refer to it
        try:
            check_references(apply_changes(snapshot.state, changes))
        except ValidationError as exc:
            raise ApiError(
                409, f"{self.kind} {self.name!r} is still in use: {exc.field}", field=exc.field
            ) from None
        return changes


@dataclass(frozen=True)
class PutVoucher(Write):
    serial: str
    voucher: str  # base64 of the signed voucher

    def changes(self, snapshot: Snapshot, tools: WriteTools) -> list[Change]:
        current = stored_device(snapshot, self.serial)
        wanted = {**public_fields(current), "voucher": self.voucher}
        normalized = tools.secret_key.normalize(
            DEVICE, self.serial, wanted, current, hash_passwords=True
        )
        if dict(current) == normalized:
            return []
        return checked(snapshot, [Change("update", DEVICE, self.serial, normalized, current)])


@dataclass(frozen=True)
class DeleteVoucher(Write):
    serial: str

    def changes(self, snapshot: Snapshot, tools: WriteTools) -> list[Change]:
        current = stored_device(snapshot, self.serial)
        if current.get("voucher") is None:
            return []
        return [Change("update", DEVICE, self.serial, {**current, "voucher": None}, current)]


@dataclass(frozen=True)
class ApplyState(Write):
    """`POST /api/v1/state`: make the state match a whole desired document.

    It carries the raw body: parsing and checking tens of MiB is the writer process's work
    too. A dry run (allowed to read-only tokens) never hashes a password.
    """

    body: bytes
    plan_view: str
    dry_run: bool = False

    def is_large(self) -> bool:
        return len(self.body) >= LARGE_WRITE_BYTES

    def changes(self, snapshot: Snapshot, tools: WriteTools) -> list[Change]:
        document = json_object(decode_json(self.body), "body")
        only_fields(document, "body", ("resources", "prune", "kinds"))
        resources = _desired_resources(document.get("resources"))
        prune = document.get("prune", False)
        if not isinstance(prune, bool):
            raise ValidationError("prune", "must be true or false")
        kinds = _kinds_scope(document["kinds"], resources) if "kinds" in document else None
        tools.progress.done = 0
        tools.progress.total = sum(len(specs) for specs in resources.values())
        normalizer = _Normalizer(tools, hash_passwords=not self.dry_run)
        desired = {
            kind: normalizer.desired(kind, specs, snapshot.state.get(kind, {}))
            for kind, specs in resources.items()
        }
        changes = plan(
            desired, snapshot.state, prune=prune, kinds=kinds, unchanged=normalizer.unchanged
        )
        return checked(snapshot, changes, pins=normalizer.pins)

    def answer(self, commit: Commit) -> JsonAnswer:
        view = PLAN_VIEWS[self.plan_view]
        changes = ", ".join(map(view, commit.changes))
        document = (
            f'{{"revision": {int(commit.revision)}, "dry_run": {json.dumps(self.dry_run)}, '
            f'"changes": [{changes}]}}'
        )
        changed = bool(commit.changes) and not self.dry_run
        return JsonAnswer(commit.revision, document.encode(), changed)


def stored_device(snapshot: Snapshot, serial: str) -> Mapping[str, Any]:
    device = snapshot.device(serial)
    if device is None:
        raise ApiError(404, f"no device with serial number {serial!r}")
    return device


def checked(
    snapshot: Snapshot, changes: list[Change], *, pins: Mapping[str, bytes] | None = None
) -> list[Change]:
    """`changes`, once the state they lead to keeps its references and voucher owners."""
    if not changes:
        return changes  # the stored state passed these checks when it was written
    deleted = {(change.kind, change.name) for change in changes if change.action == "delete"}
    after = apply_changes(snapshot.state, changes)
    if all(change.kind == DEVICE for change in changes) and DEVICE not in REFERRED_KINDS:
        # What else the state holds passed both checks when it was stored, and a device's
        # signing owners come from profiles and owners: only the devices written can fail
        # them. A write of one device among a million checks that one.
        written = [change.name for change in changes if change.action != "delete"]
        check_references(after, deleted=deleted, only=(DEVICE, written))
        check_vouchers_authorise_owners(after, before=snapshot.state, pins=pins, serials=written)
        check_renders(after, serials=written)
        return changes
    check_references(after, deleted=deleted)
    check_vouchers_authorise_owners(after, before=snapshot.state, pins=pins)
    written_devices = [
        change.name for change in changes if change.kind == DEVICE and change.action != "delete"
    ]
    written_profiles = [
        change.name for change in changes if change.kind == PROFILE and change.action != "delete"
    ]
    check_renders(after, serials=written_devices, profiles=written_profiles)
    return changes


def check_issuers(changes: list[Change], issuers: frozenset[str]) -> None:
    """A profile written may only name an LDevID issuer this server has: its devices would
    otherwise be refused at their first request. Profiles already stored are not checked (an
    issuer taken out of the settings must not block other writes)."""
    for change in changes:
        issuer = (change.spec or {}).get("ldevid_issuer") if change.kind == PROFILE else None
        if issuer is not None and issuer not in issuers:
            configured = ", ".join(sorted(issuers)) or "none"
            raise ValidationError(
                f"{PROFILE}[{change.name}].ldevid_issuer",
                f"no LDevID issuer named {issuer!r} is configured on this server "
                f"(ldevid_issuers in its settings: {configured})",
            )


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


def _normalized(
    tools: WriteTools,
    kind: str,
    name: str,
    spec: Mapping[str, Any],
    current: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The canonical form of one written spec, its secrets kept, hashed or sealed."""
    wanted = restore_secrets(kind, name, spec, current)
    return tools.secret_key.normalize(kind, name, wanted, current, hash_passwords=True)


@dataclass(frozen=True)
class _Normalizer:
    """Canonical desired specs for the bulk endpoint, their secrets in stored form."""

    tools: WriteTools
    hash_passwords: bool
    # The pinned-domain-cert (DER) of each voucher checked in a worker process, by its text:
    # the owner checks of `checked` read these rather than parse the vouchers again.
    pins: dict[str, bytes] = dataclass_field(default_factory=dict)
    # By kind, the names whose desired spec is the stored one (left out of `desired`).
    unchanged: dict[str, list[str]] = dataclass_field(default_factory=dict)

    def desired(
        self, kind: str, specs: dict[str, Any], stored: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """The specs of one kind that may differ from the stored ones, cheaply where the
        stored state vouches for them; the others go to `unchanged`. Each spec is taken out
        of `specs` as it is read, so a million decoded specs go as their canonical forms come.

        A spec equal to the stored (canonical) spec is canonical already, also when it leaves
        out the fields the stored spec has empty (normalising reads a missing field as None or
        []), as a fleet file does; a device voucher equal to the stored one was verified for
        this serial when it was stored; a device password whose check value matches the
        stored one is the stored password: none is checked or hashed again, so a no-op
        re-apply of a million devices, or of 10,000 with vouchers and passwords, stays fast.
        """
        secret_key = self.tools.secret_key
        checked = self.tools.vouchers.check(specs, stored) if kind == DEVICE else {}
        self.pins.update(checked.values())  # (text, pinned-domain-cert) pairs
        desired: dict[str, Mapping[str, Any]] = {}
        unchanged = self.unchanged.setdefault(kind, [])
        is_stored = _stored_test(stored)
        progress = self.tools.progress
        done = progress.done
        for name in list(specs):  # in the document's order: the first error is reported
            done += 1
            spec = specs.pop(name)
            if not isinstance(spec, dict):
                raise ValidationError(f"{kind}[{name}]", "must be an object")
            if name not in checked and is_stored(name, spec):
                unchanged.append(name)
                if not done % PROGRESS_STEP:  # shared memory: not written for each quick one
                    progress.done = done
                continue
            current = stored.get(name)
            wanted = restore_secrets(kind, name, spec, current)
            if kind == DEVICE and current is not None:
                wanted = secret_key.recognise_secret(name, wanted, current)
            if current is not None and same_fields(wanted, current.items(), SERVER_ONLY_FIELDS):
                unchanged.append(name)
            elif kind == DEVICE and current is not None and _same_voucher(wanted, current):
                normalized = self._normalize(kind, name, {**wanted, "voucher": None}, current)
                desired[name] = {**normalized, "voucher": current["voucher"]}
            elif name in checked:
                normalized = self._normalize(kind, name, {**wanted, "voucher": None}, current)
                desired[name] = {**normalized, "voucher": checked[name].text}
            else:
                desired[name] = self._normalize(kind, name, wanted, current)
            progress.done = done
        progress.done = done
        return desired

    def _normalize(
        self, kind: str, name: str, wanted: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        return self.tools.secret_key.normalize(
            kind, name, wanted, current, hash_passwords=self.hash_passwords
        )


def _stored_test(
    stored: Mapping[str, Mapping[str, Any]],
) -> Callable[[str, Mapping[str, Any]], bool]:
    """Whether a spec is the stored spec of its name as `same_fields` compares them, the
    server's own fields aside; without making the stored spec a dict when specs are compact."""
    if isinstance(stored, CompactSpecs):
        return lambda name, spec: stored.holds(name, spec, SERVER_ONLY_FIELDS)

    def is_stored(name: str, spec: Mapping[str, Any]) -> bool:
        current = stored.get(name)
        return current is not None and same_fields(spec, current.items(), SERVER_ONLY_FIELDS)

    return is_stored


def _same_voucher(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    return wanted.get("voucher") is not None and wanted.get("voucher") == current.get("voucher")


def _desired_resources(value: Any) -> dict[str, dict[str, Any]]:
    resources = json_object(value, "resources")
    for kind, specs in resources.items():
        if kind not in KINDS:
            raise ValidationError(f"resources.{kind}", f"unknown kind; use {', '.join(KINDS)}")
        json_object(specs, f"resources.{kind}")
    return resources


def _kinds_scope(value: Any, resources: Mapping[str, Any]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
        raise ValidationError("kinds", "must be a list of kinds")
    for kind in value:
        if kind not in KINDS:
            raise ValidationError("kinds", f"{kind!r} is not one of {', '.join(KINDS)}")
    for kind in resources:
        if kind not in value:
            raise ValidationError(f"resources.{kind}", "is outside the 'kinds' scope")
    return value

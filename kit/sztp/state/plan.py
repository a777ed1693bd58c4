"""Plan the changes that turn the actual state into the desired one.

A *state* maps kind → name → canonical spec (see `resources.normalize_spec`). `plan` compares
two states and returns the creates, updates and deletes in an order that never leaves a
dangling reference: creates and updates in dependency order, deletes in reverse.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ValidationError
from .resources import KINDS, references

State = Mapping[str, Mapping[str, Mapping[str, Any]]]
Action = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Change:
    """One resource change; `spec` is the new spec (None for delete), `before` the old one."""

    action: Action
    kind: str
    name: str
    spec: Mapping[str, Any] | None
    before: Mapping[str, Any] | None = None


def plan(
    desired: State,
    actual: State,
    *,
    prune: bool = False,
    kinds: Collection[str] | None = None,
    unchanged: Mapping[str, Collection[str]] | None = None,
) -> list[Change]:
    """Changes from `actual` to `desired` for `kinds` (default: the kinds `desired` names).

    Without `prune`, resources absent from `desired` are left alone. `unchanged` names, by
    kind, desired resources the caller has found equal to the actual ones already: they are
    neither compared again nor pruned (and are left out of `desired`).
    """
    named = {*desired, *(unchanged or {})}
    scope = [kind for kind in KINDS if kind in (kinds if kinds is not None else named)]
    upserts: list[Change] = []
    deletes: list[Change] = []
    for kind in scope:
        wanted = desired.get(kind, {})
        kept = (unchanged or {}).get(kind, ())
        present = actual.get(kind, {})
        for name in sorted(wanted):
            before = present.get(name)
            if before is None:
                upserts.append(Change("create", kind, name, wanted[name]))
            elif _as_dict(before) != _as_dict(wanted[name]):
                upserts.append(Change("update", kind, name, wanted[name], before))
        if prune:
            deletes.extend(
                Change("delete", kind, name, None, present[name])
                for name in sorted(set(present).difference(wanted, kept))
            )
    deletes.sort(key=lambda change: -KINDS.index(change.kind))
    return upserts + deletes


def _as_dict(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`spec` as a dict, to compare by value (a Mapping that is not a dict may not); not
    copied when it is one already, as nearly every spec of a large plan is."""
    return spec if type(spec) is dict else dict(spec)


def apply_changes(actual: State, changes: Sequence[Change]) -> dict[str, Mapping[str, Any]]:
    """The state after `changes`, computed in memory (for reference checks and dry runs).

    The kinds that change are views over `actual`, not copies: checking one write against a
    fleet of a million devices must not copy the fleet."""
    written: dict[str, dict[str, Mapping[str, Any]]] = {}
    deleted: dict[str, set[str]] = {}
    for change in changes:
        kind_written = written.setdefault(change.kind, {})
        kind_deleted = deleted.setdefault(change.kind, set())
        if change.spec is None:
            kind_written.pop(change.name, None)
            kind_deleted.add(change.name)
        else:
            kind_deleted.discard(change.name)
            kind_written[change.name] = change.spec
    return {
        kind: (
            ChangedResources(actual.get(kind, {}), written[kind], deleted[kind])
            if kind in written
            else actual.get(kind, {})
        )
        for kind in KINDS
    }


class ChangedResources(Mapping[str, Mapping[str, Any]]):
    """The resources of one kind in `base`, with `written` put in and `deleted` taken out."""

    def __init__(
        self,
        base: Mapping[str, Mapping[str, Any]],
        written: Mapping[str, Mapping[str, Any]],
        deleted: Collection[str],
    ) -> None:
        self._base = base
        self._written = written
        self._deleted = deleted

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        if name in self._written:
            return self._written[name]
        if name in self._deleted:
            raise KeyError(name)
        return self._base[name]

    def __contains__(self, name: object) -> bool:
        if name in self._written:
            return True
        return name not in self._deleted and name in self._base

    def __iter__(self) -> Iterator[str]:
        for name in self._base:
            if name not in self._written and name not in self._deleted:
                yield name
        yield from self._written

    def __len__(self) -> int:
        gone = sum(1 for name in self._deleted if name in self._base)
        new = sum(1 for name in self._written if name not in self._base)
        return len(self._base) - gone + new


def check_references(
    state: State,
    *,
    deleted: Collection[tuple[str, str]] = (),
    only: tuple[str, Collection[str]] | None = None,
) -> None:
    """Every reference names an existing resource; else ValidationError naming the field.

    `deleted` holds the (kind, name) a prune removes: a reference to one of those is reported
    as such, since the target exists today and "unknown" would send the reader looking for a
    typo.

    `only` (kind, names) checks just those resources: enough for a write that changes only
    resources of a kind no field refers to, since the rest of `state` passed this check when
    it was stored.
    """
    if only is not None:
        kind, names = only
        specs = state.get(kind, {})
        resources: Iterable[tuple[str, str, Mapping[str, Any]]] = (
            (kind, name, specs[name]) for name in names
        )
    else:
        resources = (
            (kind, name, spec) for kind in KINDS for name, spec in state.get(kind, {}).items()
        )
    for kind, name, spec in resources:
        for field, target_kind, target in references(kind, spec):
            if target in state.get(target_kind, {}):
                continue
            if (target_kind, target) in deleted:
                problem = f"still refers to {target_kind} {target!r}, which the prune removes"
            else:
                problem = f"refers to unknown {target_kind} {target!r}"
            raise ValidationError(f"{kind}[{name}].{field}", problem)

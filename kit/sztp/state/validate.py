"""Offline checks of a fleet file and of ownership vouchers, before anything reaches a server.

`validate_fleet` goes beyond the schema: each spec is checked as the server would
(`normalize_spec`), references must resolve (`plan.check_references`), every device voucher
must be one a server may store for its device (its serial, current, no nonce) and authorise
every owner that may sign for the device (`ownership`), the DHCP section must encode, and the
DNS section must name valid servers and devices it can make records for.
Every problem names the file and line it comes from.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import SztpError, ValidationError, VoucherError
from ..pkcs11_uri import is_pkcs11_uri
from .device_templates import render_failures
from .dhcp_section import check_dhcp_section
from .dns_section import check_dns_section
from .fleet import Fleet
from .ownership import check_authorises, selectable_profiles, signing_owners
from .plan import check_references
from .problem import Problem
from .resources import DEVICE, HIDDEN, KINDS, OWNER, PROFILE, normalize_spec, references

if TYPE_CHECKING:
    from cryptography import x509

    from ..protocol.voucher import Voucher


@dataclass
class Validation:
    """The outcome: problems (in file order), and what was checked for the summary."""

    problems: list[Problem] = field(default_factory=list)
    vouchers_checked: int = 0
    notes: list[str] = field(default_factory=list)


def read_voucher_for(
    der: bytes,
    serial: str,
    *,
    masa_anchors: Sequence[x509.Certificate] | None = None,
    at: datetime | None = None,
) -> Voucher:
    """A voucher's content once its signature verifies (chaining to `masa_anchors` when
    given) and a server may store it for `serial` (`check_storable`: it names the device, is
    current and has no nonce); else VoucherError saying which."""
    from ..protocol.voucher import check_storable, read_voucher

    now = at or datetime.now(UTC)
    voucher = read_voucher(der, masa_trust_anchors=masa_anchors, at=now)
    check_storable(voucher, serial, now)
    return voucher


def check_pins_owner(
    voucher: Voucher, owner_chain: Sequence[x509.Certificate], at: datetime | None = None
) -> None:
    """The owner certificate (chain[0], its issuers after it) is the voucher's
    pinned-domain-cert or chains to it, as a device checks; else VoucherError."""
    from ..protocol.voucher import check_owner_pinned

    check_owner_pinned(voucher, owner_chain[0], owner_chain[1:], at=at)


def validate_fleet(
    fleet: Fleet, masa_anchors: Sequence[x509.Certificate] | None = None
) -> Validation:
    """Every problem of a loaded fleet (schema and file references were checked by loading)."""
    result = Validation()
    result.notes.extend(map(str, fleet.skipped_secrets))
    state = _normalized(fleet, result)
    _check_references(fleet, state, result)
    _check_vouchers(fleet, state, masa_anchors, result)
    _check_dhcp(fleet, result)
    result.problems.extend(check_dns_section(fleet))
    _check_templates(fleet, state, result)
    result.problems.sort(key=lambda problem: _line_key(problem.where))
    return result


def _problem(fleet: Fleet, api_field: str, message: str) -> Problem:
    return Problem(fleet.locate(api_field) or f"{fleet.path}: {api_field}", message)


def _normalized(fleet: Fleet, result: Validation) -> dict[str, dict[str, dict[str, Any]]]:
    """Canonical specs of the resources that are valid on their own (vouchers aside)."""
    state: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, specs in fleet.resources.items():
        valid = state.setdefault(kind, {})
        for name, spec in specs.items():
            try:
                valid[name] = normalize_spec(kind, name, _offline_view(spec))
            except ValidationError as exc:
                result.problems.append(_problem(fleet, exc.field, exc.message))
                continue
            if kind == OWNER and is_pkcs11_uri(valid[name]["private_key"]):
                result.notes.append(
                    f"owner {name}: private_key names a key in a PKCS#11 token, checked here "
                    "as a URI only; the server checks the key against the certificate when it "
                    "first signs"
                )
    return state


def _offline_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec without what cannot or need not be checked here: "<hidden>" secrets (kept
    from the server's copy when applied, or skipped because their variable is unset),
    passwords (each a deliberately slow scrypt hash) and vouchers (checked separately, with better
    messages)."""
    return {
        key: value
        for key, value in spec.items()
        if value != HIDDEN and key not in ("password", "voucher")
    }


def _check_references(fleet: Fleet, state: Mapping[str, Any], result: Validation) -> None:
    # Only the names matter for the targets, so each resource is checked alone against them.
    names: dict[str, dict[str, Any]] = {
        kind: {name: {} for name in fleet.resources.get(kind, {})} for kind in KINDS
    }
    unchecked: set[str] = set()
    dangling = False
    for kind in (PROFILE, DEVICE):
        for name, spec in state.get(kind, {}).items():
            targets = {target_kind for _, target_kind, _ in references(kind, spec)}
            absent = {target for target in targets if target not in fleet.resources}
            if absent:  # managed elsewhere (the file has no such section): not checkable
                unchecked.update(absent)
                continue
            try:
                check_references({**names, kind: {name: spec}})
            except ValidationError as exc:
                result.problems.append(_problem(fleet, exc.field, exc.message))
                dangling = True
    if dangling:
        # The server may hold the name (an apply without --prune keeps what the file omits);
        # offline, only the file is known.
        result.notes.append(
            "references are checked against this file alone: each section it has is taken as "
            "complete, as `sztpctl apply --prune` applies it"
        )
    if unchecked:
        result.notes.append(
            "references not checked (the file has no section for them): "
            + ", ".join(sorted(unchecked))
        )


def _check_vouchers(
    fleet: Fleet,
    state: Mapping[str, Mapping[str, Mapping[str, Any]]],
    masa_anchors: Sequence[x509.Certificate] | None,
    result: Validation,
) -> None:
    profiles = state.get(PROFILE, {})
    devices = fleet.resources.get(DEVICE, {})
    if not fleet.resources.get(OWNER) and any(spec.get("voucher") for spec in devices.values()):
        result.notes.append("vouchers not checked against an owner: the file has no owner")
    for serial, spec in devices.items():
        text = spec.get("voucher")
        if text is None:
            continue
        where = f"{DEVICE}[{serial}].voucher"
        try:
            der = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            result.problems.append(_problem(fleet, where, "must be base64"))
            continue
        result.vouchers_checked += 1
        try:
            voucher = read_voucher_for(der, serial, masa_anchors=masa_anchors)
            device = state.get(DEVICE, {}).get(serial)
            if device is None:  # its own problem is reported already
                continue
            if all(name in profiles for name in selectable_profiles(device)):
                # As the server checks it: every owner that may sign for the device.
                check_authorises(voucher.pinned_domain_cert, signing_owners(device, state))
            else:
                _check_pins_any(voucher, state.get(OWNER, {}))
        except SztpError as exc:
            result.problems.append(_problem(fleet, where, str(exc)))


def _check_pins_any(voucher: Voucher, owners: Mapping[str, Mapping[str, Any]]) -> None:
    """Some of the device's profiles are managed elsewhere, so which owners sign for it is
    unknown here: one of the file's owners must be authorised (none in the file: no check)."""
    from ..protocol import pki

    failures: list[str] = []
    for _name, spec in sorted(owners.items()):
        try:
            check_pins_owner(voucher, pki.load_certificates_pem(spec["certificate_chain"].encode()))
            return
        except VoucherError as exc:
            failures.append(str(exc))
    if failures:
        raise VoucherError(failures[0] if len(failures) == 1 else "; ".join(failures))


def _check_templates(
    fleet: Fleet, state: Mapping[str, Mapping[str, Mapping[str, Any]]], result: Validation
) -> None:
    """Every device's templates rendered, as the server renders them when the fleet is
    applied (a profile managed elsewhere is not known here, so not rendered)."""
    for failure in render_failures(state):
        result.problems.append(_problem(fleet, failure.field, failure.message))


def _check_dhcp(fleet: Fleet, result: Validation) -> None:
    result.problems.extend(check_dhcp_section(fleet))


def _line_key(where: str) -> tuple[int, str]:
    _, _, rest = where.partition(":")
    line = rest.partition(":")[0]
    return (int(line) if line.isdigit() else 0, where)

"""Vouchers against owners, across resources.

A device accepts signed conveyed information only when the owner certificate that signed it
is its voucher's pinned-domain-cert or chains to it (RFC 8572 §5.4). So the voucher stored
for a device must authorise every owner that may sign for it: the owner of each profile the
device can select that can be served signed. A state that breaks this is refused when it is
written, by the server and by `sztpctl validate`, rather than found by devices.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import SztpError, ValidationError, VoucherError
from .plan import State
from .resources import DEVICE, OWNER, PROFILE

if TYPE_CHECKING:
    from cryptography import x509

# Owner name → (a profile it signs for, its certificate chain as stored).
Signers = dict[str, tuple[str, str]]


def served_signed(profile: Mapping[str, Any], *, signed_data_preferred: bool) -> bool:
    """Whether this profile's data goes out signed: always when signing is required, and
    onboarding data when the device asks for signed data (RFC 8572 §5.2); a redirect that
    does not require signing goes out unsigned."""
    return profile["signing"] == "required" or (
        signed_data_preferred and profile["type"] == "onboarding"
    )


def selectable_profiles(device: Mapping[str, Any]) -> list[str]:
    """The profiles a device can be given: its default and those of its selection rules."""
    names = [
        device.get("profile"),
        *(rule.get("profile") for rule in device.get("selection") or []),
    ]
    return [name for name in names if isinstance(name, str)]


def signing_owners(device: Mapping[str, Any], state: State) -> Signers:
    """The owners in `state` that may sign for `device`, each with the first profile (in
    selection order) that makes it sign. Profiles or owners missing from `state` are left
    out: there is nothing there to check against."""
    profiles = state.get(PROFILE, {})
    owners = state.get(OWNER, {})
    signers: Signers = {}
    for name in selectable_profiles(device):
        profile = profiles.get(name)
        if profile is None or not served_signed(profile, signed_data_preferred=True):
            continue
        owner = owners.get(profile["owner"])
        if owner is not None and profile["owner"] not in signers:
            signers[profile["owner"]] = (name, owner["certificate_chain"])
    return signers


def check_authorises(
    pinned_domain_cert: bytes, signers: Signers, at: datetime | None = None
) -> None:
    """A voucher's pinned-domain-cert (DER) authorises every one of `signers`; else
    VoucherError naming the first owner (by name) it does not authorise and why."""
    from ..protocol.voucher import check_pin_authorises

    for owner, (profile, chain_pem) in sorted(signers.items()):
        chain = _owner_chain(chain_pem)
        try:
            check_pin_authorises(pinned_domain_cert, chain[0], chain[1:], at=at)
        except VoucherError as exc:
            raise VoucherError(f"owner {owner!r} (signs profile {profile!r}): {exc}") from None


def check_vouchers_authorise_owners(
    after: State,
    *,
    before: State | None = None,
    at: datetime | None = None,
    pins: Mapping[str, bytes] | None = None,
    serials: Collection[str] | None = None,
) -> None:
    """Every device voucher in `after` authorises the owners that may sign for its device;
    else ValidationError naming the first such device (by serial). With `before`, a device
    whose voucher and signing owners (their certificates) are as in `before` is not checked
    again: a write answers only for what it changes. `serials` limits the check to those
    devices, for a write that changes devices only (their signing owners come from profiles
    and owners).

    Stored vouchers were verified when they were written, so their content is read here
    without checking the MASA signature again; `pins` holds the pinned-domain-cert (DER)
    of vouchers read already, by their base64 text, so they are not read twice.
    """
    from ..protocol.voucher import read_stored_voucher

    now = at or datetime.now(UTC)
    pins = pins or {}
    after_signers = _SignersBySelection(after)
    before_signers = _SignersBySelection(before) if before is not None else None
    # The devices of a fleet share a few pins and owners: each pairing is checked once.
    verdicts: dict[tuple[bytes, tuple[tuple[str, tuple[str, str]], ...]], str | None] = {}
    devices = after.get(DEVICE, {})
    for serial in sorted(devices if serials is None else serials):
        device = devices[serial]
        voucher_text = device.get("voucher")
        if not voucher_text:
            continue
        signers = after_signers.of(device)
        if before is not None and before_signers is not None:
            previous = before.get(DEVICE, {}).get(serial)
            if (
                previous is not None
                and previous.get("voucher") == voucher_text
                and before_signers.of(previous) == signers
            ):
                continue
        if not signers:
            continue
        try:
            pin = pins.get(voucher_text)
            if pin is None:
                pin = read_stored_voucher(base64.b64decode(voucher_text)).pinned_domain_cert
            key = (pin, tuple(sorted(signers.items())))
            if key not in verdicts:
                verdicts[key] = _authorisation_problem(pin, signers, now)
            problem = verdicts[key]
        except SztpError as exc:
            problem = str(exc)
        if problem is not None:
            raise ValidationError(f"{DEVICE}[{serial}].voucher", problem)


def _authorisation_problem(pin: bytes, signers: Signers, at: datetime) -> str | None:
    try:
        check_authorises(pin, signers, at=at)
    except SztpError as exc:
        return str(exc)
    return None


class _SignersBySelection:
    """`signing_owners` of one state, worked out once per list of selectable profiles:
    a fleet's devices share a few."""

    def __init__(self, state: State) -> None:
        self._state = state
        self._found: dict[tuple[str, ...], Signers] = {}

    def of(self, device: Mapping[str, Any]) -> Signers:
        selection = tuple(selectable_profiles(device))
        if selection not in self._found:
            self._found[selection] = signing_owners(device, self._state)
        return self._found[selection]


@functools.lru_cache(maxsize=64)
def _owner_chain(chain_pem: str) -> tuple[x509.Certificate, ...]:
    """Parsed once per chain: a fleet's devices share a few owners."""
    from ..protocol import pki

    return tuple(pki.load_certificates_pem(chain_pem.encode()))

"""The Responder's cache: profile data kept once for every device, the whole bounded by bytes.

Unit tests on a hand-built snapshot: rendering and signing are real, nothing is mocked.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from sztp.protocol import bootstrapping_data, pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp.state.resources import DEVICE, OWNER, PROFILE, TRUST_ANCHOR, normalize_spec
from sztp_server.context import Snapshot
from sztp_server.device_api.responder import (
    DeviceRequest,
    NoBootstrappingData,
    Responder,
    WaitsForToken,
)
from sztp_server.secret_key import SecretKey

MIB = 1024 * 1024
UNSIGNED = DeviceRequest()
SIGNED = DeviceRequest(signed_data_preferred=True)


def profile(name: str, configuration_bytes: int, **extra: Any) -> tuple[str, dict[str, Any]]:
    # Varied text, so no layer could shrink it by compression.
    line = f"! {name} configuration line\n"
    text = (line * (configuration_bytes // len(line) + 1))[:configuration_bytes]
    spec = {
        "type": "onboarding",
        "signing": "when-requested",
        "configuration": text,
        "configuration_handling": "replace",
        **extra,
    }
    return name, normalize_spec(PROFILE, name, spec)


def snapshot(
    profiles: dict[str, Any], devices: dict[str, Any], revision: int = 1, **kinds: Any
) -> Snapshot:
    return Snapshot(
        revision=revision,
        state={PROFILE: profiles, DEVICE: devices, **kinds, TRUST_ANCHOR: {}},
        secret_key=SecretKey(os.urandom(32)),
    )


def test_many_devices_on_one_profile_share_one_cached_copy() -> None:
    name, spec = profile("big", MIB)
    devices = {f"SN-{i:04}": {"profile": name} for i in range(1000)}
    state = snapshot({name: spec}, devices)
    responder = Responder(cache_bytes=64 * MIB)
    first = responder.respond(state, "SN-0000", UNSIGNED).data
    assert len(first.conveyed_information) > MIB
    for serial in devices:
        data = responder.respond(state, serial, UNSIGNED).data
        # The very same bytes object: one rendering, kept once, for every device.
        assert data.conveyed_information is first.conveyed_information
    assert MIB < responder.cached_bytes < 2 * MIB


def test_the_cache_stays_within_its_bound_dropping_the_least_recently_used() -> None:
    profiles = dict(profile(f"p{i}", MIB) for i in range(6))
    devices = {f"SN-{i}": {"profile": f"p{i}"} for i in range(6)}
    state = snapshot(profiles, devices)
    responder = Responder(cache_bytes=3 * MIB + MIB // 2)
    served = {serial: responder.respond(state, serial, UNSIGNED).data for serial in devices}
    assert responder.cached_bytes <= 3 * MIB + MIB // 2
    # The three most recent stayed; the oldest was dropped and is rendered anew.
    recent = responder.respond(state, "SN-5", UNSIGNED).data
    assert recent.conveyed_information is served["SN-5"].conveyed_information
    again = responder.respond(state, "SN-0", UNSIGNED).data
    assert again.conveyed_information == served["SN-0"].conveyed_information
    assert again.conveyed_information is not served["SN-0"].conveyed_information
    assert responder.cached_bytes <= 3 * MIB + MIB // 2


def test_data_larger_than_the_whole_cache_is_served_and_not_kept() -> None:
    name, spec = profile("huge", MIB)
    state = snapshot({name: spec}, {"SN-1": {"profile": name}})
    responder = Responder(cache_bytes=MIB // 2)
    assert len(responder.respond(state, "SN-1", UNSIGNED).data.conveyed_information) > MIB
    assert responder.cached_bytes == 0


def test_a_new_revision_drops_what_the_old_one_rendered() -> None:
    name, spec = profile("lab", 1000)
    responder = Responder(cache_bytes=MIB)
    old = responder.respond(
        snapshot({name: spec}, {"SN-1": {"profile": name}}), "SN-1", UNSIGNED
    ).data
    _, changed = profile("lab", 2000)
    new = responder.respond(
        snapshot({name: changed}, {"SN-1": {"profile": name}}, revision=2), "SN-1", UNSIGNED
    ).data
    assert new.conveyed_information != old.conveyed_information
    # Only the new revision's data is left.
    assert responder.cached_bytes < len(old.conveyed_information) + len(new.conveyed_information)


def lab_voucher(lab: Any, serial: str) -> bytes:
    return sign_voucher(create_voucher(serial, lab.owner_ca.certificate), lab.masa)


def pem(*credentials: pki.Credential) -> str:
    return "".join(pki.certificate_to_pem(item.certificate).decode() for item in credentials)


def test_signed_data_shares_the_signature_and_carries_each_device_its_voucher(
    ec_lab: Any,
) -> None:
    name, spec = profile("signed", 100_000, signing="required")
    owner = {
        "certificate_chain": pem(ec_lab.owner, ec_lab.owner_ca),
        "private_key": pki.private_key_to_pem(ec_lab.owner.private_key).decode(),
    }
    serials = ("SN-0001", "SN-0002")
    vouchers = {serial: lab_voucher(ec_lab, serial) for serial in serials}
    devices = {
        serial: {"profile": name, "voucher": base64.b64encode(vouchers[serial]).decode()}
        for serial in serials
    }
    state = snapshot(
        {name: spec}, {**devices, "SN-none": {"profile": name}}, **{OWNER: {"default": owner}}
    )
    responder = Responder(cache_bytes=16 * MIB)
    served = {serial: responder.respond(state, serial, SIGNED).data for serial in serials}
    first, second = (served[serial] for serial in serials)
    assert second.conveyed_information is first.conveyed_information
    manufacturer = [ec_lab.manufacturer_ca.certificate]
    for serial in serials:
        assert served[serial].ownership_voucher == vouchers[serial]
        verified = bootstrapping_data.verify_bootstrapping_data(
            served[serial], serial_number=serial, trust_anchors=manufacturer
        )
        assert verified.signed
    assert responder.cached_bytes < 200_000
    with pytest.raises(NoBootstrappingData, match="SN-none needs signed data but has no voucher"):
        responder.respond(state, "SN-none", SIGNED)


def test_an_answer_signed_in_a_token_is_left_to_a_thread_unless_cached(ec_lab: Any) -> None:
    """The event loop asks with may_wait=False: a token's round trip (a network HSM's) is
    not taken there, and nothing is rendered before the answer says so."""
    name, spec = profile("signed", 1_000, signing="when-requested")
    in_token = {
        "certificate_chain": pem(ec_lab.owner, ec_lab.owner_ca),
        "private_key": "pkcs11:token=owner;object=owner",
    }
    voucher = base64.b64encode(lab_voucher(ec_lab, "SN-0001")).decode()
    state = snapshot(
        {name: spec}, {"SN-0001": {"profile": name, "voucher": voucher}},
        **{OWNER: {"default": in_token}},
    )  # fmt: skip
    responder = Responder(cache_bytes=16 * MIB)
    with pytest.raises(WaitsForToken):
        responder.respond(state, "SN-0001", SIGNED, may_wait=False)
    assert responder.cached_bytes == 0
    # Unsigned data needs no key: served on the loop.
    assert not responder.respond(state, "SN-0001", UNSIGNED, may_wait=False).data.signed

    # What is cached never waits: the same answer, signed once by a key in memory, is served
    # from the cache to a caller that may not wait.
    in_memory = {
        **in_token,
        "private_key": pki.private_key_to_pem(ec_lab.owner.private_key).decode(),
    }
    signed = responder.respond(
        snapshot(
            {name: spec}, {"SN-0001": {"profile": name, "voucher": voucher}},
            **{OWNER: {"default": in_memory}},
        ),
        "SN-0001",
        SIGNED,
    ).data  # fmt: skip
    cached = responder.respond(state, "SN-0001", SIGNED, may_wait=False).data
    assert cached.conveyed_information is signed.conveyed_information

"""Choose a device's profile and render its bootstrapping data (signed when it must be).

Rendering, and above all signing, is the expensive part of `get-bootstrapping-data`, and its
result depends only on the snapshot revision, the device, the chosen profile and whether
signing was asked for. So results are cached under exactly that key and dropped wholesale when
the revision moves.
"""

from __future__ import annotations

import base64
import fnmatch
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sztpctl.errors import SztpError
from sztpctl.protocol import bootstrapping_data, cms, conveyed_info, pki, restconf
from sztpctl.protocol.bootstrapping_data import BootstrappingData
from sztpctl.protocol.conveyed_info import (
    BootImage,
    BootstrapServer,
    ConveyedInformation,
    Encoding,
    OnboardingInformation,
    RedirectInformation,
)
from sztpctl.state.resources import IMAGE, PROFILE

from .context import Snapshot

Spec = Mapping[str, Any]
CACHE_LIMIT = 100_000


class NoBootstrappingData(SztpError):
    """The device is known but nothing can be served to it; the reason is for the log only."""


@dataclass(frozen=True)
class DeviceRequest:
    """What the device told us in get-bootstrapping-data input."""

    signed_data_preferred: bool = False
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None


def select_profile(device: Spec, request: DeviceRequest) -> str | None:
    """First selection rule whose set patterns all match (shell-style globs), else the default."""
    facts = {
        "hw_model": request.hw_model,
        "os_name": request.os_name,
        "os_version": request.os_version,
    }
    for rule in device.get("selection", ()):
        if all(
            rule.get(fact) is None or (value is not None and fnmatch.fnmatchcase(value, rule[fact]))
            for fact, value in facts.items()
        ):
            return rule["profile"]
    return device.get("profile")


class Responder:
    """Renders bootstrapping data per (revision, device, profile, signing) with a cache."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision = -1
        self._cache: dict[tuple[str, str, bool], BootstrappingData] = {}

    def respond(self, snapshot: Snapshot, serial: str, request: DeviceRequest) -> BootstrappingData:
        device = snapshot.device(serial)
        if device is None:
            raise NoBootstrappingData(f"device {serial} is not known")
        if device.get("presigned"):
            return self._presigned(snapshot.revision, serial, device["presigned"], request)
        profile_name = select_profile(device, request)
        if profile_name is None:
            raise NoBootstrappingData(f"device {serial} has no profile")
        profile = snapshot.get(PROFILE, profile_name)
        if profile is None:
            raise NoBootstrappingData(f"profile {profile_name} of device {serial} is missing")
        # RFC 8572 §5.2: a device that asks for signed data gets it, or at most a redirect.
        sign = profile["signing"] == "required" or (
            request.signed_data_preferred and profile["type"] == "onboarding"
        )
        key = (serial, profile_name, sign)
        with self._lock:
            if self._revision != snapshot.revision:
                self._cache.clear()
                self._revision = snapshot.revision
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        data = _render(snapshot, serial, device, profile, sign=sign)
        with self._lock:
            if self._revision == snapshot.revision and len(self._cache) < CACHE_LIMIT:
                self._cache[key] = data
        return data

    def _presigned(
        self, revision: int, serial: str, document: str, request: DeviceRequest
    ) -> BootstrappingData:
        """Artifacts signed offline, served as they are (parsed once per revision)."""
        key = (serial, "<presigned>", True)
        with self._lock:
            if self._revision != revision:
                self._cache.clear()
                self._revision = revision
            cached = self._cache.get(key)
        data = cached or restconf.parse_get_bootstrapping_data_output(
            document.encode(), restconf.WireFormat.JSON
        )
        if request.signed_data_preferred and not data.signed:
            information = bootstrapping_data.check_presigned(data, serial_number=serial)
            if isinstance(information, OnboardingInformation):
                raise NoBootstrappingData(
                    f"device {serial} asks for signed data; its pre-signed data is unsigned"
                )
        with self._lock:
            if self._revision == revision:
                self._cache[key] = data
        return data


def _render(
    snapshot: Snapshot, serial: str, device: Spec, profile: Spec, *, sign: bool
) -> BootstrappingData:
    information = _information(snapshot, profile)
    encoding = Encoding.XML if profile["encoding"] == "xml" else Encoding.JSON
    if not sign:
        return bootstrapping_data.build_unsigned(information, encoding)
    owner = snapshot.owner_credential(profile["owner"])
    if owner is None:
        raise NoBootstrappingData(
            f"profile needs signing but owner {profile['owner']!r} has no private key here"
        )
    if not device.get("voucher"):
        raise NoBootstrappingData(f"device {serial} needs signed data but has no voucher")
    return bootstrapping_data.build_signed(
        information,
        encoding,
        owner,
        base64.b64decode(device["voucher"]),
        reporting_level=profile.get("reporting_level"),
    )


def _information(snapshot: Snapshot, profile: Spec) -> ConveyedInformation:
    if profile["type"] == "redirect":
        return RedirectInformation(
            tuple(
                BootstrapServer(
                    address=server["address"],
                    port=server["port"],
                    trust_anchor=_trust_anchor_bundle(server.get("trust_anchor")),
                )
                for server in profile["bootstrap_servers"]
            )
        )
    image = snapshot.get(IMAGE, profile["image"]) if profile.get("image") else None
    information = OnboardingInformation(
        boot_image=BootImage(
            os_name=image["os_name"],
            os_version=image["os_version"],
            download_uris=tuple(image["download_uris"]),
            sha256=bytes.fromhex(image["sha256"]),
        )
        if image is not None
        else None,
        configuration_handling=profile.get("configuration_handling"),
        pre_configuration_script=_encode_text(profile.get("pre_configuration_script")),
        configuration=_encode_text(profile.get("configuration")),
        post_configuration_script=_encode_text(profile.get("post_configuration_script")),
    )
    conveyed_info.validate(information)
    return information


def _encode_text(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _trust_anchor_bundle(pem: str | None) -> bytes | None:
    """A redirect's trust anchor travels as a CMS certs-only bundle (RFC 8572 §2.1)."""
    if pem is None:
        return None
    return cms.certs_only(pki.load_certificates_pem(pem.encode()))

"""Choose a device's profile and render its bootstrapping data (signed when it must be).

Rendering, and above all signing, is the expensive part of `get-bootstrapping-data`. The
conveyed information (signed or not) and the owner certificate of a plain profile depend only on
the snapshot revision, the chosen profile and whether signing was asked for, never on the
device: they are cached once per profile, and each device's own voucher is added per request.
A templated profile's data is rendered, signed and cached per device, as is pre-signed data.
The whole cache is bounded by bytes (least recently used entries go first) and dropped
wholesale when the revision moves.
"""

from __future__ import annotations

import base64
import dataclasses
import fnmatch
import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sztp.errors import SztpError, ValidationError, VoucherError
from sztp.protocol import bootstrapping_data, cms, conveyed_info, pki, restconf
from sztp.protocol.bootstrapping_data import BootstrappingData
from sztp.protocol.conveyed_info import (
    BootImage,
    BootstrapServer,
    ConveyedInformation,
    Encoding,
    OnboardingInformation,
    RedirectInformation,
)
from sztp.protocol.voucher import check_current
from sztp.state.device_templates import ProfileTemplates, compile_profile, is_templated
from sztp.state.ownership import served_signed
from sztp.state.resources import IMAGE, PROFILE

from ..context import Snapshot

Spec = Mapping[str, Any]


class NoBootstrappingData(SztpError):
    """The device is known but nothing can be served to it; the reason is for the log only."""


class WaitsForToken(Exception):
    """`respond(..., may_wait=False)` would have to sign in a PKCS#11 token, whose round trip
    (a network HSM's) must not hold the event loop: the caller asks again from a thread."""


@dataclasses.dataclass(frozen=True)
class DeviceRequest:
    """What the device told us in get-bootstrapping-data input."""

    signed_data_preferred: bool = False
    hw_model: str | None = None
    os_name: str | None = None
    os_version: str | None = None


@dataclasses.dataclass(frozen=True)
class Answer:
    """What a device is served, and from which profile and image (None for pre-signed data,
    and `image` for a profile without one): the flight recorder keeps the names."""

    data: BootstrappingData
    profile: str | None = None
    image: str | None = None


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
    """Renders bootstrapping data with a cache bounded by `cache_bytes`."""

    def __init__(self, cache_bytes: int) -> None:
        self._cache = _ByteBoundCache(cache_bytes)
        self._templates = _CompiledTemplates()

    @property
    def cached_bytes(self) -> int:
        """What the cached artifacts take now (never more than `cache_bytes`)."""
        return self._cache.size

    def ldevid_profile(
        self, snapshot: Snapshot, serial: str, request: DeviceRequest
    ) -> tuple[str, Spec] | None:
        """(name, spec) of the profile the device gets, when that profile issues LDevIDs."""
        device = snapshot.device(serial)
        if device is None or device.get("presigned"):
            return None
        name = select_profile(device, request)
        if name is None:
            return None
        profile = snapshot.get(PROFILE, name)
        if profile is None or not profile.get("ldevid_issuer"):
            return None
        return name, profile

    def respond(
        self,
        snapshot: Snapshot,
        serial: str,
        request: DeviceRequest,
        ldevid: Mapping[str, str] | None = None,
        *,
        may_wait: bool = True,
    ) -> Answer:
        """The device's bootstrapping data; with the LDevID just issued to it, rendered for
        this answer alone (a certificate is never served twice). Without `may_wait`, an
        answer that is not cached and must be signed in a token raises WaitsForToken before
        any work is done."""
        device = snapshot.device(serial)
        if device is None:
            raise NoBootstrappingData(f"device {serial} is not known")
        if device.get("presigned"):
            return Answer(self._presigned(snapshot.revision, serial, device["presigned"], request))
        profile_name = select_profile(device, request)
        if profile_name is None:
            raise NoBootstrappingData(f"device {serial} has no profile")
        profile = snapshot.get(PROFILE, profile_name)
        if profile is None:
            raise NoBootstrappingData(f"profile {profile_name} of device {serial} is missing")
        sign = served_signed(profile, signed_data_preferred=request.signed_data_preferred)
        voucher = None
        if sign:
            if not device.get("voucher"):
                raise NoBootstrappingData(f"device {serial} needs signed data but has no voucher")
            _check_voucher_current(snapshot, serial)
            voucher = base64.b64decode(device["voucher"])
        # Checked where the answer is not cached, before anything is rendered.
        waits = (
            not may_wait and voucher is not None and snapshot.owner_key_in_token(profile["owner"])
        )
        if ldevid is not None:
            if waits:
                raise WaitsForToken
            fields = self._rendered_fields(snapshot, serial, device, profile_name, profile, ldevid)
            data = _render(snapshot, profile, voucher, fields)
            return Answer(data, profile_name, profile.get("image"))
        if profile.get("ldevid_issuer"):
            raise NoBootstrappingData(f"profile {profile_name} issues LDevIDs: none issued yet")
        if is_templated(profile):
            key: _CacheKey = ("device", serial, profile_name, sign)
            rendered = self._cache.get(snapshot.revision, key)
            if rendered is None:
                if waits:
                    raise WaitsForToken
                fields = self._rendered_fields(snapshot, serial, device, profile_name, profile)
                rendered = _render(snapshot, profile, voucher, fields)
                self._cache.put(snapshot.revision, key, rendered)
            return Answer(rendered, profile_name, profile.get("image"))
        key = ("profile", profile_name, "", sign)
        rendered = self._cache.get(snapshot.revision, key)
        if rendered is None:
            if waits:
                raise WaitsForToken
            rendered = _render(snapshot, profile, voucher)
            self._cache.put(snapshot.revision, key, rendered)
        if voucher is not None and rendered.ownership_voucher != voucher:
            # Cached with the voucher of the device that asked first: this device gets its own.
            rendered = dataclasses.replace(rendered, ownership_voucher=voucher)
        return Answer(rendered, profile_name, profile.get("image"))

    def _rendered_fields(
        self,
        snapshot: Snapshot,
        serial: str,
        device: Spec,
        profile_name: str,
        profile: Spec,
        ldevid: Mapping[str, str] | None = None,
    ) -> Mapping[str, str]:
        """The profile's templates rendered for the device. Every device's templates rendered
        when the state was written, so a failure here is a server fault, told to the device as
        data it cannot have."""
        try:
            templates = self._templates.get(snapshot.revision, profile_name, profile)
            if templates is None:
                return {}
            return templates.render(serial, device, profile, ldevid)
        except ValidationError as exc:
            raise NoBootstrappingData(f"{exc.field}: {exc.message}") from None

    def _presigned(
        self, revision: int, serial: str, document: str, request: DeviceRequest
    ) -> BootstrappingData:
        """Artifacts signed offline, served as they are (parsed once per revision)."""
        key: _CacheKey = ("presigned", serial, "", True)
        data = self._cache.get(revision, key)
        if data is None:
            data = restconf.parse_get_bootstrapping_data_output(
                document.encode(), restconf.WireFormat.JSON
            )
            self._cache.put(revision, key, data)
        if request.signed_data_preferred and not data.signed:
            information = bootstrapping_data.check_presigned(data, serial_number=serial)
            if isinstance(information, OnboardingInformation):
                raise NoBootstrappingData(
                    f"device {serial} asks for signed data; its pre-signed data is unsigned"
                )
        return data


# ("profile", name, "", signed), ("device", serial, profile, signed) for a templated profile,
# or ("presigned", serial, "", True).
_CacheKey = tuple[str, str, str, bool]


class _CompiledTemplates:
    """Each templated profile's templates, compiled once per snapshot revision."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision = -1
        self._compiled: dict[str, ProfileTemplates | None] = {}

    def get(self, revision: int, name: str, profile: Spec) -> ProfileTemplates | None:
        with self._lock:
            if revision != self._revision:
                self._compiled.clear()
                self._revision = revision
            if name not in self._compiled:
                self._compiled[name] = compile_profile(name, profile)
            return self._compiled[name]


class _ByteBoundCache:
    """Bootstrapping data of one snapshot revision, least recently used first, bounded by size.

    An entry's size is its artifacts' bytes plus a fixed allowance for the Python objects
    holding them; an entry larger than the whole bound is not kept at all.
    """

    ENTRY_OVERHEAD = 512

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._lock = threading.Lock()
        self._revision = -1
        self._entries: OrderedDict[_CacheKey, tuple[BootstrappingData, int]] = OrderedDict()

    def get(self, revision: int, key: _CacheKey) -> BootstrappingData | None:
        with self._lock:
            self._follow(revision)
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, revision: int, key: _CacheKey, data: BootstrappingData) -> None:
        size = _entry_size(data) + self.ENTRY_OVERHEAD
        with self._lock:
            self._follow(revision)
            if size > self.limit:
                return
            replaced = self._entries.pop(key, None)
            if replaced is not None:
                self.size -= replaced[1]
            while self._entries and self.size + size > self.limit:
                _, (_, evicted) = self._entries.popitem(last=False)
                self.size -= evicted
            self._entries[key] = (data, size)
            self.size += size

    def _follow(self, revision: int) -> None:
        """Drop everything rendered from another revision (called with the lock held)."""
        if revision != self._revision:
            self._entries.clear()
            self.size = 0
            self._revision = revision


def _entry_size(data: BootstrappingData) -> int:
    return sum(
        len(artifact)
        for artifact in (data.conveyed_information, data.owner_certificate, data.ownership_voucher)
        if artifact is not None
    )


def _render(
    snapshot: Snapshot,
    profile: Spec,
    voucher: bytes | None,
    rendered: Mapping[str, str] | None = None,
) -> BootstrappingData:
    """The profile's data, signed with `voucher` when one is given; nothing else in it depends
    on the device, but for the template fields `rendered` for it."""
    information = _information(snapshot, profile, rendered or {})
    encoding = Encoding.XML if profile["encoding"] == "xml" else Encoding.JSON
    if voucher is None:
        return bootstrapping_data.build_unsigned(information, encoding)
    owner = snapshot.owner_credential(profile["owner"])
    if owner is None:
        raise NoBootstrappingData(
            f"profile needs signing but owner {profile['owner']!r} has no private key here"
        )
    return bootstrapping_data.build_signed(
        information, encoding, owner, voucher, reporting_level=profile.get("reporting_level")
    )


def _check_voucher_current(snapshot: Snapshot, serial: str) -> None:
    """The stored voucher was current when it was written, but it may have expired since.

    Refused (VoucherError: the device is told the data is unavailable, the log says why)
    rather than served: the device would reject it anyway, and then try its next bootstrap
    server just as it does after this error.
    """
    voucher = snapshot.voucher(serial)
    if voucher is not None:
        try:
            check_current(voucher, datetime.now(UTC))
        except VoucherError as exc:
            raise VoucherError(f"device {serial}: {exc}; store a renewed voucher") from None


def _information(
    snapshot: Snapshot, profile: Spec, rendered: Mapping[str, str]
) -> ConveyedInformation:
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
        pre_configuration_script=_encode_text(
            _field(profile, rendered, "pre_configuration_script")
        ),
        configuration=_encode_text(_field(profile, rendered, "configuration")),
        post_configuration_script=_encode_text(
            _field(profile, rendered, "post_configuration_script")
        ),
    )
    conveyed_info.validate(information)
    return information


def _field(profile: Spec, rendered: Mapping[str, str], name: str) -> str | None:
    """A template field as rendered for the device, else as the profile has it."""
    return rendered.get(name, profile.get(name))


def _encode_text(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _trust_anchor_bundle(pem: str | None) -> bytes | None:
    """A redirect's trust anchor travels as a CMS certs-only bundle (RFC 8572 §2.1)."""
    if pem is None:
        return None
    return cms.certs_only(pki.load_certificates_pem(pem.encode()))

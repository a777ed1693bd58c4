"""An sztpd running configuration, converted to a fleet document (`sztpctl import sztpd`).

sztpd, the bootstrap server this project's design comes from, keeps its whole configuration in
one JSON document (RFC 7951) in one of two layouts:

- sztpd 0.0.15: the top-level nodes of module `wn-sztpd-1` (`wn-sztpd-1:devices`,
  `wn-sztpd-1:boot-images`, `wn-sztpd-1:keystore`, ...);
- sztpd 0.0.46: module `sztpd` (`sztpd:conveyed-information` holding the bootstrap servers,
  boot images, scripts and configurations, `sztpd:responses`, `sztpd:device-types`,
  `sztpd:devices`) beside `yangcore:*`, `ietf-keystore:keystore` and
  `ietf-truststore:truststore`.

Both become the same fleet document:

- the certificates devices' IDevIDs must chain to (a device type's identity verification, the
  RFC 8572 endpoint's client authentication) → `trust_anchors`;
- owner certificates (0.0.15) → `owners`, without their private keys;
- boot images → `images`;
- each onboarding or redirect response a device uses, with its scripts, configuration and
  bootstrap servers inlined, and the reporting level and signing its matched response asks
  for → a profile;
- devices → `devices`: the device type as `model`, an activation code given in clear (`$0$`)
  as a stored hash, a static voucher as `voucher`, and the matched responses (the device's
  own, then its device type's, as sztpd tries them) as selection rules, the first catch-all
  as `profile`.

What a fleet has no place for (server settings, admin accounts, callouts, private keys, crypt
hashes sztp cannot check, match criteria a selection rule cannot express) is left out, each
with a note naming its path in the sztpd document and why. Notes never quote a secret.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SztpError
from ..passwords import ACTIVATION_CODE, MAX_PASSWORD_LENGTH, hash_activation_code, hash_password
from .model import NAME_LIMIT, SERIAL_PATTERN, TEXT_LIMIT, VARIABLE_PATTERN
from .resources import checked_voucher, is_ca_certificate

if TYPE_CHECKING:
    from cryptography import x509


class SztpdLayout(enum.Enum):
    """The two layouts of an sztpd running configuration."""

    WN_SZTPD_1 = "sztpd 0.0.15 (wn-sztpd-1)"
    SZTPD = "sztpd 0.0.46 (sztpd, yangcore)"


class NoteKind(enum.Enum):
    LEFT_OUT = "left out"
    CHANGED = "changed"


@dataclass(frozen=True)
class Note:
    """Something of the sztpd document not carried as it was: `path` is where it is, in the
    RESTCONF form sztpd's own API uses (`/wn-sztpd-1:devices/device=SN-1/activation-code`)."""

    kind: NoteKind
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.path}: {self.reason}"


@dataclass(frozen=True)
class SztpdConversion:
    layout: SztpdLayout
    fleet: dict[str, Any]
    notes: tuple[Note, ...]

    @property
    def left_out(self) -> tuple[Note, ...]:
        return tuple(note for note in self.notes if note.kind is NoteKind.LEFT_OUT)


class SztpdImportError(SztpError):
    """The document is not an sztpd running configuration this converter knows."""


# RESTCONF wraps a datastore read in this member.
_RESTCONF_DATA = "ietf-restconf:data"
_LEGACY_MODULE = "wn-sztpd-1"
_MODULE = "sztpd"
# What sztpd 0.0.46 keeps beside its own module.
_KEYSTORE = "ietf-keystore:keystore"
_TRUSTSTORE = "ietf-truststore:truststore"
_RESTCONF_SERVER = "ietf-restconf-server:restconf-server"

# Top-level nodes a fleet has no place for, by name without the module, and why.
_SERVER_NODES = {
    "transport": "listening endpoints and the server's TLS identity are server settings "
    "(docs/server.md), not part of a fleet",
    "restconf-server": "listening endpoints and the server's TLS identity are server settings "
    "(docs/server.md), not part of a fleet",
    "admin-accounts": "admin accounts have no place in a fleet: the server's admin API takes "
    "tokens (docs/server.md)",
    "preferences": "server preferences have no place in a fleet (docs/server.md has the "
    "server's settings)",
    "dynamic-callouts": "callouts (plugins, webhooks) have no equivalent; device events reach "
    "webhooks (`sztpctl webhooks`)",
    "audit-log": "a log is state, not configuration",
    "alarms": "alarms are state, not configuration",
}
_UNKNOWN_NODE = "not a node this converter knows"

_VARIABLE = re.compile(VARIABLE_PATTERN)
_SERIAL = re.compile(SERIAL_PATTERN)
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_CRYPT_HASH_ID = re.compile(r"\$([0-9a-z]{1,2})\$")
_SHA256 = "ietf-sztp-conveyed-info:sha-256"
# A selection rule tests what the device reports in its get-bootstrapping-data input.
_RULE_FIELDS = {"hw-model": "hw_model", "os-name": "os_name", "os-version": "os_version"}
_GLOB_SPECIALS = frozenset("*?[")
_REGEX_SPECIALS = frozenset("\\.^$*+?{}[]|()")
_SCRIPT_PHASES = {
    "pre-configuration-script": "PRE-CONFIG",
    "post-configuration-script": "POST-CONFIG",
}


def detect_layout(document: Any) -> SztpdLayout:
    """The layout of `document` (parsed JSON); SztpdImportError if it is neither."""
    if not isinstance(document, dict):
        raise SztpdImportError("not an sztpd running configuration: the document is not an object")
    modules = {key.partition(":")[0] for key in _top(document) if ":" in key}
    legacy, current = _LEGACY_MODULE in modules, _MODULE in modules
    if legacy and current:
        raise SztpdImportError(
            f"the document mixes the layouts of sztpd 0.0.15 ({_LEGACY_MODULE}:...) and 0.0.46 "
            f"({_MODULE}:...): convert one running configuration at a time"
        )
    if legacy:
        return SztpdLayout.WN_SZTPD_1
    if current:
        return SztpdLayout.SZTPD
    raise SztpdImportError(
        "not an sztpd running configuration: no top-level member of module "
        f"{_LEGACY_MODULE} (sztpd 0.0.15) or {_MODULE} (sztpd 0.0.46); "
        f"found {', '.join(sorted(modules)) or 'none with a module prefix'}"
    )


def convert_sztpd(document: Any) -> SztpdConversion:
    """The fleet document for sztpd running configuration `document` (parsed JSON), and notes
    on what it could not carry; SztpdImportError if the layout is unknown."""
    layout = detect_layout(document)
    converter = _Converter(_read(layout, _top(document)))
    fleet = converter.fleet()
    # By path, so that the notes on one part of the document stay together.
    return SztpdConversion(layout, fleet, tuple(sorted(converter.notes, key=lambda n: n.path)))


def _top(document: dict[str, Any]) -> dict[str, Any]:
    wrapped = document.get(_RESTCONF_DATA)
    return wrapped if isinstance(wrapped, dict) and len(document) == 1 else document


# ---- reading either layout into one shape


@dataclass(frozen=True)
class _Item:
    """An entry of the sztpd document and its path."""

    path: str
    data: dict[str, Any]


@dataclass(frozen=True)
class _Configuration:
    path: str
    handling: str | None
    data: str | None  # base64


@dataclass(frozen=True)
class _ConveyedChoice:
    """What a matched response sends, read from either layout."""

    path: str
    kind: str  # "onboarding", "redirect", "none" or what cannot be carried
    reference: str | None = None  # a response's name
    local: dict[str, Any] | None = None  # a local definition (0.0.15)
    template_params: dict[str, _Item] = field(default_factory=dict)  # by key


@dataclass
class _Source:
    """The parts of an sztpd document a fleet can hold, keyed by their sztpd names."""

    bags: dict[str, _Item] = field(default_factory=dict)
    keys: dict[str, _Item] = field(default_factory=dict)
    servers: dict[str, _Item] = field(default_factory=dict)
    images: dict[str, _Item] = field(default_factory=dict)
    # (phase, name) → (path, base64 code); phase is PRE-CONFIG or POST-CONFIG.
    scripts: dict[tuple[str, str], tuple[str, Any]] = field(default_factory=dict)
    configurations: dict[str, _Configuration] = field(default_factory=dict)
    onboarding_responses: dict[str, _Item] = field(default_factory=dict)
    redirect_responses: dict[str, _Item] = field(default_factory=dict)
    other_responses: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    owners: dict[str, _Item] = field(default_factory=dict)
    device_types: dict[str, _Item] = field(default_factory=dict)
    devices: list[_Item] = field(default_factory=list)
    # Truststore bags and inline certificates the RFC 8572 endpoint authenticates devices with.
    client_ca_bags: list[tuple[str, str]] = field(default_factory=list)  # (path, bag)
    client_ca_inline: list[_Item] = field(default_factory=list)
    ignored: list[Note] = field(default_factory=list)


def _read(layout: SztpdLayout, top: dict[str, Any]) -> _Source:
    source = _Source()
    if layout is SztpdLayout.WN_SZTPD_1:
        _read_legacy(source, top)
    else:
        _read_current(source, top)
    return source


def _read_legacy(source: _Source, top: dict[str, Any]) -> None:
    prefix = f"{_LEGACY_MODULE}:"
    for key, value in top.items():
        path = f"/{key}"
        node = key.removeprefix(prefix)
        if not key.startswith(prefix):
            source.ignored.append(Note(NoteKind.LEFT_OUT, path, _UNKNOWN_NODE))
        elif node == "truststore":
            source.bags.update(_bags(value, path))
        elif node == "keystore":
            source.keys.update(_keys(value, path))
        elif node == "bootstrap-servers":
            source.servers.update(_entries(value, "bootstrap-server", "name", path))
        elif node == "boot-images":
            source.images.update(_entries(value, "boot-image", "name", path))
        elif node == "scripts":
            for list_name, phase in _SCRIPT_PHASES.items():
                for name, item in _entries(value, list_name, "name", path).items():
                    source.scripts[(phase, name)] = (item.path, item.data.get("script"))
        elif node == "configurations":
            for name, item in _entries(value, "configuration", "name", path).items():
                source.configurations[name] = _Configuration(
                    item.path, item.data.get("configuration-handling"), item.data.get("config")
                )
        elif node == "conveyed-information-responses":
            _read_responses(
                source,
                value,
                path,
                "onboarding-information-response",
                "redirect-information-response",
            )
        elif node == "owner-certificates":
            source.owners.update(_entries(value, "owner-certificate", "name", path))
        elif node == "device-types":
            source.device_types.update(_entries(value, "device-type", "name", path))
        elif node == "devices":
            source.devices.extend(_entries(value, "device", "serial-number", path).values())
        elif node == "transport":
            _read_endpoints(source, _mapping(_mapping(value).get("listen")), path + "/listen")
            source.ignored.append(Note(NoteKind.LEFT_OUT, path, _SERVER_NODES[node]))
        else:
            source.ignored.append(
                Note(NoteKind.LEFT_OUT, path, _SERVER_NODES.get(node, _UNKNOWN_NODE))
            )


def _read_current(source: _Source, top: dict[str, Any]) -> None:
    prefix = f"{_MODULE}:"
    for key, value in top.items():
        path = f"/{key}"
        if key == _TRUSTSTORE:
            source.bags.update(_bags(value, path))
        elif key == _KEYSTORE:
            source.keys.update(_keys(value, path))
        elif key == _RESTCONF_SERVER:
            listen = _mapping(_mapping(value).get("listen"))
            _read_endpoints(source, _mapping(listen.get("endpoints")), f"{path}/listen/endpoints")
            source.ignored.append(Note(NoteKind.LEFT_OUT, path, _SERVER_NODES["restconf-server"]))
        elif key == f"{prefix}conveyed-information":
            _read_conveyed_information(source, _mapping(value), path)
        elif key == f"{prefix}responses":
            _read_responses(source, value, path, "onboarding-response", "redirect-response")
        elif key == f"{prefix}device-types":
            source.device_types.update(_entries(value, "device-type", "name", path))
        elif key == f"{prefix}devices":
            source.devices.extend(_entries(value, "device", "serial-number", path).values())
        else:
            node = key.partition(":")[2]
            source.ignored.append(
                Note(NoteKind.LEFT_OUT, path, _SERVER_NODES.get(node, _UNKNOWN_NODE))
            )


def _read_conveyed_information(source: _Source, container: dict[str, Any], path: str) -> None:
    source.servers.update(
        _entries(
            container.get("bootstrap-servers"),
            "bootstrap-server",
            "name",
            f"{path}/bootstrap-servers",
        )
    )
    source.images.update(
        _entries(container.get("boot-images"), "boot-image", "name", f"{path}/boot-images")
    )
    for name, item in _entries(
        container.get("scripts"), "script", "name", f"{path}/scripts"
    ).items():
        source.scripts[(str(item.data.get("type")), name)] = (item.path, item.data.get("code"))
    configurations = _entries(
        container.get("configurations"), "configuration", "name", f"{path}/configurations"
    )
    for name, item in configurations.items():
        source.configurations[name] = _Configuration(
            item.path, item.data.get("handling"), item.data.get("config-data")
        )
        if "media-type" in item.data:
            source.ignored.append(
                Note(
                    NoteKind.LEFT_OUT,
                    f"{item.path}/media-type",
                    "sztpd's text templates have no equivalent: to make the configuration a "
                    "template, rewrite it in Jinja2 and give the profile templating: jinja2 "
                    "(docs/templates.md)",
                )
            )


def _read_responses(
    source: _Source, container: Any, path: str, onboarding: str, redirect: str
) -> None:
    for list_name in _mapping(container):
        if list_name == onboarding:
            source.onboarding_responses.update(_entries(container, list_name, "name", path))
        elif list_name == redirect:
            source.redirect_responses.update(_entries(container, list_name, "name", path))
        else:
            source.other_responses.append(
                (
                    f"{path}/{list_name}",
                    "pre-made conveyed information (CMS) has no profile equivalent: give "
                    "such devices `presigned` data made by `sztpctl bootstrap-data sign`"
                    if list_name.startswith("cms-")
                    else _UNKNOWN_NODE,
                )
            )


def _read_endpoints(source: _Source, listen: dict[str, Any], path: str) -> None:
    """The device identity CAs of the endpoints that serve RFC 8572."""
    for endpoint in _entries(listen, "endpoint", "name", path).values():
        use_for = next((v for k, v in endpoint.data.items() if k.endswith("use-for")), "")
        if not str(use_for).endswith("rfc8572-interface"):
            continue
        for transport in ("https", "http-over-tls"):
            tls = _mapping(_mapping(endpoint.data.get(transport)).get("tls-server-parameters"))
            ca_certs = _mapping(_mapping(tls.get("client-authentication")).get("ca-certs"))
            where = (
                f"{endpoint.path}/{transport}/tls-server-parameters/client-authentication/ca-certs"
            )
            for reference in ("local-truststore-reference", "central-truststore-reference"):
                if isinstance(ca_certs.get(reference), str):
                    source.client_ca_bags.append((f"{where}/{reference}", ca_certs[reference]))
            for inline in ("local-definition", "inline-definition"):
                certificates = _entries(
                    ca_certs.get(inline), "certificate", "name", f"{where}/{inline}"
                )
                source.client_ca_inline.extend(certificates.values())


def _bags(truststore: Any, path: str) -> dict[str, _Item]:
    bags = _mapping(_mapping(truststore).get("certificate-bags"))
    return _entries(bags, "certificate-bag", "name", f"{path}/certificate-bags")


def _bag_certificates(bag: _Item) -> dict[str, _Item]:
    return _entries(bag.data, "certificate", "name", bag.path)


def _keys(keystore: Any, path: str) -> dict[str, _Item]:
    keys = _mapping(_mapping(keystore).get("asymmetric-keys"))
    return _entries(keys, "asymmetric-key", "name", f"{path}/asymmetric-keys")


def _entries(container: Any, list_name: str, key: str, path: str) -> dict[str, _Item]:
    """The entries of list `list_name` in `container`, by their key (entries without a key
    or repeating one, which a valid document does not have, are skipped)."""
    found: dict[str, _Item] = {}
    for entry in _list(_mapping(container).get(list_name)):
        if isinstance(entry, dict) and isinstance(entry.get(key), str):
            found.setdefault(entry[key], _Item(f"{path}/{list_name}={entry[key]}", entry))
    return found


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# ---- converting


class _Converter:
    def __init__(self, source: _Source) -> None:
        self.source = source
        # A device type's matched responses are read again for each of its devices: each
        # note once.
        self.notes: dict[Note, None] = dict.fromkeys(source.ignored)
        self.names: dict[str, set[str]] = {}
        self.trust_anchors: list[dict[str, Any]] = []
        self.owners: dict[str, dict[str, Any]] = {}  # sztpd name → fleet entry
        self.owner_keys: set[str] = set()  # keystore keys an owner uses
        self.images: dict[str, dict[str, Any] | None] = {}  # None: not carried
        self.profiles: dict[tuple[Any, ...], dict[str, Any] | None] = {}
        self.used: set[str] = set()  # paths of scripts, configurations, servers, responses used

    def fleet(self) -> dict[str, Any]:
        self._trust_anchors()
        self._owners()
        for name in self.source.images:
            self._image(name)
        devices = [device for item in self.source.devices if (device := self._device(item))]
        self._unused_responses()
        self._unused_parts()
        sections = {
            "trust_anchors": self.trust_anchors,
            "owners": list(self.owners.values()),
            "images": [image for image in self.images.values() if image is not None],
            "profiles": [profile for profile in self.profiles.values() if profile is not None],
            "devices": devices,
        }
        return {section: entries for section, entries in sections.items() if entries}

    def note(self, kind: NoteKind, path: str, reason: str) -> None:
        self.notes.setdefault(Note(kind, path, reason))

    def name(self, section: str, wanted: str, path: str) -> str:
        """A fleet name for sztpd name `wanted`, unique in `section`; a change is noted."""
        base = _NOT_IN_NAME.sub("-", wanted).lstrip("._-")[:NAME_LIMIT] or section.rstrip("s")
        taken = self.names.setdefault(section, set())
        candidate, number = base, 1
        while candidate in taken:
            number += 1
            suffix = f"-{number}"
            candidate = base[: NAME_LIMIT - len(suffix)] + suffix
        taken.add(candidate)
        if candidate != wanted:
            self.note(
                NoteKind.CHANGED,
                path,
                f"named {candidate!r} (fleet names are 1-64 letters, digits, '.', '_' or '-', "
                "unique in their section)",
            )
        return candidate

    # -- trust anchors and owners

    def _trust_anchors(self) -> None:
        """Each certificate devices may present an IDevID under: those a device type
        verifies against and those the RFC 8572 endpoint accepts."""
        wanted: dict[tuple[str, str], str] = {}  # (bag, certificate) → path that refers to it
        for item in self.source.device_types.values():
            identity = _mapping(item.data.get("identity-certificates"))
            verification = _mapping(identity.get("verification"))
            for reference in ("local-truststore-reference", "central-truststore-reference"):
                ref = _mapping(verification.get(reference))
                if isinstance(ref.get("certificate-bag"), str) and isinstance(
                    ref.get("certificate"), str
                ):
                    wanted.setdefault((ref["certificate-bag"], ref["certificate"]), item.path)
            extraction = identity.get("serial-number-extraction", "wn-x509-c2n:serial-number")
            if identity and not str(extraction).endswith(":serial-number"):
                self.note(
                    NoteKind.LEFT_OUT,
                    f"{item.path}/identity-certificates/serial-number-extraction",
                    "only the subject's serialNumber is known to this converter: give the trust "
                    "anchor a serial_pattern if the serial number is elsewhere",
                )
            for unsupported in ("ownership-authorization", "voucher-aquisition"):
                if unsupported in item.data:
                    self.note(
                        NoteKind.LEFT_OUT,
                        f"{item.path}/{unsupported}",
                        "callouts have no equivalent: devices' vouchers are given in the fleet",
                    )
        for path, bag_name in self.source.client_ca_bags:
            bag = self.source.bags.get(bag_name)
            if bag is None:
                self.note(
                    NoteKind.LEFT_OUT, path, f"refers to certificate bag {bag_name!r}, absent"
                )
                continue
            for member in _bag_certificates(bag):
                wanted.setdefault((bag_name, member), path)
        carried: set[str] = set()
        for (bag_name, certificate_name), referrer in wanted.items():
            found = self.source.bags.get(bag_name)
            certificate = _bag_certificates(found).get(certificate_name) if found else None
            if certificate is None:
                self.note(
                    NoteKind.LEFT_OUT,
                    referrer,
                    f"refers to certificate {certificate_name!r} of bag {bag_name!r}, absent",
                )
                continue
            self._trust_anchor(certificate_name, certificate)
            carried.add(certificate.path)
        for item in self.source.client_ca_inline:
            self._trust_anchor(str(item.data["name"]), item)
            carried.add(item.path)
        for bag in self.source.bags.values():
            for item in _bag_certificates(bag).values():
                if item.path not in carried:
                    self.note(
                        NoteKind.LEFT_OUT,
                        item.path,
                        "not a device identity CA (no device type or RFC 8572 endpoint uses it)",
                    )

    def _trust_anchor(self, name: str, item: _Item) -> None:
        certificates, problem = _certificates(item.data.get("cert-data"))
        if problem is None and not all(map(is_ca_certificate, certificates)):
            problem = "holds a certificate that is not a CA certificate (basicConstraints CA)"
        if problem is not None:
            self.note(NoteKind.LEFT_OUT, f"{item.path}/cert-data", problem)
            return
        self.trust_anchors.append(
            {
                "name": self.name("trust_anchors", name, item.path),
                "certificates": _pem(certificates),
            }
        )

    def _owners(self) -> None:
        for sztpd_name, item in self.source.owners.items():
            certificates, key_path = self._owner_certificates(item)
            if not certificates:
                continue
            # The signer first: sztpd keeps the chain in a CMS, in no particular order.
            chain = sorted(certificates, key=is_ca_certificate)
            problem = _signer_problem(chain[0])
            if problem is not None:
                self.note(NoteKind.LEFT_OUT, item.path, problem)
                continue
            name = self.name("owners", sztpd_name, item.path)
            self.owners[sztpd_name] = {"name": name, "certificate_chain": _pem(chain)}
            if key_path is not None:
                self.note(
                    NoteKind.LEFT_OUT,
                    key_path,
                    f"owner {name}'s private key is a secret, never written to a fleet file: "
                    "give the owner private_key: {file: ...} or {env: ...} for the server to "
                    "sign, or sign offline (`sztpctl bootstrap-data sign`)",
                )

    def _owner_certificates(self, item: _Item) -> tuple[list[x509.Certificate], str | None]:
        """The owner's certificates and the path of its private key, if it has one; nothing
        (with a note) when they cannot be read."""
        without = _mapping(item.data.get("without-pki"))
        with_pki = _mapping(item.data.get("with-pki"))
        key_path: str | None = None
        if without:
            data, data_path = without.get("cert-data"), f"{item.path}/without-pki/cert-data"
        elif isinstance(with_pki.get("local-keystore-reference"), str):
            found = self._keystore_certificate(None, with_pki["local-keystore-reference"])
            if found is None:
                self.note(
                    NoteKind.LEFT_OUT, item.path, "refers to a keystore certificate that is absent"
                )
                return [], None
            data, data_path, key_path = found
        else:
            reference = next(
                (
                    _mapping(with_pki.get(name))
                    for name in ("reference", "keystore-reference", "central-keystore-reference")
                    if name in with_pki
                ),
                None,
            )
            local = next(
                (
                    (name, _mapping(with_pki.get(name)))
                    for name in ("local-definition", "inline-definition")
                    if name in with_pki
                ),
                None,
            )
            if reference is not None:
                found = self._keystore_certificate(
                    reference.get("asymmetric-key"), reference.get("certificate")
                )
                if found is None:
                    self.note(
                        NoteKind.LEFT_OUT,
                        item.path,
                        "refers to a keystore certificate that is absent",
                    )
                    return [], None
                data, data_path, key_path = found
            elif local is not None:
                local_name, definition = local
                data, data_path = (
                    definition.get("cert-data"),
                    f"{item.path}/with-pki/{local_name}/cert-data",
                )
                if _has_private_key(definition):
                    key_path = f"{item.path}/with-pki/{local_name}"
            else:
                self.note(
                    NoteKind.LEFT_OUT, item.path, "holds no certificate this converter can read"
                )
                return [], None
        certificates, problem = _certificates(data)
        if problem is not None:
            self.note(NoteKind.LEFT_OUT, data_path, problem)
            return [], None
        return certificates, key_path

    def _keystore_certificate(
        self, key: Any, certificate: Any
    ) -> tuple[Any, str, str | None] | None:
        """(cert-data, its path, the path of the key if private) of a keystore certificate,
        by key and certificate name, or by certificate name alone (key None)."""
        for key_name, item in self.source.keys.items():
            if key is not None and key_name != key:
                continue
            found = _entries(
                item.data.get("certificates"), "certificate", "name", f"{item.path}/certificates"
            )
            if certificate in found:
                self.owner_keys.add(key_name)
                private = item.path if _has_private_key(item.data) else None
                return (
                    found[certificate].data.get("cert-data"),
                    f"{found[certificate].path}/cert-data",
                    private,
                )
        return None

    # -- images and profiles

    def _image(self, sztpd_name: str) -> str | None:
        """The fleet name of boot image `sztpd_name`, converted once; None if not carried."""
        if sztpd_name not in self.images:
            self.images[sztpd_name] = self._convert_image(self.source.images[sztpd_name])
        image = self.images[sztpd_name]
        return None if image is None else str(image["name"])

    def _convert_image(self, item: _Item) -> dict[str, Any] | None:
        data = item.data
        missing = [leaf for leaf in ("os-name", "os-version", "download-uri") if not data.get(leaf)]
        hashes = {
            entry.get("hash-algorithm"): entry.get("hash-value")
            for entry in _list(data.get("image-verification"))
            if isinstance(entry, dict)
        }
        sha256 = hashes.get(_SHA256)
        if not isinstance(sha256, str):
            missing.append("a sha-256 image-verification")
        if missing:
            self.note(
                NoteKind.LEFT_OUT,
                item.path,
                f"has no {', '.join(missing)}, which a fleet image needs: add the image by hand",
            )
            return None
        if len(hashes) > 1:
            self.note(
                NoteKind.LEFT_OUT,
                f"{item.path}/image-verification",
                "only the sha-256 hash is carried (a fleet image has that one)",
            )
        return {
            "name": self.name("images", str(data["name"]), item.path),
            "os_name": str(data["os-name"]),
            "os_version": str(data["os-version"]),
            "download_uris": list(map(str, _list(data["download-uri"]))),
            "sha256": sha256,
        }

    def _profile(self, choice: _ConveyedChoice, response: dict[str, Any], path: str) -> str | None:
        """The profile for what a matched response sends; None (noted) if none can be made."""
        if choice.kind not in ("onboarding", "redirect"):
            return None
        level = response.get("reporting-level") if choice.kind == "onboarding" else None
        owner = self._signing_owner(response, path)
        origin = (
            (choice.kind, choice.reference)
            if choice.reference is not None
            else ("local", choice.path)
        )
        key = (*origin, level, owner)
        if key not in self.profiles:
            self.profiles[key] = self._convert_profile(choice, level, owner)
        profile = self.profiles[key]
        return None if profile is None else str(profile["name"])

    def _signing_owner(self, response: dict[str, Any], path: str) -> str | None:
        """The fleet owner that signs the response, as sztpd's owner-certificate asks."""
        owner_certificate = response.get("owner-certificate")
        if not isinstance(owner_certificate, dict):
            return None
        where = f"{path}/owner-certificate"
        reference = owner_certificate.get("certificate-reference")
        if "signing-needed" not in owner_certificate:
            self.note(
                NoteKind.LEFT_OUT,
                where,
                "an owner certificate sent with data sztpd does not sign has no equivalent: the "
                "profile is served unsigned unless the device asks",
            )
            return None
        owner = self.owners.get(str(reference))
        if owner is None:
            self.note(
                NoteKind.LEFT_OUT,
                where,
                f"owner certificate {reference!r} is not carried: the profile is served "
                "unsigned unless the device asks",
            )
            return None
        return str(owner["name"])

    def _convert_profile(
        self, choice: _ConveyedChoice, level: Any, owner: str | None
    ) -> dict[str, Any] | None:
        responses = (
            self.source.onboarding_responses
            if choice.kind == "onboarding"
            else self.source.redirect_responses
        )
        information_key = f"{choice.kind}-information"
        if choice.reference is not None:
            item = responses.get(choice.reference)
            if item is None:
                self.note(
                    NoteKind.LEFT_OUT,
                    choice.path,
                    f"refers to {choice.kind} response {choice.reference!r}, absent",
                )
                return None
            self.used.add(item.path)
            base, information = choice.reference, _mapping(item.data.get(information_key))
            where = f"{item.path}/{information_key}"
        else:
            # The device and its matched response name a local definition.
            base = "-".join(step.split("=", 1)[1] for step in choice.path.split("/") if "=" in step)
            information = _mapping(_mapping(choice.local).get(information_key))
            where = f"{choice.path}/local-definition/{information_key}"
        variant = [part for part in (level if level == "verbose" else None, owner) if part]
        name = self.name("profiles", "-".join([base, *variant]), where)
        profile: dict[str, Any] = {"name": name, "type": choice.kind}
        profile["signing"] = "required" if owner else "when-requested"
        if owner:
            profile["owner"] = owner
        if choice.kind == "redirect":
            servers = self._bootstrap_servers(information, where)
            if not servers:
                self.note(NoteKind.LEFT_OUT, where, "has no bootstrap server that could be carried")
                return None
            profile["bootstrap_servers"] = servers
            return profile
        if level is not None:
            profile["reporting_level"] = level
        profile.update(self._onboarding(information, where))
        return profile

    def _onboarding(self, information: dict[str, Any], where: str) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        image = information.get("boot-image")
        if isinstance(image, str):
            if image not in self.source.images:
                self.note(
                    NoteKind.LEFT_OUT,
                    f"{where}/boot-image",
                    f"refers to boot image {image!r}, absent",
                )
            elif (name := self._image(image)) is None:
                self.note(
                    NoteKind.LEFT_OUT, f"{where}/boot-image", f"boot image {image!r} is not carried"
                )
            else:
                fields["image"] = name
        for leaf, phase in _SCRIPT_PHASES.items():
            script = information.get(leaf)
            if isinstance(script, str):
                text = self._script(phase, script, f"{where}/{leaf}")
                if text is not None:
                    fields[leaf.replace("-", "_")] = text
        configuration = information.get("configuration")
        if isinstance(configuration, str):
            found = self.source.configurations.get(configuration)
            if found is None:
                self.note(
                    NoteKind.LEFT_OUT,
                    f"{where}/configuration",
                    f"refers to configuration {configuration!r}, absent",
                )
            else:
                self.used.add(found.path)
                text, problem = _text(found.data)
                if problem is not None:
                    self.note(NoteKind.LEFT_OUT, found.path, problem)
                else:
                    fields["configuration"] = text
                    fields["configuration_handling"] = found.handling or "merge"
        return fields

    def _script(self, phase: str, name: str, where: str) -> str | None:
        found = self.source.scripts.get((phase, name))
        if found is None:
            self.note(NoteKind.LEFT_OUT, where, f"refers to {phase} script {name!r}, absent")
            return None
        path, code = found
        self.used.add(path)
        text, problem = _text(code)
        if problem is not None:
            self.note(NoteKind.LEFT_OUT, path, problem)
        return text

    def _bootstrap_servers(self, information: dict[str, Any], where: str) -> list[dict[str, Any]]:
        servers: list[dict[str, Any]] = []
        for name in _list(information.get("bootstrap-server")):
            item = self.source.servers.get(str(name))
            if item is None:
                self.note(
                    NoteKind.LEFT_OUT,
                    f"{where}/bootstrap-server",
                    f"refers to bootstrap server {name!r}, absent",
                )
                continue
            self.used.add(item.path)
            server: dict[str, Any] = {"address": str(item.data.get("address"))}
            if isinstance(item.data.get("port"), int):
                server["port"] = item.data["port"]
            if "trust-anchor" in item.data:
                certificates, problem = _certificates(item.data["trust-anchor"])
                if problem is None and not all(map(is_ca_certificate, certificates)):
                    problem = (
                        "holds a certificate that is not a CA certificate (basicConstraints CA)"
                    )
                if problem is None:
                    server["trust_anchor"] = _pem(certificates)
                else:
                    self.note(
                        NoteKind.LEFT_OUT,
                        f"{item.path}/trust-anchor",
                        f"{problem}: the redirect names the server without a trust anchor, so "
                        "devices must already trust its TLS certificate",
                    )
            servers.append(server)
        return servers

    # -- devices

    def _device(self, item: _Item) -> dict[str, Any] | None:
        serial = str(item.data["serial-number"])
        if not _SERIAL.fullmatch(serial):
            self.note(
                NoteKind.LEFT_OUT,
                item.path,
                "the serial number is not one a fleet takes (1-64 letters, digits, space and "
                "'()+,-./:=?, starting with a letter or digit)",
            )
            return None
        device: dict[str, Any] = {"serial": serial}
        device_type_name = item.data.get("device-type")
        device_type = self.source.device_types.get(str(device_type_name))
        # sztpd tries the device's own matched responses, then its device type's.
        managers = [self._matched_responses(item.data, item.path)]
        if device_type is not None:
            managers.append(self._matched_responses(device_type.data, device_type.path))
        profile, selection, variables, voucher = self._selection(managers)
        if profile is not None:
            device["profile"] = profile
        if selection:
            device["selection"] = selection
        if isinstance(device_type_name, str) and len(device_type_name) <= TEXT_LIMIT:
            device["model"] = device_type_name
        if variables:
            device["vars"] = variables
        code = item.data.get("activation-code")
        if code is not None:
            stored = self._activation_code(code, f"{item.path}/activation-code")
            if stored is not None:
                device["password_hash"] = stored
        if voucher is not None:
            checked, problem = checked_voucher(serial, voucher[1])
            if checked is None:
                self.note(NoteKind.LEFT_OUT, voucher[0], f"the voucher cannot be stored: {problem}")
            else:
                device["voucher"] = checked.text
        return device

    def _matched_responses(self, record: dict[str, Any], path: str) -> list[_Item]:
        manager = _mapping(record.get("response-manager"))
        return list(
            _entries(manager, "matched-response", "name", f"{path}/response-manager").values()
        )

    def _selection(
        self, managers: list[list[_Item]]
    ) -> tuple[str | None, list[dict[str, Any]], dict[str, str], tuple[str, Any] | None]:
        """(profile, selection rules, template variables, (path, voucher)) for the matched
        responses of response managers tried in order, as sztpd tries them."""
        rules: list[dict[str, Any]] = []
        variables: dict[str, str] = {}
        voucher: tuple[str, Any] | None = None
        tried = [
            (item, manager[index + 1 :])
            for manager in managers
            for index, item in enumerate(manager)
        ]
        for item, rest_of_manager in tried:
            response = _mapping(item.data.get("response"))
            choice = self._choice(response, f"{item.path}/response")
            target = self._profile(choice, response, f"{item.path}/response")
            voucher = voucher or self._voucher(response, f"{item.path}/response")
            for key, param in choice.template_params.items():
                if _VARIABLE.fullmatch(key):
                    variables[key] = str(param.data.get("value"))
                    self.note(
                        NoteKind.CHANGED,
                        param.path,
                        "carried as the device's vars; they reach the configuration once it is "
                        "rewritten as a Jinja2 template (vars.NAME) with templating: jinja2",
                    )
                else:
                    self.note(
                        NoteKind.LEFT_OUT,
                        param.path,
                        "not a template variable name (letters, digits and '_')",
                    )
            criteria = item.data.get("match-criteria")
            if criteria is None:  # the catch-all: nothing after it is ever tried
                for unreachable in rest_of_manager:
                    self.note(
                        NoteKind.LEFT_OUT,
                        unreachable.path,
                        "follows a catch-all, so sztpd never tries it",
                    )
                return target, rules, variables, voucher
            rule = _rule(_mapping(criteria))
            if isinstance(rule, str) or target is None:
                why = (
                    rule
                    if isinstance(rule, str)
                    else "it answers with nothing (none), which a rule cannot"
                    if choice.kind == "none"
                    else "what it sends is not carried"
                )
                self.note(NoteKind.LEFT_OUT, item.path, f"not a selection rule: {why}")
                continue
            rules.append({**rule, "profile": target})
        return None, rules, variables, voucher

    def _choice(self, response: dict[str, Any], path: str) -> _ConveyedChoice:
        """What the response sends, in either layout; anything else is noted."""
        if "none" in response:
            return _ConveyedChoice(f"{path}/none", "none")
        conveyed = _mapping(response.get("conveyed-information"))
        where = f"{path}/conveyed-information"
        for member, kind in (
            ("onboarding-information", "onboarding"),
            ("redirect-information", "redirect"),
            ("via-onboarding-response", "onboarding"),
            ("via-redirect-response", "redirect"),
        ):
            if member not in conveyed:
                continue
            chosen = _mapping(conveyed[member])
            reference = chosen.get("reference")
            params = _entries(
                chosen.get("config-template-params"),
                "config-template-param",
                "key",
                f"{where}/{member}/config-template-params",
            )
            return _ConveyedChoice(
                f"{where}/{member}",
                kind,
                reference=reference if isinstance(reference, str) else None,
                local=_mapping(chosen.get("local-definition")),
                template_params=params,
            )
        what = next(iter(conveyed), "nothing")
        reason = {
            "cms-information": "pre-made conveyed information (CMS) has no profile equivalent: "
            "give the device `presigned` data made by `sztpctl bootstrap-data sign`",
            "dynamic-callout": "callouts have no equivalent",
            "via-dynamic-callout": "callouts have no equivalent",
        }.get(what, f"sends {what}, which this converter does not know")
        self.note(NoteKind.LEFT_OUT, f"{where}/{what}", reason)
        return _ConveyedChoice(f"{where}/{what}", what)

    def _voucher(self, response: dict[str, Any], path: str) -> tuple[str, Any] | None:
        voucher = _mapping(response.get("ownership-voucher"))
        if not voucher:
            return None
        static = _mapping(voucher.get("static"))
        if "voucher" in static:
            return f"{path}/ownership-voucher/static/voucher", static["voucher"]
        self.note(
            NoteKind.LEFT_OUT,
            f"{path}/ownership-voucher",
            "a voucher fetched by a webhook has no equivalent: give the device its voucher",
        )
        return None

    def _activation_code(self, code: Any, path: str) -> str | None:
        """The stored hash of an activation code sztpd holds in clear (`$0$`), noted; None
        (noted) for a crypt hash, which sztp cannot check. Never quotes the code."""
        clear = (
            code.removeprefix("$0$") if isinstance(code, str) and code.startswith("$0$") else None
        )
        if clear is None:
            scheme = _CRYPT_HASH_ID.match(code) if isinstance(code, str) else None
            form = f"a crypt hash (${scheme[1]}$)" if scheme else "not in clear ($0$)"
            self.note(
                NoteKind.LEFT_OUT,
                path,
                f"{form}, which sztp cannot check: give the device a new code with "
                "`sztpctl device activation-code SERIAL`",
            )
            return None
        if not clear or len(clear) > MAX_PASSWORD_LENGTH:
            self.note(NoteKind.LEFT_OUT, path, "empty or too long to be a device secret")
            return None
        if ACTIVATION_CODE.fullmatch(clear):
            self.note(
                NoteKind.CHANGED,
                path,
                "given in clear ($0$): carried as password_hash, the activation code's salted "
                "SHA-256 hash",
            )
            return hash_activation_code(clear)
        self.note(
            NoteKind.CHANGED,
            path,
            "given in clear ($0$) but shorter or other than the 27+ random base64url characters "
            "of an sztp activation code: carried as password_hash, a password's scrypt hash; "
            "`sztpctl device activation-code SERIAL` makes a strong one",
        )
        return hash_password(clear)

    # -- what nothing used

    def _unused_responses(self) -> None:
        """A response no device uses still becomes a profile, for devices added later."""
        for kind, responses in (
            ("onboarding", self.source.onboarding_responses),
            ("redirect", self.source.redirect_responses),
        ):
            for name, item in responses.items():
                if item.path not in self.used:
                    self._profile(_ConveyedChoice(item.path, kind, reference=name), {}, item.path)
        for path, reason in self.source.other_responses:
            self.note(NoteKind.LEFT_OUT, path, reason)

    def _unused_parts(self) -> None:
        parts = [
            *((path, "script") for path, _code in self.source.scripts.values()),
            *((found.path, "configuration") for found in self.source.configurations.values()),
            *((item.path, "bootstrap server") for item in self.source.servers.values()),
        ]
        for path, what in parts:
            if path not in self.used:
                self.note(
                    NoteKind.LEFT_OUT,
                    path,
                    f"no response uses this {what}: a fleet holds it only inside a profile",
                )
        for name, item in self.source.keys.items():
            if name not in self.owner_keys:
                self.note(
                    NoteKind.LEFT_OUT,
                    item.path,
                    "not an owner's key: the server's own TLS key and certificate are server "
                    "settings (docs/server.md), not part of a fleet",
                )


# ---- values


def _rule(criteria: Mapping[str, Any]) -> dict[str, str] | str:
    """The selection rule of sztpd match criteria, or why there is none."""
    rule: dict[str, str] = {}
    for match in _list(criteria.get("match")):
        match = _mapping(match)
        key = match.get("key")
        field_name = _RULE_FIELDS.get(str(key))
        if field_name is None:
            return f"it tests {key!r}; a rule tests only {', '.join(_RULE_FIELDS)}"
        if "not" in match:
            return f"it negates its test of {key}, which a rule cannot"
        if "present" in match:
            rule[field_name] = "*"
        elif isinstance(match.get("value"), str):
            rule[field_name] = _glob_literal(match["value"])
        elif isinstance(match.get("regex"), str):
            glob = _regex_glob(match["regex"])
            if glob is None:
                return f"its regular expression for {key} has no glob equivalent"
            rule[field_name] = glob
        else:
            return f"its test of {key} is not present, value or regex"
    if not rule:
        return "it has no match"
    return rule


def _glob_literal(text: str) -> str:
    return "".join(f"[{char}]" if char in _GLOB_SPECIALS else char for char in text)


def _regex_glob(regex: str) -> str | None:
    """The glob matching what `re.search(regex, ...)` matches (sztpd's test), for regular
    expressions of literal text, `.`, `.*` and the anchors `^` and `$`; None for any other."""
    body = regex.removeprefix("^")
    anchored_start = body != regex
    anchored_end = body.endswith("$") and not body.endswith("\\$")
    body = body.removesuffix("$") if anchored_end else body
    glob: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body) and body[index + 1] in _REGEX_SPECIALS:
            glob.append(_glob_literal(body[index + 1]))
            index += 2
        elif body.startswith(".*", index):
            glob.append("*")
            index += 2
        elif char == ".":
            glob.append("?")
            index += 1
        elif char in _REGEX_SPECIALS:
            return None
        else:
            glob.append(_glob_literal(char))
            index += 1
    text = "".join(glob)
    # Unanchored, re.search matches anywhere: the glob takes any text around.
    if not anchored_start and not text.startswith("*"):
        text = "*" + text
    if not anchored_end and not text.endswith("*"):
        text += "*"
    return text


def _text(data: Any) -> tuple[str | None, str | None]:
    """(the UTF-8 text of sztpd binary `data` (base64), None), or (None, why not)."""
    if not isinstance(data, str):
        return None, "holds no data"
    try:
        return base64.b64decode(data, validate=True).decode("utf-8"), None
    except (binascii.Error, ValueError):
        return None, "is not base64 UTF-8 text, which a fleet's scripts and configurations are"


def _certificates(data: Any) -> tuple[list[x509.Certificate], str | None]:
    """(the X.509 certificates of sztpd `cert-data`: base64 of a certs-only CMS or of one DER
    certificate, None), or ([], why not)."""
    from cryptography import x509

    from ..protocol import cms

    try:
        der = base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError):
        return [], "is not base64"
    try:
        certificates = cms.read_certs_only(der)
    except SztpError:
        try:
            certificates = [x509.load_der_x509_certificate(der)]
        except ValueError:
            return [], "is neither a certs-only CMS nor a DER certificate"
    if not certificates:
        return [], "holds no certificate"
    return certificates, None


def _pem(certificates: list[x509.Certificate]) -> str:
    from ..protocol import pki

    return b"".join(map(pki.certificate_to_pem, certificates)).decode()


def _signer_problem(certificate: x509.Certificate) -> str | None:
    from ..protocol import certs

    try:
        certs.check_signer(certificate)
    except SztpError as exc:
        return f"the owner certificate cannot sign conveyed information: {exc}"
    return None


def _has_private_key(key: Mapping[str, Any]) -> bool:
    return any(
        name in key
        for name in ("cleartext-private-key", "hidden-private-key", "encrypted-private-key")
    )

"""The admin resources (trust anchors, owners, images, profiles, devices) and their rules.

A resource is `(kind, name, spec)`; the spec is a JSON object. `normalize_spec` checks a spec
and returns it in canonical form (defaults filled, certificates re-encoded, hashes lower-case),
so that two specs mean the same exactly when they compare equal. The server, the fleet file
and the Ansible modules all go through here, so a rule is written once.

Secrets: a device `password` is turned into `password_hash` on the way in; `password_hash` and
an owner's `private_key` are never shown (`public_view`), nor is the check value a server keeps
beside a password hash (`PASSWORD_CHECK`).

Just over 500 lines: one normaliser per kind, kept beside each other so a rule shared by kinds
is seen to be written once.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

from ..errors import SztpError, ValidationError
from ..passwords import (
    SECRET_KINDS,
    SecretKind,
    check_activation_code,
    hash_secret,
    parse_password_hash,
    verify_password,
)
from ..pkcs11_uri import canonical_pkcs11_uri, is_pkcs11_uri
from .model import (
    DEFAULT_OWNER,
    DEVICE,
    IMAGE,
    KINDS,
    MAX_VARIABLES,
    MODEL,
    NAME_PATTERN,
    OWNER,
    PROFILE,
    SECRET_FIELDS,
    SERIAL_PATTERN,
    TRUST_ANCHOR,
    VARIABLE_PATTERN,
    Entry,
    field,
)

Spec = dict[str, Any]

_NAME = re.compile(NAME_PATTERN)
_VARIABLE = re.compile(VARIABLE_PATTERN)
_SERIAL = re.compile(SERIAL_PATTERN)
_MAC = re.compile(r"[0-9a-f]{2}([:-]?[0-9a-f]{2}){5}")
_CANONICAL_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_HEX_BYTE = re.compile(r"[0-9a-f]{2}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
HIDDEN: Final = "<hidden>"


def normalize_spec(
    kind: str, name: str, spec: Mapping[str, Any], current: Mapping[str, Any] | None = None
) -> Spec:
    """Check `spec` for a resource of `kind` called `name`; return its canonical form.

    `current` is the stored spec, if any: a device password that still matches its stored hash
    keeps that hash, so re-applying the same password is not a change.
    """
    if kind not in _NORMALIZERS:
        raise ValidationError("kind", f"{kind!r} is not one of {', '.join(KINDS)}")
    path = f"{kind}[{name}]"
    if not isinstance(spec, Mapping):
        raise ValidationError(path, "must be an object")
    pattern = _SERIAL if kind == DEVICE else _NAME
    if not isinstance(name, str) or not pattern.fullmatch(name):
        raise ValidationError(path, "name must be 1-64 letters, digits, '.', '_' or '-'")
    fields = _Fields(path, spec, MODEL[kind].entry)
    normalized = _NORMALIZERS[kind](fields, current or {})
    fields.reject_unknown()
    return normalized


def references(kind: str, spec: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(field, kind, name) of every resource this spec refers to."""
    found: list[tuple[str, str, str]] = []
    if kind == PROFILE:
        if spec.get("image"):
            found.append(("image", IMAGE, spec["image"]))
        if spec.get("signing") == "required":
            found.append(("owner", OWNER, spec["owner"]))
    elif kind == DEVICE:
        if spec.get("profile"):
            found.append(("profile", PROFILE, spec["profile"]))
        for index, rule in enumerate(spec.get("selection", [])):
            found.append((f"selection[{index}].profile", PROFILE, rule["profile"]))
    return found


def public_fields(spec: Mapping[str, Any]) -> Spec:
    """A stored spec without the server's own fields: the spec as a client writes it."""
    if SERVER_ONLY_FIELDS.isdisjoint(spec):
        return dict(spec)
    return {field: value for field, value in spec.items() if field not in SERVER_ONLY_FIELDS}


def public_view(kind: str, spec: Mapping[str, Any]) -> Spec:
    """The spec as shown to admins, in diffs and in logs: secrets replaced by a marker, the
    server's own fields left out."""
    shown = public_fields(spec)
    for secret in SECRET_FIELDS.get(kind, ()):
        if shown.get(secret) is not None:
            shown[secret] = HIDDEN
    return shown


# Kept by the server beside a device's password_hash (see sztp_server.secret_key): secret, never
# shown, never accepted from a client.
PASSWORD_CHECK: Final = "password_check"  # noqa: S105 - a field name
SERVER_ONLY_FIELDS: Final = frozenset({PASSWORD_CHECK})


class _Fields:
    """Reads typed fields from one spec, naming `kind[name].field` in every error; limits,
    choices, defaults and whether a field is required come from the model's `entry`."""

    def __init__(self, path: str, spec: Mapping[str, Any], entry: Entry) -> None:
        self.path = path
        self.spec = spec
        self.entry = entry
        self.seen: set[str] = set()

    def error(self, field: str, message: str) -> ValidationError:
        return ValidationError(f"{self.path}.{field}", message)

    def get(self, field: str) -> Any:
        self.seen.add(field)
        return self.spec.get(field)

    def text(self, field: str, *, required: bool | None = None) -> str | None:
        try:
            declared_required, max_length = self.entry.text_limits[field]
        except KeyError:
            self.entry.field(field)  # raises, naming the field the model does not declare
            raise
        required = declared_required if required is None else required
        self.seen.add(field)
        value = self.spec.get(field)
        if value is None:
            if required:
                raise self.error(field, "is required")
            return None
        if not isinstance(value, str):
            raise self.error(field, f"must be a string, not {type(value).__name__}")
        if required and not value.strip():
            raise self.error(field, "must not be empty")
        if len(value) > max_length:
            raise self.error(field, f"longer than {max_length} characters")
        return value

    def required_text(self, field: str) -> str:
        value = self.text(field, required=True)
        if value is None:  # text(required=True) has raised already; this narrows the type
            raise self.error(field, "is required")
        return value

    def choice(self, field: str) -> str | None:
        """The value, one of the declared choices; the declared default when absent (a
        required choice is the caller's to insist on, with a message naming the choices)."""
        declared = self.entry.field(field)
        value = self.text(field, required=False)
        if value is None:
            return None if declared.default is None else str(declared.default)
        if value not in declared.choices:
            raise self.error(field, f"{value!r} is not one of {', '.join(declared.choices)}")
        return value

    def reference(self, field: str) -> str | None:
        value = self.text(field)
        if value is not None and not _NAME.fullmatch(value):
            raise self.error(field, f"{value!r} is not a resource name")
        return value

    def items(self, field: str) -> list[Any]:
        value = self.get(field)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(field, "must be a list")
        return value

    def variables(self, field: str) -> dict[str, Any] | None:
        """Template variables: names a template can write as `vars.NAME`, JSON values, within
        the declared size; None when there are none."""
        value = self.get(field)
        if value is None or value == {}:
            return None
        if not isinstance(value, Mapping):
            raise self.error(field, "must be a map of variable names to values")
        if len(value) > MAX_VARIABLES:
            raise self.error(field, f"more than {MAX_VARIABLES} variables")
        for name, item in value.items():
            if not isinstance(name, str) or not _VARIABLE.fullmatch(name):
                raise self.error(
                    field,
                    f"{name!r} is not a variable name (a letter or _, then letters, digits or _)",
                )
            problem = _json_value_problem(item, depth=8)
            if problem:
                raise self.error(f"{field}.{name}", problem)
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        limit = self.entry.field(field).limit
        if size > limit:
            raise self.error(field, f"takes {size} bytes as JSON, more than {limit}")
        return dict(value)

    def reject_unknown(self) -> None:
        unknown = self.spec.keys() - self.seen
        if unknown:
            raise self.error(min(unknown), "unknown field")


def _json_value_problem(value: Any, depth: int) -> str | None:
    """Why `value` is not plain JSON data (text, number, true/false, null, lists and maps
    with text keys, nested no deeper than `depth`), or None."""
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be a finite number"
    if depth <= 0:
        return "nested too deeply"
    if isinstance(value, list):
        items: Iterable[Any] = value
    elif isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            return "map keys must be text"
        items = value.values()
    else:
        return f"must be JSON data, not {type(value).__name__}"
    for item in items:
        problem = _json_value_problem(item, depth - 1)
        if problem:
            return problem
    return None


def _certificates_pem(fields: _Fields, field: str, *, ca: bool) -> str | None:
    """PEM certificates re-encoded canonically (so formatting differences are not changes)."""
    from ..protocol import pki

    text = fields.text(field)
    if text is None:
        return None
    try:
        certificates = pki.load_certificates_pem(text.encode())
    except SztpError as exc:
        raise fields.error(field, str(exc)) from None
    if ca:
        for certificate in certificates:
            if not is_ca_certificate(certificate):
                subject = certificate.subject.rfc4514_string()
                raise fields.error(field, f"{subject} is not a CA certificate")
    return b"".join(pki.certificate_to_pem(cert) for cert in certificates).decode()


def _required_certificates_pem(fields: _Fields, field: str, *, ca: bool) -> str:
    fields.required_text(field)
    pem = _certificates_pem(fields, field, ca=ca)
    if pem is None:
        raise fields.error(field, "is required")
    return pem


def is_ca_certificate(certificate: Any) -> bool:
    """Whether `certificate` says it is a CA (basicConstraints cA); False without a readable one."""
    from cryptography import x509

    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        return False


def _trust_anchor(fields: _Fields, _current: Mapping[str, Any]) -> Spec:
    pattern = fields.text("serial_pattern")
    if pattern is not None:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise fields.error("serial_pattern", f"not a regular expression: {exc}") from None
        if "serial" not in compiled.groupindex:
            raise fields.error("serial_pattern", "needs a named group (?P<serial>...)")
    return {
        "certificates": _required_certificates_pem(fields, "certificates", ca=True),
        "serial_pattern": pattern,
    }


def _owner(fields: _Fields, _current: Mapping[str, Any]) -> Spec:
    from ..protocol import certs, pki

    chain = _required_certificates_pem(fields, "certificate_chain", ca=False)
    try:
        # The first certificate signs conveyed information; devices refuse a key not for that.
        certs.check_signer(pki.load_certificates_pem(chain.encode())[0])
    except SztpError as exc:
        raise fields.error("certificate_chain", str(exc)) from None
    key_text = fields.text("private_key")
    if is_pkcs11_uri(key_text):
        # A key in a token: only its name is here, so the server checks the key against the
        # certificate when it first signs.
        try:
            key_text = canonical_pkcs11_uri(key_text)
        except ValidationError as exc:
            raise fields.error("private_key", exc.message) from None
    elif key_text is not None:
        try:
            key = pki.load_private_key_pem(key_text.encode())
            certificates = pki.load_certificates_pem(chain.encode())
            pki.Credential(certificates[0], key, tuple(certificates[1:]))
        except SztpError as exc:
            # The message names the certificate, never the key material.
            raise fields.error("private_key", str(exc)) from None
        key_text = pki.private_key_to_pem(key).decode()
    return {"certificate_chain": chain, "private_key": key_text}


def _image(fields: _Fields, _current: Mapping[str, Any]) -> Spec:
    from ..protocol import conveyed_info

    uris = fields.items("download_uris")
    if not uris:
        raise fields.error("download_uris", "needs at least one URI")
    digest = fields.required_text("sha256")
    normalized_digest = digest.replace(":", "").lower()
    if not _SHA256_HEX.fullmatch(normalized_digest):
        raise fields.error("sha256", "must be 64 hex digits (colons allowed)")
    spec: Spec = {
        "os_name": fields.text("os_name"),
        "os_version": fields.text("os_version"),
        "download_uris": uris,
        "sha256": normalized_digest,
    }
    image = conveyed_info.BootImage(
        os_name=spec["os_name"],
        os_version=spec["os_version"],
        download_uris=tuple(uris),
        sha256=bytes.fromhex(normalized_digest),
    )
    _check_conveyed(fields, conveyed_info.OnboardingInformation(boot_image=image))
    return spec


def _check_conveyed(fields: _Fields, information: Any) -> None:
    from ..protocol import conveyed_info

    try:
        conveyed_info.validate(information)
    except ValidationError as exc:
        raise ValidationError(f"{fields.path} ({exc.field})", exc.message) from None


def _profile(fields: _Fields, _current: Mapping[str, Any]) -> Spec:
    profile_type = fields.choice("type")
    if profile_type is None:
        raise fields.error("type", "is required: onboarding or redirect")
    spec: Spec = {
        "type": profile_type,
        "signing": fields.choice("signing"),
        "owner": fields.reference("owner") or DEFAULT_OWNER,
        "encoding": fields.choice("encoding"),
        "reporting_level": fields.choice("reporting_level"),
    }
    onboarding_fields = (
        "image",
        "templating",
        "vars",
        "ldevid_issuer",
        "ldevid_keys",
        "configuration",
        "configuration_handling",
        "pre_configuration_script",
        "post_configuration_script",
    )
    if profile_type == "redirect":
        for field in onboarding_fields:
            if fields.get(field) is not None:
                raise fields.error(field, "belongs to onboarding profiles, not redirect")
        spec["bootstrap_servers"] = _bootstrap_servers(fields)
        return spec
    if fields.get("bootstrap_servers") is not None:
        raise fields.error("bootstrap_servers", "belongs to redirect profiles, not onboarding")
    configuration = fields.text("configuration")
    handling = fields.choice("configuration_handling")
    if handling is not None and configuration is None:
        raise fields.error("configuration_handling", "needs a configuration")
    templating = fields.choice("templating")
    issuer = fields.text("ldevid_issuer")
    if issuer is not None and not _NAME.fullmatch(issuer):
        raise fields.error("ldevid_issuer", f"{issuer!r} is not an issuer name")
    if issuer is not None and templating != "jinja2":
        raise fields.error(
            "ldevid_issuer",
            "needs templating: jinja2 (the certificate reaches the device in its configuration, "
            "as {{ ldevid.chain }})",
        )
    spec.update(
        image=fields.reference("image"),
        templating=templating,
        vars=fields.variables("vars"),
        ldevid_issuer=issuer,
        ldevid_keys=_ldevid_keys(fields, issuer),
        configuration=configuration,
        configuration_handling=handling or ("merge" if configuration is not None else None),
        pre_configuration_script=fields.text("pre_configuration_script"),
        post_configuration_script=fields.text("post_configuration_script"),
    )
    return spec


def _ldevid_keys(fields: _Fields, issuer: str | None) -> list[str] | None:
    from ..protocol.csr import KEY_ALGORITHMS

    keys = fields.items("ldevid_keys")
    if not keys:
        return None
    if issuer is None:
        raise fields.error("ldevid_keys", "needs an ldevid_issuer")
    for key in keys:
        if key not in KEY_ALGORITHMS:
            raise fields.error("ldevid_keys", f"{key!r} is not one of {', '.join(KEY_ALGORITHMS)}")
    if len(set(keys)) != len(keys):
        raise fields.error("ldevid_keys", "names an algorithm twice")
    return list(keys)


def _bootstrap_servers(fields: _Fields) -> list[Spec]:
    from ..protocol import conveyed_info

    entries = fields.items("bootstrap_servers")
    if not entries:
        raise fields.error("bootstrap_servers", "a redirect profile needs at least one server")
    servers: list[Spec] = []
    for index, entry in enumerate(entries):
        entry_fields = _Fields(
            f"{fields.path}.bootstrap_servers[{index}]",
            entry,
            _entry_of(PROFILE, "bootstrap_servers"),
        )
        if not isinstance(entry, Mapping):
            raise entry_fields.error("address", "each server must be an object")
        port = entry_fields.get("port")
        if port is None:
            port = conveyed_info.DEFAULT_PORT
        if not isinstance(port, int) or isinstance(port, bool):
            raise entry_fields.error("port", "must be an integer")
        servers.append(
            {
                "address": entry_fields.text("address"),
                "port": port,
                "trust_anchor": _certificates_pem(entry_fields, "trust_anchor", ca=True),
            }
        )
        entry_fields.reject_unknown()
    information = conveyed_info.RedirectInformation(
        tuple(
            conveyed_info.BootstrapServer(address=server["address"], port=server["port"])
            for server in servers
        )
    )
    _check_conveyed(fields, information)
    return servers


def _device(fields: _Fields, current: Mapping[str, Any]) -> Spec:
    secret = _basic_secret(fields)
    stored_hash = fields.text("password_hash")
    if stored_hash is not None:
        try:
            parse_password_hash(stored_hash)
        except ValidationError as exc:
            raise fields.error("password_hash", exc.message) from None
    mac = fields.text("mac")
    if mac is not None:
        mac = mac.lower()
        if not _CANONICAL_MAC.fullmatch(mac):
            if not _MAC.fullmatch(mac):
                raise fields.error("mac", f"{mac!r} is not a MAC address")
            mac = ":".join(_HEX_BYTE.findall(mac))
    duid = fields.text("duid")
    if duid is not None:
        duid = duid.replace(":", "").lower()
        if not re.fullmatch(r"(?:[0-9a-f]{2}){2,130}", duid):
            raise fields.error("duid", "must be hex (colons allowed), 2-130 bytes")
    return {
        "profile": fields.reference("profile"),
        "selection": _selection(fields),
        "model": fields.text("model"),
        "site": fields.text("site"),
        "mac": mac,
        "duid": duid,
        "vars": fields.variables("vars"),
        "password_hash": _secret_hash(secret, current) if secret else stored_hash,
        "voucher": _voucher(fields),
        "presigned": _presigned(fields),
    }


def _presigned(fields: _Fields) -> str | None:
    """Bootstrapping data signed offline (`sztpctl bootstrap-data sign`), as RPC output JSON.

    Served as-is, so the owner key never has to reach the server; checked here as far as a
    server can, and stored in canonical form.
    """
    text = fields.text("presigned")
    if text is None:
        return None
    from ..protocol import bootstrapping_data, restconf

    serial = fields.path.removeprefix(f"{DEVICE}[").removesuffix("]")
    try:
        data = restconf.parse_get_bootstrapping_data_output(text.encode(), restconf.WireFormat.JSON)
        bootstrapping_data.check_presigned(data, serial_number=serial)
    except SztpError as exc:
        raise fields.error("presigned", str(exc)) from None
    return bootstrapping_data.encode_output_json(data).decode()


@dataclass(frozen=True, repr=False)
class BasicSecret:
    """A device's HTTP Basic secret as written: a password or an activation code."""

    kind: SecretKind
    text: str


def checked_secret(serial: str, spec: Mapping[str, Any]) -> BasicSecret | None:
    """The plaintext `password` or `activation_code` of device `serial`'s spec, checked as
    `normalize_spec` checks it, or None when the spec has neither; lets a server recognise
    an unchanged secret (by its check value) before any hashing."""
    if tuple(map(spec.get, _SECRET_KIND_FIELDS)) == _NO_SECRETS:  # nearly every spec of a fleet
        return None
    return _basic_secret(_Fields(f"{DEVICE}[{serial}]", spec, MODEL[DEVICE].entry))


_SECRET_KIND_FIELDS = tuple(kind.value for kind in SECRET_KINDS)
_NO_SECRETS = (None,) * len(SECRET_KINDS)


def _basic_secret(fields: _Fields) -> BasicSecret | None:
    given = [
        kind
        for kind, field in zip(SECRET_KINDS, _SECRET_KIND_FIELDS, strict=True)
        if fields.get(field) is not None
    ]
    if not given:
        return None
    kind = given[0]
    if len(given) > 1:
        raise fields.error(kind.value, "give password or activation_code, not both")
    text = fields.text(kind.value) or ""
    if text == HIDDEN:
        raise fields.error(
            kind.value, f"{HIDDEN!r} marks a kept secret; to keep the {kind.value}, leave it out"
        )
    if fields.get("password_hash") is not None:
        raise fields.error(kind.value, f"give {kind.value} or password_hash, not both")
    if not text:
        raise fields.error(kind.value, "must not be empty")
    if kind is SecretKind.ACTIVATION_CODE:
        try:
            check_activation_code(text)
        except ValidationError as exc:
            raise fields.error(kind.value, exc.message) from None
    return BasicSecret(kind, text)


def _secret_hash(secret: BasicSecret, current: Mapping[str, Any]) -> str:
    stored = current.get("password_hash")
    if isinstance(stored, str) and verify_password(secret.text, stored, secret.kind):
        return stored
    return hash_secret(secret.text, secret.kind)


class StorableVoucher(NamedTuple):
    """A device voucher a server may store: its canonical base64, and its pinned-domain-cert
    (DER), which the checks against owners read."""

    text: str
    pinned_domain_cert: bytes


def checked_voucher(serial: str, voucher: object) -> tuple[StorableVoucher | None, str | None]:
    """(the voucher, None) if `voucher` may be stored for device `serial`, else (None, the
    problem). Plain values in and out, so worker processes can run it."""
    try:
        device = _Fields(f"{DEVICE}[{serial}]", {"voucher": voucher}, MODEL[DEVICE].entry)
        return _storable_voucher(device), None
    except ValidationError as exc:
        return None, exc.message


def _voucher(fields: _Fields) -> str | None:
    storable = _storable_voucher(fields)
    return storable.text if storable is not None else None


def _storable_voucher(fields: _Fields) -> StorableVoucher | None:
    """The signed voucher; it must parse, and a bootstrap server must be able to serve it to
    this device (`check_storable`: its serial, not expired, no nonce)."""
    der = _base64_bytes(fields, "voucher")
    if der is None:
        return None
    from ..protocol.voucher import check_storable, read_voucher

    serial = fields.path.removeprefix(f"{DEVICE}[").removesuffix("]")
    try:
        content = read_voucher(der)
        check_storable(content, serial, datetime.now(UTC))
    except SztpError as exc:
        raise fields.error("voucher", str(exc)) from None
    return StorableVoucher(base64.b64encode(der).decode(), content.pinned_domain_cert)


def _selection(fields: _Fields) -> list[Spec]:
    rules: list[Spec] = []
    for index, entry in enumerate(fields.items("selection")):
        rule_fields = _Fields(
            f"{fields.path}.selection[{index}]", entry, _entry_of(DEVICE, "selection")
        )
        if not isinstance(entry, Mapping):
            raise rule_fields.error("profile", "each rule must be an object")
        rule = {
            "hw_model": rule_fields.text("hw_model"),
            "os_name": rule_fields.text("os_name"),
            "os_version": rule_fields.text("os_version"),
            "profile": rule_fields.reference("profile"),
        }
        rule_fields.reject_unknown()
        rules.append(rule)
    return rules


def _base64_bytes(fields: _Fields, field: str) -> bytes | None:
    text = fields.text(field)
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise fields.error(field, "must be base64") from None


_NORMALIZERS: dict[str, Callable[[_Fields, Mapping[str, Any]], Spec]] = {
    TRUST_ANCHOR: _trust_anchor,
    OWNER: _owner,
    IMAGE: _image,
    PROFILE: _profile,
    DEVICE: _device,
}


def _entry_of(kind: str, list_field: str) -> Entry:
    """The declared entry of one of `kind`'s lists of objects."""
    entry = field(kind, list_field).entry
    if entry is None:
        raise AssertionError(f"{kind}.{list_field} is not a list of objects")
    return entry

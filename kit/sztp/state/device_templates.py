"""Per-device configuration: a profile whose `templating` is jinja2 has its configuration and
scripts rendered for each device (`sztp.templating`'s sandbox), from that device's variables.

A state is refused when it is written if any device's template fails to render
(`check_renders`), so a device is never served an error its operator could have seen: the
server renders at serve time exactly what was rendered here, from the same specs.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..errors import ValidationError
from ..templating import BoundedTemplate, TemplateError, compile_template
from .model import DEVICE, PROFILE
from .ownership import selectable_profiles

# The profile fields that are templates when the profile's templating is jinja2, in the order
# a device runs them.
TEMPLATE_FIELDS: Final = ("pre_configuration_script", "configuration", "post_configuration_script")
# The device's own facts a template reads by name, beside `serial`, `profile` and `vars`.
DEVICE_FACTS: Final = ("model", "site", "mac", "duid")
# What a template reads of an LDevID issued to the device (RFC 9646) as `ldevid.NAME`.
LDEVID_FIELDS: Final = ("certificate", "chain", "serial_number", "subject", "not_after")


def placeholder_ldevid(serial: str) -> dict[str, str]:
    """Stands for the LDevID a device is issued when it asks: templates are rendered with it
    when they are written and shown (the real one exists only once the device sent its CSR)."""
    text = f"(the LDevID issued to {serial} when it asks)"
    pem = f"-----BEGIN CERTIFICATE-----\n{text}\n-----END CERTIFICATE-----\n"
    return {
        "certificate": pem,
        "chain": pem,
        "serial_number": text,
        "subject": f"serialNumber={serial}",
        "not_after": text,
    }


Spec = Mapping[str, Any]


def is_templated(profile: Spec) -> bool:
    return profile.get("templating") == "jinja2"


@dataclass(frozen=True)
class ProfileTemplates:
    """A templated profile's fields, compiled once."""

    profile: str
    templates: Mapping[str, BoundedTemplate]

    def render(
        self,
        serial: str,
        device: Spec,
        profile: Spec,
        ldevid: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Each template field rendered for `device` (with the LDevID issued to it, or the
        placeholder when the profile issues one and none is given); ValidationError naming the
        device, the profile, the field and the line when one does not render."""
        if ldevid is None and profile.get("ldevid_issuer"):
            ldevid = placeholder_ldevid(serial)
        variables = device_variables(serial, device, self.profile, profile, ldevid)
        rendered: dict[str, str] = {}
        for field, template in self.templates.items():
            try:
                rendered[field] = template.render(variables)
            except TemplateError as exc:
                raise ValidationError(
                    f"{DEVICE}[{serial}]",
                    f"profile {self.profile!r} {field} does not render: {exc}",
                ) from None
        if ldevid is not None and not any(
            ldevid["certificate"] in text or ldevid["chain"] in text for text in rendered.values()
        ):
            raise ValidationError(
                f"{PROFILE}[{self.profile}].configuration",
                "the profile issues LDevIDs, but no template sends the certificate: add "
                "{{ ldevid.certificate }} (or {{ ldevid.chain }}) where the device expects it",
            )
        return rendered


def compile_profile(name: str, profile: Spec) -> ProfileTemplates | None:
    """The profile's templates, or None when it is not templated; ValidationError naming the
    field and line of a template that does not compile."""
    if not is_templated(profile):
        return None
    templates: dict[str, BoundedTemplate] = {}
    for field in TEMPLATE_FIELDS:
        source = profile.get(field)
        if source is None:
            continue
        try:
            templates[field] = compile_template(source, f"<{PROFILE} {name} {field}>")
        except TemplateError as exc:
            raise ValidationError(f"{PROFILE}[{name}].{field}", str(exc)) from None
    return ProfileTemplates(name, templates)


def device_variables(
    serial: str,
    device: Spec,
    profile_name: str,
    profile: Spec,
    ldevid: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What a template of `profile` reads for `device`: its serial, the profile's name, the
    facts the device's spec has (a fact it lacks is undefined, so `default` works and a typo
    fails), `vars` (the profile's, overridden by the device's) and, when one is given, the
    LDevID issued to it."""
    variables: dict[str, Any] = {"serial": serial, "profile": profile_name}
    for fact in DEVICE_FACTS:
        value = device.get(fact)
        if value is not None:
            variables[fact] = value
    variables["vars"] = {**(profile.get("vars") or {}), **(device.get("vars") or {})}
    if ldevid is not None:
        variables["ldevid"] = dict(ldevid)
    return variables


def rendered_view(serial: str, device: Spec, profiles: Mapping[str, Spec]) -> list[dict[str, Any]]:
    """What each profile the device can select would send it, in selection order: the image,
    the configuration handling and the configuration and scripts as rendered for it (as
    written when the profile is not templated); a redirect profile's servers. Nothing in it is
    secret: a profile or device holds no secret a template can read."""
    views: list[dict[str, Any]] = []
    for name in dict.fromkeys(selectable_profiles(device)):
        profile = profiles.get(name)
        if profile is None:
            continue
        view: dict[str, Any] = {"profile": name, "type": profile["type"]}
        if profile["type"] == "redirect":
            view["bootstrap_servers"] = [
                f"{server['address']}:{server['port']}" for server in profile["bootstrap_servers"]
            ]
        else:
            templates = compile_profile(name, profile)
            rendered = templates.render(serial, device, profile) if templates is not None else {}
            view.update(
                templating=profile.get("templating") or "none",
                image=profile.get("image"),
                configuration_handling=profile.get("configuration_handling"),
            )
            for field in TEMPLATE_FIELDS:
                view[field] = rendered.get(field, profile.get(field))
        views.append(view)
    return views


def check_renders(
    state: Mapping[str, Mapping[str, Spec]],
    *,
    serials: Collection[str] | None = None,
    profiles: Collection[str] | None = None,
) -> None:
    """ValidationError for the first template that fails (see `render_failures`)."""
    for failure in render_failures(state, serials=serials, profiles=profiles):
        raise failure


def render_failures(
    state: Mapping[str, Mapping[str, Spec]],
    *,
    serials: Collection[str] | None = None,
    profiles: Collection[str] | None = None,
) -> Iterator[ValidationError]:
    """Render, for every device of `state` that can select a templated profile, each such
    profile, and yield each failure: a template that does not compile once, one that does not
    render for a device once per device. Limited to the devices `serials` names and those that
    can select one of `profiles` when either is given (what a write changed)."""
    all_profiles = state.get(PROFILE, {})
    # Only a templated profile's change can make a device fail to render.
    changed_profiles = {name for name in profiles or () if is_templated(all_profiles.get(name, {}))}
    if serials is not None and not serials and not changed_profiles:
        return
    compiled: dict[str, ProfileTemplates | None] = {}
    for serial, device in _devices_to_check(state.get(DEVICE, {}), serials, changed_profiles):
        for name in dict.fromkeys(selectable_profiles(device)):
            if name not in compiled:
                profile = all_profiles.get(name)
                try:
                    compiled[name] = compile_profile(name, profile) if profile else None
                except ValidationError as exc:
                    compiled[name] = None
                    yield exc
            templates = compiled[name]
            if templates is None:
                continue
            try:
                templates.render(serial, device, all_profiles[name])
            except ValidationError as exc:
                yield exc


def _devices_to_check(
    devices: Mapping[str, Spec], serials: Collection[str] | None, profiles: set[str]
) -> Iterable[tuple[str, Spec]]:
    if serials is None and not profiles:
        yield from devices.items()
        return
    named = set(serials or ())
    for serial in named:
        device = devices.get(serial)
        if device is not None:
            yield serial, device
    if profiles:
        for serial, device in devices.items():
            if serial not in named and not profiles.isdisjoint(selectable_profiles(device)):
                yield serial, device

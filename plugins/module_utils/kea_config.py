# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Editing a Kea DHCPv4/DHCPv6 configuration file for the SZTP redirect option, without Kea:
its JSON dialect read (comments, trailing commas), a subnet or reservation found or made, the
option-data entry set or removed. Pure functions on the parsed document; the module
`sztp.bootstrap.dhcp_redirect` does the file and command I/O around them."""

from __future__ import annotations

import copy
import ipaddress
import json
import re

DEFAULTS = {
    "v4": {
        "root": "Dhcp4",
        "subnets": "subnet4",
        "code": 143,
        "name": "v4-sztp-redirect",
        "space": "dhcp4",
        "config_file": "/etc/kea/kea-dhcp4.conf",
        "validate_command": "kea-dhcp4 -t %s",
    },
    "v6": {
        "root": "Dhcp6",
        "subnets": "subnet6",
        "code": 136,
        "name": "v6-sztp-redirect",
        "space": "dhcp6",
        "config_file": "/etc/kea/kea-dhcp6.conf",
        "validate_command": "kea-dhcp6 -t %s",
    },
}
IDENTIFIERS = (("hw_address", "hw-address"), ("client_id", "client-id"), ("duid", "duid"))
_HEX_ID = re.compile(r"[0-9a-f]{2}(?:[:\-. ]?[0-9a-f]{2})*")
_HEX_SEPARATORS = re.compile(r"[:\-. ]")


class KeaConfigError(Exception):
    """The configuration file cannot be read or does not hold the scope asked for."""


def strip_kea_syntax(text):
    """Kea's JSON dialect as plain JSON: comments blanked (line numbers kept) and trailing
    commas before a closing bracket removed. Returns (json_text, had_extras)."""
    out = []
    last_significant = -1  # index in `out` of the last non-blank character emitted
    i, length = 0, len(text)
    extras = False
    while i < length:
        char = text[i]
        if char == '"':
            end = i + 1
            while end < length and text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i : end + 1])
            last_significant = len(out) - 1
            i = end + 1
            continue
        if char == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = length if end < 0 else end
            extras = True
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise KeaConfigError("a /* comment is never closed")
            out.append("\n" * text.count("\n", i, end))
            i = end + 2
            extras = True
            continue
        if text.startswith("<?", i):
            raise KeaConfigError(
                "the file uses a <?include ?> directive, which this module does not follow; "
                "manage the included file or render the configuration as one file"
            )
        if char in "}]" and last_significant >= 0 and out[last_significant] == ",":
            out[last_significant] = ""
            extras = True
        out.append(char)
        if not char.isspace():
            last_significant = len(out) - 1
        i += 1
    return "".join(out), extras


def load_kea_config(text):
    plain, extras = strip_kea_syntax(text)
    try:
        config = json.loads(plain)
    except ValueError as exc:
        raise KeaConfigError("not valid Kea JSON: %s" % exc) from None
    if not isinstance(config, dict):
        raise KeaConfigError("the top level is not a JSON object")
    return config, extras


def normalize_hex_id(value, what):
    """An identifier as lower-case colon-separated hex; a quoted text identifier unchanged."""
    text = value.strip()
    if len(text) > 2 and text[0] == text[-1] == "'":
        return text
    lowered = text.lower()
    if lowered.startswith("0x"):
        lowered = lowered[2:]
    if not _HEX_ID.fullmatch(lowered):
        raise KeaConfigError("%s %r is not hex bytes (like 00:53:00:12:34:56)" % (what, value))
    digits = _HEX_SEPARATORS.sub("", lowered)
    return ":".join(digits[pos : pos + 2] for pos in range(0, len(digits), 2))


def same_identifier(stored, wanted, what):
    if not isinstance(stored, str):
        return False
    try:
        return normalize_hex_id(stored, what) == wanted
    except KeaConfigError:
        return False


def parse_network(value):
    try:
        return ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        return None


def find_subnet(root, family, prefix):
    """The subnet object whose prefix equals `prefix`, and where it was found."""
    wanted = parse_network(prefix)
    key = DEFAULTS[family]["subnets"]
    candidates = [(subnet, key) for subnet in root.get(key) or []]
    for network in root.get("shared-networks") or []:
        name = network.get("name", "?") if isinstance(network, dict) else "?"
        if isinstance(network, dict):
            candidates.extend(
                (subnet, "shared-networks[%s].%s" % (name, key))
                for subnet in network.get(key) or []
            )
    for subnet, where in candidates:
        if isinstance(subnet, dict) and parse_network(subnet.get("subnet")) == wanted:
            return subnet, "%s[%s]" % (where, subnet.get("subnet"))
    raise KeaConfigError(
        "no %s with prefix %s in the file: define the subnet first (the kea role renders subnets)"
        % (key, prefix)
    )


def find_reservation(container, kea_key, wanted, create):
    """The reservation in container['reservations'] with this identifier; created if asked."""
    reservations = container.get("reservations")
    if reservations is None:
        reservations = []
        if create:
            container["reservations"] = reservations
    if not isinstance(reservations, list):
        raise KeaConfigError("'reservations' is not a list")
    for reservation in reservations:
        if isinstance(reservation, dict) and same_identifier(
            reservation.get(kea_key), wanted, kea_key
        ):
            return reservation, False
    if not create:
        return None, False
    reservation = {kea_key: wanted}
    reservations.append(reservation)
    return reservation, True


def is_redirect_entry(entry, family):
    """Whether an option-data entry is the SZTP redirect option of this family."""
    if not isinstance(entry, dict):
        return False
    spec = DEFAULTS[family]
    if entry.get("space", spec["space"]) != spec["space"]:
        return False
    code = entry.get("code")
    return (
        code == spec["code"] or str(code) == str(spec["code"]) or entry.get("name") == spec["name"]
    )


def canonical_entry(entry):
    """An option-data entry compared by meaning: hex data without separators, upper case."""
    shown = dict(entry)
    data = shown.get("data")
    if isinstance(data, str) and shown.get("csv-format") is False:
        shown["data"] = re.sub(r"[\s:]", "", data).upper()
        if shown["data"].startswith("0X"):
            shown["data"] = shown["data"][2:]
    return shown


def ensure_option(scope, family, wanted_entry):
    """Make `scope`'s option-data hold exactly `wanted_entry` for the redirect option (or none
    when it is None). Returns whether anything changed."""
    option_data = scope.get("option-data")
    if option_data is None:
        option_data = []
    if not isinstance(option_data, list):
        raise KeaConfigError("'option-data' is not a list")
    matching = [i for i, entry in enumerate(option_data) if is_redirect_entry(entry, family)]
    if wanted_entry is None:
        if not matching:
            return False
        kept = [entry for i, entry in enumerate(option_data) if i not in matching]
        if kept:
            scope["option-data"] = kept
        else:
            scope.pop("option-data", None)
        return True
    if len(matching) == 1 and canonical_entry(option_data[matching[0]]) == canonical_entry(
        wanted_entry
    ):
        return False
    position = matching[0] if matching else len(option_data)
    kept = [entry for i, entry in enumerate(option_data) if i not in matching]
    kept.insert(min(position, len(kept)), dict(wanted_entry))
    scope["option-data"] = kept
    return True


def apply_redirect(config, params):
    """Change `config` in place; returns (changed, scope_name, before_scope, after_scope)."""
    family = params["family"]
    spec = DEFAULTS[family]
    root = config.get(spec["root"])
    if not isinstance(root, dict):
        raise KeaConfigError(
            "the file has no %s object: is it the DHCP%s configuration?" % (spec["root"], family)
        )
    present = params["state"] == "present"
    identifier = next(
        ((option, kea_key) for option, kea_key in IDENTIFIERS if params.get(option)), None
    )
    if params.get("subnet"):
        container, scope_name = find_subnet(root, family, params["subnet"])
    else:
        container, scope_name = root, spec["root"]
    created = False
    if identifier is None:
        scope = container
    else:
        option, kea_key = identifier
        wanted_id = normalize_hex_id(params[option], option)
        scope, created = find_reservation(container, kea_key, wanted_id, create=present)
        scope_name = "%s.reservations[%s=%s]" % (scope_name, kea_key, wanted_id)
        if scope is None:
            return False, scope_name, None, None
    before = None if created else copy.deepcopy(scope)
    changed = ensure_option(scope, family, params["option_data"] if present else None)
    return changed, scope_name, before, scope


def dump_config(config):
    return json.dumps(config, indent=4) + "\n"


def scope_text(scope):
    return "" if scope is None else json.dumps(scope, indent=4, sort_keys=True) + "\n"

# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""A device's options, shared by the `device` module and each entry of the `devices` module."""

from __future__ import annotations

import base64

# The options of a device but its serial number, its selection rules (`device` checks their
# suboptions) and its password and activation code, which each module declares no_log itself.
DEVICE_OPTIONS = dict(
    profile=dict(type="str"),
    model=dict(type="str"),
    site=dict(type="str"),
    mac=dict(type="str"),
    duid=dict(type="str"),
    vars=dict(type="dict"),
    voucher=dict(type="str"),
    voucher_src=dict(type="path"),
    presigned=dict(type="str"),
)
# The fields of a device's spec, as the modules send them (the password or activation code,
# not its hash).
DEVICE_FIELDS = (
    "profile",
    "selection",
    "model",
    "site",
    "mac",
    "duid",
    "vars",
    "password",
    "activation_code",
    "voucher",
    "presigned",
)
# The secrets a module sends, each stored by the server as the device's password_hash.
WRITE_ONLY = {"password": "password_hash", "activation_code": "password_hash"}


def read_voucher_src(module, path, where=""):
    """Base64 of a voucher file on the host the module runs on; `where` prefixes errors."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        module.fail_json(msg="%scannot read voucher_src %s: %s" % (where, path, exc.strerror))
    if not data:
        module.fail_json(msg="%svoucher_src %s is empty" % (where, path))
    return base64.b64encode(data).decode("ascii")


def device_fields(module, options, where=""):
    """The spec fields of a device's `options`, the voucher read from `voucher_src` if given."""
    fields = dict((field, options[field]) for field in DEVICE_FIELDS)
    if options["voucher_src"]:
        fields["voucher"] = read_voucher_src(module, options["voucher_src"], where)
    return fields

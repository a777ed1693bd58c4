# Copyright: sztp developers
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Glue between AnsibleModule and the sztp kit.

Every module of the collection builds its AnsibleModule with `new_module`, gets a client with
`client_for` and does its one piece of work in `ensure_resource` (single resources),
`ensure_devices` (bulk), `ensure_fleet` (a whole fleet file) or directly with the client, turning kit errors into one clear
`fail_json` message with `run`. Secrets never reach results, diffs or messages: the server's
public views replace them with "<hidden>", and sending "<hidden>" back keeps the stored one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import traceback
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.sztp.bootstrap.plugins.module_utils.kit import kit_problem

try:
    from sztp.client import ResourceChange, SztpClient
    from sztp.config import read_token_file
    from sztp.errors import (
        ApiConflictError,
        ApiValidationError,
        NotFoundApiError,
        SztpError,
    )
    from sztp.state.fleet import FleetError, load_fleet
    from sztp.state.model import SECRET_FIELDS
    from sztp.state.resources import HIDDEN
    from sztp.waiting import WaitOutcome, wait_for_status
except ImportError:
    SZTPCTL_IMPORT_ERROR = traceback.format_exc()
    HIDDEN = "<hidden>"
    SECRET_FIELDS = {}
else:
    SZTPCTL_IMPORT_ERROR = None


CONNECTION_ARGUMENT_SPEC = dict(
    server=dict(type="str", fallback=(env_fallback, ["SZTP_SERVER"])),
    token=dict(type="str", no_log=True, fallback=(env_fallback, ["SZTP_TOKEN"])),
    token_file=dict(type="path", no_log=False, fallback=(env_fallback, ["SZTP_TOKEN_FILE"])),
    ca_bundle=dict(type="path", fallback=(env_fallback, ["SZTP_CA_BUNDLE"])),
    validate_certs=dict(type="bool", default=True),
    timeout=dict(type="float", default=30.0),
)

# Lines of the summarised diff of a bulk apply before "... and N more".
MAX_DIFF_LINES = 200
# Characters of text shown as it is in a summarised diff (twice that for JSON values): a
# voucher or a certificate is kilobytes that would bury the fields around it.
MAX_DIFF_VALUE = 60

# The whole message of the server's 422 when a field names a resource it does not have
# (sztp.state.plan.check_references): `refers to unknown profile 'day0'`.
UNKNOWN_REFERENCE = re.compile(r"refers to unknown (?P<kind>[a-z-]+) (?P<name>'.*'|\".*\")")

# The statuses a device can be in (sztp.device_status, which the sztp.bootstrap.wait doc
# fragment repeats too).
DEVICE_STATUSES = ("not-seen", "in-progress", "rebooting", "complete", "failed", "stalled")
# The options of a module that can wait for its devices (doc fragment sztp.bootstrap.wait).
WAIT_ARGUMENT_SPEC = dict(
    wait=dict(type="bool", default=False),
    wait_for=dict(type="list", elements="str", choices=list(DEVICE_STATUSES), default=["complete"]),
    wait_timeout=dict(type="float", default=600.0),
)


def new_module(argument_spec, **kwargs):
    """An AnsibleModule with the connection options added; fails if the kit is missing."""
    spec = dict(CONNECTION_ARGUMENT_SPEC)
    spec.update(argument_spec)
    kwargs.setdefault("supports_check_mode", True)
    module = AnsibleModule(argument_spec=spec, **kwargs)
    problem = kit_problem()
    if problem is not None:
        module.fail_json(msg=problem, exception=SZTPCTL_IMPORT_ERROR)
    return module


def client_for(module):
    """The API client the connection options ask for.

    `token` (or SZTP_TOKEN) wins over `token_file` (or SZTP_TOKEN_FILE).
    """
    params = module.params
    server = params.get("server")
    if not server:
        module.fail_json(msg="no server: set the server option or SZTP_SERVER")
    token = (params.get("token") or "").strip() or None
    if token is None and params.get("token_file"):
        try:
            token = read_token_file(Path(params["token_file"]))
        except SztpError as exc:
            module.fail_json(msg=str(exc))
    if params.get("timeout") is not None and params["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds")
    ca_bundle = params.get("ca_bundle")
    if ca_bundle and not os.path.isfile(ca_bundle):
        module.fail_json(msg="ca_bundle %s is not a readable file" % ca_bundle)
    try:
        return SztpClient(
            server,
            token,
            ca_bundle=ca_bundle or None,
            verify=params.get("validate_certs", True),
            timeout=params.get("timeout") or 30.0,
        )
    except SztpError as exc:
        module.fail_json(msg=str(exc))


def fail_on_error(module, exc, doing):
    """`fail_json` with one line for a kit error: what we were doing, then why."""
    extra = {}
    for attribute in ("status", "code", "field"):
        value = getattr(exc, attribute, None)
        if value is not None:
            extra[attribute] = value
    module.fail_json(msg="%s: %s" % (doing, exc), **extra)


def run(module, doing, function, *args, **kwargs):
    """`function(*args, **kwargs)`, with a kit error turned into `fail_on_error`."""
    try:
        return function(*args, **kwargs)
    except SztpError as exc:
        fail_on_error(module, exc, doing)


def wait_for_devices(module, client, done, serials=(), selector=None):
    """Wait as the module's `wait_for` and `wait_timeout` say for the devices named by
    `serials`, or else those `selector` (profile, model, site; empty: all) chooses; their
    statuses (serial -> status) once each is there. A device that fails meanwhile or time
    running out fails the task with the result `done` so far and every device's status."""
    params = module.params
    if params["wait_timeout"] < 0:
        module.fail_json(msg="wait_timeout must be 0 or more seconds", **done)
    try:
        result = wait_for_status(
            client,
            params["wait_for"],
            serials=serials,
            selector=selector,
            timeout=params["wait_timeout"],
        )
    except SztpError as exc:
        module.fail_json(msg="cannot wait for the devices: %s" % exc, **done)
    if result.outcome is not WaitOutcome.REACHED:
        module.fail_json(msg=result.describe(), statuses=result.statuses, **done)
    return result.statuses


# ---- desired specs


def merge_spec(current, fields, write_only=None, reset=False):
    """The desired spec: the stored one (public view) with the given fields laid over it.

    A field left out (None) keeps the stored value; an empty string clears it. `write_only`
    maps an input field to the stored secret it replaces (`password` -> `password_hash`):
    the stored secret stays "<hidden>" (kept by the server) unless the input is given.
    `reset` starts from nothing instead of the stored spec.
    """
    write_only = write_only or {}
    desired = {} if current is None or reset else dict(current)
    for key, value in fields.items():
        if value is None:
            continue
        if key in write_only:
            stored = write_only[key]
            desired.pop(stored, None)
            if value == "":
                desired[stored] = None
            else:
                desired[key] = value
        elif value == "":
            desired[key] = None
        else:
            desired[key] = value
    return desired


def _kind_label(kind):
    return kind.replace("-", " ")


def _resource_view(name, spec):
    return None if spec is None else {"name": name, "spec": spec}


def _diff(kind, name, before, after):
    header = "%s %s" % (_kind_label(kind), name)
    return {
        "before": before if before is not None else {},
        "after": after if after is not None else {},
        "before_header": header,
        "after_header": header,
    }


def get_current(module, client, kind, name):
    """The stored spec (public view, secrets "<hidden>"), or None if there is none."""
    try:
        return client.get(kind, name)["spec"]
    except NotFoundApiError:
        return None
    except SztpError as exc:
        fail_on_error(module, exc, "cannot read %s %r" % (_kind_label(kind), name))


# The `state` option of every module that manages one resource (doc fragment sztp.bootstrap.state).
STATE_ARGUMENT_SPEC = dict(type="str", default="present", choices=["present", "absent"])


# The option that names the resource, unless a module declares its own (device: `serial`).
KEY_ARGUMENT_SPEC = dict(type="str", required=True)


def run_resource_module(
    kind, argument_spec, key="name", spec_fields=None, module_options=None, waits=False, **ensure
):
    """The whole of a single-resource module's main(): options, then `ensure_resource`.

    `argument_spec` holds the module's options but `state`; the `key` option names the
    resource and is a required string unless `argument_spec` declares it. The spec fields are
    every other option, unless `spec_fields(module)` derives them (a file to read, a hash to
    compute). `module_options` go to AnsibleModule, `ensure` to `ensure_resource`. The result
    holds the resource under the kind's name (`trust_anchor` for trust-anchor). A module that
    `waits` (a device) has the wait options, and the result its status when it waited.
    """
    spec = dict(argument_spec, state=STATE_ARGUMENT_SPEC)
    if waits:
        spec.update(WAIT_ARGUMENT_SPEC)
    spec.setdefault(key, dict(KEY_ARGUMENT_SPEC))
    module = new_module(spec, **(module_options or {}))
    params = module.params
    if waits and params["wait"] and params["state"] == "absent":
        module.fail_json(msg="wait needs state=present: an absent %s has no status" % kind)
    if spec_fields is None:
        fields = dict((name, params[name]) for name in argument_spec if name != key)
    else:
        fields = spec_fields(module)
    client = client_for(module)
    result = ensure_resource(
        module, client, kind, params[key], fields, state=params["state"], **ensure
    )
    result[kind.replace("-", "_")] = result.pop("resource")
    if waits and params["wait"] and not module.check_mode:
        result["statuses"] = wait_for_devices(module, client, result, serials=[params[key]])
    module.exit_json(**result)


def ensure_resource(
    module,
    client,
    kind,
    name,
    fields,
    state="present",
    write_only=None,
    reset_on=(),
    must_exist=False,
):
    """Make one resource present (as `fields` say) or absent; the module's result.

    present: the desired spec goes to the bulk endpoint scoped to this one resource (no
    prune), as a dry run in check mode; the server's plan decides `changed` and gives the
    diff, so normalisation differences are never changes.
    absent: GET decides; outside check mode the single-resource DELETE removes it (the bulk
    endpoint could only delete it by pruning every resource of the kind not listed).
    """
    label = "%s %r" % (_kind_label(kind), name)
    current = get_current(module, client, kind, name)

    if state == "absent":
        if current is None:
            return dict(changed=False, diff=_diff(kind, name, None, None), resource=None)
        if not module.check_mode:
            try:
                client.delete(kind, name)
            except NotFoundApiError:
                # Deleted by someone else since the GET: the goal is reached all the same.
                return dict(changed=False, diff=_diff(kind, name, None, None), resource=None)
            except SztpError as exc:
                fail_on_error(module, exc, "cannot delete %s" % label)
        return dict(changed=True, diff=_diff(kind, name, current, None), resource=None)

    if current is None and must_exist:
        module.fail_json(msg="no %s on the server; create it first" % label)
    reset = current is not None and any(
        fields.get(key) is not None and fields.get(key) != current.get(key) for key in reset_on
    )
    desired = merge_spec(current, fields, write_only=write_only, reset=reset)
    try:
        result = client.apply_state(
            {kind: {name: desired}}, kinds=[kind], prune=False, dry_run=module.check_mode
        )
    except ApiValidationError as exc:
        if not assume_referred_resource_exists(module, exc):
            fail_on_error(module, exc, "cannot apply %s" % label)
        as_given = _hide_write_only(desired, write_only)
        return dict(
            changed=True,
            diff=_diff(kind, name, current, as_given),
            resource=_resource_view(name, as_given),
        )
    except SztpError as exc:
        fail_on_error(module, exc, "cannot apply %s" % label)

    changes = [c for c in result.changes if c.kind == kind and c.name == name]
    if not changes:
        return dict(
            changed=False,
            diff=_diff(kind, name, current, current),
            resource=_resource_view(name, current),
        )
    change = changes[0]
    return dict(
        changed=True,
        diff=_diff(kind, name, change.before, change.after),
        resource=_resource_view(name, change.after),
    )


def assume_referred_resource_exists(module, exc):
    """In check mode, whether the server's refusal `exc` is only a reference to a resource it
    does not have (then with a warning naming it); False for any other refusal, and always
    outside check mode.

    A play's earlier task may create that resource, but check mode ran it as a dry run, so
    the server cannot know it yet: failing here would make check mode unusable on a fresh
    server. The server checks references after every field, so nothing else it checks first
    is wrong; it stops at the first unknown reference and skips the checks that come after
    (voucher owners, rendering), which only a real run makes.
    """
    if not module.check_mode or exc.status != 422:
        return False
    match = UNKNOWN_REFERENCE.fullmatch(exc.message or "")
    if match is None:
        return False
    module.warn(
        "%s: %s %s does not exist on the server; assuming an earlier task of this run "
        "creates it (check mode could not plan this change on the server: the diff shows the "
        "values as given) - a real run fails if it does not exist by then"
        % (exc.field or "a reference", _kind_label(match.group("kind")), match.group("name"))
    )
    return True


def _hide_write_only(desired, write_only):
    shown = dict(desired)
    for key, stored in (write_only or {}).items():
        if key in shown:
            shown.pop(key)
            shown[stored] = HIDDEN
    return shown


# ---- bulk devices


def ensure_devices(module, client, devices, prune=False, write_only=None, kind="device"):
    """Apply a list of device specs (`devices`: name -> fields) in one bulk request.

    Each listed device is merged with its stored spec as `merge_spec` does; with `prune`,
    devices not listed are deleted. The plan comes from the server (a dry run in check
    mode) and applies only if the state is still at the revision read (If-Match).
    """
    revision, resources = run(module, "cannot read the server's state", client.get_state)
    stored = resources.get(kind, {})
    desired = dict(
        (name, merge_spec(stored.get(name), fields, write_only=write_only))
        for name, fields in devices.items()
    )
    doing = "cannot apply %d %s(s)" % (len(desired), _kind_label(kind))
    try:
        result = client.apply_state(
            {kind: desired},
            kinds=[kind],
            prune=prune,
            dry_run=module.check_mode,
            if_match=revision,
        )
    except ApiValidationError as exc:
        if not assume_referred_resource_exists(module, exc):
            fail_on_error(module, exc, doing)
        changes = _changes_as_given(kind, stored, desired, write_only, prune)
    except ApiConflictError as exc:
        if exc.status == 412:
            doing += " (the server's state changed since it was read; run again)"
        fail_on_error(module, exc, doing)
    except SztpError as exc:
        fail_on_error(module, exc, doing)
    else:
        revision = result.revision
        changes = [change for change in result.changes if change.kind == kind]
    created, updated, deleted = [], [], []
    lines = []
    for change in changes:
        dict(create=created, update=updated, delete=deleted)[change.action].append(change.name)
        lines.extend(_change_lines(change))
    unchanged = len(desired) - len(created) - len(updated)
    summary = "%d to create, %d to update, %d to delete, %d unchanged" % (
        len(created),
        len(updated),
        len(deleted),
        unchanged,
    )
    prepared = _prepared_diff(summary, lines)
    return dict(
        changed=bool(created or updated or deleted),
        revision=revision,
        created=created,
        updated=updated,
        deleted=deleted,
        unchanged=unchanged,
        summary=summary,
        diff=dict(prepared=prepared),
    )


def _changes_as_given(kind, stored, desired, write_only, prune):
    """The changes `desired` (name -> merged spec) makes to `stored` (public views), compared
    here as given, for when the server could not plan them: its canonical forms (a MAC's
    case) may make an update of a field it would find unchanged, and a secret given counts
    as a change."""
    changes = []
    for name, spec in desired.items():
        after = _hide_write_only(spec, write_only)
        before = stored.get(name)
        if before is None:
            changes.append(ResourceChange("create", kind, name, None, after))
            continue
        given_secret = any(spec.get(field) is not None for field in write_only or {})
        if given_secret or _changed_fields(before, after):
            changes.append(ResourceChange("update", kind, name, before, after))
    if prune:
        for name in sorted(set(stored) - set(desired)):
            changes.append(ResourceChange("delete", kind, name, stored[name], None))
    return changes


def _change_lines(change):
    """`+ device SN-1`, `- image i`, or `~ profile p` then one line per changed field with its
    values before and after; a secret only as changed (the server shows it as "<hidden>", and
    an update that changes only a secret has no visible difference at all)."""
    label = "%s %s" % (_kind_label(change.kind), change.name)
    if change.action != "update":
        return ["%s %s" % ("+" if change.action == "create" else "-", label)]
    before = change.before or {}
    after = change.after or {}
    lines = ["~ %s" % label]
    for field in _changed_fields(before, after):
        if field in SECRET_FIELDS.get(change.kind, ()) or HIDDEN in (
            before.get(field),
            after.get(field),
        ):
            lines.append("    %s: a secret changed" % field)
        else:
            lines.append(
                "    %s: %s → %s"
                % (field, _shown_value(before.get(field)), _shown_value(after.get(field)))
            )
    if len(lines) == 1:
        lines.append("    a secret changed")
    return lines


def _shown_value(value):
    """A value on one line, as `sztpctl diff` shows it: long or multi-line text (a voucher, a
    certificate) by its size and a hash prefix, enough to tell two apart."""
    if value is None:
        return "(none)"
    if isinstance(value, str) and ("\n" in value or len(value) > MAX_DIFF_VALUE):
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:12]
        lines = value.count("\n") + 1
        size = "%d lines" % lines if lines > 1 else "%d chars" % len(value)
        return "<text, %s, sha256 %s…>" % (size, digest)
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) > 2 * MAX_DIFF_VALUE:
        return text[: 2 * MAX_DIFF_VALUE] + "…"
    return text


def _prepared_diff(summary, lines):
    if len(lines) > MAX_DIFF_LINES:
        more = len(lines) - MAX_DIFF_LINES
        lines = lines[:MAX_DIFF_LINES] + ["... and %d more" % more]
    return "\n".join([summary] + lines) + "\n"


def _changed_fields(before, after):
    before = before or {}
    after = after or {}
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))


# ---- a whole fleet file


def ensure_fleet(module, client, path, prune=False, if_revision=None):
    """Apply the fleet file at `path` as `sztpctl apply -f` does: loaded by the kit's loader
    (`{file:}` and `{env:}` resolved where the module runs), then one bulk request that the
    server plans and commits atomically (a dry run in check mode). With `if_revision`, the
    server applies only if its state is still at that revision.

    Loader errors and the server's validation errors become one message naming the file, the
    line and the field. The result lists the changes by kind and name, the diff an update's
    values before and after (secrets never appear: the server hides them, and the diff shows
    a changed secret without its value).
    """
    try:
        fleet = load_fleet(Path(path))
    except FleetError as exc:
        module.fail_json(msg=str(exc))
    count = sum(len(specs) for specs in fleet.resources.values())
    doing = "cannot apply %s (%d resources)" % (path, count)
    try:
        result = client.apply_state(
            fleet.resources,
            prune=prune,
            dry_run=module.check_mode,
            if_match=if_revision,
            summary=True,
        )
    except ApiValidationError as exc:
        where = fleet.locate(exc.field)
        if where is None:
            fail_on_error(module, exc, doing)
        # As `sztpctl apply` says it: fleet.yaml:35: profiles[0].image: refers to unknown ...
        module.fail_json(msg="%s: %s" % (where, exc.message), field=exc.field)
    except ApiConflictError as exc:
        if exc.status == 412:
            doing += " (if_revision=%s: the server's state changed since)" % if_revision
        fail_on_error(module, exc, doing)
    except SztpError as exc:
        fail_on_error(module, exc, doing)

    counts = dict(create=0, update=0, delete=0)
    changes = []
    lines = []
    for change in result.changes:
        counts[change.action] = counts.get(change.action, 0) + 1
        entry = dict(action=change.action, kind=change.kind, name=change.name)
        if change.action == "update":
            entry["fields"] = _changed_fields(change.before, change.after)
        lines.extend(_change_lines(change))
        changes.append(entry)
    summary = "%d to create, %d to update, %d to delete, %d listed" % (
        counts["create"],
        counts["update"],
        counts["delete"],
        count,
    )
    prepared = _prepared_diff(summary, lines)
    return dict(
        changed=bool(changes),
        revision=result.revision,
        changes=changes,
        counts=counts,
        summary=summary,
        kinds=list(fleet.resources),
        diff=dict(prepared=prepared),
    )

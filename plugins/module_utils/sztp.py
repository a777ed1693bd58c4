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

import os
import traceback
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible_collections.sztp.bootstrap.plugins.module_utils.kit import kit_problem

try:
    from sztp.client import SztpClient
    from sztp.config import read_token_file
    from sztp.errors import (
        ApiConflictError,
        ApiValidationError,
        NotFoundApiError,
        SztpError,
    )
    from sztp.state.fleet import FleetError, load_fleet
    from sztp.state.resources import HIDDEN
    from sztp.waiting import WaitOutcome, wait_for_status
except ImportError:
    SZTPCTL_IMPORT_ERROR = traceback.format_exc()
    HIDDEN = "<hidden>"
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
        if module.check_mode and "refers to unknown" in str(exc):
            # What it refers to may come from an earlier task that check mode did not run.
            module.warn(
                "check mode cannot fully validate %s: %s; it may be created by an earlier "
                "task" % (label, exc)
            )
            return dict(
                changed=True,
                diff=_diff(kind, name, current, _hide_write_only(desired, write_only)),
                resource=_resource_view(name, current),
            )
        fail_on_error(module, exc, "cannot apply %s" % label)
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
    except ApiConflictError as exc:
        if exc.status == 412:
            doing += " (the server's state changed since it was read; run again)"
        fail_on_error(module, exc, doing)
    except SztpError as exc:
        fail_on_error(module, exc, doing)
    created, updated, deleted = [], [], []
    lines = []
    for change in result.changes:
        if change.kind != kind:
            continue
        dict(create=created, update=updated, delete=deleted)[change.action].append(change.name)
        lines.append(_change_line(change))
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
        revision=result.revision,
        created=created,
        updated=updated,
        deleted=deleted,
        unchanged=unchanged,
        summary=summary,
        diff=dict(prepared=prepared),
    )


def _change_line(change):
    """`+ device SN-1`, `~ profile p (image)`, `- image i`: names of changed fields, no values
    (an update that changes only a secret says so, since secrets are compared by the server)."""
    label = "%s %s" % (_kind_label(change.kind), change.name)
    if change.action == "update":
        fields = _changed_fields(change.before, change.after)
        return "~ %s (%s)" % (label, ", ".join(fields) or "a secret")
    return "%s %s" % ("+" if change.action == "create" else "-", label)


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
    line and the field. The result lists the changes by kind and name (secrets never appear:
    the server hides them and the summary plan carries only the names of changed fields).
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
        lines.append(_change_line(change))
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

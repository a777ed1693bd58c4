"""`sztpctl device`: devices known to the server and their bootstrap progress.

`status` is the summary (derived status, attempts, last report); `history` is the timeline of
progress reports, attempt by attempt. `import` turns a CSV file into one bulk apply.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sztp.device_status import STATUSES
from sztp.revocation import DEFAULT_REVOCATION_REASON, REVOCATION_REASONS

from .remote import (
    OutputFormat,
    OutputOption,
    connect,
    console,
    emit,
    working,
)
from .resource import (
    VARIABLE_FLAG,
    Column,
    Filter,
    Flag,
    Noun,
    ReplaceOption,
    SpecFileOption,
    YesOption,
    add_resource,
    command_group,
    confirm,
    field_column,
    one_of,
    present,
    read_text,
    variables,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from sztp.client import SztpClient

SerialArgument = Annotated[str, typer.Argument(help="The device's serial number.")]
# CSV columns of `device import`: spec fields, and voucher_file (a path, relative to the CSV).
CSV_COLUMNS = ("serial", "profile", "model", "site", "mac", "duid", "voucher_file")


def _profile_column(item: Mapping[str, Any]) -> str:
    spec = item["spec"]
    return spec.get("profile") or ("(selection)" if spec.get("selection") else "-")


DEVICE = Noun(
    kind="device",
    key="serial",
    columns=(
        Column("STATUS", lambda item: item["status"]),
        Column("PROFILE", _profile_column),
        field_column("device", "model"),
        field_column("device", "site"),
        field_column("device", "mac", wide=True),
        field_column("device", "duid", wide=True),
        Column("SELECTION", lambda item: str(len(item["spec"].get("selection") or [])), wide=True),
        Column("VOUCHER", present("voucher")),
        Column("PASSWORD", present("password_hash")),
    ),
    filters=(
        Filter(
            "status",
            f"Only devices in this status: {', '.join(STATUSES)}.",
            choices=STATUSES,
            server_side=True,
        ),
        Filter("profile", "Only devices with this profile.", server_side=True),
        Filter("model", "Only devices of this model.", server_side=True),
        Filter("site", "Only devices installed at this site.", server_side=True),
    ),
    with_status=True,
    flags={
        "var": VARIABLE_FLAG,
        "voucher": Flag("voucher", "Ownership voucher file (DER CMS) for this device."),
        "password_file": Flag(
            "password", "File whose first line is the HTTP Basic password (stored hashed)."
        ),
        "activation_code_file": Flag(
            "activation_code",
            "File whose first line is the device's activation code (made by a machine, e.g. "
            "`sztpctl device activation-code`; stored hashed).",
        ),
    },
)
app = command_group(DEVICE, "Devices and their bootstrap progress.")


@app.command("add")
def add(
    serial: Annotated[
        str | None, typer.Argument(help="The device's serial number (or from -f FILE).")
    ] = None,
    profile: Annotated[str | None, DEVICE.option("profile")] = None,
    model: Annotated[str | None, DEVICE.option("model")] = None,
    site: Annotated[str | None, DEVICE.option("site")] = None,
    mac: Annotated[str | None, DEVICE.option("mac")] = None,
    duid: Annotated[str | None, DEVICE.option("duid")] = None,
    var: Annotated[list[str] | None, DEVICE.option("var", "--var")] = None,
    voucher: Annotated[Path | None, DEVICE.option("voucher")] = None,
    password_file: Annotated[Path | None, DEVICE.option("password_file")] = None,
    activation_code_file: Annotated[Path | None, DEVICE.option("activation_code_file")] = None,
    filename: SpecFileOption = None,
    replace: ReplaceOption = False,
) -> None:
    """Add a device.

    Example:

        sztpctl device add SN-0001 --profile dpu-day0 --site fra1 --voucher SN-0001.vcj
        --var hostname=dpu-0001
    """
    import base64

    from .output import read_bytes

    flags = {
        "profile": profile,
        "model": model,
        "site": site,
        "mac": mac,
        "duid": duid,
        "vars": variables(var),
        "voucher": base64.b64encode(read_bytes(voucher)).decode() if voucher else None,
        "password": _first_line(password_file, "the password"),
        "activation_code": _first_line(activation_code_file, "the activation code"),
    }
    add_resource(DEVICE, serial, flags, filename, replace)


def _first_line(path: Path | None, what: str) -> str | None:
    """The first line of a secret's file (None without a file); an empty one is an error."""
    from sztp.errors import SztpError

    if path is None:
        return None
    line = next(iter((read_text(path) or "").splitlines()), "")
    if not line:
        raise SztpError(f"{path}: the first line ({what}) is empty")
    return line


@app.command("activation-code")
def activation_code(
    serials: Annotated[
        list[str], typer.Argument(help="Serial numbers of devices the server knows.")
    ],
    output_file: Annotated[
        Path | None,
        typer.Option(
            "--output-file",
            metavar="<path>",
            help="Write the codes as CSV (serial,activation_code) to this new file, mode 0600, "
            "instead of showing them.",
        ),
    ] = None,
) -> None:
    """Give devices new activation codes (160 random bits each) and show them once.

    An activation code is a device's HTTP Basic secret when a machine, not a person, made it:
    the server checks it in microseconds where a password costs a deliberately slow hash. The
    server keeps only a hash, so the codes are shown (or written) here and nowhere else. A
    device's previous password or code stops working when this lands; the devices change in
    one write, and only if nothing else changed the state meanwhile.

    Example:

        sztpctl device activation-code SN-0001 SN-0002 --output-file codes.csv
    """
    from sztp.errors import ApiError, SztpError
    from sztp.files import write_atomically
    from sztp.passwords import generate_activation_code

    if len(set(serials)) != len(serials):
        raise SztpError("a serial number is given twice")
    if output_file is not None and output_file.exists():
        raise SztpError(f"{output_file} exists; choose a new file (codes are never overwritten)")
    with connect() as client:
        revision, resources = client.get_state()
        stored = resources.get("device", {})
        unknown = [serial for serial in serials if serial not in stored]
        if unknown:
            raise SztpError(f"no device with serial number {unknown[0]!r} on the server")
        codes = {serial: generate_activation_code() for serial in serials}
        specs = {serial: _with_code(stored[serial], codes[serial]) for serial in serials}
        if output_file is not None:
            lines = ["serial,activation_code", *(f"{s},{c}" for s, c in codes.items())]
            write_atomically(output_file, ("\n".join(lines) + "\n").encode(), mode=0o600)
        try:
            with working(f"storing {len(codes)} activation code(s)"):
                client.apply_state({"device": specs}, kinds=["device"], if_match=revision)
        except ApiError:
            # Refused: nothing was stored, and the file's codes would only mislead.
            if output_file is not None:
                output_file.unlink(missing_ok=True)
            raise
        except BaseException:
            # Interrupted or cut off: the write may still land, and its codes must not be
            # lost with it (the server keeps only their hashes).
            if output_file is None:
                _show_codes(codes, err=True)
            raise
    if output_file is not None:
        typer.echo(f"{len(codes)} activation code(s) stored; written to {output_file}")
        return
    _show_codes(codes)


def _show_codes(codes: Mapping[str, str], *, err: bool = False) -> None:
    if err:
        typer.echo("the codes, in case the write lands:", err=True)
    for serial, code in codes.items():
        typer.echo(f"{serial} {code}", err=err)


def _with_code(spec: Mapping[str, Any], code: str) -> dict[str, Any]:
    """A device's spec as the server shows it, its Basic secret replaced by `code`."""
    secrets = ("password", "password_hash", "activation_code")
    return {**{f: v for f, v in spec.items() if f not in secrets}, "activation_code": code}


@app.command("status")
def device_status(serial: SerialArgument, output: OutputOption = OutputFormat.TABLE) -> None:
    """A device's status: derived status, attempts and last report (timeline: `history`), and
    its last refused request with the reason (all of them: `sztpctl events --serial`)."""

    def status_and_refusal(client: SztpClient) -> Mapping[str, Any]:
        status = client.device_status(serial)
        refused = client.device_events(serial=serial, refused=True, limit=1)["events"]
        return {**status, "last_refused": refused[0] if refused else None}

    _show(output, status_and_refusal, _summary)


@app.command("render")
def render(serial: SerialArgument, output: OutputOption = OutputFormat.TABLE) -> None:
    """What a device would receive: for each profile it can select, the configuration and
    scripts as the server renders them for it (templates read its serial, model, site, MAC,
    DUID and vars).

    Example:

        sztpctl device render SN-0001
    """
    _show(output, lambda client: client.device_rendered(serial), _rendered)


def _rendered(shown: Mapping[str, Any]) -> None:
    """Each profile's texts as they are, never read as rich markup."""
    out = console().out
    if not shown["profiles"]:
        out(f"device {shown['serial']} has no profile", highlight=False)
    for view in shown["profiles"]:
        if view["type"] == "redirect":
            servers = ", ".join(view["bootstrap_servers"])
            out(f"# profile {view['profile']}: redirect to {servers}", highlight=False)
            continue
        facts = [f"templating {view['templating']}"]
        if view.get("image"):
            facts.append(f"image {view['image']}")
        if view.get("configuration_handling"):
            facts.append(f"configuration {view['configuration_handling']}")
        out(f"# profile {view['profile']}: {', '.join(facts)}", highlight=False)
        for field in ("pre_configuration_script", "configuration", "post_configuration_script"):
            if view.get(field) is not None:
                out(f"## {field}", highlight=False)
                out(view[field], end="" if view[field].endswith("\n") else "\n", highlight=False)


@app.command("certificates")
def certificates(serial: SerialArgument, output: OutputOption = OutputFormat.TABLE) -> None:
    """The LDevIDs issued to a device (RFC 9646), newest first: serial number, validity,
    issuer.

    Example:

        sztpctl device certificates SN-0001
    """
    _show(output, lambda client: client.device_certificates(serial), _certificates)


def _certificates(shown: Mapping[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        "SERIAL NUMBER", "ISSUER", "NOT AFTER", "ISSUED", "REVOKED", box=None, pad_edge=False
    )
    for record in shown["certificates"]:
        table.add_row(
            record["serial_number"],
            record["issuer"],
            record["not_after"][:19],
            record["issued_at"][:19],
            (record["revoked_at"] or "-")[:19],
        )
    if not shown["certificates"]:
        console().print(f"no LDevID issued to {shown['serial']}", markup=False)
        return
    console().print(table)


@app.command("revoke")
def revoke(
    serial: SerialArgument,
    serial_number: Annotated[
        str, typer.Argument(help="The certificate's serial number, hex (as `certificates` shows).")
    ],
    reason: Annotated[
        str,
        typer.Option(
            "--reason",
            metavar="<reason>",
            callback=one_of(REVOCATION_REASONS),
            help=f"Why, as RFC 5280 names it: {', '.join(REVOCATION_REASONS)}.",
        ),
    ] = DEFAULT_REVOCATION_REASON,
    issuer: Annotated[
        str | None,
        typer.Option("--issuer", help="The issuer, needed only if two gave this serial number."),
    ] = None,
    yes: YesOption = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Revoke an LDevID issued to a device (asks first unless --yes): its issuer's CRL lists it
    from then on (`sztpctl issuer crl`). Revoking it again changes nothing.

    Example:

        sztpctl device revoke SN-0001 4f3a9c... --reason keyCompromise
    """
    confirm(f"revoke LDevID {serial_number} of device {serial!r}?", yes)
    with connect() as client:
        revoked = client.revoke_certificate(serial, serial_number, reason, issuer=issuer)
    emit(
        revoked,
        output,
        lambda: typer.echo(
            f"LDevID {revoked['serial_number']} of {revoked['device']} (issuer "
            f"{revoked['issuer']}) revoked at {revoked['revoked_at']}: "
            f"{revoked['revocation_reason']}"
        ),
    )


@app.command("history")
def history(serial: SerialArgument, output: OutputOption = OutputFormat.TABLE) -> None:
    """A device's progress reports, attempt by attempt, oldest first; then its requests as the
    server recorded them (the newest 1,000), refused ones with the reason."""

    def reports_and_requests(client: SztpClient) -> Mapping[str, Any]:
        from .events import MOST

        progress = client.device_progress(serial)
        events = client.device_events(serial=serial, limit=MOST)["events"]
        return {**progress, "requests": events[::-1]}

    _show(output, reports_and_requests, _timeline)


def _show(
    output: OutputFormat,
    fetch: Callable[[SztpClient], Mapping[str, Any]],
    draw: Callable[[Mapping[str, Any]], None],
) -> None:
    """Print what `fetch` reads from the server as `output`; `draw` is its table."""
    with connect() as client:
        shown = fetch(client)
    emit(shown, output, lambda: draw(shown))


@app.command("import")
def import_devices(
    csv_file: Annotated[
        Path,
        typer.Argument(
            help=f"CSV with a header line; columns: {', '.join(CSV_COLUMNS)} (serial required)."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing.")
    ] = False,
) -> None:
    """Add or update the devices a CSV file lists, atomically, and show what changed.

    Each row is a device's whole spec: what the row leaves empty, and a stored password, is
    cleared on the server. Devices absent from the file are left alone. voucher_file paths
    are relative to the CSV file.

    Example (devices.csv):

        serial,profile,model,mac,voucher_file
        SN-0001,dpu-day0,DPU-LAB-1,02:00:00:00:00:01,SN-0001.vcj
    """
    from sztp.errors import ApiValidationError, SztpError

    from .declarative import show_result

    rows, specs = _read_csv(csv_file)
    with connect() as client:
        try:
            with working(f"importing {len(specs)} devices"):
                result = client.apply_state({"device": specs}, kinds=["device"], dry_run=dry_run)
        except ApiValidationError as exc:
            serial = (exc.field or "").removeprefix("device[").partition("]")[0]
            if serial not in rows:
                raise
            raise SztpError(f"{csv_file}:{rows[serial]}: {exc.field}: {exc.message}") from None
    show_result(result, "imported")


def _read_csv(path: Path) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """(serial → line, serial → spec); the first bad row raises an error naming its line.

    Rows are checked offline as the server would (MAC, voucher serial, ...), so a bad row
    is named before anything is sent.
    """
    import base64
    import csv
    import io

    from sztp.errors import SztpError, ValidationError
    from sztp.state.resources import normalize_spec

    from .output import read_bytes

    try:
        text = read_bytes(path).decode("utf-8-sig")  # spreadsheets add a byte-order mark
    except UnicodeDecodeError:
        raise SztpError(f"{path} is not UTF-8 text") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    if "serial" not in header:
        raise SztpError(
            f"{path}:1: the first line must be a header naming the columns, with serial "
            f"(known: {', '.join(CSV_COLUMNS)})"
        )
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        raise SztpError(
            f"{path}:1: unknown column {unknown[0]!r} (known: {', '.join(CSV_COLUMNS)})"
        )
    reader.fieldnames = header
    lines: dict[str, int] = {}
    specs: dict[str, dict[str, Any]] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            raise SztpError(f"{path}:{line}: more cells than the header has columns")
        values = {key: (value or "").strip() or None for key, value in row.items()}
        serial = values.pop("serial")
        if serial is None:
            raise SztpError(f"{path}:{line}: the serial is empty")
        if serial in lines:
            raise SztpError(
                f"{path}:{line}: device {serial!r} is listed twice (line {lines[serial]})"
            )
        voucher_file = values.pop("voucher_file", None)
        if voucher_file is not None:
            voucher_path = path.parent / Path(voucher_file).expanduser()
            values["voucher"] = base64.b64encode(read_bytes(voucher_path)).decode()
        spec = {key: value for key, value in values.items() if value is not None}
        try:
            normalize_spec("device", serial, spec)
        except ValidationError as exc:
            raise SztpError(f"{path}:{line}: {exc}") from None
        lines[serial], specs[serial] = line, spec
    if not specs:
        raise SztpError(f"{path}: no devices after the header")
    return lines, specs


def _summary(summary: Mapping[str, Any]) -> None:
    from rich.text import Text

    from .output import report_message

    out = console()
    out.print(
        Text(f"{summary['serial']}: {summary['status']} ({summary['attempts']} attempt(s))"),
        style="bold",
    )
    refused = summary.get("last_refused")
    if refused is not None:
        from .events import why

        out.print(
            Text(f"last refused request: {refused['rpc']} at {refused['at']} from "
                 f"{refused['remote'] or 'an unknown address'}: {why(refused['refusal'])}")
        )  # fmt: skip
        typer.echo(f"refused requests: sztpctl events --serial {summary['serial']} --refused")
    report = summary.get("last_report")
    if report is None:
        typer.echo("no progress reports yet")
        return
    source = f" from {report['source_address']}" if report.get("source_address") else ""
    shown = report_message(report)
    message = f": {shown}" if shown else ""
    out.print(
        Text(f"last report: {report['progress_type']} at {report['received_at']}{source}{message}")
    )
    typer.echo(f"timeline: sztpctl device history {summary['serial']}")


def _elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, second = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {second} s"
    hours, minute = divmod(minutes, 60)
    return f"{hours} h {minute} min"


def _timeline(progress: Mapping[str, Any]) -> None:
    from datetime import datetime

    from rich import box
    from rich.table import Table
    from rich.text import Text

    from .output import report_message

    out = console()
    for attempt in progress["attempts"]:
        times = [datetime.fromisoformat(report["received_at"]) for report in attempt["reports"]]
        span = _elapsed((times[-1] - times[0]).total_seconds()) if times else ""
        table = Table(
            "TIME", "AFTER", "PROGRESS", "MESSAGE", "FROM", box=box.SIMPLE_HEAD,
            title=f"attempt {attempt['attempt']}, {span} from first to last report",
            title_justify="left",
        )  # fmt: skip
        # AFTER: the time since the attempt's previous report, how long each phase took.
        previous = times[:1] + times[:-1]
        for report, at, before in zip(attempt["reports"], times, previous, strict=True):
            table.add_row(
                report["received_at"],
                "" if at is before else f"+{_elapsed((at - before).total_seconds())}",
                Text(report["progress_type"]),
                Text(report_message(report)),
                report["source_address"] or "",
            )
        out.print(table)
    if not progress["attempts"]:
        typer.echo(f"{progress['serial']}: no progress reports yet")
    if progress["requests"]:
        from .events import events_table

        out.print(events_table(progress["requests"], title="requests (oldest first)"))

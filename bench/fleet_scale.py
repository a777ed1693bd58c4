"""Benchmark: a fleet of a million devices, on SQLite and on PostgreSQL.

For each backend, against one fresh sztp-server with its default `workers` (one process per
core): `sztpctl apply -f fleet.yaml` of N devices from empty and again as a no-op (and the
no-op with the same fleet as JSON, `fleet.json`), the
server's resident memory (every process summed: main, device workers, writer) before and
after, and how long an operator waits for the fleet's views: `sztpctl status`, `sztpctl device
list` (first line and all of it), `sztpctl export` (first byte and all of it) and the inventory
plugin (`ansible-inventory --list`). Devices carry a profile and a MAC address, no secrets
(password hashing and voucher checks are measured by bulk_apply.py).
Then a pod of `--pod` devices with activation codes and vouchers joins the fleet, and wrk
plays their first contact and repeat requests as first_contact.py does; the same pod alone on
a fresh server, in the same run, is the comparison.
Targets at 1,000,000 devices: apply < 60 s, no-op < 10 s, RSS < 2 GB, status < 2 s, first
output of list and export < 1 s, first contact and repeat requests within 10% of the pod alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ansible_devices import collections_path
from benchlib import (
    console_script,
    lab_fleet,
    lab_vouchers,
    post_state,
    publish,
    require_wrk,
    running_server,
)
from burst import TreeWatch, fresh_database, postgres_cluster, tree_usage
from first_contact import FIRST_CONNECTIONS, REPEAT_CONNECTIONS, Load, basic, run_wrk

from sztp.labpki import LabPki, load_lab_pki, write_lab_pki
from sztp.passwords import generate_activation_code

SECTION = "## A million devices"
# Past this many hosts, Ansible's own inventory output takes longer than the rest of the run.
INVENTORY_LIMIT = 100_000
MIB = 1024 * 1024
WHERE_THE_TIME_GOES = (
    "Before this work (the first run of this benchmark, at b0bbfbf on 2026-12-03, this VM, "
    "100,000 devices on SQLite): apply 11.0 s, no-op 4.2 s, status 1.98 s, device list 62 s to "
    "its first line, export 9.7 s to its first byte, the inventory plugin 52.6 s, 779 MiB held "
    "after the applies (5.9 KB a device). The runs of 2026-12-03 on this VM, at a million "
    "devices on SQLite and PostgreSQL, before the million-device work (7258f46) and after most "
    "of it (c47ce07): apply 101.9 s and 151.3 s, then 67.8 s and 65.3 s; no-op 31.8 s and 33.6 "
    "s, then 21.3 s and 25.7 s (as JSON 20.6 s and 28.5 s, then 9.5 s and 11.1 s); peak 3,253 "
    "MiB and 2,251 MiB, then 2,091 MiB and 1,998 MiB. This run's day was slower on the same VM: "
    "the code of c47ce07 took 40-47 s for the writer's in-process apply of a million devices "
    "against 33 s then, and PyYAML's parse of the fleet in the CLI about twice as long, so the "
    "two days' figures do not compare. Compared in this run's session, c47ce07 against this "
    "code, interleaved: the server's summed memory during the apply from empty peaked at 2,133 "
    "MiB against 1,809 MiB (the writer process that made a large write now stops while the "
    "other processes read the new state, not after them; and the plan is encoded without a "
    "dictionary per change: 3.0-3.8 s against 1.7-2.0 s for a million creates), the apply's "
    "wall time within the noise (75-77 s for both). The peak is now during the no-op applies: "
    "the writer holds its state (about 440 MiB) and the whole decoded request (about 550 MiB) "
    "at once, the main process its state, the request's body and, until large plans were kept "
    "compressed, the plan of the apply it keeps for an hour (93 MB of JSON, 1,975-1,985 MiB at "
    "the peak before, 1,875-1,912 MiB after, the same session); decoding the request a device "
    "at a time in the writer is the next cut. A run of this benchmark an hour earlier in the "
    "same session (at 201f920, before large plans were kept compressed) measured, SQLite and "
    "PostgreSQL: apply 76.4 s and 80.2 s, no-op 27.3 s and 25.4 s (as JSON 12.5 s and 11.0 s), "
    "peak 1,996 MiB and 2,001 MiB, after the applies 1,273 MiB and 1,278 MiB: the times move by "
    "a tenth or more from run to run at a million devices on this VM. The RSS after the applies "
    "now counts the writer that planned the no-ops, about 300 MiB above a fresh one (it used to "
    "be measured while a fresh writer was still reading the state). The wrk figures vary by "
    "about a fifth from run to run on this 2-core VM (a profiled rerun of the million-device "
    "SQLite pod measured 86% of the pod alone): the pod rows compare within that noise. Where "
    "the time goes (py-spy, and the writer run in-process at a million devices with the same "
    "body, the figures above). *Memory.* Every server process holds the state: the main "
    "process, the device worker and the writer. A spec decoded from JSON is a dict with its own "
    "copy of each key, about a kilobyte a device, which came to 5.9 KB a device across the "
    "processes before (about 6 GB at a million). Devices are kept as a tuple of values whose "
    "field names, and values that repeat (profile, model), are shared: about 260 bytes a device "
    "in a process; the state is read a batch of rows at a time; a write is checked against a "
    "view of the changed state instead of a copy. The peak is during a bulk write. The writer "
    "took about 2.8 KB a device above the state for it (the decoded request, every normalised "
    "spec, every audit detail, and every spec's and detail's JSON and SQL parameters, all at "
    "once): it now encodes rows and audit details as they are written (executemany on SQLite, "
    "COPY on PostgreSQL) and gives up each decoded device once it is normalised, about 0.8 KB a "
    "device (in-process, the same run: a high-water mark of 3,009 MiB before, under 1,305 MiB "
    "now). After a large write that changed the state a fresh writer process reads it and takes "
    "over (the old one keeps what it took in pieces the allocator cannot return); a large write "
    "that changes nothing no longer does (the writer is back at 436-440 MiB after two no-ops). "
    "*The cycle collector:* Python's collector walked the growing heap again and again while a "
    "million devices became objects, in the writer, in every process loading the state and in "
    "`sztpctl`; it is paused for that work (`sztp.collector`): the writer's apply of 200,000 "
    "devices took 7.8 s instead of 12.3 s. *A write of one device* used to make every process "
    "read the whole state again (at 100,000 devices 2.8-3.5 s and 3 s of CPU a PUT); each now "
    "reads only what changed since its revision: 0.17-0.19 s and 0.12-0.14 s. *Apply from "
    "empty* (the writer in-process on 2026-12-03: 33 s on SQLite against 42.6 s before, the "
    "same run; 35 s on PostgreSQL against 63.8 s): decoding the request is about a tenth, "
    "normalising each device field by field a fifth, the store two fifths (each spec and audit "
    "entry encoded, a row with its index entries, where the profile and model indexes read each "
    "row's JSON, and an audit row), the plan, the checks and the answer the rest. PostgreSQL "
    "had spent 25 s of its 64 in executemany; COPY writes the same rows in about 6 s. Then the "
    "main process and the device worker each read the million devices (on the 2 cores at once: "
    "about 4 s each on SQLite; 6.5 s on PostgreSQL, 12.7 s while psycopg decoded each JSONB "
    "value itself) before the answer goes out, and the renewed writer reads them after it. "
    "`sztpctl` learns at once that its job ended (it asks the server to answer then, with "
    "`Prefer: wait`, rather than polling every 2 s). The CLI's share is mostly PyYAML composing "
    "the file, about 9 s on 2026-12-03 (18 s on this run's day) (the node tree is most of the "
    "CLI's 3.3 GB at a million): as JSON the fleet loads in less than half the time. *No-op:* a "
    "device whose spec the request repeats is recognised by comparing the request's fields with "
    "its compact row, without a dict or normalising, and is left out of the plan: the writer's "
    "no-op of a million devices took 3.9 s instead of 10.3 s in-process. The rest is the CLI "
    "loading and encoding the fleet, the server decoding it, and, straight after an apply, "
    "waiting for the renewed writer to read the state; as YAML the no-op misses its target on "
    "PyYAML's parse alone. *Status, listings, export:* the fleet status is one grouped count "
    "over the devices' latest reports; listings read a page of devices by name after the last "
    "one (with its latest report, profile and model filters indexed); the export streams the "
    "state of one snapshot, encoded in slices between turns of the server's event loop, and the "
    "CLI writes YAML as devices arrive. *Inventory:* of `ansible-inventory --list` at 100,000 "
    "devices about 10 s is the plugin (4 s reading pages, 6 s building hosts, mostly Ansible's "
    "own calls per host and marking every value unsafe); the rest is Ansible gathering and "
    "encoding each host's variables, which is why it is not run at a million. *First contact "
    "and repeats* of a pod inside the fleet are measured once the server is idle again after "
    "the pod's apply. py-spy of a pod of 20,000 making first contact with the million-device "
    "server and alone: the same code paths, each 20-40% slower in the large server (8.6 s of "
    "CPU for 10,000 requests against 7.3 s for 11,600), no new hot spot; the first full cycle "
    "collection after a state load costs about 0.2 s at a million, once. What is left looks "
    "like the cost of a heap that holds a million devices (cache misses)."
)


def write_fleet(path: Path, devices: int) -> None:
    """fleet.yaml and the same fleet as fleet.json beside it: the lab's trust anchor and owner
    (the lab in `pki` beside them), one profile and `devices` devices, each with the profile
    and a MAC."""
    lab = write_lab_pki(path.parent / "pki", [])
    head = {
        "trust_anchors": [
            {"name": "lab", "certificates": {"file": str(lab.manufacturer_ca.certificate)}}
        ],
        "owner": {
            "certificate_chain": {
                "file": [str(lab.owner.certificate), str(lab.owner_ca.certificate)]
            },
            "private_key": {"file": str(lab.owner.private_key)},
        },
        "profiles": [{"name": "day0", "type": "onboarding", "configuration": "hostname lab\n"}],
    }
    macs = (
        ":".join(f"{byte:02x}" for byte in (2, 0, *index.to_bytes(4, "big")))
        for index in range(devices)
    )
    entries = [
        {"serial": f"SN-{index:08d}", "profile": "day0", "mac": mac}
        for index, mac in enumerate(macs)
    ]
    path.with_suffix(".json").write_text(json.dumps({**head, "devices": entries}, indent=1))
    with path.open("w") as out:
        for key, value in head.items():
            out.write(f"{key}: {json.dumps(value)}\n")  # JSON is YAML
        out.write("devices:\n")
        for entry in entries:
            out.write(
                f"  - serial: {entry['serial']}\n    profile: day0\n    mac: '{entry['mac']}'\n"
            )


class Cli:
    """sztpctl against one server, timed: wall seconds to the first output and to the end."""

    def __init__(self, admin_url: str, token_file: Path, work: Path) -> None:
        self.environment = {
            **os.environ,
            "SZTP_SERVER": admin_url,
            "SZTP_TOKEN_FILE": str(token_file),
            "XDG_CONFIG_HOME": str(work / "xdg"),
        }

    def run(self, *arguments: str) -> tuple[float, float]:
        return timed_output([console_script("sztpctl"), *arguments], self.environment)


def timed_output(command: Sequence[str], environment: dict[str, str]) -> tuple[float, float]:
    """(seconds to the first byte on standard output, seconds to the end) of a command that
    must succeed; its output is read and dropped."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=environment)
    if process.stdout is None:
        raise SystemExit("no standard output to read")
    first = process.stdout.read(1)
    first_at = time.perf_counter() - started
    while process.stdout.read(1 << 20):
        pass
    if process.wait() != 0 or not first:
        raise SystemExit(f"{' '.join(command)} failed (exit {process.returncode})")
    return first_at, time.perf_counter() - started


def inventory_seconds(admin_url: str, token_file: Path, work: Path) -> float:
    source = work / "fleet.sztp.yml"
    source.write_text(
        json.dumps(
            {
                "plugin": "sztp.bootstrap.devices",
                "server": admin_url,
                "token_file": str(token_file),
            }
        )
    )
    environment = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path(work)),
        "ANSIBLE_HOME": str(work / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp"),
    }
    command = [console_script("ansible-inventory"), "-i", str(source), "--list"]
    return timed_output(command, environment)[1]


class Pod:
    """Devices with activation codes and vouchers, in a profile of their own, for wrk."""

    def __init__(self, lab: LabPki, count: int) -> None:
        vouchers = lab_vouchers(lab, (f"POD-{number:06d}" for number in range(count)))
        codes = {serial: generate_activation_code() for serial in vouchers}
        devices = {
            serial: {"profile": "pod", "voucher": voucher, "activation_code": codes[serial]}
            for serial, voucher in vouchers.items()
        }
        self.resources = lab_fleet(lab, devices)
        self.resources["profile"] = {"pod": self.resources["profile"]["day0"]}
        self.credentials = [basic(serial, code) for serial, code in codes.items()]

    def play(self, server_url: str, seconds: int, work: Path) -> tuple[Load, Load]:
        """(first contact, repeat requests) as wrk measured them."""
        first = run_wrk(
            server_url, self.credentials, seconds, FIRST_CONNECTIONS, first=True, work=work
        )
        repeat = run_wrk(
            server_url, self.credentials, seconds, REPEAT_CONNECTIONS, first=False, work=work
        )
        return first, repeat


def settle(server: int, *, busy: float = 0.05, patience: float = 300) -> None:
    """Wait until the server's processes spend less than `busy` of a core for a second: after
    a large apply a fresh writer process reads the whole fleet, which is not what a device's
    request costs."""
    deadline = time.monotonic() + patience
    before = tree_usage(server)[0]
    while time.monotonic() < deadline:
        time.sleep(1)
        now = tree_usage(server)[0]
        if now - before < busy:
            return
        before = now
    raise SystemExit(f"the server stayed busy for {patience:.0f} s")


@contextmanager
def database(backend: str, work: Path) -> Iterator[dict[str, Any]]:
    """Server settings naming a fresh database of `backend`."""
    if backend == "sqlite":
        yield {}
        return
    with postgres_cluster(work) as (url, _cluster):
        yield {"database_url": fresh_database(url, "fleet")}


def measure(
    backend: str, pod: Pod, seconds: int, work: Path, *, inventory: bool
) -> dict[str, float]:
    """The figures of one backend; the fleet is `work`/fleet.yaml."""
    fleet = work / "fleet.yaml"
    server_dir = work / backend
    server_dir.mkdir()
    figures: dict[str, float] = {}
    with (
        database(backend, work) as settings,
        running_server(server_dir, {"http": {}}, workers=0, **settings) as server,
    ):
        token_file = server_dir / "admin-token"
        cli = Cli(server.admin_url, token_file, work)
        figures["rss_empty"] = tree_usage(server.process_id)[1] / MIB
        watch = TreeWatch({"server": server.process_id})
        watch.start()
        figures["apply"] = cli.run("apply", "-f", str(fleet))[1]
        figures["noop"] = cli.run("apply", "-f", str(fleet))[1]
        figures["noop_json"] = cli.run("apply", "-f", str(fleet.with_suffix(".json")))[1]
        figures["peak_rss"] = watch.stop()["server"].peak_rss / MIB
        figures["rss"] = tree_usage(server.process_id)[1] / MIB
        figures["status"] = cli.run("status")[1]
        figures["list_first"], figures["list"] = cli.run("device", "list")
        figures["export_first"], figures["export"] = cli.run("export")
        if inventory:
            figures["inventory"] = inventory_seconds(server.admin_url, token_file, server_dir)
        # One more device, as an operator adds it by hand: the median of three.
        added = [cli.run("device", "add", f"ONE-{n}", "--profile", "day0")[1] for n in range(3)]
        figures["add_one"] = sorted(added)[1]
        figures["processes"] = tree_usage(server.process_id)[2]
        post_state(server.admin_url, server.token, pod.resources)
        settle(server.process_id)
        first, repeat = pod.play(server.urls["http"], seconds, work)
        figures["first_contact"], figures["repeat"] = first.rate, repeat.rate
        figures["failed"] = first.failed + repeat.failed
    alone_dir = work / f"{backend}-pod"
    alone_dir.mkdir()
    with (
        database(backend, alone_dir) as settings,
        running_server(alone_dir, {"http": {}}, workers=0, **settings) as server,
    ):
        post_state(server.admin_url, server.token, pod.resources)
        settle(server.process_id)
        first, repeat = pod.play(server.urls["http"], seconds, work)
        figures["first_contact_alone"], figures["repeat_alone"] = first.rate, repeat.rate
        figures["failed"] += first.failed + repeat.failed
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--pod", type=int, default=20_000, help="devices that first contact")
    # Short enough that the pod's devices outlast first contact at a few thousand a second.
    parser.add_argument("--seconds", type=int, default=5, help="of wrk for each figure")
    parser.add_argument(
        "--inventory",
        action=argparse.BooleanOptionalAction,
        help=f"time ansible-inventory too (default: up to {INVENTORY_LIMIT:,} devices)",
    )
    parser.add_argument("--save", type=Path, help="write the figures as JSON here")
    parser.add_argument("--load", type=Path, nargs="+", help="render saved figures instead")
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    arguments = parser.parse_args()
    if arguments.load:
        runs = {
            name: run
            for path in arguments.load
            for name, run in json.loads(path.read_text()).items()
        }
    else:
        require_wrk()
        inventory = arguments.inventory
        if inventory is None:
            inventory = arguments.devices <= INVENTORY_LIMIT
        runs = {}
        with tempfile.TemporaryDirectory(prefix="sztp-fleet-") as scratch:
            work = Path(scratch)
            work.chmod(0o711)  # the PostgreSQL cluster's user must enter it
            write_fleet(work / "fleet.yaml", arguments.devices)
            pod = Pod(load_lab_pki(work / "pki"), arguments.pod)
            for backend in arguments.backends:
                figures = measure(backend, pod, arguments.seconds, work, inventory=inventory)
                name = f"{backend}, {arguments.devices:,} devices"
                runs[name] = {
                    **figures,
                    "devices": arguments.devices,
                    "pod": arguments.pod,
                    "seconds": arguments.seconds,
                    **run_meta(),
                }
                print(name, json.dumps(runs[name]), flush=True)
        if arguments.save:
            arguments.save.write_text(json.dumps(runs))
    publish(render(runs), arguments.write, SECTION)


def render(runs: dict[str, dict[str, Any]]) -> str:
    """The section for `runs` (each a column, by name)."""
    names = list(runs)

    def row(label: str, cells: list[str]) -> str:
        return f"| {label} | " + " | ".join(cells) + " |"

    def seconds(key: str, target: float | None = None) -> list[str]:
        cells = []
        for name in names:
            value = runs[name].get(key)
            if value is None:
                cells.append("not measured")
                continue
            verdict = "" if target is None else f" ({_verdict(value < target)} < {target:g} s)"
            cells.append(f"{value:.2f} s{verdict}")
        return cells

    def mebibytes(key: str) -> list[str]:
        return [f"{runs[n][key]:,.0f} MiB ({_verdict(runs[n][key] < 2048)} < 2 GB)" for n in names]

    def rate(key: str) -> list[str]:
        cells = []
        for name in names:
            at_scale, alone = runs[name][key], runs[name][f"{key}_alone"]
            ratio = at_scale / alone
            cells.append(
                f"{at_scale:,.0f} req/s against {alone:,.0f} "
                f"({ratio:.0%}; {_verdict(ratio >= 0.9)} within 10%)"
            )
        return cells

    rows = [
        row("`sztpctl apply -f` from empty", seconds("apply", 60.0)),
        row("`sztpctl apply -f` no-op", seconds("noop", 10.0)),
        row("`sztpctl apply -f` no-op, the fleet as JSON", seconds("noop_json", 10.0)),
        row("`sztpctl status`", seconds("status", 2.0)),
        row("`sztpctl device list`, first line", seconds("list_first", 1.0)),
        row("`sztpctl device list`, all", seconds("list")),
        row("`sztpctl export`, first byte", seconds("export_first", 1.0)),
        row("`sztpctl export`, all", seconds("export")),
        row("inventory plugin, `ansible-inventory --list`", seconds("inventory")),
        row("`sztpctl device add` of one more device (median of 3)", seconds("add_one")),
        row("server RSS, empty", [f"{runs[n]['rss_empty']:,.0f} MiB" for n in names]),
        row("server RSS at its peak (during the applies)", mebibytes("peak_rss")),
        row("server RSS after the applies", mebibytes("rss")),
        row(
            "memory per device (RSS after minus empty, every process)",
            [
                f"{(runs[n]['rss'] - runs[n]['rss_empty']) * MIB / runs[n]['devices']:,.0f} bytes"
                for n in names
            ],
        ),
        row("first contact of the pod, against the pod alone", rate("first_contact")),
        row("repeat requests of the pod, against the pod alone", rate("repeat")),
        row("failed requests", [f"{runs[n]['failed']:.0f}" for n in names]),
    ]
    first = runs[names[0]]
    commands = ", ".join(
        sorted(
            {
                f"`python bench/fleet_scale.py --devices {run['devices']} --pod {run['pod']} "
                f"--seconds {run['seconds']}`"
                for run in runs.values()
            }
        )
    )
    measured = (
        f"Measured {first['date']} on {first['host']} ({first['cores']} cores, Python "
        f"{first['python']}), {commands}: one sztp-server per backend with its default "
        f"workers ({first['processes']:.0f} processes in all: main, device worker, writer, "
        "forkserver, resource tracker), `sztpctl` and wrk on the same machine."
    )
    header = ["| what | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    return "\n".join([SECTION, "", measured, "", *header, *rows, "", WHERE_THE_TIME_GOES, ""])


def _verdict(met: bool) -> str:
    return "meets" if met else "MISSES"


def run_meta() -> dict[str, Any]:
    return {
        "date": f"{datetime.now(UTC):%Y-%m-%d}",
        "host": platform.node(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    main()

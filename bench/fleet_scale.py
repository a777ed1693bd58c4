"""Benchmark: a fleet of a million devices, on SQLite and on PostgreSQL.

For each backend, against one fresh sztp-server with its default `workers` (one process per
core): `sztpctl apply -f fleet.yaml` of N devices from empty and again as a no-op (and the
no-op with the same fleet as JSON, `fleet.json`), the
server's resident memory (every process summed: main, device workers, writer) before and
after, and how long an operator waits for the fleet's views: `sztpctl status`, `sztpctl device
list` (first line and all of it), `sztpctl export` (first byte and all of it) and the inventory
plugin (`ansible-inventory --list`). Devices carry a profile and a MAC address, no secrets
(password hashing and voucher checks are measured by bulk_apply.py).
Then a pod of devices with activation codes and vouchers joins the fleet and, the same pod
alone, a fresh server running beside it; wrk plays first contact and repeat requests as
first_contact.py does, `--rounds` times, each round `--pod` devices not seen before against
each server in turn (the order alternating from round to round); the medians are compared.
Targets at 1,000,000 devices: apply < 60 s, no-op < 10 s, RSS < 2 GB, status < 2 s, first
output of list and export < 1 s, first contact and repeat requests within 10% of the pod alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
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
from first_contact import FIRST_CONNECTIONS, REPEAT_CONNECTIONS, basic, run_wrk

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
    "after the applies (5.9 KB a device). At a million devices, SQLite and PostgreSQL: before "
    "the million-device work (7258f46, 2026-12-03) apply 101.9 s and 151.3 s, no-op 31.8 s and "
    "33.6 s (as JSON 20.6 s and 28.5 s), peak 3,253 MiB and 2,251 MiB; the run before this one "
    "(f589b49, earlier on 2026-12-04) apply 53.3 s and 56.7 s, no-op 17.4 s and 16.9 s (as JSON "
    "7.8 s and 7.0 s), the pod's first contact 80% and 88% of the pod alone and its repeats 77% "
    "and 98%, each figure one run of wrk against one server and then the other: run to run such "
    "figures moved by a fifth on this 2-core VM (119% and 80% for the same code), so the pod "
    "rows are now the median of three rounds, each a slice of the pod's devices new to both "
    "servers, which run side by side, played against one and then the other, the order "
    "alternating from round to round. Measured by hand in this run's session on a "
    "million-device SQLite server: loading the YAML fleet (`load_fleet`, in `sztpctl`) 2.8-2.9 "
    "s of CPU against 2.3-2.7 s for the same fleet as JSON, where its parse in parts alone took "
    "about 8 s of CPU on the 2 cores before; the YAML no-op 7.6-10.1 s against 15.7-17.4 s "
    "before. Where the time goes (py-spy, and the writer run in-process at a million devices "
    "with the same body). *Memory.* Every server process holds the state: the main process, the "
    "device worker and the writer. A spec decoded from JSON is a dict with its own copy of each "
    "key, about a kilobyte a device, which came to 5.9 KB a device across the processes before "
    "(about 6 GB at a million). Devices are kept as a tuple of values whose field names, and "
    "values that repeat (profile, model), are shared: about 260 bytes a device in a process; "
    "the state is read a batch of rows at a time, each batch's specs decoded in one call; a "
    "write is checked against a view of the changed state instead of a copy. The peak is during "
    "the applies: the writer holds its state (about 440 MiB) and the decoded request (about 550 "
    "MiB) at once, the main process its state and the request's body; the plan of a large apply "
    "is kept compressed for the hour its job stays readable; after a large write that changed "
    "the state, the writer that made it stops while the other processes read the new state, and "
    "a fresh one reads it after them. Decoding the request a device at a time in the writer is "
    "the next cut. *The cycle collector* is paused while a million devices become objects (in "
    "the writer, in every process loading the state and in `sztpctl`; `sztp.collector`). *A "
    "write of one device* used to make every process read the whole state again, and the writer "
    "check every stored device's references and voucher owners, making each compact spec a dict "
    "twice (5-6 s a `PUT` at a million): each process now reads only what changed since its "
    "revision, and a write that changes only devices checks the devices it writes (nothing "
    "refers to a device, and a device's signing owners come from profiles and owners, which "
    "such a write leaves alone); the row above includes `sztpctl`'s own start. *Apply from "
    "empty*: `sztpctl` reads the file (a `devices:` list written the simple way a generator "
    "writes it, a `key: value` line a field, is read without the YAML parser, with the values "
    "and types the parser gives: a chunk of items alike by one regular expression for their "
    "shape, each item a dict made from its groups, 1.5 s at a million, of which the expression "
    "0.7 s and the dicts 0.5 s, and 4.2 s for the same fleet as PyYAML's `safe_dump` writes it, "
    "with a voucher file's mapping below its key and the MAC addresses unquoted, each typed as "
    "the parser types it (16.9 s through PyYAML, in parts); any other list goes to PyYAML, "
    "whose composer makes a node and two marks per value, in parts by a process per core when "
    "the file is large: 7.9 s at a million instead of 13-15 s in one process), resolves it "
    "(each entry becomes its spec in place) and sends it compact. The writer (33-45 s "
    "in-process at a million, this VM's speed varying by a third over a day) spends about a "
    "tenth decoding the request, a fifth normalising each device field by field, two fifths in "
    "the store (each spec and audit entry encoded by one C encoder made once, a row with its "
    "index entries, where the profile and model indexes cost what plain columns would, and an "
    "audit row; COPY on PostgreSQL), and the rest planning, checking and answering. Then the "
    "main process and the device worker each read the million devices (about 4 s of CPU each, "
    "on the 2 cores at once) before the answer goes out, and the renewed writer reads them "
    "after it. *No-op:* a device whose spec the request repeats is recognised by comparing the "
    "fields the request names with its compact row as tuples, at positions worked out once per "
    "shape (1.4 s a million, against 2.6-3.6 s field by field), and is left out of the plan. As "
    "YAML and as JSON alike the no-op is now about 4 s of `sztpctl` (reading the file 1.5-2.4 "
    "s, resolving it 0.9 s, encoding the request 0.6 s) and about 4 s of server (decoding the "
    "body 1.6 s, of which its duplicate-key check 0.5 s; the comparison 2.2 s). *Status, "
    "listings, export:* the fleet status is one grouped count over the devices' latest reports; "
    "listings read a page of devices by name after the last one (with its latest report, "
    "profile and model filters indexed); the export streams the state of one snapshot, encoded "
    "in slices between turns of the server's event loop, and the CLI writes YAML as devices "
    "arrive. *Inventory:* of `ansible-inventory --list` at 100,000 devices about 10 s is the "
    "plugin (4 s reading pages, 6 s building hosts, mostly Ansible's own calls per host and "
    "marking every value unsafe); the rest is Ansible gathering and encoding each host's "
    "variables, which is why it is not run at a million. *First contact and repeats* of a pod "
    "inside the fleet are measured once the server is idle again after the pod's apply. py-spy "
    "of a pod of 20,000 making first contact with the million-device server and alone "
    "(2026-12-04): the same code paths, each 20-40% slower in the large server, no new hot "
    "spot; the first full cycle collection after a state load costs about 0.2 s at a million, "
    "once. Played in interleaved rounds, the medians of the pod inside the million-device fleet "
    "are within a tenth of the pod alone on both stores, while single rounds still range from "
    "88% to 119% of it: what is left of the difference is within this VM's noise."
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
    """Devices with activation codes and vouchers, in a profile of their own, for wrk: a slice
    of `count` devices a round."""

    def __init__(self, lab: LabPki, count: int, rounds: int) -> None:
        vouchers = lab_vouchers(lab, (f"POD-{number:06d}" for number in range(count * rounds)))
        codes = {serial: generate_activation_code() for serial in vouchers}
        devices = [
            (serial, {"profile": "pod", "voucher": voucher, "activation_code": codes[serial]})
            for serial, voucher in vouchers.items()
        ]
        # A request a round: the whole pod with its vouchers can outgrow the request size cap.
        self.batches = [
            lab_fleet(lab, dict(devices[n * count : (n + 1) * count])) for n in range(rounds)
        ]
        for batch in self.batches:
            batch["profile"] = {"pod": batch["profile"]["day0"]}
        credentials = [basic(serial, code) for serial, code in codes.items()]
        self.slices = [credentials[n * count : (n + 1) * count] for n in range(rounds)]
        self.failed = 0  # requests that failed, over every play

    def play(self, servers: dict[str, str], seconds: int, work: Path) -> dict[str, list[float]]:
        """wrk's rates of first contact and repeat requests, by server name (`servers`: name,
        URL) and round: each round a slice of devices not seen before makes first contact
        with each server in turn, then repeats; the servers' order alternates from round to
        round, so that what changes on the machine over the run weighs on each alike."""
        rates: dict[str, list[float]] = {}
        for number, credentials in enumerate(self.slices):
            order = list(servers.items())
            for name, url in order if number % 2 == 0 else reversed(order):
                for kind, connections, first in (
                    ("first_contact", FIRST_CONNECTIONS, True),
                    ("repeat", REPEAT_CONNECTIONS, False),
                ):
                    load = run_wrk(url, credentials, seconds, connections, first=first, work=work)
                    rates.setdefault(f"{kind}{name}", []).append(load.rate)
                    self.failed += load.failed
        return rates


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
def databases(backend: str, work: Path) -> Iterator[Callable[[str], dict[str, Any]]]:
    """A function giving server settings that name a fresh database of `backend`."""
    if backend == "sqlite":
        yield lambda name: {}  # each server its own file in its directory
        return
    with postgres_cluster(work) as (url, _cluster):
        yield lambda name: {"database_url": fresh_database(url, name)}


def measure(backend: str, pod: Pod, seconds: int, work: Path, *, inventory: bool) -> dict[str, Any]:
    """The figures of one backend; the fleet is `work`/fleet.yaml."""
    fleet = work / "fleet.yaml"
    server_dir, alone_dir = work / backend, work / f"{backend}-pod"
    server_dir.mkdir()
    alone_dir.mkdir()
    figures: dict[str, Any] = {}
    with (
        databases(backend, work) as new_database,
        running_server(server_dir, {"http": {}}, workers=0, **new_database("fleet")) as server,
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
        for batch in pod.batches:
            post_state(server.admin_url, server.token, batch)
        # The same pod alone on a server of its own, running meanwhile (idle when not played).
        with running_server(alone_dir, {"http": {}}, workers=0, **new_database("pod")) as alone:
            for batch in pod.batches:
                post_state(alone.admin_url, alone.token, batch)
            settle(alone.process_id)
            settle(server.process_id)
            urls = {"": server.urls["http"], "_alone": alone.urls["http"]}
            figures.update(pod.play(urls, seconds, work))
            figures["failed"] = pod.failed
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument(
        "--pod", type=int, default=20_000, help="devices that make first contact, a round"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="of the pod inside the fleet and alone, in turn"
    )
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
            pod = Pod(load_lab_pki(work / "pki"), arguments.pod, arguments.rounds)
            for backend in arguments.backends:
                figures = measure(backend, pod, arguments.seconds, work, inventory=inventory)
                name = f"{backend}, {arguments.devices:,} devices"
                runs[name] = {
                    **figures,
                    "devices": arguments.devices,
                    "pod": arguments.pod,
                    "rounds": arguments.rounds,
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
    rounds = " and ".join(sorted({f"{run['rounds']} rounds" for run in runs.values()}))

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
            ratios = sorted(inside / apart for inside, apart in zip(at_scale, alone, strict=True))
            ratio = statistics.median(ratios)
            cells.append(
                f"{statistics.median(at_scale):,.0f} req/s against "
                f"{statistics.median(alone):,.0f} ({ratio:.0%}, rounds {ratios[0]:.0%}-"
                f"{ratios[-1]:.0%}; {_verdict(ratio >= 0.9)} within 10%)"
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
        row(
            f"first contact of the pod, against the pod alone (median of {rounds})",
            rate("first_contact"),
        ),
        row(
            f"repeat requests of the pod, against the pod alone (median of {rounds})",
            rate("repeat"),
        ),
        row("failed requests", [f"{runs[n]['failed']:.0f}" for n in names]),
    ]
    first = runs[names[0]]
    commands = ", ".join(
        sorted(
            {
                f"`python bench/fleet_scale.py --devices {run['devices']} --pod {run['pod']} "
                f"--rounds {run['rounds']} --seconds {run['seconds']}`"
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

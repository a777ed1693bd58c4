"""The site roles of an IPv6-only link on this machine, without a container: `ipv6_ra` (radvd)
and `dns` (BIND 9). Their checks of their variables, their first step, refuse bad input naming
the variable; their real template tasks render into a temporary directory, each file checked
by the real radvd --configtest, named-checkzone or named-checkconf before it is written; a zone
the checker refuses is never installed; the TSIG secret is never shown; and named, started
with the rendered files, answers a TXT query over TCP and takes a signed nsupdate."""

from __future__ import annotations

import copy
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_runs import (
    ROOT,
    PlayRun,
    changed,
    collections_fixture,  # noqa: F401 - a fixture, asked for by name
    failures,
    run_play,
)

RADVD = shutil.which("radvd")
NAMED = shutil.which("named")
NAMED_CHECKCONF = shutil.which("named-checkconf")
NAMED_CHECKZONE = shutil.which("named-checkzone")
DIG = shutil.which("dig")
NSUPDATE = shutil.which("nsupdate")
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name
# base64 text as tsig-keygen prints it; found in any output that shows the key.
SECRET = "c3p0cC10ZXN0LXRzaWctc2VjcmV0LW5ldmVyLXNob3du"

needs_radvd = pytest.mark.skipif(
    RADVD is None, reason="radvd is not installed (make test installs it)"
)
needs_bind = pytest.mark.skipif(
    None in (NAMED_CHECKCONF, NAMED_CHECKZONE),
    reason="BIND's checkers are not installed (make test installs bind9)",
)


def shown(run: PlayRun) -> str:
    return run.output + run.errors


def role_tasks(role: str, *names: str, **module_arguments: Any) -> list[dict[str, Any]]:
    """The tasks `names` of roles/`role`/tasks/main.yml, their templates found by path, their
    files owned by this user, and `module_arguments` added to each (the same tasks as root)."""
    directory = ROOT / "roles" / role
    main_tasks = yaml.safe_load((directory / "tasks" / "main.yml").read_text())
    tasks = []
    for name in names:
        [task] = [copy.deepcopy(task) for task in main_tasks if task["name"] == name]
        [module] = [key for key in task if key.startswith("ansible.builtin.")]
        arguments = task[module]
        if module == "ansible.builtin.template":
            arguments["src"] = str(directory / "templates" / arguments["src"])
        arguments.update({"owner": USER, "group": GROUP, **module_arguments})
        task.pop("notify", None)
        tasks.append(task)
    return tasks


def with_role_vars(role: str, tasks: list[dict[str, Any]], **variables: Any) -> dict[str, Any]:
    """`tasks` in a block with the role's defaults and internal values, then `variables`."""
    directory = ROOT / "roles" / role
    return {
        "block": tasks,
        "vars": {
            **yaml.safe_load((directory / "defaults" / "main.yml").read_text()),
            **yaml.safe_load((directory / "vars" / "main.yml").read_text()),
            **variables,
        },
    }


def role_check(role: str, **variables: Any) -> dict[str, Any]:
    """The role's check of its variables (tasks/validate.yml) with `variables`."""
    return {
        "ansible.builtin.include_role": {
            "name": f"sztp.bootstrap.{role}",
            "tasks_from": "validate.yml",
        },
        "vars": variables,
    }


# ---- ipv6_ra

LINK: dict[str, Any] = {
    "name": "eth1",
    "prefixes": [{"prefix": "2001:db8:1::/64"}],
    "rdnss": ["2001:db8:1::53"],
    "dnssl": ["sztp.example.net"],
}

RA_BAD_INPUT: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, variables, task that refuses them, what its message says)
    (
        "no links",
        {"ipv6_ra_interfaces": []},
        "Check that the links are named explicitly",
        "ipv6_ra_interfaces must list the links to advertise on",
    ),
    (
        "a link named twice",
        {"ipv6_ra_interfaces": [LINK, LINK]},
        "Check that the links are named explicitly",
        "ipv6_ra_interfaces must list the links to advertise on, each a mapping with a unique",
    ),
    (
        "an interface name radvd cannot parse",
        {"ipv6_ra_interfaces": [{**LINK, "name": "eth1; };"}]},
        "Check that the links are named explicitly",
        "ipv6_ra_interfaces must list",
    ),
    (
        "no prefix",
        {"ipv6_ra_interfaces": [{**LINK, "prefixes": []}]},
        "Check each link's prefixes",
        "ipv6_ra_interfaces[eth1].prefixes: give a list of at least one prefix",
    ),
    (
        "an IPv4 prefix",
        {"ipv6_ra_interfaces": [{**LINK, "prefixes": [{"prefix": "192.0.2.0/24"}]}]},
        "Check each link's prefixes",
        "ipv6_ra_interfaces[eth1].prefixes: 192.0.2.0/24 is no IPv6 prefix",
    ),
    (
        "a /48 for SLAAC",
        {"ipv6_ra_interfaces": [{**LINK, "prefixes": [{"prefix": "2001:db8::/48"}]}]},
        "Check each link's prefixes",
        "ipv6_ra_interfaces[eth1].prefixes: 2001:db8::/48: autonomous (SLAAC) prefixes must be /64",
    ),
    (
        "preferred longer than valid",
        {
            "ipv6_ra_interfaces": [
                {**LINK, "prefixes": [{"prefix": "2001:db8:1::/64", "preferred_lifetime": 90000}]}
            ]
        },
        "Check each link's prefixes",
        "2001:db8:1::/64: valid_lifetime and preferred_lifetime are seconds, preferred <= valid",
    ),
    (
        "an RDNSS address that is none",
        {"ipv6_ra_interfaces": [{**LINK, "rdnss": ["2001:db8::53", "192.0.2.53"]}]},
        "Check each link's DNS options",
        "ipv6_ra_interfaces[eth1]: rdnss: 192.0.2.53 is no IPv6 address",
    ),
    (
        "a search domain that is no name",
        {"ipv6_ra_interfaces": [{**LINK, "dnssl": ["lab..example"]}]},
        "Check each link's DNS options",
        "ipv6_ra_interfaces[eth1]: dnssl: lab..example is no domain name",
    ),
    (
        "a router lifetime below the interval",
        {"ipv6_ra_interfaces": [{**LINK, "router_lifetime": 300}]},
        "Check each link's flags and timers",
        "ipv6_ra_interfaces[eth1]: router_lifetime must be 0 (not a default router) or"
        " max_interval (600) to 9000 seconds",
    ),
    (
        "a flag that is no boolean",
        {"ipv6_ra_interfaces": [{**LINK, "other_config": "yes please"}]},
        "Check each link's flags and timers",
        "ipv6_ra_interfaces[eth1]: other_config must be true or false",
    ),
    (
        "forwarding that is no boolean",
        {"ipv6_ra_interfaces": [LINK], "ipv6_ra_forwarding": "sometimes"},
        "Check the forwarding switch",
        'ipv6_ra_forwarding must be true or false, got "sometimes"',
    ),
]


@pytest.mark.parametrize(
    ("variables", "task", "expected"),
    [case[1:] for case in RA_BAD_INPUT],
    ids=[case[0] for case in RA_BAD_INPUT],
)
def test_ipv6_ra_check_refuses_bad_input_naming_the_variable(
    collections: Path, tmp_path: Path, variables: dict[str, Any], task: str, expected: str
) -> None:
    report = run_play(collections, tmp_path, [role_check("ipv6_ra", **variables)])
    [(failed_task, message)] = failures(report)
    assert failed_task == task
    assert expected in message


def render_radvd(collections: Path, tmp_path: Path, **variables: Any) -> tuple[PlayRun, Path]:
    config = tmp_path / "radvd.conf"
    tasks = role_tasks(
        "ipv6_ra", "Render radvd's configuration (checked with radvd --configtest first)"
    )
    run = run_play(
        collections,
        tmp_path,
        [
            role_check("ipv6_ra", **variables),
            with_role_vars("ipv6_ra", tasks, ipv6_ra__config_file=str(config), **variables),
        ],
    )
    return run, config


@needs_radvd
def test_radvd_conf_passes_radvd_and_advertises_slaac_o_flag_rdnss_dnssl(
    collections: Path, tmp_path: Path
) -> None:
    link = {
        **LINK,
        "prefixes": [
            {"prefix": "2001:db8:1::/64"},
            {"prefix": "2001:db8:100::/56", "autonomous": False},
        ],
        # Four servers: radvd takes three per RDNSS block.
        "rdnss": ["2001:db8:1::53", "2001:db8:1::54", "2001:db8:1::55", "fd00::53"],
        "dnssl": ["sztp.example.net", "lab.example."],
        "dns_lifetime": 900,
    }
    run, config = render_radvd(collections, tmp_path, ipv6_ra_interfaces=[link])
    assert failures(run) == [] and changed(run) == 1
    text = config.read_text()
    [block] = re.findall(r"^interface eth1\n\{\n(.*)^\};", text, re.MULTILINE | re.DOTALL)
    assert "AdvOtherConfigFlag on;" in block and "AdvManagedFlag off;" in block
    # Without forwarding, no device takes this host for its default router.
    assert "AdvDefaultLifetime 0;" in block
    assert re.search(r"prefix 2001:db8:1::/64\s*\{\s*AdvOnLink on;\s*AdvAutonomous on;", block)
    assert re.search(r"prefix 2001:db8:100::/56\s*\{\s*AdvOnLink on;\s*AdvAutonomous off;", block)
    assert "RDNSS 2001:db8:1::53 2001:db8:1::54 2001:db8:1::55\n" in block
    assert "RDNSS fd00::53\n" in block and block.count("AdvRDNSSLifetime 900;") == 2
    assert "DNSSL sztp.example.net lab.example.\n" in block and "AdvDNSSLLifetime 900;" in block
    # The file the role wrote, as radvd itself reads it.
    assert RADVD
    checked = subprocess.run(
        [RADVD, "--logmethod", "stderr", "--configtest", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "syntax ok" in checked.stderr

    again, _ = render_radvd(collections, tmp_path, ipv6_ra_interfaces=[link])
    assert failures(again) == [] and changed(again) == 0


@needs_radvd
def test_radvd_conf_with_forwarding_leaves_the_router_lifetime_to_radvd(
    collections: Path, tmp_path: Path
) -> None:
    managed = {**LINK, "name": "eth2", "managed": True, "router_lifetime": 1800}
    run, config = render_radvd(
        collections, tmp_path, ipv6_ra_interfaces=[LINK, managed], ipv6_ra_forwarding=True
    )
    assert failures(run) == []
    first, second = config.read_text().split("interface eth2")
    assert "AdvDefaultLifetime" not in first
    assert "AdvManagedFlag on;" in second and "AdvDefaultLifetime 1800;" in second


# ---- dns

ZONE = "sztp.example.net"
# A TXT record longer than a 512-octet UDP answer: a client must ask again over TCP.
LONG_TXT = " ".join(f'"{chunk}"' for chunk in ["ci=" + "x" * 252, "y" * 255, "z" * 200])
RECORDS = f"""; RFC 8572 section 4.2
SN-1001._sztp 3600 IN TXT ( {LONG_TXT} )
_sztp._tcp 3600 IN SRV 0 0 443 sztp1
sztp1 IN AAAA 2001:db8:1::10
"""
NAMESERVERS = [{"name": "ns1", "addresses": ["2001:db8:1::53", "127.0.0.1"]}]

DNS_BAD_INPUT: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "no zone",
        {"dns_zone": ""},
        "Check the zone's name",
        "dns_zone must be the domain the server is authoritative for, without a final dot,"
        ' for example sztp.example.net; got ""',
    ),
    (
        "a zone with a final dot",
        {"dns_zone": "sztp.example.net."},
        "Check the zone's name",
        "dns_zone must be the domain",
    ),
    (
        "no name server",
        {"dns_nameservers": []},
        "Check the zone's name servers",
        "dns_nameservers: list at least one",
    ),
    (
        "a name server address that is none",
        {"dns_nameservers": [{"name": "ns1", "addresses": ["2001:db8::zz"]}]},
        "Check the zone's name servers",
        "dns_nameservers: ns1: addresses must be a list of IPv4 and IPv6 addresses",
    ),
    (
        "addresses of a name outside the zone",
        {"dns_nameservers": [{"name": "ns.example.org.", "addresses": ["192.0.2.1"]}]},
        "Check the zone's name servers",
        "dns_nameservers: ns.example.org. is outside the zone",
    ),
    (
        "a TTL that is no number",
        {"dns_zone_ttl": "1h"},
        "Check the SOA values",
        "dns_zone_ttl: must be seconds",
    ),
    (
        "an email address for the SOA",
        {"dns_soa_contact": "hostmaster@example.net"},
        "Check the SOA values",
        "dns_soa_contact must be a mailbox written as a name, hostmaster for"
        " hostmaster@sztp.example.net",
    ),
    (
        "records whose first owner is blank",
        {"dns_zone_records": '; device records\n    IN TXT "ci=x"\n'},
        "Check the zone's records",
        "dns_zone_records must be zone-file text whose first record starts with its owner name",
    ),
    (
        "an IPv6 address to listen on IPv4",
        {"dns_listen_ipv4": ["127.0.0.1", "::1"]},
        "Check the listen addresses and address match lists",
        "dns_listen_ipv4: not an address of its family, any or none: ::1.",
    ),
    (
        "a host name in allow-query",
        {"dns_allow_query": ["2001:db8:1::/64", "devices.example"]},
        "Check the listen addresses and address match lists",
        "dns_allow_query: not an address, a prefix, any, none, localhost or localnets:"
        " devices.example.",
    ),
    (
        "a port out of range",
        {"dns_port": 70000},
        "Check the listen addresses and address match lists",
        "dns_port must be a port number, got 70000",
    ),
    (
        "a secret that is no base64",
        {"dns_update_key_secret": SECRET + "!"},
        "Check the TSIG key for dynamic updates",
        "dns_update_key_secret must be base64",
    ),
    (
        "an unknown algorithm",
        {"dns_update_key_secret": SECRET, "dns_update_key_algorithm": "hmac-md5"},
        "Check the TSIG key for dynamic updates",
        'dns_update_key_algorithm one of hmac-sha256, hmac-sha384, hmac-sha512 (got "hmac-md5")',
    ),
]


def dns_variables(**variables: Any) -> dict[str, Any]:
    return {"dns_zone": ZONE, "dns_nameservers": NAMESERVERS, **variables}


@pytest.mark.parametrize(
    ("variables", "task", "expected"),
    [case[1:] for case in DNS_BAD_INPUT],
    ids=[case[0] for case in DNS_BAD_INPUT],
)
def test_dns_check_refuses_bad_input_naming_the_variable(
    collections: Path, tmp_path: Path, variables: dict[str, Any], task: str, expected: str
) -> None:
    report = run_play(
        collections, tmp_path, [role_check("dns", **dns_variables(**variables))], verbose=True
    )
    [(failed_task, message)] = failures(report)
    assert failed_task == task
    assert expected in message
    assert SECRET not in shown(report)


CONFIG_TASKS = (
    "Install the TSIG key for dynamic updates (readable by named only)",
    "Render named's options (checked with named-checkconf first)",
    "Render the zone's declaration (checked with named-checkconf first)",
)


def dns_paths(directory: Path) -> dict[str, Any]:
    """The role's files in `directory`, owned by this user."""
    return {
        "dns__zone_file": str(directory / f"db.{ZONE}"),
        "dns__key_file": str(directory / "update.key"),
        "dns__options_file": str(directory / "named.conf.options"),
        "dns__local_file": str(directory / "named.conf.local"),
        "dns__working_directory": str(directory),
        "dns__pid_file": str(directory / "named.pid"),
        "dns__owner": USER,
        "dns__group": GROUP,
        "dns__zone_owner": USER,
    }


def dns_tasks(directory: Path, **variables: Any) -> list[dict[str, Any]]:
    """The role's check, its zone file's tasks (their handler skipped, as on a host without
    BIND) and its configuration's tasks, writing into `directory`."""
    settings = {**dns_variables(**variables), **dns_paths(directory)}
    zone = {
        "ansible.builtin.include_role": {"name": "sztp.bootstrap.dns", "tasks_from": "zone.yml"},
        "vars": {**settings, "dns_not_installed_yet": True},
    }
    return [
        role_check("dns", **settings),
        zone,
        with_role_vars("dns", role_tasks("dns", *CONFIG_TASKS), **settings),
    ]


def zone_serial(directory: Path) -> int:
    text = (directory / f"db.{ZONE}").read_text()
    [serial] = re.findall(r"^\s*(\d+) ; serial$", text, re.MULTILINE)
    return int(serial)


@needs_bind
def test_dns_files_pass_bind_checks_and_the_serial_follows_the_content(
    collections: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "bind"
    directory.mkdir()
    run = run_play(collections, tmp_path, dns_tasks(directory, dns_zone_records=RECORDS))
    assert failures(run) == []
    zone_file = directory / f"db.{ZONE}"
    assert oct(zone_file.stat().st_mode & 0o777) == "0o644"
    assert not (directory / "update.key").exists()  # no secret, no dynamic updates
    local = (directory / "named.conf.local").read_text()
    assert f'zone "{ZONE}"' in local and "allow-update { none; };" in local
    options = (directory / "named.conf.options").read_text()
    assert "recursion no;" in options and "listen-on-v6 port 53 { any; };" in options

    # The files as named reads them: the configuration, with its zone loaded.
    main = directory / "named.conf"
    main.write_text(
        f'include "{directory}/named.conf.options";\ninclude "{directory}/named.conf.local";\n'
    )
    assert NAMED_CHECKCONF and NAMED_CHECKZONE
    checked = subprocess.run(
        [NAMED_CHECKCONF, "-z", str(main)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    zone = subprocess.run(
        [NAMED_CHECKZONE, ZONE, str(zone_file)], capture_output=True, text=True, check=False
    )
    assert zone.returncode == 0 and "OK" in zone.stdout, zone.stdout

    # The same content again: no change, the same serial; new content: a larger serial.
    serial = zone_serial(directory)
    again = run_play(collections, tmp_path, dns_tasks(directory, dns_zone_records=RECORDS))
    assert failures(again) == [] and changed(again) == 0
    assert zone_serial(directory) == serial
    more = RECORDS + "sztp2 IN AAAA 2001:db8:1::11\n"
    changed_run = run_play(collections, tmp_path, dns_tasks(directory, dns_zone_records=more))
    assert failures(changed_run) == [] and changed(changed_run) == 1
    assert zone_serial(directory) > serial


@needs_bind
def test_dns_zone_the_checker_refuses_is_not_installed(collections: Path, tmp_path: Path) -> None:
    directory = tmp_path / "bind"
    directory.mkdir()
    assert (
        failures(run_play(collections, tmp_path, dns_tasks(directory, dns_zone_records=RECORDS)))
        == []
    )
    installed = (directory / f"db.{ZONE}").read_text()

    # A CNAME beside other data at one name: named would refuse to load the zone.
    broken = RECORDS + "sztp1 IN CNAME elsewhere.example.\n"
    report = run_play(collections, tmp_path, dns_tasks(directory, dns_zone_records=broken))
    [(task, result)] = report.failures
    assert task == "Write the zone file (checked with named-checkzone first)"
    assert result["msg"] == "failed to validate"
    assert "CNAME and other data" in result["stdout"]  # named-checkzone said so
    assert (directory / f"db.{ZONE}").read_text() == installed


@needs_bind
def test_dns_tsig_secret_is_written_0640_and_never_shown(collections: Path, tmp_path: Path) -> None:
    directory = tmp_path / "bind"
    directory.mkdir()
    tasks = dns_tasks(directory, dns_zone_records=RECORDS, dns_update_key_secret=SECRET)
    run = run_play(collections, tmp_path, tasks, diff=True, verbose=True)
    assert failures(run) == []
    assert SECRET not in shown(run)
    key = directory / "update.key"
    assert SECRET in key.read_text()
    assert oct(key.stat().st_mode & 0o777) == "0o640"
    local = (directory / "named.conf.local").read_text()
    assert f'include "{key}";' in local and 'allow-update { key "sztp-update"; };' in local

    # A secret named-checkconf refuses (base64 cut short): the old key stays, and the refusal
    # shows neither secret.
    cut_short = "bm90LWEtd2hvbGUta2V5LWF0LWFsbA" + "="
    refused = run_play(
        collections,
        tmp_path,
        dns_tasks(directory, dns_zone_records=RECORDS, dns_update_key_secret=cut_short),
        diff=True,
        verbose=True,
    )
    [(task, _)] = refused.failures
    assert task == "Install the TSIG key for dynamic updates (readable by named only)"
    assert cut_short[:-1] not in shown(refused) and SECRET not in shown(refused)
    assert SECRET in key.read_text()


# ---- named, running with the rendered files


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_tcp(port: int, named: subprocess.Popen[str]) -> None:
    """Return once named accepts TCP connections on `port`; fail if it exits first."""
    for _ in range(200):
        assert named.poll() is None, named.communicate()[0]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except ConnectionRefusedError:
            time.sleep(0.05)
    pytest.fail(f"named does not listen on 127.0.0.1:{port}")


@pytest.fixture
def named_files(collections: Path, tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """The role's files for a dynamic zone on 127.0.0.1 at a free port, in a directory."""
    directory = tmp_path / "bind"
    directory.mkdir()
    port = free_port()
    tasks = dns_tasks(
        directory,
        dns_zone_records=RECORDS,
        dns_update_key_secret=SECRET,
        dns_listen_ipv4=["127.0.0.1"],
        dns_listen_ipv6=["none"],
        dns_port=port,
        dns_allow_query=["localhost"],
    )
    assert failures(run_play(collections, tmp_path, tasks)) == []
    yield directory, port


@pytest.mark.skipif(
    None in (NAMED, DIG, NSUPDATE) or os.getuid() != 0,
    reason="needs root and BIND's named, dig and nsupdate (make test installs them)",
)
def test_named_serves_the_txt_record_over_tcp_and_takes_signed_updates(
    named_files: tuple[Path, int],
) -> None:
    directory, port = named_files
    main = directory / "named.conf"
    # No rndc channel: this named shares the machine with any other.
    main.write_text(
        f'include "{directory}/named.conf.options";\n'
        f'include "{directory}/named.conf.local";\ncontrols {{ }};\n'
    )
    assert NAMED and DIG and NSUPDATE
    named = subprocess.Popen(
        [NAMED, "-g", "-c", str(main)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_tcp(port, named)
        dig = [DIG, "@127.0.0.1", "-p", str(port), "+tcp"]
        answer = subprocess.run(
            [*dig, "+short", "TXT", f"SN-1001._sztp.{ZONE}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert answer.stdout.startswith('"ci=' + "x" * 252 + '" "' + "y" * 255), answer.stdout

        update = (
            f"server 127.0.0.1 {port}\nzone {ZONE}\n"
            f'update add SN-1002._sztp.{ZONE} 300 IN TXT "ci=added"\nsend\n'
        )
        signed = subprocess.run(
            [NSUPDATE, "-k", str(directory / "update.key")],
            input=update,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert signed.returncode == 0, signed.stdout + signed.stderr
        added = subprocess.run(
            [*dig, "+short", "TXT", f"SN-1002._sztp.{ZONE}"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert added.stdout.strip() == '"ci=added"'

        unsigned = subprocess.run(
            [NSUPDATE],
            input=update.replace("SN-1002", "SN-1003"),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert "REFUSED" in unsigned.stdout + unsigned.stderr
    finally:
        named.terminate()
        output, _ = named.communicate(timeout=30)
    assert SECRET not in output

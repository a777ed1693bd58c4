"""sztpctl resource commands (trust-anchor, owner, image, profile, device add|list|show|delete),
voucher import, device import and watch against one real sztp-server subprocess; validate and
dhcp render, which need no server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp.state.fleet import load_fleet
from sztp.state.resources import KINDS
from sztp_testing import (
    SZTPCTL,
    RunningServer,
    example_lab,
    free_port,
    only_line,
    run_sztpctl,
    write_voucher,
)

PASSWORD = "device password 42"


# `fleet` and its `server` come from conftest.py: the example fleet, one server per module.


@pytest.fixture
def env(server: RunningServer, tmp_path: Path) -> dict[str, str]:
    """CLI environment for the server, which starts each test empty."""
    with server.client() as client:
        client.apply_state({kind: {} for kind in KINDS}, prune=True)
    return server.cli_env(tmp_path)


@pytest.fixture
def catalogue(fleet: Path, env: dict[str, str], server: RunningServer) -> None:
    """The example fleet without its devices on the server (applied in-process: quick)."""
    resources = dict(load_fleet(fleet).resources)
    del resources["device"]
    with server.client() as client:
        client.apply_state(resources)


@pytest.fixture
def offline_env(tmp_path: Path) -> dict[str, str]:
    """No server configured at all: validate and dhcp render must not need one."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("SZTP_")}
    return {**environment, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}


def without_terminal(
    *arguments: str | Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """sztpctl with standard input that is not a terminal (as in a pipeline)."""
    assert SZTPCTL
    return subprocess.run(
        [SZTPCTL, *map(str, arguments)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def add_catalogue(fleet: Path, env: dict[str, str]) -> None:
    """trust anchor, owner, image and profile of the example fleet, through `add`."""
    base = fleet.parent
    run_sztpctl(
        "trust-anchor", "add", "lab-manufacturer",
        "--certificates", base / "pki/manufacturer/ca.pem",
        "--serial-pattern", "SERIALNUMBER=(?P<serial>[^,]+)", env=env,
    )  # fmt: skip
    chain = base / "owner-chain.pem"
    chain.write_bytes(
        (base / "pki/owner/owner.pem").read_bytes() + (base / "pki/owner/ca.pem").read_bytes()
    )
    run_sztpctl(
        "owner", "add", "--certificate-chain", chain, "--private-key", base / "pki/owner/owner.key",
        env=env,
    )  # fmt: skip
    run_sztpctl(
        "image", "add", "labos-1.2", "--file", base / "labos-1.2.img", "--os-name", "LabOS",
        "--os-version", "1.2", "--uri", "https://files.lab.example/labos-1.2.img", env=env,
    )  # fmt: skip
    run_sztpctl(
        "profile", "add", "dpu-day0", "--type", "onboarding", "--image", "labos-1.2",
        "--configuration", base / "day0.cfg", env=env,
    )  # fmt: skip


def test_add_list_show_delete_every_noun(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    add_catalogue(fleet, env)
    password_file = tmp_path / "password"
    password_file.write_text(f"{PASSWORD}\n")
    added = run_sztpctl(
        "device", "add", "SN-0001", "--profile", "dpu-day0", "--model", "DPU-LAB-1",
        "--mac", "02-00-00-00-00-01", "--voucher", fleet.parent / "SN-0001.vcj",
        "--password-file", password_file, env=env,
    )  # fmt: skip
    assert added.stdout.strip() == "device SN-0001 added"

    with server.client() as client:
        image = client.get("image", "labos-1.2")["spec"]
        device = client.get("device", "SN-0001")["spec"]
    assert (
        image["sha256"] == hashlib.sha256((fleet.parent / "labos-1.2.img").read_bytes()).hexdigest()
    )
    assert device["mac"] == "02:00:00:00:00:01"
    assert base64.b64decode(device["voucher"]) == (fleet.parent / "SN-0001.vcj").read_bytes()
    assert device["password_hash"] == "<hidden>"

    tables = {
        noun: run_sztpctl(noun, "list", env=env).stdout
        for noun in ("trust-anchor", "owner", "image", "profile", "device")
    }
    assert "CN=SZTP Lab Manufacturer CA" in tables["trust-anchor"]
    assert "1 trust-anchor(s)" in tables["trust-anchor"]
    assert "stored" in tables["owner"]  # the signing key is on the server, never shown
    assert "LabOS" in tables["image"]
    assert "dpu-day0" in tables["profile"]
    assert "not-seen" in tables["device"]  # the device list shows each device's status
    assert "02:00:00:00:00:01" in run_sztpctl("device", "list", "-o", "wide", env=env).stdout
    wide = run_sztpctl("image", "list", "-o", "wide", env=env).stdout
    assert image["sha256"] in wide
    assert "https://files.lab.example/labos-1.2.img" in wide
    assert image["sha256"] not in tables["image"]

    assert "SERIALNUMBER=(?P<serial>[^,]+)" in tables["trust-anchor"]
    run_sztpctl(
        "profile", "add", "elsewhere", "--type", "redirect",
        "--bootstrap-server", "sztp2.lab.example:8443", "--bootstrap-server", "[2001:db8::2]",
        env=env,
    )  # fmt: skip
    redirects = run_sztpctl("profile", "list", "--type", "redirect", env=env).stdout
    assert "sztp2.lab.example:8443 [2001:db8::2]:443" in redirects
    assert "dpu-day0" not in redirects
    run_sztpctl("profile", "delete", "elsewhere", "--yes", env=env)
    listed = json.loads(run_sztpctl("profile", "list", "-o", "json", env=env).stdout)
    assert [item["name"] for item in listed] == ["dpu-day0"]
    as_yaml = yaml.safe_load(run_sztpctl("profile", "list", "-o", "yaml", env=env).stdout)
    assert as_yaml == listed
    # Filters: on spec fields here, by the server for devices.
    assert (
        run_sztpctl("profile", "list", "--type", "redirect", "-o", "json", env=env).stdout.strip()
        == "[]"
    )
    assert (
        len(
            json.loads(
                run_sztpctl("image", "list", "--os-name", "LabOS", "-o", "json", env=env).stdout
            )
        )
        == 1
    )
    assert (
        json.loads(run_sztpctl("device", "list", "--model", "other", "-o", "json", env=env).stdout)
        == []
    )
    run_sztpctl("profile", "list", "--type", "bogus", env=env, expect=2)

    owner = run_sztpctl("owner", "show", "default", env=env).stdout
    device_shown = run_sztpctl("device", "show", "SN-0001", env=env).stdout
    key_line = (fleet.parent / "pki/owner/owner.key").read_text().splitlines()[1]
    for shown in (owner, device_shown, *tables.values(), wide):
        assert key_line not in shown
        assert PASSWORD not in shown
        assert "$scrypt$" not in shown
    assert "private_key: <hidden>" in owner
    assert yaml.safe_load(device_shown)["devices"][0]["serial"] == "SN-0001"
    assert (
        json.loads(run_sztpctl("device", "show", "SN-0001", "-o", "json", env=env).stdout)[
            "devices"
        ][0]["model"]
        == "DPU-LAB-1"
    )

    run_sztpctl("device", "delete", "SN-0001", "--yes", env=env)
    for noun, name in (("profile", "dpu-day0"), ("image", "labos-1.2"), ("owner", "default"),
                       ("trust-anchor", "lab-manufacturer")):  # fmt: skip
        assert (
            run_sztpctl(noun, "delete", name, "-y", env=env).stdout.strip()
            == f"{noun} {name} deleted"
        )
    _, state = server.client().get_state()
    assert all(not specs for specs in state.values())


@pytest.mark.usefixtures("catalogue")
def test_add_refuses_to_overwrite_and_replace_does(
    fleet: Path, env: dict[str, str], server: RunningServer
) -> None:
    run_sztpctl("device", "add", "SN-0001", "--profile", "dpu-day0", "--model", "A", env=env)
    again = run_sztpctl("device", "add", "SN-0001", "--model", "B", env=env, expect=1)
    assert only_line(again.stderr) == (
        "error: device 'SN-0001' exists already; pass --replace to replace its spec"
    )
    assert server.client().get("device", "SN-0001")["spec"]["model"] == "A"
    run_sztpctl(
        "device", "add", "SN-0001", "--profile", "dpu-day0", "--model", "B", "--replace", env=env
    )
    assert server.client().get("device", "SN-0001")["spec"]["model"] == "B"
    # The server's own checks come back as one line, naming the field.
    bad = run_sztpctl("device", "add", "SN-0002", "--mac", "zz", env=env, expect=1)
    assert only_line(bad.stderr).startswith("error: device[SN-0002].mac: 'zz' is not a MAC address")
    unknown = run_sztpctl("device", "add", "SN-0002", "--profile", "nope", env=env, expect=1)
    assert "refers to unknown profile 'nope'" in only_line(unknown.stderr)
    run_sztpctl("device", "add", env=env, expect=2)  # neither a serial nor -f


@pytest.mark.usefixtures("catalogue")
def test_add_from_a_file_in_fleet_syntax(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    shown = run_sztpctl("profile", "show", "dpu-day0", env=env).stdout
    # `show` prints what `add -f` takes: edit the output and feed it back.
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "day1.cfg").write_text("hostname dpu-1\n")
    document = yaml.safe_load(shown)
    document["profiles"][0].update(name="dpu-day1", configuration={"file": "day1.cfg"})
    spec_file = tmp_path / "conf" / "profile.yaml"
    spec_file.write_text(yaml.safe_dump(document))
    run_sztpctl("profile", "add", "-f", spec_file, "--reporting-level", "minimal", env=env)
    stored = server.client().get("profile", "dpu-day1")["spec"]
    assert stored["configuration"] == "hostname dpu-1\n"  # relative to the spec file
    assert stored["reporting_level"] == "minimal"  # the flag wins over the file
    assert stored["image"] == "labos-1.2"

    wrong_name = run_sztpctl("profile", "add", "other", "-f", spec_file, env=env, expect=1)
    assert "describes profile 'dpu-day1', not 'other'" in only_line(wrong_name.stderr)
    wrong_kind = run_sztpctl("image", "add", "-f", spec_file, env=env, expect=1)
    assert "must hold exactly one image (it holds profile dpu-day1)" in only_line(wrong_kind.stderr)
    broken = tmp_path / "conf" / "broken.yaml"
    broken.write_text("profiles:\n  - name: p2\n    type: onboarding\n    image: nope\n")
    line = only_line(run_sztpctl("profile", "add", "-f", broken, env=env, expect=1).stderr)
    assert line.startswith(f"error: {broken}:4: profiles[0].image: refers to unknown image")


@pytest.mark.usefixtures("catalogue")
def test_delete_needs_confirmation_and_names_errors(
    fleet: Path, env: dict[str, str], server: RunningServer
) -> None:
    run_sztpctl("device", "add", "SN-0001", "--profile", "dpu-day0", env=env)
    refused = without_terminal("device", "delete", "SN-0001", env=env)
    assert refused.returncode == 1
    assert only_line(refused.stderr) == (
        "error: not confirmed: delete device 'SN-0001': pass --yes to do it without a terminal"
    )
    server.client().get("device", "SN-0001")  # still there
    in_use = run_sztpctl("profile", "delete", "dpu-day0", "--yes", env=env, expect=1)
    assert only_line(in_use.stderr).startswith("error: profile 'dpu-day0' is still in use")
    for arguments in (
        ("device", "show", "SN-9999"),
        ("device", "delete", "SN-9999", "--yes"),
        ("device", "history", "SN-9999"),
        ("image", "show", "nope"),
    ):
        line = only_line(run_sztpctl(*arguments, env=env, expect=1).stderr)
        assert line.endswith("(HTTP 404)"), line
    debug = without_terminal("--debug", "device", "show", "SN-9999", env=env)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr


@pytest.mark.usefixtures("catalogue")
def test_voucher_import_checks_before_upload(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    run_sztpctl("device", "add", "SN-0001", "--profile", "dpu-day0", env=env)
    base = fleet.parent
    voucher = base / "SN-0001.vcj"
    # Refused locally: with no server listening, the error is the voucher's, not the network's.
    gone = {**env, "SZTP_SERVER": f"http://127.0.0.1:{free_port()}"}
    wrong_serial = run_sztpctl(
        "voucher", "import", voucher, "--serial", "SN-0002", env=gone, expect=1
    )
    assert only_line(wrong_serial.stderr) == (
        "error: ownership voucher is for serial number 'SN-0001', not this device ('SN-0002')"
    )
    other_owner = run_sztpctl(
        "voucher", "import", voucher, "--serial", "SN-0001",
        "--owner-cert", base / "pki/tls/server.pem", env=gone, expect=1,
    )  # fmt: skip
    assert "is not authorised by the voucher's pinned-domain-cert" in only_line(other_owner.stderr)
    untrusted = run_sztpctl(
        "voucher", "import", voucher, "--serial", "SN-0001",
        "--trust-anchor", base / "pki/tls/ca.pem", env=gone, expect=1,
    )  # fmt: skip
    assert "untrusted issuer" in only_line(untrusted.stderr)
    assert server.client().get("device", "SN-0001")["spec"]["voucher"] is None

    imported = run_sztpctl(
        "voucher", "import", voucher, "--serial", "SN-0001",
        "--owner-cert", base / "pki/owner/owner.pem",
        "--trust-anchor", base / "pki/manufacturer/ca.pem", env=env,
    )  # fmt: skip
    assert imported.stdout.strip() == (
        "voucher for SN-0001 imported "
        "(checked: signature, serial number, expiry, no nonce, MASA chain, pinned owner)"
    )
    stored = server.client().get("device", "SN-0001")["spec"]["voucher"]
    assert base64.b64decode(stored) == voucher.read_bytes()
    # A valid voucher for a device the server does not know: the server's one line.
    write_voucher(example_lab(fleet), "SN-0003", tmp_path / "SN-0003.vcj")
    unknown = run_sztpctl(
        "voucher", "import", tmp_path / "SN-0003.vcj", "--serial", "SN-0003", env=env, expect=1
    )
    assert only_line(unknown.stderr) == "error: no device with serial number 'SN-0003' (HTTP 404)"


@pytest.mark.usefixtures("catalogue")
def test_device_import_from_csv(
    fleet: Path, env: dict[str, str], server: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "vouchers").mkdir()
    (tmp_path / "vouchers" / "SN-0001.vcj").write_bytes((fleet.parent / "SN-0001.vcj").read_bytes())
    good = tmp_path / "devices.csv"
    good.write_text(
        "serial,profile,model,mac,voucher_file\n"
        "SN-0001,dpu-day0,DPU-LAB-1,02:00:00:00:00:01,vouchers/SN-0001.vcj\n"
        "SN-0002,dpu-day0,DPU-LAB-1,,\n"
    )
    planned = run_sztpctl("device", "import", good, "--dry-run", env=env)
    assert "+ device/SN-0001" in planned.stdout
    assert "dry run, nothing changed: 2 to create" in planned.stdout
    assert server.client().list("device") == []
    done = run_sztpctl("device", "import", good, env=env)
    assert "imported: 2 created, 0 updated, 0 deleted" in done.stdout
    assert run_sztpctl("device", "import", good, env=env).stdout.startswith("no changes")
    stored = server.client().get("device", "SN-0001")["spec"]
    assert stored["mac"] == "02:00:00:00:00:01"
    assert stored["voucher"] is not None

    cases = {
        # A bad cell, caught before anything is sent.
        "serial,profile,mac\nSN-0003,dpu-day0,\nSN-0004,dpu-day0,zz\n": ":3: device[SN-0004].mac",
        # Refused by the server, mapped back to the row.
        "serial,profile\nSN-0003,dpu-day0\nSN-0004,nope\n": ":3: device[SN-0004].profile",
        "serial\nSN-0003\nSN-0003\n": ":3: device 'SN-0003' is listed twice (line 2)",
        "SN-0003,dpu-day0\n": ":1: the first line must be a header",
        "serial,colour\nSN-0003,red\n": ":1: unknown column 'colour'",
        "serial,voucher_file\nSN-0003,SN-0001.vcj\n": "cannot read",
    }
    for text, expected in cases.items():
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        line = only_line(run_sztpctl("device", "import", bad, env=env, expect=1).stderr)
        assert expected in line, line
    assert sorted(device["name"] for device in server.client().list("device")) == [
        "SN-0001",
        "SN-0002",
    ]


def test_watch_once(fleet: Path, env: dict[str, str]) -> None:
    run_sztpctl("apply", "-f", fleet, env=env)
    view = run_sztpctl("watch", "--once", env=env).stdout
    assert ": 2 device(s) at" in view
    assert "not-seen" in view
    assert "no stalled or failed devices" in view
    gone = {**env, "SZTP_SERVER": f"http://127.0.0.1:{free_port()}"}
    assert "Connection refused" in only_line(
        run_sztpctl("watch", "--once", env=gone, expect=1).stderr
    )


# ---- offline: validate and dhcp render


def test_validate_a_good_fleet(fleet: Path, offline_env: dict[str, str]) -> None:
    result = run_sztpctl("validate", "-f", fleet, env=offline_env)
    assert result.stdout.strip() == (
        f"{fleet}: valid (1 trust-anchor(s), 1 owner(s), 1 image(s), 1 profile(s), 2 device(s); "
        "2 voucher(s) checked)"
    )
    masa = fleet.parent / "pki/manufacturer/ca.pem"
    assert "MASA" in run_sztpctl("validate", "-f", fleet, "--masa-ca", masa, env=offline_env).stdout


def test_validate_names_each_problem_with_its_line(
    fleet: Path, offline_env: dict[str, str]
) -> None:
    lab = example_lab(fleet)
    # A voucher that pins another CA than the owner's (here: the TLS CA).
    stranger = pki.load_certificates_pem(lab.tls_ca.certificate.read_bytes())[0]
    (fleet.parent / "stranger.vcj").write_bytes(
        sign_voucher(create_voucher("SN-0001", stranger), lab.masa.load())
    )
    text = (
        fleet.read_text()
        .replace("SN-0001.vcj", "stranger.vcj")
        .replace("SN-0002.vcj", "SN-0001.vcj")
        .replace("image: labos-1.2", "image: nope")
    )
    text += "dhcp:\n  bootstrap_uris: [http://sztp.lab.example]\n"
    bad = fleet.with_name("bad-validate.yaml")
    bad.write_text(text)
    lines = text.splitlines()
    result = run_sztpctl("validate", "-f", bad, env=offline_env, expect=1)
    problems = result.stderr.strip().splitlines()
    assert problems[-1] == f"{bad}: 4 problem(s)"

    def line_of(fragment: str, start: int = 0) -> int:
        return next(n for n, line in enumerate(lines, 1) if n > start and fragment in line)

    first_device = line_of("- serial: SN-0001")
    image_line = line_of("image: nope")
    assert problems[0] == (
        f"error: {bad}:{image_line}: profiles[0].image: refers to unknown image 'nope'"
    )
    assert problems[-2] == (
        "note: references are checked against this file alone: each section it has is taken "
        "as complete, as `sztpctl apply --prune` applies it"
    )
    assert problems[1].startswith(
        f"error: {bad}:{line_of('stranger.vcj', first_device)}: devices[0].voucher: "
    )
    assert (
        "owner certificate CN=SZTP Lab Owner is not authorised by the voucher's pinned-domain-cert"
        in problems[1]
    )
    assert problems[2] == (
        f"error: {bad}:{line_of('SN-0001.vcj', first_device)}: devices[1].voucher: "
        "ownership voucher is for serial number 'SN-0001', not this device ('SN-0002')"
    )
    assert problems[3].startswith(f"error: {bad}:{len(lines)}: dhcp.bootstrap_uris[0]: ")
    assert "only 'https' is allowed" in problems[3]
    # Masa check against the wrong anchor; schema errors stop at the first, as one line.
    tls_ca = fleet.parent / "pki/tls/ca.pem"
    wrong_masa = run_sztpctl(
        "validate", "-f", fleet, "--masa-ca", tls_ca, env=offline_env, expect=1
    )
    assert "untrusted issuer" in wrong_masa.stderr
    schema = fleet.with_name("schema.yaml")
    schema.write_text("devices:\n  - serial: SN-1\n    colour: red\n")
    line = only_line(run_sztpctl("validate", "-f", schema, env=offline_env, expect=1).stderr)
    assert line == f"error: {schema}:3: devices[0].colour: unknown field"


DHCP = """\
dhcp:
  bootstrap_uris: [https://sztp.lab.example:8443]
  subnets:
    - subnet: 10.0.0.0/24
    - subnet: 2001:db8::/64
      bootstrap_uris: ["https://[2001:db8::1]"]
  reservations:
    - mac: 02-00-00-00-00-01
      bootstrap_uris: [https://a.example, https://b.example]
    - duid: "00:01:00:01:aa:bb:cc:dd"
"""


def test_dhcp_render_formats(tmp_path: Path, offline_env: dict[str, str]) -> None:
    from sztp.protocol.dhcp import Family, decode_uri_list

    fleet = tmp_path / "dhcp.yaml"
    fleet.write_text(DHCP)
    kea4 = json.loads(
        run_sztpctl("dhcp", "render", "-f", fleet, "--format", "kea4", env=offline_env).stdout
    )
    dhcp4 = kea4["Dhcp4"]
    assert decode_uri_list(bytes.fromhex(dhcp4["option-data"][0]["data"])) == [
        "https://sztp.lab.example:8443"
    ]
    assert [subnet["subnet"] for subnet in dhcp4["subnet4"]] == ["10.0.0.0/24"]
    reservation = dhcp4["reservations"][0]
    assert reservation["hw-address"] == "02:00:00:00:00:01"
    assert decode_uri_list(bytes.fromhex(reservation["option-data"][0]["data"])) == [
        "https://a.example", "https://b.example",
    ]  # fmt: skip
    assert reservation["option-data"][0]["code"] == Family.V4.option_code
    kea6 = json.loads(
        run_sztpctl("dhcp", "render", "-f", fleet, "--format", "kea6", env=offline_env).stdout
    )
    assert kea6["Dhcp6"]["subnet6"][0]["subnet"] == "2001:db8::/64"
    assert [next(iter(r)) for r in kea6["Dhcp6"]["reservations"]] == ["hw-address", "duid"]

    dhcpd = run_sztpctl("dhcp", "render", "-f", fleet, "--format", "dhcpd", env=offline_env).stdout
    assert "option sztp-redirect code 143 = string;" in dhcpd
    assert "subnet 10.0.0.0 netmask 255.255.255.0 {" in dhcpd
    assert "hardware ethernet 02:00:00:00:00:01;" in dhcpd
    dnsmasq = run_sztpctl(
        "dhcp", "render", "-f", fleet, "--format", "dnsmasq", "--family", "v6", env=offline_env
    ).stdout
    assert "dhcp-host=id:00:01:00:01:aa:bb:cc:dd,set:" in dnsmasq
    assert "option6:136," in dnsmasq
    assert "143" not in dnsmasq.replace("option 143", "")

    # Legacy text only when asked, and only where one URI is given.
    single = tmp_path / "single.yaml"
    single.write_text("dhcp:\n  bootstrap_uris: [https://sztp.lab.example:8443]\n")
    legacy = run_sztpctl(
        "dhcp", "render", "-f", single, "--format", "dnsmasq", "--legacy-text", env=offline_env
    ).stdout
    assert "NOT RFC 8572 conformant" in legacy
    assert "143," + b"https://sztp.lab.example:8443".hex(":") in legacy
    two = run_sztpctl("dhcp", "render", "-f", fleet, "--legacy-text", env=offline_env, expect=1)
    assert (
        "dhcp.reservations[0].bootstrap_uris: sztp-redirect: the legacy text encoding carries "
        "exactly one URI" in only_line(two.stderr)
    )


def test_dhcp_render_refuses_an_option_too_long_for_dhcpv4(
    tmp_path: Path, offline_env: dict[str, str]
) -> None:
    uris = [f"https://bootstrap-server-{index:02}.lab.example.com:8443" for index in range(6)]
    fleet = tmp_path / "long.yaml"
    fleet.write_text(
        yaml.safe_dump({"dhcp": {"subnets": [{"subnet": "10.1.0.0/16", "bootstrap_uris": uris}]}})
    )
    line = only_line(run_sztpctl("dhcp", "render", "-f", fleet, env=offline_env, expect=1).stderr)
    assert line.startswith(f"error: {fleet}:")
    assert "dhcp.subnets[0].bootstrap_uris: sztp-redirect: the option 143 payload is" in line
    assert "over the DHCPv4 limit of 255" in line
    assert "dhcp.subnets[0].bootstrap_uris: v4: sztp-redirect: the option 143 payload" in (
        run_sztpctl("validate", "-f", fleet, env=offline_env, expect=1).stderr
    )
    bad_subnet = tmp_path / "subnet.yaml"
    bad_subnet.write_text(
        "dhcp:\n  bootstrap_uris: [https://a.example]\n  subnets:\n    - subnet: 10.0.0.1/24\n"
    )
    line = only_line(
        run_sztpctl("dhcp", "render", "-f", bad_subnet, env=offline_env, expect=1).stderr
    )
    assert line == f"error: {bad_subnet}:4: dhcp.subnets[0].subnet: 10.0.0.1/24 has host bits set"
    assert (
        "has host bits set"
        in run_sztpctl("validate", "-f", bad_subnet, env=offline_env, expect=1).stderr
    )

"""`sztpctl import sztpd`: an sztpd running configuration of either layout becomes a fleet file
our own validator accepts, with a note for everything left out and no secret shown.

The documents in tests/data/sztpd/ are this project's own, written to the published sztpd
models (0.0.15's wn-sztpd-1, 0.0.46's sztpd and yangcore with ietf-keystore and
ietf-truststore); their certificates are valid for a hundred years.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from doc_runner import Session, parse_blocks, run_page
from sztp.passwords import SecretKind, verify_password
from sztp.protocol import cms, pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp.state.fleet import load_fleet
from sztp.state.sztpd_import import (
    Note,
    NoteKind,
    SztpdImportError,
    SztpdLayout,
    convert_sztpd,
    detect_layout,
)
from sztp.state.validate import validate_fleet
from sztpctl.commands import app
from sztpctl.commands.output import ExitStatus

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "sztpd"
LEGACY = DATA / "wn-sztpd-1.json"
CURRENT = DATA / "sztpd.json"
EXAMPLE = DATA / "example-running.json"
PAGE = ROOT / "docs" / "migrating-from-sztpd.md"

SHA_12 = (
    "5e:88:48:98:da:28:04:71:51:d0:e5:6f:8d:c6:29:27:"
    "73:60:3d:0d:6a:ab:bd:d6:2a:11:ef:72:1d:15:42:d8"
)
PRE = "#!/bin/sh\n# pre-configuration: check the disk\ntest -b /dev/sda\n"
POST = "#!/bin/sh\n# post-configuration: report the version\ncat /etc/os-release\n"
DAY0 = '<config xmlns="urn:example:labos">\n  <hostname>dpu</hostname>\n</config>\n'
DAY0_REPLACE = (
    '<config xmlns="urn:example:labos">\n  <hostname>dpu</hostname>\n'
    "  <ntp>192.0.2.1</ntp>\n</config>\n"
)


def document(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def secrets_of(path: Path) -> list[str]:
    """Every activation code, password and private key the document holds, as written and
    (for codes in clear) without the `$0$`."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("activation-code", "password", "cleartext-private-key"):
                    found.extend([item, item.removeprefix("$0$")])
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(document(path))
    return found


def subjects(pem: str) -> list[str]:
    return [
        certificate.subject.rfc4514_string()
        for certificate in pki.load_certificates_pem(pem.encode())
    ]


def by_name(entries: list[dict[str, Any]], key: str = "name") -> dict[str, dict[str, Any]]:
    return {entry[key]: entry for entry in entries}


def notes_at(notes: tuple[Note, ...]) -> dict[str, NoteKind]:
    return {note.path: note.kind for note in notes}


def import_sztpd(*arguments: str | Path) -> Any:
    return CliRunner().invoke(app, ["import", "sztpd", *map(str, arguments)])


def validate(fleet_file: Path) -> Any:
    fleet = load_fleet(fleet_file)
    return fleet, validate_fleet(fleet)


# ---- the layouts


@pytest.mark.parametrize(
    ("path", "layout"), [(LEGACY, SztpdLayout.WN_SZTPD_1), (CURRENT, SztpdLayout.SZTPD)]
)
def test_each_layout_is_recognised(path: Path, layout: SztpdLayout) -> None:
    assert detect_layout(document(path)) is layout
    # As read from sztpd's RESTCONF API.
    assert detect_layout({"ietf-restconf:data": document(path)}) is layout


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ([1], "the document is not an object"),
        ({"ietf-interfaces:interfaces": {}}, "found ietf-interfaces"),
        ({}, "none with a module prefix"),
        ({"wn-sztpd-1:devices": {}, "sztpd:devices": {}}, "mixes the layouts"),
    ],
)
def test_other_documents_are_refused(given: Any, message: str) -> None:
    with pytest.raises(SztpdImportError, match=message):
        convert_sztpd(given)


# ---- sztpd 0.0.15


def test_wn_sztpd_1_is_converted_field_by_field() -> None:
    conversion = convert_sztpd(document(LEGACY))
    fleet = conversion.fleet
    assert conversion.layout is SztpdLayout.WN_SZTPD_1
    assert list(fleet) == ["trust_anchors", "owners", "images", "profiles", "devices"]

    # The device type's identity CA; the callout servers' CA is no device identity CA.
    [anchor] = fleet["trust_anchors"]
    assert anchor["name"] == "lab-manufacturer-ca"
    assert subjects(anchor["certificates"]) == ["CN=Lab Manufacturer CA"]

    owners = by_name(fleet["owners"])
    assert list(owners) == ["lab-owner", "offline-owner"]
    # The signer first, whatever the order in sztpd's CMS; never a private key.
    assert subjects(owners["lab-owner"]["certificate_chain"]) == ["CN=Lab Owner", "CN=Lab Owner CA"]
    assert subjects(owners["offline-owner"]["certificate_chain"]) == [
        "CN=Offline Owner",
        "CN=Offline Owner CA",
    ]
    assert all(set(owner) == {"name", "certificate_chain"} for owner in owners.values())

    # labos-1.1.img has no os-name and os-version, which a fleet image needs.
    assert fleet["images"] == [
        {
            "name": "labos-1.2.img",
            "os_name": "LabOS",
            "os_version": "1.2",
            "download_uris": [
                "https://files.lab.example/labos-1.2.img",
                "ftps://files.lab.example/labos-1.2.img",
            ],
            "sha256": SHA_12,
        }
    ]

    profiles = by_name(fleet["profiles"])
    assert list(profiles) == [
        "to-regional",
        "labos-day0-verbose",
        "labos-day0",
        "SN-1002-day0-signed-lab-owner",
        "labos-legacy",
    ]
    redirect = profiles["to-regional"]
    assert {key: value for key, value in redirect.items() if key != "bootstrap_servers"} == {
        "name": "to-regional",
        "type": "redirect",
        "signing": "when-requested",
    }
    east, west = redirect["bootstrap_servers"]
    assert {key: east[key] for key in ("address", "port")} == {
        "address": "sztp-east.lab.example",
        "port": 8443,
    }
    assert subjects(east["trust_anchor"]) == ["CN=Lab TLS CA"]
    # Its trust anchor is no CA certificate: left out, with a note.
    assert west == {"address": "sztp-west.lab.example"}
    day0 = {
        "type": "onboarding",
        "signing": "when-requested",
        "image": "labos-1.2.img",
        "pre_configuration_script": PRE,
        "post_configuration_script": POST,
        "configuration": DAY0,
        "configuration_handling": "merge",
    }
    assert profiles["labos-day0"] == {"name": "labos-day0", **day0}
    assert profiles["labos-day0-verbose"] == {
        "name": "labos-day0-verbose",
        **day0,
        "reporting_level": "verbose",
    }
    # A local definition, signed with the owner's key (which stays in sztpd's keystore).
    assert profiles["SN-1002-day0-signed-lab-owner"] == {
        "name": "SN-1002-day0-signed-lab-owner",
        "type": "onboarding",
        "signing": "required",
        "owner": "lab-owner",
        "image": "labos-1.2.img",
        "configuration": DAY0_REPLACE,
        "configuration_handling": "replace",
    }
    # No device uses it, and its image is not carried: the rest still is.
    assert profiles["labos-legacy"] == {
        "name": "labos-legacy",
        "type": "onboarding",
        "signing": "when-requested",
        "configuration": DAY0,
        "configuration_handling": "merge",
    }

    devices = by_name(fleet["devices"], "serial")
    assert list(devices) == ["SN-1001", "SN-1002", "SN-1003"]  # SN*1004 is no fleet serial
    first = devices["SN-1001"]
    assert {key: value for key, value in first.items() if key != "password_hash"} == {
        "serial": "SN-1001",
        "profile": "labos-day0",
        "selection": [
            {"hw_model": "DPU-LAB-*", "os_name": "LabOS", "profile": "labos-day0-verbose"}
        ],
        "model": "DPU-LAB-1",
    }
    # A code of the form sztp makes: its fast hash; a code a person chose: a password's.
    assert verify_password(
        "Yk3qR8vT2mW9xL4pN7sD1fH6jZ0", first["password_hash"], SecretKind.ACTIVATION_CODE
    )
    second = devices["SN-1002"]
    assert {key: value for key, value in second.items() if key != "password_hash"} == {
        "serial": "SN-1002",
        "profile": "SN-1002-day0-signed-lab-owner",
        "model": "DPU-LAB-1",
    }
    assert verify_password("my-secret", second["password_hash"], SecretKind.PASSWORD)
    # A crypt hash is left out; the catch-all answers nothing, so no profile.
    assert devices["SN-1003"] == {
        "serial": "SN-1003",
        "selection": [{"os_version": "7.1.*", "profile": "to-regional"}],
        "model": "switch",
    }


def test_wn_sztpd_1_notes_say_what_is_left_out_and_why() -> None:
    notes = convert_sztpd(document(LEGACY)).notes
    devices = "/wn-sztpd-1:devices/device="
    assert notes_at(notes) == {
        "/wn-sztpd-1:admin-accounts": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:boot-images/boot-image=labos-1.1.img": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:bootstrap-servers/bootstrap-server=regional-2/trust-anchor": (
            NoteKind.LEFT_OUT
        ),
        "/wn-sztpd-1:bootstrap-servers/bootstrap-server=retired": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:conveyed-information-responses/cms-information-response": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:conveyed-information-responses/onboarding-information-response="
        "labos-legacy/onboarding-information/boot-image": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:device-types/device-type=switch/ownership-authorization": NoteKind.LEFT_OUT,
        f"{devices}SN*1004": NoteKind.LEFT_OUT,
        f"{devices}SN-1001/activation-code": NoteKind.CHANGED,
        f"{devices}SN-1001/response-manager/matched-response=untrusted-first": NoteKind.LEFT_OUT,
        f"{devices}SN-1002/activation-code": NoteKind.CHANGED,
        f"{devices}SN-1002/response-manager/matched-response=day0-signed/response/"
        "ownership-voucher": NoteKind.LEFT_OUT,
        f"{devices}SN-1002/response-manager/matched-response=never-tried": NoteKind.LEFT_OUT,
        f"{devices}SN-1003/activation-code": NoteKind.LEFT_OUT,
        f"{devices}SN-1003/response-manager/matched-response=no-rescue": NoteKind.LEFT_OUT,
        f"{devices}SN-1003/response-manager/matched-response=vendor": NoteKind.LEFT_OUT,
        f"{devices}SN-1003/response-manager/matched-response=vendor/response/"
        "conveyed-information/cms-information": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:dynamic-callouts": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:keystore/asymmetric-keys/asymmetric-key=owner-key": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:keystore/asymmetric-keys/asymmetric-key=sbi-server-key": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:owner-certificates/owner-certificate=lab owner": NoteKind.CHANGED,
        "/wn-sztpd-1:preferences": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:scripts/post-configuration-script=unused-post": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:transport": NoteKind.LEFT_OUT,
        "/wn-sztpd-1:truststore/certificate-bags/certificate-bag=callout-cas/"
        "certificate=callout-server-ca": NoteKind.LEFT_OUT,
    }
    reasons = {note.path: note.reason for note in notes}
    assert "crypt hash ($5$)" in reasons[f"{devices}SN-1003/activation-code"]
    assert (
        "'signed-data-preferred'"
        in reasons[f"{devices}SN-1001/response-manager/matched-response=untrusted-first"]
    )
    assert "negates" in reasons[f"{devices}SN-1003/response-manager/matched-response=no-rescue"]
    assert "private key" in reasons["/wn-sztpd-1:keystore/asymmetric-keys/asymmetric-key=owner-key"]
    assert "os-name, os-version" in reasons["/wn-sztpd-1:boot-images/boot-image=labos-1.1.img"]
    assert (
        "named 'lab-owner'" in reasons["/wn-sztpd-1:owner-certificates/owner-certificate=lab owner"]
    )


# ---- sztpd 0.0.46


def test_sztpd_is_converted_field_by_field() -> None:
    conversion = convert_sztpd(document(CURRENT))
    fleet = conversion.fleet
    assert conversion.layout is SztpdLayout.SZTPD
    assert list(fleet) == ["trust_anchors", "images", "profiles", "devices"]

    # The device type's CA, and the other CA the RFC 8572 endpoint accepts devices under.
    anchors = by_name(fleet["trust_anchors"])
    assert {name: subjects(anchor["certificates"]) for name, anchor in anchors.items()} == {
        "lab-manufacturer-ca": ["CN=Lab Manufacturer CA"],
        "partner-manufacturer-ca": ["CN=Partner Manufacturer CA"],
    }
    assert fleet["images"] == [
        {
            "name": "labos-2.0",
            "os_name": "LabOS",
            "os_version": "2.0",
            "download_uris": ["https://files.lab.example/labos-2.0.img"],
            "sha256": SHA_12,
        }
    ]
    profiles = by_name(fleet["profiles"])
    assert profiles["labos-day0"] == {
        "name": "labos-day0",
        "type": "onboarding",
        "signing": "when-requested",
        "image": "labos-2.0",
        "pre_configuration_script": PRE,
        "post_configuration_script": POST,
        "configuration": DAY0,
        "configuration_handling": "merge",
    }
    assert profiles["labos-templated-verbose"] == {
        "name": "labos-templated-verbose",
        "type": "onboarding",
        "signing": "when-requested",
        "reporting_level": "verbose",
        "image": "labos-2.0",
        "configuration": DAY0_REPLACE,
        "configuration_handling": "replace",
    }
    to_regional = profiles["to-regional"]
    [server] = to_regional["bootstrap_servers"]
    assert (to_regional["type"], server["address"], server["port"]) == (
        "redirect",
        "sztp-east.lab.example",
        8443,
    )
    assert subjects(server["trust_anchor"]) == ["CN=Lab TLS CA"]
    assert list(profiles) == ["labos-day0", "to-regional", "labos-templated-verbose"]

    devices = by_name(fleet["devices"], "serial")
    # The device type's catch-all is tried after the device's own matched responses.
    assert devices["SN-2001"] == {
        "serial": "SN-2001",
        "profile": "labos-day0",
        "model": "DPU-LAB-2",
    }
    second = devices["SN-2002"]
    assert {key: value for key, value in second.items() if key != "password_hash"} == {
        "serial": "SN-2002",
        "profile": "labos-day0",
        # A value is matched literally, its '*' included.
        "selection": [{"os_version": "1.[*]", "profile": "to-regional"}],
        "model": "DPU-LAB-2",
    }
    assert verify_password(
        "Qw7eR2tY9uI4oP1aS6dF3gH8jK5", second["password_hash"], SecretKind.ACTIVATION_CODE
    )
    assert devices["SN-2003"] == {
        "serial": "SN-2003",
        "profile": "labos-templated-verbose",
        "model": "DPU-LAB-2",
        "vars": {"hostname": "dpu-2003"},
    }
    # Its own catch-all is a callout: nothing to send, and its device type's is never tried.
    assert devices["SN-2004"] == {"serial": "SN-2004", "model": "DPU-LAB-2"}


def test_sztpd_notes_say_what_is_left_out_and_why() -> None:
    notes = convert_sztpd(document(CURRENT)).notes
    response = "/response-manager/matched-response="
    assert notes_at(notes) == {
        "/ietf-keystore:keystore/asymmetric-keys/asymmetric-key=sbi-server-key": NoteKind.LEFT_OUT,
        "/ietf-restconf-server:restconf-server": NoteKind.LEFT_OUT,
        "/sztpd:conveyed-information/boot-images/boot-image=labos-2.0/image-verification": (
            NoteKind.LEFT_OUT
        ),
        "/sztpd:conveyed-information/configurations/configuration=day0-templated/media-type": (
            NoteKind.LEFT_OUT
        ),
        "/sztpd:devices/device=SN-2002/activation-code": NoteKind.CHANGED,
        f"/sztpd:devices/device=SN-2003{response}templated/response/conveyed-information/"
        "via-onboarding-response/config-template-params/config-template-param=hostname": (
            NoteKind.CHANGED
        ),
        f"/sztpd:devices/device=SN-2003{response}templated/response/conveyed-information/"
        "via-onboarding-response/config-template-params/config-template-param=mgmt-vlan": (
            NoteKind.LEFT_OUT
        ),
        f"/sztpd:devices/device=SN-2004{response}callout/response/conveyed-information/"
        "via-dynamic-callout": NoteKind.LEFT_OUT,
        "/yangcore:dynamic-callouts": NoteKind.LEFT_OUT,
        "/yangcore:preferences": NoteKind.LEFT_OUT,
    }
    # Once each, though every device of the type reads its matched responses again.
    assert len(notes) == len(set(notes))


# ---- what both layouts share


@pytest.mark.parametrize("path", [LEGACY, CURRENT, EXAMPLE], ids=lambda path: path.name)
def test_the_fleet_file_validates(path: Path, tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    result = import_sztpd(path, "-o", fleet_file)
    assert result.exit_code == ExitStatus.OK, result.output
    assert (fleet_file.stat().st_mode & 0o777) == 0o600  # it holds password hashes
    fleet, validation = validate(fleet_file)
    assert validation.problems == []
    expected = convert_sztpd(document(path)).fleet
    assert {kind: len(specs) for kind, specs in fleet.resources.items() if specs} == {
        kind.replace("_", "-").removesuffix("s"): len(entries) for kind, entries in expected.items()
    }
    assert result.stdout == ""
    summary = result.stderr.splitlines()[-1]
    assert summary.startswith(f"{path}: sztpd 0.0.")


@pytest.mark.parametrize("path", [LEGACY, CURRENT, EXAMPLE], ids=lambda path: path.name)
def test_no_secret_is_shown(path: Path, tmp_path: Path) -> None:
    secrets = secrets_of(path)
    assert secrets
    result = import_sztpd(path)
    assert result.exit_code == ExitStatus.OK, result.output
    shown = result.stdout + result.stderr
    for secret in secrets:
        assert secret not in shown
    assert "PRIVATE KEY" not in shown
    assert "private_key" not in result.stdout


def test_notes_are_printed_one_a_line_with_their_path() -> None:
    result = import_sztpd(EXAMPLE)
    assert result.stderr.splitlines()[:-1] == [
        "left out: /wn-sztpd-1:admin-accounts: admin accounts have no place in a fleet: the "
        "server's admin API takes tokens (docs/server.md)",
        "changed: /wn-sztpd-1:devices/device=SN-0001/activation-code: given in clear ($0$): "
        "carried as password_hash, the activation code's salted SHA-256 hash",
        "left out: /wn-sztpd-1:devices/device=SN-0002/activation-code: a crypt hash ($5$), "
        "which sztp cannot check: give the device a new code with `sztpctl device "
        "activation-code SERIAL`",
    ]
    assert result.stdout.startswith(
        "# Converted by `sztpctl import sztpd` from example-running.json, a running "
        "configuration of sztpd 0.0.15 (wn-sztpd-1).\nimages:\n"
    )


def test_strict_writes_nothing_when_something_is_left_out(tmp_path: Path) -> None:
    fleet_file = tmp_path / "fleet.yaml"
    result = import_sztpd(EXAMPLE, "--strict", "-o", fleet_file)
    assert result.exit_code == ExitStatus.REFUSED
    assert not fleet_file.exists()
    assert result.stderr.splitlines()[-1].endswith(": nothing written (--strict)")
    # Without anything left out (a hashed code is carried, only changed), it converts.
    whole = document(EXAMPLE)
    del whole["wn-sztpd-1:admin-accounts"]
    whole["wn-sztpd-1:devices"]["device"].pop()
    complete = tmp_path / "complete.json"
    complete.write_text(json.dumps(whole), encoding="utf-8")
    result = import_sztpd(complete, "--strict", "-o", fleet_file)
    assert result.exit_code == ExitStatus.OK, result.output
    assert fleet_file.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"error: cannot read .*missing\.json: No such file or directory"),
        ('{"wn-sztpd-1:devices": {', r"error: .*running\.json:1: not valid JSON"),
        ('{"a": 1, "a": 2}', r"error: .*running\.json: an object repeats the key 'a'"),
        ('{"ietf-interfaces:interfaces": {}}', "error: not an sztpd running configuration"),
        ('"wn-sztpd-1:devices"', "error: not an sztpd running configuration"),
    ],
)
def test_bad_input_fails_with_one_clear_line(
    content: str | None, message: str, tmp_path: Path
) -> None:
    path = tmp_path / ("missing.json" if content is None else "running.json")
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = import_sztpd(path, "-o", tmp_path / "fleet.yaml")
    assert result.exit_code == ExitStatus.ERROR
    assert isinstance(result.exception, SystemExit)
    assert re.fullmatch(message + ".*\n", result.stderr), result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "fleet.yaml").exists()


def test_a_file_that_is_not_text_fails(tmp_path: Path) -> None:
    path = tmp_path / "running.json"
    path.write_bytes(b"\xff\xfe{}")
    result = import_sztpd(path)
    assert result.exit_code == ExitStatus.ERROR
    assert result.stderr == f"error: {path} is not UTF-8 text\n"


# ---- selection rules


@pytest.mark.parametrize(
    ("test", "glob"),
    [
        ({"present": [None]}, "*"),
        ({"value": "DPU-LAB-1"}, "DPU-LAB-1"),
        ({"value": "a*b?[c]"}, "a[*]b[?][[]c]"),
        ({"regex": "^DPU-.*"}, "DPU-*"),
        ({"regex": "LAB"}, "*LAB*"),
        ({"regex": "^7\\.1\\.$"}, "7.1."),
        ({"regex": "^a.c$"}, "a?c"),
        ({"regex": "-1$"}, "*-1"),
        ({"regex": "(sw|rt)-1"}, None),
        ({"regex": "^[0-9]+"}, None),
    ],
)
def test_match_criteria_become_globs_where_they_can(test: dict[str, Any], glob: str | None) -> None:
    whole = document(EXAMPLE)
    [first, _] = whole["wn-sztpd-1:devices"]["device"]
    matched = first["response-manager"]["matched-response"][0]
    matched["match-criteria"] = {"match": [{"key": "hw-model", **test}]}
    [device, _] = convert_sztpd(whole).fleet["devices"]
    rules = device.get("selection", [])
    assert rules == ([] if glob is None else [{"hw_model": glob, "profile": "to-staging"}])


# ---- vouchers (0.0.15): made here, as they expire


def signing_lab() -> tuple[pki.Credential, pki.Credential, pki.Credential]:
    masa_ca = pki.create_root_ca("Test MASA CA")
    masa = pki.issue_signing_certificate(masa_ca, "Test MASA")
    owner_ca = pki.create_root_ca("Test Owner CA")
    return masa, owner_ca, pki.issue_signing_certificate(owner_ca, "Test Owner")


def signed_document(voucher: bytes, owner: pki.Credential, owner_ca: pki.Credential) -> Any:
    whole = copy.deepcopy(document(EXAMPLE))
    chain = cms.certs_only([owner_ca.certificate, owner.certificate])
    whole["wn-sztpd-1:owner-certificates"] = {
        "owner-certificate": [
            {"name": "owner", "without-pki": {"cert-data": base64.b64encode(chain).decode()}}
        ]
    }
    [first, _] = whole["wn-sztpd-1:devices"]["device"]
    first["response-manager"]["matched-response"][1]["response"].update(
        {
            "owner-certificate": {"certificate-reference": "owner", "signing-needed": [None]},
            "ownership-voucher": {"static": {"voucher": base64.b64encode(voucher).decode()}},
        }
    )
    return whole


def test_a_static_voucher_is_carried_and_checked(tmp_path: Path) -> None:
    masa, owner_ca, owner = signing_lab()
    voucher = sign_voucher(create_voucher("SN-0001", owner_ca.certificate), masa)
    running = tmp_path / "running.json"
    running.write_text(json.dumps(signed_document(voucher, owner, owner_ca)), encoding="utf-8")
    fleet_file = tmp_path / "fleet.yaml"
    result = import_sztpd(running, "-o", fleet_file)
    assert result.exit_code == ExitStatus.OK, result.output
    fleet, validation = validate(fleet_file)
    assert validation.problems == []
    assert validation.vouchers_checked == 1
    device = fleet.resources["device"]["SN-0001"]
    assert device["voucher"] == base64.b64encode(voucher).decode()
    assert device["profile"] == "day0-verbose-owner"
    assert fleet.resources["profile"]["day0-verbose-owner"]["signing"] == "required"


def test_an_expired_voucher_is_left_out() -> None:
    masa, owner_ca, owner = signing_lab()
    created = datetime.now(UTC) - timedelta(days=30)
    expired = create_voucher(
        "SN-0001", owner_ca.certificate, now=created, expires_on=created + timedelta(days=1)
    )
    conversion = convert_sztpd(signed_document(sign_voucher(expired, masa), owner, owner_ca))
    [device, _] = conversion.fleet["devices"]
    assert "voucher" not in device
    [note] = [note for note in conversion.notes if note.path.endswith("/static/voucher")]
    assert note.kind is NoteKind.LEFT_OUT
    assert "cannot be stored" in note.reason


# ---- the page


def test_the_page_shows_the_example_document() -> None:
    [shown] = [
        block for block in parse_blocks(PAGE.read_text(encoding="utf-8")) if block.lang == "json"
    ]
    assert json.loads(shown.text) == document(EXAMPLE)


def test_the_page_runs_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    bin_directory = Path(sys.executable).parent
    env = {
        "PATH": f"{bin_directory}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path),
        "COLUMNS": "80",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "LANG": "C.UTF-8",
    }
    shell = Session(work, tmp_path / "harness", env)
    try:
        markdown = PAGE.read_text(encoding="utf-8").replace("/path/to/sztp", str(ROOT))
        result = run_page(PAGE.name, markdown, shell, work, 60.0)
    finally:
        shell.close()
    assert result.problems == []
    assert len(result.ran) == 4

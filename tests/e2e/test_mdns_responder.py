"""sztp-mdns on a real link: a responder namespace and a device namespace joined by a veth pair,
queries by dnspython over real multicast (one-shot legacy unicast, QU and QM from port 5353).

Needs root (namespaces) and nothing else: the fixtures here are the module's own, not the DHCP
lab's, so this module runs without Kea or nginx.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e_lab import Namespaces, Service, in_namespace, run, wait_for
from sztp.protocol.dns_records import (
    bootstrap_srv,
    device_txt,
    parse_device_txt,
    render_zone_fragment,
)

ROOT = Path(__file__).resolve().parents[2]
QUERY = Path(__file__).with_name("mdns_query.py")
RESPONDER_ADDRESS = "10.78.0.1"
DEVICE_ADDRESS = "10.78.0.2"
STARTUP_TIMEOUT = 10.0
SIGNED_SERIAL = "SN-MDNS-1"
UNSIGNED_SERIAL = "SN-MDNS-2"
ADDED_SERIAL = "SN-MDNS-3"
# Stand-ins with the sizes of signed artifacts: every octet value, so escaping is exercised too.
CONVEYED_INFORMATION = bytes(range(256)) * 9
OWNER_CERTIFICATE = bytes(range(255, -1, -1)) * 4
OWNERSHIP_VOUCHER = b"\x30\x82voucher" * 150
TTL = 120


@dataclass
class MdnsLink:
    namespaces: Namespaces
    device: str
    responder: Service
    records: Path


def fragment(serials: dict[str, bytes]) -> str:
    devices = {
        SIGNED_SERIAL: device_txt(
            SIGNED_SERIAL,
            conveyed_information=CONVEYED_INFORMATION,
            owner_certificate=OWNER_CERTIFICATE,
            ownership_voucher=OWNERSHIP_VOUCHER,
        ),
        **{
            serial: device_txt(serial, conveyed_information=value)
            for serial, value in serials.items()
        },
    }
    servers = bootstrap_srv([("sztp-boot.local", 443, 0, 0), ("sztp-boot-2.local", 8443, 1, 0)])
    addresses = (
        f"sztp-boot {TTL} IN A {RESPONDER_ADDRESS}\n"
        f"sztp-boot {TTL} IN AAAA fd00:78::1\n"
        f"sztp-boot-2 {TTL} IN A 10.78.0.3\n"
    )
    return render_zone_fragment(ttl=TTL, devices=devices, servers=servers) + addresses


def responder_command(*arguments: str | Path) -> list[str]:
    return [sys.executable, "-m", "sztp_server.mdns", *map(str, arguments)]


def responder_environment() -> dict[str, str]:
    paths = os.pathsep.join(str(ROOT / part) for part in ("server", "kit"))
    return {**os.environ, "PYTHONPATH": paths}


@pytest.fixture(scope="module")
def link() -> Iterator[MdnsLink]:
    if os.geteuid() != 0:
        pytest.fail("tests/e2e must run as root: it creates network namespaces", pytrace=False)
    suffix = secrets.token_hex(3)
    namespaces = Namespaces(suffix)
    with tempfile.TemporaryDirectory(prefix="sztp-mdns-") as directory:
        try:
            network = namespaces.add("mdns-net")
            device = namespaces.add("mdns-dev")
            near, far = f"sztpm-{suffix}", f"sztpq-{suffix}"
            run(["ip", "link", "add", near, "netns", network, "type", "veth", "peer", far])
            run(["ip", "link", "set", far, "netns", device])
            for namespace, interface, address in (
                (network, near, RESPONDER_ADDRESS),
                (device, far, DEVICE_ADDRESS),
            ):
                run(in_namespace(namespace, "ip", "addr", "add", f"{address}/24", "dev", interface))
                run(in_namespace(namespace, "ip", "link", "set", interface, "up"))
            records = Path(directory) / "mdns.zone"
            records.write_text(fragment({UNSIGNED_SERIAL: b"unsigned" * 40}))
            responder = namespaces.start(
                "sztp-mdns",
                network,
                responder_command(
                    "run", records, "--interface", RESPONDER_ADDRESS, "--log-level", "debug"
                ),
                Path(directory) / "sztp-mdns.log",
                env=responder_environment(),
            )
            wait_for(
                lambda: "mdns responder ready" in responder.output(),
                timeout=STARTUP_TIMEOUT,
                what="sztp-mdns to open its sockets",
                diagnostics=responder.output,
            )
            yield MdnsLink(namespaces, device, responder, records)
        finally:
            namespaces.teardown()


def ask(link: MdnsLink, mode: str, name: str, rdtype: str) -> list[dict[str, object]]:
    result = run(
        in_namespace(link.device, sys.executable, QUERY, mode, DEVICE_ADDRESS, name, rdtype),
        env=responder_environment(),
    )
    if mode == "garbage":
        return []
    replies: list[dict[str, object]] = json.loads(result.stdout)
    return replies


def answer_of(reply: dict[str, object], rdtype: str) -> dict[str, object]:
    answers = reply["answer"]
    assert isinstance(answers, list)
    return next(rrset for rrset in answers if rrset["type"] == rdtype)


def txt_strings(rrset: dict[str, object]) -> list[list[bytes]]:
    rdatas = rrset["rdata"]
    assert isinstance(rdatas, list)
    return [[bytes.fromhex(string) for string in rdata] for rdata in rdatas]


def test_one_shot_query_gets_a_signed_device_in_one_reply(link: MdnsLink) -> None:
    replies = ask(link, "legacy", f"{SIGNED_SERIAL}._sztp.local.", "TXT")
    assert len(replies) == 1, link.responder.output()
    (reply,) = replies
    assert reply["question"] == [f"{SIGNED_SERIAL}._sztp.local. TXT"]
    txt = answer_of(reply, "TXT")
    assert txt["ttl"] == 10  # RFC 6762 §6.7 caps a legacy unicast reply's TTLs
    assert txt["class"] == 1  # no cache-flush bit in a legacy unicast reply
    strings = txt_strings(txt)
    assert all(len(string) == 255 for rdata in strings for string in rdata[:-1])
    assert parse_device_txt(strings) == (
        CONVEYED_INFORMATION,
        OWNER_CERTIFICATE,
        OWNERSHIP_VOUCHER,
    )


def test_one_shot_srv_query_brings_the_target_addresses(link: MdnsLink) -> None:
    (reply,) = ask(link, "legacy", "_sztp._tcp.local.", "SRV")
    assert sorted(answer_of(reply, "SRV")["rdata"]) == [  # type: ignore[type-var]
        "0 0 443 sztp-boot.local.",
        "1 0 8443 sztp-boot-2.local.",
    ]
    additional = {(rrset["name"], rrset["type"]): rrset["rdata"] for rrset in reply["additional"]}  # type: ignore[attr-defined]
    assert additional == {
        ("sztp-boot.local.", "A"): [RESPONDER_ADDRESS],
        ("sztp-boot.local.", "AAAA"): ["fd00:78::1"],
        ("sztp-boot-2.local.", "A"): ["10.78.0.3"],
    }


def test_target_addresses_answer_by_name_and_case_does_not_matter(link: MdnsLink) -> None:
    (reply,) = ask(link, "legacy", "SZTP-Boot.local.", "A")
    assert answer_of(reply, "A")["rdata"] == [RESPONDER_ADDRESS]
    (reply,) = ask(link, "legacy", "sztp-boot.local.", "AAAA")
    assert answer_of(reply, "AAAA")["rdata"] == ["fd00:78::1"]


def test_qu_query_from_5353_gets_a_unicast_reply(link: MdnsLink) -> None:
    (reply,) = ask(link, "qu", f"{UNSIGNED_SERIAL}._sztp.local.", "TXT")
    assert reply["id"] == 0 and reply["question"] == []
    txt = answer_of(reply, "TXT")
    assert txt["ttl"] == TTL
    assert parse_device_txt(txt_strings(txt)) == (b"unsigned" * 40, None, None)


def test_qm_query_gets_a_multicast_reply(link: MdnsLink) -> None:
    (reply,) = ask(link, "qm", "_sztp._tcp.local.", "SRV")
    assert reply["id"] == 0
    assert len(answer_of(reply, "SRV")["rdata"]) == 2  # type: ignore[arg-type]


def test_unknown_names_and_types_get_no_answer(link: MdnsLink) -> None:
    assert ask(link, "legacy", "SN-UNKNOWN._sztp.local.", "TXT") == []
    assert ask(link, "legacy", f"{SIGNED_SERIAL}._sztp.local.", "SRV") == []
    assert ask(link, "legacy", "other-host.local.", "A") == []


def test_malformed_packets_do_not_stop_it(link: MdnsLink) -> None:
    for garbage in ("00", "0000000000010000" + "ff" * 40, "1234" + "00" * 10 + "c00c" * 8):
        ask(link, "garbage", garbage, "-")
    assert link.responder.alive(), link.responder.output()
    (reply,) = ask(link, "legacy", f"{UNSIGNED_SERIAL}._sztp.local.", "TXT")
    assert answer_of(reply, "TXT")
    assert "malformed" in link.responder.output()


def test_sighup_reloads_and_a_bad_file_keeps_the_previous_records(link: MdnsLink) -> None:
    good = link.records.read_text()
    link.records.write_text(fragment({ADDED_SERIAL: b"added" * 10}))
    link.responder.process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: ask(link, "legacy", f"{ADDED_SERIAL}._sztp.local.", "TXT"),
        timeout=STARTUP_TIMEOUT,
        what="the reloaded records",
        diagnostics=link.responder.output,
    )
    assert ask(link, "legacy", f"{UNSIGNED_SERIAL}._sztp.local.", "TXT") == []

    link.records.write_text(good + "broken line without a type\n")
    link.responder.process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: "mdns records not reloaded" in link.responder.output(),
        timeout=STARTUP_TIMEOUT,
        what="the refused reload",
        diagnostics=link.responder.output,
    )
    assert ask(link, "legacy", f"{ADDED_SERIAL}._sztp.local.", "TXT")
    assert link.responder.alive()


def test_a_bad_file_fails_the_start_naming_the_line(tmp_path: Path) -> None:
    records = tmp_path / "mdns.zone"
    records.write_text(fragment({}) + "_sztp._tcp 120 IN SRV 0 0 https sztp-boot.local.\n")
    line = records.read_text().count("\n")
    result = run(
        responder_command("run", records, "--interface", "127.0.0.1"),
        env=responder_environment(),
        check=False,
    )
    assert result.returncode == 2
    assert f"{records}:{line}:" in result.stderr

"""RFC 8572 end to end on real DHCP: Kea hands out option 143 / 136, real clients (ISC
dhclient -4/-6, busybox udhcpc) receive it, the device simulator bootstraps from the lease,
and the option bytes on the wire are checked against a capture."""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from e2e_lab import in_namespace, run
from e2e_pcap import Dhcpv4Message, Dhcpv6Message, dhcp_messages
from e2e_site import (
    BOOTSTRAP_URI_V4,
    BOOTSTRAP_URI_V6,
    DHCP_URIS_V4,
    DHCP_URIS_V6,
    GOOD_SERIALS,
    HW_MODEL,
    IMAGE_NAME,
    MISMATCHED_SERIAL,
    POOL_V4,
    POOL_V6,
    SZTPCTL,
    BootstrapNetwork,
    DhcpResults,
)
from sztpctl.commands.output import ExitStatus

OPTION_V4_SZTP_REDIRECT = 143
OPTION_V6_SZTP_REDIRECT = 136
OPTION_PARAMETER_REQUEST_LIST = 55  # DHCPv4, RFC 2132 §9.8
OPTION_ORO = 6  # DHCPv6 option request option, RFC 8415 §21.7
BOOTREQUEST, BOOTREPLY = 1, 2
SIMULATOR_TIMEOUT = 60.0

# The RFC 8572 §8 framing of DHCP_URIS_V4 / DHCP_URIS_V6, written out by hand: per URI a
# 2-octet big-endian length (22 = 0x0016, 25 = 0x0019), then the URI's ASCII bytes.
EXPECTED_OPTION_143 = (
    bytes.fromhex("0016")
    + b"https://10.77.0.1:8443"
    + bytes.fromhex("0019")
    + b"https://[fd00:77::1]:8443"
)
EXPECTED_OPTION_136 = (
    bytes.fromhex("0019")
    + b"https://[fd00:77::1]:8443"
    + bytes.fromhex("0016")
    + b"https://10.77.0.1:8443"
)


def test_expected_values_describe_the_configured_uris() -> None:
    """Guard the hand-written constants against drifting from the lab's addresses."""
    assert (BOOTSTRAP_URI_V4, BOOTSTRAP_URI_V6) == DHCP_URIS_V4 == DHCP_URIS_V6[::-1]
    v4, v6 = BOOTSTRAP_URI_V4.encode(), BOOTSTRAP_URI_V6.encode()
    assert (len(v4), len(v6)) == (0x16, 0x19)
    assert b"\x00\x16" + v4 + b"\x00\x19" + v6 == EXPECTED_OPTION_143
    assert b"\x00\x19" + v6 + b"\x00\x16" + v4 == EXPECTED_OPTION_136


# --------------------------------------------------------------------------- DHCP clients


def test_dhclient4_lease_carries_option_143(dhcp_results: DhcpResults) -> None:
    assert dhcp_results.dhclient4_payload == EXPECTED_OPTION_143


def test_dhclient6_lease_carries_option_136(dhcp_results: DhcpResults) -> None:
    assert dhcp_results.dhclient6_payload == EXPECTED_OPTION_136


def test_udhcpc_receives_option_143(dhcp_results: DhcpResults) -> None:
    received = dhcp_results.udhcpc_environment.get("opt143")
    assert received is not None, (
        f"udhcpc gave its script no opt143: {dhcp_results.udhcpc_environment}"
    )
    assert bytes.fromhex(received) == EXPECTED_OPTION_143


def _in_pool(address: str, pool: str) -> bool:
    start, _, end = pool.partition("-")
    low, high = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
    candidate = ipaddress.ip_address(address)
    return candidate.version == low.version and low <= candidate <= high


def test_device_got_its_addresses_from_dhcp(dhcp_results: DhcpResults) -> None:
    shown = dhcp_results.device_addresses
    v4 = re.findall(r"inet (\S+)/", shown)
    v6 = re.findall(r"inet6 (\S+)/\d+ scope global", shown)
    assert any(_in_pool(address, POOL_V4) for address in v4), shown
    assert any(_in_pool(address, POOL_V6) for address in v6), shown


# --------------------------------------------------------------------------- on the wire


_Message = TypeVar("_Message", Dhcpv4Message, Dhcpv6Message)


def _assert_replies_carry(
    replies: list[_Message],
    kinds: set[str],
    code: int,
    expected: bytes,
    describe: Callable[[_Message], str],
) -> None:
    """The server's `replies` include every message type in `kinds`, and each carries option
    `code` once, with the `expected` payload; `describe` names a reply in a failure."""
    captured = {message.message_type for message in replies}
    assert kinds <= captured, f"server messages captured: {sorted(captured)}"
    for message in replies:
        instances = message.instances(code)
        assert instances == [expected], f"{describe(message)}: {instances}"


def test_capture_option_143_is_rfc8572_framed(dhcp_results: DhcpResults) -> None:
    v4, _ = dhcp_messages(dhcp_results.capture)
    # One option instance each: the payload fits in 255 bytes, so Kea must not split it.
    _assert_replies_carry(
        [message for message in v4 if message.op == BOOTREPLY],
        {"OFFER", "ACK"},
        OPTION_V4_SZTP_REDIRECT,
        EXPECTED_OPTION_143,
        lambda reply: f"{reply.message_type} to {reply.client_hardware_address.hex(':')}",
    )
    # Both clients (dhclient via dhclient.conf, udhcpc via -O 143) asked for the option.
    requests = [message for message in v4 if message.op == BOOTREQUEST]
    assert requests
    for message in requests:
        requested = message.option(OPTION_PARAMETER_REQUEST_LIST) or b""
        assert OPTION_V4_SZTP_REDIRECT in requested, (message.message_type, requested.hex())


def test_capture_option_136_is_rfc8572_framed(dhcp_results: DhcpResults) -> None:
    _, v6 = dhcp_messages(dhcp_results.capture)
    _assert_replies_carry(
        [message for message in v6 if message.message_type in ("ADVERTISE", "REPLY")],
        {"ADVERTISE", "REPLY"},
        OPTION_V6_SZTP_REDIRECT,
        EXPECTED_OPTION_136,
        lambda reply: f"{reply.message_type} {reply.transaction_id:06x}",
    )
    requests = [message for message in v6 if message.message_type in ("SOLICIT", "REQUEST")]
    assert requests
    for message in requests:
        oro = message.option(OPTION_ORO) or b""
        codes = [int.from_bytes(oro[index : index + 2], "big") for index in range(0, len(oro), 2)]
        assert OPTION_V6_SZTP_REDIRECT in codes, (message.message_type, codes)


# --------------------------------------------------------------------------- bootstrapping


def _simulate(lab: BootstrapNetwork, serial: str, option_hex: str) -> tuple[int, str]:
    """`sztpctl simulate run` inside the device namespace, starting from a DHCP option."""
    pki = lab.files.pki
    certificate, key = lab.files.idevid(serial)
    result = run(
        in_namespace(
            lab.topology.device,
            SZTPCTL,
            "simulate",
            "run",
            "--serial",
            serial,
            "--dhcp-option-hex",
            option_hex,
            "--idevid-cert",
            certificate,
            "--idevid-key",
            key,
            "--trust-anchor",
            pki / "manufacturer" / "ca.pem",
            "--server-ca",
            pki / "tls" / "ca.pem",
            "--file-server-ca",
            pki / "tls" / "ca.pem",
            "--hw-model",
            HW_MODEL,
            "--os-name",
            "LabOS",
            "--os-version",
            "1.0",
            "--work-dir",
            lab.files.directory / f"device-{serial}",
            "--timeout",
            "10",
        ),
        check=False,
        timeout=SIMULATOR_TIMEOUT,
    )
    output = f"{result.stdout}\n{result.stderr}"
    assert "Traceback" not in output, output
    return result.returncode, output


def _status(lab: BootstrapNetwork, serial: str) -> dict[str, Any]:
    return json.loads(lab.sztpctl("device", "status", serial, "--output", "json").stdout)


def _reports(lab: BootstrapNetwork, serial: str) -> list[dict[str, Any]]:
    """The device's progress reports as the server stored them, oldest first."""
    history = json.loads(lab.sztpctl("device", "history", serial, "--output", "json").stdout)
    return [report for attempt in history["attempts"] for report in attempt["reports"]]


# reporting_level verbose: every step, twice around the "reboot" into the new image.
EXPECTED_REPORTS = [
    "bootstrap-initiated",
    "parsing-initiated",
    "parsing-complete",
    "boot-image-initiated",
    "boot-image-mismatch",
    "boot-image-installed-rebooting",
    "bootstrap-initiated",
    "parsing-initiated",
    "parsing-complete",
    "boot-image-initiated",
    "boot-image-complete",
    "config-initiated",
    "config-complete",
    "bootstrap-complete",
]


@pytest.mark.parametrize(
    ("serial", "family"), [("SN-0001", "v4"), ("SN-0002", "v6")], ids=["dhcpv4", "dhcpv6"]
)
def test_device_bootstraps_from_the_lease(
    bootstrap_network: BootstrapNetwork, dhcp_results: DhcpResults, serial: str, family: str
) -> None:
    lab = bootstrap_network
    if family == "v4":
        # Verbatim from the lease file, as an operator would paste it.
        option, first_uri, pool = dhcp_results.dhclient4_lease_value, DHCP_URIS_V4[0], POOL_V4
    else:
        option, first_uri, pool = dhcp_results.dhclient6_payload.hex(), DHCP_URIS_V6[0], POOL_V6
    returncode, output = _simulate(lab, serial, option)
    assert returncode == 0, f"{output}\n{lab.logs('sztp-server', 'nginx')}"
    assert f"bootstrap complete: {serial} runs LabOS 1.2" in output, output
    assert f"{first_uri}: trusted server" in output, f"not started from {first_uri}:\n{output}"

    status = _status(lab, serial)
    assert status["status"] == "complete", f"{status}\n{lab.logs('sztp-server')}"
    last = status["last_report"]
    assert last["progress_type"] == "bootstrap-complete", status
    assert [key["algorithm"] for key in last["ssh_host_keys"]] == ["ssh-ed25519"], status
    # The device spoke from the address its DHCP lease gave it.
    assert _in_pool(last["source_address"], pool), status

    reports = _reports(lab, serial)
    assert [report["progress_type"] for report in reports] == EXPECTED_REPORTS, reports
    access_log = (lab.files.directory / "nginx" / "access.log").read_text()
    assert f'GET /{IMAGE_NAME} HTTP/1.1" 200' in access_log, access_log


def test_device_with_mismatched_voucher_is_refused_before_it_is_stored(
    bootstrap_network: BootstrapNetwork,
) -> None:
    """SN-0003's voucher is valid for its serial but pins another owner's CA: a device would
    reject the signed data, so the fleet is refused offline and by the server, naming the
    device, and nothing of it is stored (the device's own refusal of such data is the
    simulator's, tested in tests/python/test_simulator.py)."""
    lab = bootstrap_network
    problem = "is not authorised by the voucher's pinned-domain-cert"
    validated = lab.sztpctl("validate", "-f", lab.files.mismatched_fleet, check=False)
    assert validated.returncode == 1, validated.stdout + validated.stderr
    assert problem in validated.stdout + validated.stderr
    applied = lab.sztpctl("apply", "-f", lab.files.mismatched_fleet, check=False)
    assert applied.returncode == ExitStatus.REFUSED, applied.stdout + applied.stderr
    assert f"devices[{len(GOOD_SERIALS)}].voucher" in applied.stderr, applied.stderr
    assert problem in applied.stderr, applied.stderr
    status = lab.sztpctl("device", "status", MISMATCHED_SERIAL, check=False)
    assert status.returncode != 0, status.stdout

"""The agent's DHCP lease discovery against real clients: ISC dhclient -4 and -6, configured
with the snippets the agent ships (agent/sztp_agent/data/), get leases from the lab's Kea,
and `find_offers` reads the lab's bootstrap URIs, the server's identity and the leased
address back from the lease files they wrote.

A capture shows that the snippets make dhclient ask for options 143 / 136 (Kea sends them
regardless, ISC dhcpd only when asked). Runs without the snippets show how dhclient writes
options nobody declared. dhclient's script variables are what NetworkManager's dhclient
backend turns into its D-Bus `Options`, so they are read the way the agent reads those.
"""

from __future__ import annotations

import ipaddress
import signal
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import pytest

from e2e_lab import wait_for
from e2e_pcap import CaptureFormatError, dhcp_messages
from e2e_site import (
    DHCP_URIS_V4,
    DHCP_URIS_V6,
    NETWORK_V4,
    POOL_V4,
    POOL_V6,
    STARTUP_TIMEOUT,
    SUBNET_V4,
    BootstrapNetwork,
    bound_dhclient,
    start_dhcp_capture,
)
from sztp.protocol.dhcp import encode_uri_list
from sztp_agent.discovery import LeaseLocations, LeaseOffer, find_offers
from sztp_agent.discovery.networkmanager import parse_dhcp_options

OPTION_PARAMETER_REQUEST_LIST = 55  # DHCPv4, RFC 2132 §9.8
OPTION_ROUTERS = 3
OPTION_ORO = 6  # DHCPv6 option request option, RFC 8415 §21.7
OPTION_SERVER_ID = 2  # DHCPv6, RFC 8415 §21.3
OPTION_DNS_SERVERS = 23  # DHCPv6, RFC 3646
BOOTREQUEST = 1

# Records what dhclient hands its script and configures nothing: the lease file is what the
# agent reads, and the lab's own dhclient runs configure the device's addresses.
_SCRIPT = """#!/bin/sh
case "$reason" in
  BOUND|BOUND6) env | grep '^new_' > "{variables}.$reason" ;;
esac
echo "$reason" >> "{events}"
exit 0
"""


@dataclass(frozen=True)
class ClientRuns:
    """Lease directories of dhclient -4 and -6 with the shipped snippets and with none, what
    dhclient gave its script (family -> variables, snippet runs) and their capture."""

    with_snippets: Path
    without_snippets: Path
    variables: dict[int, dict[str, str]]
    capture: Path
    started: datetime
    interface: str


def _snippet(name: str) -> Path:
    """A shipped client snippet, from the installed package."""
    return Path(str(resources.files("sztp_agent") / "data" / name))


def _run_dhclient(
    lab: BootstrapNetwork, dhclient: str, family: int, config: Path, leases: Path
) -> dict[str, str]:
    """dhclient -4 or -6 until it has bound; the variables it gave its script then."""
    work = leases.parent
    events = work / f"events{family}"
    variables = work / "variables"
    bound = "BOUND" if family == 4 else "BOUND6"
    script = work / f"script{family}"
    script.write_text(_SCRIPT.format(variables=variables, events=events))
    script.chmod(0o755)
    with bound_dhclient(
        lab,
        dhclient,
        family,
        config=config,
        leases=leases,
        script=script,
        events=events,
        work=work,
        purpose=f"{work.name}, {config.name}",
    ):
        lines = Path(f"{variables}.{bound}").read_text().splitlines()
    return dict(line.removeprefix("new_").partition("=")[::2] for line in lines)


def _captured(capture: Path) -> bool:
    try:
        v4, v6 = dhcp_messages(capture)
    except (CaptureFormatError, FileNotFoundError):
        return False  # tcpdump may be in the middle of writing a record
    return any(m.message_type == "ACK" for m in v4) and any(m.message_type == "REPLY" for m in v6)


@pytest.fixture(scope="module")
def client_runs(binaries: dict[str, str], bootstrap_network: BootstrapNetwork) -> ClientRuns:
    lab, topology = bootstrap_network, bootstrap_network.topology
    root = lab.files.directory / "agent-leases"
    with_snippets, without_snippets = root / "with-snippets", root / "without-snippets"
    for directory in (with_snippets, without_snippets):
        directory.mkdir(parents=True)
    no_configuration = root / "empty.conf"
    no_configuration.write_text("")
    capture = root / "dhcp.pcap"
    started = datetime.now(UTC).replace(microsecond=0)
    tcpdump = start_dhcp_capture(
        topology, binaries["tcpdump"], "tcpdump (agent leases)", capture, root / "tcpdump.log"
    )
    variables: dict[int, dict[str, str]] = {}
    try:
        # Only the snippet runs are captured: every request in the capture is theirs.
        for family, snippet, leases in (
            (4, "dhclient-sztp.conf", "dhclient.leases"),
            (6, "dhclient6-sztp.conf", "dhclient6.leases"),
        ):
            variables[family] = _run_dhclient(
                lab, binaries["dhclient"], family, _snippet(snippet), with_snippets / leases
            )
        wait_for(
            lambda: _captured(capture),
            timeout=STARTUP_TIMEOUT,
            what="the DHCP replies in the capture",
            diagnostics=tcpdump.output,
        )
    finally:
        tcpdump.stop(signal.SIGINT)
    for family, leases in ((4, "dhclient.leases"), (6, "dhclient6.leases")):
        _run_dhclient(
            lab, binaries["dhclient"], family, no_configuration, without_snippets / leases
        )
    return ClientRuns(
        with_snippets,
        without_snippets,
        variables,
        capture,
        started,
        topology.device_interface,
    )


def _locations(dhclient_leases: Path) -> LeaseLocations:
    """Only the lab's dhclient leases: nothing of this host's own clients or D-Bus."""
    nowhere = dhclient_leases / "nowhere"
    return LeaseLocations(
        dhclient=(dhclient_leases,),
        dhclient_configs=(),
        networkd=nowhere,
        networkmanager=(),
        busctl=None,
    )


def _in_pool(address: str | None, pool: str) -> bool:
    start, _, end = pool.partition("-")
    low, high = ipaddress.ip_address(start.strip()), ipaddress.ip_address(end.strip())
    candidate = ipaddress.ip_address(address or "")
    return candidate.version == low.version and int(low) <= int(candidate) <= int(high)


def _server_duid(capture: Path) -> str:
    """Kea's DUID as it put it in its DHCPv6 replies (two-digit colon-separated hex)."""
    _, v6 = dhcp_messages(capture)
    duids = {m.option(OPTION_SERVER_ID) for m in v6 if m.message_type in ("ADVERTISE", "REPLY")}
    (duid,) = duids
    assert duid is not None, "Kea's DHCPv6 replies carry no server identifier"
    return duid.hex(":")


def _check_offers(offers: list[LeaseOffer], runs: ClientRuns, source: Path) -> None:
    """The v4 and v6 offers carry the lab's URIs, Kea's identity and a pool address."""
    assert [(offer.interface, offer.family) for offer in offers] == [
        (runs.interface, 4),
        (runs.interface, 6),
    ], offers
    v4, v6 = offers
    now = datetime.now(UTC)
    assert v4.client == v6.client == "dhclient"
    assert v4.uris == DHCP_URIS_V4, v4
    assert v4.payload == encode_uri_list(list(DHCP_URIS_V4))
    assert v4.server_id == NETWORK_V4, v4
    assert _in_pool(v4.address, POOL_V4), v4
    assert v4.network == SUBNET_V4, v4
    assert v4.obtained_at is not None and runs.started <= v4.obtained_at <= now, v4
    assert v4.source == source / "dhclient.leases"
    assert v6.uris == DHCP_URIS_V6, v6
    assert v6.payload == encode_uri_list(list(DHCP_URIS_V6))
    assert v6.server_id == _server_duid(runs.capture), v6
    assert _in_pool(v6.address, POOL_V6), v6
    assert v6.network is None, v6
    assert v6.obtained_at is not None and runs.started <= v6.obtained_at <= now, v6
    assert v6.source == source / "dhclient6.leases"
    assert v4.problems == v6.problems == (), offers


def test_shipped_snippets_ask_for_the_options(client_runs: ClientRuns) -> None:
    v4, v6 = dhcp_messages(client_runs.capture)
    requests = [message for message in v4 if message.op == BOOTREQUEST]
    assert requests
    for message in requests:
        requested = message.option(OPTION_PARAMETER_REQUEST_LIST) or b""
        # `also request`: option 143 joins dhclient's own requests instead of replacing them.
        assert {143, OPTION_ROUTERS} <= set(requested), (message.message_type, requested.hex())
    solicits = [message for message in v6 if message.message_type in ("SOLICIT", "REQUEST")]
    assert solicits
    for solicit in solicits:
        oro = solicit.option(OPTION_ORO) or b""
        codes = {int.from_bytes(oro[index : index + 2], "big") for index in range(0, len(oro), 2)}
        assert {136, OPTION_DNS_SERVERS} <= codes, (solicit.message_type, codes)


def test_find_offers_reads_the_lab_servers_from_dhclient_leases(client_runs: ClientRuns) -> None:
    directory = client_runs.with_snippets
    offers = find_offers(_locations(directory), interfaces=[client_runs.interface])
    _check_offers(offers, client_runs, directory)
    assert find_offers(_locations(directory), interfaces=["no-such-if"]) == []


def test_find_offers_reads_options_no_configuration_declared(client_runs: ClientRuns) -> None:
    directory = client_runs.without_snippets
    # dhclient keeps an option the server sent unasked under its number.
    assert "option unknown-143 0:16:68:74" in (directory / "dhclient.leases").read_text()
    assert "option dhcp6.unknown-136 0:19:68:74" in (directory / "dhclient6.leases").read_text()
    offers = find_offers(_locations(directory), interfaces=[client_runs.interface])
    _check_offers(offers, client_runs, directory)


def test_dhclient_variables_read_as_networkmanager_reports_them(client_runs: ClientRuns) -> None:
    """NetworkManager's dhclient backend publishes dhclient's script variables, `new_` cut
    off, as the DHCP4Config / DHCP6Config `Options` the agent reads over D-Bus."""
    v4_options, v6_options = client_runs.variables[4], client_runs.variables[6]
    assert "sztp_redirect" in v4_options, v4_options
    assert "dhcp6_sztp_redirect" in v6_options, v6_options
    source = Path("/org/freedesktop/NetworkManager/DHCP4Config/1")
    v4 = parse_dhcp_options(v4_options, interface=client_runs.interface, family=4, source=source)
    assert v4.uris == DHCP_URIS_V4, v4
    assert (v4.server_id, v4.network, v4.problems) == (NETWORK_V4, SUBNET_V4, ()), v4
    assert _in_pool(v4.address, POOL_V4), v4
    assert v4.obtained_at is not None and v4.obtained_at >= client_runs.started, v4
    v6 = parse_dhcp_options(v6_options, interface=client_runs.interface, family=6, source=source)
    assert v6.uris == DHCP_URIS_V6, v6
    assert (v6.server_id, v6.problems) == (_server_duid(client_runs.capture), ()), v6
    assert _in_pool(v6.address, POOL_V6), v6
    assert v6.obtained_at is not None and v6.obtained_at >= client_runs.started, v6

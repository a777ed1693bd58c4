"""`.local` bootstrap servers found and reached over mDNS (RFC 6762 §3): discovery keeps the
addresses an SRV answer brings along for its target, else asks A/AAAA one-shot queries, and
refuses what a hostile answer slips in; the device's transport connects to those addresses while
TLS verifies the certificate for the name, and resolves other `.local` names (a redirect's) over
mDNS when it first meets them. A UDP socket on a loopback port stands in for the responder, a
TLS server on 127.0.0.1 or ::1 for the bootstrap server."""

from __future__ import annotations

import random
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
import requests

from mdns_stub import OneShotResponder
from sztp.dns_discovery import (
    MAX_HOST_ADDRESSES,
    MAX_TARGETS_ASKED,
    DnsServer,
    DnsSettings,
    MdnsAnswer,
    discover,
    host_addresses,
)
from sztp.labpki import LabPki, write_lab_pki
from sztp.simulator import DeviceIdentity, SimulatorConfig
from sztp.simulator.local_names import LocalNames
from sztp.simulator.transport import Transport

SERVER_NAME = "sztp-boot.local"
OTHER_NAME = "elsewhere.local"
UNSPECIFIED_V4 = "0.0.0.0"  # noqa: S104 - an address an answer gives, nothing bound to it
SERIAL = "SN-L1"

Answer = Callable[[dns.message.Message], list[dns.message.Message]]


def response(
    query: dns.message.Message,
    answer: list[dns.rrset.RRset],
    additional: Sequence[dns.rrset.RRset] = (),
) -> dns.message.Message:
    message = dns.message.make_response(query)
    message.flags |= dns.flags.AA
    message.answer = list(answer)
    message.additional = list(additional)
    return message


def rrset(name: str, rdtype: str, *values: str) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(name + ".", 10, "IN", rdtype, list(values))


def srv(*targets: str) -> dns.rrset.RRset:
    return rrset("_sztp._tcp.local", "SRV", *(f"0 0 8443 {target}." for target in targets))


def discover_with(responder: OneShotResponder, messages: list[str]) -> list[DnsServer]:
    found = discover(
        SERIAL,
        DnsSettings(domains=(), mdns=True, mdns_timeout=0.3),
        log=messages.append,
        rng=random.Random(1),  # noqa: S311 - a reproducible draw, no secret
        mdns_groups=[responder.group],
    )
    assert all(isinstance(source, DnsServer) for source in found)
    return [source for source in found if isinstance(source, DnsServer)]


def asked(question: dns.message.Message, name: str, rdtype: str) -> bool:
    q = question.question[0]
    return q.name.to_text(True) == name and dns.rdatatype.to_text(q.rdtype) == rdtype


# ---- discovery


def test_the_srv_answer_brings_the_targets_addresses_and_no_more_is_asked() -> None:
    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        if not asked(query, "_sztp._tcp.local", "SRV"):
            return []
        return [
            response(
                query,
                [srv(SERVER_NAME)],
                [
                    rrset(SERVER_NAME, "AAAA", "2001:db8::10"),
                    rrset(SERVER_NAME, "A", "192.0.2.10"),
                    # Records for a name the SRV answer does not target are not taken.
                    rrset(OTHER_NAME, "AAAA", "2001:db8::66"),
                ],
            )
        ]

    messages: list[str] = []
    with OneShotResponder(answer) as responder:
        servers = discover_with(responder, messages)
    assert servers == [
        DnsServer(
            f"https://{SERVER_NAME}:8443",
            "mDNS SRV _sztp._tcp.local",
            ("2001:db8::10", "192.0.2.10"),
        )
    ]
    assert [rdtype for _, rdtype in responder.questions] == ["TXT", "SRV"]
    assert f"mDNS {SERVER_NAME}: 2001:db8::10, 192.0.2.10 (from the SRV answer)" in messages


def test_without_addresses_in_the_srv_answer_the_target_is_asked_for() -> None:
    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        if asked(query, "_sztp._tcp.local", "SRV"):
            return [response(query, [srv(SERVER_NAME)])]
        if asked(query, SERVER_NAME, "AAAA"):
            # An answer for another name and one to no query come first: both skipped.
            other = dns.message.make_query(OTHER_NAME + ".", "AAAA")
            stray = response(other, [rrset(OTHER_NAME, "AAAA", "2001:db8::66")])
            wrong = response(query, [rrset(OTHER_NAME, "AAAA", "2001:db8::67")])
            right = response(query, [rrset(SERVER_NAME, "AAAA", "2001:db8::10", "fd00::10")])
            return [stray, wrong, right]
        return []

    messages: list[str] = []
    with OneShotResponder(answer) as responder:
        servers = discover_with(responder, messages)
    assert sorted(servers[0].addresses) == ["2001:db8::10", "fd00::10"]
    # AAAA and A are asked together; the first answer settles it, so the responder may not
    # have read the A query yet.
    assert responder.questions[2] == (SERVER_NAME, "AAAA")
    # dnspython shuffles the records of an rrset on the wire, so either order may come.
    assert {
        f"mDNS {SERVER_NAME}: 2001:db8::10, fd00::10 (asked over mDNS)",
        f"mDNS {SERVER_NAME}: fd00::10, 2001:db8::10 (asked over mDNS)",
    } & set(messages)


def test_a_target_nothing_answers_for_has_no_addresses() -> None:
    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        if asked(query, "_sztp._tcp.local", "SRV"):
            return [response(query, [srv(SERVER_NAME)])]
        return []

    messages: list[str] = []
    with OneShotResponder(answer) as responder:
        servers = discover_with(responder, messages)
    assert servers == [DnsServer(f"https://{SERVER_NAME}:8443", "mDNS SRV _sztp._tcp.local")]
    assert f"mDNS AAAA {SERVER_NAME}, A {SERVER_NAME}: no answer within 0.3 s" in messages


def test_hostile_addresses_are_refused_and_bounded() -> None:
    many = [f"2001:db8::{index:x}" for index in range(1, 3 * MAX_HOST_ADDRESSES)]
    unusable = ["ff02::1", "::", "fe80::1"]  # multicast, unspecified, link-local unscoped

    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        if not asked(query, "_sztp._tcp.local", "SRV"):
            return []
        # IN with the cache-flush bit, which no legacy unicast answer carries (RFC 6762 §10.2).
        flushing = dns.rrset.from_text(SERVER_NAME + ".", 10, "CLASS32769", "A", r"\# 4 c0000263")
        return [
            response(
                query,
                [srv(SERVER_NAME)],
                [
                    rrset(SERVER_NAME, "AAAA", *unusable),
                    rrset(SERVER_NAME, "A", "224.0.0.251", UNSPECIFIED_V4, "255.255.255.255"),
                    flushing,
                    rrset(SERVER_NAME, "AAAA", *many),
                ],
            )
        ]

    messages: list[str] = []
    with OneShotResponder(answer) as responder:
        servers = discover_with(responder, messages)
    # The order of records within an RRset is the sender's to choose.
    assert len(servers[0].addresses) == MAX_HOST_ADDRESSES
    assert set(servers[0].addresses) < set(many)
    assert f"mDNS {SERVER_NAME}: 6 unusable address(es) ignored" in messages


def test_follow_up_queries_are_bounded_per_srv_answer() -> None:
    targets = [f"host{index}.local" for index in range(MAX_TARGETS_ASKED + 3)]

    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        if asked(query, "_sztp._tcp.local", "SRV"):
            return [response(query, [srv(*targets)])]
        return []

    with OneShotResponder(answer) as responder:
        servers = discover_with(responder, [])
    assert len(servers) == len(targets)
    hosts_asked = {name for name, rdtype in responder.questions if rdtype in ("A", "AAAA")}
    assert len(hosts_asked) == MAX_TARGETS_ASKED


def test_a_link_local_address_is_kept_only_with_its_interface() -> None:
    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        if asked(query, SERVER_NAME, "AAAA"):
            return [response(query, [rrset(SERVER_NAME, "AAAA", "fe80::10", "2001:db8::10")])]
        return []

    # From ::1, not a link-local sender: the answer says nothing of the link.
    messages: list[str] = []
    with OneShotResponder(answer, socket.AF_INET6) as responder:
        names = LocalNames(messages.append, timeout=0.5, groups=[responder.group])
        assert names.addresses(SERVER_NAME) == ("2001:db8::10",)
    assert f"mDNS {SERVER_NAME}: 1 unusable address(es) ignored" in messages
    name = dns.name.from_text(SERVER_NAME)
    over_eth0 = MdnsAnswer([], [rrset(SERVER_NAME, "AAAA", "fe80::10")], "eth0")
    assert host_addresses(name, over_eth0, messages.append) == ("fe80::10%eth0",)


# ---- the transport


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(
        tmp_path_factory.mktemp("lab"), [SERIAL], server_names=[SERVER_NAME, "other.local"]
    )


@pytest.fixture(scope="module")
def wrong_lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(
        tmp_path_factory.mktemp("wrong-lab"), [SERIAL], server_names=["nope.local"]
    )


class TlsServer:
    """HTTPS on a loopback address with the lab's server certificate; records Host headers."""

    def __init__(self, credentials: LabPki, address: str) -> None:
        hosts: list[str] = []
        self.hosts = hosts

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hosts.append(self.headers.get("Host", ""))
                body = b"hello"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        server_class = type("Server", (ThreadingHTTPServer,), {"address_family": family})
        self.httpd = server_class((address, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(credentials.server.certificate, credentials.server.private_key)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture(params=["127.0.0.1", "::1"])
def tls_server(request: pytest.FixtureRequest, lab: LabPki) -> Iterator[TlsServer]:
    server = TlsServer(lab, request.param)
    yield server
    server.close()


def transport(lab: LabPki, messages: list[str], *, mdns: bool = True) -> Transport:
    device = lab.devices[SERIAL]
    identity = DeviceIdentity(SERIAL, device.idevid.certificate, device.idevid.private_key)
    config = SimulatorConfig(timeout=5, dns=DnsSettings(mdns=mdns, mdns_timeout=0.5))
    return Transport(config, identity, messages.append)


def test_the_transport_connects_to_the_address_and_verifies_the_name(
    lab: LabPki, tls_server: TlsServer
) -> None:
    address = tls_server.httpd.server_address[0]
    messages: list[str] = []
    device = transport(lab, messages)
    uri = f"https://{SERVER_NAME}:{tls_server.port}"
    device.local_names.learn(uri, [address])
    with device.session:
        reply = device.session.get(uri + "/", verify=str(lab.tls_ca.certificate), timeout=5)
    assert reply.status_code == 200 and reply.content == b"hello"
    assert tls_server.hosts == [f"{SERVER_NAME}:{tls_server.port}"]
    assert not messages  # known from discovery: nothing asked over mDNS


def test_a_certificate_for_another_name_is_refused(wrong_lab: LabPki, lab: LabPki) -> None:
    server = TlsServer(wrong_lab, "127.0.0.1")
    device = transport(lab, [])
    uri = f"https://{SERVER_NAME}:{server.port}"
    device.local_names.learn(uri, ["127.0.0.1"])
    # Trusting the issuer of the wrong certificate: only the name can refuse it.
    try:
        with device.session, pytest.raises(requests.exceptions.SSLError, match="Hostname mismatch"):
            device.session.get(uri + "/", verify=str(wrong_lab.tls_ca.certificate), timeout=5)
    finally:
        server.close()
    assert server.hosts == []


def test_only_local_names_are_resolved_over_mdns(lab: LabPki) -> None:
    names = LocalNames(lambda _: None, timeout=0.1, groups=[])
    names.learn("https://sztp.example.net:8443", ["127.0.0.1"])
    names.learn("https://[2001:db8::1]:8443", ["127.0.0.1"])
    assert names.addresses("sztp.example.net") == ()
    assert names.addresses("2001:db8::1") == ()
    names.learn(f"https://{SERVER_NAME.upper()}.:8443", ["127.0.0.1"])
    assert names.addresses(SERVER_NAME) == ("127.0.0.1",)


def test_a_local_name_met_later_is_asked_for_over_mdns(lab: LabPki, tls_server: TlsServer) -> None:
    address = tls_server.httpd.server_address[0]
    rdtype = "AAAA" if ":" in address else "A"

    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        if asked(query, "other.local", rdtype):
            return [response(query, [rrset("other.local", rdtype, address)])]
        return []

    messages: list[str] = []
    device = transport(lab, messages)
    uri = f"https://other.local:{tls_server.port}"
    with OneShotResponder(answer) as responder:
        device.local_names.groups = [responder.group]
        with device.session:
            for _ in range(2):
                reply = device.session.get(uri + "/", verify=str(lab.tls_ca.certificate), timeout=5)
                assert reply.status_code == 200
    # Asked once (AAAA and A together), the address kept for the next request.
    assert sorted(responder.questions) == [("other.local", "A"), ("other.local", "AAAA")]
    assert f"mDNS other.local: {address}" in messages


def test_a_device_told_not_to_use_mdns_asks_nothing_for_a_local_name(lab: LabPki) -> None:
    def answer(query: dns.message.Message) -> list[dns.message.Message]:
        return [response(query, [rrset("other.local", "A", "127.0.0.1")])]

    device = transport(lab, [], mdns=False)
    with OneShotResponder(answer) as responder:
        device.local_names.groups = [responder.group]
        assert device.local_names.addresses("other.local") == ()
    assert responder.questions == []

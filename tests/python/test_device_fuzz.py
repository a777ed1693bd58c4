"""Fuzzing the device RESTCONF API (the two RFC 8572 RPCs) of a real sztp-server on loopback TLS.

Hypothesis builds requests from the YANG input shapes of `get-bootstrapping-data` and
`report-progress`, then breaks them: wrong types, huge and unprintable strings, unknown and
duplicate members, deep nesting, DTDs and entities, wrong namespaces, invalid UTF-8, odd
Content-Type, Accept, Authorization and proxy certificate headers, and paths that are no RPC.
Whatever arrives, the server answers below 500; an RPC's refusal is an `ietf-restconf:errors`
body in the negotiated format; no unhandled exception reaches the server log; and real devices
(one with an IDevID, one with a password) are still served afterwards.

The examples are derandomised, so CI tries the same inputs on every run: a failure reproduces
and a pass is not luck. For an exploratory run with new random inputs (a failure is then
replayed from .hypothesis/), set how many examples each test tries:
    SZTP_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/python/test_device_fuzz.py
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sztp.errors import ValidationError
from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import restconf
from sztp.protocol.restconf import WireFormat
from sztp_testing import RunningServer, lab_voucher, running_server

CERT_SERIAL = "FUZZ-CERT"
PASSWORD_SERIAL = "FUZZ-PASS"
PASSWORD = "fuzz password 1"
PROXY_HEADER = "X-SSL-Client-Cert"
GET_DATA = restconf.operation_path("/restconf", restconf.RPC_GET_BOOTSTRAPPING_DATA)
REPORT = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)
INPUT = restconf.INPUT_PATH
FORMAT_BY_MEDIA_TYPE = {wire_format.media_type: wire_format for wire_format in WireFormat}
JSON_TYPE = WireFormat.JSON.media_type.encode()
XML_TYPE = WireFormat.XML.media_type.encode()

_EXPLORE_EXAMPLES = int(os.environ.get("SZTP_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int) -> settings:
    """`examples` per test in CI, derandomised; SZTP_FUZZ_EXAMPLES explores at random instead."""
    common = settings(
        deadline=None,
        # Bodies are large by design, and each example is a real HTTPS exchange.
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )
    if _EXPLORE_EXAMPLES:
        # Random inputs; a failure is saved in, and replayed from, the example database.
        return settings(common, max_examples=_EXPLORE_EXAMPLES)
    return settings(common, max_examples=examples, derandomize=True, database=None)


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str | None
    body: bytes
    logged: str  # what the server logged while answering


@dataclass(frozen=True)
class Attempt:
    """One request as sent; header values are bytes so they can hold any octet HTTP allows."""

    method: str
    path: str
    headers: tuple[tuple[str, bytes], ...]
    body: bytes
    client_certificate: bool

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[0].decode("latin-1") if values else None


@dataclass
class FuzzSite:
    lab: LabPki
    server: RunningServer
    anonymous_tls: ssl.SSLContext
    device_tls: ssl.SSLContext

    def send(self, attempt: Attempt) -> Reply:
        """One request on a new connection; the reply carries what the server logged meanwhile."""
        log = self.server.directory / "server.log"
        logged_before = log.stat().st_size
        host, port = self.server.device_url.removeprefix("https://").rsplit(":", 1)
        context = self.device_tls if attempt.client_certificate else self.anonymous_tls
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=60)
        try:
            connection.putrequest(attempt.method, attempt.path, skip_accept_encoding=True)
            for name, value in attempt.headers:
                connection.putheader(name, value)
            connection.putheader("Content-Length", str(len(attempt.body)))
            connection.endheaders(attempt.body)
            response = connection.getresponse()
            status, content_type, body = (
                response.status, response.getheader("Content-Type"), response.read()
            )  # fmt: skip
        finally:
            connection.close()
        with log.open("rb") as stream:
            stream.seek(logged_before)
            logged = stream.read().decode(errors="replace")
        return Reply(status, content_type, body, logged)


def _tls_context(lab: LabPki, serial: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(lab.tls_ca.certificate))
    if serial is not None:
        idevid = lab.devices[serial].idevid
        context.load_cert_chain(str(idevid.certificate), str(idevid.private_key))
    return context


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzSite]:
    root = tmp_path_factory.mktemp("fuzz")
    lab = write_lab_pki(root / "pki", [CERT_SERIAL, PASSWORD_SERIAL], hw_model="fuzz-x1")
    # Loopback is a trusted proxy, so the client certificate header is parsed (and fuzzed) too.
    # The report rate limit would answer 429 before the body parser ever saw most examples,
    # and the failed-login limit for a serial before its password was ever checked again.
    settings = {
        "trusted_proxies": ["127.0.0.1/32"],
        "client_cert_header": PROXY_HEADER,
        "report_burst": 1_000_000,
        "password_failures_per_serial": 0,
    }
    with running_server(root / "server", lab=lab, settings=settings) as server:
        resources = {
            **lab.trust_resources(),
            "image": {
                "os-2": {
                    "os_name": "FuzzOS",
                    "os_version": "2.0",
                    "download_uris": ["https://files.example/os-2.img"],
                    "sha256": hashlib.sha256(b"image").hexdigest(),
                }
            },
            "profile": {
                "day0": {"type": "onboarding", "image": "os-2", "configuration": "hostname a\n"},
                "other": {"type": "onboarding", "configuration": "hostname b\n"},
            },
            "device": {
                # Selection rules, so the device's hw-model and os-* reach the glob matching.
                CERT_SERIAL: {
                    "profile": "day0",
                    "voucher": base64.b64encode(lab_voucher(lab, CERT_SERIAL)).decode(),
                    "selection": [{"hw_model": "fuzz-*", "os_version": "1.*", "profile": "other"}],
                },
                PASSWORD_SERIAL: {
                    "profile": "day0",
                    "voucher": base64.b64encode(lab_voucher(lab, PASSWORD_SERIAL)).decode(),
                    "password": PASSWORD,
                },
            },
        }
        server.apply(resources)
        yield FuzzSite(lab, server, _tls_context(lab, None), _tls_context(lab, CERT_SERIAL))


# --------------------------------------------------------------------------- checks


def basic(serial: str, password: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{serial}:{password}".encode())


def check_reply(site: FuzzSite, attempt: Attempt, reply: Reply) -> None:
    """Below 500 always; an RPC's answer in the negotiated format, its refusal a RESTCONF error."""
    context = f"{attempt!r:.3000}\n-> {reply!r:.3000}"
    assert reply.status < 500, context
    assert "Traceback" not in reply.logged, context
    if attempt.method != "POST" or attempt.path not in (GET_DATA, REPORT):
        return
    if reply.status == 204:
        assert attempt.path == REPORT and not reply.body, context
        return
    media_type = (reply.content_type or "").split(";", 1)[0].strip().lower()
    assert media_type in FORMAT_BY_MEDIA_TYPE, context
    reply_format = FORMAT_BY_MEDIA_TYPE[media_type]
    try:
        _, negotiated = restconf.negotiate(attempt.header("Content-Type"), attempt.header("Accept"))
    except ValidationError:
        negotiated = None  # refused before a format was agreed: either yang-data type will do
    if negotiated is not None:
        assert reply_format is negotiated, context
    if reply.status == 200:
        assert attempt.path == GET_DATA, context
        restconf.parse_get_bootstrapping_data_output(reply.body, reply_format)
        return
    assert 400 <= reply.status < 500, context
    assert restconf.parse_errors(reply.body, reply_format), context


def assert_devices_still_served(site: FuzzSite) -> None:
    body = restconf.encode_get_bootstrapping_data_input(
        restconf.GetBootstrappingDataInput(hw_model="fuzz-x1", os_version="1.0"), WireFormat.JSON
    )
    for certificate, authorization in ((True, None), (False, basic(PASSWORD_SERIAL, PASSWORD))):
        headers = [("Content-Type", JSON_TYPE)]
        if authorization:
            headers.append(("Authorization", authorization))
        attempt = Attempt("POST", GET_DATA, tuple(headers), body, certificate)
        reply = site.send(attempt)
        assert reply.status == 200, f"{attempt}\n-> {reply}"
        restconf.parse_get_bootstrapping_data_output(reply.body, WireFormat.JSON)


# --------------------------------------------------------------------------- strategies
#
# The YANG input shapes (ietf-sztp-bootstrap-server@2019-04-30, RFC 9646 ietf-sztp-csr
# @2024-10-10), written out here on their own so the test does not take the codec's word for
# what they are.

STRING, EMPTY, BINARY, OPAQUE = "string", "empty", "binary", "opaque"
SSH_HOST_KEYS, TRUST_ANCHOR_CERTS, CSR_SUPPORT = "ssh-host-keys", "trust-anchor-certs", "csr"
GET_SHAPE = {
    "signed-data-preferred": EMPTY,
    "hw-model": STRING,
    "os-name": STRING,
    "os-version": STRING,
    "nonce": BINARY,
    "ietf-sztp-csr:csr-support": CSR_SUPPORT,
    "ietf-sztp-csr:p10-csr": BINARY,
    "ietf-sztp-csr:cmc-csr": BINARY,
    "ietf-sztp-csr:cmp-csr": BINARY,
}
REPORT_SHAPE = {
    "progress-type": STRING,
    "message": STRING,
    "ssh-host-keys": SSH_HOST_KEYS,
    "trust-anchor-certs": TRUST_ANCHOR_CERTS,
}
SHAPES = {GET_DATA: GET_SHAPE, REPORT: REPORT_SHAPE}
ZTP_TYPES_NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-ztp-types"
NAMESPACES = (
    restconf.NAMESPACE,
    restconf.CSR_NAMESPACE,
    ZTP_TYPES_NAMESPACE,
    restconf.RESTCONF_NAMESPACE,
    "",
    "urn:example:wrong",
    restconf.NAMESPACE.upper(),
)
# Names a careless parser could take for a module prefix, a path step, or nothing at all.
ODD_NAMES = ("", "a/b:c", "/x:y", "ietf-restconf:errors", f"{INPUT}", "\x01", "x\u2028y", "\ud800")
INVALID_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\x80")

short_text = st.text(max_size=40)
# Every code point class a YANG string must refuse or carry: controls, lone surrogates,
# private use, line separators, astral characters.
hostile_text = st.text(
    st.characters(categories=("Cc", "Cs", "Co", "Zl", "Zp", "So", "Lo")), min_size=1, max_size=20
)
huge_text = st.builds(
    lambda character, size: character * size,
    st.sampled_from(["x", "é", "\u2028", "😀", "\\", "<"]),
    st.integers(min_value=60_000, max_value=1_100_000),
)
text_value = st.one_of(
    short_text,
    hostile_text,
    huge_text,
    st.sampled_from(restconf.PROGRESS_TYPES),
    st.sampled_from(["fuzz-x1", "FuzzOS", "1.0", "1.*", "[", "*"]),
)
# DER AlgorithmIdentifiers (id-ecPublicKey with P-256, rsaEncryption) and format identities,
# right and wrong, for csr-support.
ALGORITHM_IDENTIFIERS = ("MBMGByqGSM49AgEGCCqGSM49AwEH", "MA0GCSqGSIb3DQEBAQUA", "MAA=")
FORMAT_IDENTITIES = (
    "ietf-ztp-types:p10-csr",
    "ietf-ztp-types:cmc-csr",
    "p10-csr",
    "ietf-sztp-csr:p10-csr",
    "ietf-ztp-types:x509",
    "zt:p10-csr",
    "ietf-ztp-types:",
)
base64_value = st.one_of(
    st.sampled_from(ALGORITHM_IDENTIFIERS),
    st.binary(max_size=48).map(lambda data: base64.b64encode(data).decode()),
    st.sampled_from(
        ["!!!!", "AAA", "AA==AA==", " AAAA", "AAAA\n", "=", "\uff21\uff21\uff21\uff21"]
    ),
)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | short_text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(short_text, inner, max_size=4).map(lambda d: Members(d.items()))
    ),
    max_leaves=12,
)


class Members(list[tuple[str, object]]):
    """A JSON object as its member pairs, in order, repeats allowed."""


def json_leaf(kind: str) -> st.SearchStrategy[object]:
    if kind == EMPTY:
        correct: st.SearchStrategy[object] = st.sampled_from([[None], [None, None], [], None, ""])
    elif kind == BINARY:
        correct = base64_value
    elif kind == OPAQUE:
        correct = st.dictionaries(short_text, any_json, max_size=3).map(
            lambda d: Members(d.items())
        )
    elif kind == SSH_HOST_KEYS:
        key = st.lists(
            st.tuples(
                st.sampled_from(["algorithm", "key-data", "extra"]),
                st.one_of(text_value, base64_value, any_json),
            ),
            max_size=4,
        ).map(Members)
        correct = st.lists(key, max_size=3).map(lambda keys: Members([("ssh-host-key", keys)]))
    elif kind == CSR_SUPPORT:
        correct = st.builds(
            csr_support_members,
            st.one_of(st.none(), st.lists(base64_value, max_size=3)),
            st.lists(st.one_of(st.sampled_from(FORMAT_IDENTITIES), text_value), max_size=3),
            st.one_of(st.just([]), st.lists(st.tuples(short_text, any_json), max_size=2)),
        )
    elif kind == TRUST_ANCHOR_CERTS:
        correct = st.lists(base64_value, max_size=3).map(
            lambda certs: Members([("trust-anchor-cert", certs)])
        )
    else:
        correct = text_value
    return st.one_of(correct, any_json)


def csr_support_members(
    algorithms: list[object] | None, formats: list[object], extra: list[tuple[str, object]]
) -> Members:
    """csr-support, with key-generation when `algorithms` is not None, and `extra` members."""
    members = []
    if algorithms is not None:
        members.append(
            (
                "key-generation",
                Members(
                    [("supported-algorithms", Members([("algorithm-identifier", algorithms)]))]
                ),
            )
        )
    members.append(
        (
            "csr-generation",
            Members([("supported-formats", Members([("format-identifier", formats)]))]),
        )
    )
    return Members(members + extra)


def json_members(shape: dict[str, str]) -> st.SearchStrategy[Members]:
    known = st.sampled_from(sorted(shape)).flatmap(
        lambda name: st.tuples(st.just(name), json_leaf(shape[name]))
    )
    unknown = st.tuples(st.one_of(st.sampled_from(ODD_NAMES), short_text, hostile_text), any_json)
    return st.lists(st.one_of(known, known, unknown), max_size=6).map(Members)


def to_json(node: object, ascii_only: bool) -> str:
    if isinstance(node, Members):
        members = (
            f"{json.dumps(name, ensure_ascii=ascii_only)}:{to_json(value, ascii_only)}"
            for name, value in node
        )
        return "{" + ",".join(members) + "}"
    if isinstance(node, list):
        return "[" + ",".join(to_json(item, ascii_only) for item in node) + "]"
    return json.dumps(node, ensure_ascii=ascii_only)


@st.composite
def json_body(draw: st.DrawFn, shape: dict[str, str]) -> bytes:
    members = draw(json_members(shape))
    top = draw(
        st.one_of(
            st.just(Members([(INPUT, members)])),
            st.just(Members([(INPUT, members)])),
            st.sampled_from(["input", f"{restconf.MODULE}:output", "ietf-restconf:input"]).map(
                lambda name: Members([(name, members)])
            ),
            st.just(Members([(INPUT, members), (INPUT, Members())])),
            st.just(Members([(INPUT, members), ("extra", 1)])),
            any_json,
        )
    )
    text = to_json(top, ascii_only=draw(st.booleans()))
    special = st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"1" * 5000,
            b'{"%s": {"hw-model": %s}}' % (INPUT.encode(), b"[" * 30_000 + b"]" * 30_000),
            b"[" * 100_000,
            b'{"%s": {"message": "%s"}}' % (INPUT.encode(), b"\\u0000" * 10),
            b"\xef\xbb\xbf{}",
            b'{"a": NaN}',
        ]
    )
    return draw(st.one_of(mutated(text.encode("utf-8", "surrogatepass")), special))


def xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


ENTITY_REFERENCES = st.sampled_from(
    ["&amp;", "&#0;", "&#x1;", "&#xD800;", "&#1114112;", "&#x10FFFF;", "&lol9;", "&xxe;", "&"]
)
xml_text = st.one_of(
    text_value.map(lambda text: xml_escape(text.encode("utf-8", "replace").decode())),
    base64_value,
    st.sampled_from(FORMAT_IDENTITIES),
    st.lists(st.one_of(short_text.map(xml_escape), ENTITY_REFERENCES), max_size=5).map("".join),
    short_text.map(lambda text: f"<![CDATA[{text}]]>"),
    st.just("<!-- comment --><?pi x?>"),
)
XML_NAMES = st.one_of(
    st.sampled_from(
        [
            "ssh-host-key",
            "algorithm",
            "key-data",
            "trust-anchor-cert",
            "csr-support",
            "key-generation",
            "supported-algorithms",
            "algorithm-identifier",
            "csr-generation",
            "supported-formats",
            "format-identifier",
            "x",
            "a.b",
        ]
    ),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9._-]{0,12}", fullmatch=True),
)


@st.composite
def xml_element(draw: st.DrawFn, name: str, depth: int) -> str:
    namespace = draw(st.one_of(st.none(), st.none(), st.sampled_from(NAMESPACES)))
    declaration = "" if namespace is None else f' xmlns="{namespace}"'
    attributes = draw(
        st.sampled_from(
            ["", "", ' a="1"', ' xmlns:p="urn:p" p:b="2"', f' xmlns:zt="{ZTP_TYPES_NAMESPACE}"']
        )
    )
    if depth > 0 and draw(st.booleans()):
        children = draw(st.lists(XML_NAMES, max_size=3))
        content = "".join(draw(xml_element(child, depth - 1)) for child in children)
    else:
        content = draw(xml_text)
    return f"<{name}{declaration}{attributes}>{content}</{name}>"


@st.composite
def xml_csr_support(draw: st.DrawFn) -> str:
    """csr-support as RFC 9646 has it, its leaves' values and prefix declarations drawn."""
    namespace = draw(st.sampled_from(NAMESPACES))

    def leaves(name: str, values: st.SearchStrategy[str]) -> str:
        declaration = draw(st.sampled_from(["", f' xmlns:zt="{ZTP_TYPES_NAMESPACE}"']))
        return "".join(
            f"<{name}{declaration}>{value}</{name}>" for value in draw(st.lists(values, max_size=3))
        )

    algorithms = leaves("algorithm-identifier", base64_value)
    formats = leaves("format-identifier", st.sampled_from(FORMAT_IDENTITIES))
    key_generation = draw(
        st.sampled_from(
            ["", f"<key-generation><supported-algorithms>{algorithms}</supported-algorithms>"
             "</key-generation>"]
        )
    )  # fmt: skip
    return (
        f'<csr-support xmlns="{namespace}">{key_generation}<csr-generation><supported-formats>'
        f"{formats}</supported-formats></csr-generation></csr-support>"
    )


def _billion_laughs(levels: int = 9) -> str:
    """A DTD whose last entity expands to 10**levels copies of "lol"."""
    entities = ['<!ENTITY lol0 "lol">']
    for level in range(1, levels + 1):
        entities.append(f'<!ENTITY lol{level} "{f"&lol{level - 1};" * 10}">')
    return f"<!DOCTYPE input [{''.join(entities)}]>"


BILLION_LAUGHS = _billion_laughs()
PROLOGUES = (
    "",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="ISO-8859-1"?>',
    '<?xml version="1.0" encoding="UTF-16"?>',
    '<?xml version="1.1"?>',
    BILLION_LAUGHS,
    '<!DOCTYPE input [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
    '<!DOCTYPE input [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x"> %p;]>',
    '<!DOCTYPE input SYSTEM "http://127.0.0.1:9/input.dtd">',
    "<!-- before -->",
)


@st.composite
def xml_body(draw: st.DrawFn, shape: dict[str, str]) -> bytes:
    root = draw(st.one_of(st.just("input"), st.just("input"), XML_NAMES, st.just("p:input")))
    namespace = draw(st.sampled_from(NAMESPACES))
    declaration = (
        f' xmlns="{namespace}"' if not root.startswith("p:") else (f' xmlns:p="{namespace}"')
    )
    names = st.one_of(st.sampled_from([name.rpartition(":")[2] for name in shape]), XML_NAMES)
    children = draw(st.lists(names, max_size=6))
    content = "".join(draw(xml_element(child, 2)) for child in children)
    if "ietf-sztp-csr:csr-support" in shape and draw(st.booleans()):
        content += draw(xml_csr_support())
    prologue = draw(st.sampled_from(PROLOGUES))
    document = f"{prologue}<{root}{declaration}>{content}</{root}>"
    nesting = draw(st.integers(min_value=1, max_value=140_000))
    special = st.sampled_from(
        [
            b"",
            b"<input/>",
            b"<input xmlns='%s'>%s%s</input>"
            % (restconf.NAMESPACE.encode(), b"<a>" * nesting, b"</a>" * nesting),
            b"<input xmlns='%s'>%s" % (restconf.NAMESPACE.encode(), b"<a>" * nesting),
            b"\xef\xbb\xbf<input xmlns='%s'/>" % restconf.NAMESPACE.encode(),
            f"<input xmlns='{restconf.NAMESPACE}'/>".encode("utf-16"),
        ]
    )
    return draw(st.one_of(mutated(document.encode("utf-8", "surrogatepass")), special))


def mutated(body: bytes) -> st.SearchStrategy[bytes]:
    """`body` as it is (most often), cut short, or with invalid UTF-8 spliced in."""
    at = st.integers(min_value=0, max_value=len(body))
    return st.one_of(
        st.just(body),
        st.just(body),
        at.map(lambda index: body[:index]),
        st.tuples(at, st.sampled_from(INVALID_UTF8)).map(
            lambda cut: body[: cut[0]] + cut[1] + body[cut[0] :]
        ),
    )


def field_value(data: bytes) -> bytes:
    """`data` without the octets HTTP forbids in a field value (controls but HTAB), so the
    request reaches the handler instead of the HTTP parser's own refusal."""
    return bytes(octet for octet in data if octet == 9 or 32 <= octet != 127)


# Octets HTTP allows in a field: visible ASCII, space, tab, and obs-text (0x80-0xFF), which
# is no UTF-8 a server could decode.
field_octets = st.lists(
    st.one_of(st.integers(0x20, 0x7E), st.integers(0x80, 0xFF), st.just(0x09)), max_size=60
).map(bytes)
MEDIA_TYPES = [
    "application/yang-data+json",
    "application/yang-data+xml",
    "Application/YANG-Data+JSON; charset=utf-8",
    "application/yang-data+xml;charset=utf-16",
    "application/json",
    "application/xml",
    "text/plain",
    "*/*",
    "application/*",
    "application/yang-data+json;q=0",
    "application/yang-data+xml;q=0.5, application/yang-data+json;q=0.4",
    "application/yang-data+json;q=1.0001",
    "application/yang-data+json;q=abc",
    "application/yang-data+json,",
    ",,,",
    "application/yang-data",
    "application",
    "",
]
yang_data = st.sampled_from([wire_format.media_type.encode() for wire_format in WireFormat])
media_type_header = st.one_of(
    st.sampled_from(MEDIA_TYPES).map(str.encode),
    field_octets,
    st.lists(st.sampled_from(MEDIA_TYPES), max_size=20).map(lambda items: ",".join(items).encode()),
)
authorization = st.one_of(
    st.just(basic(PASSWORD_SERIAL, PASSWORD)),
    st.builds(
        basic,
        st.one_of(st.sampled_from([PASSWORD_SERIAL, CERT_SERIAL, "", "NO-SUCH"]), short_text),
        st.one_of(st.just(PASSWORD), short_text),
    ),
    st.sampled_from(
        [
            b"Basic",
            b"Basic ",
            b"Basic !!!!",
            b"Basic " + base64.b64encode(b"no-colon"),
            b"Basic " + base64.b64encode(b"\xff\xfe:\xff"),
            b"Basic " + base64.b64encode(f"{PASSWORD_SERIAL}:{PASSWORD}".encode())[:-2],
            b"basic " + base64.b64encode(f"{PASSWORD_SERIAL}:{PASSWORD}".encode()),
            b"Basic  \t" + base64.b64encode(f"{PASSWORD_SERIAL}:{PASSWORD}".encode()),
            b"Bearer abc",
            b"Digest username=x",
            b"Basic " + b"A" * 7000,
            b"Basic " + base64.b64encode(b"x" * 5000 + b":" + b"y" * 500),
        ]
    ),
    short_text.map(lambda text: b"Basic " + field_value(text.encode("utf-8", "surrogatepass"))),
    field_octets.map(lambda octets: b"Basic " + octets),
)


@st.composite
def proxy_certificate(draw: st.DrawFn, lab: LabPki) -> bytes:
    pem = lab.devices[draw(st.sampled_from([CERT_SERIAL, PASSWORD_SERIAL]))].idevid
    encoded = quote(pem.certificate.read_text(), safe="")
    return draw(
        st.one_of(
            st.just(encoded.encode()),
            st.integers(min_value=0, max_value=len(encoded)).map(
                lambda cut: encoded[:cut].encode()
            ),
            field_octets,
            st.just(f"{encoded},{encoded}".encode()),
            st.just(b"-----BEGIN CERTIFICATE-----%0A%ff%fe%0A-----END CERTIFICATE-----"),
        )
    )


def splice(value: bytes, at: int, octet: bytes) -> bytes:
    at %= len(value) + 1
    return value[:at] + octet + value[at:]


def with_obs_text(values: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """`values`, half of them with an octet spliced in that no UTF-8 decoder accepts."""
    octets = st.sampled_from([b"\xff", b"\x80"])
    return st.one_of(values, st.builds(splice, values, st.integers(min_value=0), octets))


@st.composite
def headers(draw: st.DrawFn, lab: LabPki) -> list[tuple[str, bytes]]:
    """Content-Type and Accept (mostly yang-data, so that most requests get as far as
    authentication), and credentials of every kind."""
    result: list[tuple[str, bytes]] = []
    if draw(st.integers(0, 4)):
        result.append(("Content-Type", draw(st.one_of(yang_data, yang_data, media_type_header))))
    if draw(st.booleans()):
        result.append(("Accept", draw(st.one_of(yang_data, media_type_header))))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        result.append(("Authorization", draw(with_obs_text(authorization))))
    if draw(st.booleans()):
        result.append(
            (
                draw(st.sampled_from([PROXY_HEADER, PROXY_HEADER.lower()])),
                draw(with_obs_text(proxy_certificate(lab))),
            )
        )
    return result


# --------------------------------------------------------------------------- the tests


def run_fuzz(site: FuzzSite, test: Callable[[], None]) -> None:
    test()
    assert_devices_still_served(site)


@pytest.mark.parametrize(
    "path", [GET_DATA, REPORT], ids=["get-bootstrapping-data", "report-progress"]
)
@pytest.mark.parametrize("body_format", list(WireFormat), ids=["json", "xml"])
def test_malformed_bodies_from_authenticated_devices(
    site: FuzzSite, path: str, body_format: WireFormat
) -> None:
    """The body parsers: the device is authenticated (IDevID or password) so its body is read."""
    body_strategy = (json_body if body_format is WireFormat.JSON else xml_body)(SHAPES[path])

    @fuzz_settings(examples=200)
    @given(
        body=body_strategy,
        certificate=st.booleans(),
        accept=st.one_of(st.none(), st.sampled_from([*MEDIA_TYPES[:4], "*/*"])),
    )
    def fuzz(body: bytes, certificate: bool, accept: str | None) -> None:
        fields = [("Content-Type", body_format.media_type.encode())]
        if accept is not None:
            fields.append(("Accept", accept.encode()))
        if not certificate:
            fields.append(("Authorization", basic(PASSWORD_SERIAL, PASSWORD)))
        attempt = Attempt("POST", path, tuple(fields), body, certificate)
        check_reply(site, attempt, site.send(attempt))

    run_fuzz(site, fuzz)


@pytest.mark.parametrize(
    "path", [GET_DATA, REPORT], ids=["get-bootstrapping-data", "report-progress"]
)
def test_hostile_headers_and_credentials(site: FuzzSite, path: str) -> None:
    """Content-Type, Accept, Authorization and the proxy certificate header, with or without
    an IDevID; the body, if any, is valid JSON input, so that mostly the headers are to blame."""
    inputs = {
        GET_DATA: restconf.encode_get_bootstrapping_data_input(
            restconf.GetBootstrappingDataInput(hw_model="fuzz-x1"), WireFormat.JSON
        ),
        REPORT: restconf.encode_report_progress_input(
            restconf.ProgressReport("informational", "fuzz"), WireFormat.JSON
        ),
    }

    @fuzz_settings(examples=400)
    @given(
        request_headers=headers(site.lab),
        certificate=st.booleans(),
        with_body=st.integers(0, 3),
    )
    def fuzz(request_headers: list[tuple[str, bytes]], certificate: bool, with_body: int) -> None:
        attempt = Attempt(
            "POST", path, tuple(request_headers), inputs[path] if with_body else b"", certificate
        )
        check_reply(site, attempt, site.send(attempt))

    run_fuzz(site, fuzz)


@pytest.mark.parametrize(
    "attempt",
    [
        # A member name the error-path cannot carry (a control character).
        Attempt(
            "POST",
            GET_DATA,
            (("Content-Type", JSON_TYPE),),
            b'{"%s":{"\\u0001":1}}' % INPUT.encode(),
            True,
        ),
        Attempt(
            "POST",
            REPORT,
            (("Content-Type", JSON_TYPE),),
            b'{"%s":{"progress-type":"informational","\\u001f":1}}' % INPUT.encode(),
            True,
        ),
        # A member name that reads as a path step into an unknown module, answered in XML.
        Attempt(
            "POST",
            GET_DATA,
            (("Content-Type", JSON_TYPE), ("Accept", XML_TYPE)),
            b'{"%s":{"a/b:c":1}}' % INPUT.encode(),
            True,
        ),
        # A proxy certificate header with an octet that is no UTF-8.
        Attempt(
            "POST", GET_DATA, (("Content-Type", JSON_TYPE), (PROXY_HEADER, b"\xff")), b"", False
        ),
    ],
    ids=[
        "control-character-member",
        "control-character-member-report",
        "module-like-member",
        "proxy-header-not-utf8",
    ],
)
def test_inputs_the_fuzzer_found(site: FuzzSite, attempt: Attempt) -> None:
    """Kept as fixed cases, so that a fix cannot miss one the derandomised run does not try."""
    check_reply(site, attempt, site.send(attempt))


path_segment = st.one_of(
    st.sampled_from(
        [
            "operations",
            "data",
            restconf.RPC_GET_BOOTSTRAPPING_DATA,
            restconf.RPC_REPORT_PROGRESS,
            f"{restconf.MODULE}:",
            "ietf-sztp-bootstrap-server:nope",
            "..",
            ".",
            "",
            "%2e%2e",
            "%00",
            "%ff",
            "%2F",
            "yang-library-version",
        ]
    ),
    short_text.map(lambda text: quote(text, safe="")),
    # Long, but the request line stays within what the HTTP parser takes (8190 octets).
    st.integers(1, 1500).map(lambda size: "a" * size),
)


def test_random_paths_and_methods_under_restconf(site: FuzzSite) -> None:
    @fuzz_settings(examples=300)
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]),
        segments=st.lists(path_segment, min_size=1, max_size=4),
        query=st.sampled_from(["", "?depth=1", "?content=all", "?%ff=%00", "?" + "q" * 1000]),
        request_headers=headers(site.lab),
        body_format=st.sampled_from(list(WireFormat)),
        certificate=st.booleans(),
        data=st.data(),
    )
    def fuzz(
        method: str,
        segments: list[str],
        query: str,
        request_headers: list[tuple[str, bytes]],
        body_format: WireFormat,
        certificate: bool,
        data: st.DataObject,
    ) -> None:
        path = "/restconf/" + "/".join(segments) + query
        body_strategy = json_body if body_format is WireFormat.JSON else xml_body
        # Small bodies: a server may answer an unknown path without reading the body.
        body = data.draw(body_strategy(GET_SHAPE))[:16384] if method in ("POST", "PUT") else b""
        attempt = Attempt(method, path, tuple(request_headers), body, certificate)
        check_reply(site, attempt, site.send(attempt))

    run_fuzz(site, fuzz)


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /restconf/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST "
        + GET_DATA.encode()
        + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
        + b"A" * 9000
        + b"\r\nContent-Length: 0\r\n\r\n",
        b"POST " + GET_DATA.encode() + b" HTTP/1.1\r\nHost: x\r\nX-\x01: y\r\n\r\n",
    ],
    ids=["request-line-too-long", "header-too-long", "control-character-in-header-name"],
)
def test_requests_the_http_parser_refuses_leave_no_traceback(
    site: FuzzSite, request_head: bytes
) -> None:
    """The server log is one JSON object per line: a device cannot write tracebacks into it."""
    log = site.server.directory / "server.log"
    logged_before = log.stat().st_size
    host, port = site.server.device_url.removeprefix("https://").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        site.anonymous_tls.wrap_socket(raw, server_hostname=host) as connection,
    ):
        connection.sendall(request_head)
        status_line = connection.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1].startswith(b"4"), status_line
    with log.open("rb") as stream:
        stream.seek(logged_before)
        logged = stream.read().decode(errors="replace")
    assert "Traceback" not in logged, logged
    for line in logged.splitlines():
        assert isinstance(json.loads(line), dict), line


def test_a_device_hanging_up_mid_body_leaves_no_traceback(site: FuzzSite) -> None:
    log = site.server.directory / "server.log"
    logged_before = log.stat().st_size
    host, port = site.server.device_url.removeprefix("https://").rsplit(":", 1)
    head = (
        f"POST {GET_DATA} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/yang-data+json"
        "\r\nContent-Length: 1000\r\n\r\n{"
    )
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        site.device_tls.wrap_socket(raw, server_hostname=host) as connection,
    ):
        connection.sendall(head.encode())
    # A full request on a new connection (TCP and TLS handshakes, several turns of the server's
    # event loop) is answered after the server has seen the hang-up.
    assert_devices_still_served(site)
    with log.open("rb") as stream:
        stream.seek(logged_before)
        logged = stream.read().decode(errors="replace")
    assert "Traceback" not in logged, logged

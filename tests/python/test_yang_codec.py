"""The shared YANG JSON/XML codec: its schema features on a small example schema, and the bytes
of conveyed information, which must stay what the hand-written encoders produced."""

import pytest

from sztp.errors import ValidationError
from sztp.protocol import conveyed_info
from sztp.protocol.conveyed_info import (
    BootImage,
    BootstrapServer,
    ConveyedInformation,
    OnboardingInformation,
    RedirectInformation,
)
from sztp.protocol.yang_codec import (
    Container,
    Document,
    Leaf,
    LeafList,
    List,
    Tree,
    decode_json,
    decode_xml,
    encode_json,
    encode_xml,
)

# --------------------------------------------------------------------------- conveyed information

_CONVEYED_NS = b"urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info"
_ONBOARDING_XML = b'<onboarding-information xmlns="%s" xmlns:sztp-info="%s">' % (
    (_CONVEYED_NS,) * 2
)
_DIGEST_HEX = b":".join(b"%02x" % octet for octet in range(32))

# Encoded by conveyed_info before it used the shared codec (the bytes are signed in CMS).
GOLDEN: list[tuple[ConveyedInformation, bytes, bytes]] = [
    (
        RedirectInformation(
            (
                BootstrapServer("sztp1.example.com", 8443, b"\x30\x03\x02\x01\x01"),
                BootstrapServer("2001:db8::10"),
            )
        ),
        b'{"ietf-sztp-conveyed-info:redirect-information":{"bootstrap-server":[{"address":'
        b'"sztp1.example.com","port":8443,"trust-anchor":"MAMCAQE="},{"address":"2001:db8::10",'
        b'"port":443}]}}',
        b'<redirect-information xmlns="%s"><bootstrap-server><address>sztp1.example.com'
        b"</address><port>8443</port><trust-anchor>MAMCAQE=</trust-anchor></bootstrap-server>"
        b"<bootstrap-server><address>2001:db8::10</address><port>443</port></bootstrap-server>"
        b"</redirect-information>" % _CONVEYED_NS,
    ),
    (
        OnboardingInformation(),
        b'{"ietf-sztp-conveyed-info:onboarding-information":{}}',
        _ONBOARDING_XML + b"</onboarding-information>",
    ),
    (
        OnboardingInformation(BootImage(os_name=""), pre_configuration_script=b""),
        b'{"ietf-sztp-conveyed-info:onboarding-information":{"boot-image":{"os-name":""},'
        b'"pre-configuration-script":""}}',
        _ONBOARDING_XML + b"<boot-image><os-name></os-name></boot-image>"
        b"<pre-configuration-script></pre-configuration-script></onboarding-information>",
    ),
    (
        OnboardingInformation(
            BootImage(
                "VendorOS",
                "17.2 <&>\r",
                ("https://example.com/a.img", "https://example.com/b.img"),
                bytes(range(32)),
            ),
            "replace",
            b"pre",
            b"cfg",
            b"\x00\xff",
        ),
        b'{"ietf-sztp-conveyed-info:onboarding-information":{"boot-image":{"os-name":"VendorOS",'
        b'"os-version":"17.2 <&>\\r","download-uri":["https://example.com/a.img",'
        b'"https://example.com/b.img"],"image-verification":[{"hash-algorithm":'
        b'"ietf-sztp-conveyed-info:sha-256","hash-value":"' + _DIGEST_HEX + b'"}]},'
        b'"configuration-handling":"replace","pre-configuration-script":"cHJl",'
        b'"configuration":"Y2Zn","post-configuration-script":"AP8="}}',
        _ONBOARDING_XML + b"<boot-image><os-name>VendorOS</os-name><os-version>17.2 "
        b"&lt;&amp;&gt;&#13;</os-version><download-uri>https://example.com/a.img</download-uri>"
        b"<download-uri>https://example.com/b.img</download-uri><image-verification>"
        b"<hash-algorithm>sztp-info:sha-256</hash-algorithm><hash-value>" + _DIGEST_HEX + b""
        b"</hash-value></image-verification></boot-image><configuration-handling>replace"
        b"</configuration-handling><pre-configuration-script>cHJl</pre-configuration-script>"
        b"<configuration>Y2Zn</configuration><post-configuration-script>AP8="
        b"</post-configuration-script></onboarding-information>",
    ),
]


@pytest.mark.parametrize(("info", "json_bytes", "xml_bytes"), GOLDEN)
def test_conveyed_information_bytes_are_unchanged(
    info: ConveyedInformation, json_bytes: bytes, xml_bytes: bytes
) -> None:
    assert conveyed_info.encode_json(info) == json_bytes
    assert conveyed_info.encode_xml(info) == xml_bytes
    assert conveyed_info.decode_json(json_bytes) == info
    assert conveyed_info.decode_xml(xml_bytes) == info


# --------------------------------------------------------------------------- the engine

NS = "urn:example:things"
OTHER_NS = "urn:example:other"
_ITEM = Container({"name": Leaf.STRING, "data": Leaf.BINARY}, mandatory=("data",), key=("name",))
_THINGS = Container(
    {
        "port": Leaf.UINT16,
        "kind": Leaf.IDENTITYREF,
        "flag": Leaf.EMPTY,
        "tags": LeafList(Leaf.STRING),
        "item": List(_ITEM),
        "only": List(Container({"id": Leaf.IDENTITYREF, "note": Leaf.STRING}), numbered=False),
        "box": Container({"label": Leaf.STRING}),
        "other:extra": Leaf.OPAQUE,
    }
)
# A choice of two top-level containers, paths unqualified, `<a></a>` elements.
CHOICE = Document(
    module="things",
    namespaces={"things": NS, "other": OTHER_NS},
    path="thing-data",
    roots={"things": _THINGS, "plain": Container({"label": Leaf.STRING})},
    max_size=4096,
    max_elements=20,
    qualified_paths=False,
    short_empty_elements=False,
    prefix="th",
)
# One top-level container, instance-identifier paths, `<a/>` elements, no body allowed.
SINGLE = Document(
    module="things",
    namespaces={"things": NS},
    path="things:input",
    roots={"input": Container({"label": Leaf.STRING, "flag": Leaf.EMPTY}, mandatory=("flag",))},
    max_size=4096,
    empty_body_allowed=True,
)
FULL: Tree = {
    "port": 8443,
    "kind": "things:sha-256",
    "flag": True,
    "tags": ["a", "<b>"],
    "item": [{"name": "one", "data": b"\x00"}, {"name": "two", "data": b""}],
    "only": [{"id": "things:x", "note": ""}],
    "box": {},
    "other:extra": True,
}


def _json(members: str, top: str = "things") -> bytes:
    return f'{{"things:{top}": {{{members}}}}}'.encode()


def _xml(content: str, declarations: str = f'xmlns="{NS}"', top: str = "things") -> bytes:
    return f"<{top} {declarations}>{content}</{top}>".encode()


def _error(decode: object, body: bytes, document: Document = CHOICE) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        decode(body, document)  # type: ignore[operator]
    return caught.value.field, caught.value.message


def test_round_trip_and_exact_bytes() -> None:
    data = encode_xml("things", FULL, CHOICE)
    assert (
        data
        == (
            f'<things xmlns="{NS}" xmlns:th="{NS}"><port>8443</port><kind>th:sha-256</kind>'
            "<flag></flag><tags>a</tags><tags>&lt;b&gt;</tags><item><name>one</name><data>AA==</data>"
            "</item><item><name>two</name><data></data></item><only><id>th:x</id><note></note></only>"
            f'<box></box><extra xmlns="{OTHER_NS}"></extra></things>'
        ).encode()
    )
    assert decode_xml(data, CHOICE) == ("things", FULL)
    data = encode_json("things", FULL, CHOICE)
    assert data == (
        b'{"things:things":{"port":8443,"kind":"things:sha-256","flag":[null],"tags":["a","<b>"],'
        b'"item":[{"name":"one","data":"AA=="},{"name":"two","data":""}],'
        b'"only":[{"id":"things:x","note":""}],"box":{},"other:extra":{}}}'
    )
    assert decode_json(data, CHOICE) == ("things", FULL)


def test_prefix_declared_only_above_identityref_leaves_and_short_empty_elements() -> None:
    assert encode_xml("plain", {"label": ""}, CHOICE) == (
        f'<plain xmlns="{NS}"><label></label></plain>'.encode()
    )
    assert encode_xml("input", {"flag": True, "label": ""}, SINGLE) == (
        f'<input xmlns="{NS}"><label/><flag/></input>'.encode()
    )


def test_encoding_refuses_an_identity_of_another_module() -> None:
    with pytest.raises(ValidationError) as caught:
        encode_xml("things", {"kind": "other:x"}, CHOICE)
    assert caught.value.field == "things/kind"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"[]", "thing-data"),
        (b"{}", "thing-data"),
        (b'{"things:plain": {}, "things:things": {}}', "thing-data"),
        (b'{"plain": {}}', "plain"),
        (b'{"other:plain": {}}', "other:plain"),
        (b"{", "thing-data"),
    ],
)
def test_json_choice_of_top_level_containers(body: bytes, field: str) -> None:
    assert _error(decode_json, body)[0] == field


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_xml("", 'xmlns="urn:example:wrong"'), "thing-data"),
        (_xml("", ""), "thing-data"),
        (_xml("", top="neither"), "neither"),
        (_xml("<box/>" * 20), "thing-data"),  # more elements than max_elements
    ],
)
def test_xml_choice_of_top_level_containers(body: bytes, field: str) -> None:
    assert _error(decode_xml, body)[0] == field


def test_single_top_level_container() -> None:
    missing = ("things:input/flag", "missing (it is mandatory)")
    # No body is an input without members, held to the same rules.
    assert _error(decode_json, b"", SINGLE) == _error(decode_xml, b"", SINGLE) == missing
    assert _error(decode_json, b'{"things:input": {}}', SINGLE) == missing
    assert decode_xml(_xml("<flag/>", top="input"), SINGLE) == ("input", {"flag": True})
    assert _error(decode_json, b"{}", SINGLE)[0] == "things:input"
    assert _error(decode_xml, _xml("", top="output"), SINGLE)[0] == "things:input"
    assert _error(decode_xml, _xml("<label/><label/>", top="input"), SINGLE)[0] == (
        "things:input/label"
    )


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ('"kind": "sha-256"', "things:sha-256"),  # RFC 7951 §6.8: own module unqualified
        ('"kind": "things:sha-256"', "things:sha-256"),
        ('"kind": "other:sha-256"', "other:sha-256"),
    ],
)
def test_json_identityref(members: str, expected: str) -> None:
    assert decode_json(_json(members), CHOICE) == ("things", {"kind": expected})


@pytest.mark.parametrize(
    ("declarations", "content", "expected"),
    [
        (f'xmlns="{NS}"', "<kind>sha-256</kind>", "things:sha-256"),
        (f'xmlns="{NS}" xmlns:t="{NS}"', "<kind>t:sha-256</kind>", "things:sha-256"),
        (f'xmlns="{NS}"', f'<kind xmlns:o="{OTHER_NS}">o:sha-256</kind>', "other:sha-256"),
        (f'xmlns="{NS}" xmlns:x="urn:x"', "<kind>x:sha-256</kind>", "{urn:x}sha-256"),
    ],
)
def test_xml_identityref_prefix_resolved_in_scope(
    declarations: str, content: str, expected: str
) -> None:
    assert decode_xml(_xml(content, declarations), CHOICE) == ("things", {"kind": expected})


def test_xml_identityref_with_an_undeclared_prefix() -> None:
    assert _error(decode_xml, _xml("<kind>things:sha-256</kind>")) == (
        "things/kind",
        "namespace prefix 'things' is not declared",
    )


@pytest.mark.parametrize("value", ["0", "65535", "+7", "0001"])
def test_xml_uint16_accepted(value: str) -> None:
    assert decode_xml(_xml(f"<port>{value}</port>"), CHOICE) == ("things", {"port": int(value)})


@pytest.mark.parametrize("value", ["", " 1", "-1", "0x10", "1.0", "65536", "9" * 11])
def test_xml_uint16_refused(value: str) -> None:
    assert _error(decode_xml, _xml(f"<port>{value}</port>"))[0] == "things/port"


@pytest.mark.parametrize("value", ['"1"', "1.0", "true", "null", "-1", "65536"])
def test_json_uint16_refused(value: str) -> None:
    assert _error(decode_json, _json(f'"port": {value}'))[0] == "things/port"


@pytest.mark.parametrize(
    ("decode", "body", "error"),
    [
        (
            decode_json,
            _json('"item": [{"name": "a", "data": ""}, {"data": ""}]'),
            ("things/item[2]/name", "missing (it is the list key)"),
        ),
        (
            decode_xml,
            _xml("<item><name>a</name></item>"),
            ("things/item[1]/data", "missing (it is mandatory)"),
        ),
        # A list that is not numbered: its entries share one path.
        (
            decode_json,
            _json('"only": [{"id": "x"}, {"id": "y", "note": 1}]'),
            ("things/only/note", "must be a JSON string, not a number"),
        ),
        (
            decode_xml,
            _xml("<only><id>x</id></only><only><id>y</id><id>z</id></only>"),
            ("things/only/id", "appears more than once"),
        ),
        (
            decode_xml,
            _xml('<box><label xmlns="urn:x">a</label></box>'),
            ("things/box/label", "unknown member (namespace 'urn:x')"),
        ),
        (
            decode_xml,
            _xml(f'<box><label xmlns="{OTHER_NS}">a</label></box>'),
            ("things/box/other:label", "unknown member"),
        ),
    ],
)
def test_paths_of_list_entries_and_members(
    decode: object, body: bytes, error: tuple[str, str]
) -> None:
    assert _error(decode, body) == error

"""DHCP option 143/136 codec and server renderings (RFC 8572 §8)."""

from collections.abc import Callable

import pytest

from sztp.errors import DhcpEncodingError
from sztp.protocol.dhcp import (
    OPTION_V4_SZTP_REDIRECT,
    OPTION_V6_SZTP_REDIRECT,
    V4_OPTION_MAX,
    Family,
    OptionEncoding,
    decode_uri_list,
    encode_legacy_text,
    encode_option,
    encode_uri_list,
    join_v4_option_instances,
    render_dnsmasq,
    render_isc_dhcpd,
    render_kea_option_data,
    split_v4_option,
    to_colon_hex,
    to_hex,
    validate_bootstrap_uri,
)

GOLDEN_URI = "https://10.1.1.3:8080"
GOLDEN_HEX = "0015" + GOLDEN_URI.encode().hex()
SHORT_URI = "https://a.example"
SHORT_COLON_HEX = "00:11:68:74:74:70:73:3a:2f:2f:61:2e:65:78:61:6d:70:6c:65"
SHORT_TEXT_COLON_HEX = "68:74:74:70:73:3a:2f:2f:61:2e:65:78:61:6d:70:6c:65"


def _uri_of_length(length: int) -> str:
    """A valid https URI of exactly `length` characters (DNS labels of up to 63)."""
    host_length = length - len("https://")
    labels = []
    while host_length > 0:
        label_length = min(63, host_length)
        # Never leave exactly one character: it would become a trailing dot with no label.
        if host_length - label_length == 1:
            label_length -= 1
        labels.append("a" * label_length)
        host_length -= label_length + 1
    uri = "https://" + ".".join(labels)
    assert len(uri) == length
    return uri


def test_option_codes() -> None:
    assert OPTION_V4_SZTP_REDIRECT == 143
    assert OPTION_V6_SZTP_REDIRECT == 136
    assert Family.V4.option_code == 143
    assert Family.V6.option_code == 136


@pytest.mark.parametrize("family", list(Family))
def test_golden_bytes(family: Family) -> None:
    payload = encode_uri_list([GOLDEN_URI], family)
    assert payload.hex() == GOLDEN_HEX
    assert payload[:2] == b"\x00\x15"


def test_two_uris_round_trip() -> None:
    uris = ["https://sztp1.example.com", "https://[2001:db8::1]:8443"]
    payload = encode_uri_list(uris)
    assert payload[:2] == len(uris[0]).to_bytes(2, "big")
    assert decode_uri_list(payload) == uris
    assert decode_uri_list(payload, validate=True) == uris


@pytest.mark.parametrize(
    "uri",
    [
        GOLDEN_URI,
        "https://bootstrap",
        "https://bootstrap.example.com",
        "https://bootstrap.example.com:443",
        "https://xn--bcher-kva.example",
        "https://[2001:db8::1]",
        "https://[2001:db8::1]:8443",
        "https://[::ffff:10.1.1.3]:1",
        "https://host-1.example:65535",
    ],
)
def test_valid_uris_accepted(uri: str) -> None:
    assert validate_bootstrap_uri(uri) == uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://10.1.1.3:8080/restconf", "has a path '/restconf'; give only https://host[:port]"),
        ("https://10.1.1.3/", "has a path '/'"),
        ("http://10.1.1.3:8080", "uses scheme 'http'; only 'https' is allowed"),
        ("HTTPS://10.1.1.3", "uses scheme 'HTTPS'"),
        ("10.1.1.3:8080", "has no scheme"),
        ("https://10.1.1.3:0", "port 0 outside 1..65535"),
        ("https://10.1.1.3:65536", "port 65536 outside 1..65535"),
        ("https://10.1.1.3:" + "9" * 5000, "outside 1..65535"),
        ("https://10.1.1.3:08080", "leading zeros"),
        ("https://10.1.1.3:", "non-numeric port ''"),
        ("https://10.1.1.3:http", "non-numeric port 'http'"),
        ("https://admin:secret@10.1.1.3", "has userinfo"),
        ("https://10.1.1.3?device=1", "has a query '?device=1'"),
        ("https://10.1.1.3#top", "has a fragment '#top'"),
        ("https://", "has no host"),
        ("https://:8080", "has no host"),
        ("https://10.1.1.300", "invalid IPv4 address '10.1.1.300'"),
        ("https://10.1.1", "invalid IPv4 address"),
        ("https://2001:db8::1", "IPv6 address without brackets"),
        ("https://[2001:db8::1", "without its closing ']'"),
        ("https://[2001:db8::g]", "invalid IPv6 address '2001:db8::g'"),
        ("https://[fe80::1%eth0]", "zone identifier"),
        ("https://[2001:db8::1]8080", "unexpected text '8080'"),
        ("https://-bad.example", "bad label '-bad'"),
        ("https://a..example", "bad label ''"),
        ("https://under_score.example", "bad label 'under_score'"),
        ("https://" + "a" * 64 + ".example", "bad label"),
        ("https://" + ".".join(["a" * 63] * 4) + ".a", "longer than 253"),
        ("https://bücher.example", "non-ASCII character '\\xfc' at index 9"),
        ("https://a.example ", "whitespace or a control character at index 17"),
        ("https://a.\nexample", "whitespace or a control character at index 10"),
        ("", "is empty"),
    ],
)
def test_invalid_uris_rejected(uri: str, expected: str) -> None:
    with pytest.raises(DhcpEncodingError) as caught:
        validate_bootstrap_uri(uri)
    assert expected in caught.value.message
    assert caught.value.field == "bootstrap-server-uri"


def test_error_names_the_uri() -> None:
    with pytest.raises(DhcpEncodingError, match=r"'https://h\.example/restconf' has a path"):
        validate_bootstrap_uri("https://h.example/restconf")


def test_non_string_uri_rejected() -> None:
    with pytest.raises(DhcpEncodingError, match="expected a string, got bytes"):
        validate_bootstrap_uri(b"https://a.example")  # type: ignore[arg-type]


def test_encoder_validates_each_uri() -> None:
    with pytest.raises(DhcpEncodingError, match="has a path"):
        encode_uri_list([SHORT_URI, "https://b.example/restconf"])


def test_encoder_needs_at_least_one_uri() -> None:
    with pytest.raises(DhcpEncodingError, match="at least one"):
        encode_uri_list([])


def test_encoder_refuses_a_bare_string() -> None:
    with pytest.raises(DhcpEncodingError, match="single string"):
        encode_uri_list(SHORT_URI)


def test_v4_boundary_255_bytes_accepted() -> None:
    # 253-character URI + 2-octet length = exactly 255 bytes.
    uri = _uri_of_length(V4_OPTION_MAX - 2)
    payload = encode_uri_list([uri], Family.V4)
    assert len(payload) == V4_OPTION_MAX
    assert decode_uri_list(payload, validate=True) == [uri]


def test_oversized_v4_refused_but_v6_accepted() -> None:
    uris = [_uri_of_length(100), _uri_of_length(100), _uri_of_length(52)]
    with pytest.raises(DhcpEncodingError) as caught:
        encode_uri_list(uris, Family.V4)
    message = caught.value.message
    assert "258 bytes" in message
    assert "limit of 255" in message
    assert "Kea 2.2 splits" in message
    assert "Kea 2.6 drops" in message
    assert "fewer or shorter URIs" in message
    assert len(encode_uri_list(uris, Family.V6)) == 258


def test_oversized_v6_refused() -> None:
    uris = [_uri_of_length(250)] * 270  # 270 * 252 bytes > 65535
    with pytest.raises(DhcpEncodingError, match="68040 bytes, over the DHCPv6 limit of 65535"):
        encode_uri_list(uris, Family.V6)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "payload is empty"),
        (b"\x00", "trailing byte at offset 0"),
        (b"\x00\x03abc\x00", "trailing byte at offset 5"),
        (b"\x00\x05abc", "truncated URI entry at offset 0: it declares 5 bytes but only 3 remain"),
        (b"\x00\x01a\x00\x09abc", "truncated URI entry at offset 3"),
        (b"\x00\x00", "zero-length URI entry at offset 0"),
        (b"\x00\x01a\x00\x00", "zero-length URI entry at offset 3"),
        (b"\x00\x03a\xe9c", "non-ASCII byte 0xE9 at offset 3"),
        (b"\x00\x03a c", "space or control byte 0x20 at offset 3"),
        (b"\x00\x03ab\x00", "space or control byte 0x00 at offset 4"),
        (b"\x00\x03ab\x7f", "space or control byte 0x7F at offset 4"),
        (b"https://a.example", "looks like the non-conformant plain-text form"),
    ],
)
def test_decoder_rejects_malformed_payloads(payload: bytes, expected: str) -> None:
    with pytest.raises(DhcpEncodingError) as caught:
        decode_uri_list(payload)
    assert expected in caught.value.message


def test_decoder_validates_only_when_asked() -> None:
    entry = b"http://a.example/x"
    payload = len(entry).to_bytes(2, "big") + entry
    assert decode_uri_list(payload) == ["http://a.example/x"]
    with pytest.raises(DhcpEncodingError, match="only 'https' is allowed"):
        decode_uri_list(payload, validate=True)


def test_legacy_text_only_on_explicit_opt_in() -> None:
    rfc = encode_option([SHORT_URI])
    legacy = encode_option([SHORT_URI], encoding=OptionEncoding.LEGACY_TEXT)
    assert rfc == encode_uri_list([SHORT_URI])
    assert legacy == SHORT_URI.encode("ascii")
    assert legacy != rfc
    assert encode_legacy_text([SHORT_URI]) == legacy


def test_legacy_text_allows_the_restconf_path() -> None:
    uri = (
        "https://bootstrap:9090/restconf/operations/"
        "ietf-sztp-bootstrap-server:get-bootstrapping-data"
    )
    assert encode_legacy_text([uri]) == uri.encode("ascii")


@pytest.mark.parametrize(
    ("uris", "expected"),
    [
        ([SHORT_URI, "https://b.example"], "exactly one URI, got 2"),
        (["http://a.example"], "only 'https' is allowed"),
        (["https://a.example/x?y=1"], "has a query"),
        (["https://a.example/x y"], "whitespace"),
        (["https://a.example/%zz"], "invalid characters in its path '/%zz'"),
        (["https://a.example/" + "x" * 300], "over the DHCPv4 limit of 255"),
        ([], "at least one"),
    ],
)
def test_legacy_text_rejections(uris: list[str], expected: str) -> None:
    with pytest.raises(DhcpEncodingError) as caught:
        encode_legacy_text(uris)
    assert expected in caught.value.message


def test_hex_helpers() -> None:
    payload = encode_uri_list([GOLDEN_URI])
    assert to_hex(payload) == GOLDEN_HEX.upper()
    assert to_colon_hex(payload).startswith("00:15:68:74:74:70:73:3a")
    assert to_colon_hex(payload).replace(":", "") == GOLDEN_HEX


@pytest.mark.parametrize("size", [0, 1, 255, 256, 510, 511, 1000])
def test_rfc3396_split_join_round_trip(size: int) -> None:
    payload = bytes(index % 256 for index in range(size))
    chunks = split_v4_option(payload)
    assert all(len(chunk) <= V4_OPTION_MAX for chunk in chunks)
    assert len(chunks) == max(1, -(-size // V4_OPTION_MAX))
    assert join_v4_option_instances(chunks) == payload


def test_rfc3396_join_feeds_the_decoder() -> None:
    uris = [_uri_of_length(100), _uri_of_length(100), _uri_of_length(52)]
    payload = encode_uri_list(uris, Family.V6)
    assert decode_uri_list(join_v4_option_instances(split_v4_option(payload))) == uris


def test_rfc3396_join_rejects_oversized_instance() -> None:
    with pytest.raises(DhcpEncodingError, match="option instance 1 is 256 bytes"):
        join_v4_option_instances([b"a", b"b" * 256])


@pytest.mark.parametrize(("family", "code"), [(Family.V4, 143), (Family.V6, 136)])
def test_kea_option_data(family: Family, code: int) -> None:
    assert render_kea_option_data([GOLDEN_URI], family) == {
        "code": code,
        "csv-format": False,
        "data": GOLDEN_HEX.upper(),
        "always-send": True,
    }


def test_kea_option_data_legacy() -> None:
    rendered = render_kea_option_data([SHORT_URI], Family.V4, OptionEncoding.LEGACY_TEXT)
    assert rendered == {
        "code": 143,
        "csv-format": False,
        "data": SHORT_URI.encode().hex().upper(),
        "always-send": True,
    }


def test_kea_option_data_has_no_name() -> None:
    assert "name" not in render_kea_option_data([GOLDEN_URI])


def test_isc_dhcpd_v4() -> None:
    assert render_isc_dhcpd([SHORT_URI]) == (
        "# SZTP redirect, DHCPv4 option 143, RFC 8572 encoding; "
        "dhcpd sends it only when the client requests it\n"
        "option sztp-redirect code 143 = string;\n"
        f"option sztp-redirect {SHORT_COLON_HEX};\n"
    )


def test_isc_dhcpd_v6() -> None:
    assert render_isc_dhcpd([SHORT_URI], Family.V6) == (
        "# SZTP redirect, DHCPv6 option 136, RFC 8572 encoding; "
        "dhcpd sends it only when the client requests it\n"
        "option dhcp6.sztp-redirect code 136 = string;\n"
        f"option dhcp6.sztp-redirect {SHORT_COLON_HEX};\n"
    )


def test_isc_dhcpd_legacy() -> None:
    assert render_isc_dhcpd([SHORT_URI], Family.V4, OptionEncoding.LEGACY_TEXT) == (
        "# SZTP redirect, DHCPv4 option 143, legacy plain text, NOT RFC 8572 conformant; "
        "dhcpd sends it only when the client requests it\n"
        "option sztp-redirect code 143 = string;\n"
        f"option sztp-redirect {SHORT_TEXT_COLON_HEX};\n"
    )


def test_dnsmasq_v4() -> None:
    assert render_dnsmasq([SHORT_URI]) == (
        "# SZTP redirect, DHCPv4 option 143, RFC 8572 encoding\n"
        f"dhcp-option-force=143,{SHORT_COLON_HEX}\n"
    )


def test_dnsmasq_v6() -> None:
    assert render_dnsmasq([SHORT_URI], Family.V6) == (
        "# SZTP redirect, DHCPv6 option 136, RFC 8572 encoding\n"
        f"dhcp-option-force=option6:136,{SHORT_COLON_HEX}\n"
    )


def test_dnsmasq_legacy() -> None:
    assert render_dnsmasq([SHORT_URI], Family.V6, OptionEncoding.LEGACY_TEXT) == (
        "# SZTP redirect, DHCPv6 option 136, legacy plain text, NOT RFC 8572 conformant\n"
        f"dhcp-option-force=option6:136,{SHORT_TEXT_COLON_HEX}\n"
    )


@pytest.mark.parametrize("render", [render_kea_option_data, render_isc_dhcpd, render_dnsmasq])
def test_renderers_refuse_oversized_v4(render: Callable[..., object]) -> None:
    uris = [_uri_of_length(200), _uri_of_length(200)]
    with pytest.raises(DhcpEncodingError, match="404 bytes"):
        render(uris, Family.V4)

"""RFC 9646 (a CSR in get-bootstrapping-data): the wire format of csr-support, the CSR leaves
and the csr-request error in JSON and XML, and the PKCS#10 flow from the server's
CertificationRequestInfo to the device's signed request and the server's checks of it."""

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from sztp.errors import PkiError, ValidationError
from sztp.protocol import csr
from sztp.protocol.csr import (
    CMC_CSR,
    CMP_CSR,
    KEY_ALGORITHMS,
    MAX_CSR_SIZE,
    P10_CSR,
    Csr,
    CsrRequest,
    CsrSupport,
)
from sztp.protocol.restconf import (
    CSR_NAMESPACE,
    NAMESPACE,
    RESTCONF_NAMESPACE,
    GetBootstrappingDataInput,
    RestconfError,
    WireFormat,
    csr_request_error,
    encode_errors,
    encode_get_bootstrapping_data_input,
    parse_errors,
    parse_get_bootstrapping_data_input,
)

JSON, XML = WireFormat.JSON, WireFormat.XML
INPUT = "ietf-sztp-bootstrap-server:input"
SUPPORT = f"{INPUT}/ietf-sztp-csr:csr-support"
ALGORITHMS = f"{SUPPORT}/key-generation/supported-algorithms/algorithm-identifier"
FORMATS = f"{SUPPORT}/csr-generation/supported-formats/format-identifier"
ERROR_INFO = "ietf-restconf:errors/error[1]/error-info"
ERROR_REQUEST = f"{ERROR_INFO}/ietf-sztp-csr:csr-request"
P10_PATH = f"{INPUT}/ietf-sztp-csr:p10-csr"
ZTP_NAMESPACE = "urn:ietf:params:xml:ns:yang:ietf-ztp-types"
SERIAL = "SN-0042"

# DER AlgorithmIdentifiers, written out (RFC 5480 §2.1.1, RFC 3279 §2.3.1, RFC 8410 §3).
EC_P256 = bytes.fromhex("301306072a8648ce3d020106082a8648ce3d030107")
RSA = bytes.fromhex("300d06092a864886f70d0101010500")
SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
        x509.NameAttribute(NameOID.COMMON_NAME, SERIAL),
    ]
)
EXTENSIONS = (
    x509.Extension(
        ExtensionOID.EXTENDED_KEY_USAGE,
        False,
        x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]),
    ),
    x509.Extension(
        ExtensionOID.KEY_USAGE,
        True,
        x509.KeyUsage(True, False, False, False, False, False, False, False, False),
    ),
)


def _field_of(function: Callable[[], object]) -> str:
    with pytest.raises(ValidationError) as caught:
        function()
    return caught.value.field


def _json_input(members: dict[str, object]) -> bytes:
    return json.dumps({INPUT: members}).encode()


def _xml_input(content: str) -> bytes:
    return f'<input xmlns="{NAMESPACE}">{content}</input>'.encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --------------------------------------------------------------------------- algorithms


def test_key_algorithms_are_the_der_algorithm_identifiers() -> None:
    assert dict(KEY_ALGORITHMS) == {
        "ec-p256": EC_P256,
        "ec-p384": bytes.fromhex("301006072a8648ce3d020106052b81040022"),
        "ec-p521": bytes.fromhex("301006072a8648ce3d020106052b81040023"),
        "rsa": RSA,
        "ed25519": bytes.fromhex("300506032b6570"),
    }
    for name, der in KEY_ALGORITHMS.items():
        assert csr.key_algorithm_name(der) == name
    assert csr.key_algorithm_name(bytes.fromhex("300b06092a864886f70d010101")) is None
    assert csr.key_algorithm_name(b"") is None


_KEY_MAKERS: dict[str, Callable[[], csr.SigningKey]] = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ec-p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "rsa": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
}


@pytest.fixture(scope="module")
def keys() -> dict[str, csr.SigningKey]:
    return {name: make() for name, make in _KEY_MAKERS.items()}


def test_key_algorithm_of(keys: dict[str, csr.SigningKey]) -> None:
    for name, key in keys.items():
        assert csr.key_algorithm_of(key.public_key()) == name
        # A device's own key carries exactly the identifier it advertises.
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert KEY_ALGORITHMS[name] in spki
    rsa_3072 = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    assert csr.key_algorithm_of(rsa_3072.public_key()) == "rsa"
    for other in (ec.generate_private_key(ec.SECP256K1()), ed448.Ed448PrivateKey.generate()):
        with pytest.raises(PkiError):
            csr.key_algorithm_of(other.public_key())
    assert isinstance(csr.signature_hash_of(keys["ec-p384"].public_key()), hashes.SHA384)
    assert isinstance(csr.signature_hash_of(keys["ec-p521"].public_key()), hashes.SHA512)
    assert isinstance(csr.signature_hash_of(keys["rsa"].public_key()), hashes.SHA256)
    assert csr.signature_hash_of(keys["ed25519"].public_key()) is None


# --------------------------------------------------------------------------- the values


def test_constructors_enforce_the_yang_rules() -> None:
    assert _field_of(lambda: CsrSupport((), (P10_CSR,))) == ALGORITHMS
    assert _field_of(lambda: CsrSupport(None, ())) == FORMATS
    assert _field_of(lambda: CsrSupport((EC_P256, b"\x30\x00"), (P10_CSR,))) == f"{ALGORITHMS}[2]"
    assert _field_of(lambda: CsrSupport(None, (P10_CSR, "p10-csr"))) == f"{FORMATS}[2]"
    request = "ietf-sztp-csr:csr-request"
    assert _field_of(lambda: CsrRequest(b"junk", P10_CSR)) == (
        f"{request}/key-generation/selected-algorithm/algorithm-identifier"
    )
    assert _field_of(lambda: CsrRequest(None, "ietf-ztp-types:x509")) == (
        f"{request}/csr-generation/selected-format/format-identifier"
    )
    assert _field_of(lambda: CsrRequest(None, P10_CSR, b"\x30\x00")) == f"{request}/cert-req-info"
    assert _field_of(lambda: Csr("ietf-ztp-types:est", b"x")) == f"{INPUT}/ietf-sztp-csr:est"
    with pytest.raises(ValidationError, match="unknown certificate request format"):
        CsrSupport(None, ("ietf-sztp-csr:p10-csr",))


@pytest.mark.parametrize(
    "der",
    [
        b"",
        b"\x30",
        b"\x04\x00",
        b"\x30\x00",  # no algorithm
        b"\x30\x02\x06\x00",  # empty OID
        EC_P256 + b"\x00",  # trailing octets
        b"\x30\x81\x13" + EC_P256[2:],  # long-form length: BER, not DER
        bytes.fromhex("300606032b657005"),  # parameters cut short
    ],
)
def test_algorithm_identifiers_must_be_der(der: bytes) -> None:
    with pytest.raises(ValidationError, match="not a DER AlgorithmIdentifier"):
        CsrSupport((der,), (P10_CSR,))


def test_any_well_formed_algorithm_identifier_passes() -> None:
    # An algorithm this kit cannot make keys for is still a valid offer (the server skips it).
    ml_dsa = bytes.fromhex("300b0609608648016503040312")
    assert CsrSupport((ml_dsa,), (CMP_CSR,)).key_algorithms == (ml_dsa,)


# --------------------------------------------------------------------------- exact bytes

SUPPORT_EXAMPLE = GetBootstrappingDataInput(
    hw_model="lab-x1",
    csr_support=CsrSupport((EC_P256, RSA), (P10_CSR, CMP_CSR)),
)
CRI_EXAMPLE = bytes.fromhex(
    "302f020100300e310c300a06035504051303534e313018301306072a8648ce3d02"
    "0106082a8648ce3d030107030100a000"
)
REQUEST_EXAMPLE = CsrRequest(EC_P256, P10_CSR, CRI_EXAMPLE)


def test_csr_support_exact_bytes() -> None:
    json_body = (
        b'{"ietf-sztp-bootstrap-server:input":{"hw-model":"lab-x1","ietf-sztp-csr:csr-support":'
        b'{"key-generation":{"supported-algorithms":{"algorithm-identifier":'
        b'["MBMGByqGSM49AgEGCCqGSM49AwEH","MA0GCSqGSIb3DQEBAQUA"]}},'
        b'"csr-generation":{"supported-formats":{"format-identifier":'
        b'["ietf-ztp-types:p10-csr","ietf-ztp-types:cmp-csr"]}}}}}'
    )
    xml_body = (
        b'<input xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">'
        b"<hw-model>lab-x1</hw-model>"
        b'<csr-support xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-csr"><key-generation>'
        b"<supported-algorithms>"
        b"<algorithm-identifier>MBMGByqGSM49AgEGCCqGSM49AwEH</algorithm-identifier>"
        b"<algorithm-identifier>MA0GCSqGSIb3DQEBAQUA</algorithm-identifier>"
        b"</supported-algorithms></key-generation><csr-generation><supported-formats>"
        b'<format-identifier xmlns:ietf-ztp-types="urn:ietf:params:xml:ns:yang:ietf-ztp-types">'
        b"ietf-ztp-types:p10-csr</format-identifier>"
        b'<format-identifier xmlns:ietf-ztp-types="urn:ietf:params:xml:ns:yang:ietf-ztp-types">'
        b"ietf-ztp-types:cmp-csr</format-identifier>"
        b"</supported-formats></csr-generation></csr-support></input>"
    )
    assert encode_get_bootstrapping_data_input(SUPPORT_EXAMPLE, JSON) == json_body
    assert encode_get_bootstrapping_data_input(SUPPORT_EXAMPLE, XML) == xml_body
    assert parse_get_bootstrapping_data_input(json_body, JSON) == SUPPORT_EXAMPLE
    assert parse_get_bootstrapping_data_input(xml_body, XML) == SUPPORT_EXAMPLE


def test_csr_leaf_exact_bytes() -> None:
    example = GetBootstrappingDataInput(nonce=bytes(16), csr=Csr(P10_CSR, b"\x30\x03\x02\x01\x00"))
    json_body = (
        b'{"ietf-sztp-bootstrap-server:input":{"nonce":"AAAAAAAAAAAAAAAAAAAAAA==",'
        b'"ietf-sztp-csr:p10-csr":"MAMCAQA="}}'
    )
    xml_body = (
        b'<input xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">'
        b"<nonce>AAAAAAAAAAAAAAAAAAAAAA==</nonce>"
        b'<p10-csr xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-csr">MAMCAQA=</p10-csr></input>'
    )
    assert encode_get_bootstrapping_data_input(example, JSON) == json_body
    assert encode_get_bootstrapping_data_input(example, XML) == xml_body


def test_csr_request_error_exact_bytes() -> None:
    error = csr_request_error(REQUEST_EXAMPLE)
    assert (error.error_type, error.error_tag) == ("application", "missing-attribute")
    message = error.error_message
    assert message is not None
    json_body = (
        b'{"ietf-restconf:errors":{"error":[{"error-type":"application",'
        b'"error-tag":"missing-attribute","error-message":"' + message.encode() + b'",'
        b'"error-info":{"ietf-sztp-csr:csr-request":{"key-generation":{"selected-algorithm":'
        b'{"algorithm-identifier":"MBMGByqGSM49AgEGCCqGSM49AwEH"}},"csr-generation":'
        b'{"selected-format":{"format-identifier":"ietf-ztp-types:p10-csr"}},'
        b'"cert-req-info":"MC8CAQAwDjEMMAoGA1UEBRMDU04xMBgwEwYHKoZIzj0CAQYIKoZIzj0DAQcDAQCgAA=="'
        b"}}}]}}"
    )
    xml_body = (
        b'<errors xmlns="urn:ietf:params:xml:ns:yang:ietf-restconf"><error>'
        b"<error-type>application</error-type><error-tag>missing-attribute</error-tag>"
        b"<error-message>" + message.encode() + b"</error-message><error-info>"
        b'<csr-request xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-csr"><key-generation>'
        b"<selected-algorithm><algorithm-identifier>MBMGByqGSM49AgEGCCqGSM49AwEH"
        b"</algorithm-identifier></selected-algorithm></key-generation><csr-generation>"
        b'<selected-format><format-identifier xmlns:ietf-ztp-types="urn:ietf:params:xml:ns:'
        b'yang:ietf-ztp-types">ietf-ztp-types:p10-csr</format-identifier></selected-format>'
        b"</csr-generation><cert-req-info>"
        b"MC8CAQAwDjEMMAoGA1UEBRMDU04xMBgwEwYHKoZIzj0CAQYIKoZIzj0DAQcDAQCgAA=="
        b"</cert-req-info></csr-request></error-info></error></errors>"
    )
    assert encode_errors([error], JSON) == json_body
    assert encode_errors([error], XML) == xml_body
    assert parse_errors(json_body, JSON) == parse_errors(xml_body, XML) == (error,)


def _content(der: bytes) -> bytes:
    """The content octets of a DER TLV."""
    size = der[1] & 0x7F if der[1] & 0x80 else 0
    return der[2 + size :]


def test_build_cert_req_info_exact_bytes(keys: dict[str, csr.SigningKey]) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN1")])
    assert csr.build_cert_req_info(name, EC_P256) == CRI_EXAMPLE
    # The attributes: [0] { extensionRequest { { extKeyUsage (not critical) { clientAuth } } } }.
    assert csr.build_cert_req_info(name, EC_P256, EXTENSIONS[:1]) == bytes.fromhex(
        "3055020100300e310c300a06035504051303534e313018301306072a8648ce3d020106082a8648ce3d0301"
        "07030100a026302406092a864886f70d01090e311730153013060355"
        "1d25040c300a06082b06010505070302"
    )
    # Subject and attributes are what cryptography writes for the same request; only the
    # key differs, a placeholder until the device puts its own in.
    builder = x509.CertificateSigningRequestBuilder().subject_name(SUBJECT)
    for extension in EXTENSIONS:
        builder = builder.add_extension(extension.value, extension.critical)
    key = keys["ec-p256"]
    reference = builder.sign(key, hashes.SHA256()).tbs_certrequest_bytes
    device_key = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    placeholder = bytes.fromhex("3018") + EC_P256 + bytes.fromhex("030100")
    info = csr.build_cert_req_info(SUBJECT, EC_P256, EXTENSIONS)
    assert _content(info) == _content(reference).replace(device_key, placeholder)


# --------------------------------------------------------------------------- round trips

INPUTS = {
    "support": SUPPORT_EXAMPLE,
    "support-without-key-generation": GetBootstrappingDataInput(
        csr_support=CsrSupport(None, (CMC_CSR,))
    ),
    "support-every-algorithm": GetBootstrappingDataInput(
        csr_support=CsrSupport(tuple(KEY_ALGORITHMS.values()), (P10_CSR, CMC_CSR, CMP_CSR))
    ),
    **{
        fmt.rpartition(":")[2]: GetBootstrappingDataInput(
            signed_data_preferred=True, csr=Csr(fmt, bytes(range(40)))
        )
        for fmt in (P10_CSR, CMC_CSR, CMP_CSR)
    },
}
ERRORS = {
    "full": (csr_request_error(REQUEST_EXAMPLE),),
    "format-only": (csr_request_error(CsrRequest(None, CMP_CSR)),),
    "no-cert-req-info": (
        RestconfError("protocol", "invalid-value", "first"),
        RestconfError(
            "application",
            "missing-attribute",
            error_app_tag="csr",
            error_path="/ietf-sztp-bootstrap-server:input",
            csr_request=CsrRequest(RSA, P10_CSR),
        ),
    ),
}


@pytest.mark.parametrize("fmt", list(WireFormat))
@pytest.mark.parametrize("example", list(INPUTS.values()), ids=list(INPUTS))
def test_input_round_trip(fmt: WireFormat, example: GetBootstrappingDataInput) -> None:
    encoded = encode_get_bootstrapping_data_input(example, fmt)
    assert parse_get_bootstrapping_data_input(encoded, fmt) == example


@pytest.mark.parametrize("fmt", list(WireFormat))
@pytest.mark.parametrize("errors", list(ERRORS.values()), ids=list(ERRORS))
def test_errors_round_trip(fmt: WireFormat, errors: tuple[RestconfError, ...]) -> None:
    assert parse_errors(encode_errors(errors, fmt), fmt) == errors


def test_both_choices_refused_by_the_constructor() -> None:
    support = CsrSupport(None, (P10_CSR,))
    assert _field_of(
        lambda: GetBootstrappingDataInput(csr_support=support, csr=Csr(CMP_CSR, b"x"))
    ) == (f"{INPUT}/ietf-sztp-csr:cmp-csr")


# --------------------------------------------------------------------------- lenient reading


def test_xml_pretty_printed_with_other_prefixes() -> None:
    body = f"""<?xml version="1.0" encoding="UTF-8"?>
<s:input xmlns:s="{NAMESPACE}" xmlns:t="{ZTP_NAMESPACE}">
  <c:csr-support xmlns:c="{CSR_NAMESPACE}">
    <c:csr-generation>
      <c:supported-formats>
        <c:format-identifier>t:cmc-csr</c:format-identifier>
        <c:format-identifier xmlns:zt="{ZTP_NAMESPACE}">zt:p10-csr</c:format-identifier>
        <c:format-identifier xmlns="{ZTP_NAMESPACE}">cmp-csr</c:format-identifier>
      </c:supported-formats>
    </c:csr-generation>
    <c:key-generation>
      <c:supported-algorithms>
        <c:algorithm-identifier>{_b64(EC_P256)}</c:algorithm-identifier>
      </c:supported-algorithms>
    </c:key-generation>
  </c:csr-support>
  <s:os-name>VendorOS</s:os-name>
</s:input>
""".encode()
    assert parse_get_bootstrapping_data_input(body, XML) == GetBootstrappingDataInput(
        os_name="VendorOS", csr_support=CsrSupport((EC_P256,), (CMC_CSR, P10_CSR, CMP_CSR))
    )


def test_empty_key_generation_or_csr_support_written_as_xml_empty_elements() -> None:
    body = _xml_input(f'<csr-support xmlns="{CSR_NAMESPACE}"><key-generation/></csr-support>')
    # key-generation present: its leaf-list is checked first, then the formats.
    assert _field_of(lambda: parse_get_bootstrapping_data_input(body, XML)) == ALGORITHMS


def test_errors_of_other_servers_keep_parsing() -> None:
    other = {
        "ietf-restconf:errors": {
            "error": [
                {
                    "error-type": "application",
                    "error-tag": "operation-failed",
                    "error-app-tag": "vendor:busy",
                    "error-info": {"vendor:retry": {"after": 5}, "vendor:flag": [None]},
                },
                {
                    "error-type": "application",
                    "error-tag": "missing-attribute",
                    "error-info": {
                        "vendor:hint": "x",
                        "ietf-sztp-csr:csr-request": {
                            "csr-generation": {
                                "selected-format": {"format-identifier": "ietf-ztp-types:p10-csr"}
                            }
                        },
                    },
                },
            ]
        }
    }
    assert parse_errors(json.dumps(other).encode(), JSON) == (
        RestconfError("application", "operation-failed", error_app_tag="vendor:busy"),
        RestconfError("application", "missing-attribute", csr_request=CsrRequest(None, P10_CSR)),
    )
    xml_body = (
        f'<errors xmlns="{RESTCONF_NAMESPACE}"><error><error-type>rpc</error-type>'
        "<error-tag>operation-failed</error-tag>"
        '<error-info a="1">free text<v:detail xmlns:v="urn:vendor" v:b="2"><x/></v:detail>'
        "<session-id>7</session-id>tail</error-info></error></errors>"
    ).encode()
    assert parse_errors(xml_body, XML) == (RestconfError("rpc", "operation-failed"),)


# --------------------------------------------------------------------------- refusals


def _algorithms(*values: object) -> dict[str, object]:
    return {"key-generation": {"supported-algorithms": {"algorithm-identifier": list(values)}}}


def _formats(*values: object) -> dict[str, object]:
    return {"csr-generation": {"supported-formats": {"format-identifier": list(values)}}}


_P10 = _formats("ietf-ztp-types:p10-csr")
_KEYS = _algorithms(_b64(EC_P256))
_KEYS_NOT_A_LIST = {"key-generation": {"supported-algorithms": {"algorithm-identifier": "MAA="}}}
_FORMATS_NOT_A_LIST = {"csr-generation": {"supported-formats": {"format-identifier": P10_CSR}}}


def _support(**members: object) -> bytes:
    return _json_input({"ietf-sztp-csr:csr-support": members})


def _support_xml(*values: str, declarations: str = "") -> str:
    items = "".join(
        f"<format-identifier{declarations}>{value}</format-identifier>" for value in values
    )
    return (
        f'<csr-support xmlns="{CSR_NAMESPACE}"><csr-generation><supported-formats>{items}'
        "</supported-formats></csr-generation></csr-support>"
    )


def _formats_xml(*values: str, declarations: str = "") -> bytes:
    return _xml_input(_support_xml(*values, declarations=declarations))


def _csr_xml(*leaves: str, after: str = "") -> bytes:
    return _xml_input(
        "".join(f'<{leaf} xmlns="{CSR_NAMESPACE}">MAA=</{leaf}>' for leaf in leaves) + after
    )


_ZT = f' xmlns:zt="{ZTP_NAMESPACE}"'
_CMP = f"{INPUT}/ietf-sztp-csr:cmp-csr"
_CMC = f"{INPUT}/ietf-sztp-csr:cmc-csr"
_BAD_INPUTS: list[tuple[WireFormat, bytes, str]] = [
    # Both choices, or two CSR formats: the second in schema order is named.
    (JSON, _json_input({"ietf-sztp-csr:csr-support": _P10, "ietf-sztp-csr:p10-csr": ""}), P10_PATH),
    (JSON, _json_input({"ietf-sztp-csr:cmp-csr": "", "ietf-sztp-csr:p10-csr": ""}), _CMP),
    (XML, _csr_xml("cmc-csr", after=_support_xml("zt:p10-csr", declarations=_ZT)), _CMC),
    (XML, _csr_xml("p10-csr", "p10-csr"), P10_PATH),
    # min-elements 1, also through absent non-presence containers.
    (JSON, _support(), FORMATS),
    (JSON, _support(**{"csr-generation": {"supported-formats": {}}}), FORMATS),
    (JSON, _support(**_formats()), FORMATS),
    (JSON, _support(**_KEYS), FORMATS),
    (JSON, _support(**{"key-generation": {}}, **_P10), ALGORITHMS),
    (JSON, _support(**_algorithms(), **_P10), ALGORITHMS),
    (XML, _xml_input(f'<csr-support xmlns="{CSR_NAMESPACE}"/>'), FORMATS),
    # Unknown identities, or identities of the wrong module (RFC 7951 §6.8: unqualified is
    # the leaf's module, ietf-sztp-csr; RFC 7950 §9.10.3: unprefixed is the default namespace).
    (JSON, _support(**_formats("ietf-ztp-types:est")), f"{FORMATS}[1]"),
    (JSON, _support(**_formats("p10-csr")), f"{FORMATS}[1]"),
    (JSON, _support(**_formats("ietf-ztp-types:p10-csr", 7)), f"{FORMATS}[2]"),
    (XML, _formats_xml("p10-csr"), f"{FORMATS}[1]"),
    (XML, _formats_xml("zt:p10-csr", "zt:x", declarations=_ZT), f"{FORMATS}[2]"),
    (XML, _formats_xml("u:p10-csr", declarations=' xmlns:u="urn:unknown"'), f"{FORMATS}[1]"),
    # A prefix that nothing declares.
    (XML, _formats_xml("ietf-ztp-types:p10-csr"), f"{FORMATS}[1]"),
    (XML, _formats_xml("zt:p10-csr"), f"{FORMATS}[1]"),
    # Algorithm identifiers: base64 of DER AlgorithmIdentifiers only.
    (JSON, _support(**_algorithms(_b64(EC_P256), "AA=="), **_P10), f"{ALGORITHMS}[2]"),
    (JSON, _support(**_algorithms("!!"), **_P10), f"{ALGORITHMS}[1]"),
    (JSON, _support(**_algorithms(_b64(EC_P256 + b"\x00")), **_P10), f"{ALGORITHMS}[1]"),
    # The structure itself: unknown members, wrong kinds.
    (JSON, _support(**_KEYS, **_P10, extra=1), f"{SUPPORT}/extra"),
    (JSON, _support(**{"key-generation": [None]}, **_P10), f"{SUPPORT}/key-generation"),
    (JSON, _support(**_KEYS_NOT_A_LIST, **_P10), ALGORITHMS),
    (JSON, _support(**_FORMATS_NOT_A_LIST), FORMATS),
    (JSON, _json_input({"ietf-sztp-csr:p10-csr": "not base64"}), P10_PATH),
    (JSON, _json_input({"ietf-sztp-csr:p10-csr": {}}), P10_PATH),
    (JSON, _json_input({"ietf-sztp-csr:csr": "MAA="}), f"{INPUT}/ietf-sztp-csr:csr"),
    (JSON, _json_input({"p10-csr": "MAA="}), f"{INPUT}/p10-csr"),
    (XML, _xml_input("<p10-csr>MAA=</p10-csr>"), f"{INPUT}/p10-csr"),
    (XML, _xml_input(f'<csr-support xmlns="{CSR_NAMESPACE}" a="1"/>'), SUPPORT),
    (XML, _xml_input(f'<csr-support xmlns="{CSR_NAMESPACE}"><x/></csr-support>'), f"{SUPPORT}/x"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "body", "field"), _BAD_INPUTS)
def test_bad_input_names_the_field(fmt: WireFormat, body: bytes, field: str) -> None:
    assert _field_of(lambda: parse_get_bootstrapping_data_input(body, fmt)) == field


def test_refusals_say_why() -> None:
    body = _support(
        **{"csr-generation": {"supported-formats": {"format-identifier": ["ietf-ztp-types:est"]}}}
    )
    with pytest.raises(ValidationError, match="unknown certificate request format"):
        parse_get_bootstrapping_data_input(body, JSON)
    with pytest.raises(ValidationError, match="prefix 'zt' is not declared"):
        parse_get_bootstrapping_data_input(_formats_xml("zt:p10-csr"), XML)
    with pytest.raises(ValidationError, match="min-elements"):
        parse_get_bootstrapping_data_input(_support(), JSON)
    with pytest.raises(ValidationError, match="choice msg-type"):
        parse_get_bootstrapping_data_input(
            _json_input({"ietf-sztp-csr:csr-support": _P10, "ietf-sztp-csr:cmc-csr": "MAA="}),
            JSON,
        )


def _errors_json(info: object) -> bytes:
    entry = {"error-type": "application", "error-tag": "missing-attribute", "error-info": info}
    return json.dumps({"ietf-restconf:errors": {"error": [entry]}}).encode()


def _request(**members: object) -> bytes:
    return _errors_json({"ietf-sztp-csr:csr-request": members})


def _selected_format(value: object) -> dict[str, object]:
    return {"csr-generation": {"selected-format": {"format-identifier": value}}}


def _selected_algorithm(value: object) -> dict[str, object]:
    return {"key-generation": {"selected-algorithm": {"algorithm-identifier": value}}}


def _errors_xml(info: str) -> bytes:
    return (
        f'<errors xmlns="{RESTCONF_NAMESPACE}"><error><error-type>application</error-type>'
        f"<error-tag>missing-attribute</error-tag><error-info>{info}</error-info></error>"
        "</errors>"
    ).encode()


def _request_xml(content: str) -> bytes:
    return _errors_xml(f'<csr-request xmlns="{CSR_NAMESPACE}">{content}</csr-request>')


_FORMAT = _selected_format("ietf-ztp-types:p10-csr")
_SELECTED = f"{ERROR_REQUEST}/key-generation/selected-algorithm/algorithm-identifier"
_SELECTED_FORMAT = f"{ERROR_REQUEST}/csr-generation/selected-format/format-identifier"
_CRI = f"{ERROR_REQUEST}/cert-req-info"
_CRI_V2 = CRI_EXAMPLE.replace(b"\x02\x01\x00", b"\x02\x01\x01", 1)
_XML_FORMAT = (
    "<csr-generation><selected-format><format-identifier>{}</format-identifier>"
    "</selected-format></csr-generation>"
)
_BAD_ERRORS: list[tuple[WireFormat, bytes, str]] = [
    (JSON, _request(), _SELECTED_FORMAT),
    (JSON, _request(**{"csr-generation": {"selected-format": {}}}), _SELECTED_FORMAT),
    (JSON, _request(**_selected_format("ietf-ztp-types:nope")), _SELECTED_FORMAT),
    (JSON, _request(**_selected_format(["ietf-ztp-types:p10-csr"])), _SELECTED_FORMAT),
    (JSON, _request(**_selected_format(1)), _SELECTED_FORMAT),
    (JSON, _request(**{"key-generation": {}}, **_FORMAT), _SELECTED),
    (JSON, _request(**{"key-generation": {"selected-algorithm": {}}}, **_FORMAT), _SELECTED),
    (JSON, _request(**_selected_algorithm("AA=="), **_FORMAT), _SELECTED),
    (JSON, _request(**_selected_algorithm(5), **_FORMAT), _SELECTED),
    (JSON, _request(**_selected_algorithm([_b64(EC_P256)]), **_FORMAT), _SELECTED),
    (JSON, _request(**_FORMAT, **{"cert-req-info": "MAA="}), _CRI),
    (JSON, _request(**_FORMAT, **{"cert-req-info": _b64(CRI_EXAMPLE[:-1])}), _CRI),
    (JSON, _request(**_FORMAT, **{"cert-req-info": _b64(_CRI_V2)}), _CRI),
    (JSON, _request(**_FORMAT, **{"cert-req-info": True}), _CRI),
    (JSON, _request(**_FORMAT, extra=1), f"{ERROR_REQUEST}/extra"),
    (JSON, _errors_json([{"ietf-sztp-csr:csr-request": {}}]), ERROR_INFO),
    (JSON, _errors_json({"ietf-sztp-csr:csr-request": []}), ERROR_REQUEST),
    # XML: the identity's prefix must be declared; one csr-request only.
    (XML, _request_xml(_XML_FORMAT.format("ietf-ztp-types:p10-csr")), _SELECTED_FORMAT),
    (XML, _request_xml(_XML_FORMAT.format("p10-csr")), _SELECTED_FORMAT),
    (XML, _errors_xml(f'<csr-request xmlns="{CSR_NAMESPACE}"/>' * 2), ERROR_REQUEST),
    (XML, _request_xml("<x/>"), f"{ERROR_REQUEST}/x"),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "body", "field"), _BAD_ERRORS)
def test_bad_csr_request_names_the_field(fmt: WireFormat, body: bytes, field: str) -> None:
    assert _field_of(lambda: parse_errors(body, fmt)) == field


# --------------------------------------------------------------------------- PKCS#10

OPENSSL = shutil.which("openssl")


def _openssl_verifies(der: bytes, directory: Path) -> None:
    if OPENSSL is None:
        pytest.skip("openssl is not installed")
    path = directory / "request.der"
    path.write_bytes(der)
    result = subprocess.run(
        [OPENSSL, "req", "-verify", "-inform", "DER", "-in", str(path), "-noout"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "verify OK" in result.stdout + result.stderr


def _flip(der: bytes, index: int) -> bytes:
    return der[:index] + bytes([der[index] ^ 0x01]) + der[index + 1 :]


@pytest.mark.parametrize("algorithm", list(KEY_ALGORITHMS))
def test_server_asks_device_signs_server_accepts(
    algorithm: str, keys: dict[str, csr.SigningKey], tmp_path: Path
) -> None:
    key = keys[algorithm]
    info = csr.build_cert_req_info(SUBJECT, KEY_ALGORITHMS[algorithm], EXTENSIONS)
    # The request travels to the device and back unchanged.
    request = CsrRequest(KEY_ALGORITHMS[algorithm], P10_CSR, info)
    (error,) = parse_errors(encode_errors([csr_request_error(request)], XML), XML)
    assert error.csr_request == request
    der = csr.sign_cert_req_info(request.cert_req_info, x509.Name([]), key)
    _openssl_verifies(der, tmp_path)
    checked = csr.check_p10_csr(
        der, serial=SERIAL, allowed_algorithms=(algorithm,), cert_req_info=info
    )
    assert checked.subject == SUBJECT
    assert checked.public_key() == key.public_key()
    assert list(checked.extensions) == list(EXTENSIONS)
    # The CSR travels back in the input.
    sent = GetBootstrappingDataInput(csr=Csr(P10_CSR, der))
    assert (
        parse_get_bootstrapping_data_input(encode_get_bootstrapping_data_input(sent, JSON), JSON)
        == sent
    )


def test_device_without_cert_req_info_uses_its_identity_subject(
    keys: dict[str, csr.SigningKey], tmp_path: Path
) -> None:
    idevid_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "ignored when serialNumber is there"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
        ]
    )
    der = csr.sign_cert_req_info(None, idevid_subject, keys["ec-p256"])
    _openssl_verifies(der, tmp_path)
    checked = csr.check_p10_csr(
        der, serial=SERIAL, allowed_algorithms=KEY_ALGORITHMS, cert_req_info=None
    )
    assert checked.subject == idevid_subject
    assert list(checked.attributes) == []
    # Without serialNumber, the CN names the device.
    by_cn = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERIAL)])
    der = csr.sign_cert_req_info(None, by_cn, keys["ed25519"])
    assert csr.check_p10_csr(der, serial=SERIAL, allowed_algorithms=["ed25519"], cert_req_info=None)


def test_key_signing_elsewhere_builds_the_same_request(keys: dict[str, csr.SigningKey]) -> None:
    key = keys["ec-p384"]
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    info = csr.build_cert_req_info(SUBJECT, KEY_ALGORITHMS["ec-p384"])
    to_sign = csr.request_info_for_key(info, x509.Name([]), key.public_key())
    digest = csr.signature_hash_of(key.public_key())
    assert digest is not None
    der = csr.assemble_p10(to_sign, key.public_key(), key.sign(to_sign, ec.ECDSA(digest)))
    checked = csr.check_p10_csr(
        der, serial=SERIAL, allowed_algorithms=["ec-p384"], cert_req_info=info
    )
    assert checked.tbs_certrequest_bytes == to_sign
    assert checked.signature_hash_algorithm is not None
    assert checked.signature_hash_algorithm.name == "sha384"


def test_device_refuses_a_cert_req_info_for_another_key(keys: dict[str, csr.SigningKey]) -> None:
    info = csr.build_cert_req_info(SUBJECT, KEY_ALGORITHMS["rsa"])
    with pytest.raises(ValidationError, match="asks for a rsa key") as caught:
        csr.sign_cert_req_info(info, SUBJECT, keys["ec-p256"])
    assert caught.value.field == "ietf-sztp-csr:csr-request/cert-req-info"
    assert _field_of(lambda: csr.sign_cert_req_info(b"\x30\x00", SUBJECT, keys["rsa"])) == (
        "ietf-sztp-csr:csr-request/cert-req-info"
    )


def test_build_cert_req_info_refuses() -> None:
    assert _field_of(lambda: csr.build_cert_req_info(SUBJECT, b"garbage")) == "key_algorithm"
    twice = (EXTENSIONS[0], EXTENSIONS[0])
    assert _field_of(lambda: csr.build_cert_req_info(SUBJECT, RSA, twice)) == "extensions"


@pytest.fixture(scope="module")
def signed(keys: dict[str, csr.SigningKey]) -> tuple[bytes, bytes]:
    """A cert-req-info and the device's CSR for it (P-256 key)."""
    info = csr.build_cert_req_info(SUBJECT, EC_P256, EXTENSIONS)
    return info, csr.sign_cert_req_info(info, SUBJECT, keys["ec-p256"])


def _other_csr(
    keys: dict[str, csr.SigningKey],
    subject: x509.Name,
    *extensions: x509.Extension[x509.ExtensionType],
) -> bytes:
    info = csr.build_cert_req_info(subject, EC_P256, extensions)
    return csr.sign_cert_req_info(info, subject, keys["ec-p256"])


def test_check_p10_csr_refuses_each_tampering(
    signed: tuple[bytes, bytes], keys: dict[str, csr.SigningKey]
) -> None:
    info, der = signed

    def refused(
        candidate: bytes,
        match: str,
        *,
        serial: str = SERIAL,
        allowed: tuple[str, ...] = ("ec-p256", "rsa"),
        asked: bytes | None = info,
    ) -> None:
        with pytest.raises(ValidationError, match=match) as caught:
            csr.check_p10_csr(
                candidate, serial=serial, allowed_algorithms=allowed, cert_req_info=asked
            )
        assert caught.value.field == P10_PATH

    assert csr.check_p10_csr(der, serial=SERIAL, allowed_algorithms=["ec-p256"], cert_req_info=info)
    refused(der, "is not the serial 'SN-0043'", serial="SN-0043")
    refused(der, "key algorithm ec-p256 is not allowed", allowed=("rsa", "ed25519"))
    refused(_flip(der, len(der) - 1), "no proof of possession")
    refused(der + b"\x00", "not a DER PKCS#10")
    refused(der[:-1], "not a DER PKCS#10")
    refused(b"", "not a DER PKCS#10")
    refused(b"\x30" + b"\x82\xff\xff" + bytes(MAX_CSR_SIZE), f"larger than {MAX_CSR_SIZE}")
    other_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
            x509.NameAttribute(NameOID.COMMON_NAME, "another name"),
        ]
    )
    refused(_other_csr(keys, other_subject, *EXTENSIONS), "subject is not the one")
    refused(_other_csr(keys, SUBJECT, *EXTENSIONS[:1]), "attributes are not those")
    refused(_other_csr(keys, SUBJECT), "attributes are not those")
    # The right subject and attributes, but a key of another algorithm than was asked for.
    rsa_info = csr.build_cert_req_info(SUBJECT, RSA, EXTENSIONS)
    rsa_csr = csr.sign_cert_req_info(rsa_info, SUBJECT, keys["rsa"])
    refused(rsa_csr, "is not the cert-req-info's ec-p256")
    no_serial = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "org")])
    refused(_other_csr(keys, no_serial), "no serialNumber nor CN", asked=None)
    two_serials = x509.Name(
        [
            x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-0001"),
        ]
    )
    refused(_other_csr(keys, two_serials), "serialNumber", asked=None)
    # A serialNumber decides even when a CN would match.
    cn_only_matches = x509.Name(
        [
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-9"),
            x509.NameAttribute(NameOID.COMMON_NAME, SERIAL),
        ]
    )
    refused(_other_csr(keys, cn_only_matches), "serialNumber 'SN-9'", asked=None)


def test_check_p10_csr_refuses_unsupported_keys() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(SUBJECT)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(ValidationError, match="unsupported key"):
        csr.check_p10_csr(
            request, serial=SERIAL, allowed_algorithms=KEY_ALGORITHMS, cert_req_info=None
        )


def test_every_bit_flip_is_refused_or_harmless(signed: tuple[bytes, bytes]) -> None:
    """Damaged CSRs raise ValidationError only, and none passes the checks."""
    info, der = signed
    for index in range(len(der)):
        try:
            csr.check_p10_csr(
                _flip(der, index),
                serial=SERIAL,
                allowed_algorithms=KEY_ALGORITHMS,
                cert_req_info=info,
            )
        except ValidationError:
            continue
        pytest.fail(f"a flipped bit at octet {index} passed")

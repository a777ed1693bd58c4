"""RFC 9646 messages as the kit encodes them, validated with yangson against the official modules.

The device sends the `get-bootstrapping-data` input with `csr-support` or a CSR leaf (ietf-sztp-csr
augments ietf-sztp-bootstrap-server's input); the server answers a 400 `ietf-restconf:errors`
whose error-info holds the `csr-request` structure of ietf-sztp-csr. Each shape is checked in
JSON and XML, the two encodings read back by yangson as the same instance; instances that break
the modules are refused by yangson, and by the kit's parsers too.
"""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtensionOID, NameOID

import yang_modules
from sztp.errors import ValidationError
from sztp.protocol import csr
from sztp.protocol.csr import (
    CMC_CSR,
    CMP_CSR,
    FORMATS,
    KEY_ALGORITHMS,
    P10_CSR,
    Csr,
    CsrRequest,
    CsrSupport,
)
from sztp.protocol.restconf import (
    ERRORS_PATH,
    INPUT_PATH,
    RESTCONF_NAMESPACE,
    RPC_GET_BOOTSTRAPPING_DATA,
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
CSR_REQUEST = "ietf-sztp-csr:csr-request"
CSR_SUPPORT = "ietf-sztp-csr:csr-support"
CSR_NAMESPACE = yang_modules.SZTP_CSR.namespace
SERIAL = "SN-0042"

_ERRORS_YANG_DATA = "rc:yang-data yang-errors {\n    uses errors;\n  }"
_CSR_REQUEST_STRUCTURE = "sx:structure csr-request {"
# A presence container: top-level data needs none, while one that is there must hold what the
# structure makes mandatory, as a structure instance must.
_CSR_REQUEST_CONTAINER = 'container csr-request {\n    presence "a csr-request instance";'


@pytest.fixture(scope="module")
def data_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """yangson model of ietf-sztp-csr, what it imports and the RFC 8572 modules it augments.

    yangson validates the RPC input with its augments natively. It ignores the extensions
    that define data outside the datastore, as if their statements were not there: RFC 8040's
    `rc:yang-data` (ietf-restconf's errors) and RFC 8791's `sx:structure` (csr-request). In
    copies, the errors template becomes `uses errors;` and the structure a top-level container
    of the same name and content, so their bodies are validated as top-level data of their
    own modules. ietf-ztp-types is implemented, not only imported: yangson takes identities
    from implemented modules only, and its format identities are what the messages carry.
    """
    return yang_modules.data_model(
        tmp_path_factory.mktemp("yang"),
        implemented=(
            yang_modules.BOOTSTRAP_SERVER,
            yang_modules.RESTCONF,
            yang_modules.SZTP_CSR,
            yang_modules.ZTP_TYPES,
        ),
        imported=(
            yang_modules.CRYPTO_TYPES,
            yang_modules.NETCONF_ACM,
            yang_modules.STRUCTURE_EXT,
            yang_modules.YANG_TYPES,
            yang_modules.INET_TYPES,
        ),
        derive=(
            (yang_modules.RESTCONF, _ERRORS_YANG_DATA, "uses errors;"),
            (yang_modules.SZTP_CSR, _CSR_REQUEST_STRUCTURE, _CSR_REQUEST_CONTAINER),
        ),
        features={yang_modules.BOOTSTRAP_SERVER: ("onboarding-server",)},
    )


# --------------------------------------------------------------------------- examples


def _ldevid_subject(serial: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
            x509.NameAttribute(NameOID.COMMON_NAME, serial),
        ]
    )


_CLIENT_AUTH = x509.Extension(
    ExtensionOID.EXTENDED_KEY_USAGE,
    False,
    x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]),
)
# What the server sends: the key it chose among the device's and the request to sign.
_SERVER_ASKS = {
    name: CsrRequest(der, P10_CSR, csr.build_cert_req_info(_ldevid_subject(SERIAL), der))
    for name, der in KEY_ALGORITHMS.items()
}
_DEVICE_KEY = ec.generate_private_key(ec.SECP256R1())
# The device's PKCS#10 requests: for the server's CertificationRequestInfo, and, when the
# server sent none, for its IDevID's subject.
_P10_AS_ASKED = csr.sign_cert_req_info(
    _SERVER_ASKS["ec-p256"].cert_req_info, _ldevid_subject(SERIAL), _DEVICE_KEY
)
_P10_IDEVID_SUBJECT = csr.sign_cert_req_info(None, _ldevid_subject(SERIAL), _DEVICE_KEY)
# cmc-csr and cmp-csr are binary leaves: the YANG modules leave their DER content to RFC 5272
# and RFC 4210, and the kit carries it unread.
_OPAQUE_DER = bytes.fromhex("3006020101020102")

INPUTS = {
    "support-one-key-p10": GetBootstrappingDataInput(
        nonce=bytes(range(16)),
        csr_support=CsrSupport((KEY_ALGORITHMS["ec-p256"],), (P10_CSR,)),
    ),
    "support-every-key-every-format-with-rfc8572-inputs": GetBootstrappingDataInput(
        signed_data_preferred=True,
        hw_model="lab-x1",
        os_name="VendorOS",
        os_version="17.3",
        nonce=bytes(32),
        csr_support=CsrSupport(tuple(KEY_ALGORITHMS.values()), FORMATS),
    ),
    "support-idevid-key-only": GetBootstrappingDataInput(
        csr_support=CsrSupport(None, (CMC_CSR, P10_CSR))
    ),
    "p10-csr-as-asked": GetBootstrappingDataInput(
        hw_model="lab-x1", csr=Csr(P10_CSR, _P10_AS_ASKED)
    ),
    "p10-csr-idevid-subject": GetBootstrappingDataInput(csr=Csr(P10_CSR, _P10_IDEVID_SUBJECT)),
    "cmc-csr": GetBootstrappingDataInput(csr=Csr(CMC_CSR, _OPAQUE_DER)),
    "cmp-csr": GetBootstrappingDataInput(nonce=bytes(16), csr=Csr(CMP_CSR, _OPAQUE_DER)),
}
ERRORS = {
    **{f"new-{name}-key": (csr_request_error(request),) for name, request in _SERVER_ASKS.items()},
    "new-key-with-extension-request": (
        csr_request_error(
            CsrRequest(
                KEY_ALGORITHMS["ec-p384"],
                P10_CSR,
                csr.build_cert_req_info(
                    _ldevid_subject(SERIAL), KEY_ALGORITHMS["ec-p384"], (_CLIENT_AUTH,)
                ),
            )
        ),
    ),
    "new-key-no-cert-req-info": (csr_request_error(CsrRequest(KEY_ALGORITHMS["rsa"], CMP_CSR)),),
    **{
        f"idevid-key-{fmt.rpartition(':')[2]}": (csr_request_error(CsrRequest(None, fmt)),)
        for fmt in FORMATS
    },
    # RFC 9646 names no error-app-tag; a server may add its own.
    "among-other-errors-with-app-tag-and-path": (
        RestconfError("protocol", "invalid-value", "first", error_path=f"/{INPUT_PATH}/nonce"),
        RestconfError(
            "application",
            "missing-attribute",
            "a CSR is required",
            error_path=f"/{INPUT_PATH}",
            error_app_tag="csr-required",
            csr_request=_SERVER_ASKS["ed25519"],
        ),
    ),
}


# --------------------------------------------------------------------------- yangson


def _validate(instance: Any, *, semantics: bool = True) -> Any:
    from yangson.enumerations import ContentType, ValidationScope

    scope = ValidationScope.all if semantics else ValidationScope.syntax
    instance.validate(scope=scope, ctype=ContentType.all)
    return instance.raw_value()


def _input_from_json(data_model: Any, raw: object) -> Any:
    return _validate(data_model.from_raw(raw, subschema=RPC_GET_BOOTSTRAPPING_DATA))


def _input_from_xml(data_model: Any, document: bytes) -> Any:
    # For an RPC subschema, yangson reads the input element itself.
    element = yang_modules.xml_for_yangson(document)
    return _validate(data_model.from_xml(element, subschema=RPC_GET_BOOTSTRAPPING_DATA))


def _csr_request_from_json(data_model: Any, body: object) -> Any:
    return _validate(data_model.from_raw({CSR_REQUEST: body}))[CSR_REQUEST]


def _csr_request_from_xml(data_model: Any, element: ET.Element) -> Any:
    wrapper = ET.Element("data")
    wrapper.append(element)
    return _validate(data_model.from_xml(wrapper))[CSR_REQUEST]


def _errors_envelope(instance: Any) -> Any:
    # Syntax only: an error-path names a node of the request, which is not in this document,
    # so its require-instance (a semantic check) cannot hold here.
    return _validate(instance, semantics=False)[ERRORS_PATH]


def _without_error_info(errors: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(errors)
    for entry in stripped["error"]:
        entry.pop("error-info", None)
    return stripped


# --------------------------------------------------------------------------- what is sent


@pytest.mark.parametrize("example", list(INPUTS.values()), ids=list(INPUTS))
def test_device_input_conforms(data_model: Any, example: GetBootstrappingDataInput) -> None:
    json_body = encode_get_bootstrapping_data_input(example, JSON)
    from_json = _input_from_json(data_model, json.loads(json_body))
    from_xml = _input_from_xml(data_model, encode_get_bootstrapping_data_input(example, XML))
    assert from_xml == from_json
    # yangson read the RFC 9646 node the kit wrote, not an input without it.
    members = from_json[INPUT_PATH]
    if example.csr_support is not None:
        formats = members[CSR_SUPPORT]["csr-generation"]["supported-formats"]
        assert formats["format-identifier"] == list(example.csr_support.formats)
        assert ("key-generation" in members[CSR_SUPPORT]) == (
            example.csr_support.key_algorithms is not None
        )
    else:
        assert example.csr is not None
        leaves = [name for name in members if name.startswith("ietf-sztp-csr:")]
        assert leaves == [csr.csr_path(example.csr.format).rpartition("/")[2]]


@pytest.mark.parametrize("errors", list(ERRORS.values()), ids=list(ERRORS))
def test_server_csr_request_conforms(data_model: Any, errors: tuple[RestconfError, ...]) -> None:
    asked = [error.csr_request for error in errors if error.csr_request is not None]

    raw = json.loads(encode_errors(errors, JSON))
    envelope = _errors_envelope(data_model.from_raw(raw))
    json_requests = [
        _csr_request_from_json(data_model, entry["error-info"][CSR_REQUEST])
        for entry in raw[ERRORS_PATH]["error"]
        if "error-info" in entry
    ]

    # yangson cannot read anydata from XML, so error-info's content is validated on its own,
    # as the structure it holds, and the rest of the document without it.
    root = yang_modules.xml_for_yangson(encode_errors(errors, XML))
    xml_requests = []
    for error in root.iter(f"{{{RESTCONF_NAMESPACE}}}error"):
        info = error.find(f"{{{RESTCONF_NAMESPACE}}}error-info")
        if info is not None:
            (structure,) = info
            assert structure.tag == f"{{{CSR_NAMESPACE}}}csr-request"
            xml_requests.append(_csr_request_from_xml(data_model, structure))
            error.remove(info)
    wrapper = ET.Element("data")
    wrapper.append(root)
    xml_envelope = _errors_envelope(data_model.from_xml(wrapper))

    assert len(json_requests) == len(asked) >= 1
    assert xml_requests == json_requests
    assert xml_envelope == _without_error_info(envelope)
    for request, body in zip(asked, json_requests, strict=True):
        selected = body["csr-generation"]["selected-format"]["format-identifier"]
        assert selected == request.format
        assert ("key-generation" in body) == (request.key_algorithm is not None)
        assert ("cert-req-info" in body) == (request.cert_req_info is not None)


# --------------------------------------------------------------------------- what is refused


def _input(**members: object) -> dict[str, object]:
    return {INPUT_PATH: members}


def _support_body(*formats: str, **members: object) -> dict[str, object]:
    generation = {"supported-formats": {"format-identifier": list(formats)}}
    return {"csr-generation": generation, **members}


def _support(*formats: str, **members: object) -> dict[str, object]:
    return _input(**{CSR_SUPPORT: _support_body(*formats, **members)})


def _request(format_identifier: object = P10_CSR, **members: object) -> dict[str, object]:
    selected = {"selected-format": {"format-identifier": format_identifier}}
    return {"csr-generation": selected, **members}


_P10 = {"ietf-sztp-csr:p10-csr": "MAMCAQA="}
# name: (instance, the yangson error refusing it)
_BAD_INPUTS = {
    "unknown-leaf-in-csr-support": (_support(P10_CSR, **{"key-size": 256}), "RawMemberError"),
    "unknown-identity": (_support("ietf-ztp-types:pem-csr"), "YangTypeError"),
    "identity-of-another-base": (_support("ietf-crypto-types:p10-csr-format"), "YangTypeError"),
    # Unqualified, an identity is of the leaf's module (RFC 7951 §6.8), which defines none.
    "unqualified-identity": (_support("p10-csr"), "YangTypeError"),
    "no-format": (_input(**{CSR_SUPPORT: {}}), "SchemaError"),
    "key-generation-without-algorithm": (
        _support(P10_CSR, **{"key-generation": {}}),
        "SchemaError",
    ),
    "algorithm-not-base64": (
        _support(
            P10_CSR, **{"key-generation": {"supported-algorithms": {"algorithm-identifier": ["*"]}}}
        ),
        "RawTypeError",
    ),
    "csr-support-and-csr": (
        _input(**{CSR_SUPPORT: _support_body(P10_CSR)}, **_P10),
        "SchemaError",
    ),
    "two-csr-formats": (_input(**_P10, **{"ietf-sztp-csr:cmp-csr": "MAMCAQA="}), "SchemaError"),
    "csr-not-binary": (_input(**{"ietf-sztp-csr:p10-csr": 30}), "RawTypeError"),
    "csr-leaf-of-no-format": (_input(**{"ietf-sztp-csr:pem-csr": "MAMCAQA="}), "RawMemberError"),
}
_BAD_REQUESTS = {
    "unknown-leaf": (_request(**{"validity-days": 30}), "RawMemberError"),
    "no-csr-generation": ({"cert-req-info": "MAMCAQA="}, "SchemaError"),
    "no-format": ({"csr-generation": {"selected-format": {}}}, "SchemaError"),
    "key-generation-without-algorithm": (_request(**{"key-generation": {}}), "SchemaError"),
    "unknown-identity": (_request("ietf-ztp-types:pem-csr"), "YangTypeError"),
    "identity-of-another-base": (
        _request("ietf-crypto-types:one-asymmetric-key-format"),
        "YangTypeError",
    ),
    "several-formats": (_request([P10_CSR, CMP_CSR]), "RawTypeError"),
    "cert-req-info-not-base64": (_request(**{"cert-req-info": "not base64!"}), "RawTypeError"),
}


def _refused_by_yangson(validate: Callable[[], object], error: str) -> None:
    from yangson import exceptions

    with pytest.raises(exceptions.YangsonException) as caught:
        validate()
    assert type(caught.value).__name__ == error, caught.value


@pytest.mark.parametrize(("raw", "error"), list(_BAD_INPUTS.values()), ids=list(_BAD_INPUTS))
def test_wrong_device_input_is_refused(data_model: Any, raw: dict[str, object], error: str) -> None:
    _refused_by_yangson(lambda: _input_from_json(data_model, raw), error)
    with pytest.raises(ValidationError):
        parse_get_bootstrapping_data_input(json.dumps(raw).encode(), JSON)


@pytest.mark.parametrize(("body", "error"), list(_BAD_REQUESTS.values()), ids=list(_BAD_REQUESTS))
def test_wrong_csr_request_is_refused(data_model: Any, body: dict[str, object], error: str) -> None:
    _refused_by_yangson(lambda: _csr_request_from_json(data_model, body), error)
    entry = {"error-type": "application", "error-tag": "missing-attribute"}
    document = {ERRORS_PATH: {"error": [{**entry, "error-info": {CSR_REQUEST: body}}]}}
    with pytest.raises(ValidationError):
        parse_errors(json.dumps(document).encode(), JSON)


# Any prefix will do in XML: these are not the module names the kit writes.
_ZTP = f'xmlns:zt="{yang_modules.ZTP_TYPES.namespace}"'
_CT = f'xmlns:ct="{yang_modules.CRYPTO_TYPES.namespace}"'
_CSR_AS_ZTP = f'xmlns:ietf-ztp-types="{CSR_NAMESPACE}"'


def _support_xml(content: str) -> bytes:
    return (
        f'<input xmlns="{yang_modules.BOOTSTRAP_SERVER.namespace}">'
        f'<csr-support xmlns="{CSR_NAMESPACE}">{content}</csr-support></input>'
    ).encode()


def _format_xml(element: str, value: str, declaration: str = _ZTP) -> str:
    """A csr-generation whose `element` (supported-formats, selected-format) names `value`."""
    return (
        f"<csr-generation><{element}>"
        f"<format-identifier {declaration}>{value}</format-identifier>"
        f"</{element}></csr-generation>"
    )


def _formats_xml(value: str, declaration: str = _ZTP) -> str:
    return _format_xml("supported-formats", value, declaration)


def _request_xml(content: str) -> str:
    return f'<csr-request xmlns="{CSR_NAMESPACE}">{content}</csr-request>'


def _selected_xml(value: str, declaration: str = _ZTP) -> str:
    return _format_xml("selected-format", value, declaration)


def test_xml_with_other_prefixes_conforms(data_model: Any) -> None:
    """The XML checks resolve prefixes through their namespaces, not as module names."""
    document = _support_xml(_formats_xml("zt:cmc-csr"))
    assert _input_from_xml(data_model, document) == _input_from_json(data_model, _support(CMC_CSR))
    structure = yang_modules.xml_for_yangson(_request_xml(_selected_xml("zt:cmp-csr")).encode())
    assert _csr_request_from_xml(data_model, structure) == _request(CMP_CSR)


@pytest.mark.parametrize(
    ("document", "error"),
    [
        (_support_xml(_formats_xml("zt:p10-csr") + "<key-size>256</key-size>"), "RawMemberError"),
        (_support_xml(_formats_xml("ct:p10-csr-format", _CT)), "YangTypeError"),
        (_support_xml(_formats_xml("zt:pem-csr")), "YangTypeError"),
        (_support_xml(_formats_xml("zt:p10-csr") + "<key-generation/>"), "SchemaError"),
        # The prefix is the identity module's name, bound to the augmenting module.
        (_support_xml(_formats_xml("ietf-ztp-types:p10-csr", _CSR_AS_ZTP)), "YangTypeError"),
    ],
    ids=[
        "unknown-element",
        "identity-of-another-base",
        "unknown-identity",
        "no-algorithm",
        "prefix-bound-to-another-module",
    ],
)
def test_wrong_device_input_in_xml_is_refused(data_model: Any, document: bytes, error: str) -> None:
    _refused_by_yangson(lambda: _input_from_xml(data_model, document), error)
    with pytest.raises(ValidationError):
        parse_get_bootstrapping_data_input(document, XML)


@pytest.mark.parametrize(
    ("structure", "error"),
    [
        (_request_xml(_selected_xml("zt:p10-csr") + "<validity>30</validity>"), "RawMemberError"),
        (_request_xml(_selected_xml("ct:one-asymmetric-key-format", _CT)), "YangTypeError"),
        (_request_xml("<cert-req-info>MAMCAQA=</cert-req-info>"), "SchemaError"),
        (_request_xml(_selected_xml("zt:p10-csr") + "<key-generation/>"), "SchemaError"),
    ],
    ids=["unknown-element", "identity-of-another-base", "no-format", "no-algorithm"],
)
def test_wrong_csr_request_in_xml_is_refused(data_model: Any, structure: str, error: str) -> None:
    element = yang_modules.xml_for_yangson(structure.encode())
    _refused_by_yangson(lambda: _csr_request_from_xml(data_model, element), error)
    document = (
        f'<errors xmlns="{RESTCONF_NAMESPACE}"><error><error-type>application</error-type>'
        f"<error-tag>missing-attribute</error-tag><error-info>{structure}</error-info>"
        "</error></errors>"
    )
    with pytest.raises(ValidationError):
        parse_errors(document.encode(), XML)

"""RFC 8572 RPC wire format over RESTCONF (RFC 8040): codecs, negotiation, errors, host-meta."""

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from typing import Any

import pytest

import yang_modules
from sztp.errors import ValidationError
from sztp.protocol.bootstrapping_data import BootstrappingData, encode_output_json
from sztp.protocol.csr import KEY_ALGORITHMS, P10_CSR, CsrSupport
from sztp.protocol.oids import MEDIA_TYPE_JSON, MEDIA_TYPE_XML
from sztp.protocol.restconf import (
    ERROR_PROGRESS_TYPES,
    HTTP_STATUS_FOR_TAG,
    MAX_INPUT_SIZE,
    MAX_REPORT_SIZE,
    NAMESPACE,
    PROGRESS_TYPES,
    RESTCONF_NAMESPACE,
    RPC_GET_BOOTSTRAPPING_DATA,
    RPC_REPORT_PROGRESS,
    TERMINAL_PROGRESS_TYPES,
    GetBootstrappingDataInput,
    ProgressReport,
    RestconfError,
    SshHostKey,
    WireFormat,
    encode_errors,
    encode_get_bootstrapping_data_input,
    encode_get_bootstrapping_data_output,
    encode_host_meta,
    encode_report_progress_input,
    negotiate,
    operation_path,
    parse_errors,
    parse_get_bootstrapping_data_input,
    parse_get_bootstrapping_data_output,
    parse_host_meta,
    parse_report_progress_input,
)

JSON, XML = WireFormat.JSON, WireFormat.XML
INPUT = "ietf-sztp-bootstrap-server:input"
OUTPUT = "ietf-sztp-bootstrap-server:output"
ERRORS = "ietf-restconf:errors"
NONCE = bytes(range(16))

FULL_INPUT = GetBootstrappingDataInput(
    signed_data_preferred=True,
    hw_model="lab-x1",
    os_name="VendorOS",
    os_version="17.2",
    nonce=NONCE,
)
INPUTS = {
    "none": GetBootstrappingDataInput(),
    "full": FULL_INPUT,
    "csr-support": GetBootstrappingDataInput(
        csr_support=CsrSupport((KEY_ALGORITHMS["ec-p256"],), (P10_CSR,)), nonce=bytes(32)
    ),
    "markup-and-unicode": GetBootstrappingDataInput(hw_model="<&>\"' \r\n\t ü 😀", os_name=""),
}
COMPLETE_REPORT = ProgressReport(
    progress_type="bootstrap-complete",
    message="ready",
    ssh_host_keys=(
        SshHostKey("ssh-ed25519", b"\x00\x00\x00\x0bssh-ed25519" + bytes(32)),
        SshHostKey("ecdsa-sha2-nistp256", b"\x01\x02"),
    ),
    trust_anchor_certs=(b"\x30\x03\x02\x01\x01", b"\x30\x00"),
)
REPORTS = {
    "minimal": ProgressReport("bootstrap-initiated"),
    "complete": COMPLETE_REPORT,
    "error-with-message": ProgressReport("config-error", message="line 3: <bad> & \r\nworse"),
    "empty-message": ProgressReport("informational", message=""),
}
OUTPUTS = {
    "unsigned": BootstrappingData(b"\x30\x80unsigned"),
    "signed": BootstrappingData(b"\x30ci", b"\x30oc", b"\x30ov", reporting_level="verbose"),
    "minimal-level": BootstrappingData(b"\x30ci", reporting_level="minimal"),
}


def _each_example(kind: str, examples: Mapping[str, object], *values: object) -> list[Any]:
    """A parameter set per example: the example, then `values`; its id is <kind>-<name>."""
    return [
        pytest.param(example, *values, id=f"{kind}-{name}") for name, example in examples.items()
    ]


def _field_of(function: Callable[[], object]) -> str:
    with pytest.raises(ValidationError) as caught:
        function()
    return caught.value.field


def _json_input(members: dict[str, object], name: str = INPUT) -> bytes:
    return json.dumps({name: members}).encode()


def _xml_input(content: str, declarations: str = f'xmlns="{NAMESPACE}"') -> bytes:
    return f"<input {declarations}>{content}</input>".encode()


# --------------------------------------------------------------------------- golden bytes


def test_input_golden_json() -> None:
    assert encode_get_bootstrapping_data_input(FULL_INPUT, JSON) == (
        b'{"ietf-sztp-bootstrap-server:input":{"signed-data-preferred":[null],'
        b'"hw-model":"lab-x1","os-name":"VendorOS","os-version":"17.2",'
        b'"nonce":"AAECAwQFBgcICQoLDA0ODw=="}}'
    )


def test_input_golden_xml() -> None:
    assert encode_get_bootstrapping_data_input(FULL_INPUT, XML) == (
        b'<input xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">'
        b"<signed-data-preferred/><hw-model>lab-x1</hw-model><os-name>VendorOS</os-name>"
        b"<os-version>17.2</os-version><nonce>AAECAwQFBgcICQoLDA0ODw==</nonce></input>"
    )


def test_report_golden_json_and_xml() -> None:
    report = ProgressReport(
        "bootstrap-complete",
        message="ok",
        ssh_host_keys=(SshHostKey("ssh-ed25519", b"k"),),
        trust_anchor_certs=(b"t",),
    )
    assert encode_report_progress_input(report, JSON) == (
        b'{"ietf-sztp-bootstrap-server:input":{"progress-type":"bootstrap-complete",'
        b'"message":"ok","ssh-host-keys":{"ssh-host-key":[{"algorithm":"ssh-ed25519",'
        b'"key-data":"aw=="}]},"trust-anchor-certs":{"trust-anchor-cert":["dA=="]}}}'
    )
    assert encode_report_progress_input(report, XML) == (
        b'<input xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">'
        b"<progress-type>bootstrap-complete</progress-type><message>ok</message>"
        b"<ssh-host-keys><ssh-host-key><algorithm>ssh-ed25519</algorithm>"
        b"<key-data>aw==</key-data></ssh-host-key></ssh-host-keys>"
        b"<trust-anchor-certs><trust-anchor-cert>dA==</trust-anchor-cert></trust-anchor-certs>"
        b"</input>"
    )


def test_output_golden_json_is_the_bootstrap_data_file_shape() -> None:
    data = OUTPUTS["signed"]
    encoded = encode_get_bootstrapping_data_output(data, JSON)
    assert encoded == encode_output_json(data)
    assert encoded == (
        b'{"ietf-sztp-bootstrap-server:output":{'
        b'"conveyed-information":"MGNp",'
        b'"owner-certificate":"MG9j",'
        b'"ownership-voucher":"MG92",'
        b'"reporting-level":"verbose"}}'
    )


def test_output_golden_xml_in_schema_order() -> None:
    assert encode_get_bootstrapping_data_output(OUTPUTS["signed"], XML) == (
        b'<output xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">'
        b"<reporting-level>verbose</reporting-level>"
        b"<conveyed-information>MGNp</conveyed-information>"
        b"<owner-certificate>MG9j</owner-certificate>"
        b"<ownership-voucher>MG92</ownership-voucher></output>"
    )


ERROR_EXAMPLE = RestconfError(
    error_type="protocol",
    error_tag="invalid-value",
    error_message="nonce: must be 16..32 octets, not 4",
    error_path="/ietf-sztp-bootstrap-server:input/nonce",
)


def test_errors_golden_json() -> None:
    assert encode_errors([ERROR_EXAMPLE], JSON) == (
        b'{"ietf-restconf:errors":{"error":[{"error-type":"protocol",'
        b'"error-tag":"invalid-value","error-path":"/ietf-sztp-bootstrap-server:input/nonce",'
        b'"error-message":"nonce: must be 16..32 octets, not 4"}]}}'
    )


def test_errors_golden_xml_declares_the_path_prefix() -> None:
    assert encode_errors([ERROR_EXAMPLE], XML) == (
        b'<errors xmlns="urn:ietf:params:xml:ns:yang:ietf-restconf"><error>'
        b"<error-type>protocol</error-type><error-tag>invalid-value</error-tag>"
        b'<error-path xmlns:ietf-sztp-bootstrap-server="urn:ietf:params:xml:ns:yang:'
        b'ietf-sztp-bootstrap-server">/ietf-sztp-bootstrap-server:input/nonce</error-path>'
        b"<error-message>nonce: must be 16..32 octets, not 4</error-message></error></errors>"
    )


def test_errors_golden_with_app_tag_in_schema_order() -> None:
    error = RestconfError("application", "operation-failed", "m", "/x:y", error_app_tag="a:b")
    assert encode_errors([error], JSON) == (
        b'{"ietf-restconf:errors":{"error":[{"error-type":"application",'
        b'"error-tag":"operation-failed","error-app-tag":"a:b","error-path":"/x:y",'
        b'"error-message":"m"}]}}'
    )


def test_errors_without_entries_and_unknown_path_module() -> None:
    assert encode_errors([], JSON) == b'{"ietf-restconf:errors":{}}'
    assert parse_errors(encode_errors([], XML), XML) == ()
    bad_path = RestconfError("application", "invalid-value", error_path="/example:x")
    assert _field_of(lambda: encode_errors([bad_path], XML)) == f"{ERRORS}/error/error-path"


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", list(WireFormat))
@pytest.mark.parametrize(
    ("example", "encode", "parse"),
    [
        *_each_example(
            "input",
            INPUTS,
            encode_get_bootstrapping_data_input,
            parse_get_bootstrapping_data_input,
        ),
        *_each_example(
            "report", REPORTS, encode_report_progress_input, parse_report_progress_input
        ),
        *_each_example(
            "output",
            OUTPUTS,
            encode_get_bootstrapping_data_output,
            parse_get_bootstrapping_data_output,
        ),
    ],
)
def test_round_trip(
    fmt: WireFormat,
    example: object,
    encode: Callable[[Any, WireFormat], bytes],
    parse: Callable[[bytes, WireFormat], object],
) -> None:
    assert parse(encode(example, fmt), fmt) == example


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_errors_round_trip(fmt: WireFormat) -> None:
    errors = (
        ERROR_EXAMPLE,
        RestconfError("transport", "access-denied"),
        RestconfError("application", "operation-failed", error_app_tag="vendor:busy <&>"),
    )
    assert parse_errors(encode_errors(errors, fmt), fmt) == errors


@pytest.mark.parametrize("progress_type", PROGRESS_TYPES)
def test_every_progress_type_round_trips(progress_type: str) -> None:
    report = ProgressReport(progress_type)
    for fmt in WireFormat:
        assert parse_report_progress_input(encode_report_progress_input(report, fmt), fmt) == report


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_empty_body_means_no_input(fmt: WireFormat) -> None:
    assert parse_get_bootstrapping_data_input(b"", fmt) == GetBootstrappingDataInput()
    assert _field_of(lambda: parse_report_progress_input(b"", fmt)) == f"{INPUT}/progress-type"


def test_lenient_where_rfcs_allow() -> None:
    # Pretty-printed XML, any child order, a prefixed namespace, an XML declaration.
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<s:input xmlns:s="urn:ietf:params:xml:ns:yang:ietf-sztp-bootstrap-server">\n'
        b"  <s:nonce>AAECAwQFBgcICQoLDA0ODw==</s:nonce>\n  <s:signed-data-preferred>\n"
        b"  </s:signed-data-preferred>\n  <s:os-name>VendorOS</s:os-name>\n</s:input>\n"
    )
    assert parse_get_bootstrapping_data_input(body, XML) == GetBootstrappingDataInput(
        signed_data_preferred=True, os_name="VendorOS", nonce=NONCE
    )
    # RFC 9646 csr-support, its identity in another module (test_csr has the details).
    csr = (
        b'{"ietf-sztp-bootstrap-server:input":{"ietf-sztp-csr:csr-support":'
        b'{"csr-generation":{"supported-formats":{"format-identifier":["ietf-ztp-types:p10-csr"]}}}}}'
    )
    support = CsrSupport(None, (P10_CSR,))
    assert parse_get_bootstrapping_data_input(csr, JSON).csr_support == support
    xml_csr = _xml_input(
        '\n  <csr-support xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-csr"'
        ' xmlns:t="urn:ietf:params:xml:ns:yang:ietf-ztp-types">\n    <csr-generation>'
        "<supported-formats><format-identifier>t:p10-csr</format-identifier>"
        "</supported-formats></csr-generation>\n  </csr-support>\n"
    )
    assert parse_get_bootstrapping_data_input(xml_csr, XML).csr_support == support
    # Empty containers are fine with bootstrap-complete; errors may carry app-tag and info.
    report = _json_input({"progress-type": "bootstrap-complete", "ssh-host-keys": {}})
    assert parse_report_progress_input(report, JSON) == ProgressReport("bootstrap-complete")
    errors = {
        ERRORS: {
            "error": [
                {
                    "error-type": "protocol",
                    "error-tag": "missing-attribute",
                    "error-app-tag": "sztp:csr",
                    "error-info": {"ietf-sztp-csr:csr-request-info": {"x": 1}},
                }
            ]
        }
    }
    # error-info is anydata: what this codec does not know is skipped.
    assert parse_errors(json.dumps(errors).encode(), JSON) == (
        RestconfError("protocol", "missing-attribute", error_app_tag="sztp:csr"),
    )


# --------------------------------------------------------------------------- negative cases

_SDP = "signed-data-preferred"
_CSR = "ietf-sztp-csr:csr-support"
_CSR_NS = "urn:ietf:params:xml:ns:yang:ietf-sztp-csr"
_FORMATS = f"{_CSR}/csr-generation/supported-formats/format-identifier"
_BAD_INPUTS: list[tuple[WireFormat, bytes, str]] = [
    (JSON, _json_input({"serial-number": "x"}), f"{INPUT}/serial-number"),
    (JSON, _json_input({f"{INPUT[:-6]}:hw-model": "x"}), f"{INPUT}/{INPUT[:-6]}:hw-model"),
    (JSON, _json_input({"hw-model": 7}), f"{INPUT}/hw-model"),
    (JSON, _json_input({"hw-model": "a\x00b"}), f"{INPUT}/hw-model"),
    (JSON, _json_input({"os-name": "\ud800"}), f"{INPUT}/os-name"),
    (JSON, _json_input({"signed-data-preferred": True}), f"{INPUT}/signed-data-preferred"),
    (JSON, _json_input({"signed-data-preferred": None}), f"{INPUT}/signed-data-preferred"),
    (JSON, _json_input({"nonce": base64.b64encode(bytes(15)).decode()}), f"{INPUT}/nonce"),
    (JSON, _json_input({"nonce": base64.b64encode(bytes(33)).decode()}), f"{INPUT}/nonce"),
    (JSON, _json_input({"nonce": "AAEC AwQFBgcICQoLDA0ODw=="}), f"{INPUT}/nonce"),
    (JSON, _json_input({"nonce": "AAECAwQFBgcICQoLDA0ODw"}), f"{INPUT}/nonce"),
    (JSON, _json_input({"ietf-sztp-csr:csr-support": []}), f"{INPUT}/ietf-sztp-csr:csr-support"),
    (JSON, _json_input({"ietf-sztp-csr:csr-support": {}}), f"{INPUT}/{_FORMATS}"),
    (XML, _xml_input(f'<csr-support xmlns="{_CSR_NS}"><x/></csr-support>'), f"{INPUT}/{_CSR}/x"),
    (JSON, _json_input({"ietf-sztp-csr:csr": {}}), f"{INPUT}/ietf-sztp-csr:csr"),
    (JSON, _json_input({}, name="input"), INPUT),
    (JSON, _json_input({}, name="ietf-sztp-bootstrap-server:output"), INPUT),
    (JSON, b'{"ietf-sztp-bootstrap-server:input":{},"x":1}', INPUT),
    (JSON, b'{"ietf-sztp-bootstrap-server:input":[]}', INPUT),
    (JSON, b'{"ietf-sztp-bootstrap-server:input":{"os-name":"a","os-name":"b"}}', INPUT),
    (JSON, b'{"ietf-sztp-bootstrap-server:input":{"os-name":NaN}}', INPUT),
    (JSON, b'{"ietf-sztp-bootstrap-server:input":', INPUT),
    (JSON, b"[" * 60_000, INPUT),  # deeper than the parser recurses
    (JSON, b"\xef\xbb\xbf{}", INPUT),
    (JSON, b'{"ietf-sztp-bootstrap-server:input":{"os-name":"\xff"}}', INPUT),
    (JSON, b" " * (MAX_INPUT_SIZE + 1), INPUT),
    (XML, _xml_input("<serial-number>x</serial-number>"), f"{INPUT}/serial-number"),
    (XML, _xml_input('<hw-model xmlns="urn:example">x</hw-model>'), f"{INPUT}/hw-model"),
    (XML, _xml_input("<hw-model><b/></hw-model>"), f"{INPUT}/hw-model"),
    (XML, _xml_input('<hw-model a="1">x</hw-model>'), f"{INPUT}/hw-model"),
    (XML, _xml_input("<os-name>a</os-name><os-name>b</os-name>"), f"{INPUT}/os-name"),
    (XML, _xml_input("text<os-name>a</os-name>"), INPUT),
    (XML, _xml_input("<signed-data-preferred>1</signed-data-preferred>"), f"{INPUT}/{_SDP}"),
    (XML, _xml_input("<nonce>AAAA</nonce>"), f"{INPUT}/nonce"),
    (XML, _xml_input("<nonce>!!!!</nonce>"), f"{INPUT}/nonce"),
    (XML, _xml_input("", 'xmlns="urn:ietf:params:xml:ns:yang:ietf-sztp-conveyed-info"'), INPUT),
    (XML, b"<input/>", INPUT),
    (XML, f'<output xmlns="{NAMESPACE}"/>'.encode(), INPUT),
    (XML, _xml_input("<os-name>a</os-name"), INPUT),
    (XML, b'<!DOCTYPE input [<!ENTITY e "x">]>' + _xml_input("<os-name>&e;</os-name>"), INPUT),
    (XML, b'<!DOCTYPE input SYSTEM "file:///etc/passwd">' + _xml_input(""), INPUT),
    (XML, _xml_input("<os-name>&e;</os-name>"), INPUT),
    (XML, _xml_input("<os-name>x</os-name>").replace(b">x<", b">\xe9<"), INPUT),
    (XML, _xml_input("<os-name>&#0;</os-name>"), INPUT),
    (XML, _xml_input(" " * MAX_INPUT_SIZE), INPUT),
]


@pytest.mark.parametrize(("fmt", "body", "field"), _BAD_INPUTS)
def test_bad_get_bootstrapping_data_input_names_the_field(
    fmt: WireFormat, body: bytes, field: str
) -> None:
    assert _field_of(lambda: parse_get_bootstrapping_data_input(body, fmt)) == field


_KEYS = {"ssh-host-key": [{"algorithm": "ssh-ed25519", "key-data": "AA=="}]}
_COMPLETE = "bootstrap-complete"
_KEY_PATH = f"{INPUT}/ssh-host-keys/ssh-host-key"
_CERT_PATH = f"{INPUT}/trust-anchor-certs/trust-anchor-cert"


def _report_json(progress_type: str | None, **members: object) -> bytes:
    if progress_type is not None:
        members = {"progress-type": progress_type, **members}
    return _json_input(members)


def _report_xml(progress_type: str, content: str = "") -> bytes:
    return _xml_input(f"<progress-type>{progress_type}</progress-type>{content}")


def _keys(*entries: dict[str, str]) -> dict[str, object]:
    return {"ssh-host-keys": {"ssh-host-key": list(entries)}}


def _certs(*values: object) -> dict[str, object]:
    return {"trust-anchor-certs": {"trust-anchor-cert": list(values)}}


_XML_KEY = "<ssh-host-key><algorithm>a</algorithm><key-data>AA==</key-data></ssh-host-key>"
_BAD_REPORTS: list[tuple[WireFormat, bytes, str]] = [
    (JSON, _report_json("bootstrap-done"), f"{INPUT}/progress-type"),
    (JSON, _report_json(None, **{"progress-type": [_COMPLETE]}), f"{INPUT}/progress-type"),
    (JSON, _report_json(None, message="no type"), f"{INPUT}/progress-type"),
    (JSON, _report_json("config-complete", **{"ssh-host-keys": _KEYS}), f"{INPUT}/ssh-host-keys"),
    (JSON, _report_json("informational", **{"ssh-host-keys": {}}), f"{INPUT}/ssh-host-keys"),
    (JSON, _report_json("bootstrap-error", **_certs("AA==")), f"{INPUT}/trust-anchor-certs"),
    (JSON, _report_json(_COMPLETE, **_keys({"algorithm": "a"})), f"{_KEY_PATH}[1]/key-data"),
    (
        JSON,
        _report_json(_COMPLETE, **_keys({"algorithm": "a", "key-data": "AA=="}, {"key-data": ""})),
        f"{_KEY_PATH}[2]/algorithm",
    ),
    (
        JSON,
        _report_json(_COMPLETE, **_keys({"algorithm": "b", "key-data": "*"})),
        f"{_KEY_PATH}[1]/key-data",
    ),
    (JSON, _report_json(_COMPLETE, **{"ssh-host-keys": {"ssh-host-key": {}}}), _KEY_PATH),
    (JSON, _report_json(_COMPLETE, **{"ssh-host-keys": {"key": []}}), f"{INPUT}/ssh-host-keys/key"),
    (JSON, _report_json(_COMPLETE, **_certs("AA==", 1)), f"{_CERT_PATH}[2]"),
    (JSON, _report_json("informational", message=None), f"{INPUT}/message"),
    (JSON, _report_json("informational", message="x" * MAX_REPORT_SIZE), INPUT),
    (XML, _report_xml("Bootstrap-complete"), f"{INPUT}/progress-type"),
    (XML, _report_xml("config-error", "<trust-anchor-certs/>"), f"{INPUT}/trust-anchor-certs"),
    (
        XML,
        _report_xml(
            _COMPLETE,
            f"<ssh-host-keys>{_XML_KEY}<ssh-host-key><key-data>AA==</key-data></ssh-host-key>"
            "</ssh-host-keys>",
        ),
        f"{_KEY_PATH}[2]/algorithm",
    ),
    (
        XML,
        _report_xml(
            _COMPLETE,
            "<trust-anchor-certs><trust-anchor-cert>AA==</trust-anchor-cert>"
            "<trust-anchor-cert>A</trust-anchor-cert></trust-anchor-certs>",
        ),
        f"{_CERT_PATH}[2]",
    ),
    (XML, _report_xml("informational", "<message/><message/>"), f"{INPUT}/message"),
]


@pytest.mark.parametrize(("fmt", "body", "field"), _BAD_REPORTS)
def test_bad_report_progress_input_names_the_field(
    fmt: WireFormat, body: bytes, field: str
) -> None:
    assert _field_of(lambda: parse_report_progress_input(body, fmt)) == field


def _output_json(**members: object) -> bytes:
    return json.dumps({OUTPUT: members}).encode()


_CI = {"conveyed-information": "AA=="}
_BAD_OUTPUTS: list[tuple[WireFormat, bytes, str]] = [
    (JSON, _output_json(), f"{OUTPUT}/conveyed-information"),
    (JSON, _output_json(**_CI, **{"owner-certificate": "AA=="}), f"{OUTPUT}/owner-certificate"),
    (JSON, _output_json(**_CI, **{"ownership-voucher": "AA=="}), f"{OUTPUT}/ownership-voucher"),
    (JSON, _output_json(**_CI, **{"reporting-level": "chatty"}), f"{OUTPUT}/reporting-level"),
    (JSON, _output_json(**{"conveyed-information": "A==="}), f"{OUTPUT}/conveyed-information"),
    (JSON, _output_json(**_CI, extra=1), f"{OUTPUT}/extra"),
    (JSON, b"", OUTPUT),
    (
        XML,
        f'<output xmlns="{NAMESPACE}"><reporting-level>verbose</reporting-level></output>'.encode(),
        f"{OUTPUT}/conveyed-information",
    ),
    (XML, f'<input xmlns="{NAMESPACE}"/>'.encode(), OUTPUT),
]


@pytest.mark.parametrize(("fmt", "body", "field"), _BAD_OUTPUTS)
def test_bad_output_names_the_field(fmt: WireFormat, body: bytes, field: str) -> None:
    assert _field_of(lambda: parse_get_bootstrapping_data_output(body, fmt)) == field


def _errors_json(*entries: dict[str, str]) -> bytes:
    return json.dumps({ERRORS: {"error": list(entries)}}).encode()


_BAD_ERRORS: list[tuple[WireFormat, bytes, str]] = [
    (JSON, _errors_json({"error-type": "protocol"}), f"{ERRORS}/error[1]/error-tag"),
    (JSON, _errors_json({"error-type": "wire", "error-tag": "x"}), f"{ERRORS}/error/error-type"),
    (
        JSON,
        _errors_json({"error-type": "rpc", "error-tag": "x", "severity": "error"}),
        f"{ERRORS}/error[1]/severity",
    ),
    (JSON, json.dumps({"errors": {}}).encode(), ERRORS),
    (XML, f'<errors xmlns="{NAMESPACE}"/>'.encode(), ERRORS),
    (
        XML,
        f'<errors xmlns="{RESTCONF_NAMESPACE}"><error><error-tag/></error></errors>'.encode(),
        f"{ERRORS}/error[1]/error-type",
    ),
]


@pytest.mark.parametrize(("fmt", "body", "field"), _BAD_ERRORS)
def test_bad_errors_name_the_field(fmt: WireFormat, body: bytes, field: str) -> None:
    assert _field_of(lambda: parse_errors(body, fmt)) == field


def test_constructors_enforce_the_yang_rules() -> None:
    assert _field_of(lambda: GetBootstrappingDataInput(nonce=b"short")) == f"{INPUT}/nonce"
    assert _field_of(lambda: ProgressReport("done")) == f"{INPUT}/progress-type"
    keys = COMPLETE_REPORT.ssh_host_keys
    assert (
        _field_of(lambda: ProgressReport("config-complete", ssh_host_keys=keys))
        == f"{INPUT}/ssh-host-keys"
    )
    assert (
        _field_of(lambda: ProgressReport("boot-image-error", trust_anchor_certs=(b"\x30\x00",)))
        == f"{INPUT}/trust-anchor-certs"
    )
    assert _field_of(lambda: RestconfError("fatal", "x")) == f"{ERRORS}/error/error-type"


def test_encoders_refuse_strings_xml_cannot_carry() -> None:
    report = ProgressReport("informational", message="bell \x07")
    for fmt in WireFormat:
        field = _field_of(lambda f=fmt: encode_report_progress_input(report, f))
        assert field == f"{INPUT}/message"


@pytest.mark.parametrize("fmt", list(WireFormat))
def test_damaged_bodies_raise_only_validation_error(fmt: WireFormat) -> None:
    body = encode_report_progress_input(COMPLETE_REPORT, fmt)
    candidates = [body[:end] for end in range(1, len(body))]
    candidates += [
        body[:index] + bytes([replacement]) + body[index + 1 :]
        for index in range(0, len(body), 2)
        for replacement in b'\x00\xff"<>:/{}[]a'
    ]
    for candidate in candidates:
        try:
            parse_report_progress_input(candidate, fmt)
        except ValidationError:
            continue


# --------------------------------------------------------------------------- constants


def test_progress_types_are_the_yang_enumeration_in_order() -> None:
    text = yang_modules.BOOTSTRAP_SERVER.text()
    enums = re.findall(r"^\s*enum ([a-z-]+) \{", text, re.MULTILINE)
    # The first two enums are reporting-level's.
    assert enums[:2] == ["minimal", "verbose"]
    assert tuple(enums[2:]) == PROGRESS_TYPES
    assert len(PROGRESS_TYPES) == 27
    errors = {"parsing", "boot-image", "pre-script", "config", "post-script", "bootstrap"}
    assert {f"{step}-error" for step in errors} == ERROR_PROGRESS_TYPES
    terminal = ERROR_PROGRESS_TYPES | {"bootstrap-complete", "boot-image-installed-rebooting"}
    assert terminal == TERMINAL_PROGRESS_TYPES


def test_http_status_for_tag_follows_rfc_8040() -> None:
    assert HTTP_STATUS_FOR_TAG["invalid-value"] == 400
    assert HTTP_STATUS_FOR_TAG["malformed-message"] == 400
    assert HTTP_STATUS_FOR_TAG["missing-attribute"] == 400
    assert HTTP_STATUS_FOR_TAG["unknown-element"] == 400
    assert HTTP_STATUS_FOR_TAG["access-denied"] == 403
    assert HTTP_STATUS_FOR_TAG["too-big"] == 413
    assert HTTP_STATUS_FOR_TAG["operation-not-supported"] == 501
    assert HTTP_STATUS_FOR_TAG["data-missing"] == 409
    assert len(HTTP_STATUS_FOR_TAG) == 19
    with pytest.raises(TypeError):
        HTTP_STATUS_FOR_TAG["x"] = 1  # type: ignore[index]


def test_operation_paths() -> None:
    assert operation_path("/restconf", RPC_GET_BOOTSTRAPPING_DATA) == (
        "/restconf/operations/ietf-sztp-bootstrap-server:get-bootstrapping-data"
    )
    assert operation_path("/top/restconf/", RPC_REPORT_PROGRESS) == (
        "/top/restconf/operations/ietf-sztp-bootstrap-server:report-progress"
    )


# --------------------------------------------------------------------------- negotiation

_J, _X = MEDIA_TYPE_JSON, MEDIA_TYPE_XML


@pytest.mark.parametrize(
    ("content_type", "accept", "expected"),
    [
        (_J, None, (JSON, JSON)),
        (_X, None, (XML, XML)),
        (_X, "", (XML, XML)),
        (f"{_J}; charset=utf-8", None, (JSON, JSON)),
        ("Application/YANG-Data+XML;charset=UTF-8", None, (XML, XML)),
        (_J, _X, (JSON, XML)),
        (_X, _J, (XML, JSON)),
        (_J, "*/*", (JSON, JSON)),
        (_X, "*/*", (XML, XML)),
        (_X, "application/*", (XML, XML)),
        (_J, f"{_X}, {_J}", (JSON, JSON)),
        (_J, f"{_J};q=0.5, {_X}", (JSON, XML)),
        (_X, f"{_X};q=0.1, {_J};q=0.9", (XML, JSON)),
        (_X, f"text/html, {_J};q=0.2", (XML, JSON)),
        (_X, f"{_X};q=0, */*", (XML, JSON)),
        (_J, f"{_J};q=0, application/*;q=0.3", (JSON, XML)),
        (_J, " , */*;q=0.8 ,", (JSON, JSON)),
    ],
)
def test_negotiate(
    content_type: str, accept: str | None, expected: tuple[WireFormat, WireFormat]
) -> None:
    assert negotiate(content_type, accept) == expected


@pytest.mark.parametrize(
    ("content_type", "accept", "field"),
    [
        (None, None, "Content-Type"),
        ("application/json", None, "Content-Type"),
        ("application/xml", _J, "Content-Type"),
        ("application/yang-data", None, "Content-Type"),
        ("", None, "Content-Type"),
        (_J, "application/json", "Accept"),
        (_J, "text/html, application/xml;q=0.9", "Accept"),
        (_J, f"{_J};q=0", "Accept"),
        (_J, "*/*;q=0", "Accept"),
        (_J, f"{_J};q=2", "Accept"),
        (_J, f"{_J};q=high", "Accept"),
        (_J, "yang-data+json", "Accept"),
    ],
)
def test_negotiate_refuses(content_type: str | None, accept: str | None, field: str) -> None:
    assert _field_of(lambda: negotiate(content_type, accept)) == field


def test_negotiate_without_a_body() -> None:
    assert negotiate(None, None, has_body=False) == (JSON, JSON)
    assert negotiate(None, _X, has_body=False) == (XML, XML)
    assert negotiate("text/plain", None, has_body=False) == (JSON, JSON)
    assert negotiate(_X, None, has_body=False) == (XML, XML)
    assert _field_of(lambda: negotiate(None, "text/html", has_body=False)) == "Accept"


# --------------------------------------------------------------------------- host-meta


def _xrd(content: str) -> bytes:
    return f'<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">{content}</XRD>'.encode()


def test_host_meta_golden_and_round_trip() -> None:
    assert encode_host_meta() == (
        b'<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">'
        b'<Link rel="restconf" href="/restconf"/></XRD>'
    )
    for root in ("/restconf", "/top/restconf", "https://sztp.example.com:8443/restconf"):
        assert parse_host_meta(encode_host_meta(root)) == root
        assert parse_host_meta(encode_host_meta(root), "application/xrd+xml") == root
    assert parse_host_meta(encode_host_meta("/a&b")) == "/a&b"


def test_host_meta_as_written_by_others() -> None:
    rfc_8040_example = (
        b"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>\n"
        b"    <Subject>https://example.com</Subject>\n"
        b"    <Link rel='author' href='/me'/>\n"
        b"    <Link rel='restconf' href='/top/restconf'/>\n"
        b"</XRD>\n"
    )
    assert parse_host_meta(rfc_8040_example) == "/top/restconf"
    jrd = {"subject": "x", "links": [{"rel": "lrdd"}, {"rel": "restconf", "href": "/rc"}]}
    body = json.dumps(jrd).encode()
    assert parse_host_meta(body, "application/json; charset=utf-8") == "/rc"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (_xrd(""), None),
        (b'<XRD xmlns="urn:other"><Link rel="restconf" href="/r"/></XRD>', None),
        (_xrd('<Link rel="restconf"/>'), None),
        (_xrd('<Link rel="restconf" href="restconf"/>'), None),
        (_xrd('<Link rel="restconf" href="/r?x=1"/>'), None),
        (_xrd('<Link rel="restconf" href="//evil/r"/>'), None),
        (_xrd('<Link rel="restconf" href="ftp://h/r"/>'), None),
        (_xrd('<Link rel="restconf" href="/r r"/>'), None),
        (b'<!DOCTYPE XRD [<!ENTITY e "/r">]>' + _xrd('<Link rel="restconf" href="&e;"/>'), None),
        (b"not xml", None),
        (b'{"links": [{"rel": "restconf", "href": "/r"}]}', None),
        (b'{"links": {"rel": "restconf"}}', "application/json"),
        (b'{"links": ["restconf"]}', "application/json"),
        (b'{"links": [{"rel": "restconf", "href": 1}]}', "application/json"),
        (b"[]", "application/json"),
        (b"{", "application/json"),
    ],
)
def test_host_meta_refused(body: bytes, content_type: str | None) -> None:
    assert _field_of(lambda: parse_host_meta(body, content_type)).startswith("host-meta")


def test_host_meta_encoder_refuses_a_bad_root() -> None:
    for root in ("restconf", "/r?q", '/r"><x', ""):
        assert _field_of(lambda r=root: encode_host_meta(r)) == "host-meta/Link/href"


# --------------------------------------------------------------------------- YANG conformance

_ERRORS_YANG_DATA = "rc:yang-data yang-errors {\n    uses errors;\n  }"


@pytest.fixture(scope="module")
def data_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    """yangson model of the official modules, feature onboarding-server on.

    yangson validates RPC input and output natively (`from_raw(..., subschema=rpc)`, validated
    as all content types, since RPC data is not configuration). It ignores the RESTCONF
    `yang-data` extension, so `ietf-restconf:errors` is checked with its template turned into
    top-level data (`uses errors;`) in a copy of ietf-restconf; the other modules are unmodified.
    """
    return yang_modules.data_model(
        tmp_path_factory.mktemp("yang"),
        implemented=(yang_modules.BOOTSTRAP_SERVER, yang_modules.RESTCONF),
        imported=(yang_modules.YANG_TYPES, yang_modules.INET_TYPES),
        derive=((yang_modules.RESTCONF, _ERRORS_YANG_DATA, "uses errors;"),),
        features={yang_modules.BOOTSTRAP_SERVER: ("onboarding-server",)},
    )


def _yang_validate(data_model: object, document: bytes, rpc: str | None) -> None:
    from yangson.enumerations import ContentType

    raw = json.loads(document)
    instance = data_model.from_raw(raw, subschema=rpc)  # type: ignore[attr-defined]
    instance.validate(ctype=ContentType.all)


# yangson reads an empty XML element (`<os-name/>`) as no value rather than the empty string,
# so examples holding an empty string are checked in JSON only.
_EMPTY_STRING_EXAMPLES = (INPUTS["markup-and-unicode"], REPORTS["empty-message"])


def _yang_validate_xml(data_model: object, document: bytes, rpc: str) -> None:
    from yangson.enumerations import ContentType

    # For an RPC subschema, yangson reads the input or output element itself.
    element = ET.fromstring(document)  # noqa: S314 - our own output
    instance = data_model.from_xml(element, subschema=rpc)  # type: ignore[attr-defined]
    instance.validate(ctype=ContentType.all)


@pytest.mark.parametrize(
    ("example", "encode", "rpc"),
    [
        # csr-support needs the RFC 9646 modules: test_yang_csr validates it against them.
        *_each_example(
            "input",
            {name: example for name, example in INPUTS.items() if name != "csr-support"},
            encode_get_bootstrapping_data_input,
            RPC_GET_BOOTSTRAPPING_DATA,
        ),
        *_each_example("report", REPORTS, encode_report_progress_input, RPC_REPORT_PROGRESS),
        *_each_example(
            "output", OUTPUTS, encode_get_bootstrapping_data_output, RPC_GET_BOOTSTRAPPING_DATA
        ),
    ],
)
def test_rpc_documents_conform_to_yang(
    data_model: object, example: object, encode: Callable[[Any, WireFormat], bytes], rpc: str
) -> None:
    for fmt in WireFormat:
        document = encode(example, fmt)  # encoded in XML even where yangson cannot check it
        if fmt is JSON:
            _yang_validate(data_model, document, rpc)
        elif example not in _EMPTY_STRING_EXAMPLES:
            _yang_validate_xml(data_model, document, rpc)


def test_errors_conform_to_yang(data_model: object) -> None:
    from yangson.enumerations import ContentType, ValidationScope

    errors = [RestconfError("application", "operation-failed", "boom"), ERROR_EXAMPLE]
    _yang_validate(data_model, encode_errors(errors[:1], JSON), None)
    # An error-path names a node of the request, not of this document: its syntax is checked
    # (in XML through the declared prefix), not that it exists (require-instance, a semantic).
    json_instance = data_model.from_raw(json.loads(encode_errors(errors, JSON)))  # type: ignore[attr-defined]
    wrapper = ET.Element("data")
    wrapper.append(ET.fromstring(encode_errors(errors, XML)))  # noqa: S314 - our own output
    xml_instance = data_model.from_xml(wrapper)  # type: ignore[attr-defined]
    for instance in (json_instance, xml_instance):
        instance.validate(scope=ValidationScope.syntax, ctype=ContentType.all)
    assert xml_instance.raw_value() == json_instance.raw_value()


@pytest.mark.parametrize(
    ("rpc", "document"),
    [
        (RPC_GET_BOOTSTRAPPING_DATA, _json_input({"nonce": "AAAA"})),
        (RPC_GET_BOOTSTRAPPING_DATA, _json_input({"serial-number": "x"})),
        (RPC_GET_BOOTSTRAPPING_DATA, _json_input({"signed-data-preferred": [None], "nonce": "*"})),
        (RPC_REPORT_PROGRESS, _json_input({"progress-type": "bootstrap-done"})),
        (RPC_REPORT_PROGRESS, _json_input({"message": "x"})),
        (RPC_REPORT_PROGRESS, _report_json("config-error", **{"ssh-host-keys": _KEYS})),
        (RPC_GET_BOOTSTRAPPING_DATA, _output_json(**_CI, **{"owner-certificate": "AA=="})),
        (RPC_GET_BOOTSTRAPPING_DATA, _output_json(**{"reporting-level": "minimal"})),
    ],
)
def test_yang_rejects_what_the_parsers_reject(
    data_model: object, rpc: str, document: bytes
) -> None:
    """The conformance check can fail, and where it does, our parsers agree."""
    with pytest.raises(Exception) as caught:
        _yang_validate(data_model, document, rpc)
    assert type(caught.value).__module__.startswith("yangson")
    parser = (
        parse_get_bootstrapping_data_output
        if OUTPUT in json.loads(document)
        else parse_report_progress_input
        if rpc == RPC_REPORT_PROGRESS
        else parse_get_bootstrapping_data_input
    )
    with pytest.raises(ValidationError):
        parser(document, JSON)  # type: ignore[operator]

"""The device simulator against small TLS stub bootstrap servers (aiohttp, in this file only).

Each stub serves host-meta, get-bootstrapping-data (an answer built with the kit), report-progress
(recorded) and image files, over real TLS that asks for the device's IDevID client certificate.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

web = pytest.importorskip("aiohttp.web")

from sztp.errors import SimulationError  # noqa: E402
from sztp.labpki import LabPki, write_lab_pki  # noqa: E402
from sztp.protocol import cms, dhcp, pki, restconf  # noqa: E402
from sztp.protocol.bootstrapping_data import (  # noqa: E402
    BootstrappingData,
    ReportingLevel,
    build_signed,
    build_unsigned,
)
from sztp.protocol.conveyed_info import (  # noqa: E402
    BootImage,
    BootstrapServer,
    ConveyedInformation,
    Encoding,
    OnboardingInformation,
    RedirectInformation,
)
from sztp.protocol.voucher import create_voucher, sign_voucher  # noqa: E402
from sztp.simulator import (  # noqa: E402
    WARNING_EXIT_STATUS,
    DeviceIdentity,
    SimulationResult,
    SimulatorConfig,
    simulate,
)
from sztp.simulator.checks import check_identity  # noqa: E402

SERIAL = "SN-0001"
OTHER_SERIAL = "SN-0002"
IMAGE = b"LabOS 2.0 boot image\n" * 100
IMAGE_PATH = "/images/labos-2.0.img"
CONFIG = b"hostname sn-0001\n"
MARKER_SCRIPT = b"#!/bin/sh\necho ran > marker-$SZTP_SERIAL_NUMBER\necho pre done\n"
GBD = "ietf-sztp-bootstrap-server:get-bootstrapping-data"
RP = "ietf-sztp-bootstrap-server:report-progress"

Answer = Callable[[dict[str, Any]], "BootstrappingData | web.Response"]


# --------------------------------------------------------------------------- lab PKI


@dataclass(frozen=True)
class Lab:
    files: LabPki
    owner: pki.Credential
    masa: pki.Credential
    owner_ca_cert: Any
    tls_ca_cert: Any
    manufacturer_ca_cert: Any

    def voucher(self, serial: str = SERIAL, nonce: bytes | None = None) -> bytes:
        expires = None if nonce else datetime.now(UTC) + timedelta(days=1)
        voucher = create_voucher(serial, self.owner_ca_cert, expires_on=expires, nonce=nonce)
        return sign_voucher(voucher, self.masa)

    def signed(
        self,
        information: ConveyedInformation,
        *,
        serial: str = SERIAL,
        nonce: bytes | None = None,
        reporting_level: ReportingLevel | None = None,
    ) -> BootstrappingData:
        return build_signed(
            information,
            Encoding.JSON,
            self.owner,
            self.voucher(serial, nonce),
            reporting_level=reporting_level,
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    files = write_lab_pki(tmp_path_factory.mktemp("sim") / "pki", [SERIAL, OTHER_SERIAL])

    def first(path: Path) -> Any:
        return pki.load_certificates_pem(path.read_bytes())[0]

    return Lab(
        files=files,
        owner=files.owner.load(),
        masa=files.masa.load(),
        owner_ca_cert=first(files.owner_ca.certificate),
        tls_ca_cert=first(files.tls_ca.certificate),
        manufacturer_ca_cert=first(files.manufacturer_ca.certificate),
    )


# --------------------------------------------------------------------------- stub server


def _parse_input(body: bytes, content_type: str) -> dict[str, Any]:
    """The RPC input as a flat dict (test-side reading, independent of the kit's decoder)."""
    if not body:
        return {}
    if "xml" in content_type:
        from defusedxml.ElementTree import fromstring

        root = fromstring(body)
        parsed: dict[str, Any] = {}
        for child in root:
            name = child.tag.rsplit("}", 1)[-1]
            if name == "ssh-host-keys":
                parsed[name] = {"ssh-host-key": [{} for _ in child]}
            else:
                parsed[name] = child.text or ""
        return parsed
    document = json.loads(body)
    (value,) = document.values()
    return dict(value)


@dataclass
class Stub:
    """One bootstrap server: what it answers and what it saw."""

    answer: Answer | None = None
    restconf_root: str | None = "/restconf"  # None: host-meta answers 404
    files: dict[str, bytes] = field(default_factory=dict)
    rpc_inputs: list[dict[str, Any]] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    client_serials: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    every_authorization: list[str] = field(default_factory=list)  # host-meta and RPCs
    port: int = 0

    @property
    def uri(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def report_types(self) -> list[str]:
        return [report["progress-type"] for report in self.reports]

    def _client_serial(self, request: web.Request) -> None:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        for rdn in (peer or {}).get("subject", ()):
            for name, value in rdn:
                if name == "serialNumber":
                    self.client_serials.append(value)

    def _authorization(self, request: web.Request) -> None:
        self.every_authorization.extend(request.headers.getall("Authorization", []))

    async def host_meta(self, request: web.Request) -> web.Response:
        self._authorization(request)
        if self.restconf_root is None:
            raise web.HTTPNotFound()
        xrd = (
            '<XRD xmlns="http://docs.oasis-open.org/ns/xri/xrd-1.0">'
            f'<Link rel="restconf" href="{self.restconf_root}"/></XRD>'
        )
        return web.Response(body=xrd.encode(), content_type="application/xrd+xml")

    async def operation(self, request: web.Request) -> web.StreamResponse:
        root = self.restconf_root or "/restconf"
        name = request.match_info["name"]
        if request.path != f"{root}/operations/{name}":
            raise web.HTTPNotFound()
        self._client_serial(request)
        self._authorization(request)
        if "Authorization" in request.headers:
            self.authorizations.append(request.headers["Authorization"])
        body = await request.read()
        parsed = _parse_input(body, request.content_type)
        if name == RP:
            self.reports.append(parsed)
            return web.Response(status=204)
        if name != GBD:
            raise web.HTTPNotFound()
        self.rpc_inputs.append(parsed)
        assert self.answer is not None
        answer = self.answer(parsed)
        if isinstance(answer, web.Response):
            return answer
        xml = "xml" in request.content_type
        wire = restconf.WireFormat.XML if xml else restconf.WireFormat.JSON
        return web.Response(
            body=restconf.encode_get_bootstrapping_data_output(answer, wire),
            content_type=wire.media_type,
        )

    async def file(self, request: web.Request) -> web.Response:
        data = self.files.get(request.path)
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/octet-stream")

    def app(self) -> web.Application:
        application = web.Application()
        application.router.add_get("/.well-known/host-meta", self.host_meta)
        application.router.add_post("/{prefix:.*}/operations/{name}", self.operation)
        application.router.add_get("/images/{name}", self.file)
        return application


class StubRunner:
    """Runs stub servers on 127.0.0.1 in one background event loop."""

    def __init__(self, lab: Lab) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(lab.files.server.certificate, lab.files.server.private_key)
        self.context.load_verify_locations(lab.files.manufacturer_ca.certificate)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []

    def start(self, stub: Stub) -> Stub:
        async def start() -> int:
            runner = web.AppRunner(stub.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.context)
            await site.start()
            self.runners.append(runner)
            return int(runner.addresses[0][1])

        stub.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return stub

    def close(self) -> None:
        async def stop() -> None:
            for runner in self.runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def stubs(lab: Lab) -> Iterator[StubRunner]:
    runner = StubRunner(lab)
    yield runner
    runner.close()


# --------------------------------------------------------------------------- helpers


def identity(lab: Lab, serial: str = SERIAL, **changes: Any) -> DeviceIdentity:
    device = lab.files.devices[serial]
    base = DeviceIdentity(
        serial_number=serial,
        idevid_certificate=device.chain,
        idevid_key=device.idevid.private_key,
        hw_model="lab-x1",
        os_name="LabOS",
        os_version="1.0",
    )
    return replace(base, **changes)


def config(lab: Lab, tmp_path: Path, *uris: str, trusted: bool = True, **changes: Any) -> Any:
    base = SimulatorConfig(
        bootstrap_uris=uris,
        trust_anchors=(lab.manufacturer_ca_cert,),
        server_ca=lab.files.tls_ca.certificate if trusted else None,
        file_server_ca=lab.files.tls_ca.certificate,
        work_dir=tmp_path / "device",
        timeout=10,
    )
    return replace(base, **changes)


def onboarding(stub: Stub, *, sha256: bytes | None = None, **changes: Any) -> Any:
    image = BootImage(
        os_name="LabOS",
        os_version="2.0",
        download_uris=(f"{stub.uri}{IMAGE_PATH}",),
        sha256=hashlib.sha256(IMAGE).digest() if sha256 is None else sha256,
    )
    base = OnboardingInformation(
        boot_image=image,
        pre_configuration_script=MARKER_SCRIPT,
        configuration_handling="replace",
        configuration=CONFIG,
        post_configuration_script=b"#!/bin/sh\nexit 0\n",
    )
    return replace(base, **changes)


def run(cfg: SimulatorConfig, device: DeviceIdentity) -> tuple[SimulationResult, list[str]]:
    lines: list[str] = []
    return simulate(cfg, device, log=lines.append), lines


# --------------------------------------------------------------------------- tests


PASS_ONE = [
    "bootstrap-initiated",
    "parsing-initiated",
    "parsing-complete",
    "boot-image-initiated",
    "boot-image-mismatch",
    "boot-image-installed-rebooting",
]
PASS_TWO = [
    "bootstrap-initiated",
    "parsing-initiated",
    "parsing-complete",
    "boot-image-initiated",
    "boot-image-complete",
    "pre-script-initiated",
    "pre-script-complete",
    "config-initiated",
    "config-complete",
    "post-script-initiated",
    "post-script-complete",
    "bootstrap-complete",
]


def test_signed_onboarding_installs_image_reboots_and_completes(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub(restconf_root="/rc", files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: lab.signed(onboarding(stub), reporting_level="verbose")

    result, lines = run(config(lab, tmp_path, stub.uri), identity(lab))

    assert result.succeeded, result.reason
    assert result.reason is None
    assert stub.report_types == PASS_ONE + PASS_TWO
    assert result.reports == [
        (report["progress-type"], report.get("message", "")) for report in stub.reports
    ]
    assert (result.os_name, result.os_version, result.reboots) == ("LabOS", "2.0", 1)
    # The device called twice, the second time with the new OS in effect; trusted → no
    # signed-data-preferred; the IDevID was the TLS client certificate.
    assert [i.get("os-version") for i in stub.rpc_inputs] == ["1.0", "2.0"]
    assert all("signed-data-preferred" not in i for i in stub.rpc_inputs)
    assert stub.rpc_inputs[0]["hw-model"] == "lab-x1"
    assert set(stub.client_serials) == {SERIAL}
    work = tmp_path / "device"
    image = work / "images" / "labos-2.0.img"
    assert hashlib.sha256(image.read_bytes()).digest() == hashlib.sha256(IMAGE).digest()
    assert (work / "configuration").read_bytes() == CONFIG
    assert (work / "pre-configuration-script").read_bytes() == MARKER_SCRIPT
    assert not (work / "sandbox").exists()  # scripts are not executed by default
    assert {image, work / "configuration"} <= set(result.files_written)
    complete = stub.reports[-1]
    assert complete["ssh-host-keys"]["ssh-host-key"]
    assert (work / "ssh_host_ed25519_key.pub").read_text().startswith("ssh-ed25519 ")
    assert any("trusted server" in line for line in lines)


def test_minimal_reporting_level_sends_only_required_reports(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: lab.signed(onboarding(stub))

    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab))

    assert result.succeeded, result.reason
    assert stub.report_types == [
        "bootstrap-initiated",
        "boot-image-installed-rebooting",
        "bootstrap-initiated",
        "bootstrap-complete",
    ]
    # Every step is still recorded, reported or not.
    assert [step.progress_type for step in result.steps] == PASS_ONE + PASS_TWO


def test_image_already_running_skips_the_download(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())  # no image files: a download would fail
    stub.answer = lambda _input: lab.signed(onboarding(stub), reporting_level="verbose")

    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab, os_version="2.0"))

    assert result.succeeded, result.reason
    assert stub.report_types == PASS_TWO
    assert result.reboots == 0


def test_image_hash_mismatch_reports_boot_image_error(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE + b"tampered"}))
    image = BootImage(
        os_name="LabOS",
        os_version="2.0",
        download_uris=(f"{stub.uri}/images/missing.img", f"{stub.uri}{IMAGE_PATH}"),
        sha256=hashlib.sha256(IMAGE).digest(),
    )
    stub.answer = lambda _input: lab.signed(onboarding(stub, boot_image=image))

    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab))

    assert not result.succeeded
    assert stub.report_types == ["bootstrap-initiated", "boot-image-error"]
    assert "HTTP 404" in result.reason and "sha-256 mismatch" in result.reason
    assert "boot-image-error" in result.reason
    assert result.os_version == "1.0"
    images = tmp_path / "device" / "images"
    assert list(images.iterdir()) == []  # nothing half-written stays behind
    assert not (tmp_path / "device" / "configuration").exists()


def refused_from_untrusted_server(
    lab: Lab, stubs: StubRunner, tmp_path: Path, answer: Callable[[Stub], BootstrappingData]
) -> tuple[SimulationResult, Stub]:
    """A device that does not trust the stub's TLS certificate bootstraps from `answer`: it
    refuses, reports nothing to the untrusted server and writes no file."""
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: answer(stub)

    result, _ = run(config(lab, tmp_path, stub.uri, trusted=False), identity(lab))

    assert not result.succeeded
    assert stub.reports == []  # an untrusted server gets no reports
    assert result.files_written == ()
    return result, stub


def test_voucher_for_another_serial_is_refused_and_nothing_acted_on(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    result, stub = refused_from_untrusted_server(
        lab, stubs, tmp_path, lambda stub: lab.signed(onboarding(stub), serial=OTHER_SERIAL)
    )
    assert "serial" in result.reason and OTHER_SERIAL in result.reason
    assert stub.rpc_inputs[0]["signed-data-preferred"] is not None
    assert not (tmp_path / "device").exists()


def test_voucher_pinning_another_owner_is_refused_and_nothing_acted_on(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    # sztp-server refuses to store such a voucher; the device's own check is what stands when
    # the data comes from elsewhere (a voucher stored by an older server, a foreign server).
    foreign_ca = pki.create_root_ca("Another Owner CA", days=10).certificate
    expires = datetime.now(UTC) + timedelta(days=1)
    voucher = sign_voucher(create_voucher(SERIAL, foreign_ca, expires_on=expires), lab.masa)
    result, _ = refused_from_untrusted_server(
        lab,
        stubs,
        tmp_path,
        lambda stub: build_signed(onboarding(stub), Encoding.JSON, lab.owner, voucher),
    )
    assert "is not authorised by the voucher's pinned-domain-cert" in result.reason


def test_tampered_signature_is_refused_with_parsing_error(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))

    def tampered(_input: dict[str, Any]) -> BootstrappingData:
        data = lab.signed(onboarding(stub))
        content = bytearray(data.conveyed_information)
        index = content.find(b"LabOS")
        content[index] ^= 0x01  # "LabOS" → "MabOS" inside the signed content
        return replace(data, conveyed_information=bytes(content))

    stub.answer = tampered
    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab))

    assert not result.succeeded
    assert "signature" in result.reason.lower() or "digest" in result.reason.lower()
    assert stub.report_types == ["bootstrap-initiated", "parsing-error"]
    assert result.files_written == ()


def test_unsigned_onboarding_from_untrusted_server_is_refused(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    result, _ = refused_from_untrusted_server(
        lab, stubs, tmp_path, lambda stub: build_unsigned(onboarding(stub), Encoding.JSON)
    )
    assert "unsigned onboarding" in result.reason


def test_unsigned_onboarding_from_trusted_server_is_accepted(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    information = OnboardingInformation(configuration_handling="merge", configuration=CONFIG)
    stub.answer = lambda _input: build_unsigned(information, Encoding.JSON)

    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab))

    assert result.succeeded, result.reason
    assert stub.report_types == ["bootstrap-initiated", "bootstrap-complete"]


def test_server_ca_mismatch_falls_back_to_provisional(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: lab.signed(onboarding(stub), reporting_level="verbose")
    wrong_ca = lab.files.owner_ca.certificate  # not the TLS CA

    result, lines = run(
        config(lab, tmp_path, stub.uri, server_ca=wrong_ca), identity(lab, os_version="2.0")
    )

    assert result.succeeded, result.reason  # signed data is enough…
    assert stub.reports == []  # …but an unauthenticated server gets no reports
    assert "signed-data-preferred" in stub.rpc_inputs[0]
    assert any("continuing provisionally" in line for line in lines)


def redirect_pair(lab: Lab, stubs: StubRunner, second: Stub, *, signed: bool) -> Stub:
    """A first server redirecting (signed, or unsigned) to `second`, naming the lab TLS CA as
    `second`'s trust anchor; `second` answers with unsigned onboarding unless already told."""
    if second.answer is None:
        information = OnboardingInformation(configuration_handling="replace", configuration=CONFIG)
        second.answer = lambda _input: build_unsigned(information, Encoding.JSON)
    anchor = cms.certs_only([lab.tls_ca_cert])
    redirect = RedirectInformation((BootstrapServer("127.0.0.1", second.port, anchor),))
    first = stubs.start(Stub())
    first.answer = (
        (lambda _input: lab.signed(redirect))
        if signed
        else (lambda _input: build_unsigned(redirect, Encoding.JSON))
    )
    return first


def test_signed_redirect_trust_anchor_makes_the_next_server_trusted(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    second = stubs.start(Stub(restconf_root=None))  # host-meta 404 → /restconf
    first = redirect_pair(lab, stubs, second, signed=True)

    result, _ = run(config(lab, tmp_path, first.uri, trusted=False), identity(lab))

    assert result.succeeded, result.reason
    assert result.servers_contacted == (first.uri, second.uri)
    assert first.reports == []  # untrusted, and a redirect is never reported
    assert second.report_types == ["bootstrap-initiated", "bootstrap-complete"]
    assert "signed-data-preferred" in first.rpc_inputs[0]
    assert "signed-data-preferred" not in second.rpc_inputs[0]
    assert (tmp_path / "device" / "configuration").read_bytes() == CONFIG


def test_unsigned_redirect_from_untrusted_server_ignores_its_trust_anchor(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    second = stubs.start(Stub())
    first = redirect_pair(lab, stubs, second, signed=False)

    result, _ = run(config(lab, tmp_path, first.uri, trusted=False), identity(lab))

    assert not result.succeeded
    assert "signed-data-preferred" in second.rpc_inputs[0]
    assert "unsigned onboarding" in result.reason
    assert second.reports == []


def test_redirect_loop_is_bounded(lab: Lab, stubs: StubRunner, tmp_path: Path) -> None:
    stub = stubs.start(Stub())
    stub.answer = lambda _input: build_unsigned(
        RedirectInformation((BootstrapServer("127.0.0.1", stub.port),)), Encoding.JSON
    )

    result, _ = run(config(lab, tmp_path, stub.uri, max_redirects=2), identity(lab))

    assert not result.succeeded
    assert "more than 2 redirects" in result.reason
    assert len(result.servers_contacted) == 3


def test_restconf_error_moves_on_to_the_next_server(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    errors = {
        "ietf-restconf:errors": {
            "error": [
                {
                    "error-type": "application",
                    "error-tag": "data-missing",
                    "error-message": "unknown device",
                }
            ]
        }
    }
    failing = stubs.start(Stub())
    failing.answer = lambda _input: web.json_response(
        errors, status=404, content_type="application/yang-data+json"
    )
    working = stubs.start(Stub())
    working.answer = lambda _input: build_unsigned(
        OnboardingInformation(configuration_handling="merge", configuration=CONFIG), Encoding.JSON
    )

    result, lines = run(config(lab, tmp_path, failing.uri, working.uri), identity(lab))

    assert result.succeeded, result.reason
    assert result.servers_contacted == (failing.uri, working.uri)
    assert any("HTTP 404" in line and "unknown device" in line for line in lines)


def test_unreachable_server_fails_with_reason(lab: Lab, tmp_path: Path) -> None:
    result, _ = run(config(lab, tmp_path, "https://127.0.0.1:9"), identity(lab))

    assert not result.succeeded
    assert "https://127.0.0.1:9" in result.reason and "connection failed" in result.reason


def test_dhcp_option_143_payload_gives_the_servers(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    stub.answer = lambda _input: build_unsigned(
        OnboardingInformation(configuration_handling="merge", configuration=CONFIG), Encoding.JSON
    )
    payload = dhcp.encode_uri_list([stub.uri])

    result, _ = run(config(lab, tmp_path, dhcp_option=payload), identity(lab))

    assert result.succeeded, result.reason
    assert result.servers_contacted == (stub.uri,)


def test_bad_dhcp_payload_and_missing_servers_are_simulation_errors(
    lab: Lab, tmp_path: Path
) -> None:
    text_payload = b"https://127.0.0.1:8443"  # legacy plain text, not RFC 8572
    with pytest.raises(SimulationError, match="DHCP option"):
        simulate(config(lab, tmp_path, dhcp_option=text_payload), identity(lab))
    with pytest.raises(SimulationError, match="no bootstrap server"):
        simulate(config(lab, tmp_path), identity(lab))
    with pytest.raises(SimulationError, match="bootstrap URI"):
        simulate(config(lab, tmp_path, "https://host/path"), identity(lab))
    with pytest.raises(SimulationError, match="serialNumber"):
        simulate(config(lab, tmp_path, "https://127.0.0.1:9"), identity(lab, serial_number="X"))


def test_a_key_held_for_openssl_is_loaded_with_the_certificate_not_read(
    lab: Lab, tmp_path: Path
) -> None:
    """`idevid_key_store="tpm2"`: the kit never reads the key (a TPM's blob means nothing to
    it); OpenSSL loads it with the certificate, as TLS will. File keys show what it refuses."""
    check_identity(identity(lab, idevid_key_store="tpm2"))
    other = lab.files.devices[OTHER_SERIAL].idevid.private_key
    with pytest.raises(SimulationError, match=f"IDevID key {other} does not match the cert"):
        check_identity(identity(lab, idevid_key=other, idevid_key_store="tpm2"))
    locked = tmp_path / "locked.key"
    key = pki.load_private_key_pem(lab.files.devices[SERIAL].idevid.private_key.read_bytes())
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(SimulationError, match=r"needs a password .* the device cannot give"):
        check_identity(identity(lab, idevid_key=locked, idevid_key_store="tpm2"))
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN TSS2 PRIVATE KEY-----\nAAAA\n-----END TSS2 PRIVATE KEY-----\n")
    with pytest.raises(SimulationError, match=r"OpenSSL cannot use it \(\[SSL\] PEM lib\)"):
        check_identity(identity(lab, idevid_key=garbage, idevid_key_store="tpm2"))
    # A file key is read as before: the same garbage is no PEM private key.
    with pytest.raises(SimulationError, match="cannot load PEM private key"):
        check_identity(identity(lab, idevid_key=garbage))


def test_scripts_run_only_with_run_scripts(lab: Lab, stubs: StubRunner, tmp_path: Path) -> None:
    stub = stubs.start(Stub())
    information = OnboardingInformation(pre_configuration_script=MARKER_SCRIPT)
    stub.answer = lambda _input: build_unsigned(information, Encoding.JSON)
    marker = f"marker-{SERIAL}"

    result, _ = run(config(lab, tmp_path / "off", stub.uri), identity(lab))
    assert result.succeeded, result.reason
    work = tmp_path / "off" / "device"
    assert (work / "pre-configuration-script").read_bytes() == MARKER_SCRIPT
    assert not list(work.rglob(marker))
    assert "not executed" in result.steps[-2].message

    result, _ = run(config(lab, tmp_path / "on", stub.uri, run_scripts=True), identity(lab))
    assert result.succeeded, result.reason
    assert (tmp_path / "on" / "device" / "sandbox" / marker).read_text() == "ran\n"
    assert ("pre-script-complete", "pre done") in [
        (step.progress_type, step.message) for step in result.steps
    ]


def test_failing_script_reports_pre_script_error(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    information = OnboardingInformation(
        pre_configuration_script=b"#!/bin/sh\necho disk full >&2\nexit 3\n",
        configuration_handling="merge",
        configuration=CONFIG,
    )
    stub.answer = lambda _input: build_unsigned(information, Encoding.JSON)

    result, _ = run(config(lab, tmp_path, stub.uri, run_scripts=True), identity(lab))

    assert not result.succeeded
    assert stub.report_types == ["bootstrap-initiated", "pre-script-error"]
    assert "exited with 3" in result.reason and "disk full" in result.reason
    assert not (tmp_path / "device" / "configuration").exists()


def test_a_script_warning_is_reported_and_bootstrapping_goes_on(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    information = OnboardingInformation(
        post_configuration_script=(
            f"#!/bin/sh\necho fan speed low\nexit {WARNING_EXIT_STATUS}\n".encode()
        ),
        configuration_handling="merge",
        configuration=CONFIG,
    )
    stub.answer = lambda _input: dataclasses.replace(
        build_unsigned(information, Encoding.JSON), reporting_level="verbose"
    )

    result, _ = run(config(lab, tmp_path, stub.uri, run_scripts=True), identity(lab))

    assert result.succeeded, result.reason
    steps = [(step.progress_type, step.message) for step in result.steps]
    warning = next(message for kind, message in steps if kind == "post-script-warning")
    assert "fan speed low" in warning and f"exit {WARNING_EXIT_STATUS}" in warning
    kinds = [kind for kind, _ in steps]
    assert kinds.index("post-script-warning") < kinds.index("post-script-complete")
    assert kinds[-1] == "bootstrap-complete"
    assert "post-script-warning" in stub.report_types


def test_nonce_is_sent_and_required_in_the_voucher(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    information = OnboardingInformation(configuration_handling="merge", configuration=CONFIG)

    def fresh_voucher(rpc_input: dict[str, Any]) -> BootstrappingData:
        return lab.signed(information, nonce=base64.b64decode(rpc_input["nonce"]))

    stub.answer = fresh_voucher
    result, _ = run(config(lab, tmp_path, stub.uri, send_nonce=True), identity(lab))
    assert result.succeeded, result.reason

    stub.answer = lambda _input: lab.signed(information, nonce=b"\x00" * 16)
    result, _ = run(config(lab, tmp_path, stub.uri, send_nonce=True), identity(lab))
    assert not result.succeeded
    assert "nonce" in result.reason


def test_xml_wire_format(lab: Lab, stubs: StubRunner, tmp_path: Path) -> None:
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: lab.signed(onboarding(stub), reporting_level="verbose")
    wire = restconf.WireFormat.XML

    result, _ = run(config(lab, tmp_path, stub.uri, wire_format=wire), identity(lab))

    assert result.succeeded, result.reason
    assert stub.report_types == PASS_ONE + PASS_TWO
    assert stub.rpc_inputs[1]["os-version"] == "2.0"


def test_basic_password_is_sent_but_never_shown(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    stub.answer = lambda _input: web.Response(status=401)
    device = identity(lab, password="s3cret-pw")

    result, lines = run(config(lab, tmp_path, stub.uri), device)

    expected = "Basic " + base64.b64encode(f"{SERIAL}:s3cret-pw".encode()).decode()
    assert stub.authorizations == [expected]
    assert not result.succeeded and "HTTP 401" in result.reason
    assert "s3cret-pw" not in repr(device) + repr(result) + "\n".join(lines)


def simulate_cli() -> Any:
    """`sztpctl simulate`, registered as the main app does it: `simulate run …`."""
    import typer

    from sztpctl.commands import simulate as command

    app = typer.Typer()
    app.add_typer(command.app, name="simulate")
    return app


def simulate_run_arguments(lab: Lab, tmp_path: Path) -> list[str]:
    """`sztpctl simulate run`'s options for the lab's SN-0001 on LabOS 1.0, trusting the lab's
    servers; where to bootstrap from is the caller's to add."""
    device = lab.files.devices[SERIAL]
    return [
        "--serial", SERIAL, "--idevid-cert", str(device.chain),
        "--idevid-key", str(device.idevid.private_key),
        "--trust-anchor", str(lab.files.manufacturer_ca.certificate),
        "--server-ca", str(lab.files.tls_ca.certificate),
        "--file-server-ca", str(lab.files.tls_ca.certificate),
        "--work-dir", str(tmp_path / "device"),
        "--os-name", "LabOS", "--os-version", "1.0", "--timeout", "10",
    ]  # fmt: skip


def test_cli_simulate_run(lab: Lab, stubs: StubRunner, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    app = simulate_cli()
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: lab.signed(onboarding(stub))
    arguments = simulate_run_arguments(lab, tmp_path)
    runner = CliRunner()

    ok = runner.invoke(app, ["simulate", "run", "--uri", stub.uri, *arguments])
    assert ok.exit_code == 0, ok.output
    assert "bootstrap complete" in ok.output and "boot-image-installed-rebooting" in ok.output

    payload = dhcp.to_hex(dhcp.encode_uri_list(["https://127.0.0.1:9"]))
    failed = runner.invoke(app, ["simulate", "run", "--dhcp-option-hex", payload, *arguments])
    assert failed.exit_code == 1
    assert "bootstrap failed" in failed.output and "connection failed" in failed.output


def _dhclient_lease_form(payload: bytes) -> str:
    """How dhclient writes a `string` option into its lease file: colon-separated octets,
    leading zeros dropped."""
    return ":".join(f"{octet:x}" for octet in payload)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0016", b"\x00\x16"),
        ("00:16:68", b"\x00\x16h"),
        ("0:16:68", b"\x00\x16h"),  # dhclient's lease form
        ("0:a:A", b"\x00\n\n"),
    ],
)
def test_cli_option_payload_forms(text: str, expected: bytes) -> None:
    from sztpctl.commands.simulate import parse_option_payload

    assert parse_option_payload(text) == expected


def test_cli_option_payload_in_lease_form_is_not_shifted() -> None:
    """Stripping the colons from `0:16:68:…` would read `01 66 87 …`: garbage URIs."""
    from sztpctl.commands.simulate import parse_option_payload

    payload = dhcp.encode_uri_list(["https://10.77.0.1:8443", "https://[fd00:77::1]:8443"])
    assert parse_option_payload(_dhclient_lease_form(payload)) == payload


@pytest.mark.parametrize("text", ["0:16:", "0:1ff:68", "0:g:68", "zz"])
def test_cli_option_payload_rejects_malformed_hex(text: str) -> None:
    import typer

    from sztpctl.commands.simulate import parse_option_payload

    with pytest.raises(typer.BadParameter):
        parse_option_payload(text)


def test_cli_simulate_run_from_a_dhclient_lease_value(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: lab.signed(onboarding(stub))
    lease_value = _dhclient_lease_form(dhcp.encode_uri_list([stub.uri]))
    arguments = [*simulate_run_arguments(lab, tmp_path), "--dhcp-option-hex", lease_value]

    result = CliRunner().invoke(simulate_cli(), ["simulate", "run", *arguments])

    assert result.exit_code == 0, result.output
    assert "bootstrap complete" in result.output


def test_reboots_are_bounded(lab: Lab, stubs: StubRunner, tmp_path: Path) -> None:
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    versions = iter(["2.0", "3.0"])  # the server moves the goalposts after the reboot

    def moving(_input: dict[str, Any]) -> BootstrappingData:
        image = BootImage(
            os_name="LabOS",
            os_version=next(versions),
            download_uris=(f"{stub.uri}{IMAGE_PATH}",),
            sha256=hashlib.sha256(IMAGE).digest(),
        )
        return lab.signed(OnboardingInformation(boot_image=image))

    stub.answer = moving
    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab))

    assert not result.succeeded
    assert result.reboots == 1
    assert stub.report_types == [
        "bootstrap-initiated",
        "boot-image-installed-rebooting",
        "bootstrap-initiated",
        "boot-image-error",
    ]
    assert "still not running LabOS 3.0 after 1 reboot(s)" in result.reason


def test_untrusted_file_server_fails_the_download(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub(files={IMAGE_PATH: IMAGE}))
    stub.answer = lambda _input: lab.signed(onboarding(stub))
    wrong_ca = lab.files.owner_ca.certificate

    result, _ = run(config(lab, tmp_path, stub.uri, file_server_ca=wrong_ca), identity(lab))

    assert not result.succeeded
    assert "TLS failed" in result.reason
    assert stub.report_types == ["bootstrap-initiated", "boot-image-error"]


# --------------------------------------------------------------------------- credentials


PASSWORD = "s3cret-pw"
BASIC = "Basic " + base64.b64encode(f"{SERIAL}:{PASSWORD}".encode()).decode()


def test_basic_password_is_not_sent_on_a_provisional_connection(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    """No server CA: the IDevID certificate still identifies the device, the password stays."""
    stub = stubs.start(Stub())
    stub.answer = lambda _input: lab.signed(onboarding(stub, boot_image=None))

    result, _ = run(
        config(lab, tmp_path, stub.uri, trusted=False), identity(lab, password=PASSWORD)
    )

    assert result.succeeded, result.reason
    assert stub.client_serials == [SERIAL]
    assert stub.every_authorization == []


def test_basic_password_is_not_sent_after_falling_back_to_provisional(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    stub.answer = lambda _input: web.Response(status=401)
    wrong_ca = lab.files.owner_ca.certificate  # not the TLS CA

    result, lines = run(
        config(lab, tmp_path, stub.uri, server_ca=wrong_ca), identity(lab, password=PASSWORD)
    )

    assert any("continuing provisionally" in line for line in lines)
    assert stub.every_authorization == []
    assert not result.succeeded
    assert "HTTP 401" in result.reason
    assert "Basic password withheld" in result.reason


def test_basic_password_is_not_sent_to_a_server_named_by_an_unsigned_redirect(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    """An unsigned redirect from an untrusted server is followed provisionally, without the
    password -- even to a server whose certificate would verify, as it names no anchor."""
    second = stubs.start(Stub())
    second.answer = lambda _input: lab.signed(onboarding(second, boot_image=None))
    first = redirect_pair(lab, stubs, second, signed=False)

    result, _ = run(
        config(lab, tmp_path, first.uri, trusted=False), identity(lab, password=PASSWORD)
    )

    assert result.succeeded, result.reason
    assert result.servers_contacted == (first.uri, second.uri)
    assert first.every_authorization == second.every_authorization == []
    assert second.client_serials == [SERIAL]  # the IDevID is still presented


def test_basic_password_goes_to_a_server_trusted_through_a_signed_redirect(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    second = stubs.start(Stub())
    first = redirect_pair(lab, stubs, second, signed=True)

    result, _ = run(
        config(lab, tmp_path, first.uri, trusted=False), identity(lab, password=PASSWORD)
    )

    assert result.succeeded, result.reason
    assert first.every_authorization == []  # provisional
    assert second.every_authorization  # verified against the signed redirect's anchor
    assert set(second.every_authorization) == {BASIC}


def test_basic_password_goes_to_a_server_verified_by_server_ca(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(Stub())
    stub.answer = lambda _input: lab.signed(onboarding(stub, boot_image=None))

    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab, password=PASSWORD))

    assert result.succeeded, result.reason
    assert stub.every_authorization and set(stub.every_authorization) == {BASIC}


# --------------------------------------------------------------------------- oversized answers


@dataclass
class FloodStub(Stub):
    """Answers get-bootstrapping-data (or host-meta) with a body far beyond any limit: 64 MiB
    when `announce`, else chunked, without end (stopped at 256 MiB so a client that reads
    everything still finishes)."""

    flood: str = "rpc"  # or "host-meta"
    announce: bool = False
    sent: int = 0

    async def host_meta(self, request: web.Request) -> web.StreamResponse:
        if self.flood == "host-meta":
            return await self._flood(request, "application/xrd+xml")
        return await super().host_meta(request)

    async def operation(self, request: web.Request) -> web.StreamResponse:
        if self.flood == "rpc":
            await request.read()
            return await self._flood(request, restconf.WireFormat.JSON.media_type)
        return await super().operation(request)

    async def _flood(self, request: web.Request, content_type: str) -> web.StreamResponse:
        total = 64 * 1024 * 1024 if self.announce else 256 * 1024 * 1024
        response = web.StreamResponse(headers={"Content-Type": content_type})
        if self.announce:
            response.content_length = total
        await response.prepare(request)
        chunk = b" " * (256 * 1024)
        try:
            while self.sent < total:
                await response.write(chunk)
                self.sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the device hung up
        return response


@pytest.mark.parametrize("flood", ["rpc", "host-meta"])
def test_endless_answer_is_abandoned_while_streaming(
    lab: Lab, stubs: StubRunner, tmp_path: Path, flood: str
) -> None:
    stub = stubs.start(FloodStub(flood=flood))
    stub.answer = lambda _input: lab.signed(onboarding(stub, boot_image=None))

    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab))

    limit = restconf.MAX_OUTPUT_SIZE if flood == "rpc" else restconf.MAX_HOST_META_SIZE
    assert not result.succeeded
    assert f"larger than the {limit}-byte limit; abandoned while reading" in result.reason
    # The device stopped reading near the limit (socket buffers hold a few MiB more).
    assert stub.sent < limit + 32 * 1024 * 1024


def test_oversized_announced_answer_is_not_read(
    lab: Lab, stubs: StubRunner, tmp_path: Path
) -> None:
    stub = stubs.start(FloodStub(announce=True))

    result, _ = run(config(lab, tmp_path, stub.uri), identity(lab))

    assert not result.succeeded
    assert (
        f"response of {64 * 1024 * 1024} bytes is larger than the "
        f"{restconf.MAX_OUTPUT_SIZE}-byte limit; not read"
    ) in result.reason
    assert stub.sent < 32 * 1024 * 1024

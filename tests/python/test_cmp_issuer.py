"""The CMP LDevID issuer against OpenSSL's CMP mock server (`openssl cmp -port`), and against
small fake HTTP servers for what a real CA would not answer."""

import datetime as dt
import http.server
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from sztp.protocol import pki
from sztp_server.config import LdevidIssuer
from sztp_server.ldevid.cmp_issuer import CmpIssuer
from sztp_server.ldevid.issuers import IssueRequest, IssuerError
from sztp_testing import free_port


def _openssl_cmp_available() -> bool:
    if shutil.which("openssl") is None:
        return False
    done = subprocess.run(["openssl", "cmp", "-help"], capture_output=True, check=False)
    return done.returncode == 0


pytestmark = pytest.mark.skipif(not _openssl_cmp_available(), reason="no `openssl cmp`")

REFERENCE = "lab-ra"
SECRET = "a shared secret"
SERIAL = "SN-1"


@dataclass(frozen=True)
class Pki:
    directory: Path
    root: pki.Credential
    intermediate: pki.Credential
    csr: x509.CertificateSigningRequest
    by_root: x509.Certificate  # the CSR's certificate, issued by the root
    by_intermediate: x509.Certificate

    def write(self, name: str, *certificates: x509.Certificate) -> Path:
        path = self.directory / name
        path.write_bytes(b"".join(map(pki.certificate_to_pem, certificates)))
        return path


def _certificate(
    issuer: pki.Credential, subject: x509.Name, public_key: pki.PrivateKey
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer.private_key, pki.signature_hash(issuer.private_key))
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = pki.create_root_ca("Test CMP Root CA")
    intermediate = pki.issue_intermediate_ca(root, "Test CMP Issuing CA")
    key = pki.generate_key()
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, SERIAL)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return Pki(
        directory=tmp_path_factory.mktemp("cmp"),
        root=root,
        intermediate=intermediate,
        csr=csr,
        by_root=_certificate(root, subject, key),
        by_intermediate=_certificate(intermediate, subject, key),
    )


def _issuer(
    lab: Pki,
    url: str,
    *,
    secret: str = SECRET,
    trusted: Path | None = None,
    timeout: float = 5.0,
) -> CmpIssuer:
    secret_file = lab.directory / ("secret" if secret == SECRET else "other-secret")
    secret_file.write_text(secret + "\n")
    secret_file.chmod(0o600)
    config = LdevidIssuer(
        name="cmp-ca",
        type="cmp",
        url=url,
        reference=REFERENCE,
        secret_file=secret_file,
        certificate_file=trusted or lab.write("root.pem", lab.root.certificate),
        timeout=timeout,
    )
    return CmpIssuer(config)


def _request(lab: Pki) -> IssueRequest:
    return IssueRequest(serial=SERIAL, profile="default", csr=lab.csr)


@dataclass
class MockServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def exits(self, within: float = 5.0) -> bool:
        """Whether the server stopped by itself (as -max_msgs makes it) within `within`."""
        try:
            self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            return False
        return True


@pytest.fixture
def mock_server(lab: Pki) -> Iterator[Callable[..., MockServer]]:
    """Starts `openssl cmp` as a CMP server answering with `certificate` (and `options`)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(certificate: x509.Certificate, *options: str) -> MockServer:
        port = free_port()
        log = lab.directory / f"mock-{port}.log"
        command = [
            "openssl", "cmp", "-port", str(port),
            "-srv_ref", "lab-ca", "-srv_secret", f"pass:{SECRET}",
            "-rsp_cert", str(lab.write(f"rsp-{port}.pem", certificate)),
            *options,
        ]  # fmt: skip
        with log.open("wb") as output:
            process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        started.append(process)
        deadline = time.monotonic() + 10
        # Polling the log rather than connecting: the server counts connections as messages.
        while b"ACCEPT" not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"openssl cmp did not start: {log.read_text()}")
            time.sleep(0.02)
        return MockServer(f"http://127.0.0.1:{port}/pkix/", process, log)

    yield start
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- issuing ------------------------------------------------------------------------------


def test_issues_with_implicit_confirm(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    # One message only: a certConf after the granted implicit confirmation would find no server.
    server = mock_server(lab.by_root, "-grant_implicitconf", "-max_msgs", "1")
    issued = _issuer(lab, server.url).issue(_request(lab))
    assert issued.certificate == lab.by_root
    assert issued.chain == (lab.root.certificate,)
    assert server.exits()


def test_confirms_when_implicit_confirm_is_not_granted(
    lab: Pki, mock_server: Callable[..., MockServer]
) -> None:
    server = mock_server(lab.by_root, "-max_msgs", "2")
    issued = _issuer(lab, server.url).issue(_request(lab))
    assert issued.certificate == lab.by_root
    # The second message was our certConf, which OpenSSL's server answered with pkiConf.
    assert server.exits()
    assert server.process.returncode == 0


def test_chain_through_the_answers_extra_certificates(
    lab: Pki, mock_server: Callable[..., MockServer]
) -> None:
    extra = lab.write("extra.pem", lab.intermediate.certificate)
    server = mock_server(lab.by_intermediate, "-grant_implicitconf", "-rsp_extracerts", str(extra))
    issued = _issuer(lab, server.url).issue(_request(lab))
    assert issued.certificate == lab.by_intermediate
    assert issued.chain == (lab.intermediate.certificate, lab.root.certificate)
    assert issued.chain_pem.count("BEGIN CERTIFICATE") == 3


def test_chain_along_the_configured_certificates(
    lab: Pki, mock_server: Callable[..., MockServer]
) -> None:
    server = mock_server(lab.by_intermediate, "-grant_implicitconf")
    trusted = lab.write("both.pem", lab.root.certificate, lab.intermediate.certificate)
    issued = _issuer(lab, server.url, trusted=trusted).issue(_request(lab))
    assert issued.chain == (lab.intermediate.certificate, lab.root.certificate)


# --- refusals -----------------------------------------------------------------------------


def test_wrong_secret(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    server = mock_server(lab.by_root, "-grant_implicitconf")
    with pytest.raises(IssuerError, match="protection MAC does not verify with the shared secret"):
        _issuer(lab, server.url, secret="not the secret").issue(_request(lab))


def test_rejection_carries_the_status(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    server = mock_server(
        lab.by_root, "-pkistatus", "2", "-failure", "9", "-statusstring", "no LDevID for SN-1"
    )
    with pytest.raises(IssuerError) as caught:
        _issuer(lab, server.url).issue(_request(lab))
    assert str(caught.value) == (
        "issuer cmp-ca: the CA refused: rejection, failInfo badPOP (no LDevID for SN-1)"
    )


def test_error_message(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    server = mock_server(lab.by_root, "-send_error")
    with pytest.raises(IssuerError, match=r"the CA answered an error: rejection, failInfo \w+"):
        _issuer(lab, server.url).issue(_request(lab))


def test_waiting_is_a_refusal(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    server = mock_server(lab.by_root, "-poll_count", "1", "-check_after", "0")
    with pytest.raises(IssuerError, match="the CA wants polling: waiting"):
        _issuer(lab, server.url).issue(_request(lab))


def test_unprotected_answer(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    server = mock_server(lab.by_root, "-grant_implicitconf", "-send_unprotected")
    with pytest.raises(IssuerError, match="the answer is not protected"):
        _issuer(lab, server.url).issue(_request(lab))


def test_certificate_that_does_not_chain(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    server = mock_server(lab.by_root, "-max_msgs", "2")
    other = pki.create_root_ca("Test CMP Root CA")  # the same name, another key
    trusted = lab.write("other.pem", other.certificate)
    with pytest.raises(IssuerError, match="does not chain to the configured CA certificates"):
        _issuer(lab, server.url, trusted=trusted).issue(_request(lab))
    # The certificate was rejected by a certConf: the server handled its second message.
    assert server.exits()


def test_intermediate_from_the_answer_must_reach_the_configured_ones(
    lab: Pki, mock_server: Callable[..., MockServer]
) -> None:
    extra = lab.write("extra.pem", lab.intermediate.certificate)
    server = mock_server(lab.by_intermediate, "-grant_implicitconf", "-rsp_extracerts", str(extra))
    other = pki.create_root_ca("Test CMP Root CA")
    with pytest.raises(IssuerError, match="does not chain"):
        _issuer(lab, server.url, trusted=lab.write("o.pem", other.certificate)).issue(_request(lab))


def test_certificate_for_another_key(lab: Pki, mock_server: Callable[..., MockServer]) -> None:
    stranger = _certificate(lab.root, lab.csr.subject, pki.generate_key())
    server = mock_server(stranger, "-grant_implicitconf")
    with pytest.raises(IssuerError, match="not for the requested key"):
        _issuer(lab, server.url).issue(_request(lab))


# --- transport ----------------------------------------------------------------------------


def test_no_server(lab: Pki) -> None:
    started = time.monotonic()
    with pytest.raises(IssuerError, match="Connection refused"):
        _issuer(lab, f"http://127.0.0.1:{free_port()}/pkix/", timeout=2).issue(_request(lab))
    assert time.monotonic() - started < 2


def test_silent_server(lab: Pki) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(IssuerError, match=r"no answer within 0.5 s"):
            _issuer(lab, f"http://127.0.0.1:{port}/pkix/", timeout=0.5).issue(_request(lab))
        assert time.monotonic() - started < 3


class _Answers(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the server's `answer` (content type, body)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        content_type, body = self.server.answer(self)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[Callable[..., str]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(answer: Callable[[_Answers], tuple[str, bytes]]) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
        server.answer = answer  # type: ignore[attr-defined]
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{server.server_address[1]}/pkix/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        ("application/pkixcmp", b"garbage", "malformed answer"),
        ("application/pkixcmp", b"\x30\x03\x02\x01\x02", "malformed answer"),
        ("text/html", b"<html>CMP?</html>", "HTTP 200 answer of type text/html"),
        ("application/pkixcmp", b"\x30" * (300 * 1024), "answer larger than 262144 bytes"),
    ],
)
def test_garbage_answer(
    lab: Pki, fake_server: Callable[..., str], content_type: str, body: bytes, message: str
) -> None:
    url = fake_server(lambda _handler: (content_type, body))
    with pytest.raises(IssuerError, match=message):
        _issuer(lab, url).issue(_request(lab))


def test_replayed_answer(
    lab: Pki, mock_server: Callable[..., MockServer], fake_server: Callable[..., str]
) -> None:
    """A genuine answer of an earlier transaction is refused: its transactionID and
    recipNonce are not ours."""
    server = mock_server(lab.by_root, "-grant_implicitconf")
    recorded: list[bytes] = []

    def replay(handler: _Answers) -> tuple[str, bytes]:
        if not recorded:
            raise AssertionError("nothing recorded")
        return "application/pkixcmp", recorded[0]

    original_post = requests.Session.post

    def recording_post(session: requests.Session, *args: object, **kwargs: object) -> object:
        response = original_post(session, *args, **kwargs)  # type: ignore[arg-type]
        recorded.append(response.content)
        return response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "post", recording_post)
        _issuer(lab, server.url).issue(_request(lab))
    assert len(recorded) == 1
    with pytest.raises(IssuerError, match="the answer is for another transactionID"):
        _issuer(lab, fake_server(replay)).issue(_request(lab))

"""Helpers for tests that need a real `sztp-server` subprocess or the `sztpctl` console script.

with running_server(tmp_path, lab=lab) as server:
    run_sztpctl("apply", "-f", fleet, env=server.cli_env(tmp_path))
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID

from sztp.client import SztpClient
from sztp.labpki import LabPki, load_lab_pki, write_lab_pki
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp.simulator import DeviceIdentity, SimulationResult, SimulatorConfig, simulate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FLEET = ROOT / "docs" / "examples" / "lab-fleet.yaml"
EXAMPLE_SERIALS = ("SN-0001", "SN-0002")
BIN = Path(sys.executable).parent
SZTP_SERVER = shutil.which("sztp-server", path=str(BIN))
SZTPCTL = shutil.which("sztpctl", path=str(BIN))
# Markdown as the documentation pages write it.
MARKDOWN_CODE_BLOCK = re.compile(r"```[a-z-]*\n(.*?)```", re.S)
_MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)")
_MARKDOWN_HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def only_line(text: str) -> str:
    """The one line of a command's output."""
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def run_script(
    script: Path, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One of the repository's scripts with this interpreter, from the repository's root."""
    return subprocess.run(
        [sys.executable, str(script), *arguments],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def heading_anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings (those in code blocks are no headings)."""
    text = MARKDOWN_CODE_BLOCK.sub("", page.read_text(encoding="utf-8"))
    return {github_anchor(heading) for heading in _MARKDOWN_HEADING.findall(text)}


def assert_links_resolve(page: Path, anchors: Callable[[Path], set[str]] = heading_anchors) -> None:
    """Every relative link of a Markdown page (outside code blocks) names a file that exists
    and, where it names an anchor in a Markdown page, one of `anchors` of that page."""
    text = MARKDOWN_CODE_BLOCK.sub("", page.read_text(encoding="utf-8"))
    for target in _MARKDOWN_LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / file_part).resolve() if file_part else page
        assert linked.exists(), f"{page.name}: link to missing {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: no anchor #{anchor} in {linked.name}"


def basic(serial: str, secret: str) -> str:
    """The Authorization header value of HTTP Basic credentials `serial:secret`."""
    return "Basic " + base64.b64encode(f"{serial}:{secret}".encode()).decode()


# Ports handed out in this process: the kernel may give a port that was just probed and
# released again, and two listeners of one server then collide.
_HANDED_OUT: set[int] = set()


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port nothing listens on now (TCP, or `kind`), not handed out before."""
    while True:
        with socket.socket(socket.AF_INET, kind) as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


class ManualClock:
    """A monotonic clock for unit tests: it reads `now`, which the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RunningServer:
    directory: Path
    admin_url: str
    device_url: str
    token_file: Path
    process: subprocess.Popen[bytes]

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    @property
    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")

    def log_records(self) -> list[dict[str, object]]:
        """Every JSON record of the server's log (its processes' together), oldest first."""
        records = []
        for line in self.log.splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def refusal_reasons(self) -> list[str]:
        """The reasons of every `device request refused` record in the log, oldest first."""
        return [
            str(record.get("reason"))
            for record in self.log_records()
            if record.get("event") == "device request refused"
        ]

    def refusals(self) -> list[str]:
        """The refusal (`sztp.refusals`) of every `device request refused` record in the log,
        oldest first."""
        return [
            str(record.get("refusal"))
            for record in self.log_records()
            if record.get("event") == "device request refused"
        ]

    def worker_pids(self) -> list[int]:
        """The pids of the device workers started so far, oldest first."""
        return [
            int(str(record["pid"]))
            for record in self.log_records()
            if record.get("event") == "device worker started"
        ]

    def client(self) -> SztpClient:
        """The kit's admin API client, with the admin token."""
        return SztpClient(self.admin_url, self.token)

    def cli_env(self, home: Path) -> dict[str, str]:
        """Environment for `sztpctl` against this server, with an empty config directory."""
        return {
            **os.environ,
            "XDG_CONFIG_HOME": str(home / "xdg"),
            "SZTP_SERVER": self.admin_url,
            "SZTP_TOKEN_FILE": str(self.token_file),
        }

    def apply(self, resources: dict[str, object]) -> None:
        """Declare `resources` through the bulk admin API (the admin token); it must land."""
        response = requests.post(
            f"{self.admin_url}/api/v1/state",
            json={"resources": resources},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=60,
        )
        assert response.status_code == 200, response.text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    directory: Path,
    *,
    lab: LabPki | None = None,
    admin_tls: bool = False,
    database_url: str | None = None,
    timeout: float = 30,
    device_host: str = "127.0.0.1",
    settings: Mapping[str, object] | None = None,
) -> RunningServer:
    """A server on loopback with SQLite in `directory` (or `database_url`); with `lab`, the
    device listener (and with `admin_tls` the admin listener too) speaks TLS with the lab's
    server certificate. The device listener binds `device_host` (e.g. `::1`); `settings` are
    further server settings (e.g. `trusted_proxies`)."""
    assert SZTP_SERVER, "sztp-server must be installed in the test environment (make test)"
    directory.mkdir(parents=True, exist_ok=True)
    device_port, admin_port = free_port(), free_port()
    listener: dict[str, object] = {"host": device_host, "port": device_port}
    admin: dict[str, object] = {"host": "127.0.0.1", "port": admin_port}
    if lab is not None:
        tls = {"tls_cert": str(lab.server.certificate), "tls_key": str(lab.server.private_key)}
        listener.update(tls)
        if admin_tls:
            admin.update(tls)
    token_file = directory / "state" / "admin-token"
    config = directory / "server.yaml"
    config.write_text(
        json.dumps(
            {
                "database_url": database_url or f"sqlite:///{directory / 'state' / 'sztp.db'}",
                "device_listeners": [listener],
                "admin_listener": admin,
                "admin_token_file": str(token_file),
                "refresh_interval": 0.2,
                **(settings or {}),
            }
        )
    )
    with (directory / "server.log").open("wb") as log:
        process = subprocess.Popen([SZTP_SERVER, "run", "--config", str(config)], stderr=log)
    scheme = "https" if lab is not None else "http"
    admin_scheme = "https" if lab is not None and admin_tls else "http"
    server = RunningServer(
        directory=directory,
        admin_url=f"{admin_scheme}://127.0.0.1:{admin_port}",
        device_url=f"{scheme}://{_url_host(device_host)}:{device_port}",
        token_file=token_file,
        process=process,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sztp-server exited early:\n{server.log}")
        with contextlib.suppress(requests.ConnectionError):
            verify = str(lab.tls_ca.certificate) if lab is not None else True
            healthy = requests.get(f"{server.admin_url}/healthz", timeout=1, verify=verify).ok
            if healthy and token_file.exists():
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"sztp-server did not start within {timeout} s:\n{server.log}")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def running_server(
    directory: Path,
    *,
    lab: LabPki | None = None,
    admin_tls: bool = False,
    database_url: str | None = None,
    device_host: str = "127.0.0.1",
    settings: Mapping[str, object] | None = None,
) -> Iterator[RunningServer]:
    server = start_server(
        directory,
        lab=lab,
        admin_tls=admin_tls,
        database_url=database_url,
        device_host=device_host,
        settings=settings,
    )
    try:
        yield server
    finally:
        server.stop()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Ask a helper process to end, and kill it if it has not within ten seconds."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_sztp_server(
    command: str, config: Path, *, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`sztp-server COMMAND --config CONFIG` in a bare environment (PATH and `env` only, as a
    service manager starts it), for a command expected to exit."""
    assert SZTP_SERVER, "sztp-server must be installed in the test environment (make test)"
    return subprocess.run(
        [SZTP_SERVER, command, "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def run_sztpctl(
    *arguments: str | Path,
    env: Mapping[str, str],
    expect: int = 0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real console script; check the exit status and that no traceback leaked."""
    assert SZTPCTL, "sztpctl must be installed in the test environment (make test)"
    result = subprocess.run(
        [SZTPCTL, *map(str, arguments)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(env),
        cwd=cwd,
    )
    assert result.returncode == expect, (
        f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


def onboarding_resources(
    profile: str, *, os_version: str, **settings: object
) -> dict[str, dict[str, object]]:
    """An image of LabOS `os_version` (named os-<major>, never downloaded) and an onboarding
    profile `profile` installing it, with further profile `settings`: what a lab device's
    profile needs, as bulk admin API resources."""
    image = f"os-{os_version.partition('.')[0]}"
    return {
        "image": {
            image: {
                "os_name": "LabOS",
                "os_version": os_version,
                "download_uris": [f"https://files.lab.example/{image}.img"],
                "sha256": hashlib.sha256(image.encode()).hexdigest(),
            }
        },
        "profile": {profile: {"type": "onboarding", "image": image, **settings}},
    }


def lab_voucher(lab: LabPki, serial: str) -> bytes:
    """A lab voucher for `serial` pinning the owner CA, signed by the lab MASA."""
    owner_ca = pki.load_certificates_pem(lab.owner_ca.certificate.read_bytes())[0]
    return sign_voucher(create_voucher(serial, owner_ca), lab.masa.load())


def simulate_lab_device(
    lab: LabPki,
    device_url: str,
    serial: str,
    work: Path,
    *,
    os_version: str | None = None,
    **changes: object,
) -> SimulationResult:
    """Bootstrap `serial` from `device_url` with the project's device simulator: its lab IDevID,
    the lab manufacturer CA as trust anchor and the lab TLS CA for the server's certificate;
    `changes` replace SimulatorConfig fields."""
    files = lab.devices[serial].idevid
    config: dict[str, object] = {
        "bootstrap_uris": (device_url,),
        "trust_anchors": tuple(
            pki.load_certificates_pem(lab.manufacturer_ca.certificate.read_bytes())
        ),
        "server_ca": lab.tls_ca.certificate,
        "work_dir": work,
        "timeout": 10.0,
        **changes,
    }
    identity = DeviceIdentity(
        serial, files.certificate, files.private_key, os_name="LabOS", os_version=os_version
    )
    return simulate(SimulatorConfig(**config), identity)  # type: ignore[arg-type]


def write_voucher(lab: LabPki, serial: str, path: Path) -> None:
    path.write_bytes(lab_voucher(lab, serial))


def lay_out_example(directory: Path) -> Path:
    """docs/examples/lab-fleet.yaml with the files it refers to, as `make demo` leaves them
    (lab PKI in pki/, vouchers, image, day-0 configuration); returns the fleet file."""
    lab = write_lab_pki(directory / "pki", list(EXAMPLE_SERIALS), hw_model="DPU-LAB-1")
    for serial in EXAMPLE_SERIALS:
        write_voucher(lab, serial, directory / f"{serial}.vcj")
    (directory / "labos-1.2.img").write_bytes(b"LabOS 1.2 boot image\n")
    (directory / "day0.cfg").write_text("hostname dpu\n")
    fleet = directory / "fleet.yaml"
    shutil.copyfile(EXAMPLE_FLEET, fleet)
    return fleet


def example_lab(fleet: Path) -> LabPki:
    return load_lab_pki(fleet.parent / "pki")


def issue_leaf(
    issuer: pki.Credential,
    serial: str,
    *,
    key_usage: x509.KeyUsage | None,
    extended_usage: Sequence[x509.ObjectIdentifier] | None,
    valid_for: dt.timedelta = dt.timedelta(days=30),
) -> pki.Credential:
    """A device-like leaf with exactly the given (or no) key usage extensions, valid from a
    few minutes ago for `valid_for` from now."""
    key = pki.generate_key()
    certificate = leaf_certificate(
        issuer,
        serial,
        key.public_key(),
        key_usage=key_usage,
        extended_usage=extended_usage,
        valid_for=valid_for,
    )
    return pki.Credential(certificate, key, issuer.certificates)


def leaf_certificate(
    issuer: pki.Credential,
    serial: str,
    public_key: CertificatePublicKeyTypes,
    *,
    key_usage: x509.KeyUsage | None,
    extended_usage: Sequence[x509.ObjectIdentifier] | None,
    valid_for: dt.timedelta = dt.timedelta(days=30),
) -> x509.Certificate:
    """`issue_leaf`'s certificate for a public key whose private key is elsewhere (a CSR's:
    a key in a TPM)."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, serial),
                    x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
                ]
            )
        )
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    if extended_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_usage), critical=False)
    return builder.sign(issuer.private_key, pki.signature_hash(issuer.private_key))


def key_usage(*, digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=not digital_signature,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def assert_released(directory: Path, within: float = 10.0) -> None:
    """No process holds a file under `directory` open (within `within` seconds)."""
    deadline = time.monotonic() + within
    while True:
        holders = sorted(holders_of(directory))
        if not holders or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not holders, f"processes still holding {directory}: {holders}"


def holders_of(directory: Path) -> set[int]:
    found = set()
    for descriptors in Path("/proc").glob("[0-9]*/fd"):
        with contextlib.suppress(OSError):
            for descriptor in descriptors.iterdir():
                with contextlib.suppress(OSError):
                    if str(descriptor.readlink()).startswith(f"{directory}/"):
                        found.add(int(descriptors.parent.name))
    return found - {os.getpid()}

"""docs/troubleshooting.md ("When a device does not come up") checked against reality.

Each failure the page walks through is produced for real: the project's device simulator
(`sztpctl simulate run`) bootstraps against a running sztp-server over TLS. The `sztpctl`
commands the page tells the operator to run are then run exactly as the page shows them, and
must show what the page says they show: every fragment asserted here is looked for both in the
command's output and in the page's output blocks, so neither can drift from the other.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import http.server
import os
import re
import shlex
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp_testing import ROOT, RunningServer, lab_voucher, run_sztpctl, running_server

PAGE = (ROOT / "docs" / "troubleshooting.md").read_text(encoding="utf-8")
# A fenced block, also one indented under a list item.
_BLOCK = re.compile(r"^[ \t]*```(?P<lang>\w*)\n(?P<body>.*?)^[ \t]*```", re.S | re.M)
_COMMENT = re.compile(r"\s+#.*$")

SERIALS = tuple(f"SN-{number:04d}" for number in range(1, 14))
DAY0 = "hostname dpu\n"
DISK_CHECK = "#!/bin/sh\necho 'disk /dev/nvme0n1 not found' >&2\nexit 3\n"
# The device loses power while its pre-configuration script runs: the script kills the
# simulator that runs it, so the device never reports again.
POWER_LOSS = '#!/bin/sh\nkill -KILL "$PPID"\n'
IMAGE = b"LabOS 2.0 boot image\n"
SERVED_IMAGE = b"LabOS 2.0 boot image, cut short"  # what the file server has instead
DEVICE_PASSWORD = "the password on the label"
STALL_AFTER_MINUTES = 0.02
# Wide enough that no table row or message of these tests wraps.
WIDE = {"COLUMNS": "500", "NO_COLOR": "1"}


# ---- what the page shows


def _blocks(lang: str) -> list[str]:
    return [match["body"] for match in _BLOCK.finditer(PAGE) if match["lang"] == lang]


SHOWN_COMMANDS = {
    _COMMENT.sub("", line).strip() for block in _blocks("sh") for line in block.splitlines()
}
SHOWN_OUTPUT = [line.strip() for block in _blocks("text") for line in block.splitlines()]


def flat(text: str) -> str:
    """Runs of blanks as one space: table columns are as wide as their widest cell."""
    return " ".join(text.split())


def assert_shows(output: str, *fragments: str) -> None:
    """Each fragment is in `output`, and one of the page's output blocks shows it too."""
    page = flat("\n".join(SHOWN_OUTPUT))
    for fragment in fragments:
        assert flat(fragment) in flat(output), f"{fragment!r} is not in:\n{output}"
        assert flat(fragment) in page, f"docs/troubleshooting.md does not show {fragment!r}"


def assert_shows_row(output: str, *cells: str) -> None:
    """One line of `output` holds all `cells`, and so does a line the page shows."""

    def has_row(lines: list[str]) -> bool:
        return any(all(flat(cell) in flat(line) for cell in cells) for line in lines)

    assert has_row(output.splitlines()), f"no line with {cells} in:\n{output}"
    assert has_row(SHOWN_OUTPUT), f"docs/troubleshooting.md shows no line with {cells}"


def sztpctl(
    env: dict[str, str], command_line: str, *, expect: int = 0, cwd: Path | None = None
) -> str:
    """Run a command line exactly as the page shows it; its stdout, then its stderr."""
    assert command_line in SHOWN_COMMANDS, f"docs/troubleshooting.md does not show {command_line}"
    program, *arguments = shlex.split(command_line)
    assert program == "sztpctl"
    result = run_sztpctl(*arguments, env=env, expect=expect, cwd=cwd)
    return result.stdout + result.stderr


def operator(server: RunningServer, home: Path) -> dict[str, str]:
    """The environment of an operator's `sztpctl` pointed at `server`."""
    return {**server.cli_env(home), **WIDE}


def assert_logged(server: RunningServer, event: str, refusal: str, *reason: str) -> None:
    """The server's log has `event` for `refusal` with a reason holding the `reason` parts,
    and the page quotes them."""
    assert any(
        record.get("event") == event
        and record.get("refusal") == refusal
        and all(part in str(record.get("reason")) for part in reason)
        for record in server.log_records()
    ), server.log
    parts = (f'"event": "{event}"', f'"refusal": "{refusal}"', *reason)
    assert any(
        line.startswith("{") and all(part in line for part in parts) for line in SHOWN_OUTPUT
    ), f"docs/troubleshooting.md quotes no log line with {parts}"


def wait_for_event(
    server: RunningServer, matches: Callable[[dict[str, Any]], bool], serial: str | None = None
) -> None:
    """Until the flight recorder holds a matching event: each server process writes its
    events in batches, every half second."""
    deadline = time.monotonic() + 10
    while not any(
        matches(event)
        for event in server.client().device_events(serial=serial, limit=1000)["events"]
    ):
        assert time.monotonic() < deadline, "the flight recorder did not record the request"
        time.sleep(0.1)


def refused(refusal: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["refusal"] == refusal


def wait_for_status(server: RunningServer, serial: str, status: str) -> None:
    deadline = time.monotonic() + 10
    while server.client().device_status(serial)["status"] != status:
        assert time.monotonic() < deadline, f"{serial} did not become {status}"
        time.sleep(0.1)


# ---- the lab: PKI, the operator's files, an image server


@dataclass(frozen=True)
class Identity:
    """What a simulated device presents: its IDevID (its issuers after it) and the key."""

    chain: Path
    key: Path


def write_identity(directory: Path, credential: pki.Credential) -> Identity:
    directory.mkdir(parents=True)
    identity = Identity(directory / "idevid-chain.pem", directory / "idevid.key")
    chain = b"".join(pki.certificate_to_pem(cert) for cert in credential.certificates)
    identity.chain.write_bytes(chain)
    identity.key.write_bytes(pki.private_key_to_pem(credential.private_key))
    identity.key.chmod(0o600)
    return identity


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("lab") / "pki", SERIALS, hw_model="DPU-LAB-1")


@pytest.fixture(scope="module")
def vendor_b() -> pki.Credential:
    """The CA of a manufacturer the server has no trust anchor for."""
    return pki.create_root_ca("Vendor B Manufacturer CA")


@pytest.fixture(scope="module")
def workspace(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator's directory, with the files the page's commands name."""
    directory = tmp_path_factory.mktemp("operator")
    (directory / "manufacturer-ca.pem").write_bytes(lab.manufacturer_ca.certificate.read_bytes())
    (directory / "owner-chain.pem").write_text(
        lab.owner.certificate.read_text() + lab.owner_ca.certificate.read_text()
    )
    (directory / "SN-0001.vcj").write_bytes(lab_voucher(lab, "SN-0001"))
    return directory


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_url(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTPS file server whose copy of the image is not the image the fleet describes."""
    files = tmp_path_factory.mktemp("files")
    (files / "labos-2.0.img").write_bytes(SERVED_IMAGE)
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *args: _QuietFiles(*args, directory=str(files))
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(lab.server.certificate), str(lab.server.private_key))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/labos-2.0.img"
    httpd.shutdown()
    thread.join()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def voucher_signed_by(
    masa: pki.Credential, lab: LabPki, serial: str, expires_on: dt.datetime | None = None
) -> bytes:
    """A voucher for `serial` pinning the lab's owner CA, signed by `masa`."""
    owner_ca = pki.load_certificates_pem(lab.owner_ca.certificate.read_bytes())[0]
    return sign_voucher(create_voucher(serial, owner_ca, expires_on=expires_on), masa)


# ---- the simulated device


def boot(
    lab: LabPki,
    uri: str,
    serial: str,
    work: Path,
    *options: str,
    identity: Identity | None = None,
    trusts_server: bool = True,
    expect: int = 1,
) -> str:
    """Bootstrap `serial` with `sztpctl simulate run` (exit status `expect`); what its
    console shows."""
    if identity is None:
        files = lab.devices[serial]
        identity = Identity(files.chain, files.idevid.private_key)
    arguments = [
        "simulate", "run", "--serial", serial, "--uri", uri,
        "--idevid-cert", str(identity.chain), "--idevid-key", str(identity.key),
        "--trust-anchor", str(lab.manufacturer_ca.certificate),
        "--file-server-ca", str(lab.tls_ca.certificate),
        "--hw-model", "DPU-LAB-1", "--os-name", "LabOS", "--os-version", "1.0",
        "--work-dir", str(work), "--timeout", "10", *options,
    ]  # fmt: skip
    if trusts_server:
        arguments += ["--server-ca", str(lab.tls_ca.certificate)]
    result = run_sztpctl(*arguments, env={**os.environ, **WIDE}, expect=expect)
    return result.stdout + result.stderr


def password_file(path: Path, secret: str) -> str:
    """A file holding the device's HTTP Basic secret, for --password-file."""
    path.write_text(secret + "\n")
    return str(path)


# ---- a bootstrap server the devices reach directly over TLS


@dataclass(frozen=True)
class Site:
    server: RunningServer
    voucher_expires: dt.datetime  # when SN-0006's stored voucher expires


def device_spec(
    lab: LabPki, serial: str, profile: str | None, voucher: bytes | None = None, **spec: Any
) -> dict[str, Any]:
    return {"profile": profile, "voucher": b64(voucher or lab_voucher(lab, serial)), **spec}


@pytest.fixture(scope="module")
def site(
    lab: LabPki,
    vendor_b: pki.Credential,
    workspace: Path,
    image_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Site]:
    settings = {
        # A device silent this long mid-bootstrap is stalled (30 minutes by default).
        "stall_after_minutes": STALL_AFTER_MINUTES,
        # Five reports in a row, then one a minute (60 and 12 by default): the sixth report of
        # SN-0013's verbose bootstrap is one too many; every other device sends fewer.
        "report_burst": 5,
        "report_rate_per_minute": 1,
    }
    directory = tmp_path_factory.mktemp("server")
    with running_server(directory, lab=lab, settings=settings) as server:
        # Current when it is stored, expired by the time SN-0006 asks.
        expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=5)
        expiring = voucher_signed_by(lab.masa.load(), lab, "SN-0006", expires_on=expires)
        (workspace / "SN-0006.vcj").write_bytes(expiring)
        # From a MASA that the devices' manufacturer trust anchor does not cover.
        vendor_b_masa = pki.issue_signing_certificate(vendor_b, "Vendor B MASA")
        foreign = voucher_signed_by(vendor_b_masa, lab, "SN-0011")
        (workspace / "SN-0011.vcj").write_bytes(foreign)
        no_profile_matches = [{"hw_model": "DPU-LAB-2*", "profile": "dpu-day0"}]
        devices = {
            "SN-0002": device_spec(lab, "SN-0002", "dpu-day0", password=DEVICE_PASSWORD),
            "SN-0005": device_spec(lab, "SN-0005", None, selection=no_profile_matches),
            "SN-0006": device_spec(lab, "SN-0006", "dpu-day0", expiring),
            "SN-0008": device_spec(lab, "SN-0008", "disk-check"),
            "SN-0009": device_spec(lab, "SN-0009", "dpu-upgrade"),
            "SN-0010": device_spec(lab, "SN-0010", "dpu-prepare"),
            "SN-0011": device_spec(lab, "SN-0011", "dpu-day0", foreign),
            "SN-0012": device_spec(lab, "SN-0012", "dpu-day0"),
            "SN-0013": device_spec(lab, "SN-0013", "dpu-day0-verbose"),
        }
        image = {
            "os_name": "LabOS",
            "os_version": "2.0",
            "download_uris": [image_url],
            "sha256": hashlib.sha256(IMAGE).hexdigest(),
        }
        profiles = {
            "dpu-day0": {"type": "onboarding", "configuration": DAY0},
            "disk-check": {
                "type": "onboarding",
                "pre_configuration_script": DISK_CHECK,
                "configuration": DAY0,
            },
            "dpu-upgrade": {"type": "onboarding", "image": "labos-2.0"},
            "dpu-prepare": {
                "type": "onboarding",
                "reporting_level": "verbose",
                "pre_configuration_script": POWER_LOSS,
                "configuration": DAY0,
            },
            "dpu-day0-verbose": {
                "type": "onboarding",
                "reporting_level": "verbose",
                "configuration": DAY0,
            },
        }
        server.apply(
            {
                **lab.trust_resources(),
                "image": {"labos-2.0": image},
                "profile": profiles,
                "device": devices,
            }
        )
        yield Site(server, expires)


# ---- a bootstrap server behind a TLS-terminating proxy: devices log in with passwords alone


class TlsTerminatingProxy:
    """Terminates the devices' TLS in front of a plain-HTTP device listener and passes no
    client certificate on (no `client_cert_header`, as nginx unless told to): the server sees
    HTTP Basic credentials alone, from the proxy's address. Relays bytes as they come."""

    def __init__(self, lab: LabPki, upstream: str) -> None:
        target = urlsplit(upstream)
        assert target.hostname is not None and target.port is not None
        self._upstream = (target.hostname, target.port)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(str(lab.server.certificate), str(lab.server.private_key))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.uri = ""

    def __enter__(self) -> TlsTerminatingProxy:
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0, ssl=self._context)
        self.uri = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _relay(
        self, device_reader: asyncio.StreamReader, device_writer: asyncio.StreamWriter
    ) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._upstream)
        await asyncio.gather(
            _pipe(device_reader, server_writer), _pipe(server_reader, device_writer)
        )


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass  # one side went away: nothing is left to relay
    finally:
        writer.close()


@dataclass(frozen=True)
class ProxiedSite:
    server: RunningServer
    uri: str  # the proxy's, where the devices go


@pytest.fixture(scope="module")
def proxied(lab: LabPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedSite]:
    settings = {
        "trusted_proxies": ["127.0.0.1"],
        # Two failed logins per serial in a burst (10 by default), one more every ten minutes
        # (30 s): none comes back while the tests run.
        "password_failures_per_serial": 2,
        "password_failure_refill_seconds": 600,
    }
    directory = tmp_path_factory.mktemp("proxied")
    with running_server(directory, settings=settings) as server:
        server.apply(
            {
                **lab.trust_resources(),
                "profile": {"dpu-day0": {"type": "onboarding", "configuration": DAY0}},
                "device": {
                    "SN-0007": device_spec(lab, "SN-0007", "dpu-day0", password=DEVICE_PASSWORD)
                },
            }
        )
        with TlsTerminatingProxy(lab, server.device_url) as proxy:
            yield ProxiedSite(server, proxy.uri)


# ---- 1. The serial number is not in the fleet


def test_unknown_serial(lab: LabPki, site: Site, workspace: Path, tmp_path: Path) -> None:
    server = site.server
    console = boot(lab, server.device_url, "SN-0001", tmp_path / "device")
    assert_shows(console, "get-bootstrapping-data failed: HTTP 401: access-denied")
    wait_for_event(server, refused("unknown-serial"))
    env = operator(server, tmp_path)
    status = sztpctl(env, "sztpctl device status SN-0001", expect=1)
    assert_shows(status, "error: no device with serial number 'SN-0001' (HTTP 404)")
    # The serial the trusted certificate named is kept with the refusal.
    assert_shows_row(
        sztpctl(env, "sztpctl events --serial SN-0001 --refused"),
        "get-bootstrapping-data SN-0001 (claimed) 127.0.0.1 401",
        "unknown-serial: a serial number the fleet does not hold",
    )
    assert_logged(
        server,
        "device request refused",
        "unknown-serial",
        "device SN-0001 authenticated but is not known",
    )

    added = sztpctl(
        env,
        "sztpctl device add SN-0001 --profile dpu-day0 --model DPU-LAB-1 --voucher SN-0001.vcj",
        cwd=workspace,
    )
    assert_shows(added, "device SN-0001 added")
    again = boot(lab, server.device_url, "SN-0001", tmp_path / "again", expect=0)
    assert "bootstrap complete: SN-0001" in again
    assert_shows(sztpctl(env, "sztpctl device status SN-0001"), "SN-0001: complete")


def test_unknown_serial_of_a_password_device(
    lab: LabPki, proxied: ProxiedSite, tmp_path: Path
) -> None:
    secret = password_file(tmp_path / "password", DEVICE_PASSWORD)
    boot(lab, proxied.uri, "SN-0001", tmp_path / "device", "--password-file", secret)
    wait_for_event(proxied.server, refused("unknown-serial"), serial="SN-0001")
    events = sztpctl(
        operator(proxied.server, tmp_path), "sztpctl events --serial SN-0001 --refused"
    )
    assert_shows_row(
        events,
        "get-bootstrapping-data SN-0001 (claimed)",
        "401",
        "unknown-serial: a serial number the fleet does not hold",
    )


# ---- 2. The wrong password or activation code


def test_wrong_secret(lab: LabPki, site: Site, workspace: Path, tmp_path: Path) -> None:
    server = site.server
    wrong = password_file(tmp_path / "password", "the password of another device")
    console = boot(lab, server.device_url, "SN-0002", tmp_path / "device", "--password-file", wrong)
    assert_shows(console, "get-bootstrapping-data failed: HTTP 401: access-denied")
    wait_for_event(server, refused("wrong-secret"), serial="SN-0002")
    env = operator(server, tmp_path)
    status = sztpctl(env, "sztpctl device status SN-0002")
    assert_shows(
        status,
        "SN-0002: not-seen (0 attempt(s))",
        "last refused request: get-bootstrapping-data at",
        "from 127.0.0.1: wrong-secret: the wrong password or activation code",
        "refused requests: sztpctl events --serial SN-0002 --refused",
    )
    events = sztpctl(env, "sztpctl events --serial SN-0002 --refused")
    assert_shows_row(
        events,
        "get-bootstrapping-data SN-0002 (claimed) 127.0.0.1 401",
        "wrong-secret: the wrong password or activation code",
    )

    issued = sztpctl(
        env, "sztpctl device activation-code SN-0002 --output-file SN-0002-code.csv", cwd=workspace
    )
    assert_shows(issued, "1 activation code(s) stored; written to SN-0002-code.csv")
    code = (workspace / "SN-0002-code.csv").read_text().splitlines()[1].split(",")[1]
    right = password_file(tmp_path / "code", code)
    boot(lab, server.device_url, "SN-0002", tmp_path / "again", "--password-file", right, expect=0)


# ---- 3. An IDevID from a manufacturer the server does not trust


def test_untrusted_manufacturer(
    lab: LabPki, site: Site, vendor_b: pki.Credential, tmp_path: Path
) -> None:
    server = site.server
    identity = write_identity(tmp_path / "idevid", pki.issue_idevid(vendor_b, "SN-0003"))
    console = boot(lab, server.device_url, "SN-0003", tmp_path / "device", identity=identity)
    assert_shows(console, "unreachable: connection failed")
    wait_for_event(server, refused("untrusted-certificate"))
    env = operator(server, tmp_path)
    assert_shows(sztpctl(env, "sztpctl events --serial SN-0003 --refused"), "no device requests")
    assert_shows_row(
        sztpctl(env, "sztpctl events --refused"),
        "tls-handshake 127.0.0.1 0",
        "untrusted-certificate: a client certificate no configured trust anchor issued",
    )
    assert_logged(server, "TLS handshake refused", "untrusted-certificate")
    anchors = sztpctl(env, "sztpctl trust-anchor list")
    assert_shows_row(anchors, "manufacturer", "CN=SZTP Lab Manufacturer CA")


# ---- 4. An expired IDevID


def test_expired_idevid(lab: LabPki, site: Site, tmp_path: Path) -> None:
    server = site.server
    three_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    expired = pki.issue_idevid(lab.manufacturer_ca.load(), "SN-0004", days=1, now=three_days_ago)
    identity = write_identity(tmp_path / "idevid", expired)
    console = boot(lab, server.device_url, "SN-0004", tmp_path / "device", identity=identity)
    assert_shows(console, "unreachable: connection failed")
    wait_for_event(server, refused("expired-certificate"))
    assert_shows_row(
        sztpctl(operator(server, tmp_path), "sztpctl events --refused"),
        "tls-handshake 127.0.0.1 0",
        "expired-certificate: a client certificate outside its validity period",
    )
    assert_logged(server, "TLS handshake refused", "expired-certificate", "certificate has expired")


# ---- 5. The server has nothing to send


def test_no_profile_matches(lab: LabPki, site: Site, tmp_path: Path) -> None:
    server = site.server
    console = boot(lab, server.device_url, "SN-0005", tmp_path / "device")
    assert_shows(
        console, "get-bootstrapping-data failed: HTTP 404: data-missing: no bootstrapping data"
    )
    wait_for_event(server, refused("no-bootstrapping-data"), serial="SN-0005")
    env = operator(server, tmp_path)
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0005"),
        "no-bootstrapping-data: no profile of the device matches what it sent (see its selection)",
    )
    shown = sztpctl(env, "sztpctl device show SN-0005")
    assert_shows(shown, '- hw_model: "DPU-LAB-2*"')
    (device,) = yaml.safe_load(shown)["devices"]
    assert "profile" not in device  # nothing to fall back on
    # What the device sent, and why nothing was served, are kept with the refusal.
    assert_shows_row(
        sztpctl(env, "sztpctl events --serial SN-0005 --refused"),
        "get-bootstrapping-data SN-0005 127.0.0.1 404",
        "hw-model DPU-LAB-1",
        "device SN-0005 has no profile",
    )


def test_expired_voucher(lab: LabPki, site: Site, workspace: Path, tmp_path: Path) -> None:
    server = site.server
    until_expired = site.voucher_expires - dt.datetime.now(dt.UTC)
    time.sleep(max(0.0, until_expired.total_seconds() + 0.1))
    console = boot(lab, server.device_url, "SN-0006", tmp_path / "device")
    assert_shows(
        console,
        "get-bootstrapping-data failed: HTTP 503: operation-failed: "
        "bootstrapping data is unavailable",
    )
    wait_for_event(server, refused("data-unavailable"), serial="SN-0006")
    env = operator(server, tmp_path)
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0006"),
        "data-unavailable: its bootstrapping data could not be rendered or signed",
    )
    assert_shows_row(sztpctl(env, "sztpctl status"), "voucher", "SN-0006", "(expired)")
    assert_logged(
        server,
        "device request refused",
        "data-unavailable",
        "ownership voucher expired on",
        "store a renewed voucher",
    )
    verify = (
        "sztpctl voucher verify SN-0006.vcj --serial SN-0006 --owner-cert owner-chain.pem "
        "--trust-anchor manufacturer-ca.pem"
    )
    assert_shows(
        sztpctl(env, verify, expect=1, cwd=workspace), "error: ownership voucher expired on"
    )

    # The manufacturer's renewed voucher replaces the old file.
    (workspace / "SN-0006.vcj").write_bytes(lab_voucher(lab, "SN-0006"))
    imported = sztpctl(
        env,
        "sztpctl voucher import SN-0006.vcj --serial SN-0006 --owner-cert owner-chain.pem "
        "--trust-anchor manufacturer-ca.pem",
        cwd=workspace,
    )
    assert_shows(imported, "voucher for SN-0006 imported")
    boot(lab, server.device_url, "SN-0006", tmp_path / "again", expect=0)


# ---- 6. Too many failed logins


def test_rate_limited(lab: LabPki, proxied: ProxiedSite, tmp_path: Path) -> None:
    server = proxied.server
    wrong = password_file(tmp_path / "old-password", "an old password")
    for attempt in range(2):
        boot(lab, proxied.uri, "SN-0007", tmp_path / f"device-{attempt}", "--password-file", wrong)
    # Now even the right password is refused, unchecked, until the serial regains a failure.
    right = password_file(tmp_path / "password", DEVICE_PASSWORD)
    console = boot(lab, proxied.uri, "SN-0007", tmp_path / "right", "--password-file", right)
    assert_shows(
        console,
        "get-bootstrapping-data failed: HTTP 429: resource-denied: too many failed logins; "
        "retry later",
    )
    wait_for_event(server, refused("rate-limited"), serial="SN-0007")
    env = operator(server, tmp_path)
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0007"),
        "rate-limited: too many failed logins from the address or for the serial",
    )
    events = sztpctl(env, "sztpctl events --serial SN-0007 --refused")
    assert_shows_row(events, "SN-0007 (claimed) 127.0.0.1 429", "rate-limited")
    assert_shows_row(events, "SN-0007 (claimed) 127.0.0.1 401", "wrong-secret")


# ---- 7. The device reports an error


def test_failing_script(lab: LabPki, site: Site, tmp_path: Path) -> None:
    server = site.server
    console = boot(lab, server.device_url, "SN-0008", tmp_path / "device", "--run-scripts")
    failure = "pre-configuration-script exited with 3: disk /dev/nvme0n1 not found"
    assert f"pre-script-error: {failure} [reported]" in console
    env = operator(server, tmp_path)
    assert_shows_row(sztpctl(env, "sztpctl status"), "SN-0008", "pre-script-error", failure)
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0008"),
        "SN-0008: failed (1 attempt(s))",
        "last report: pre-script-error at",
        f"from 127.0.0.1: {failure}",
    )


def test_boot_image_does_not_match(lab: LabPki, site: Site, tmp_path: Path) -> None:
    server = site.server
    console = boot(lab, server.device_url, "SN-0009", tmp_path / "device")
    expected = hashlib.sha256(IMAGE).digest().hex(":")
    got = hashlib.sha256(SERVED_IMAGE).digest().hex(":")
    assert_shows(console, f"sha-256 mismatch: got {got}, expected {expected}")
    env = operator(server, tmp_path)
    history = sztpctl(env, "sztpctl device history SN-0009")
    assert_shows_row(history, "bootstrap-initiated", "signed onboarding information received")
    assert_shows_row(history, "boot-image-error", "labos-2.0.img: sha-256 mismatch: got")
    assert_shows(history, f"expected {expected[:20]}")
    image = sztpctl(env, "sztpctl image show labos-2.0")
    assert_shows(image, hashlib.sha256(IMAGE).hexdigest())


# ---- 8. The device stops reporting


def test_stalled(lab: LabPki, site: Site, tmp_path: Path) -> None:
    server = site.server
    # Killed by its own script: a device that loses power half way.
    console = boot(
        lab, server.device_url, "SN-0010", tmp_path / "device", "--run-scripts", expect=-9
    )
    assert "pre-script-initiated: pre-configuration-script" in console
    wait_for_status(server, "SN-0010", "stalled")
    env = operator(server, tmp_path)
    assert_shows_row(sztpctl(env, "sztpctl status"), "SN-0010", "pre-script-initiated")
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0010"),
        "SN-0010: stalled (1 attempt(s))",
        "last report: pre-script-initiated at",
    )
    wait_for_event(server, lambda event: event["rpc"] == "report-progress", serial="SN-0010")
    history = sztpctl(env, "sztpctl device history SN-0010")
    assert_shows_row(history, "parsing-complete", "signed onboarding information accepted")
    assert_shows_row(history, "pre-script-initiated", "pre-configuration-script")
    assert_shows_row(history, "get-bootstrapping-data SN-0010 127.0.0.1 200", "profile dpu-prepare")
    assert_shows_row(history, "report-progress SN-0010 127.0.0.1 204")


# ---- 9. The device does not trust what it gets


def test_device_rejects_the_voucher(
    lab: LabPki, site: Site, workspace: Path, tmp_path: Path
) -> None:
    server = site.server
    console = boot(lab, server.device_url, "SN-0011", tmp_path / "device")
    rejected = (
        "ownership voucher: CN=Vendor B MASA: untrusted issuer CN=Vendor B Manufacturer CA "
        "(not a trust anchor nor a known intermediate)"
    )
    assert f"parsing-error: bootstrapping data rejected: {rejected} [reported]" in console
    env = operator(server, tmp_path)
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0011"),
        "SN-0011: failed (1 attempt(s))",
        "last report: parsing-error at",
        f"bootstrapping data rejected: {rejected}",
    )
    options = "--serial SN-0011 --owner-cert owner-chain.pem --trust-anchor manufacturer-ca.pem"
    verify = sztpctl(env, f"sztpctl voucher verify SN-0011.vcj {options}", expect=1, cwd=workspace)
    assert_shows(verify, f"error: {rejected}")
    # Imported with the devices' trust anchor, such a voucher is never stored.
    refused_import = sztpctl(
        env, f"sztpctl voucher import SN-0011.vcj {options}", expect=1, cwd=workspace
    )
    assert_shows(refused_import, f"error: {rejected}")


def test_device_does_not_trust_the_server(lab: LabPki, site: Site, tmp_path: Path) -> None:
    server = site.server
    console = boot(
        lab, server.device_url, "SN-0012", tmp_path / "device", trusts_server=False, expect=0
    )
    assert_shows(
        console,
        "untrusted (provisional) server",
        "bootstrap-complete: running LabOS 1.0; SSH host keys: ssh-ed25519 "
        "[not reported: untrusted server]",
        "0 progress report(s) sent",
    )
    wait_for_event(server, lambda event: event["status"] == 200, serial="SN-0012")
    env = operator(server, tmp_path)
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0012"),
        "SN-0012: not-seen (0 attempt(s))",
        "no progress reports yet",
    )
    history = sztpctl(env, "sztpctl device history SN-0012")
    assert_shows(history, "SN-0012: no progress reports yet")
    assert_shows_row(history, "get-bootstrapping-data SN-0012 127.0.0.1 200", "profile dpu-day0")


def test_password_device_does_not_trust_the_server(
    lab: LabPki, proxied: ProxiedSite, tmp_path: Path
) -> None:
    secret = password_file(tmp_path / "password", DEVICE_PASSWORD)
    console = boot(
        lab,
        proxied.uri,
        "SN-0012",
        tmp_path / "device",
        "--password-file",
        secret,
        trusts_server=False,
    )
    assert "Basic password withheld: it goes only to a trusted server" in console
    wait_for_event(proxied.server, refused("no-credentials"))
    assert_shows_row(
        sztpctl(operator(proxied.server, tmp_path), "sztpctl events --refused"),
        "get-bootstrapping-data 127.0.0.1 401",
        "no-credentials: neither a client certificate nor Basic credentials",
    )


# ---- 10. Progress reports faster than the server takes them


def test_reports_too_fast(lab: LabPki, site: Site, tmp_path: Path) -> None:
    server = site.server
    console = boot(lab, server.device_url, "SN-0013", tmp_path / "device", expect=0)
    assert_shows(
        console,
        "report bootstrap-complete refused: HTTP 429: resource-denied: too many progress "
        "reports; slow down",
        "bootstrap complete: SN-0013",
    )
    wait_for_event(server, refused("reports-too-fast"), serial="SN-0013")
    # Its last report the server kept says it is mid-bootstrap: it ends up stalled.
    wait_for_status(server, "SN-0013", "stalled")
    env = operator(server, tmp_path)
    assert_shows(
        sztpctl(env, "sztpctl device status SN-0013"),
        "SN-0013: stalled (1 attempt(s))",
        "last refused request: report-progress at",
        "reports-too-fast: progress reports faster than the per-device rate allows",
        "last report: config-complete at",
    )
    events = sztpctl(env, "sztpctl events --serial SN-0013 --refused")
    assert_shows_row(events, "report-progress SN-0013 127.0.0.1 429", "reports-too-fast")

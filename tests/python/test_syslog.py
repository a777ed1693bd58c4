"""The flight recorder's events out to syslog (RFC 5424) over UDP, TCP and TLS, received by
Debian's rsyslog, which parses what the server sends: a device's hostile text stays inside
its structured-data parameter."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from sztp.errors import ValidationError
from sztp.labpki import LabPki, write_lab_pki
from sztp.passwords import generate_activation_code
from sztp.protocol import restconf
from sztp.protocol.restconf import ProgressReport, WireFormat
from sztp_server.config import load_config
from sztp_server.events_out.syslog_format import FACILITIES, format_message, parse_syslog_url
from sztp_testing import RunningServer, basic, free_port, running_server

REPORT_PATH = restconf.operation_path("/restconf", restconf.RPC_REPORT_PROGRESS)
GET_DATA_PATH = restconf.operation_path("/restconf", restconf.RPC_GET_BOOTSTRAPPING_DATA)
JSON = {"Content-Type": WireFormat.JSON.media_type}
# What rsyslog writes of each message it receives: its parse of the RFC 5424 fields.
FIELDS = "%pri%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%"
HOSTILE = 'SN"]\\x'  # printable, so kept as the claimed serial; each character special in SD
LOCAL3 = FACILITIES["local3"]


class Receiver:
    """rsyslogd in the foreground, receiving on one port and writing each message's fields."""

    def __init__(self, directory: Path, transport: str, lab: LabPki) -> None:
        self.directory = directory
        self.transport = transport
        self.received = directory / "received.log"
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.port = free_port(kind)
        (directory / "work").mkdir(parents=True, exist_ok=True)
        if transport == "udp":
            inputs = (
                f'module(load="imudp")\ninput(type="imudp" address="127.0.0.1" port="{self.port}")'
            )
        elif transport == "tcp":
            inputs = (
                f'module(load="imtcp")\ninput(type="imtcp" address="127.0.0.1" port="{self.port}")'
            )
        else:
            inputs = (
                f'global(DefaultNetstreamDriver="ossl" '
                f'DefaultNetstreamDriverCAFile="{lab.tls_ca.certificate}" '
                f'DefaultNetstreamDriverCertFile="{lab.server.certificate}" '
                f'DefaultNetstreamDriverKeyFile="{lab.server.private_key}")\n'
                'module(load="imtcp" StreamDriver.Name="ossl" StreamDriver.Mode="1" '
                'StreamDriver.AuthMode="anon")\n'
                f'input(type="imtcp" address="127.0.0.1" port="{self.port}")'
            )
        self.config = directory / "rsyslog.conf"
        self.config.write_text(
            f'global(workDirectory="{directory / "work"}")\n'
            f"{inputs}\n"
            f'template(name="fields" type="string" string="{FIELDS}\\n")\n'
            f'action(type="omfile" file="{self.received}" template="fields")\n'
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.transport}://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        assert Path(binary).exists(), "rsyslogd not found: install rsyslog (make test does)"
        check = subprocess.run(
            [binary, "-N1", "-f", str(self.config)], capture_output=True, text=True, check=False
        )
        assert check.returncode == 0, check.stdout + check.stderr
        self.process = subprocess.Popen(
            [binary, "-n", "-f", str(self.config), "-i", str(self.directory / "rsyslogd.pid")],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "rsyslogd.err").open("ab"),
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, (
                self.directory / "rsyslogd.err"
            ).read_text()
            if self.transport == "udp":
                # A datagram is lost until the input is open: send until one is written.
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.sendto(b"<14>1 - probe - - - - ready", ("127.0.0.1", self.port))
                if self.received.exists() and "ready" in self.received.read_text():
                    return
            else:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"rsyslogd is not listening on {self.url}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None

    def lines(self, app: str = "sztp-server") -> list[list[str]]:
        """The fields of each message `app` sent, in arrival order."""
        if not self.received.exists():
            return []
        fields = [line.split("|", 6) for line in self.received.read_text().splitlines()]
        return [field for field in fields if len(field) == 7 and field[2] == app]

    def wait_for(self, count: int) -> list[list[str]]:
        deadline = time.monotonic() + 20
        while len(found := self.lines()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return write_lab_pki(tmp_path_factory.mktemp("pki"), [])


@contextmanager
def receiving(directory: Path, transport: str, lab: LabPki) -> Iterator[Receiver]:
    receiver = Receiver(directory, transport, lab)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


def device_requests(server: RunningServer, code: str) -> None:
    """One served request of SN-1 and one refused of a client claiming HOSTILE."""
    report = restconf.encode_report_progress_input(
        ProgressReport("bootstrap-initiated", "starting"), WireFormat.JSON
    )
    served = requests.post(
        f"{server.device_url}{REPORT_PATH}",
        data=report,
        headers={**JSON, "Authorization": basic("SN-1", code)},
        timeout=30,
    )
    assert served.status_code == 204
    refused = requests.post(
        f"{server.device_url}{GET_DATA_PATH}",
        headers={**JSON, "Authorization": basic(HOSTILE, code)},
        timeout=30,
    )
    assert refused.status_code == 401


def logged(server: RunningServer, event: str) -> bool:
    return any(str(record.get("event", "")).startswith(event) for record in server.log_records())


def settings_for(receiver: Receiver, lab: LabPki) -> dict[str, object]:
    settings: dict[str, object] = {"syslog_url": receiver.url, "syslog_facility": "local3"}
    if receiver.transport == "tls":
        settings["syslog_ca_file"] = str(lab.tls_ca.certificate)
    return settings


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_events_reach_rsyslog_as_rfc5424(tmp_path: Path, lab: LabPki, transport: str) -> None:
    code = generate_activation_code()
    with (
        receiving(tmp_path / "rsyslog", transport, lab) as receiver,
        running_server(tmp_path / "server", settings=settings_for(receiver, lab)) as server,
    ):
        server.apply({"device": {"SN-1": {"activation_code": code}}})
        device_requests(server, code)
        received = receiver.wait_for(2)
    assert len(received) == 2, received
    by_msgid = {fields[4]: fields for fields in received}
    pri, host, _, procid, _, data, message = by_msgid["report-progress"]
    assert int(pri) == LOCAL3 * 8 + 6  # informational
    assert host == socket.gethostname() and int(procid) > 0
    assert data.startswith('[sztp@32473 rpc="report-progress" status="204" serial="SN-1" ')
    assert 'authenticated="true"' in data and "refusal=" not in data
    assert message.strip() == "report-progress served for SN-1 from 127.0.0.1: 204"
    pri, _, _, _, _, data, message = by_msgid["get-bootstrapping-data"]
    assert int(pri) == LOCAL3 * 8 + 4  # warning
    # rsyslog found the element's end where the server put it: the hostile serial's quote,
    # bracket and backslash stayed escaped inside its parameter.
    assert ' serial="SN\\"\\]\\\\x" authenticated="false" refusal="unknown-serial" ' in data
    assert data.endswith('"]') and data.count("[sztp@32473 ") == 1
    assert message.strip() == (
        'get-bootstrapping-data refused (unknown-serial) for claimed serial SN"]\\x '
        "from 127.0.0.1: 401"
    )


def test_a_receiver_that_restarts_loses_only_what_it_missed(tmp_path: Path, lab: LabPki) -> None:
    code = generate_activation_code()
    receiver = Receiver(tmp_path / "rsyslog", "tcp", lab)
    receiver.start()
    try:
        # One process, one sender: its outage and recovery are what is checked.
        settings = {"syslog_url": receiver.url, "workers": 1}
        with running_server(tmp_path / "server", settings=settings) as server:
            server.apply({"device": {"SN-1": {"activation_code": code}}})
            device_requests(server, code)
            assert len(receiver.wait_for(2)) == 2
            receiver.stop()
            device_requests(server, code)  # sent to no one: dropped and counted
            deadline = time.monotonic() + 20
            while not logged(server, "syslog receiver unreachable"):
                assert time.monotonic() < deadline, "the outage was not logged"
                time.sleep(0.1)
            receiver.start()
            device_requests(server, code)
            received = receiver.wait_for(4)
            assert len(received) >= 4, received
            while not logged(server, "syslog receiver reachable again"):
                assert time.monotonic() < deadline + 20, "the recovery was not logged"
                time.sleep(0.1)
            page = requests.get(
                f"{server.admin_url}/metrics",
                headers={"Authorization": f"Bearer {server.token}"},
                timeout=10,
            ).text
        assert 'sztp_syslog_dropped_total{why="unreachable"}' in page
        assert "sztp_syslog_sent_total" in page
    finally:
        receiver.stop()


def test_settings_are_checked(tmp_path: Path) -> None:
    bad = {
        "SZTP_SERVER_SYSLOG_URL": "http://127.0.0.1:514",
        "SZTP_SERVER_SYSLOG_FACILITY": "local9",
    }
    for name, text in bad.items():
        with pytest.raises(ValidationError) as raised:
            load_config(None, {"SZTP_SERVER_SYSLOG_URL": "udp://127.0.0.1", name: text})
        assert raised.value.field == name.removeprefix("SZTP_SERVER_").lower()
    with pytest.raises(ValidationError, match="only with a tls:// syslog_url"):
        load_config(
            None,
            {"SZTP_SERVER_SYSLOG_URL": "tcp://h", "SZTP_SERVER_SYSLOG_CA_FILE": "/etc/ssl/x.pem"},
        )
    config = load_config(None, {"SZTP_SERVER_SYSLOG_URL": "tls://[::1]"})
    assert str(parse_syslog_url(config.syslog_url or "")) == "tls://[::1]:6514"
    for url, problem in (
        ("udp://", "names no host"),
        ("tcp://h:99999", "port"),
        ("tcp://h/path", "only a scheme"),
    ):
        with pytest.raises(ValidationError, match=problem):
            parse_syslog_url(url)


def test_every_value_a_device_chose_stays_inside_its_parameter() -> None:
    for hostile in ('"]', "\\", "]\n<13>1 forged", "\x00\x1b[2J", "é"):
        message = format_message(
            (
                0.0,
                "get-bootstrapping-data",
                401,
                hostile,
                False,
                "unknown-serial",
                "::1",
                0.0,
                None,
                None,
                f"hw-model {hostile}",
            ),
            facility=LOCAL3,
            hostname="host name\n",
            procid=os.getpid(),
        ).decode("ascii")
        header, _, rest = message.partition(" [sztp@32473 ")
        assert header.split(" ")[2] == "host?name?"  # no space, no newline in the header
        data, _, sentence = rest.partition('"] ')
        assert "\n" not in message and "\x1b" not in message
        # Inside the element every quote and bracket is escaped; the element ends once.
        unescaped = data.replace("\\\\", "").replace('\\"', "").replace("\\]", "")
        # Eight parameters, each value between two quotes; the last quote ended the partition.
        assert "]" not in unescaped and unescaped.count('"') == 2 * 8 - 1
        assert sentence.endswith("from ::1: 401")

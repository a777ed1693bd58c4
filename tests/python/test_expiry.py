"""What expires soon: vouchers, owner certificates, trust anchors and the server's TLS
certificates, in the fleet status, `sztpctl status` and /metrics."""

from __future__ import annotations

import base64
import os
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from sztp.labpki import write_lab_pki
from sztp.protocol import pki
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp.state.resources import DEVICE
from sztp_server import expiry
from sztp_server.expiry import ExpiryDates
from sztp_testing import run_sztpctl, running_server

NOW = datetime.now(UTC).replace(microsecond=0)


def gauges(page: str, name: str) -> dict[str, float]:
    return {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
        if sample.name == name
    }


def test_what_expires_soon_is_shown_and_counted(tmp_path: Path) -> None:
    lab = write_lab_pki(tmp_path / "pki", [])
    owner_ca = lab.owner_ca.load()
    short_owner = pki.issue_signing_certificate(owner_ca, "short-lived owner", days=10)
    masa = lab.masa.load()

    def voucher(serial: str, days: int) -> str:
        expires = NOW + timedelta(days=days)
        content = create_voucher(serial, owner_ca.certificate, expires_on=expires)
        return base64.b64encode(sign_voucher(content, masa)).decode()

    resources: dict[str, Any] = lab.trust_resources()
    resources["owner"]["short"] = {
        "certificate_chain": pki.certificate_to_pem(short_owner.certificate).decode()
        + lab.owner_ca.certificate.read_text(),
        "private_key": pki.private_key_to_pem(short_owner.private_key).decode(),
    }
    resources["device"] = {
        "SN-SOON": {"voucher": voucher("SN-SOON", 5)},
        "SN-LATER": {"voucher": voucher("SN-LATER", 100)},
        "SN-NONE": {},
    }
    with running_server(tmp_path / "server", lab=lab) as server:
        server.apply(resources)
        expiring = server.client().fleet_status()["expiring"]
        assert expiring["within_days"] == 14
        assert expiring["counts"] == {
            "voucher": 1,
            "owner-certificate": 1,
            "trust-anchor": 0,
            "tls-certificate": 0,
            "ldevid": 0,
        }
        assert [(item["kind"], item["name"], item["expired"]) for item in expiring["soonest"]] == [
            ("voucher", "SN-SOON", False),
            ("owner-certificate", "short", False),
        ]
        soonest = datetime.fromisoformat(expiring["soonest"][0]["not_after"])
        assert soonest == NOW + timedelta(days=5)
        # The calendar: 13 weeks from this one's Monday, each artifact in its week.
        calendar = expiring["calendar"]
        monday = (NOW - timedelta(days=NOW.weekday())).date()
        assert [week["week"] for week in calendar] == [
            (monday + timedelta(weeks=number)).isoformat() for number in range(13)
        ]

        def week_of(days: int) -> int:
            return ((NOW + timedelta(days=days)).date() - monday).days // 7

        placed = {
            (kind, number)
            for number, week in enumerate(calendar)
            for kind, count in week["counts"].items()
            if count
        }
        # SN-LATER's voucher, 100 days off, is past the 13 weeks.
        assert placed == {("voucher", week_of(5)), ("owner-certificate", week_of(10))}
        assert expiring["earlier"] == dict.fromkeys(expiring["counts"], 0)

        shown = run_sztpctl("status", env=server.cli_env(tmp_path)).stdout
        assert "EXPIRES WITHIN 14 DAYS" in shown
        assert "SN-SOON" in shown and "short" in shown and "SN-LATER" not in shown

        page = requests.get(
            f"{server.admin_url}/metrics",
            headers={"Authorization": f"Bearer {server.token}"},
            timeout=10,
        ).text
        assert gauges(page, "sztp_expiring")["voucher"] == 1
        firsts = gauges(page, "sztp_next_expiry_timestamp_seconds")
        assert firsts["voucher"] == (NOW + timedelta(days=5)).timestamp()
        # The device listener's certificate: far off, yet its date is known.
        assert set(firsts) == {"voucher", "owner-certificate", "trust-anchor", "tls-certificate"}

        # A renewed voucher leaves the list at the next revision.
        server.client().put_voucher("SN-SOON", base64.b64decode(voucher("SN-SOON", 200)))
        counts = server.client().fleet_status()["expiring"]["counts"]
        assert counts["voucher"] == 0 and counts["owner-certificate"] == 1


def test_vouchers_already_seen_are_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[str] = []

    def dated(text: str) -> datetime:
        read.append(text)
        return NOW + timedelta(days=len(text))

    monkeypatch.setattr(expiry, "_voucher_expiry", dated)
    dates = ExpiryDates([])

    def snapshot(revision: int, vouchers: dict[str, str]) -> Any:
        devices = {serial: {"voucher": text} for serial, text in vouchers.items()}
        return types.SimpleNamespace(revision=revision, state={DEVICE: devices})

    first = dates.soon(snapshot(1, {"A": "aa", "B": "bbbb"}), NOW, timedelta(days=3))
    assert first.counts["voucher"] == 1 and [e.name for e in first.soonest] == ["A"]
    assert sorted(read) == ["aa", "bbbb"]
    dates.soon(snapshot(1, {"A": "aa", "B": "bbbb"}), NOW, timedelta(days=30))
    assert len(read) == 2  # the same revision: nothing read
    later = dates.soon(snapshot(2, {"A": "aa", "B": "b"}), NOW, timedelta(days=3))
    assert read[2:] == ["b"]  # only the changed voucher
    assert sorted(e.name for e in later.soonest) == ["A", "B"]


def test_issued_ldevids_are_counted_and_read_again_after_a_while() -> None:
    reads: list[datetime] = []
    issued = [("SN-1", NOW + timedelta(days=2)), ("SN-2", NOW + timedelta(days=40))]

    def current() -> list[tuple[str, datetime]]:
        reads.append(NOW)
        return list(issued)

    dates = ExpiryDates([], current)
    empty = types.SimpleNamespace(revision=1, state={})
    soon = dates.soon(empty, NOW, timedelta(days=7))
    assert soon.counts[expiry.LDEVID] == 1 and [e.name for e in soon.soonest] == ["SN-1"]
    assert soon.next_by_kind[expiry.LDEVID] == NOW + timedelta(days=2)
    issued.append(("SN-3", NOW + timedelta(days=1)))
    dates.soon(empty, NOW + timedelta(seconds=30), timedelta(days=7))
    assert len(reads) == 1  # within LDEVID_REFRESH: not read again
    later = dates.soon(empty, NOW + expiry.LDEVID_REFRESH, timedelta(days=7))
    assert len(reads) == 2 and later.counts[expiry.LDEVID] == 2


def test_tls_files_are_read_again_only_when_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = write_lab_pki(tmp_path / "pki", [])
    ca = lab.owner_ca.load()
    served = tmp_path / "server.pem"

    def install(days: int, mtime_ns: int) -> None:
        leaf = pki.issue_signing_certificate(ca, "tls", days=days)
        served.write_bytes(pki.certificate_to_pem(leaf.certificate))
        os.utime(served, ns=(mtime_ns, mtime_ns))

    parsed: list[bytes] = []
    real_load = pki.load_certificates_pem

    def counting_load(data: bytes) -> Any:
        parsed.append(data)
        return real_load(data)

    monkeypatch.setattr(expiry.pki, "load_certificates_pem", counting_load)
    dates = ExpiryDates([("device listener", served)])
    empty = types.SimpleNamespace(revision=1, state={})
    install(5, 1_000_000_000)
    assert dates.soon(empty, NOW, timedelta(days=14)).counts["tls-certificate"] == 1
    assert dates.soon(empty, NOW, timedelta(days=14)).counts["tls-certificate"] == 1
    assert len(parsed) == 1  # unchanged: not parsed again
    install(50, 2_000_000_000)  # renewed: a new modification time
    assert dates.soon(empty, NOW, timedelta(days=14)).counts["tls-certificate"] == 0
    assert len(parsed) == 2
    served.unlink()
    assert dates.soon(empty, NOW, timedelta(days=14)).counts["tls-certificate"] == 0

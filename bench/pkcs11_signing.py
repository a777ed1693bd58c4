"""Benchmark: signing with keys in a PKCS#11 token (SoftHSM2) against the same keys in memory,
in the same run.

The lab owner key and the lab LDevID CA key (both EC P-256) are imported into a fresh SoftHSM2
token and used through the server's own `Pkcs11Keys` (python-pkcs11, one logged-in session,
the lock around each C_Sign) and, in this same process, as file keys loaded into memory. Three
figures each, in alternating rounds so that a change of machine load hits both alike:

- signatures per second: ECDSA-SHA256 over 100 bytes, the key's own `sign`;
- signed renders per second: `bootstrapping_data.build_signed` of a small onboarding
  configuration (conveyed information encoded, CMS SignedData signed, owner certificate
  artifact), the work of one cache miss of `get-bootstrapping-data`;
- LDevIDs issued per second: the builtin issuer certifying a device's CSR (RFC 9646), with the
  CA key in its file or in the token.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import publish, table_section
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sztp.labpki import LabPki, write_lab_pki
from sztp.protocol import bootstrapping_data, pki
from sztp.protocol.conveyed_info import Encoding, OnboardingInformation
from sztp.protocol.voucher import create_voucher, sign_voucher
from sztp_server.config import LdevidIssuer
from sztp_server.ldevid.issuers import BuiltinIssuer, IssueRequest
from sztp_server.pkcs11_keys import Pkcs11Keys

SECTION = "## Keys in a PKCS#11 token: signing throughput"
MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
URI = "pkcs11:token=sztp%20bench;object=owner;id=%01"
CA_URI = "pkcs11:token=sztp%20bench;object=ldevid-ca;id=%02"
DATA = bytes(range(100))


@dataclass(frozen=True)
class Keys:
    owner_in_memory: pki.Credential
    owner_in_token: pki.SignerCredential
    issuer_with_file: BuiltinIssuer
    issuer_with_token: BuiltinIssuer
    voucher: bytes
    request: IssueRequest


def prepare(work: Path) -> Keys:
    """The lab owner and LDevID CA as file keys and as token keys, a voucher for the renders
    and a device's CSR for the issuers."""
    lab = write_lab_pki(work / "pki", [])
    tokens = work / "tokens"
    tokens.mkdir()
    conf = work / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)  # read when the library is first used, below
    softhsm = ["softhsm2-util", "--pin", "1234"]
    for arguments in (
        ["--init-token", "--free", "--label", "sztp bench", "--so-pin", "5678"],
        ["--import", str(lab.owner.private_key), "--token", "sztp bench", "--label", "owner",
         "--id", "01"],
        ["--import", str(lab.ldevid_ca.private_key), "--token", "sztp bench", "--label",
         "ldevid-ca", "--id", "02"],
    ):  # fmt: skip
        subprocess.run([*softhsm, *arguments], check=True, capture_output=True)
    pin = work / "pin"
    pin.write_text("1234\n")
    pin.chmod(0o600)
    token_keys = Pkcs11Keys(MODULE, pin)
    in_memory = lab.owner.load()
    owner_ca = pki.load_certificates_pem(lab.owner_ca.certificate.read_bytes())[0]
    return Keys(
        owner_in_memory=in_memory,
        owner_in_token=token_keys.credential(URI, in_memory.certificates),
        issuer_with_file=BuiltinIssuer(issuer_config(lab, file=True), None),
        issuer_with_token=BuiltinIssuer(issuer_config(lab, file=False), token_keys),
        voucher=sign_voucher(create_voucher("BENCH-1", owner_ca), lab.masa.load()),
        request=device_request(),
    )


def issuer_config(lab: LabPki, *, file: bool) -> LdevidIssuer:
    return LdevidIssuer(
        name="file" if file else "token",
        type="builtin",
        certificate_file=lab.ldevid_ca.certificate,
        private_key_file=lab.ldevid_ca.private_key if file else None,
        private_key_uri=None if file else CA_URI,
    )


def device_request() -> IssueRequest:
    """What the server hands its issuer once a device's CSR passed its checks."""
    key = pki.generate_key("ec-p256")
    subject = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "BENCH-1")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return IssueRequest(serial="BENCH-1", profile="bench", csr=csr)


def rate(action: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        action()
    return count / (time.perf_counter() - started)


def measure(work: Path, count: int, rounds: int) -> dict[str, Any]:
    keys = prepare(work)
    information = OnboardingInformation(
        configuration_handling="merge", configuration=b"hostname bench\n" * 20
    )
    key = keys.owner_in_memory.private_key
    signer = keys.owner_in_token.signer
    cases: dict[str, Callable[[], object]] = {
        "file_sign": lambda: key.sign(DATA, ec.ECDSA(hashes.SHA256())),
        "token_sign": lambda: signer.sign(DATA, hashes.SHA256()),
        "file_render": lambda: bootstrapping_data.build_signed(
            information, Encoding.JSON, keys.owner_in_memory, keys.voucher
        ),
        "token_render": lambda: bootstrapping_data.build_signed(
            information, Encoding.JSON, keys.owner_in_token, keys.voucher
        ),
        "file_issue": lambda: keys.issuer_with_file.issue(keys.request),
        "token_issue": lambda: keys.issuer_with_token.issue(keys.request),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, action in cases.items():
            samples[name].append(rate(action, count))
    return {name: statistics.median(values) for name, values in samples.items()}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown CPU"


def render(args: argparse.Namespace, figures: dict[str, Any], load: tuple[float, float]) -> str:
    def row(label: str, file: float, token: float) -> str:
        return (
            f"| {label} | {file:,.0f}/s ({1e6 / file:.0f} µs) | {token:,.0f}/s "
            f"({1e6 / token:.0f} µs) | {token / file:.2f} |"
        )

    token_cost = 1e6 / figures["token_sign"] - 1e6 / figures["file_sign"]
    render_cost = 1e6 / figures["token_render"] - 1e6 / figures["file_render"]
    issue_cost = 1e6 / figures["token_issue"] - 1e6 / figures["file_issue"]
    where = (
        "Where the time goes: a token signature costs the in-memory signature plus about "
        f"{token_cost:.0f} µs, which is the PKCS#11 round trip: python-pkcs11 building the "
        "call, and SoftHSM2 looking the key object up and decrypting its stored key material "
        "(it keeps private keys encrypted, and decrypts them at each C_SignInit) before its own "
        "OpenSSL ECDSA, plus the raw r||s signature re-encoded as DER here; the lock around "
        "C_Sign is uncontended in this single-threaded run. A render and an issuance each make "
        f"one signature, and measured {render_cost:.0f} and {issue_cost:.0f} µs apart: the "
        "signature's cost, and for the issuance also the certificate written twice (cryptography "
        "signs only with keys it holds, so a stand-in key of the same type writes the "
        "to-be-signed part, which the token then signs); what is beyond that is the variation "
        "of longer rounds on a machine doing other work. The server signs once per profile "
        "and state revision (templated profiles: per device) and serves the rest from its "
        "cache, so the token's cost is paid on cache misses only, and an LDevID once per "
        "device; both are signed in a thread of the device worker when the key is in a token, "
        "so a network HSM's round trip adds to that device's answer and never holds the event "
        "loop the other devices are served from."
    )
    return table_section(
        SECTION,
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"{cpu_model()}, Python {platform.python_version()}), `python bench/pkcs11_signing.py "
        f"--count {args.count} --rounds {args.rounds}`: the lab owner key and LDevID CA key "
        "(EC P-256) in a SoftHSM2 2.6 token through the server's `Pkcs11Keys` (python-pkcs11, "
        "one session), against the same keys loaded from their files, in one process; each "
        "figure the median of "
        f"{args.rounds} rounds of {args.count} operations, file and token rounds alternating. "
        f"The 1-minute load average was {load[0]:.1f} before and {load[1]:.1f} after (other "
        "work on the machine slows every figure down alike).",
        ("operation", "key in memory", "key in SoftHSM2", "token / memory"),
        [
            row("ECDSA P-256 signature", figures["file_sign"], figures["token_sign"]),
            row(
                "signed get-bootstrapping-data render",
                figures["file_render"],
                figures["token_render"],
            ),
            row("LDevID issued (builtin issuer)", figures["file_issue"], figures["token_issue"]),
        ],
        where,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sztp-pkcs11-") as temporary:
        figures = measure(Path(temporary), args.count, args.rounds)
    publish(render(args, figures, (before, os.getloadavg()[0])), args.write, SECTION)


if __name__ == "__main__":
    main()

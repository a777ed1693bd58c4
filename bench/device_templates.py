"""Benchmark: per-device configuration at fleet scale (issue 17).

A templated profile costs twice: when the fleet is written, every device's templates are
rendered (a template that fails for one device refuses the write), and on a device's first
contact its data is rendered and signed for it alone instead of once per profile. Measured
against the same fleet with the same configuration as a plain profile, in the same run:

- the render check alone, in this process: `render_failures` over `--devices` devices;
- applying the fleet (`--devices` devices with activation codes and vouchers) through one
  `POST /api/v1/state` to a fresh sztp-server;
- first contact (each request a different device's first, on a new connection, 10 at a time,
  wrk as in bench/first_contact.py) and repeat requests of the devices first contact reached
  (50 kept-alive connections).

The template is a realistic day-0 configuration: host name and domain from variables, a loop
over the device's VLANs, its model and site.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    lab_fleet,
    lab_vouchers,
    post_state,
    publish,
    require_wrk,
    running_server,
    table_section,
)
from first_contact import FIRST_CONNECTIONS, REPEAT_CONNECTIONS, Load, basic, run_wrk

from sztp.labpki import write_lab_pki
from sztp.passwords import generate_activation_code
from sztp.state.device_templates import render_failures
from sztp.state.resources import normalize_spec

SECTION = "## Per-device configuration: templates at fleet scale"
TEMPLATE = (
    "hostname {{ vars.hostname }}.{{ vars.domain }}\n"
    "! {{ model }} at {{ site }}, serial number {{ serial }}\n"
    "{% for vlan in vars.vlans %}vlan {{ vlan }}\n  name v{{ vlan }}-{{ site }}\n{% endfor %}"
    "ntp server {{ vars.ntp | default('pool.ntp.org') }}\n"
)
PLAIN = "hostname dpu.lab.example\n! DPU-LAB-1\nvlan 10\n  name v10\nntp server pool.ntp.org\n"
WHERE_THE_TIME_GOES = (
    "Where the time goes: rendering one device's template takes the microseconds above (Jinja2 "
    "with the sandbox's hooks, the loop's budget and the output bound), so the write check "
    "adds a few seconds to an apply of 100,000 devices that their vouchers and normalising "
    "dominate. On first contact a templated profile renders and signs for each device what a "
    "plain profile signs once and then serves from its cache. A signed render costs about "
    "80 µs in-process since the SignedData is written as DER (the certificates, signer "
    "identifier and algorithms encoded once per signer, the signed attributes per message; "
    "building it with asn1crypto cost 0.75 ms), of which the ECDSA signature is a third; "
    "first contact pays it on top of the connection and the activation-code check. Repeats "
    "are served from the per-device cache (`response_cache_bytes`) as a plain profile's are."
)


def device_spec(number: int, voucher: str, code: str, profile: str) -> dict[str, Any]:
    return {
        "profile": profile,
        "model": "DPU-LAB-1",
        "site": f"site-{number % 40}",
        "vars": {"hostname": f"dpu-{number:06d}", "vlans": [10, 20 + number % 7, 300]},
        "voucher": voucher,
        "activation_code": code,
    }


def measure(work: Path, count: int, seconds: int) -> dict[str, Any]:
    lab = write_lab_pki(work / "pki", [])
    vouchers = lab_vouchers(lab, (f"TPL-{number:06d}" for number in range(count)))
    codes = {serial: generate_activation_code() for serial in vouchers}
    figures: dict[str, Any] = {}
    profile = {"templating": "jinja2", "vars": {"domain": "lab.example"}, "configuration": TEMPLATE}
    state = {
        "profile": {"day0": normalize_spec("profile", "day0", {"type": "onboarding", **profile})},
        "device": {
            serial: normalize_spec(
                "device",
                serial,
                {
                    key: value
                    for key, value in device_spec(number, "", "", "day0").items()
                    if key not in ("voucher", "activation_code")
                },
            )
            for number, serial in enumerate(vouchers)
        },
    }
    started = time.perf_counter()
    failures = list(render_failures(state))
    figures["check_seconds"] = time.perf_counter() - started
    if failures:
        sys.exit(f"the bench's template does not render: {failures[0]}")
    for name, fields in (("plain", {"configuration": PLAIN}), ("templated", profile)):
        devices = {
            serial: device_spec(number, voucher, codes[serial], "day0")
            for number, (serial, voucher) in enumerate(vouchers.items())
        }
        (work / name).mkdir()
        # A whole fleet in one write: 100,000 devices with vouchers pass the default bound.
        with running_server(work / name, {"http": {}}, max_bulk_body_bytes=1024**3) as server:
            figures[f"{name}_apply"] = post_state(
                server.admin_url, server.token, lab_fleet(lab, devices, **fields)
            )
            credentials = [basic(serial, code) for serial, code in codes.items()]
            url = server.urls["http"]
            figures[f"{name}_first"] = run_wrk(
                url, credentials, seconds, FIRST_CONNECTIONS, first=True, work=work
            )
            # Repeats of the devices first contact reached, in the same order.
            contacted = credentials[: figures[f"{name}_first"].requests]
            figures[f"{name}_repeat"] = run_wrk(
                url, contacted, seconds, REPEAT_CONNECTIONS, first=False, work=work
            )
    return figures


def render(args: argparse.Namespace, figures: dict[str, Any]) -> str:
    rows = []
    for name, label in (("plain", "plain profile"), ("templated", "templated profile")):
        first: Load = figures[f"{name}_first"]
        repeat: Load = figures[f"{name}_repeat"]
        rows.append(
            f"| {label} | {figures[f'{name}_apply']:.1f} s | {first.cell()} | {repeat.cell()} |"
        )
    per_device = figures["check_seconds"] / args.devices * 1e6
    share = figures["templated_first"].rate / figures["plain_first"].rate
    return table_section(
        SECTION,
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.node()} ({os.cpu_count()} cores, "
        f"Python {platform.python_version()}), `python bench/device_templates.py --devices "
        f"{args.devices} --seconds {args.seconds}`: {args.devices} devices, each with its own "
        "variables (host name, three VLANs), model and site, an activation code and a voucher, "
        "one onboarding profile either plain or templated (the same configuration rendered per "
        "device), every response signed; one sztp-server process on SQLite, plain HTTP, wrk on "
        "the same machine. The write check alone (`render_failures`, every device's template "
        f"rendered in this process): {figures['check_seconds']:.1f} s, {per_device:.0f} µs a "
        "device. Apply: one `POST /api/v1/state` of the whole fleet to a fresh server, the "
        "check included for the templated profile. First contact with the templated profile: "
        f"{share:.0%} of the plain profile's rate.",
        ("profile", "apply", "first contact", "repeat"),
        rows,
        WHERE_THE_TIME_GOES,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--write", type=Path, help="update this RESULTS.md")
    args = parser.parse_args()
    require_wrk()
    with tempfile.TemporaryDirectory(prefix="sztp-templates-") as temporary:
        figures = measure(Path(temporary), args.devices, args.seconds)
    publish(render(args, figures), args.write, SECTION)


if __name__ == "__main__":
    main()

"""`sztpctl simulate run`: play an RFC 8572 device against real bootstrap servers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .loading import SerialOption, parse_hex
from .output import read_bytes

app = typer.Typer(help="Simulate an SZTP device (RFC 8572 client).", no_args_is_help=True)

_OPTION_FLAG = "--dhcp-option-hex"
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_option_payload(text: str) -> bytes:
    """The option 143/136 payload as given to --dhcp-option-hex: plain hex (`0016…`, as
    busybox udhcpc hands `opt143` to its script) or colon-separated octets. dhclient writes
    the option into its lease file with the leading zero of each octet dropped
    (`0:16:68:…`), so colon-separated octets are read one by one: removing the colons
    instead would shift every following octet and turn the URIs into garbage.
    """
    if ":" not in text:
        return parse_hex(text, _OPTION_FLAG)
    octets = text.strip().split(":")
    for index, octet in enumerate(octets):
        if not 1 <= len(octet) <= 2 or not set(octet) <= _HEX_DIGITS:
            raise typer.BadParameter(
                f"octet {index} ({octet!r}) is not one or two hex digits", param_hint=_OPTION_FLAG
            )
    return bytes(int(octet, 16) for octet in octets)


@app.command("run")
def run(
    serial: SerialOption,
    idevid_cert: Annotated[
        Path, typer.Option(help="PEM IDevID certificate (TLS client certificate), chain after it.")
    ],
    idevid_key: Annotated[Path, typer.Option(help="PEM private key of the IDevID.")],
    trust_anchor: Annotated[
        list[Path],
        typer.Option(help="PEM manufacturer trust anchor(s) for ownership vouchers; repeatable."),
    ],
    uri: Annotated[
        list[str] | None,
        typer.Option(help="Bootstrap server https://host[:port]; repeatable, tried in order."),
    ] = None,
    dhcp_option_hex: Annotated[
        str | None,
        typer.Option(
            help="DHCP option 143/136 payload as hex (instead of --uri): 0016… or the "
            "colon-separated octets of a dhclient lease (0:16:68:…)."
        ),
    ] = None,
    dns: Annotated[
        bool,
        typer.Option(
            "--dns",
            help="Look the device up in DNS too (RFC 8572 §4.2), after --uri/--dhcp-option-hex: "
            "TXT <serial>._sztp then SRV _sztp._tcp, each over mDNS then in each domain.",
        ),
    ] = False,
    dns_domain: Annotated[
        list[str] | None,
        typer.Option(
            help="Domain to look in (implies --dns); repeatable, in order. Default: the "
            "search domains of /etc/resolv.conf."
        ),
    ] = None,
    nameserver: Annotated[
        list[str] | None,
        typer.Option(
            help="Nameserver address[:port] ([v6]:port) for the DNS lookup (implies --dns); "
            "repeatable. Default: those of /etc/resolv.conf."
        ),
    ] = None,
    mdns: Annotated[
        bool, typer.Option(help="With DNS: ask over mDNS (.local) before unicast DNS.")
    ] = True,
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="File holding the HTTP Basic password (user = serial number); sent only to "
            "servers verified by --server-ca or a signed redirect's trust anchor."
        ),
    ] = None,
    server_ca: Annotated[
        Path | None,
        typer.Option(
            help="PEM TLS anchors for bootstrap servers; without it servers are untrusted."
        ),
    ] = None,
    file_server_ca: Annotated[
        Path | None,
        typer.Option(help="PEM TLS anchors for image downloads (default: system CAs)."),
    ] = None,
    work_dir: Annotated[
        Path, typer.Option(help="Where the device stores image, scripts and configuration.")
    ] = Path("sztp-device"),
    run_scripts: Annotated[
        bool,
        typer.Option(
            "--run-scripts", help="Execute pre/post-configuration scripts (in the work dir)."
        ),
    ] = False,
    hw_model: Annotated[str | None, typer.Option(help="Hardware model sent to the server.")] = None,
    os_name: Annotated[str | None, typer.Option(help="OS name the device runs now.")] = None,
    os_version: Annotated[str | None, typer.Option(help="OS version the device runs now.")] = None,
    nonce: Annotated[
        bool, typer.Option("--nonce", help="Send a fresh nonce and require it in the voucher.")
    ] = False,
    xml: Annotated[bool, typer.Option("--xml", help="Speak RESTCONF XML instead of JSON.")] = False,
    ldevid_key: Annotated[
        list[str] | None,
        typer.Option(
            metavar="<algorithm>",
            help="Offer trusted servers to make an LDevID key with this algorithm (RFC 9646): "
            "ec-p256, ec-p384, ec-p521, rsa or ed25519; repeatable, in order of preference.",
        ),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="HTTP timeout in seconds.")] = 30.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the outcome.")] = False,
) -> None:
    """Bootstrap a simulated device: discover, verify voucher and signature, download and
    hash-check the image, write scripts and configuration, report progress.

    Exit status 0 when the device reached bootstrap-complete, 1 otherwise.

    Example:

        sztpctl simulate run --serial SN-0001 --uri https://127.0.0.1:8443
        --idevid-cert lab-pki/devices/SN-0001/idevid-chain.pem
        --idevid-key lab-pki/devices/SN-0001/idevid.key
        --trust-anchor lab-pki/manufacturer/ca.pem --server-ca lab-pki/tls/ca.pem
    """
    from cryptography import x509
    from rich.console import Console
    from rich.markup import escape

    from sztp.dns_discovery import DnsSettings
    from sztp.errors import PkiError, SimulationError
    from sztp.protocol import pki, restconf
    from sztp.protocol.csr import KEY_ALGORITHMS
    from sztp.simulator import DeviceIdentity, SimulatorConfig, simulate

    for algorithm in ldevid_key or ():
        if algorithm not in KEY_ALGORITHMS:
            raise typer.BadParameter(
                f"{algorithm!r} is not one of {', '.join(KEY_ALGORITHMS)}",
                param_hint="--ldevid-key",
            )
    looks_in_dns = dns or bool(dns_domain) or bool(nameserver)
    if uri and dhcp_option_hex is not None:
        raise typer.BadParameter("give --uri (repeatable) or --dhcp-option-hex, not both")
    if not uri and dhcp_option_hex is None and not looks_in_dns:
        raise typer.BadParameter("give --uri (repeatable), --dhcp-option-hex or --dns")
    password = None
    if password_file is not None:
        password = read_bytes(password_file).decode("utf-8", "replace").strip("\r\n")
        if not password:
            raise SimulationError(f"{password_file} holds no password")
    anchors: list[x509.Certificate] = []
    for path in trust_anchor:
        try:
            anchors.extend(pki.load_certificates_pem(read_bytes(path)))
        except PkiError as exc:
            raise SimulationError(f"{path}: {exc}") from None
    config = SimulatorConfig(
        bootstrap_uris=tuple(uri or ()),
        dhcp_option=parse_option_payload(dhcp_option_hex) if dhcp_option_hex else None,
        dns=DnsSettings(
            domains=tuple(dns_domain) if dns_domain else None,
            nameservers=tuple(nameserver or ()),
            mdns=mdns,
        )
        if looks_in_dns
        else None,
        trust_anchors=tuple(anchors),
        server_ca=server_ca,
        file_server_ca=file_server_ca,
        work_dir=work_dir,
        run_scripts=run_scripts,
        wire_format=restconf.WireFormat.XML if xml else restconf.WireFormat.JSON,
        send_nonce=nonce,
        timeout=timeout,
        ldevid_keys=tuple(ldevid_key or ()),
    )
    identity = DeviceIdentity(
        serial_number=serial,
        idevid_certificate=idevid_cert,
        idevid_key=idevid_key,
        password=password,
        hw_model=hw_model,
        os_name=os_name,
        os_version=os_version,
    )
    # Off a terminal (CI logs), keep each step on one line instead of wrapping at 80 columns.
    console = Console(highlight=False, soft_wrap=True)
    errors = Console(stderr=True, highlight=False, soft_wrap=True)

    def show(message: str) -> None:
        if not quiet:
            console.print(f"[dim]·[/dim] {escape(message)}")

    result = simulate(config, identity, log=show)
    running = f"{result.os_name or '?'} {result.os_version or '?'}"
    if result.succeeded:
        console.print(
            f"[green]bootstrap complete[/green]: {escape(serial)} runs {escape(running)} "
            f"after {result.reboots} reboot(s); {len(result.reports)} progress report(s) sent"
        )
        if result.ldevid is not None:
            console.print(f"LDevID: {escape(str(result.ldevid))} (key beside it)")
        return
    errors.print(f"[red]bootstrap failed[/red]: {escape(result.reason or 'unknown reason')}")
    raise typer.Exit(1)

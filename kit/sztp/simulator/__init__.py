"""A simulated SZTP device: a real RFC 8572 client (the network and file-system edge).

`simulate()` plays the device procedure of RFC 8572 §5 against real bootstrap servers:

1. Bootstrap-server URIs come from the configuration or from a DHCP option 143/136 payload
   (RFC 8572 §8), tried in order (§5.2). With `dns`, the sources DNS offers come after them
   (§4.2, `sztp.dns_discovery`): bootstrapping data from TXT records, verified as the answer of
   a server the device does not trust (step 3), then the bootstrap servers of SRV records.
2. For each server (§5.3): TLS with the IDevID as client certificate (its key in a file, or held
   by a TPM 2.0 and used through OpenSSL's tpm2 provider: `KeyStore`). The server is *trusted*
   when its TLS certificate verifies against trust anchors the device holds (`server_ca`, or a
   trust anchor from trusted redirect information); otherwise the connection is provisional and
   the device sends `signed-data-preferred`. An HTTP Basic password, when configured, goes only
   to a trusted server: presenting the IDevID certificate discloses nothing reusable, but a
   password sent over unverified TLS (or to a server named by an unsigned redirect, §9)
   would be handed to whoever answers. The RESTCONF root comes from `/.well-known/host-meta`
   (`/restconf` when that answers 404), then `get-bootstrapping-data` is called.
3. The answer is verified (§5.4): voucher → owner certificate → signature, or accepted
   unsigned only from a trusted server (unsigned redirects are always usable, provisionally).
   Any failure abandons this server and the device moves on to the next source.
4. Redirect information (§5.5): its bootstrap servers are tried in order, up to a bounded
   depth. A `trust-anchor` is honoured only when the redirect came from a trusted source
   (signed, or from a trusted server); the redirected server must then verify against it.
5. Onboarding information (§5.6): boot image → pre-configuration script → configuration →
   post-configuration script, then `bootstrap-complete` with the device's SSH host keys.
   A boot-image mismatch downloads the image (download URIs in order, SHA-256 checked),
   "installs" it into the work directory, reports `boot-image-installed-rebooting` and
   "reboots": the whole procedure starts again with the new OS version in effect.

Progress reports (§5.6 and the `reporting-level` leaf of the bootstrap-server module) go
only to a *trusted* bootstrap server that supplied the onboarding information: a device never
reports to a server it does not trust, even when the data it got there was signed, and never
while processing redirect information. With `reporting-level` `minimal` (the default) the
device sends `bootstrap-initiated` and the terminating report (`bootstrap-complete`,
`boot-image-installed-rebooting` or an `*-error`); with `verbose` it sends every step. A trusted
server whose data fails verification gets `bootstrap-initiated` + `parsing-error`.
Every step is recorded in the result, with whether it was reported.

Every response body is read as it streams and abandoned once it exceeds the limit for its kind
(`restconf.MAX_OUTPUT_SIZE` for bootstrapping data, `MAX_HOST_META_SIZE`, `MAX_ERRORS_SIZE`), so a
hostile server cannot make the device buffer an endless answer.

Scripts are written to the work directory and executed only with `run_scripts=True` (in a
sandbox directory under it, with a timeout): exit status 0 is `*-complete`,
`WARNING_EXIT_STATUS` (10) a `*-warning` then `*-complete`, anything else `*-error`. The
IDevID key and the Basic password are never logged, nor put into reprs, exceptions or the
scripts' environment.

Where each part lives in this package:

- `model.py`: what `simulate()` takes and returns (`DeviceIdentity`, `SimulatorConfig`,
  `SimulationResult` and its `Step`s).
- `checks.py`: what is refused before the device starts (`bootstrap_uris()`, identity and
  configuration checks).
- `procedure.py`: steps 1 to 4 and the reboot loop (`Device`): servers in order, trust
  decisions, verification, redirects.
- `onboarding.py`: step 5, the onboarding stages and `bootstrap-complete`.
- `platform.py`: what the device does with what it accepted (`DevicePlatform`: install an
  image, run a script, commit configuration, SSH host keys, reboot) and how a script's exit
  status reads; the simulator's `WorkDirectoryPlatform` (the agent brings its own).
- `reporting.py`: which steps are reported to which server.
- `transport.py`: HTTP: the TLS session, host-meta, RPCs, bounded replies, error reasons.
- `local_names.py`: `.local` hosts reached at the addresses mDNS gives, TLS checking the name.
- `workdir.py`: the files the device writes: images, scripts, configuration, host key, and
  redirect trust anchors.
- `verdicts.py`: how a step ends (`Verdict`, `Abandon`, `StageFailed`) and how reasons are worded.
"""

from __future__ import annotations

from .. import dns_discovery
from .checks import bootstrap_uris, check_config, check_identity
from .model import (
    DEFAULT_MAX_IMAGE_SIZE,
    KEY_STORES,
    DeviceIdentity,
    Download,
    KeyStore,
    Log,
    Outcome,
    ServerCheck,
    SimulationResult,
    SimulatorConfig,
    Step,
)
from .platform import (
    WARNING_EXIT_STATUS,
    ActionResult,
    DevicePlatform,
    PlatformError,
    generate_ssh_host_key,
)
from .procedure import NONCE_SIZE, Device
from .transport import DEFAULT_RESTCONF_ROOT, HOST_META_PATH

__all__ = [
    "DEFAULT_MAX_IMAGE_SIZE",
    "DEFAULT_RESTCONF_ROOT",
    "HOST_META_PATH",
    "KEY_STORES",
    "NONCE_SIZE",
    "WARNING_EXIT_STATUS",
    "ActionResult",
    "Device",
    "DeviceIdentity",
    "DevicePlatform",
    "Download",
    "KeyStore",
    "Log",
    "Outcome",
    "PlatformError",
    "ServerCheck",
    "SimulationResult",
    "SimulatorConfig",
    "Step",
    "bootstrap_uris",
    "generate_ssh_host_key",
    "simulate",
]


def simulate(
    config: SimulatorConfig, identity: DeviceIdentity, *, log: Log | None = None
) -> SimulationResult:
    """Run the device procedure once (plus reboots after an image install); never raises
    for what servers do, only `SimulationError` for an unusable configuration or identity."""
    uris = bootstrap_uris(config)
    check_identity(identity)
    check_config(config)
    log = log or _ignore
    found = (
        dns_discovery.discover(identity.serial_number, config.dns, log=log)
        if config.dns is not None
        else []
    )
    return Device(config, identity, log).run(uris, found)


def _ignore(_message: str) -> None:
    return None

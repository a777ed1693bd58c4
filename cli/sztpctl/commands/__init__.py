"""The `sztpctl` command line (Typer).

Only Typer is imported at start-up; each command imports the kit (cryptography and friends)
when it runs, which keeps `sztpctl --help` fast.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from sztp import __version__

from . import (
    audit,
    bootstrap_data,
    config,
    declarative,
    device,
    dhcp,
    dns,
    events,
    import_sztpd,
    issuer,
    job,
    nouns,
    pki,
    remote,
    simulate,
    validate,
    voucher,
    wait,
    watch,
    webhooks,
)
from .output import ExitStatus, exit_statuses_help, fail_with
from .remote import ContextOption, ServerOption, TokenFileOption

app = typer.Typer(
    name="sztpctl",
    help="Secure zero touch provisioning (RFC 8572): bootstrap data, vouchers, DHCP and lab PKI."
    "\n\nThe connection options (--context, --server, --token-file) go before the command, "
    "e.g. `sztpctl --context lab status`; without them, the SZTP_* variables or the current "
    "context of the config file name the server."
    f"\n\n{exit_statuses_help(ExitStatus)}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# apply, diff, export, status and wait are top-level verbs, as in kubectl.
app.add_typer(declarative.app)
app.add_typer(validate.app)
app.add_typer(watch.app)
app.add_typer(wait.app)
app.add_typer(events.app)
app.add_typer(webhooks.app)
app.add_typer(import_sztpd.app)
# The command groups, by name, in the order `sztpctl --help` lists them.
GROUPS = {
    "device": device.app,
    "audit": audit.app,
    "job": job.app,
    "issuer": issuer.app,
    "profile": nouns.profile_app,
    "image": nouns.image_app,
    "trust-anchor": nouns.trust_anchor_app,
    "owner": nouns.owner_app,
    "config": config.app,
    "pki": pki.app,
    "voucher": voucher.app,
    "bootstrap-data": bootstrap_data.app,
    "dhcp": dhcp.app,
    "dns": dns.app,
    "simulate": simulate.app,
}
for name, group in GROUPS.items():
    app.add_typer(group, name=name)

_debug = False


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"sztpctl {__version__}")
        raise typer.Exit


@app.callback()
def _global_options(
    context: ContextOption = None,
    server: ServerOption = None,
    token_file: TokenFileOption = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:

    global _debug
    _debug = debug
    remote.given_connection = remote.ConnectionOptions(context, server, token_file)


def main() -> None:
    """Console-script entry: errors become one clear line and a non-zero exit."""
    try:
        app()
    except SystemExit:
        raise
    except Exception as exc:  # the last line of defence: no traceback unless --debug
        if _debug:
            raise
        fail_with(exc)
    finally:
        # The process ends here: the collection at exit need not walk what is still alive
        # (after a large `apply`, a whole fleet's objects).
        import gc

        gc.freeze()
    sys.exit(0)

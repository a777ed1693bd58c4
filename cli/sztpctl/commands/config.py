"""`sztpctl config`: contexts (server, token, CA) in the user's config file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Contexts: which server to talk to, and how.", no_args_is_help=True)


@app.command("get-contexts")
def get_contexts() -> None:
    """List the contexts; the current one is marked with '*'. Tokens are never shown."""
    from sztp.config import config_path, load_config

    config = load_config(config_path())
    for name, settings in sorted(config["contexts"].items()):
        marker = "*" if name == config["current_context"] else " "
        typer.echo(f"{marker} {name}\t{settings.get('server', '(no server)')}")


@app.command("use-context")
def use_context(name: Annotated[str, typer.Argument(help="Context to make current.")]) -> None:
    """Make NAME the current context."""
    from sztp.config import ConfigError, config_path, load_config, save_config

    path = config_path()
    config = load_config(path)
    if name not in config["contexts"]:
        raise ConfigError(f"no context named {name!r} in {path}")
    save_config(path, {**config, "current_context": name})
    typer.echo(f"current context: {name}")


@app.command("set-context")
def set_context(
    name: Annotated[str, typer.Argument(help="Context to create or change.")],
    server: Annotated[str | None, typer.Option(help="Admin API URL.")] = None,
    token_file: Annotated[
        Path | None, typer.Option(help="File holding the API token (kept out of the config).")
    ] = None,
    ca_bundle: Annotated[
        Path | None, typer.Option(help="PEM CA bundle for the server's TLS certificate.")
    ] = None,
    verify: Annotated[
        bool | None, typer.Option("--verify/--no-verify", help="Verify the TLS certificate.")
    ] = None,
    allow_plain_http: Annotated[
        bool | None,
        typer.Option(
            "--allow-plain-http/--no-allow-plain-http",
            help="Allow an http:// server that is not loopback: the token then crosses the "
            "network unencrypted (env SZTP_ALLOW_PLAIN_HTTP=1 does the same for any context).",
        ),
    ] = None,
    use: Annotated[bool, typer.Option("--use", help="Also make it the current context.")] = False,
) -> None:
    """Create or change a context; options not given are kept. The file is written 0600.

    Example:

        sztpctl config set-context lab --server https://sztp.lab:7080
        --token-file ~/.config/sztp/lab.token --ca-bundle lab-pki/tls/ca.pem --use
    """
    from sztp.config import config_path, load_config, save_config

    path = config_path()
    config = load_config(path)
    settings = dict(config["contexts"].get(name, {}))
    changes = {
        "server": server,
        # Absolute paths: the config file lives elsewhere than the working directory.
        "token_file": str(token_file.expanduser().resolve()) if token_file else None,
        "ca_bundle": str(ca_bundle.expanduser().resolve()) if ca_bundle else None,
        "verify": verify,
        "allow_plain_http": allow_plain_http,
    }
    settings.update({key: value for key, value in changes.items() if value is not None})
    if token_file is not None:
        settings.pop("token", None)
    if "server" not in settings:
        raise typer.BadParameter(f"context {name!r} needs --server", param_hint="--server")
    contexts = {**config["contexts"], name: settings}
    current = name if use or config["current_context"] is None else config["current_context"]
    save_config(path, {"current_context": current, "contexts": contexts})
    typer.echo(f"context {name} saved to {path}" + (" (current)" if current == name else ""))

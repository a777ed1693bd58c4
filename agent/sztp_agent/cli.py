"""`ztp`, the agent's command: see where bootstrapping stands, turn it on or off, run a session.

    ztp status [--verbose] [-o text|json]   where the agent stands (the status file)
    ztp enable | ztp disable                 allow or stop bootstrapping (disable: SIGTERM to a
                                             running session)
    ztp run [--force]                        a new session now, in the foreground
    ztp logs [-n LINES]                      the agent's log
    ztp check [--config-only]                check the configuration and the files it names
    ztp boot                                 what the systemd unit runs at boot
    ztp systemd-unit                         print the unit file for this installation

Exit status: 0 done (or nothing to do), 1 the session failed or was aborted, 2 a usage or
configuration error, 3 another session is running. The standard library only: the agent runs
on devices, where every installed byte counts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from importlib.resources import files
from pathlib import Path

from . import __version__
from .agent_log import AgentLog, last_lines, one_line
from .config import DEFAULT_CONFIG, AgentConfig, ConfigError, load_config
from .session import Session
from .session_lock import SessionBusy, SessionLock
from .status import RunState, Status, StatusFile

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 3
STOP_WAIT_SECONDS = 30.0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.command == "systemd-unit":
        print(systemd_unit(f"{sys.executable} -m sztp_agent"), end="")
        return 0
    try:
        config = load_config(arguments.config)
    except ConfigError as exc:
        print(f"ztp: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return int(COMMANDS[arguments.command](config, arguments))
    except SessionBusy as exc:
        print(f"ztp: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except OSError as exc:
        print(f"ztp: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ztp",
        description="Secure zero touch provisioning (RFC 8572) on this device.",
    )
    parser.add_argument("--version", action="version", version=f"sztp-agent {__version__}")
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get("SZTP_AGENT_CONFIG", DEFAULT_CONFIG)),
        help=f"the agent's configuration file (default {DEFAULT_CONFIG}, or $SZTP_AGENT_CONFIG)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = commands.add_parser("status", help="where bootstrapping stands")
    status.add_argument(
        "-v", "--verbose", action="store_true", help="every step, server and problem"
    )
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    commands.add_parser("enable", help="allow bootstrapping (at boot and by ztp run)")
    commands.add_parser("disable", help="stop bootstrapping; a running session gets SIGTERM")
    run = commands.add_parser("run", help="run a new session now, in the foreground")
    run.add_argument(
        "--force", action="store_true", help="even when the device is already bootstrapped"
    )
    logs = commands.add_parser("logs", help="the agent's log, newest last")
    logs.add_argument("-n", "--lines", type=int, default=50, help="how many lines (default 50)")
    commands.add_parser("boot", help="what the systemd unit runs: resume or start if needed")
    check = commands.add_parser(
        "check", help="check the configuration and the files it names, contacting no one"
    )
    check.add_argument(
        "--config-only",
        action="store_true",
        help="the configuration file alone (before the files it names are in place)",
    )
    commands.add_parser("systemd-unit", help="print the systemd unit for this installation")
    return parser


# ---- commands


def status_command(config: AgentConfig, arguments: argparse.Namespace) -> int:
    status_file = StatusFile(config.state_dir)
    status = status_file.read()
    running = SessionLock(config.state_dir).holder()
    if arguments.output == "json":
        document = {
            **status.to_json(),
            "enabled": status_file.enabled,
            "session_pid": running,
        }
        if not arguments.verbose:
            for detail in (
                "steps",
                "discovered",
                "servers_contacted",
                "server_checks",
                "downloads",
                "completed_on",
            ):
                document.pop(detail)
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    print(
        render_status(status, enabled=status_file.enabled, pid=running, verbose=arguments.verbose)
    )
    return 0


def render_status(status: Status, *, enabled: bool, pid: int | None, verbose: bool) -> str:
    """`ztp status` as text: a summary, and with `verbose` the servers, steps and problems."""
    state = status.state.value
    if pid is not None and status.state is not RunState.RUNNING:
        state += " (a session is starting)"
    lines = [
        f"state:        {state}",
        f"enabled:      {'yes' if enabled else 'no (ztp enable)'}",
        f"agent:        sztp-agent {status.agent_version or __version__}",
    ]
    if status.session:
        lines += [
            f"session:      {status.session}, attempt {status.attempt} of {status.attempts}, "
            f"reboots {status.reboots}",
            f"started:      {status.started_at}",
        ]
    if status.finished_at:
        lines.append(f"finished:     {status.finished_at}")
    if status.next_attempt_at:
        lines.append(f"next attempt: {status.next_attempt_at}")
    if status.os_name or status.os_version:
        lines.append(f"running:      {status.os_name or '?'} {status.os_version or '?'}")
    if status.steps:
        last = status.steps[-1]
        lines.append(f"last step:    {last.progress_type}: {last.message}")
    if status.reason:
        lines.append(f"reason:       {status.reason}")
    if not verbose:
        return _terminal_safe(lines)
    lines.append("bootstrap servers:")
    for found in status.discovered or []:
        where = found.source
        if found.interface:
            where += f" on {found.interface} via {found.client}"
        if found.dhcp_server:
            where += f", DHCP server {found.dhcp_server}"
        if found.network:
            where += f", network {found.network}"
        lines.append(f"  {found.uri or 'bootstrapping data'}  ({where})")
    if status.server_checks:
        lines.append("trust:")
        for check in status.server_checks:
            tls = {True: "TLS trusted", False: "TLS not trusted (provisional)", None: "-"}
            lines.append(f"  {check.uri}  {tls[check.server_trusted]}; {check.data}")
    if status.downloads:
        lines.append("downloads:")
        lines += [f"  {download.uri}  {download.outcome}" for download in status.downloads]
    lines.append("steps:")
    for step in status.steps:
        marker = "reported" if step.reported else "not reported"
        lines.append(f"  {step.at}  {step.progress_type}  {step.message}  [{marker}]")
    if status.problems:
        lines.append("problems:")
        lines += [f"  {problem}" for problem in status.problems]
    return _terminal_safe(lines)


def _terminal_safe(lines: list[str]) -> str:
    """The lines, each with its control characters escaped: messages come from servers and
    scripts, and an escape sequence must not reach the operator's terminal."""
    return "\n".join(one_line(line) for line in lines)


def enable_command(config: AgentConfig, _arguments: argparse.Namespace) -> int:
    StatusFile(config.state_dir).set_enabled(True)
    print("bootstrapping enabled")
    return 0


def disable_command(config: AgentConfig, _arguments: argparse.Namespace) -> int:
    StatusFile(config.state_dir).set_enabled(False)
    lock = SessionLock(config.state_dir)
    pid = lock.holder()
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while pid == 0 and time.monotonic() < deadline:  # a session that has not written its id
        time.sleep(0.05)
        pid = lock.holder()
    if not pid:
        print("bootstrapping disabled")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while lock.holder() is not None:
        if time.monotonic() > deadline:
            print(f"ztp: the session (process {pid}) did not stop", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(0.1)
    print(f"bootstrapping disabled; the running session (process {pid}) was stopped")
    return 0


def run_command(config: AgentConfig, arguments: argparse.Namespace) -> int:
    status_file = StatusFile(config.state_dir)
    if not status_file.enabled:
        print("ztp: bootstrapping is disabled: ztp enable first", file=sys.stderr)
        return EXIT_FAILED
    if status_file.read().state is RunState.COMPLETE and not arguments.force:
        print("already bootstrapped; ztp run --force bootstraps again")
        return 0
    return _exit_status(Session(config, AgentLog(config.state_dir)).run(new=True).state)


def boot_command(config: AgentConfig, _arguments: argparse.Namespace) -> int:
    log = AgentLog(config.state_dir)
    session = Session(config, log)
    idle = session.wanted_at_boot()
    if idle is not None:
        log(f"nothing to do: {idle}")
        return 0
    return _exit_status(session.run(new=False).state)


def check_command(config: AgentConfig, arguments: argparse.Namespace) -> int:
    if not arguments.config_only:
        problems = Session(config, _say).preflight()
        for problem in problems:
            print(f"ztp: {problem}", file=sys.stderr)
        if problems:
            return EXIT_USAGE
    print(f"{arguments.config}: OK")
    return 0


def _say(message: str) -> None:
    print(f"ztp: {one_line(message)}", file=sys.stderr)


def logs_command(config: AgentConfig, arguments: argparse.Namespace) -> int:
    if arguments.lines < 1:
        print("ztp: --lines must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    for line in last_lines(config.state_dir, arguments.lines):
        print(line)
    return 0


COMMANDS = {
    "status": status_command,
    "enable": enable_command,
    "disable": disable_command,
    "run": run_command,
    "boot": boot_command,
    "logs": logs_command,
    "check": check_command,
}


def _exit_status(state: RunState) -> int:
    return 0 if state in (RunState.COMPLETE, RunState.REBOOTING) else EXIT_FAILED


def systemd_unit(ztp: str) -> str:
    """The shipped unit file, its ExecStart running `ztp` as this installation has it (the
    Python of the agent's virtual environment, whatever the PATH of the unit)."""
    template = files("sztp_agent").joinpath("data/sztp-agent.service").read_text(encoding="utf-8")
    return template.replace("@ZTP@", ztp)


if __name__ == "__main__":
    sys.exit(main())

"""Network namespaces, veth links and background processes for the end-to-end tests.

Everything here is named with a per-run suffix and torn down by the fixtures' finalizers:
a namespace is deleted only after every process inside it has been stopped (a process keeps
a deleted namespace alive), and only namespaces this run created are touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

COMMAND_TIMEOUT = 30.0
LOG_TAIL = 4000


def run(
    arguments: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a failure shows the command and its output."""
    command = [str(argument) for argument in arguments]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env=dict(env) if env is not None else None,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited with {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def in_namespace(namespace: str, *arguments: str | Path) -> list[str]:
    """The command line that runs `arguments` inside `namespace` (ip netns exec execs it,
    so the process id is the command's own)."""
    return ["ip", "netns", "exec", namespace, *map(str, arguments)]


def wait_for(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] = lambda: "",
    interval: float = 0.05,
) -> T:
    """Poll `probe` until it returns something truthy; fail with `diagnostics` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}\n{diagnostics()}"
            )
        time.sleep(interval)


def tail(path: Path, limit: int = LOG_TAIL) -> str:
    """The end of a log file, for assertion messages."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path.name}: no such file)"
    clipped = text[-limit:]
    return f"--- {path.name} ---\n{'...' if len(text) > limit else ''}{clipped}"


@dataclass
class Service:
    """A background process with its output in a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return tail(self.log)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def start(
    name: str,
    arguments: Sequence[str | Path],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
) -> Service:
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(argument) for argument in arguments],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
        )
    return Service(name, process, log)


@dataclass
class Namespaces:
    """The namespaces of one run and the services started in them, for orderly teardown."""

    suffix: str
    created: list[str] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)

    def add(self, role: str) -> str:
        name = f"sztp-e2e-{role}-{self.suffix}"
        run(["ip", "netns", "add", name])
        self.created.append(name)
        run(in_namespace(name, "ip", "link", "set", "lo", "up"))
        return name

    def start(
        self,
        name: str,
        namespace: str,
        arguments: Sequence[str | Path],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Service:
        service = start(name, in_namespace(namespace, *arguments), log, env=env)
        self.services.append(service)
        return service

    def logs(self) -> str:
        return "\n".join(service.output() for service in self.services)

    def teardown(self) -> None:
        """Stop our services, then anything else left in our namespaces, then delete them."""
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        for namespace in reversed(self.created):
            self._kill_remaining(namespace)
            run(["ip", "netns", "delete", namespace], check=False)
        self.created.clear()

    @staticmethod
    def _kill_remaining(namespace: str) -> None:
        # Only processes inside this run's own namespace: daemons a client may have forked.
        listed = run(["ip", "netns", "pids", namespace], check=False).stdout.split()
        pids = [int(pid) for pid in listed if pid.isdigit()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if _running(pid)]
            time.sleep(0.02)


def _running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie waiting for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[0] != "Z"

"""Ansible runs on this machine for the role checks (test_role_checks.py, test_agent_role.py):
ansible-playbook from the venv next to this Python, with a collections path where
sztp.bootstrap is this checkout, and what its default output says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent))


# A test module imports this to ask for `collections` by name.
@pytest.fixture(name="collections", scope="module")
def collections_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A collections path where sztp.bootstrap is this checkout."""
    root = tmp_path_factory.mktemp("collections")
    (root / "ansible_collections" / "sztp").mkdir(parents=True)
    (root / "ansible_collections" / "sztp" / "bootstrap").symlink_to(ROOT)
    return root


def run_ansible(
    collections: Path,
    command: list[str],
    *,
    cwd: Path,
    timeout: float,
    settings: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """An Ansible tool's `command` with `collections` as its collections path, no colours and
    further environment `settings`."""
    environment = {
        **os.environ,
        "ANSIBLE_COLLECTIONS_PATH": str(collections),
        "ANSIBLE_NOCOLOR": "1",
        **(settings or {}),
    }
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        check=False,
        timeout=timeout,
    )


@dataclass
class PlayRun:
    """What a run of ansible-playbook's default output says."""

    output: str
    errors: str  # what ansible-playbook wrote to stderr
    changed: int
    failures: list[tuple[str, dict[str, Any]]]  # (task name, result) of each failed task


def run_play(
    collections: Path,
    workdir: Path,
    tasks: list[dict[str, Any]],
    *,
    check: bool = False,
    diff: bool = False,
    verbose: bool = False,
) -> PlayRun:
    """Run `tasks` against localhost (`verbose`: with -vv, as someone debugging would)."""
    assert PLAYBOOK, "ansible-playbook must be installed in the test environment"
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False, "tasks": tasks}]
    playbook = workdir / "play.yml"
    playbook.write_text(yaml.safe_dump(play))
    command = [PLAYBOOK, "-i", "localhost,", "-e", f"ansible_python_interpreter={sys.executable}"]
    options = [
        *(["--check"] if check else []),
        *(["--diff"] if diff else []),
        *(["-vv"] if verbose else []),
    ]
    result = run_ansible(
        collections,
        [*command, *options, str(playbook)],
        cwd=workdir,
        timeout=300,
        settings={
            "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
            "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        },
    )
    task, failed = "", []
    for line in result.stdout.splitlines():
        if heading := re.match(r"TASK \[(?:[^\]]* : )?(.*)\] \*+$", line):
            task = heading.group(1)
        elif re.match(r"(fatal|failed): \[localhost\]", line):
            failed.append((task, json.loads(line.partition(" => ")[2])))
    recap = re.search(r"^localhost +: .*\bchanged=(\d+)", result.stdout, re.MULTILINE)
    assert recap, result.stdout + result.stderr
    return PlayRun(result.stdout, result.stderr, int(recap.group(1)), failed)


def failures(run: PlayRun) -> list[tuple[str, str]]:
    """(task name, message) of every failed task, loop items apart."""
    return [(task, result.get("msg", "")) for task, result in run.failures]


def changed(run: PlayRun) -> int:
    return run.changed

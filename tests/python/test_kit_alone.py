"""The kit stands alone: every module of `sztp` imports without the CLI's and the server's
libraries (what an Ansible controller installs), and the console scripts of a missing extra say
which extra to install instead of failing with an ImportError."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sztp.extras import EXTRA_MODULES

ROOT = Path(__file__).resolve().parents[2]
EXTRA_LIBRARIES = tuple(module for modules in EXTRA_MODULES.values() for module in modules)
# A module set to None in sys.modules cannot be imported and is not found by find_spec, as if
# it were not installed.
WITHOUT_EXTRAS = f"import sys\nfor name in {EXTRA_LIBRARIES!r}:\n    sys.modules[name] = None\n"


def run_without_extras(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + code],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_every_kit_module_imports_without_the_extras() -> None:
    modules = sorted(
        ".".join(path.relative_to(ROOT / "kit").with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "kit" / "sztp").rglob("*.py")
    )
    assert "sztp.client" in modules and "sztp.simulator" in modules
    run = run_without_extras(
        f"import importlib\nfor name in {modules!r}:\n    importlib.import_module(name)\n"
        "print('imported', len(" + repr(modules) + "))"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"imported {len(modules)}"


@pytest.mark.parametrize(
    ("entry", "extra"),
    [
        ("from sztpctl import main; main()", "cli"),
        ("from sztp_server.__main__ import main; main(['check'])", "server"),
    ],
)
def test_a_console_script_names_its_missing_extra(entry: str, extra: str) -> None:
    run = run_without_extras(entry)
    assert run.returncode == 1, run.stderr
    assert f"pip install 'sztp[{extra}]'" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_server_version_needs_no_extra() -> None:
    run = run_without_extras("from sztp_server.__main__ import main; main(['--version'])")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("sztp-server ")

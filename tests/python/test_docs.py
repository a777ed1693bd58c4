"""The user documentation stays true to the code: docs/cli.md is regenerated whenever the CLI
changes, docs/server.md lists every server setting with its default, links between pages
resolve, and every `sztpctl` command line the pages show names commands and options that
exist."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from pathlib import Path

import pytest
import typer

from sztp_server.config import Listener, ServerConfig
from sztp_testing import MARKDOWN_CODE_BLOCK, assert_links_resolve, run_script
from sztpctl.commands import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATOR = ROOT / "scripts" / "gen_cli_docs.py"
SERVER_GENERATOR = ROOT / "scripts" / "gen_server_docs.py"
# Hand-written pages whose command lines are checked (cli.md is generated from the CLI).
PAGES = sorted(path for path in DOCS.glob("*.md") if path.name != "cli.md")

_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_SHELL_BREAK = re.compile(r"\s(?:\||\|\||&&|;|>|>>|2>&1|#)\s|\s>\S|\)|\"\s*$")


def run_generator(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_script(GENERATOR, *arguments, env=env)


def _locked_version(distribution: str) -> str | None:
    lock = (ROOT / "requirements" / "dev.txt").read_text(encoding="utf-8")
    found = re.search(rf"^{re.escape(distribution)}==(\S+)", lock, re.MULTILINE)
    return found.group(1) if found else None


def test_cli_reference_is_up_to_date() -> None:
    # Help text is laid out by typer: the page is generated with the locked release, and
    # another release (`make lowest`) may lay it out otherwise without the CLI changing.
    if typer.__version__ != _locked_version("typer"):
        pytest.skip(f"docs/cli.md is generated with the locked typer, not {typer.__version__}")
    result = run_generator("--check")
    assert result.returncode == 0, (
        "docs/cli.md does not match the CLI; regenerate it with "
        "`python scripts/gen_cli_docs.py`\n" + result.stderr
    )


def test_cli_reference_does_not_depend_on_the_terminal() -> None:
    base = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "TERM")}
    narrow = run_generator("--stdout", env={**base, "COLUMNS": "40", "TERM": "dumb"})
    wide = run_generator(
        "--stdout", env={**base, "COLUMNS": "250", "TERM": "xterm-256color", "FORCE_COLOR": "1"}
    )
    assert narrow.returncode == wide.returncode == 0, narrow.stderr + wide.stderr
    assert narrow.stdout == wide.stdout
    assert "\x1b" not in narrow.stdout


def test_check_fails_on_a_stale_page(tmp_path: Path) -> None:
    stale = tmp_path / "cli.md"
    stale.write_text("# out of date\n", encoding="utf-8")
    result = run_generator("--check", "--output", str(stale))
    assert result.returncode == 1
    assert "gen_cli_docs.py" in result.stderr
    assert run_generator("--output", str(stale)).returncode == 0
    assert run_generator("--check", "--output", str(stale)).returncode == 0


def test_cli_reference_covers_every_command() -> None:
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    for path in command_paths(typer.main.get_command(app), "sztpctl"):
        assert f"`{path}`" in page, f"{path} is missing from docs/cli.md"


# ---- server settings


def run_server_generator(*arguments: str) -> subprocess.CompletedProcess[str]:
    return run_script(SERVER_GENERATOR, *arguments)


def table_rows(text: str) -> dict[str, list[str]]:
    """First cell (without backticks) -> all cells, for every table row of `text`."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split(" | ")]
            rows[cells[0].strip("`")] = cells
    return rows


def test_server_settings_tables_are_up_to_date() -> None:
    result = run_server_generator("--check")
    assert result.returncode == 0, (
        "docs/server.md settings differ from server/sztp_server/config.py; regenerate them with "
        "`python scripts/gen_server_docs.py`\n" + result.stderr
    )


def test_server_page_lists_every_setting_with_its_default_and_variable() -> None:
    rows = table_rows((DOCS / "server.md").read_text(encoding="utf-8"))
    defaults = ServerConfig()
    for field in dataclasses.fields(ServerConfig):
        assert field.name in rows, f"{field.name} is missing from docs/server.md"
        cells = rows[field.name]
        if field.metadata["structured"]:
            assert cells[2] == f"`SZTP_SERVER_{field.name.upper()}` (YAML)"
        else:
            assert cells[2] == f"`SZTP_SERVER_{field.name.upper()}`"
            default = getattr(defaults, field.name)
            shown = ("true" if default else "false") if isinstance(default, bool) else default
            assert cells[1] == f"`{shown}`"  # booleans as YAML writes them
    assert rows["device_listeners"][1] == "`[{host: 0.0.0.0, port: 8443}]` (plain HTTP)"
    assert rows["admin_listener"][1] == "`{host: 127.0.0.1, port: 7080}` (plain HTTP)"
    for field in dataclasses.fields(Listener):
        assert field.name in rows, f"listener key {field.name} is missing from docs/server.md"


def test_server_settings_check_fails_on_drift(tmp_path: Path) -> None:
    page = (DOCS / "server.md").read_text(encoding="utf-8")
    drifted = tmp_path / "server.md"
    drifted.write_text(page.replace("port: 7080}`", "port: 9443}`"), encoding="utf-8")
    assert drifted.read_text(encoding="utf-8") != page
    result = run_server_generator("--check", "--output", str(drifted))
    assert result.returncode == 1
    assert "gen_server_docs.py" in result.stderr
    assert run_server_generator("--output", str(drifted)).returncode == 0
    assert drifted.read_text(encoding="utf-8") == page


# ---- links


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.name)
def test_links_resolve(page: Path) -> None:
    assert_links_resolve(page)


# ---- command lines shown in the pages


def command_paths(command: object, path: str) -> list[str]:
    found = [path]
    for name, child in sorted(getattr(command, "commands", {}).items()):
        found += command_paths(child, f"{path} {name}")
    return found


def option_names(command: object) -> set[str]:
    names = {"-h", "--help"}
    for param in getattr(command, "params", []):
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []) or [])
    return names


def shown_command_lines(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    lines: list[str] = []
    for block in MARKDOWN_CODE_BLOCK.findall(text):
        joined = re.sub(r"\\\n\s*", " ", block)
        without_comments = (re.sub(r"(^|\s)#.*", "", line) for line in joined.splitlines())
        lines += [line for line in without_comments if "sztpctl " in line]
    prose = MARKDOWN_CODE_BLOCK.sub("", text)
    lines += [span for span in _INLINE_CODE.findall(prose) if span.startswith("sztpctl ")]
    return lines


def check_command_line(line: str, root: object) -> str | None:
    """None if the sztpctl command (and its options) on `line` exist, else the problem."""
    start = line.index("sztpctl ") + len("sztpctl ")
    text = _SHELL_BREAK.split(line[start:], maxsplit=1)[0]
    words = text.split()
    command, path = root, "sztpctl"
    index = 0
    while index < len(words) and isinstance(getattr(command, "commands", None), dict):
        word = words[index]
        if command is root and word in option_names(root):  # sztpctl --debug apply ...
            index += 1
            continue
        if word.startswith("-") or word.isupper():  # an option or a placeholder
            break
        if word not in command.commands:
            return f"{path} has no command {word!r}"
        command, path = command.commands[word], f"{path} {word}"
        index += 1
    known = option_names(command) | option_names(root)
    for word in words[index:]:
        name = word.split("=", 1)[0]
        if re.fullmatch(r"--?[A-Za-z][\w-]*", name) and name not in known:
            return f"{path} has no option {name}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_documented_commands_exist(page: Path) -> None:
    root = typer.main.get_command(app)
    problems = [
        f"{line.strip()}: {problem}"
        for line in shown_command_lines(page)
        if (problem := check_command_line(line, root)) is not None
    ]
    assert not problems, f"{page.name}:\n" + "\n".join(problems)


def test_readme_names_every_command_and_role() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    missing = [f"sztpctl {name}" for name in commands if f"`{name}`" not in readme]
    missing += [
        f"role {role.name}"
        for role in sorted((ROOT / "roles").iterdir())
        if role.is_dir() and f"`{role.name}`" not in readme
    ]
    assert not missing, f"README.md's overview does not name: {', '.join(missing)}"

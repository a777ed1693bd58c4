"""The tree's layering, as docs/architecture.md draws it: imports only go down. The protocol
core imports nothing above it, the kit imports neither the CLI, the server nor their libraries,
the CLI and the server do not import each other, and the collection needs only the kit.
(That the kit imports no extra's library: test_locks, from pyproject.toml's extras.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTS = ("kit", "cli", "server", "agent", "plugins")


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of what a file imports, relative imports resolved against its package."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def package_of(path: Path, part: str) -> str:
    relative = path.relative_to(ROOT / part).with_suffix("")
    parts = relative.parts if path.name == "__init__.py" else relative.parts[:-1]
    return ".".join(part for part in parts if part != "__init__")


def imports_under(folder: str, part: str) -> dict[str, set[str]]:
    return {
        str(path.relative_to(ROOT)): imported_modules(path, package_of(path, part))
        for path in (ROOT / folder).rglob("*.py")
    }


def offending(imports: dict[str, set[str]], refused: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{path}: {name}"
        for path, names in imports.items()
        for name in names
        if any(name == prefix or name.startswith(prefix + ".") for prefix in refused)
    )


@pytest.mark.parametrize(
    ("folder", "part", "refused"),
    [
        ("kit/sztp", "kit", ("sztpctl", "sztp_server", "ansible", "ansible_collections")),
        ("cli/sztpctl", "cli", ("sztp_server", "ansible", "ansible_collections", "aiohttp")),
        ("server/sztp_server", "server", ("sztpctl", "typer", "rich", "ansible")),
        ("plugins", "plugins", ("sztpctl", "sztp_server", "typer", "rich", "aiohttp")),
        # The agent runs on devices: the kit and the standard library only.
        (
            "agent/sztp_agent",
            "agent",
            ("sztpctl", "sztp_server", "typer", "rich", "aiohttp", "psycopg", "ansible"),
        ),
    ],
)
def test_no_import_goes_up_or_sideways(folder: str, part: str, refused: tuple[str, ...]) -> None:
    assert offending(imports_under(folder, part), refused) == []


def test_the_protocol_core_imports_only_itself_and_the_errors() -> None:
    allowed = ("sztp.protocol", "sztp.errors")
    found = imports_under("kit/sztp/protocol", "kit")
    above = sorted(
        f"{path}: {name}"
        for path, names in found.items()
        for name in names
        if (name == "sztp" or name.startswith("sztp."))
        and not any(name == prefix or name.startswith(prefix + ".") for prefix in allowed)
    )
    assert above == []


def test_the_state_model_imports_no_client_or_device_code() -> None:
    refused = ("sztp.client", "sztp.config", "sztp.simulator", "sztp.labpki", "sztp.progress")
    assert offending(imports_under("kit/sztp/state", "kit"), refused) == []


def test_the_layer_picture_names_what_exists() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = page[page.index("## Layers") :]
    picture = section[section.index("```\n") + 4 : section.index("\n```", section.index("```\n"))]
    paths = re.findall(r"[\w./]*\w(?:/|\.py)(?=[\s),;]|$)", picture, re.MULTILINE)
    assert len(paths) > 10, paths
    everything = {
        str(path.relative_to(ROOT / part)) + ("/" if path.is_dir() else "")
        for part in PARTS
        for path in (ROOT / part).rglob("*")
        if "__pycache__" not in path.parts
    }
    for path in paths:
        exists = (ROOT / path).exists() or any(
            known == path or known.endswith("/" + path) for known in everything
        )
        assert exists, f"docs/architecture.md's picture names {path}, which the tree lacks"

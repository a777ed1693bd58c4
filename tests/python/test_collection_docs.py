"""The collection docs (docs/collection.md, docs/plugins/*.md) are generated from the plugins'
documentation by scripts/gen_collection_docs.py: they must match the plugins, cover every
plugin, and their links must resolve."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from sztp_testing import MARKDOWN_CODE_BLOCK, assert_links_resolve, heading_anchors, run_script

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATOR = ROOT / "scripts" / "gen_collection_docs.py"
PLUGIN_DIRS = {"modules": "module", "inventory": "inventory", "filter": "filter"}


def run_generator(
    *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_script(GENERATOR, *arguments, env=env)


def plugins() -> list[tuple[str, str]]:
    found = []
    for directory, kind in sorted(PLUGIN_DIRS.items()):
        for path in sorted((ROOT / "plugins" / directory).glob("*.py")):
            if not path.name.startswith("_"):
                found.append((path.stem, kind))
    return found


def page_for(name: str, kind: str) -> str:
    return f"{name}.md" if kind == "module" else f"{name}_{kind}.md"


def test_collection_docs_are_up_to_date() -> None:
    result = run_generator("--check")
    assert result.returncode == 0, (
        "docs/collection.md or docs/plugins/ do not match the plugin documentation; "
        "regenerate them with `python scripts/gen_collection_docs.py`\n" + result.stderr
    )


def test_check_fails_on_stale_pages(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "collection.md").write_text("# out of date\n", encoding="utf-8")
    result = run_generator("--check", "--docs", str(tmp_path))
    assert result.returncode == 1
    assert "stale" in result.stderr and "missing" in result.stderr
    assert "gen_collection_docs.py" in result.stderr

    assert run_generator("--docs", str(tmp_path)).returncode == 0
    assert run_generator("--check", "--docs", str(tmp_path)).returncode == 0

    # A page left behind by a plugin that no longer exists is stale too, and removed.
    orphan = tmp_path / "plugins" / "gone.md"
    generated = (tmp_path / "plugins" / "device.md").read_text(encoding="utf-8")
    orphan.write_text(generated, encoding="utf-8")
    assert run_generator("--check", "--docs", str(tmp_path)).returncode == 1
    assert run_generator("--docs", str(tmp_path)).returncode == 0
    assert not orphan.exists()


def test_output_does_not_depend_on_the_environment(tmp_path: Path) -> None:
    base = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "TERM")}
    narrow = {**base, "COLUMNS": "40", "TERM": "dumb", "ANSIBLE_NOCOLOR": "0"}
    wide = {**base, "COLUMNS": "250", "TERM": "xterm-256color", "ANSIBLE_FORCE_COLOR": "1"}
    assert run_generator("--docs", str(tmp_path / "a"), env=narrow).returncode == 0
    assert run_generator("--docs", str(tmp_path / "b"), env=wide).returncode == 0
    for page in sorted((tmp_path / "a").rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        other = tmp_path / "b" / page.relative_to(tmp_path / "a")
        assert text == other.read_text(encoding="utf-8"), page.name
        assert "\x1b" not in text
        assert str(ROOT) not in text and str(tmp_path) not in text


@pytest.mark.parametrize(("name", "kind"), plugins(), ids=lambda value: str(value))
def test_every_plugin_has_a_page_linked_from_the_overview(name: str, kind: str) -> None:
    page = DOCS / "plugins" / page_for(name, kind)
    assert page.exists(), f"no page for the {kind} {name}"
    text = page.read_text(encoding="utf-8")
    assert f"# sztp.bootstrap.{name}\n" in text
    overview = (DOCS / "collection.md").read_text(encoding="utf-8")
    assert f"](plugins/{page.name})" in overview, f"collection.md does not link {page.name}"


def test_no_page_without_a_plugin() -> None:
    expected = {page_for(name, kind) for name, kind in plugins()}
    assert {page.name for page in (DOCS / "plugins").glob("*.md")} == expected


def test_the_index_links_the_collection_page() -> None:
    assert "](collection.md)" in (DOCS / "index.md").read_text(encoding="utf-8")


# ---- links, including option anchors (<a id="...">) in the generated tables


def anchors(page: Path) -> set[str]:
    """The headings' anchors and the option anchors the generator writes."""
    text = MARKDOWN_CODE_BLOCK.sub("", page.read_text(encoding="utf-8"))
    return heading_anchors(page) | set(re.findall(r'<a id="([^"]+)"></a>', text))


GENERATED = [DOCS / "collection.md", *sorted((DOCS / "plugins").glob("*.md"))]


@pytest.mark.parametrize("page", GENERATED, ids=lambda page: page.name)
def test_links_resolve(page: Path) -> None:
    assert_links_resolve(page, anchors)

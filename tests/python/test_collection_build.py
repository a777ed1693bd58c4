"""The repository root builds as the Ansible collection sztp.bootstrap, without Python sources."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    galaxy = shutil.which("ansible-galaxy", path=str(Path(sys.executable).parent))
    assert galaxy, "ansible-galaxy must be installed in the test environment (make test)"
    output = tmp_path_factory.mktemp("collection")
    subprocess.run(
        [galaxy, "collection", "build", str(ROOT), "--output-path", str(output)],
        check=True,
        capture_output=True,
    )
    built = list(output.glob("sztp-bootstrap-*.tar.gz"))
    assert len(built) == 1
    return built[0]


def test_artifact_is_named_for_the_collection_version(artifact: Path) -> None:
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    assert artifact.name == f"sztp-bootstrap-{version}.tar.gz"


def test_artifact_holds_collection_content_only(artifact: Path) -> None:
    with tarfile.open(artifact) as archive:
        names = archive.getnames()
    assert "MANIFEST.json" in names
    assert "meta/runtime.yml" in names
    assert "README.md" in names
    leaked = [
        name
        for name in names
        if name.split("/")[0]
        in {"kit", "cli", "server", "bench", ".venv", "scripts", ".ci", "build"}
        or name.startswith("tests/python")
        or name in {"pyproject.toml", "Makefile"}
    ]
    assert leaked == []


def test_manifest_names_the_collection(artifact: Path) -> None:
    import json

    with tarfile.open(artifact) as archive:
        member = archive.extractfile("MANIFEST.json")
        assert member is not None
        info = json.load(member)["collection_info"]
    assert (info["namespace"], info["name"], info["license"]) == (
        "sztp",
        "bootstrap",
        ["Apache-2.0"],
    )

"""What a release publishes: the wheel and the collection artifact that `make dist` builds
(scripts/build-dist.sh), at one version and each with the Apache License 2.0 text; the licence
and the project's addresses declared alike for PyPI (pyproject.toml) and Galaxy (galaxy.yml);
CHANGELOG.rst as antsibull-changelog generates it from changelogs/changelog.yaml."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.metadata import Metadata
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
GALAXY = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))
# The SHA-256 of the licence as the ASF publishes it (LICENSE-2.0.txt), byte for byte: the same
# file as Debian's /usr/share/common-licenses/Apache-2.0.
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
LICENSE = ROOT / "LICENSE"


def tool(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def test_the_license_is_the_apache_license_unmodified() -> None:
    assert hashlib.sha256(LICENSE.read_bytes()).hexdigest() == APACHE_2_0_SHA256
    assert PROJECT["license"] == "Apache-2.0"
    assert PROJECT["license-files"] == ["LICENSE"]
    assert GALAXY["license"] == ["Apache-2.0"]


def test_pypi_and_galaxy_name_the_same_project() -> None:
    urls = PROJECT["urls"]
    assert urls["Source"] == GALAXY["repository"]
    assert urls["Homepage"] == GALAXY["homepage"]
    assert urls["Documentation"] == GALAXY["documentation"]
    assert urls["Issues"] == GALAXY["issues"]
    assert urls["Changelog"] == f"{GALAXY['repository']}/blob/main/CHANGELOG.rst"


def test_the_python_classifiers_start_at_the_oldest_python_supported() -> None:
    versions = [
        match.group(1)
        for classifier in PROJECT["classifiers"]
        if (match := re.fullmatch(r"Programming Language :: Python :: (3\.\d+)", classifier))
    ]
    assert versions, "no Programming Language :: Python :: 3.x classifier"
    assert f">={min(versions, key=Version)}" == PROJECT["requires-python"]


def test_the_changelog_is_generated_from_the_releases(tmp_path: Path) -> None:
    generated = tmp_path / "CHANGELOG.rst"
    subprocess.run(
        [tool("antsibull-changelog"), "generate", "--output", str(generated)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert generated.read_text(encoding="utf-8") == (ROOT / "CHANGELOG.rst").read_text(
        encoding="utf-8"
    ), "regenerate with `antsibull-changelog generate`"


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist`'s build, into a directory of its own (about 5 s)."""
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        ["bash", str(ROOT / "scripts/build-dist.sh"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert built.returncode == 0, built.stderr
    assert sorted(Path(line) for line in built.stdout.split()) == sorted(out.iterdir())
    return out


def read_member(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    assert member is not None, name
    return member.read()


def test_dist_holds_the_wheel_and_the_collection_at_one_version(dist: Path) -> None:
    version = PROJECT["version"]
    assert sorted(path.name for path in dist.iterdir()) == [
        f"sztp-{version}-py3-none-any.whl",
        f"sztp-bootstrap-{version}.tar.gz",
    ]


def test_the_wheel_carries_the_version_the_license_and_the_urls(dist: Path) -> None:
    version = PROJECT["version"]
    with zipfile.ZipFile(dist / f"sztp-{version}-py3-none-any.whl") as wheel:
        info = f"sztp-{version}.dist-info"
        metadata = Metadata.from_email(wheel.read(f"{info}/METADATA"), validate=True)
        shipped_license = wheel.read(f"{info}/licenses/LICENSE")
    assert metadata.version == Version(version)
    assert str(metadata.license_expression) == "Apache-2.0"
    assert metadata.license_files == ["LICENSE"]
    assert metadata.project_urls == PROJECT["urls"]
    assert metadata.classifiers == PROJECT["classifiers"]
    assert shipped_license == LICENSE.read_bytes()


def test_the_collection_carries_the_version_the_license_and_the_changelog(dist: Path) -> None:
    version = PROJECT["version"]
    with tarfile.open(dist / f"sztp-bootstrap-{version}.tar.gz") as archive:
        manifest: dict[str, Any] = json.loads(read_member(archive, "MANIFEST.json"))
        shipped_license = read_member(archive, "LICENSE")
        shipped_changelog = read_member(archive, "CHANGELOG.rst")
        names = archive.getnames()
    info = manifest["collection_info"]
    assert (info["version"], info["license"]) == (version, ["Apache-2.0"])
    assert shipped_license == LICENSE.read_bytes()
    assert shipped_changelog == (ROOT / "CHANGELOG.rst").read_bytes()
    assert "changelogs/changelog.yaml" in names
    assert "changelogs/.plugin-cache.yaml" not in names

"""The lock files pin, with hashes, exactly what pyproject.toml's ranges ask for, and the locks
agree with one another, so the demo, the suites, the role tests and a deployed server run the
same versions. `make lock` regenerates them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LOCKS = {
    "bootstrap": ROOT / "requirements" / "bootstrap.txt",
    "server": ROOT / "roles" / "server" / "files" / "server-requirements.txt",
    "dev": ROOT / "requirements" / "dev.txt",
    "molecule": ROOT / "requirements" / "molecule.txt",
    "ansible-floor": ROOT / "requirements" / "ansible-2.16.txt",
}
# Which of pyproject.toml's dependency lists each lock resolves.
EXTRAS = {
    "server": ("server",),
    "dev": ("server", "dev"),
    "molecule": ("molecule",),
    "ansible-floor": ("server",),
}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", re.MULTILINE)


def pins(lock: Path) -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in _PIN.findall(lock.read_text())}


def direct_requirements(lock_name: str) -> list[Requirement]:
    listed = list(PYPROJECT["dependencies"])
    for extra in EXTRAS[lock_name]:
        listed += PYPROJECT["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize("lock_name", list(LOCKS))
def test_every_pin_has_a_hash(lock_name: str) -> None:
    text = LOCKS[lock_name].read_text(encoding="utf-8")
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    assert entries, lock_name
    for entry in entries:
        assert "==" in entry.split("\\")[0], f"{lock_name}: not pinned: {entry.splitlines()[0]}"
        assert "--hash=sha256:" in entry, f"{lock_name}: no hash: {entry.splitlines()[0]}"
    assert "make lock" in text.split("\n", 2)[1], "regenerate with `make lock`"


@pytest.mark.parametrize("lock_name", list(EXTRAS))
def test_lock_satisfies_pyproject(lock_name: str) -> None:
    pinned = pins(LOCKS[lock_name])
    for requirement in direct_requirements(lock_name):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock_name}: {name} is not locked; run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock_name}: {name}=={pinned[name]} is outside {requirement.specifier}; "
            "run `make lock`"
        )
    assert "sztp" not in pinned, "the project itself is installed from the checkout"


def test_locks_agree_on_shared_packages() -> None:
    server, dev, molecule = (pins(LOCKS[name]) for name in ("server", "dev", "molecule"))
    for name, version in server.items():
        assert dev.get(name) == version, f"dev lock has {name}=={dev.get(name)}, server {version}"
        if name in molecule:
            assert molecule[name] == version, f"molecule lock differs from server on {name}"
    for name in set(dev) & set(molecule):
        assert dev[name] == molecule[name], f"dev and molecule locks differ on {name}"
    floor = pins(LOCKS["ansible-floor"])
    for name, version in server.items():
        assert floor.get(name) == version, f"ansible-floor lock differs from server on {name}"


def test_ansible_floor_is_the_declared_lower_bound() -> None:
    """`make ansible-floor` runs the oldest ansible-core meta/runtime.yml accepts."""
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    lower = re.fullmatch(r">=(\d+\.\d+)\.0", runtime["requires_ansible"])
    assert lower, f"requires_ansible {runtime['requires_ansible']!r} is not >=X.Y.0"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    floor = re.search(r"^ANSIBLE_FLOOR := (\S+)$", makefile, re.MULTILINE)
    assert floor and floor[1] == lower[1], "Makefile's ANSIBLE_FLOOR is not requires_ansible's"
    assert LOCKS["ansible-floor"].name == f"ansible-{lower[1]}.txt"
    assert pins(LOCKS["ansible-floor"])["ansible-core"].startswith(lower[1] + ".")


def test_unused_distributions_are_not_declared() -> None:
    imported = {
        match
        for path in (ROOT / "cli").rglob("*.py")
        for match in re.findall(r"^\s*(?:import|from) (\w+)", path.read_text(), re.MULTILINE)
    }
    # The distribution name of each runtime dependency and the module it provides.
    modules = {"pyyaml": "yaml", "jsonschema-rs": "jsonschema_rs", "asn1crypto": "asn1crypto"}
    for requirement in PYPROJECT["dependencies"]:
        name = canonicalize_name(Requirement(requirement).name)
        module = modules.get(name, name.replace("-", "_"))
        assert module in imported, f"{name} is declared but nothing in cli/ imports {module}"

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

from sztp_server.admin.handlers.api_reference import VIEWER_DISTRIBUTION, VIEWER_MODULE

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
LOCKS = {
    "bootstrap": ROOT / "requirements" / "bootstrap.txt",
    "server": ROOT / "roles" / "server" / "files" / "server-requirements.txt",
    "kit": ROOT / "requirements" / "kit.txt",
    "cli": ROOT / "requirements" / "cli.txt",
    "dev": ROOT / "requirements" / "dev.txt",
    "molecule": ROOT / "requirements" / "molecule.txt",
}
# One lock per ansible-core minor of the matrix (tests/ansible/run-matrix.sh), from its .in.
ANSIBLE_MATRIX = sorted(
    (
        path.name[len("ansible-") : -len(".in")]
        for path in (ROOT / "requirements").glob("ansible-*.in")
    ),
    key=lambda minor: tuple(map(int, minor.split("."))),
)
LOCKS.update(
    {f"ansible-{minor}": ROOT / "requirements" / f"ansible-{minor}.txt" for minor in ANSIBLE_MATRIX}
)
# Which of pyproject.toml's dependency lists each lock resolves.
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("server",),
    "kit": (),
    "cli": ("cli",),
    "dev": ("server", "cli", "dev"),
    "molecule": ("cli", "molecule"),
    **{f"ansible-{minor}": ("server",) for minor in ANSIBLE_MATRIX},
}
# Each lock is resolved under the constraints of others (Makefile, `lock`), so they agree on
# every package they share: the demo installs the server's and the CLI's together.
CONSTRAINED_BY = [
    ("kit", "server"),
    ("cli", "server"),
    ("dev", "server"),
    ("dev", "cli"),
    ("molecule", "dev"),
    *((f"ansible-{minor}", "server") for minor in ANSIBLE_MATRIX),
]
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


@pytest.mark.parametrize(("lock_name", "constraint"), CONSTRAINED_BY)
def test_locks_agree_on_shared_packages(lock_name: str, constraint: str) -> None:
    pinned, constraining = pins(LOCKS[lock_name]), pins(LOCKS[constraint])
    for name in set(pinned) & set(constraining):
        assert pinned[name] == constraining[name], (
            f"{lock_name} lock has {name}=={pinned[name]}, {constraint} {constraining[name]}"
        )


def test_the_server_lock_holds_no_cli_library() -> None:
    """A deployed server and an Ansible controller install neither typer nor rich."""
    for lock_name in ("server", "kit"):
        pinned = pins(LOCKS[lock_name])
        assert not {"typer", "rich"} & set(pinned), f"{lock_name} lock pins a CLI library"


def test_ansible_matrix_covers_the_declared_releases() -> None:
    """`make ansible-matrix` and the dev venv together run every ansible-core minor from
    requires_ansible's lower bound (meta/runtime.yml) up, each lock pinning its own minor for
    the Python its .in names."""
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    lower = re.fullmatch(r">=(\d+\.\d+)\.0", runtime["requires_ansible"])
    assert lower, f"requires_ansible {runtime['requires_ansible']!r} is not >=X.Y.0"
    assert ANSIBLE_MATRIX and ANSIBLE_MATRIX[0] == lower[1], (
        f"the oldest lock of the matrix is not requires_ansible's {lower[1]}"
    )
    dev_core = pins(LOCKS["dev"])["ansible-core"]
    tested = sorted(
        {tuple(map(int, minor.split("."))) for minor in ANSIBLE_MATRIX}
        | {tuple(map(int, dev_core.split(".")[:2]))}
    )
    missing = [
        f"{tested[0][0]}.{minor}"
        for minor in range(tested[0][1], tested[-1][1] + 1)
        if (tested[0][0], minor) not in tested
    ]
    assert not missing, f"no lock for ansible-core {missing} (add requirements/ansible-<minor>.in)"
    assert f"ansible-{dev_core.rsplit('.', 1)[0]}" not in LOCKS, "the dev venv runs that one"
    for minor in ANSIBLE_MATRIX:
        source = (ROOT / "requirements" / f"ansible-{minor}.in").read_text(encoding="utf-8")
        assert re.search(r"^# python-version: 3\.\d+$", source, re.MULTILINE), (
            f"requirements/ansible-{minor}.in names no '# python-version: 3.N'"
        )
        assert f"ansible-core=={minor}.*" in source.splitlines()
        assert pins(LOCKS[f"ansible-{minor}"])["ansible-core"].startswith(minor + "."), (
            f"requirements/ansible-{minor}.txt is stale: run `make lock`"
        )
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "bash tests/ansible/run-matrix.sh $(ANSIBLE_MATRIX)" in makefile
    assert re.search(r"^test: .*\bansible-matrix\b", makefile, re.MULTILINE)


# The module each runtime distribution provides, where the names differ.
MODULE_OF = {
    "pyyaml": "yaml",
    "jsonschema-rs": "jsonschema_rs",
    "python-pkcs11": "pkcs11",
    "dnspython": "dns",
}
# Where each part of the distribution lives: the kit's requirements are the base ones.
PART_OF = {None: "kit", "cli": "cli", "server": "server"}
# Distributions a part reads files from instead of importing (found with importlib, so the
# part runs without them): the server serves Swagger UI's files, or says which package is missing.
DATA_ONLY = {"server": {VIEWER_DISTRIBUTION: VIEWER_MODULE}}


def module_of(requirement: str) -> str:
    name = canonicalize_name(Requirement(requirement).name)
    return MODULE_OF.get(name, name.replace("-", "_"))


@pytest.mark.parametrize("extra", list(PART_OF))
def test_every_declared_distribution_is_imported_by_its_part(extra: str | None) -> None:
    part = PART_OF[extra]
    imported = {
        match
        for path in (ROOT / part).rglob("*.py")
        for match in re.findall(r"^\s*(?:import|from) (\w+)", path.read_text(), re.MULTILINE)
    }
    declared = PYPROJECT["optional-dependencies"][extra] if extra else PYPROJECT["dependencies"]
    data_only = DATA_ONLY.get(part, {})
    for requirement in declared:
        if Requirement(requirement).name in data_only:
            continue
        module = module_of(requirement)
        assert module in imported, f"{requirement} is declared but nothing in {part}/ imports it"


def test_the_kit_imports_no_extra() -> None:
    """The kit stands on its base requirements alone: an Ansible controller installs only those."""
    extras = {
        module_of(requirement)
        for extra in ("cli", "server")
        for requirement in PYPROJECT["optional-dependencies"][extra]
    }
    for path in (ROOT / "kit").rglob("*.py"):
        imported = set(re.findall(r"^\s*(?:import|from) (\w+)", path.read_text(), re.MULTILINE))
        assert not imported & extras, f"{path.relative_to(ROOT)} imports {imported & extras}"


def test_extras_table_matches_pyproject() -> None:
    """The console scripts' install hint (sztp.extras) names the extras pyproject.toml declares."""
    from sztp.extras import EXTRA_MODULES

    for extra, modules in EXTRA_MODULES.items():
        declared = [
            item
            for item in PYPROJECT["optional-dependencies"][extra]
            if Requirement(item).name not in DATA_ONLY.get(extra, {})
        ]
        assert sorted(modules) == sorted(module_of(item) for item in declared), extra


def test_data_only_distributions_are_declared_and_installed() -> None:
    """What the server reads files from is in its extra, and the module it looks for exists."""
    from importlib.util import find_spec

    for extra, distributions in DATA_ONLY.items():
        declared = {Requirement(item).name for item in PYPROJECT["optional-dependencies"][extra]}
        for distribution, module in distributions.items():
            assert distribution in declared, f"{distribution} is not in the {extra} extra"
            assert find_spec(module) is not None, f"{distribution} provides no {module}"

"""The collection in an AWX / Ansible Automation Platform execution environment (docs/awx.md).

`ansible-builder create` turns docs/examples/awx/execution-environment.yml, with the wheel and
the collection artifact that `make dist` builds, into a build context. What the image build
would then do with it is run here too, without a container: the galaxy stage (ansible-galaxy on
the context's requirements.yml, offline) and the builder stage's introspection of the
collection that installs, which lists what the builder stage installs with pip and dnf.
requirements.txt must be the kit and pyproject.toml's dependencies, bindep.txt real packages.
The custom credential type's injectors, rendered as AWX renders them, must be the whole
connection of a module and of the inventory plugin to a real sztp-server with TLS on its admin
API.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from bindep.depends import Depends
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sztp.client import SztpClient
from sztp.labpki import write_lab_pki
from sztp_testing import running_server

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ANSIBLE_BUILDER = shutil.which("ansible-builder", path=str(BIN))
EXAMPLES = ROOT / "docs/examples/awx"
DEFINITION = EXAMPLES / "execution-environment.yml"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
VERSION = PROJECT["version"]
KIT_RELEASE = ".".join(VERSION.split(".")[:2])
# What ansible-builder's introspection leaves out of a collection's requirements because every
# execution environment has it already (introspect.py's EXCLUDE_REQUIREMENTS).
IN_EVERY_EE = {"pyyaml"}


def requirement_lines(path: Path) -> list[str]:
    """The entries of a pip or bindep requirements file, without comments."""
    lines = (re.sub(r"(^|\s+)#.*$", "", line).strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


@dataclass(frozen=True)
class Built:
    dist: Path
    context: Path
    collections: Path  # what the galaxy stage installs from the context


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    assert ANSIBLE_BUILDER, (
        "ansible-builder is missing from the test environment: `make test` installs it"
    )
    work = tmp_path_factory.mktemp("ee")
    dist = work / "dist"
    subprocess.run(
        ["bash", str(ROOT / "scripts/build-dist.sh"), str(dist)],
        env={**os.environ, "PYTHON": sys.executable},
        check=True,
        capture_output=True,
        timeout=300,
    )
    # The definition where it sits in a checkout, dist/ three levels up, as after `make dist`.
    definition = work / DEFINITION.relative_to(ROOT)
    definition.parent.mkdir(parents=True)
    shutil.copyfile(DEFINITION, definition)
    context = work / "context"
    created = subprocess.run(
        [ANSIBLE_BUILDER, "create", "-f", str(definition), "--context", str(context)],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    assert "No matches" not in created.stdout + created.stderr, created.stdout
    collections = work / "collections"
    installed = subprocess.run(
        [
            str(BIN / "ansible-galaxy"),
            "collection",
            "install",
            "-r",
            "requirements.yml",
            "--collections-path",
            str(collections),
        ],
        # The galaxy stage's working directory holds _build; a Galaxy server nothing answers
        # at makes any attempt to reach one fail.
        cwd=context / "_build",
        env={**os.environ, "ANSIBLE_GALAXY_SERVER": "http://127.0.0.1:9"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return Built(dist, context, collections)


def stages(containerfile: Path) -> dict[str, list[str]]:
    """The Containerfile's lines by build stage (`FROM ... AS name`)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in containerfile.read_text().splitlines():
        if match := re.match(r"FROM \S+ AS (\w+)$", line):
            current = found.setdefault(match.group(1), [])
        elif line.strip():
            current.append(line)
    return found


def test_the_context_installs_the_collection_artifact_and_the_kit_wheel(
    built: Built, tmp_path: Path
) -> None:
    build = built.context / "_build"
    artifact = f"sztp-bootstrap-{VERSION}.tar.gz"
    wheel = f"sztp-{VERSION}-py3-none-any.whl"
    assert (build / "collections" / artifact).read_bytes() == (built.dist / artifact).read_bytes()
    assert (build / "kit" / wheel).read_bytes() == (built.dist / wheel).read_bytes()
    manifest = built.collections / "ansible_collections/sztp/bootstrap/MANIFEST.json"
    assert json.loads(manifest.read_text())["collection_info"]["version"] == VERSION

    steps = stages(built.context / "Containerfile")
    assert "COPY _build/kit/ /output/kit/" in steps["base"]
    galaxy = [line for line in steps["galaxy"] if "ansible-galaxy collection install" in line]
    assert len(galaxy) == 1 and "-r requirements.yml" in galaxy[0], steps["galaxy"]
    # pip looks for the kit beside PyPI where the requirements are resolved and installed.
    for stage, installs in (("builder", "scripts/assemble"), ("final", "install-from-bindep")):
        lines = steps[stage]
        find_links = lines.index("ARG PIP_FIND_LINKS=/output/kit")
        assert find_links < next(i for i, line in enumerate(lines) if installs in line), lines

    # What pip finds there, with no index at all: the kit the collection requires.
    downloaded = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--no-index", "--no-deps"),
            *("--find-links", str(build / "kit"), "--dest", str(tmp_path)),
            f"sztp=={KIT_RELEASE}.*",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert downloaded.returncode == 0, downloaded.stderr
    assert [path.name for path in tmp_path.iterdir()] == [wheel]


def test_the_builder_stage_installs_the_collection_requirements(
    built: Built, tmp_path: Path
) -> None:
    introspected = subprocess.run(
        [
            sys.executable,
            str(built.context / "_build/scripts/introspect.py"),
            "introspect",
            str(built.collections),
            *("--write-pip", str(tmp_path / "requirements.txt")),
            *("--write-bindep", str(tmp_path / "bindep.txt")),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert introspected.returncode == 0, introspected.stdout + introspected.stderr
    ours = requirement_lines(ROOT / "requirements.txt")
    assert requirement_lines(tmp_path / "requirements.txt") == [
        line for line in ours if re.split(r"[<>=!~\[ ]", line)[0].lower() not in IN_EVERY_EE
    ]
    assert f"sztp=={KIT_RELEASE}.*" in requirement_lines(tmp_path / "requirements.txt")
    assert requirement_lines(tmp_path / "bindep.txt") == requirement_lines(ROOT / "bindep.txt")


def test_the_collection_metadata_names_the_requirement_files() -> None:
    meta = yaml.safe_load((ROOT / "meta/execution-environment.yml").read_text())
    assert meta == {
        "version": 1,
        "dependencies": {"python": "requirements.txt", "system": "bindep.txt"},
    }


def test_requirements_are_the_kit_and_its_dependencies_from_pyproject() -> None:
    assert requirement_lines(ROOT / "requirements.txt") == [
        f"sztp=={KIT_RELEASE}.*",
        *PROJECT["dependencies"],
    ], "requirements.txt must list the kit, then pyproject.toml's dependencies as declared there"


def bindep_packages(profiles: list[str]) -> list[str]:
    depends = Depends((ROOT / "bindep.txt").read_text())
    return [rule[0] for rule in depends.active_rules(profiles)]


def test_bindep_installs_nothing_at_run_time_and_builds_on_rpm_and_debian() -> None:
    rpm = ["platform:rpm", "platform:centos", "platform:redhat"]
    debian = ["platform:dpkg", "platform:debian"]
    # Without the compile profile: what the final image would get.
    assert bindep_packages(rpm) == []
    assert bindep_packages(debian) == []
    rpm_build = bindep_packages(["compile", *rpm])
    assert {"gcc", "python3-devel", "openssl-devel", "libffi-devel", "rust", "cargo"} <= set(
        rpm_build
    )
    debian_build = bindep_packages(["compile", *debian])
    assert {"gcc", "python3-dev", "libssl-dev", "libffi-dev"} <= set(debian_build)
    # This machine is Debian 12, like every machine `make test` runs on: apt knows the names.
    apt_cache = shutil.which("apt-cache")
    assert apt_cache, "apt-cache is missing: the suite runs on Debian 12 (make test)"
    for package in debian_build:
        shown = subprocess.run(
            [apt_cache, "show", package], capture_output=True, text=True, check=False
        )
        assert shown.returncode == 0 and f"Package: {package}" in shown.stdout, package


# ---- the custom credential type


def credential_type() -> tuple[dict[str, object], dict[str, dict[str, str]]]:
    inputs = yaml.safe_load((EXAMPLES / "credential-type-inputs.yml").read_text())
    injectors = yaml.safe_load((EXAMPLES / "credential-type-injectors.yml").read_text())
    return inputs, injectors


def inject(inputs: dict[str, str], directory: Path) -> dict[str, str]:
    """The environment AWX gives a job for a credential of the type with these `inputs`: each
    file template rendered into a file of its own (`tower.filename.<label>` names it), then
    each env template, in a Jinja2 sandbox as AWX does."""
    _, injectors = credential_type()
    sandbox = ImmutableSandboxedEnvironment()
    filenames = {}
    for label, template in injectors["file"].items():
        path = directory / label.partition(".")[2]
        path.write_text(sandbox.from_string(template).render(**inputs))
        path.chmod(0o600)
        filenames[path.name] = str(path)
    return {
        name: sandbox.from_string(template).render(tower={"filename": filenames}, **inputs)
        for name, template in injectors["env"].items()
    }


def ansible_env(collections: Path) -> dict[str, str]:
    """This environment without SZTP_* variables, with `collections` for Ansible."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("SZTP_")}
    return {**base, "ANSIBLE_COLLECTIONS_PATH": str(collections), "ANSIBLE_NOCOLOR": "1"}


def module_env_fallbacks(collections: Path) -> set[str]:
    """The environment variables the modules' connection options fall back to, from the
    argument spec of the collection as installed (in a Python of its own: the import needs
    the collections path)."""
    script = (
        "import json\n"
        "from ansible_collections.sztp.bootstrap.plugins.module_utils.sztp import "
        "CONNECTION_ARGUMENT_SPEC as spec\n"
        "print(json.dumps([name for option in spec.values()\n"
        "    for name in option.get('fallback', (None, []))[1]]))\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(collections)},
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(shown.stdout))


def inventory_env_names(collections: Path) -> set[str]:
    shown = subprocess.run(
        [str(BIN / "ansible-doc"), "-t", "inventory", "--json", "sztp.bootstrap.devices"],
        env=ansible_env(collections),
        capture_output=True,
        text=True,
        check=True,
    )
    options = json.loads(shown.stdout)["sztp.bootstrap.devices"]["doc"]["options"]
    return {entry["name"] for option in options.values() for entry in option.get("env", [])}


def test_the_credential_type_sets_only_what_the_modules_and_the_inventory_read(
    built: Built,
) -> None:
    inputs, injectors = credential_type()
    fields = {field["id"]: field for field in inputs["fields"]}  # type: ignore[index]
    assert fields["token"].get("secret") is True
    assert fields["ca_bundle"].get("multiline") is True
    assert set(inputs["required"]) == set(fields)  # type: ignore[arg-type]
    modules = module_env_fallbacks(built.collections)
    inventory = inventory_env_names(built.collections)
    assert {"SZTP_SERVER", "SZTP_TOKEN_FILE", "SZTP_CA_BUNDLE"} <= modules
    unread = set(injectors["env"]) - (modules & inventory)
    assert not unread, f"the injectors set variables the plugins do not read: {sorted(unread)}"
    # Every file AWX writes is named to the plugins, and every input reaches them.
    env_templates = " ".join(injectors["env"].values())
    for label in injectors["file"]:
        assert f"tower.filename.{label.partition('.')[2]}" in env_templates, label
    everything = env_templates + " ".join(injectors["file"].values())
    for field in fields:
        assert re.search(rf"{{{{\s*{field}\s*}}}}", everything), field


def run_status_info(collections: Path, env: dict[str, str]) -> tuple[bool, dict[str, object]]:
    """`ansible localhost -m sztp.bootstrap.status_info`, no option given: whether it
    succeeded, and its result."""
    shown = subprocess.run(
        [
            *(str(BIN / "ansible"), "localhost", "-i", "localhost,", "-c", "local", "-o"),
            *("-m", "sztp.bootstrap.status_info"),
            *("-e", f"ansible_python_interpreter={sys.executable}"),
        ],
        env={**ansible_env(collections), **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    # -o: one line, `localhost | SUCCESS => {...}` (or FAILED!).
    line = re.search(r"^localhost \| (\S+) => (\{.*\})$", shown.stdout, re.MULTILINE)
    assert line, shown.stdout + shown.stderr
    result: dict[str, object] = json.loads(line.group(2))
    return line.group(1) == "SUCCESS", result


def test_a_module_and_the_inventory_reach_the_server_with_the_credential_alone(
    built: Built, tmp_path: Path
) -> None:
    lab = write_lab_pki(tmp_path / "pki", [])
    with running_server(tmp_path / "server", lab=lab, admin_tls=True) as server:
        assert server.admin_url.startswith("https://")
        with SztpClient(server.admin_url, server.token, ca_bundle=lab.tls_ca.certificate) as client:
            client.apply_state({"device": {"SN-AWX-1": {"model": "DPU-AWX"}}})
        (tmp_path / "job").mkdir()
        env = inject(
            {
                "server": server.admin_url,
                "token": server.token,
                "ca_bundle": lab.tls_ca.certificate.read_text(),
            },
            tmp_path / "job",
        )

        succeeded, result = run_status_info(built.collections, env)
        assert succeeded, result
        assert result["counts"] == {  # type: ignore[comparison-overlap]
            "not-seen": 1,
            **dict.fromkeys(("in-progress", "rebooting", "complete", "failed", "stalled"), 0),
        }

        source = tmp_path / "awx.sztp.yml"
        source.write_text("plugin: sztp.bootstrap.devices\n")
        listed = subprocess.run(
            [str(BIN / "ansible-inventory"), "-i", str(source), "--list"],
            env={**ansible_env(built.collections), **env},
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["sztp_devices"]["hosts"] == ["SN-AWX-1"]

        # Each injected variable is needed: without the CA bundle the server's certificate
        # is not trusted, without the server there is nothing to reach.
        without_ca = {key: value for key, value in env.items() if key != "SZTP_CA_BUNDLE"}
        succeeded, result = run_status_info(built.collections, without_ca)
        assert not succeeded and "TLS handshake failed" in str(result["msg"]), result
        succeeded, result = run_status_info(built.collections, {})
        assert not succeeded and "no server" in str(result["msg"]), result


def test_the_credential_type_is_the_one_the_page_documents() -> None:
    page = (ROOT / "docs/awx.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", page, re.DOTALL)
    inputs, injectors = credential_type()
    assert inputs in [yaml.safe_load(block) for block in blocks]
    assert injectors in [yaml.safe_load(block) for block in blocks]


def test_the_collection_artifact_ships_the_execution_environment_files(built: Built) -> None:
    with tarfile.open(built.dist / f"sztp-bootstrap-{VERSION}.tar.gz") as archive:
        names = set(archive.getnames())
    assert {
        "meta/execution-environment.yml",
        "requirements.txt",
        "bindep.txt",
        "docs/examples/awx/execution-environment.yml",
    } <= names

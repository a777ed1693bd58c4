"""The agent's Debian package as scripts/build-agent-deb.sh builds it from this repository: its
control fields, maintainer scripts, files and modes, paths moved from the staging directory to
/opt/sztp-agent, and the packaged venv running `ztp --version` from /opt/sztp-agent (in a
private mount namespace, so the machine's /opt is untouched). Installing it for real, enabling
the unit and bootstrapping at boot is the molecule `stack` scenario's part."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sztp_testing import ROOT

SCRIPT = ROOT / "scripts" / "build-agent-deb.sh"
DATA = ROOT / "agent" / "sztp_agent" / "data"
PREFIX = "/opt/sztp-agent"
HANDLERS = ("install-image", "apply-configuration")
SHARED = ("dhclient-sztp.conf", "dhclient6-sztp.conf", "openssl-tpm2.cnf")

pytestmark = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None or not Path("/usr/bin/python3").exists(),
    reason="building the agent's .deb needs dpkg-deb and Debian's /usr/bin/python3",
)


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The script's TMPDIR: where it stages the package, a path that must not ship in it."""
    return tmp_path_factory.mktemp("agent-deb-staging")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory, staging: Path) -> Path:
    """The package, built once (about 15 s: a venv and pip from the package index). The wheel
    is the one SZTP_WHEEL names (as `make molecule` has it) or one built from the checkout by
    the script with this Python."""
    out = tmp_path_factory.mktemp("agent-deb")
    wheel = os.environ.get("SZTP_WHEEL")
    built = subprocess.run(
        ["bash", str(SCRIPT), str(out), *([wheel] if wheel else [])],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(staging)},
    )
    assert built.returncode == 0, built.stderr
    path = Path(built.stdout.strip().splitlines()[-1])
    assert path.parent == out
    return path


@pytest.fixture(scope="module")
def tree(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("agent-deb-tree")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def dpkg_deb(*arguments: str) -> str:
    return subprocess.run(
        ["dpkg-deb", *arguments], capture_output=True, text=True, check=True
    ).stdout


def test_name_and_control_fields(deb: Path) -> None:
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert deb.name == f"sztp-agent_0.1.0_{arch}.deb"
    fields = dict(
        line.split(": ", 1)
        for line in dpkg_deb("--field", str(deb)).splitlines()
        if not line.startswith(" ")
    )
    assert fields["Package"] == "sztp-agent"
    assert fields["Version"] == "0.1.0"
    assert fields["Architecture"] == arch
    assert "python3 (>= 3.11)" in fields["Depends"]
    assert "python3 (<< " in fields["Depends"], "the venv's lib/python3.X needs that minor"
    assert fields["Suggests"] == "tpm2-openssl, tpm2-tools"  # for an IDevID key in a TPM
    assert int(fields["Installed-Size"]) > 0


def test_conffiles_and_maintainer_scripts(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(tmp_path / "DEBIAN")], check=True)
    control = tmp_path / "DEBIAN"
    assert (control / "conffiles").read_text().split() == [
        f"/etc/sztp-agent/handlers/{name}" for name in HANDLERS
    ]
    for script in ("postinst", "prerm", "postrm"):
        assert (control / script).stat().st_mode & 0o777 == 0o755
        checked = subprocess.run(["sh", "-n", str(control / script)], check=False)
        assert checked.returncode == 0, script
    postinst = (control / "postinst").read_text()
    # Enabled, never started: the device bootstraps at its next boot.
    assert "deb-systemd-helper enable sztp-agent.service" in postinst
    assert "systemctl enable sztp-agent.service" in postinst
    commands = [line for line in postinst.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in commands if "start" in line]
    # Purge takes the agent's state, never the operator's configuration and IDevID.
    postrm = (control / "postrm").read_text()
    assert "rm -rf /var/lib/sztp-agent" in postrm
    assert "rm -rf /etc" not in postrm


def test_files_and_modes(deb: Path) -> None:
    listing = {}
    for line in dpkg_deb("--contents", str(deb)).splitlines():
        mode, owner, _size, _date, _time, name, *link = line.split()
        listing[name.removeprefix(".")] = (mode, owner, link)
    assert all(owner == "root/root" for _, owner, _ in listing.values())
    for name in HANDLERS:
        assert listing[f"/etc/sztp-agent/handlers/{name}"][0] == "-rwxr-xr-x"
    assert listing["/lib/systemd/system/sztp-agent.service"][0] == "-rw-r--r--"
    assert listing["/usr/bin/ztp"][0].startswith("l")
    assert listing["/usr/bin/ztp"][2] == ["->", f"{PREFIX}/bin/ztp"]
    for name in SHARED:
        assert listing[f"/usr/share/sztp-agent/{name}"][0] == "-rw-r--r--"
    # Debian's interpreter, which the device has; no pip, no commands of the other extras.
    assert listing[f"{PREFIX}/bin/python3"][2] == ["->", "/usr/bin/python3"]
    for absent in ("pip", "sztpctl", "sztp-server"):
        assert f"{PREFIX}/bin/{absent}" not in listing
    assert not [name for name in listing if "__pycache__" in name], "postinst compiles"
    assert listing["/usr/share/doc/sztp-agent/copyright"][0] == "-rw-r--r--"


def test_paths_moved_to_opt(tree: Path, staging: Path) -> None:
    venv = tree / PREFIX.lstrip("/")
    assert (venv / "bin" / "ztp").read_text().splitlines()[0] == f"#!{PREFIX}/bin/python3"
    assert f"command = /usr/bin/python3 -m venv {PREFIX}" in (venv / "pyvenv.cfg").read_text()
    assert f"VIRTUAL_ENV={PREFIX}" in (venv / "bin" / "activate").read_text()
    # The unit is the agent's own template, for the packaged Python.
    unit = (tree / "lib/systemd/system/sztp-agent.service").read_text()
    template = (DATA / "sztp-agent.service").read_text()
    assert unit == template.replace("@ZTP@", f"{PREFIX}/bin/python -m sztp_agent")
    for name in HANDLERS:
        shipped = tree / "etc/sztp-agent/handlers" / name
        assert shipped.read_bytes() == (DATA / "handlers" / name).read_bytes()
    for name in SHARED:
        assert (tree / "usr/share/sztp-agent" / name).read_bytes() == (DATA / name).read_bytes()
    staged = subprocess.run(
        ["grep", "-rlI", "-e", str(staging), "-e", str(ROOT), str(venv)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert staged.stdout == "", "the build machine's paths are recorded in the package"


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="mounting the package at /opt/sztp-agent in a private mount namespace needs root",
)
def test_runs_from_opt(tree: Path) -> None:
    """The packaged venv where the package puts it: /opt (a tmpfs in a private mount namespace)
    with the extracted /opt/sztp-agent bound on it."""
    script = (
        "set -e; mount -t tmpfs sztp-agent-test /opt; mkdir /opt/sztp-agent; "
        'mount --bind "$1" /opt/sztp-agent; "$2" --version; '
        "/opt/sztp-agent/bin/python -c 'import sztp_agent, sztp; print(sztp_agent.__file__)'"
    )
    ran = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(tree / PREFIX.lstrip("/")),
            f"{PREFIX}/bin/ztp",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        # As on a device: nothing but the package's venv to import from.
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )
    if ran.returncode != 0 and "mount" in ran.stderr and "permission" in ran.stderr.lower():
        pytest.skip(f"no mount namespace here: {ran.stderr.strip()}")
    assert ran.returncode == 0, ran.stderr
    version, module = ran.stdout.splitlines()
    assert version == "sztp-agent 0.1.0"
    assert module.startswith(f"{PREFIX}/lib/python3.")


def test_role_lock_is_the_kits() -> None:
    """The agent role installs the kit's locked dependencies from its own copy of the lock
    (roles ship their files): the copy is requirements/kit.txt as `make lock` writes it."""
    role_lock = ROOT / "roles" / "agent" / "files" / "agent-requirements.txt"
    assert role_lock.read_text() == (ROOT / "requirements" / "kit.txt").read_text(), (
        "cp requirements/kit.txt roles/agent/files/agent-requirements.txt"
    )

"""The command blocks of docs/tutorial.md, docs/gitops.md, docs/templates.md, docs/ldevid.md
and docs/collection.md run as written.

Each page's blocks are run in page order in ONE bash session (so `cd`, variables and
background servers carry over, as for a user typing them), inside a fresh temporary directory,
with the venv's bin first on PATH, HOME and XDG_CONFIG_HOME in the temporary directory, no
SZTP_* variables from the caller, COLUMNS=80 and NO_COLOR=1. Every process the session started
is killed (its process group) at the end, whatever happened. The machinery is in doc_runner.py.

Conventions a page follows (a page added here must follow them too):

- A ```sh (or ```bash / ```console) block is commands to run. The placeholder
  `/path/to/sztp` is replaced by this checkout.
- A ```text block that follows a command block with nothing but blank lines in between is
  that block's output: stdout and stderr together, as a terminal shows them. A `text` block
  after prose is an illustration and is not compared. The comparison is line by line and
  strict, except that:
  - blank lines and trailing blanks are ignored;
  - a line that is only `...` stands for any number of lines (output shortened);
  - `...` inside a line stands for any characters on that line (dates, keys, tokens, temp
    paths, durations);
  - tables: a rule (a line of `─`) matches a rule of any width, and a run of spaces inside a
    line (after its indentation) matches any run of spaces, since columns are as wide as
    their widest (variable) cell;
  - a long line may be shown wrapped over up to 4 lines, as an 80-column terminal does (the
    page's lines are joined with single spaces before comparing).
- Every command must exit 0, unless a comment on one of its lines says `# ... exit N`; then
  it must exit exactly N (e.g. `sztpctl diff -f fleet.yaml --prune    # exit 1`).
- `<!-- not run: REASON -->` just before a command block: the block is not run (hardware,
  network...); the test lists such blocks.
- `<!-- doc-test run: WHAT` newline, COMMANDS, `-->` just before a block: hidden commands
  run at that point in the session (exit 0 required), standing for an instruction the page
  gives in prose (WHAT says which, e.g. "in fleet.yaml, add ..."). Avoid `--` in them.
- `<!-- doc-test matches: FILE -->` just before a ```yaml block: once the commands before it
  have run, FILE (relative to the session's current directory) holds the same YAML data.
- Other yaml/json/text blocks are illustrations and are not run.

Ports: tutorial.md uses fixed ports (8443, 7080, 8444, as it says); its test is skipped if
one is taken. gitops.md takes the server from SZTP_SERVER, so its server (set up as the page's
"Before you start" requires, with the tutorial's fleet applied) gets free ports.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from doc_runner import HostSession, Session, output_matches, parse_blocks, run_page

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
VENV_BIN = Path(sys.executable).parent
BLOCK_TIMEOUT = 60.0
TUTORIAL_PORTS = (8443, 7080, 8444)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as the servers do: connections of an earlier run in TIME_WAIT do not take the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def session_env(tmp: Path) -> dict[str, str]:
    home = tmp / "home"
    (home / ".config").mkdir(parents=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SZTP_", "PYTEST_", "COV_")) and key not in ("COLUMNS", "LINES")
    }
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        COLUMNS="80",
        NO_COLOR="1",
        TERM="dumb",
        PYTHONDONTWRITEBYTECODE="1",
    )
    for key in ("VIRTUAL_ENV", "SN_0002_PASSWORD", "SZTP_OWNER_KEY"):
        env.pop(key, None)
    return env


@pytest.fixture
def session(tmp_path: Path) -> Iterator[tuple[Session, Path]]:
    work = tmp_path / "work"
    work.mkdir()
    shell = Session(work, tmp_path / "harness", session_env(tmp_path))
    try:
        yield shell, work
    finally:
        shell.close()


def page_text(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8").replace("/path/to/sztp", str(ROOT))


def report(name: str, markdown: str, shell: Session, work: Path) -> None:
    started = time.monotonic()
    result = run_page(name, markdown, shell, work, BLOCK_TIMEOUT)
    for block, reason in result.skipped:
        print(f"{name}: block at line {block.line} not run: {reason}")
    print(f"{name}: {len(result.ran)} block(s) run in {time.monotonic() - started:.1f} s")
    if result.problems:
        pytest.fail("\n".join(result.problems), pytrace=False)


def require_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


def test_tutorial_runs_as_written(session: tuple[Session, Path]) -> None:
    require_tools("bash", "openssl", "curl")
    taken = [port for port in TUTORIAL_PORTS if not port_free(port)]
    if taken:
        pytest.skip(f"docs/tutorial.md uses fixed ports; taken here: {taken}")
    shell, work = session
    report("docs/tutorial.md", page_text("tutorial.md"), shell, work)


# The tutorial's lab up to its step 4, in the current directory: PKI, vouchers, image, day-0
# configuration.
LAB_FILES = r"""
sztpctl pki init pki --serial SN-0001 --serial SN-0002 --hw-model DPU-LAB-1 > /dev/null
for serial in SN-0001 SN-0002; do
  sztpctl voucher create --serial "$serial" --pinned-cert pki/owner/ca.pem \
    --masa-cert pki/manufacturer/masa.pem --masa-key pki/manufacturer/masa.key \
    -o "$serial.vcj" > /dev/null
done
printf 'LabOS 1.2 boot image\n' > labos-1.2.img
printf 'hostname dpu-lab\n' > day0.cfg
"""
# The tutorial's lab up to its step 6, in the current directory, on free ports: LAB_FILES and
# the server running (its token file appears once it is ready). The set-ups below put it
# where they say @LAB_WITH_SERVER@.
LAB_WITH_SERVER = (
    LAB_FILES
    + r"""
mkdir -p state
cat > server.yaml <<EOF
database_url: sqlite:///$PWD/state/sztp.db
device_listeners: [{{host: 127.0.0.1, port: {device_port}}}]
admin_listener: {{host: 127.0.0.1, port: {admin_port}}}
admin_token_file: $PWD/state/admin-token
EOF
sztp-server run --config server.yaml > server.log 2>&1 &
for _ in $(seq 300); do [ -s state/admin-token ] && break; sleep 0.1; done
"""
)


# The state docs/gitops.md expects ("Before you start"): a running server with an admin token,
# holding the tutorial's fleet (6 resources, revision 1).
GITOPS_SERVER = r"""
set -e
mkdir -p {server} && cd {server}
cp {root}/docs/examples/lab-fleet.yaml fleet.yaml
@LAB_WITH_SERVER@
export SZTP_SERVER=http://127.0.0.1:{admin_port}
export SZTP_TOKEN="$(cat state/admin-token)"
sztpctl apply -f fleet.yaml > /dev/null
cd {work}
set +e
"""


def start_gitops_server(shell: Session, work: Path, server: Path, page: str) -> None:
    """GITOPS_SERVER in `server`, the session left in `work` with SZTP_SERVER exported."""
    setup = GITOPS_SERVER.replace("@LAB_WITH_SERVER@", LAB_WITH_SERVER).format(
        server=server,
        root=ROOT,
        work=work,
        device_port=free_port(),
        admin_port=free_port(),
    )
    result = shell.run(setup, BLOCK_TIMEOUT)
    log = server / "server.log"
    assert result.status == 0 and not result.failures, (
        f"could not start the server docs/{page} needs:\n{result.output}\n"
        + (log.read_text(errors="replace") if log.exists() else "")
    )


def test_gitops_runs_as_written(session: tuple[Session, Path], tmp_path: Path) -> None:
    require_tools("bash", "curl", "python3")
    shell, work = session
    start_gitops_server(shell, work, tmp_path / "server", "gitops.md")
    report("docs/gitops.md", page_text("gitops.md"), shell, work)


LDEVID_PORTS = (9443, 9080)


def test_ldevid_runs_as_written(session: tuple[Session, Path]) -> None:
    """docs/ldevid.md, from the tutorial's lab files with no server running (the page starts
    its own on fixed ports)."""
    require_tools("bash", "openssl")
    taken = [port for port in LDEVID_PORTS if not port_free(port)]
    if taken:
        pytest.skip(f"docs/ldevid.md uses fixed ports; taken here: {taken}")
    shell, work = session
    result = shell.run("set -e\n" + LAB_FILES + "set +e\n", BLOCK_TIMEOUT)
    assert result.status == 0 and not result.failures, result.output
    report("docs/ldevid.md", page_text("ldevid.md"), shell, work)


def test_templates_runs_as_written(session: tuple[Session, Path], tmp_path: Path) -> None:
    """docs/templates.md, on the same server set-up as docs/gitops.md."""
    require_tools("bash")
    shell, work = session
    start_gitops_server(shell, work, tmp_path / "server", "templates.md")
    report("docs/templates.md", page_text("templates.md"), shell, work)


# The state the end-to-end example of docs/collection.md expects: the tutorial's lab after its
# step 6 (PKI, vouchers, image, day-0 configuration; the server running with no fleet yet; the
# admin token in $XDG_CONFIG_HOME/sztp/lab.token), in ./sztp-lab, with the server on free ports
# and SZTP_SERVER / SZTP_TOKEN_FILE exported as the page says. No ANSIBLE_* variables of the
# caller: the page relies on Ansible's defaults (~/.ansible under the session's HOME).
COLLECTION_LAB = r"""
set -e
for variable in $(compgen -e | grep '^ANSIBLE_' || true); do unset "$variable"; done
mkdir -p {lab} && cd {lab}
mkdir -p "$XDG_CONFIG_HOME/sztp"
@LAB_WITH_SERVER@
mv state/admin-token "$XDG_CONFIG_HOME/sztp/lab.token"
export SZTP_SERVER=http://127.0.0.1:{admin_port}
export SZTP_TOKEN_FILE="$XDG_CONFIG_HOME/sztp/lab.token"
cd {work}
set +e
"""


def test_collection_runs_as_written(session: tuple[Session, Path]) -> None:
    """docs/collection.md: the collection built from this checkout and installed (by default
    and with -p), then the end-to-end playbook and the inventory plugin against a server. The
    virtualenv block is not run (it needs PyPI): the session's venv, which holds ansible-core
    and the kit, stands for it, and test_collection_install_commands checks it."""
    require_tools("bash", "tar")
    shell, work = session
    lab = work / "sztp-lab"
    setup = COLLECTION_LAB.replace("@LAB_WITH_SERVER@", LAB_WITH_SERVER).format(
        lab=lab, work=work, device_port=free_port(), admin_port=free_port()
    )
    result = shell.run(setup, BLOCK_TIMEOUT)
    log = lab / "server.log"
    assert result.status == 0 and not result.failures, (
        f"could not set up the lab docs/collection.md needs:\n{result.output}\n"
        + (log.read_text(errors="replace") if log.exists() else "")
    )
    report("docs/collection.md", page_text("collection.md"), shell, work)


LOCK = "requirements/kit.txt"


def install_block() -> str:
    """The command block of docs/collection.md that makes the controller's virtualenv."""
    blocks = parse_blocks(page_text("collection.md"))
    found = [b.text for b in blocks if b.lang == "sh" and "pip install --no-deps" in b.text]
    assert len(found) == 1, "docs/collection.md should have one block installing the kit"
    return found[0]


def locked_versions() -> dict[str, str]:
    """Name -> version of every package in the kit lock; each must be pinned with hashes."""
    pins: dict[str, str] = {}
    text = (ROOT / LOCK).read_text(encoding="utf-8")
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = entry.split("\\", 1)[0].strip()
        if not first or first.startswith("#"):
            continue
        name, _, version = first.partition("==")
        assert version and "--hash=sha256:" in entry, f"{LOCK}: {first} is not pinned with hashes"
        pins[canonicalize_name(name)] = version
    return pins


def test_collection_install_commands() -> None:
    """What docs/collection.md's virtualenv block claims, checked offline: the ansible-core
    range agrees with meta/runtime.yml and holds the release the suite runs; the lock pins
    every package with hashes, leaves ansible-core to the user, and satisfies every dependency
    of `sztp`, which `pip install --no-deps` then installs alone. With SZTP_TEST_NETWORK=1 the
    block also runs as written in a fresh venv (it downloads from PyPI)."""
    from ansible.release import __version__ as ansible_version

    block = install_block()
    lines = block.splitlines()
    assert lines[0].startswith("python3 -m venv ") and lines[1].startswith(". ")
    hashed = f'pip install --require-hashes -r "$REPO/{LOCK}"'
    assert lines.index('pip install --no-deps "$REPO"') > lines.index(hashed)
    core = next(Requirement(m[1]) for m in re.finditer(r"pip install '([^']+)'", block))
    assert core.name == "ansible-core"
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    declared = SpecifierSet(runtime["requires_ansible"])
    assert set(declared) <= set(core.specifier), f"{core} but the collection says {declared}"
    assert core.specifier.contains(ansible_version), (
        f"the suite runs ansible-core {ansible_version}, outside the page's {core.specifier}"
    )

    pins = locked_versions()
    assert "ansible-core" not in pins, f"{LOCK} pins ansible-core; the page says it does not"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{LOCK} lacks {name}, a dependency of sztp"
        assert requirement.specifier.contains(pins[name]), (
            f"{LOCK} pins {name}=={pins[name]}, outside sztp's {requirement.specifier}"
        )

    if os.environ.get("SZTP_TEST_NETWORK") != "1":
        return
    tmp = Path(tempfile.mkdtemp(prefix="sztp-controller-venv-"))
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
        env.update(HOME=str(tmp), REPO=str(ROOT), PATH="/usr/local/bin:/usr/bin:/bin")
        script = f"set -ex\ncd {tmp}\n{block}ansible --version\npython -c 'import sztp'\n"
        run = subprocess.run(
            ["bash", "-c", script], env=env, capture_output=True, text=True, check=False
        )
        assert run.returncode == 0, run.stdout + run.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("name", ["tutorial.md", "gitops.md", "templates.md", "ldevid.md"])
def test_pages_have_commands_with_expected_output(name: str) -> None:
    """Guards the harness itself: the pages still use the conventions it relies on."""
    blocks = parse_blocks(page_text(name))
    commands = [block for block in blocks if block.lang == "sh"]
    assert commands, f"no sh blocks found in docs/{name}"
    assert any(block.expected is not None for block in commands)


# ---- the harness itself: a page that is wrong must fail, and say where and why

BROKEN_PAGE = """# A page

<!-- not run: needs a real device -->
```sh
reboot-the-device
```

Some prose.

```sh
mkdir lab && cd lab
export GREETING=hello
echo "$GREETING at $(date)"
```

```text
hello at ...
```

```sh
printf 'a: 1\\n' > data.yaml
false    # exit 1
```

<!-- doc-test matches: data.yaml -->
```yaml
a: 1
```

```sh
echo "$GREETING from $(basename "$PWD")"
```

```text
goodbye from lab
```
"""


def test_harness_runs_a_page_and_reports_a_difference(session: tuple[Session, Path]) -> None:
    shell, work = session
    result = run_page("broken.md", BROKEN_PAGE, shell, work, 10)
    assert [block.line for block, _ in result.skipped] == [4]
    assert [reason for _, reason in result.skipped] == ["needs a real device"]
    assert len(result.ran) == 3
    assert len(result.problems) == 1
    problem = result.problems[0]
    assert problem.startswith("broken.md, block 6 (line 30):\n")
    assert 'echo "$GREETING from $(basename "$PWD")"' in problem
    assert "-goodbye from lab\n+hello from lab" in problem
    assert "text block at line 34" in problem


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("false    # exit 1", "false"), "command exited 1 (the page documents 0"),
        (
            ("false    # exit 1", "true    # exit 1"),
            "command exited 0, but the page documents exit 1",
        ),
        (("a: 1\n```", "a: 2\n```"), "the yaml block should match data.yaml"),
        (("hello at ...", "hello at"), "output differs from the text block at line 16"),
    ],
)
def test_harness_reports_each_kind_of_problem(
    session: tuple[Session, Path], change: tuple[str, str], message: str
) -> None:
    shell, work = session
    page = BROKEN_PAGE.replace(*change)
    assert page != BROKEN_PAGE
    result = run_page("broken.md", page, shell, work, 10)
    assert len(result.problems) == 1
    assert message in result.problems[0], result.problems[0]


def test_harness_stops_background_processes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    shell = Session(work, tmp_path / "harness", session_env(tmp_path))
    try:
        result = shell.run("sleep 300 &\necho $! > sleep.pid\n", 10)
        assert result.status == 0
        pid = int((work / "sleep.pid").read_text())
        os.kill(pid, 0)  # running
    finally:
        shell.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_block_timeout_is_reported(session: tuple[Session, Path]) -> None:
    shell, work = session
    result = run_page("slow.md", "```sh\necho started\nsleep 30\n```\n", shell, work, 1)
    assert "timed out after 1 s" in result.problems[0]
    assert "started" in result.problems[0]


@pytest.mark.parametrize(
    ("expected", "actual", "matches"),
    [
        ("a\n...\nz\n", "a\nb\nc\nz\n", True),
        ("a\n...\nz\n", "a\nz\n", True),
        ("at ...!\n", "at 12:00!\n", True),
        ("at ...!\n", "at 12:00?\n", False),
        ("a long line\nwrapped\n", "a long line wrapped\n", True),
        (" ───\n  A  B\n", "\n ─────────\n  A      B   \n\n", True),
        ("  {\n", "{\n", False),
        ("a\n", "a\nb\n", False),
    ],
)
def test_output_matching(expected: str, actual: str, matches: bool) -> None:
    assert output_matches(expected, actual) is matches


# A page with a host placeholder: `# on DEVICE` blocks run through the host's command (here
# `env`, so "the device" is this machine in the host's home directory), a `doc-test writes`
# block lands in a file there.
HOST_PAGE = """
<!-- doc-test writes: DEVICE:{target} -->
```text
written on the device
```

```sh
# on DEVICE
pwd
cat {target}
false    # exit 1
```

```text
{home}
written on the device
```

```sh
# on the controller
echo "back on $(basename "$PWD")"
```

```text
back on work
```
"""


def test_blocks_run_on_the_host_they_name(session: tuple[Session, Path], tmp_path: Path) -> None:
    shell, work = session
    home = tmp_path / "device-home"
    home.mkdir()
    target = home / "written.txt"
    device = HostSession(["env", f"HOME={home}"])
    page = HOST_PAGE.format(target=target, home=home)
    result = run_page("host.md", page, shell, work, 10, {"DEVICE": device})
    assert result.problems == [] and len(result.ran) == 2
    assert target.read_text() == "written on the device\n"

    failing = run_page(
        "host.md", page.replace("false    # exit 1", "false"), shell, work, 10, {"DEVICE": device}
    )
    assert "command exited 1 (the page documents 0" in failing.problems[0]
    assert "    false" in failing.problems[0]
    unknown = run_page("host.md", page, shell, work, 10, {})
    assert "no session for host 'DEVICE'" in unknown.problems[0]


def test_site_page_is_run_by_the_stack_scenario() -> None:
    """docs/site.md's blocks run in molecule's `stack` verify (tests/python/run_site_page.py,
    with a container as DEVICE); only the lab playbook (molecule's converge runs it) and the
    production example (no hosts here) are left out, each saying why."""
    blocks = parse_blocks(page_text("site.md"))
    commands = [block for block in blocks if block.lang == "sh"]
    skipped = [block for block in commands if any(k == "not run" for k, _ in block.markers)]
    assert len(skipped) == 2, [block.line for block in skipped]
    assert "example-production" in skipped[0].text and "playbooks/lab.yml" in skipped[1].text
    on_device = [block for block in commands if block.text.startswith("# on DEVICE")]
    assert len(on_device) == 2 and on_device[-1].expected is not None
    verify = (ROOT / "extensions/molecule/stack/verify.yml").read_text(encoding="utf-8")
    assert "tests/python/run_site_page.py" in verify
    converge = (ROOT / "extensions/molecule/stack/converge.yml").read_text(encoding="utf-8")
    assert "playbooks/lab.yml" in converge

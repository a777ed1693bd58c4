"""Run the command blocks of a documentation page in one bash session (see test_docs_run.py for
the conventions a page follows)."""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import yaml

COMMAND_LANGUAGES = ("sh", "bash", "console")
OUTPUT_LANGUAGES = ("text",)

_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
_MARKER = re.compile(
    r"<!--\s*(?P<kind>not run|doc-test run|doc-test matches|doc-test writes):?(?P<body>.*?)-->",
    re.S,
)
# A command block whose first line names a host placeholder runs on that host.
_ON_HOST = re.compile(r"\A# on (?P<host>[A-Z][A-Z0-9_]*)\b")
_EXIT = re.compile(r"#[^\n]*\bexit (?P<status>\d+)\b")


@dataclasses.dataclass
class Block:
    """One fenced block: its language, text, 1-based line of its opening fence, the markers
    (HTML comments) just before it, and whether only blank lines separate it from the block
    before it."""

    lang: str
    text: str
    line: int
    markers: list[tuple[str, str]]
    follows_block: bool
    expected: Block | None = None


def parse_blocks(markdown: str) -> list[Block]:
    lines = markdown.splitlines()
    blocks: list[Block] = []
    pending: list[str] = []  # non-blank lines since the last block closed
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if not match:
            if lines[index].strip():
                pending.append(lines[index])
            index += 1
            continue
        indent = len(match["indent"])
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and lines[index].strip() != "```":
            body.append(lines[index][indent:] if lines[index][:indent].isspace() else lines[index])
            index += 1
        index += 1  # closing fence
        between = "\n".join(pending)
        markers = [(m["kind"], m["body"].strip("\n ")) for m in _MARKER.finditer(between)]
        only_markers = _MARKER.sub("", between).strip() == ""
        blocks.append(
            Block(
                lang=match["lang"],
                text="\n".join(body) + "\n",
                line=start + 1,
                markers=markers,
                follows_block=bool(blocks) and only_markers,
            )
        )
        pending = []
    for previous, block in itertools.pairwise(blocks):
        if (
            previous.lang in COMMAND_LANGUAGES
            and block.lang in OUTPUT_LANGUAGES
            and block.follows_block
            and not block.markers
        ):
            previous.expected = block
    return blocks


# ---- expected output


def _line_pattern(expected: str) -> re.Pattern[str]:
    parts = [re.escape(part) for part in expected.split("...")]
    return re.compile(".*?".join(parts) + r"\Z")


def _rule(line: str) -> str:
    """Table layout depends on the widest cell: a rule (a line of `─`) stands for any rule, and
    a run of spaces after the line's indentation for any run."""
    if line.strip() and set(line.strip()) == {"─"}:
        return " ─…"
    indent = len(line) - len(line.lstrip(" "))
    return line[:indent] + re.sub(r" {2,}", " ", line[indent:])


def output_matches(expected: str, actual: str) -> bool:
    """True if `actual` matches `expected`: line by line, ignoring blank lines and trailing
    blanks; a line that is only `...` stands for any number of lines, `...` inside a line for
    any characters, a table rule (only `─`) for a rule of any width, a run of spaces inside a
    line (after its indentation) for any run of spaces, and up to 4 consecutive
    lines joined by spaces may match one actual line (the page shows a long line wrapped)."""
    want = [line.rstrip() for line in expected.splitlines() if line.strip()]
    have = [_rule(line.rstrip()) for line in actual.splitlines() if line.strip()]
    ellipsis = [line.strip() == "..." for line in want]

    def pattern(i: int, k: int) -> re.Pattern[str] | None:
        """Expected lines i..i+k-1 joined: the page wraps long lines as a terminal does."""
        if i + k > len(want) or any(ellipsis[i : i + k]):
            return None
        return _line_pattern(_rule(" ".join(want[i : i + k])))

    memo: dict[tuple[int, int], bool] = {}

    def match(i: int, j: int) -> bool:
        key = (i, j)
        if key not in memo:
            if i == len(want):
                result = j == len(have)
            elif ellipsis[i]:
                result = any(match(i + 1, k) for k in range(j, len(have) + 1))
            else:
                result = j < len(have) and any(
                    (compiled := pattern(i, k)) is not None
                    and compiled.match(have[j]) is not None
                    and match(i + k, j + 1)
                    for k in range(1, 5)
                )
            memo[key] = result
        return memo[key]

    return match(0, 0)


def output_diff(expected: str, actual: str) -> str:
    return "\n".join(
        difflib.unified_diff(
            [line.rstrip() for line in expected.splitlines() if line.strip()],
            [line.rstrip() for line in actual.splitlines() if line.strip()],
            "expected (page)",
            "actual",
            lineterm="",
        )
    )


# ---- exit statuses


def command_groups(script: str) -> list[tuple[int, int, int]]:
    """(first line, last line, documented exit status) of every command line of `script`, a
    command continued with `\\` being one; the status comes from a `# ... exit N` comment on
    any of its lines, else 0. Lines are 1-based."""
    groups: list[tuple[int, int, int]] = []
    first = 1
    status = 0
    for number, line in enumerate(script.splitlines(), start=1):
        match = _EXIT.search(line)
        if match:
            status = int(match["status"])
        if not line.rstrip().endswith("\\"):
            groups.append((first, number, status))
            first, status = number + 1, 0
    return groups


def group_of(groups: list[tuple[int, int, int]], line: int) -> tuple[int, int, int]:
    """The command line that `line` is part of (bash reports either its first or last line)."""
    for group in groups:
        if group[0] <= line <= group[1]:
            return group
    return (line, line, 0)


def command_text(script: str, group: tuple[int, int, int]) -> str:
    lines = script.splitlines()[group[0] - 1 : group[1]]
    return "\n".join("    " + line for line in lines)


# ---- the session


class BlockTimeout(Exception):
    pass


@dataclasses.dataclass
class Result:
    output: str
    status: int
    failures: list[tuple[int, int]]  # (line in the block, exit status) of failed commands


class Session:
    """One `bash` whose commands come from Python, block by block; `cd`, variables and
    background jobs carry over. Each block is sourced from a file with its output (stdout and
    stderr, interleaved as a terminal shows them) in another file; an ERR trap records every
    command that fails."""

    def __init__(self, cwd: Path, harness: Path, env: dict[str, str]) -> None:
        self.harness = harness
        harness.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            text=True,
            start_new_session=True,
        )

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def run(self, script: str, timeout: float) -> Result:
        self.count += 1
        n = self.count
        h = self.harness
        block = h / f"block-{n}.sh"
        block.write_text(script, encoding="utf-8")
        q = shlex.quote
        self.send(
            f'trap \'__e=$?; [ "${{BASH_SOURCE[0]-}}" = {q(str(block))} ] && '
            f'echo "$LINENO $__e" >> {q(str(h / f"err-{n}"))}\' ERR\n'
            f"source {q(str(block))} > {q(str(h / f'out-{n}'))} 2>&1 < /dev/null\n"
            f"echo $? > {q(str(h / f'status-{n}.tmp'))}; trap - ERR; "
            f"mv {q(str(h / f'status-{n}.tmp'))} {q(str(h / f'status-{n}'))}\n"
        )
        status_file = h / f"status-{n}"
        deadline = time.monotonic() + timeout
        while not status_file.exists():
            if self.process.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise BlockTimeout(self._read(h / f"out-{n}"))
            time.sleep(0.02)
        output = self._read(h / f"out-{n}")
        if not status_file.exists():  # the block ended the shell (`exit`)
            return Result(output, self.process.returncode or 0, [])
        failures = []
        for record in self._read(h / f"err-{n}").splitlines():
            line, status = record.split()
            failures.append((int(line), int(status)))
        return Result(output, int(status_file.read_text().strip()), failures)

    @staticmethod
    def _read(path: Path) -> str:
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Stop the shell and everything it started (its whole process group): SIGTERM, then
        SIGKILL for what is still there after 5 s."""
        pgid = self.process.pid  # start_new_session: the shell leads its own group
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                self.process.poll()  # reap the shell, or it keeps the group alive
                try:
                    os.killpg(pgid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.05)
        self.process.poll()


class HostSession:
    """Blocks run on another host (a container, a VM) through a command that reads a script
    on stdin and runs it there, e.g. `podman exec -i NAME`. Each block gets a fresh bash in
    the user's home directory: nothing but files carries over from one block to the next.
    Failed commands are recorded by the same ERR trap as in `Session`."""

    # Runs on the host: the block from stdin into a temporary file, sourced with its output
    # kept apart from the trap's records; both come back on stdout, split by a NUL byte.
    _WRAPPER = (
        'd=$(mktemp -d) && cat > "$d/block.sh" && cd && '
        'trap \'__e=$?; [ "${BASH_SOURCE[0]-}" = "$d/block.sh" ] && '
        'echo "$LINENO $__e" >> "$d/err"\' ERR; '
        'source "$d/block.sh" > "$d/out" 2>&1 < /dev/null; __s=$?; trap - ERR; '
        'cat "$d/out"; printf \'\\0\'; cat "$d/err" 2>/dev/null; rm -rf "$d"; exit $__s'
    )

    def __init__(self, command: list[str]) -> None:
        self.command = command

    def run(self, script: str, timeout: float) -> Result:
        try:
            done = subprocess.run(
                [*self.command, "bash", "--noprofile", "--norc", "-c", self._WRAPPER],
                input=script.encode(),
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:
            raise BlockTimeout((expired.stdout or b"").decode(errors="replace")) from None
        output, _, records = done.stdout.decode(errors="replace").partition("\0")
        output += done.stderr.decode(errors="replace")
        failures = [
            (int(line), int(status)) for line, status in map(str.split, records.splitlines())
        ]
        return Result(output, done.returncode, failures)

    def write(self, path: str, text: str) -> None:
        subprocess.run(
            [*self.command, "sh", "-c", 'cat > "$1"', "sh", path],
            input=text.encode(),
            capture_output=True,
            check=True,
        )


# ---- a page


@dataclasses.dataclass
class PageRun:
    ran: list[Block]
    skipped: list[tuple[Block, str]]
    problems: list[str]


def iter_steps(blocks: list[Block]) -> Iterator[tuple[str, Block, str]]:
    """(what, block, text) for everything the harness does with a page, in page order:
    "run" a hidden command, "sh" a command block, "matches" a file, "writes" a block's text to
    a file on a host, "skip" a block."""
    for block in blocks:
        for kind, body in block.markers:
            if kind == "doc-test run":  # first line: what it stands for; then commands
                yield "run", block, body.partition("\n")[2] + "\n"
        skip = [body for kind, body in block.markers if kind == "not run"]
        if block.lang in COMMAND_LANGUAGES:
            yield ("skip", block, skip[0]) if skip else ("sh", block, block.text)
        for kind, body in block.markers:
            if kind == "doc-test matches":
                yield "matches", block, body.strip()
            if kind == "doc-test writes":
                yield "writes", block, body.strip()


def describe(page: str, number: int, block: Block, script: str) -> str:
    return f"{page}, block {number} (line {block.line}):\n" + "\n".join(
        "    $ " + line if index == 0 else "      " + line
        for index, line in enumerate(script.rstrip("\n").splitlines())
    )


def run_page(
    page_name: str,
    markdown: str,
    session: Session,
    cwd: Path,
    timeout: float,
    hosts: Mapping[str, HostSession] | None = None,
) -> PageRun:
    """Run a page; stops at the first problem (later blocks depend on earlier ones). A block
    starting `# on NAME` runs on `hosts[NAME]`, the others in `session`."""
    hosts = hosts or {}
    blocks = parse_blocks(markdown)
    ran: list[Block] = []
    skipped: list[tuple[Block, str]] = []
    numbers = {id(block): index for index, block in enumerate(blocks, start=1)}
    for kind, block, text in iter_steps(blocks):
        number = numbers[id(block)]
        where = describe(page_name, number, block, text)
        if kind == "run":
            where = where.replace(":\n", ", hidden `doc-test run` commands before it:\n", 1)
        if kind == "skip":
            skipped.append((block, text))
            continue
        if kind == "matches":
            path = session_cwd(session, cwd) / text
            problem = compare_yaml(block.text, path)
            if problem:
                return PageRun(
                    ran,
                    skipped,
                    [
                        f"{page_name}, block {number} (line {block.line}): "
                        f"the {block.lang} block should match {text}: {problem}"
                    ],
                )
            continue
        if kind == "writes":
            host, _, target = text.rpartition(":")
            problem = None if host in hosts else f"no session for host {host!r} ({text})"
            if problem is None:
                try:
                    hosts[host].write(target, block.text)
                except subprocess.CalledProcessError as error:
                    problem = f"could not write {text}: {error.stderr.decode(errors='replace')}"
            if problem:
                return PageRun(ran, skipped, [f"{where}\n{problem}"])
            continue
        runner: Session | HostSession = session
        on_host = _ON_HOST.match(text) if kind == "sh" else None
        if on_host:
            if on_host["host"] not in hosts:
                return PageRun(ran, skipped, [f"{where}\nno session for host {on_host['host']}"])
            runner = hosts[on_host["host"]]
        try:
            result = runner.run(text, timeout)
        except BlockTimeout as timeout_error:
            return PageRun(
                ran,
                skipped,
                [f"{where}\ntimed out after {timeout:.0f} s; output so far:\n{timeout_error}"],
            )
        if kind == "sh":
            ran.append(block)
        problems = []
        groups = command_groups(text)
        failed: set[tuple[int, int, int]] = set()
        for line, status in result.failures:
            group = group_of(groups, line)
            failed.add(group)
            if group[2] != status:
                note = "" if group[2] else ": no `# exit N` comment"
                problems.append(
                    f"command exited {status} (the page documents {group[2]}{note}):\n"
                    + command_text(text, group)
                )
        for group in groups:
            if group[2] and group not in failed:
                problems.append(
                    f"command exited 0, but the page documents exit {group[2]}:\n"
                    + command_text(text, group)
                )
        expected = block.expected if kind == "sh" else None
        if expected is not None and not output_matches(expected.text, result.output):
            problems.append(
                f"output differs from the text block at line {expected.line}:\n"
                + output_diff(expected.text, result.output)
            )
        if problems:
            return PageRun(
                ran,
                skipped,
                [
                    f"{where}\nblock exit status {result.status}\n"
                    + "\n".join(problems)
                    + "\n---- output (stdout and stderr) ----\n"
                    + result.output
                ],
            )
    return PageRun(ran, skipped, [])


def session_cwd(session: Session, default: Path) -> Path:
    """The shell's current directory (bash keeps it in /proc on Linux)."""
    try:
        return Path(f"/proc/{session.process.pid}/cwd").readlink()
    except OSError:
        return default


def compare_yaml(shown: str, path: Path) -> str | None:
    if not path.exists():
        return "the file does not exist"
    expected = yaml.safe_load(shown)
    actual = yaml.safe_load(path.read_text(encoding="utf-8"))
    if expected == actual:
        return None
    return "\n" + output_diff(
        yaml.safe_dump(expected, sort_keys=False), yaml.safe_dump(actual, sort_keys=False)
    )

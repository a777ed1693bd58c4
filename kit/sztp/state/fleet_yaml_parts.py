"""A fleet file's `devices:` list, parsed apart from the rest of it, by several processes at
once when the file is large.

A fleet of a million devices is nearly all its `devices:` list, and PyYAML's composer holds one
core for nearly all the time the file takes to load. Here the list is cut out of the text: a
list written the plain way a generated fleet writes it is read here by `fleet_yaml_simple`;
any other list of a large file is cut between its items and each part parsed by PyYAML in a
process of its own; the rest of the file (every other key) is parsed by this process. Put
back together, they are the document the whole text is. That holds only when nothing
in the text can mean something else once cut, which is checked first: no anchor or alias (an
alias may name an anchor in another part), no directive or second document, no carriage
return; one `devices:` key at the top level, its items each starting `- ` at one indentation
(that of the key itself, as PyYAML writes a list, or further in).

Any other text, and any part that does not parse as a list (an unterminated quote or bracket
where the text was cut, a repeated key, any YAML error), is left to the parse of the whole
text, which says what is wrong with the file and where: this module only ever makes a valid
file load sooner.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import tempfile
from itertools import chain, pairwise
from typing import Any, BinaryIO

from ..collector import cyclic_gc_paused
from .fleet_yaml_simple import simple_items

# Below this size a process's start costs about what it saves.
PARALLEL_BYTES = 8 * 1024 * 1024
# Parts beyond this save little: this process reads every other part's result back.
MAX_PARTS = 4

# A line of the devices' key, and the first item after it (past blank and comment lines).
_DEVICES_KEY = re.compile(r"\ndevices:[ ]*(?:#[^\n]*)?(?=\n)")
_FIRST_ITEM = re.compile(r"(?:[ ]*(?:#[^\n]*)?\n)*( *)- ")


def parse_in_parts(text: str) -> dict[str, Any] | None:
    """The fleet document `text` holds, its devices' items parsed apart from the rest; None
    when the text is not safe to cut, or its list is neither simple nor large, or some part
    did not parse (then parse it whole)."""
    import yaml

    from .fleet_yaml import YamlRefused

    cut = _cut(text) if _safe_to_cut(text) else None
    if cut is None:
        return None
    rest, items, indent = cut
    try:
        # A simple list reads faster here than any split of it: a helper's result costs
        # this process about what reading its part would.
        devices = simple_items(items)
        if devices is None:
            devices = _parse_at_once(items, indent)
        document = None if devices is None else _parse_rest(rest)
    except (yaml.YAMLError, YamlRefused, ValueError, RecursionError, OSError):
        return None  # OSError: a helper could not be started
    if document is None or devices is None:
        return None
    document["devices"] = devices
    return document


def _parse_at_once(items: str, indent: int) -> list[Any] | None:
    """The devices of a large list, its parts parsed by a process each at once; None when it
    is too small to be worth it, or some part did not parse."""
    count = min(_cores(), MAX_PARTS)
    parts = _split(items, indent, count) if count > 1 and len(items) >= PARALLEL_BYTES else []
    if len(parts) < 2:
        return None
    helpers: list[_Helper] = []
    try:
        helpers.extend(_Helper(part) for part in parts[:-1])
        own = parse_part(parts[-1])  # while the helpers parse theirs
        devices = [*(helper.result() for helper in helpers), own]
    finally:
        for helper in helpers:
            helper.stop()
    if None in devices:
        return None
    return list(chain.from_iterable(part for part in devices if part is not None))


def parse_part(text: str) -> list[Any]:
    """The devices of one part: a block sequence, built as the whole document builds it (at
    the depth the `devices:` list has there, so that the nesting limit is the same)."""
    from .fleet_yaml import parse_strict

    items = parse_strict(text, depth=2)
    if not isinstance(items, list):
        raise ValueError("a part of the devices list is not a list")
    return items


def parse_part_from_stdin() -> None:
    """A helper process: a part on standard input, its pickled devices (or None, when it does
    not parse) on standard output."""
    import yaml

    from .fleet_yaml import YamlRefused

    text = sys.stdin.buffer.read().decode("utf-8")
    with cyclic_gc_paused():
        try:
            result: list[Any] | None = parse_part(text)
        except (yaml.YAMLError, YamlRefused, ValueError, RecursionError):
            result = None
        pickle.dump(result, sys.stdout.buffer, protocol=pickle.HIGHEST_PROTOCOL)


def _parse_rest(text: str) -> dict[str, Any] | None:
    """The document without its devices' items: `devices:` must be there, with no value."""
    from .fleet_yaml import parse_strict

    document = parse_strict(text, depth=1)
    if not isinstance(document, dict) or document.get("devices", ...) is not None:
        return None
    return document


def _safe_to_cut(text: str) -> bool:
    """No anchor or alias (an alias in one part may name an anchor in another), no directive
    or document marker, no carriage return. An `&` or `*` in text (a URL's query, a
    password) sends the file to the whole parse too: it costs time, never meaning."""
    if "&" in text or "*" in text or "\r" in text:
        return False
    return not any(
        text.startswith(marker) or f"\n{marker}" in text for marker in ("%", "---", "...")
    )


def _cut(text: str) -> tuple[str, str, int] | None:
    """(the text without the devices' items, the items, their indentation), or None when the
    list cannot be found."""
    text = "\n" + text  # every key's line starts with a newline, the first one's too
    if text.count("\ndevices:") != 1:
        return None
    key = _DEVICES_KEY.search(text)
    if key is None:
        return None
    first = _FIRST_ITEM.match(text, key.end() + 1)
    if first is None:
        return None
    indent = len(first.group(1))
    begin = first.start(1)
    # The list ends at the first line less indented than its items that is not a comment;
    # items at the key's own column (as PyYAML writes them) end at a line that is not an item.
    less = rf"\n {{0,{indent - 1}}}[^ \n#]" if indent else r"\n(?:[^ \n#-]|-[^ \n])"
    after = re.compile(less).search(text, begin - 1)
    end = len(text) if after is None else after.start() + 1
    return text[1:begin] + text[end:], text[begin:end], indent


def _split(items: str, indent: int, count: int) -> list[str]:
    """`items` in up to `count` parts of about equal size, each cut where an item starts; no
    parts when some item cannot be told from the lines below it."""
    # A dash alone on its line starts an item on the lines below: not a place to cut.
    if re.compile(rf"\n {{{indent}}}-[ ]*(?:#[^\n]*)?\n").search("\n" + items):
        return []
    item = re.compile(rf"\n {{{indent}}}- ")
    bounds = [0]
    for number in range(1, count):
        at = item.search(items, max(bounds[-1], len(items) * number // count))
        if at is None:
            break
        bounds.append(at.start() + 1)
    bounds.append(len(items))
    return [items[a:b] for a, b in pairwise(bounds)]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _unnamed_file() -> BinaryIO:
    """A file with no name: in memory on Linux (a fleet's secrets never reach a disk), else a
    temporary file only this user can read, gone when closed."""
    try:
        return os.fdopen(os.memfd_create("sztp-fleet-part", os.MFD_CLOEXEC), "w+b")
    except (AttributeError, OSError):
        return tempfile.TemporaryFile()


class _Helper:
    """A process parsing one part, which it reads from an unnamed file while this process
    parses its own; it imports the modules this process imported (its sys.path) and nothing
    from the working directory (-P)."""

    def __init__(self, part: str) -> None:
        path = os.pathsep.join(entry for entry in sys.path if entry)
        code = f"from {__name__} import parse_part_from_stdin; parse_part_from_stdin()"
        with _unnamed_file() as source:
            source.write(part.encode())
            source.seek(0)
            self._process = subprocess.Popen(  # noqa: S603 - this interpreter, our own code
                [sys.executable, "-P", "-c", code],
                stdin=source,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": path},
            )

    def result(self) -> list[Any] | None:
        """Its devices once it is done; None if it found the part not to parse, or failed."""
        output, _ = self._process.communicate()
        if self._process.returncode != 0 or not output:
            return None
        try:
            devices = pickle.loads(output)  # noqa: S301 - written by our own helper
        except (pickle.UnpicklingError, EOFError):
            return None
        return devices if isinstance(devices, list) else None

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()

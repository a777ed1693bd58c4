"""`{file: path}` and `{env: VARIABLE}` in a fleet file, resolved as if the file were hostile:
it may come from a pull request.

Unchecked, a reference could publish what the operator never meant to: `{file: /etc/shadow}`
or a link to it, a FIFO that never ends, a file too large to hold, or `{env: CLOUD_TOKEN}`
copied into a profile that devices (and the admin API's views) show. So a file must be a
regular file, within the limits `load_fleet` gives, whose real path (links resolved; a link
swapped while it is read is refused) lies inside the fleet file's directory or
SZTP_FLEET_FILE_ROOT; and outside the secret fields, whose values stay hidden on the server,
a variable must be one the operator allowed (SZTP_FLEET_ALLOW_ENV).
"""

from __future__ import annotations

import base64
import errno
import fnmatch
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .fleet_yaml import FleetError, YamlPath, dotted, line_of
from .model import SECRET_FIELDS
from .resources import HIDDEN

_CHUNK = 1024 * 1024
_T = TypeVar("_T")
# The operator's settings, from the environment of the process that loads the file: a pull
# request can change the fleet file, not these.
FILE_ROOT_VARIABLE = "SZTP_FLEET_FILE_ROOT"
ALLOW_ENV_VARIABLE = "SZTP_FLEET_ALLOW_ENV"
# Schema messages quote the offending value: not for these. `validate --skip-unset-secrets`
# may leave these alone, and only these, when their {env: ...} variable is unset.
SECRET_FIELD_NAMES = frozenset(field for fields in SECRET_FIELDS.values() for field in fields)


@dataclass(frozen=True)
class SkippedSecret:
    """A secret field given as `{env: VARIABLE}` whose variable is not set, loaded with
    `skip_unset_secrets`: its value is unknown, so nothing about it was checked."""

    where: str  # "fleet.yaml:7: owner.private_key"
    variable: str

    def __str__(self) -> str:
        return f"{self.where}: {{env: {self.variable}}} not set; value not checked"


class Resolver:
    """Replaces file and environment references; the schema allows them only in text fields."""

    def __init__(
        self,
        path: Path,
        lines: Mapping[YamlPath, int],
        environ: Mapping[str, str],
        *,
        skip_unset_secrets: bool = False,
        file_root: Path | None = None,
        allow_env: Iterable[str] = (),
        max_file_bytes: int,
        max_hashed_file_bytes: int,
    ) -> None:
        self.path = path
        self.base = path.parent
        # Compared with each file's real path: symbolic links resolved on both sides.
        self.root = os.path.realpath(file_root if file_root is not None else self.base)
        self.root_named = FILE_ROOT_VARIABLE if file_root is not None else "the fleet file's"
        self.lines = lines
        self.environ = environ
        self.allow_env = tuple(allow_env)
        self.skip_unset_secrets = skip_unset_secrets
        self.max_file_bytes = max_file_bytes  # for a list of files, in total
        self.max_hashed_file_bytes = max_hashed_file_bytes
        self.skipped: list[SkippedSecret] = []
        # The real path of each directory files are referenced in: a fleet's many voucher
        # files usually share one, and resolving it per file would repeat its lookups.
        self._real_directories: dict[str, str] = {}

    def resolve(self, value: Any, where: YamlPath) -> Any:
        if isinstance(value, dict) and set(value) == {"file"}:
            return self._file(value["file"], where)
        if isinstance(value, dict) and set(value) == {"env"}:
            variable = value["env"]
            self._check_variable(variable, where)
            if variable in self.environ:
                return self.environ[variable]
            # Only secrets: any other value changes what devices get, so it must be known.
            if self.skip_unset_secrets and where[-1] in SECRET_FIELD_NAMES:
                self.skipped.append(SkippedSecret(self._place(where), variable))
                return HIDDEN  # what validation already leaves unchecked: a value not at hand
            raise self._error(where, f"environment variable {variable} is not set")
        if isinstance(value, dict):
            return {key: self.resolve(item, (*where, key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item, (*where, index)) for index, item in enumerate(value)]
        return value

    def _check_variable(self, variable: str, where: YamlPath) -> None:
        """A secret field may read any variable: its value stays on the server, hidden. Any
        other value reaches devices (or the API's views): only variables the operator allowed.
        """
        if self._field_of(where) in SECRET_FIELD_NAMES:
            return
        if any(fnmatch.fnmatchcase(variable, pattern) for pattern in self.allow_env):
            return
        raise self._error(
            where,
            f"{{env: {variable}}} is not allowed: outside the secret fields "
            f"({', '.join(sorted(SECRET_FIELD_NAMES))}) the operator must allow the variable, e.g. "
            f"{ALLOW_ENV_VARIABLE}={variable} in the environment that loads the file",
        )

    def _file(self, names: str | list[str], where: YamlPath) -> str:
        given = [names] if isinstance(names, str) else list(names)
        paths = [self._path(name, where) for name in given]
        field_name = where[-1] if isinstance(where[-1], str) else self._field_of(where)
        try:
            if field_name == "sha256":
                if len(paths) != 1:
                    raise self._error(where, "hash one file, not a list")
                limit = self.max_hashed_file_bytes
                return self._followed(_sha256_file, paths[0], given[0], where, limit)
            data = b""
            for path, name in zip(paths, given, strict=True):
                room = self.max_file_bytes - len(data)
                data += self._followed(_read_file, path, name, where, room)
        except _FileTooLarge as exc:
            raise self._error(where, self._too_large(exc.path, field_name)) from None
        except _FileRefused as exc:
            raise self._error(where, str(exc)) from None
        except _SymbolicLink:  # a link's target replaced by another link while it was read
            raise self._error(where, "a symbolic link changed while it was read") from None
        except OSError as exc:
            target = exc.filename or paths[0]
            raise self._error(where, f"cannot read {target}: {exc.strerror or exc}") from None
        if field_name == "voucher":
            return base64.b64encode(data).decode()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error(where, "the file is not UTF-8 text") from None

    @staticmethod
    def _field_of(where: YamlPath) -> str:
        return next(step for step in reversed(where) if isinstance(step, str))

    def _path(self, name: str, where: YamlPath) -> str:
        """`name` in the real path of its directory, refused unless it lies inside the root
        (a last component that is a link is checked when it is opened: `_followed`)."""
        # Plain strings, not Path objects, here and in _read_file: a third less time for a
        # fleet of 10,000 voucher files.
        if name.startswith("~"):
            name = os.path.expanduser(name)  # noqa: PTH111
        joined = os.path.join(self.base, name)  # noqa: PTH118
        directory, leaf = os.path.split(joined)
        if leaf in ("", ".", ".."):
            real = os.path.realpath(joined)
        else:
            # realpath(dir/leaf) is realpath(dir)/leaf unless leaf itself is a link.
            real_directory = self._real_directories.get(directory)
            if real_directory is None:
                real_directory = self._real_directories[directory] = os.path.realpath(directory)
            # A leaf that is itself a link is opened with O_NOFOLLOW, refused, and followed by
            # `_followed`: no lstat for every file that is not one.
            real = os.path.join(real_directory, leaf)  # noqa: PTH118
        return self._confined(real, name, where)

    def _followed(
        self, read: Callable[..., _T], path: str, name: str, where: YamlPath, *args: int
    ) -> _T:
        """`read(path, *args)`; if the file is a symbolic link, its target, once checked."""
        try:
            return read(path, *args)
        except _SymbolicLink:
            return read(self._confined(os.path.realpath(path), name, where), *args)

    def _confined(self, real: str, name: str, where: YamlPath) -> str:
        if real != self.root and not real.startswith(self.root.rstrip(os.sep) + os.sep):
            shown = name if real == name else f"{name} (resolves to {real})"
            raise self._error(
                where,
                f"{shown} is outside {self.root_named} directory {self.root}; keep referenced "
                f"files beside the fleet file, or set {FILE_ROOT_VARIABLE} to a directory "
                "holding them",
            )
        return real

    def _too_large(self, path: str, field_name: str) -> str:
        if field_name == "sha256":
            limit = _size(self.max_hashed_file_bytes)
            return f"{path} is larger than {limit}, the most a sha256 file may be"
        return (
            f"{path} is larger than the {_size(self.max_file_bytes)} a file reference may read"
            " (in total, for a list)"
        )

    def _place(self, where: YamlPath) -> str:
        return f"{self.path}:{line_of(where, self.lines)}: {dotted(where)}"

    def _error(self, where: YamlPath, message: str) -> FleetError:
        return FleetError(f"{self._place(where)}: {message}")


class _FileRefused(Exception):
    """A referenced file is not a regular file; the message says what it is instead."""


class _FileTooLarge(Exception):
    """A referenced file holds more than the bytes it was opened for; `Resolver` says which
    limit that is."""

    def __init__(self, path: str) -> None:
        self.path = path


class _SymbolicLink(Exception):
    """The path opened is a symbolic link: its target must be checked against the root."""


def _open_regular(path: str, limit: int) -> int:
    """A descriptor of `path`, a regular file (else _FileRefused) of at most `limit` bytes
    (else _FileTooLarge).

    O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused."""
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
    try:
        descriptor = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _SymbolicLink from None
        raise
    try:
        mode = os.fstat(descriptor)
        if stat.S_ISDIR(mode.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
        if not stat.S_ISREG(mode.st_mode):
            raise _FileRefused(f"{path} is not a regular file (a device, FIFO or socket)")
        if mode.st_size > limit:
            raise _FileTooLarge(path)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2)):
        if count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count:,} bytes"


def _read_file(path: str, limit: int) -> bytes:
    # os.read on a descriptor, not a buffered file object: setting one up costs more than
    # reading a voucher (half the time for 10,000 voucher files).
    descriptor = _open_regular(path, max(limit, 0))
    try:
        chunks = []
        size = 0
        while chunk := os.read(descriptor, _CHUNK):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew after fstat
                raise _FileTooLarge(path)
    finally:
        os.close(descriptor)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _sha256_file(path: str, limit: int) -> str:
    digest = hashlib.sha256()
    descriptor = _open_regular(path, limit)
    with os.fdopen(descriptor, "rb") as stream:
        size = 0
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise _FileTooLarge(path)
            digest.update(chunk)
    return digest.hexdigest()

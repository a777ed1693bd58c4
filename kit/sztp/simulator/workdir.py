"""The device's file-system edge: its work directory (boot images downloaded with their SHA-256
checked, scripts and the sandbox they run in, the configuration, its SSH host public key) and the
trust anchors of redirects, kept only in a private temporary directory for the run."""

from __future__ import annotations

import hmac
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import hashes

from ..files import write_atomically
from ..protocol import cms, pki
from .model import Log
from .transport import Transport, request_reason
from .verdicts import Abandon, describe

_CHUNK_SIZE = 1024 * 1024
_UNSAFE_FILE_CHARACTERS = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True)
class DownloadedImage:
    """A boot image downloaded and verified: where it is, its size and how long it took."""

    path: Path
    size: int
    seconds: float

    def describe(self) -> str:
        return f"{self.size:,} bytes in {self.seconds:.1f} s"


class WorkDirectory:
    """Every file the device writes, recorded in `files_written`. `scratch` is where redirect
    trust anchors go: the device's run points it at a temporary directory of its own."""

    def __init__(self, root: Path, max_image_size: int, log: Log) -> None:
        self.root = root
        self.max_image_size = max_image_size
        self.log = log
        self.files_written: list[Path] = []
        self.scratch = Path(tempfile.gettempdir())
        self._anchor_files = 0

    def write(self, name: str, data: bytes, *, mode: int) -> Path:
        path = self.root / name
        write_atomically(path, data, mode=mode)
        self.files_written.append(path)
        return path

    def commit_configuration(self, configuration: bytes, handling: str) -> Path:
        """Merge `configuration` into the one kept so far, or replace it."""
        existing = b""
        target = self.root / "configuration"
        if handling == "merge" and target.is_file():
            existing = target.read_bytes()
        return self.write("configuration", existing + configuration, mode=0o600)

    def sandbox(self) -> Path:
        """The directory scripts run in (their HOME and working directory)."""
        sandbox = self.root / "sandbox"
        sandbox.mkdir(parents=True, exist_ok=True)
        return sandbox

    def write_trust_anchor(self, artifact: bytes, depth: int, index: int) -> str:
        """The certificates of a redirect's `trust-anchor` (CMS certs-only) as a PEM file."""
        certificates = cms.read_certs_only(artifact)
        self._anchor_files += 1
        path = self.scratch / f"redirect-{depth}-{index}-{self._anchor_files}.pem"
        path.write_bytes(b"".join(pki.certificate_to_pem(cert) for cert in certificates))
        return str(path)

    def download_image(self, transport: Transport, uri: str, sha256: bytes) -> DownloadedImage:
        """Download a boot image into `images/`, kept only when its SHA-256 matches; `Abandon`
        names why it is not."""
        started = time.monotonic()
        images = self.root / "images"
        images.mkdir(parents=True, exist_ok=True)
        target = images / _file_name(uri)
        digest = hashes.Hash(hashes.SHA256())
        size = 0
        descriptor, partial = tempfile.mkstemp(dir=images, prefix=f".{target.name}.")
        try:
            with (
                os.fdopen(descriptor, "wb") as handle,
                transport.get_file(uri) as response,
            ):
                if response.status_code != 200:
                    raise Abandon(f"HTTP {response.status_code}")
                for chunk in response.iter_content(_CHUNK_SIZE):
                    size += len(chunk)
                    if size > self.max_image_size:
                        raise Abandon(f"larger than {self.max_image_size} bytes")
                    digest.update(chunk)
                    handle.write(chunk)
            actual = digest.finalize()
            if not hmac.compare_digest(actual, sha256):
                raise Abandon(
                    f"sha-256 mismatch: got {actual.hex(':')}, expected {sha256.hex(':')}"
                )
            Path(partial).replace(target)
        except requests.RequestException as exc:
            Path(partial).unlink(missing_ok=True)
            raise Abandon(request_reason(exc)) from None
        except OSError as exc:
            Path(partial).unlink(missing_ok=True)
            raise Abandon(f"cannot store the image: {describe(exc)}") from None
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        download = DownloadedImage(target, size, time.monotonic() - started)
        self.log(f"downloaded {uri} ({download.describe()}, sha-256 verified) to {target}")
        self.files_written.append(target)
        return download


def _file_name(uri: str) -> str:
    name = Path(urlsplit(uri).path).name
    name = _UNSAFE_FILE_CHARACTERS.sub("_", name).lstrip(".")
    return name or "boot-image"

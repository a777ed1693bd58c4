"""Load a listener's TLS certificate and key, and say which file is wrong when that fails.

OpenSSL reports a bad file as "[SSL] PEM lib" without naming it; an operator needs the
listener, the path and the problem. The files are parsed again only after OpenSSL refused
them, so whatever OpenSSL accepts is accepted.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from sztp.errors import SztpError

from .config import Listener


class TlsFileError(SztpError):
    """A listener's certificate or key cannot be loaded; `path` names the culprit (both files
    when they do not match)."""

    def __init__(self, listener: str, path: str, problem: str) -> None:
        super().__init__(f"{listener}: {path}: {problem}")
        self.listener = listener
        self.path = path
        self.problem = problem


def server_context(name: str, listener: Listener) -> ssl.SSLContext:
    """A TLS server context for `listener` (named `name` in errors) with its chain loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_chain(context, name, listener)
    return context


def load_chain(context: ssl.SSLContext, name: str, listener: Listener) -> None:
    """Load the listener's certificate and key into `context`; TlsFileError on failure."""
    cert, key = listener.tls_cert, listener.tls_key
    if cert is None or key is None:
        raise TlsFileError(name, "tls_cert", "no certificate configured")
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:  # SSLError is an OSError; named for the reader
        raise _diagnose(name, cert, key, exc) from None


def _diagnose(name: str, cert: Path, key: Path, failure: OSError) -> TlsFileError:
    contents: dict[Path, bytes] = {}
    for path in (cert, key):
        try:
            contents[path] = path.read_bytes()
        except OSError as exc:
            return TlsFileError(name, str(path), f"cannot read: {exc.strerror or exc}")
    try:
        x509.load_pem_x509_certificates(contents[cert])
    except ValueError:
        return TlsFileError(name, str(cert), "no valid PEM certificate in the file")
    try:
        load_pem_private_key(contents[key], password=None)
    except TypeError:  # cryptography's way of saying "encrypted, and no password given"
        return TlsFileError(name, str(key), "the private key is encrypted; give it unencrypted")
    except (ValueError, UnsupportedAlgorithm):
        return TlsFileError(name, str(key), "no valid PEM private key in the file")
    reason = getattr(failure, "reason", None) or failure.strerror or str(failure)
    return TlsFileError(
        name, f"{cert} and {key}", f"not a matching certificate and private key ({reason})"
    )

"""Typed errors raised by the kit on bad input.

Every error that can reach an operator derives from `SztpError`, so the CLI and the Ansible
modules can turn it into one clear line (or a 4xx) instead of a traceback.
"""

from typing import Any


class SztpError(Exception):
    """Base class for every error the kit raises on bad input or failed checks."""


class ValidationError(SztpError):
    """A value does not satisfy the data model; `field` is its path, e.g. `boot-image/os-name`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the field across processes (a server's writer process raises these).
        return (type(self), (self.field, self.message))


class CmsError(SztpError):
    """A CMS structure is malformed, has the wrong content type or fails verification."""


class SignatureError(CmsError):
    """A CMS signature does not verify, or was made by an unexpected signer."""


class ChainError(CmsError):
    """A certificate does not chain to a trusted anchor (or is expired, or not a CA)."""


class VoucherError(SztpError):
    """An ownership voucher is malformed or does not authorise this owner for this device."""


class DhcpEncodingError(ValidationError):
    """A bootstrap-server URI list cannot be encoded as DHCP option 143/136."""


class PkiError(SztpError):
    """A key or certificate cannot be generated, loaded or used as asked."""


class TrustError(SztpError):
    """Bootstrapping data cannot be trusted as a whole (missing voucher, unsigned onboarding)."""


class SimulationError(SztpError):
    """The device simulator cannot start: bad identity files, URIs or options."""


class PlainHttpRefused(SztpError):
    """The admin API URL is plain http:// to a host that is not loopback, and no opt-in."""


class ServerUnreachable(SztpError):
    """The admin API cannot be reached: connection refused, name not found, TLS failure."""


class JobStillRunning(SztpError):
    """The client stopped following a write the server goes on with, as job `job_id` (its
    `timeout` ran out, or it was `interrupted`); the write may still land."""

    def __init__(self, job_id: str, done: int, total: int, *, interrupted: bool = False) -> None:
        why = "interrupted" if interrupted else "stopped waiting"
        super().__init__(
            f"{why}; the write goes on on the server as job {job_id} ({done}/{total} checked): "
            f"`sztpctl job wait {job_id}` follows it to its end, `sztpctl diff` shows whether "
            "it landed"
        )
        self.job_id = job_id
        self.done = done
        self.total = total
        self.interrupted = interrupted

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.done, self.total), {"interrupted": self.interrupted})


class ApiError(SztpError):
    """The admin API refused a request; `code` and `field` come from its error body,
    `retry_after` (seconds) from its Retry-After header, when it has one (429, 503)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        where = f"{field}: " if field and field not in message else ""
        super().__init__(f"{where}{message} (HTTP {status})")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after


class AuthenticationError(ApiError):
    """The token is missing, not valid (401) or not allowed to do this (403)."""


class NotFoundApiError(ApiError):
    """The resource (or route) does not exist (404)."""


class ApiConflictError(ApiError):
    """The state moved on (412 on If-Match) or the change conflicts with it (409)."""


class ApiValidationError(ApiError):
    """The server rejected the input (400, 413, 415, 422); `field` names the culprit."""

"""Errors raised by the storage layer.

Backends translate database exceptions into these, so the admin API can map them to a clear
status (409 for `ConflictError`, 404 for `NotFoundError`, 503 for other `StoreError`s) and
never leak a driver traceback or a database password.
"""

from sztp.errors import SztpError


class StoreError(SztpError):
    """The store cannot do what was asked: unreachable, busy, corrupt or misconfigured."""


class ConflictError(StoreError):
    """The write contradicts the stored state (stale revision, existing or missing name)."""


class NotFoundError(StoreError):
    """A named record does not exist."""

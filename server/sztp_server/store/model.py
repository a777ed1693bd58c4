"""Plain records exchanged with a `Store`; backends convert them to and from rows.

Every datetime handed out is timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The planner's change is what the store applies: one type from plan to commit.
from sztpctl.state.plan import Action as ChangeAction
from sztpctl.state.plan import Change

__all__ = [
    "AuditEntry",
    "Change",
    "ChangeAction",
    "ProgressRecord",
    "StoredResource",
    "TokenRecord",
]


@dataclass(frozen=True)
class StoredResource:
    """An admin resource as stored: `spec` is a JSON object validated before it got here."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    revision: int  # store revision of the resource's last change
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ProgressRecord:
    """One `report-progress` call from a device."""

    serial: str
    received_at: datetime
    progress_type: str
    message: str | None
    source_address: str | None
    attempt: int
    ssh_host_keys: tuple[tuple[str, str], ...] = ()  # (algorithm, base64 key-data)
    trust_anchor_certs: tuple[str, ...] = ()  # base64 DER CMS


@dataclass(frozen=True)
class AuditEntry:
    """One committed admin change; `detail` is secret-free by contract with the caller."""

    id: int
    at: datetime
    actor: str
    action: str
    kind: str
    name: str
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class TokenRecord:
    """An API token; only its hash is ever stored."""

    name: str
    token_hash: str
    role: str  # "admin" | "read-only"
    created_at: datetime

"""A problem found in a fleet file, located for the reader: the offline checks of `validate`
and of the DHCP section report these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    where: str  # "fleet.yaml:12: devices[0].voucher"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"

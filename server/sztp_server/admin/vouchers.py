"""Voucher checks of a large bulk apply, spread over worker processes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from sztp.errors import ValidationError
from sztp.state.resources import DEVICE, StorableVoucher, checked_voucher

from ..children import exit_with_parent


class VoucherChecker:
    """Checks the vouchers of a large bulk apply in worker processes, one per core.

    A new voucher's check (DER walk, the MASA's signature, the JSON) is mostly the signature,
    and a fleet's worth holds one core for seconds; small batches stay in this process, where
    starting the pool would cost more than it saves. (Having this process take a share too,
    while the pool starts or by cancelling chunks no worker has taken yet, measured no faster
    on 2 busy cores.) Figures: bench/RESULTS.md, "Bulk apply of 10,000 devices".
    """

    THRESHOLD = 500

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    def check(
        self, specs: Mapping[str, Any], stored: Mapping[str, Mapping[str, Any]]
    ) -> dict[str, StorableVoucher]:
        """The new vouchers, checked, by device name; ValidationError on the first (by name)
        that cannot be stored."""
        pending = sorted(
            (name, spec["voucher"])
            for name, spec in specs.items()
            if isinstance(spec, dict)
            and spec.get("voucher") is not None
            and spec.get("voucher") != (stored.get(name) or {}).get("voucher")
        )
        if len(pending) < self.THRESHOLD:
            return {}
        workers = os.cpu_count() or 1
        chunk = -(-len(pending) // (workers * 4))
        results = self._executor(workers).map(
            checked_voucher, *zip(*pending, strict=True), chunksize=chunk
        )
        accepted: dict[str, StorableVoucher] = {}
        for (name, _), (voucher, problem) in zip(pending, results, strict=True):
            if voucher is None:
                raise ValidationError(f"{DEVICE}[{name}].voucher", problem or "not accepted")
            accepted[name] = voucher
        return accepted

    def _executor(self, workers: int) -> ProcessPoolExecutor:
        if self._pool is None:
            # forkserver: workers start from a clean process, not a fork of this threaded one.
            context = multiprocessing.get_context("forkserver")
            # Workers fork from a server that has the voucher code (cryptography, asn1crypto)
            # imported already, rather than each importing it for its first voucher.
            context.set_forkserver_preload(
                ["sztp.state.resources", "sztp.protocol.voucher", "sztp_server.children"]
            )
            self._pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=context, initializer=exit_with_parent
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

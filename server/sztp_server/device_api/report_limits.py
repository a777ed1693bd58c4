"""Bounds on progress reports: the size of one report and how many devices' report rates are
tracked (what a device may store through `report-progress`).

A device is bounded because everything it sends is hostile: a report body may be up to
`restconf.MAX_REPORT_SIZE`, and a device may call as often as it likes.
"""

from __future__ import annotations

from dataclasses import replace

from ..store.base import report_size
from ..store.model import ProgressRecord

# Buckets of this many devices at most; beyond, the least recently seen device's bucket is
# forgotten (it starts full again; with device workers, the least recently seen of the few a
# device's bucket may take the place of). A fleet this size reporting at once is far beyond one
# instance, and the bound keeps memory flat whatever the devices do.
MAX_TRACKED_DEVICES = 100_000


def cap_report(record: ProgressRecord, max_bytes: int) -> ProgressRecord:
    """`record` within `max_bytes` of `report_size`, marked `truncated` when anything was cut.

    SSH host keys come first (the inventory's known_hosts needs them), then trust anchors, each
    kept whole or left out; the message gets the rest, cut on a character boundary.
    """
    if report_size(record) <= max_bytes:
        return record
    room = max_bytes
    host_keys: list[tuple[str, str]] = []
    for algorithm, key in record.ssh_host_keys:
        if len(algorithm) + len(key) <= room:
            host_keys.append((algorithm, key))
            room -= len(algorithm) + len(key)
    anchors: list[str] = []
    for cert in record.trust_anchor_certs:
        if len(cert) <= room:
            anchors.append(cert)
            room -= len(cert)
    message = record.message
    if message is not None:
        # Dropping a partial multi-byte sequence at the cut keeps the text valid UTF-8.
        message = message.encode()[:room].decode(errors="ignore")
    return replace(
        record,
        message=message,
        ssh_host_keys=tuple(host_keys),
        trust_anchor_certs=tuple(anchors),
        truncated=True,
    )

"""The records `sztp-mdns` publishes, read from a zone fragment and checked before any is served.

The input is master-file text (RFC 1035 §5) as `sztpctl dns render` writes it: relative names
are read under `local.`, absolute names must already be there. Three kinds of RRset may appear:

- TXT at `<serial>._sztp.local`: one device's records, as the kit's `parse_device_txt` reads
  them (the same refusals a device would make are made here, at load);
- SRV at `_sztp._tcp.local`: the bootstrap servers, checked as the kit's `bootstrap_srv`;
- A and AAAA at the SRV targets: on a link without DNS, a device resolves `<host>.local` by
  mDNS too, so the addresses are published alongside. A target without them here must be
  answered by another responder (avahi for the host's own name) or by unicast DNS.

Everything else is refused rather than ignored: a record left out silently is one a device
never finds. Each answer must fit one mDNS message (RFC 6762 §17), question repeated and TTLs
capped as a legacy unicast reply has them: a device asking with a one-shot query reads one
reply, so an answer split over several would reach it incomplete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tokenizer
import dns.zonefile

from sztp.errors import SztpError, ValidationError
from sztp.protocol.dns_records import (
    MAX_MDNS_MESSAGE,
    MDNS_DOMAIN,
    SRV_OWNER,
    SZTP_NODE,
    bootstrap_srv,
    parse_device_txt,
    serial_label,
)

from .messages import response_wire

LOCAL = dns.name.from_text(MDNS_DOMAIN, origin=dns.name.root)
SRV_NAME = dns.name.from_text(SRV_OWNER, origin=LOCAL)
ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
# Far above any fragment a fleet yields (a signed device is a few kilobytes), far below memory.
MAX_RECORDS_FILE = 16 * 1024 * 1024
_DEVICE_NAME_LABELS = 4  # <serial>, _sztp, local and the root


class RecordsError(SztpError):
    """The records file cannot be published; the message names the file and the defect."""


@dataclass(frozen=True)
class PublishedRecords:
    """The RRsets to answer with, by owner name (dnspython compares names without case)."""

    rrsets: Mapping[dns.name.Name, tuple[dns.rrset.RRset, ...]]
    devices: int
    servers: int
    hosts: int

    def answers(self, name: dns.name.Name, rdtype: int) -> list[dns.rrset.RRset]:
        found = self.rrsets.get(name, ())
        if rdtype == dns.rdatatype.ANY:
            return list(found)
        return [rrset for rrset in found if rrset.rdtype == rdtype]

    def additionals(self, answer: dns.rrset.RRset) -> list[dns.rrset.RRset]:
        """The target addresses an SRV answer brings along (RFC 6763 §12.2)."""
        if answer.rdtype != dns.rdatatype.SRV:
            return []
        targets = dict.fromkeys(rdata.target for rdata in answer)
        return [
            rrset
            for target in targets
            for rrset in self.rrsets.get(target, ())
            if rrset.rdtype in ADDRESS_TYPES
        ]


def load_records(path: Path) -> tuple[PublishedRecords, list[str]]:
    """The records of the file at `path` and warnings about them; RecordsError when any record
    cannot be published."""
    rrsets = _read(path, _text(path))
    shown = str(path)
    by_name: dict[dns.name.Name, list[dns.rrset.RRset]] = {}
    devices = servers = 0
    addressed: list[dns.name.Name] = []
    for rrset in rrsets:
        name = rrset.name
        where = f"{shown}: {name.to_text()}"
        if rrset.rdclass != dns.rdataclass.IN:
            raise RecordsError(f"{where}: class {dns.rdataclass.to_text(rrset.rdclass)}; only IN")
        if name == LOCAL or not name.is_subdomain(LOCAL):
            raise RecordsError(
                f"{where}: not under .local; write names relative to the fragment's origin "
                "(render the fragment without an origin)"
            )
        if name == SRV_NAME:
            _expect(rrset, dns.rdatatype.SRV, where)
            _check_srv(rrset, where)
            servers += len(rrset)
        elif _is_device_name(name):
            _expect(rrset, dns.rdatatype.TXT, where)
            _check_device(rrset, shown)
            devices += 1
        elif rrset.rdtype in ADDRESS_TYPES:
            addressed.append(name)
        else:
            raise RecordsError(
                f"{where}: {dns.rdatatype.to_text(rrset.rdtype)} is not published over mDNS; "
                f"only TXT at <serial>.{SZTP_NODE}, SRV at {SRV_OWNER} and A/AAAA of the SRV "
                "targets"
            )
        by_name.setdefault(name, []).append(rrset)
    if not by_name:
        raise RecordsError(f"{shown}: no records to publish")
    targets = {rdata.target for rrset in by_name.get(SRV_NAME, ()) for rdata in rrset}
    for name in addressed:
        if name not in targets:
            raise RecordsError(
                f"{shown}: {name.to_text()}: has addresses but is not the target of an SRV "
                f"record at {SRV_OWNER}"
            )
    warnings = [
        _target_warning(target, shown)
        for target in sorted(targets)
        if not any(rrset.rdtype in ADDRESS_TYPES for rrset in by_name.get(target, ()))
    ]
    published = PublishedRecords(
        rrsets={name: tuple(found) for name, found in by_name.items()},
        devices=devices,
        servers=servers,
        hosts=len(set(addressed)),
    )
    _check_sizes(published, shown)
    return published, warnings


def _text(path: Path) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_RECORDS_FILE + 1)
    except OSError as exc:
        raise RecordsError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(data) > MAX_RECORDS_FILE:
        raise RecordsError(f"{path}: larger than {MAX_RECORDS_FILE} octets")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordsError(
            f"{path}: octet {exc.start} is not UTF-8; binary data is written as \\DDD"
        ) from exc


def _read(path: Path, text: str) -> list[dns.rrset.RRset]:
    # dnspython's reader skips names outside its zone origin without a word; with the root as
    # that origin and `local.` as the origin of relative names, every name comes back and an
    # absolute name elsewhere is refused by the caller.
    manager = dns.zonefile.RRSetsReaderManager(dns.name.root, False, dns.rdataclass.IN)
    try:
        with manager.writer(True) as transaction:
            reader = dns.zonefile.Reader(
                dns.tokenizer.Tokenizer(text, str(path)), dns.rdataclass.IN, transaction
            )
            reader.current_origin = LOCAL
            reader.last_name = LOCAL
            reader.read()
    except dns.exception.SyntaxError as exc:
        # dnspython's message starts with file:line.
        raise RecordsError(str(exc)) from exc
    except dns.exception.DNSException as exc:
        raise RecordsError(f"{path}: {exc}") from exc
    return list(manager.rrsets)


def _is_device_name(name: dns.name.Name) -> bool:
    return len(name.labels) == _DEVICE_NAME_LABELS and name.labels[1].lower() == SZTP_NODE.encode()


def _expect(rrset: dns.rrset.RRset, rdtype: dns.rdatatype.RdataType, where: str) -> None:
    if rrset.rdtype != rdtype:
        raise RecordsError(
            f"{where}: a {dns.rdatatype.to_text(rrset.rdtype)} record where only "
            f"{dns.rdatatype.to_text(rdtype)} belongs"
        )


def _check_srv(rrset: dns.rrset.RRset, where: str) -> None:
    try:
        bootstrap_srv(
            [
                (
                    rdata.target.to_text(omit_final_dot=True),
                    rdata.port,
                    rdata.priority,
                    rdata.weight,
                )
                for rdata in rrset
            ]
        )
    except ValidationError as exc:
        raise RecordsError(f"{where}: {exc}") from exc


def _check_device(rrset: dns.rrset.RRset, shown: str) -> None:
    label = rrset.name.labels[0]
    # Latin-1 maps every octet to a character, so serial_label sees and refuses any stray one.
    serial = label.decode("latin-1")
    try:
        serial_label(serial)
        parse_device_txt([rdata.strings for rdata in rrset])
    except ValidationError as exc:
        raise RecordsError(f"{shown}: device {serial!a}: {exc}") from exc


def _check_sizes(published: PublishedRecords, shown: str) -> None:
    for name, rrsets in published.rrsets.items():
        for rrset in rrsets:
            question = dns.rrset.RRset(name, dns.rdataclass.IN, rrset.rdtype)
            size = len(
                response_wire(
                    [rrset],
                    published.additionals(rrset),
                    legacy_query=dns.message.Message(),
                    questions=[question],
                )
            )
            if size <= MAX_MDNS_MESSAGE:
                continue
            what = (
                f"device {name.labels[0].decode('latin-1')!a}"
                if _is_device_name(name)
                else name.to_text()
            )
            raise RecordsError(
                f"{shown}: {what}: the {dns.rdatatype.to_text(rrset.rdtype)} answer takes {size} "
                f"octets, over the {MAX_MDNS_MESSAGE} of one mDNS message (RFC 6762 §17); "
                "publish this device in unicast DNS or behind redirect information instead"
            )


def _target_warning(target: dns.name.Name, shown: str) -> str:
    if target.is_subdomain(LOCAL):
        return (
            f"{shown}: SRV target {target.to_text()} has no A or AAAA record here: another mDNS "
            "responder on the link must answer for it"
        )
    return (
        f"{shown}: SRV target {target.to_text()} is not under .local: a device on a link "
        "without DNS cannot resolve it"
    )

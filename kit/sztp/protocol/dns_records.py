"""DNS records that point a device at its bootstrapping data (RFC 8572 §4.2).

A device asks twice, first over mDNS (`.local`), then over unicast DNS (§4.2.1):

- device-specific: TXT at `<serial-number>._sztp.<domain>`, carrying the three artifacts
  (§4.2.2) under the keys `ci` (conveyed information), `oc` (owner certificate) and `ov`
  (ownership voucher). Values are the artifacts' raw binary bytes, not base64 (§4.2.2 points
  to RFC 6763 §6.5, which allows binary TXT data).
- device-independent: SRV at `_sztp._tcp.<domain>` (§4.2.3), the DNS form of unsigned
  redirect information; the device orders the targets as RFC 2782 says and calls
  `https://<target>:<port>`.

**One key per TXT record, its value spread over consecutive character-strings.** RFC 8572's
example gives each artifact its own TXT record (`"ci=<binary data>"`), but one
character-string holds at most 255 octets (RFC 1035 §3.3) and a signed artifact is kilobytes.
So, as SPF does (RFC 7208 §3.3), a record's character-strings are concatenated with nothing
between them, and the result is `key=value`: the key runs up to the first `=`, the value is
everything after it (so it may hold `=` and any other octet). The publisher fills each string
to 255 octets. A record therefore carries exactly one key; the DNS-SD layout of one pair per
string (RFC 6763 §6.3) cannot carry a value over 252 octets and is not used.

Reading an answer (§4.2.2: "Devices MUST ignore any other keys"): keys are compared without
regard to case (RFC 6763 §6.4); records with another key, with an empty key (`=...`) or with
no strings at all are ignored; `ci`, `oc` or `ov` given twice, with no `=` or with an empty
value is refused, since an RRset has no order that could tell which copy is meant. `ci` is
required, and `oc` and `ov` come together or not at all (RFC 8572 §3.1). Whether the bytes
are valid CMS, and signed by whom, is for `bootstrapping_data` to decide: DNS is an untrusted
source (§4.2), so a device acts on the values only after that verification.

**Sizes.** One record's RDATA is at most 65535 octets (RDLENGTH is 16 bits, RFC 1035
§3.2.1), and the whole answer must fit one DNS message. Over TCP a message is at most 65535
octets (its 2-octet length prefix, RFC 1035 §4.2.2, RFC 7766 §8); the publisher refuses
records whose answer, with the longest possible question name, would not fit. Signed data
does not fit the 512 octets of plain UDP (RFC 1035 §4.2.1) nor, usually, an EDNS(0) buffer
(RFC 6891; 1232 octets is the common default), and may exceed the 9000 octets of an mDNS
message (RFC 6762 §17): unicast resolvers must retry over TCP (RFC 7766) to get it, as
§4.2.4 expects. A device reading an answer refuses one that no DNS message could carry.
Onboarding information too large for this belongs behind redirect information (§4.2.4).

**The serial number in the name.** RFC 8572 puts the serial number, as in the device's IDevID
certificate, in one label and says nothing of escaping. A label is at most 63 octets (RFC 1035
§2.3.4) and may hold any octet (RFC 2181 §11), but a device building its query name as text
would split it at a `.`. So a serial is accepted when it is 1-63 printable ASCII characters
without `.`; master-file text escapes the characters special there (RFC 1035 §5.1). DNS
compares names without regard to ASCII case (RFC 4343): two serials differing only in case
share one name, and the operator must not publish both.

**SRV targets are host names, never addresses** (RFC 2782: the target has address records),
so a target is letters, digits and hyphens in labels of 1-63, not ending in an all-numeric
label (RFC 3696 §2: that would read as an IPv4 address); the URIs need no IPv6 brackets. A
lone target of `.` means the service is not offered (RFC 2782) and yields no URI.

Master-file rendering writes TXT strings in quotes: `"` and `\\` escaped with a backslash,
octets outside printable ASCII as `\\DDD`; a record of several strings spans lines, one
string a line, inside parentheses. The `nsupdate` script has one line per command, as
nsupdate reads it, and nsupdate reads lines of under 128 KiB.

Pure code, no I/O: untrusted input raises `ValidationError` and nothing else.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..errors import ValidationError

SZTP_NODE = "_sztp"
SRV_OWNER = "_sztp._tcp"
# Multicast DNS (RFC 6762): its domain, port and groups (§3, §22), and the largest packet,
# IP and UDP headers included (§17).
MDNS_DOMAIN = "local"
MDNS_PORT = 5353
MDNS_GROUP_V4 = "224.0.0.251"
MDNS_GROUP_V6 = "ff02::fb"
MAX_MDNS_PACKET = 9000
# An IPv6 header (40) and a UDP header (8) leave this for the DNS message, on either IP version.
MAX_MDNS_MESSAGE = MAX_MDNS_PACKET - 40 - 8
KEY_CONVEYED_INFORMATION = b"ci"
KEY_OWNER_CERTIFICATE = b"oc"
KEY_OWNERSHIP_VOUCHER = b"ov"
_KEY_SEPARATOR = b"="

MAX_CHARACTER_STRING = 255
MAX_RDATA = 65535
MAX_TCP_MESSAGE = 65535
MAX_LABEL = 63
MAX_NAME_WIRE = 255
# RFC 2181 §8: a TTL is an unsigned number below 2**31.
MAX_TTL = 2**31 - 1
MAX_PORT = 65535
MAX_PRIORITY_OR_WEIGHT = 65535
# nsupdate reads each command into a buffer of this many octets, its newline and NUL included.
NSUPDATE_MAX_COMMAND = 128 * 1024

_DNS_HEADER = 12
_QUESTION_FIXED = 4  # QTYPE and QCLASS
_RR_FIXED = 10  # TYPE, CLASS, TTL, RDLENGTH
_COMPRESSED_NAME = 2  # an owner name written as a pointer to the question's
_SRV_FIXED = 6  # priority, weight, port
_LONGEST_QUESTION = MAX_NAME_WIRE + _QUESTION_FIXED

_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ZONE_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Octets written as `\X` in master-file names (RFC 1035 §5.1 and its conventions).
_NAME_SPECIALS = frozenset(b'"().;\\@$')
_PRINTABLE = range(0x20, 0x7F)
_ROOT = ""

TxtRdata = tuple[bytes, ...]
"""One TXT record's RDATA: its character-strings, each at most 255 octets."""

_FIELD_BY_KEY = {
    KEY_CONVEYED_INFORMATION: "conveyed_information",
    KEY_OWNER_CERTIFICATE: "owner_certificate",
    KEY_OWNERSHIP_VOUCHER: "ownership_voucher",
}


@dataclass(frozen=True)
class SrvRecord:
    """One SRV record at `_sztp._tcp`; `target` is a host name without its trailing dot."""

    priority: int
    weight: int
    port: int
    target: str


# ---- the operator's side: what to publish


def serial_label(serial: str) -> bytes:
    """The label `<serial>` of `<serial>._sztp`, refusing a serial no label can hold."""
    if not isinstance(serial, str):
        raise ValidationError("serial", f"must be a string, not {type(serial).__name__}")
    shown = ascii(serial)
    if not serial:
        raise ValidationError("serial", "must not be empty")
    if not serial.isascii() or any(ord(char) not in _PRINTABLE for char in serial):
        raise ValidationError("serial", f"{shown} has characters outside printable ASCII")
    if "." in serial:
        raise ValidationError(
            "serial", f"{shown} has a '.', which would split <serial>._sztp into two labels"
        )
    if len(serial) > MAX_LABEL:
        raise ValidationError("serial", f"{shown} is longer than a DNS label's {MAX_LABEL} octets")
    return serial.encode("ascii")


def device_txt(
    serial: str,
    *,
    conveyed_information: bytes,
    owner_certificate: bytes | None = None,
    ownership_voucher: bytes | None = None,
) -> list[TxtRdata]:
    """The TXT records to publish at `<serial>._sztp`: one per artifact, `ci` first."""
    serial_label(serial)
    values = {
        KEY_CONVEYED_INFORMATION: conveyed_information,
        KEY_OWNER_CERTIFICATE: owner_certificate,
        KEY_OWNERSHIP_VOUCHER: ownership_voucher,
    }
    rdatas: list[TxtRdata] = []
    for key, value in values.items():
        field = _FIELD_BY_KEY[key]
        if value is None:
            if key == KEY_CONVEYED_INFORMATION:
                raise ValidationError(field, "is required")
            continue
        if not isinstance(value, bytes):
            raise ValidationError(field, f"must be bytes, not {type(value).__name__}")
        if not value:
            raise ValidationError(field, "must not be empty")
        rdatas.append(_split(key + _KEY_SEPARATOR + value))
    if (owner_certificate is None) != (ownership_voucher is None):
        raise ValidationError(
            "owner_certificate", "owner_certificate and ownership_voucher go together"
        )
    size = _message_size(_LONGEST_QUESTION, (_rdata_wire_size(rdata) for rdata in rdatas))
    if size > MAX_TCP_MESSAGE:
        raise ValidationError(
            "conveyed_information",
            f"the answer would take {size} octets, over the {MAX_TCP_MESSAGE} of a DNS message "
            "over TCP; publish redirect information to a bootstrap server instead",
        )
    return rdatas


def bootstrap_srv(servers: Sequence[tuple[str, int, int, int]]) -> list[SrvRecord]:
    """The SRV records to publish at `_sztp._tcp`, from (host, port, priority, weight)."""
    if isinstance(servers, str | bytes) or not isinstance(servers, Sequence):
        raise ValidationError("servers", "expected a list of (host, port, priority, weight)")
    if not servers:
        raise ValidationError("servers", "at least one bootstrap server is required")
    records: list[SrvRecord] = []
    seen: set[tuple[str, int]] = set()
    for index, server in enumerate(servers):
        field = f"servers[{index}]"
        if not isinstance(server, tuple | list) or len(server) != 4:
            raise ValidationError(field, "expected (host, port, priority, weight)")
        host, port, priority, weight = server
        record = SrvRecord(
            priority=_check_number(priority, f"{field}/priority", 0, MAX_PRIORITY_OR_WEIGHT),
            weight=_check_number(weight, f"{field}/weight", 0, MAX_PRIORITY_OR_WEIGHT),
            port=_check_number(port, f"{field}/port", 1, MAX_PORT),
            target=_check_host(host, f"{field}/host"),
        )
        endpoint = (record.target.lower(), record.port)
        if endpoint in seen:
            raise ValidationError(field, f"{record.target} port {record.port} is listed twice")
        seen.add(endpoint)
        records.append(record)
    size = _message_size(_LONGEST_QUESTION, (_srv_wire_size(record) for record in records))
    if size > MAX_TCP_MESSAGE:
        raise ValidationError(
            "servers",
            f"the answer would take {size} octets, over the {MAX_TCP_MESSAGE} of a DNS message",
        )
    return records


def mdns_txt_answer_size(serial: str, rdatas: Sequence[TxtRdata]) -> int:
    """Octets of the reply to a one-shot mDNS query for `<serial>._sztp.local` TXT (RFC 6762
    §6.7): the question repeated, each answer's owner name a pointer to it."""
    question = _name_wire_size(f"{serial}.{SZTP_NODE}.{MDNS_DOMAIN}") + _QUESTION_FIXED
    return _message_size(question, (_rdata_wire_size(rdata) for rdata in rdatas))


def render_zone_fragment(
    *,
    ttl: int,
    devices: Mapping[str, Sequence[TxtRdata]] | None = None,
    servers: Sequence[SrvRecord] = (),
    origin: str | None = None,
) -> str:
    """Master-file text (RFC 1035 §5) for the records: names relative to the zone's origin,
    or absolute under `origin` when given."""
    suffix = "" if origin is None else "." + check_domain(origin) + "."
    lines: list[str] = []
    for name, rdatas, srvs in _rrsets(ttl, devices, servers):
        for rdata in rdatas:
            strings = [_quoted(string) for string in rdata]
            if len(strings) == 1:
                lines.append(f"{name}{suffix} {ttl} IN TXT {strings[0]}")
            else:
                lines.append(f"{name}{suffix} {ttl} IN TXT (")
                lines += [f"    {string}" for string in strings]
                lines.append("    )")
        lines += [f"{name}{suffix} {ttl} IN SRV {_srv_text(record)}" for record in srvs]
    return "".join(line + "\n" for line in lines)


def render_nsupdate(
    *,
    ttl: int,
    origin: str,
    devices: Mapping[str, Sequence[TxtRdata]] | None = None,
    servers: Sequence[SrvRecord] = (),
) -> str:
    """An nsupdate script replacing each RRset with the records, then `send`; the `server`,
    `zone` and `key` lines are the caller's to put first."""
    suffix = "." + check_domain(origin) + "."
    lines: list[str] = []
    for name, rdatas, srvs in _rrsets(ttl, devices, servers):
        owner = name + suffix
        rtype = "TXT" if rdatas else "SRV"
        lines.append(f"update delete {owner} {rtype}")
        lines += [
            f"update add {owner} {ttl} TXT " + " ".join(_quoted(string) for string in rdata)
            for rdata in rdatas
        ]
        lines += [f"update add {owner} {ttl} SRV {_srv_text(record)}" for record in srvs]
    lines.append("send")
    for line in lines:
        if len(line) + len("\n\0") > NSUPDATE_MAX_COMMAND:
            raise ValidationError(
                "devices",
                f"an nsupdate command would be {len(line)} characters, more than nsupdate "
                f"reads ({NSUPDATE_MAX_COMMAND} with its newline); load a zone file instead",
            )
    return "".join(line + "\n" for line in lines)


# ---- the device's side: what to make of an answer


def parse_device_txt(rdatas: Sequence[Sequence[bytes]]) -> tuple[bytes, bytes | None, bytes | None]:
    """(conveyed information, owner certificate, ownership voucher) from the TXT records
    answering `<serial>._sztp`; the last two are None for unsigned data."""
    if isinstance(rdatas, str | bytes) or not isinstance(rdatas, Sequence):
        raise ValidationError("txt", "expected a list of TXT records")
    # The least a message carrying these records takes: no question counted.
    size = _DNS_HEADER
    for index, rdata in enumerate(rdatas):
        size += _answer_record_size(_check_received_rdata(rdata, index))
        if size > MAX_TCP_MESSAGE:
            raise ValidationError(
                "txt",
                f"the records take over {MAX_TCP_MESSAGE} octets, more than any DNS message holds",
            )
    found: dict[bytes, bytes] = {}
    for rdata in rdatas:
        key, separator, value = b"".join(rdata).partition(_KEY_SEPARATOR)
        key = key.lower()
        if key not in _FIELD_BY_KEY:
            continue
        field = _FIELD_BY_KEY[key]
        if not separator:
            raise ValidationError(field, f"the record '{key.decode()}' has no '=' and no value")
        if not value:
            raise ValidationError(field, f"the record '{key.decode()}=' has an empty value")
        if key in found:
            raise ValidationError(field, f"the key '{key.decode()}' comes in two records")
        found[key] = value
    if KEY_CONVEYED_INFORMATION not in found:
        raise ValidationError("conveyed_information", "the answer has no 'ci' record")
    owner_certificate = found.get(KEY_OWNER_CERTIFICATE)
    ownership_voucher = found.get(KEY_OWNERSHIP_VOUCHER)
    if (owner_certificate is None) != (ownership_voucher is None):
        raise ValidationError(
            "owner_certificate", "the answer has only one of 'oc' and 'ov'; they go together"
        )
    return found[KEY_CONVEYED_INFORMATION], owner_certificate, ownership_voucher


def order_srv(records: Sequence[SrvRecord], rng: random.Random) -> list[SrvRecord]:
    """The order to try the targets in (RFC 2782): lowest priority first; within a priority,
    a weighted random draw, weight 0 drawn only by chance 0 while any weight is above 0."""
    checked = _check_received_srv(records)
    if len(checked) == 1 and checked[0].target == _ROOT:
        return []
    ordered: list[SrvRecord] = []
    for priority in sorted({record.priority for record in checked}):
        remaining = [record for record in checked if record.priority == priority]
        # Shuffled so that equal weights share the load, then weight 0 first as RFC 2782 has it.
        rng.shuffle(remaining)
        remaining.sort(key=lambda record: record.weight != 0)
        while remaining:
            drawn = rng.randint(0, sum(record.weight for record in remaining))
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= drawn:
                    ordered.append(remaining.pop(index))
                    break
    return ordered


def srv_uris(records: Sequence[SrvRecord], rng: random.Random) -> list[str]:
    """`https://target:port` for each record, in the order to try them."""
    return [f"https://{record.target}:{record.port}" for record in order_srv(records, rng)]


# ---- shared rules


def _split(content: bytes) -> TxtRdata:
    return tuple(
        content[start : start + MAX_CHARACTER_STRING]
        for start in range(0, len(content), MAX_CHARACTER_STRING)
    )


def _rdata_wire_size(rdata: Sequence[bytes]) -> int:
    return sum(1 + len(string) for string in rdata)


def _srv_wire_size(record: SrvRecord) -> int:
    return _SRV_FIXED + _name_wire_size(record.target)


def _name_wire_size(name: str) -> int:
    labels = name.split(".") if name else []
    return sum(1 + len(label) for label in labels) + 1


def _answer_record_size(rdata_size: int) -> int:
    """Octets of one answer record, its owner name compressed to a pointer."""
    return _COMPRESSED_NAME + _RR_FIXED + rdata_size


def _message_size(question: int, rdata_sizes: Iterable[int]) -> int:
    """Octets of a message with this question and answers of these RDATA sizes."""
    return _DNS_HEADER + question + sum(_answer_record_size(size) for size in rdata_sizes)


def _check_number(value: object, field: str, low: int, high: int) -> int:
    # bool is an int to Python, never a port or a weight to an operator.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(field, f"must be an integer, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValidationError(field, f"{value} is outside {low}..{high}")
    return value


def _check_host(value: object, field: str) -> str:
    """A host name (trailing dot optional), returned without its trailing dot."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    shown = ascii(value)
    name = value[:-1] if value.endswith(".") else value
    if not name:
        raise ValidationError(field, f"{shown} is not a host name")
    labels = name.split(".")
    if len(name) + 2 > MAX_NAME_WIRE:
        raise ValidationError(field, f"{shown} is longer than a DNS name's {MAX_NAME_WIRE} octets")
    for label in labels:
        if not _HOST_LABEL.fullmatch(label):
            raise ValidationError(
                field, f"{shown} is not a host name: labels are 1-63 letters, digits or hyphens"
            )
    if labels[-1].isdigit():
        raise ValidationError(
            field, f"{shown} is an address or ends in a numeric label; SRV targets are host names"
        )
    return name


def check_domain(value: object, field: str = "origin") -> str:
    """A domain name (trailing dot optional; labels may hold `_`), without its trailing dot."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, not {type(value).__name__}")
    name = value[:-1] if value.endswith(".") else value
    if (
        not name
        or len(name) + 2 > MAX_NAME_WIRE
        or not all(_ZONE_LABEL.fullmatch(label) for label in name.split("."))
    ):
        raise ValidationError(field, f"{value!a} is not a domain name")
    return name


def _check_ttl(value: object) -> int:
    return _check_number(value, "ttl", 0, MAX_TTL)


def _check_rdata(rdata: object, field: str) -> TxtRdata:
    if isinstance(rdata, str | bytes) or not isinstance(rdata, Sequence) or not rdata:
        raise ValidationError(field, "a TXT record is a non-empty list of byte strings")
    for string in rdata:
        if not isinstance(string, bytes):
            raise ValidationError(
                field, f"a character-string must be bytes, not {type(string).__name__}"
            )
        if len(string) > MAX_CHARACTER_STRING:
            raise ValidationError(
                field, f"a character-string of {len(string)} octets; at most {MAX_CHARACTER_STRING}"
            )
    if _rdata_wire_size(rdata) > MAX_RDATA:
        raise ValidationError(field, f"a TXT record over {MAX_RDATA} octets")
    return tuple(rdata)


def _check_received_rdata(rdata: object, index: int) -> int:
    """The wire size of one received TXT RDATA; none at all is allowed (and ignored)."""
    if isinstance(rdata, Sequence) and not isinstance(rdata, str | bytes) and not rdata:
        return 0
    return _rdata_wire_size(_check_rdata(rdata, f"txt[{index}]"))


def _check_received_srv(records: object) -> list[SrvRecord]:
    if isinstance(records, str | bytes) or not isinstance(records, Sequence):
        raise ValidationError("srv", "expected a list of SRV records")
    checked: list[SrvRecord] = []
    size = _DNS_HEADER
    for index, record in enumerate(records):
        field = f"srv[{index}]"
        if not isinstance(record, SrvRecord):
            raise ValidationError(field, f"expected an SrvRecord, not {type(record).__name__}")
        target = record.target
        if isinstance(target, str) and target in (".", _ROOT):
            target = _ROOT
        else:
            target = _check_host(target, f"{field}/target")
        checked.append(
            SrvRecord(
                priority=_check_number(
                    record.priority, f"{field}/priority", 0, MAX_PRIORITY_OR_WEIGHT
                ),
                weight=_check_number(record.weight, f"{field}/weight", 0, MAX_PRIORITY_OR_WEIGHT),
                port=_check_number(record.port, f"{field}/port", 1 if target else 0, MAX_PORT),
                target=target,
            )
        )
        size += _answer_record_size(_srv_wire_size(checked[-1]))
        if size > MAX_TCP_MESSAGE:
            raise ValidationError(
                "srv", f"more records than a {MAX_TCP_MESSAGE}-octet message holds"
            )
    if any(record.target == _ROOT for record in checked) and len(checked) > 1:
        raise ValidationError("srv", "a target '.' (no service) among other records")
    return checked


def _rrsets(
    ttl: int,
    devices: Mapping[str, Sequence[TxtRdata]] | None,
    servers: Sequence[SrvRecord],
) -> list[tuple[str, list[TxtRdata], list[SrvRecord]]]:
    """(relative owner name, TXT RDATAs, SRV records) per RRset, devices first."""
    _check_ttl(ttl)
    rrsets: list[tuple[str, list[TxtRdata], list[SrvRecord]]] = []
    for serial, rdatas in (devices or {}).items():
        owner = f"{_name_text(serial_label(serial))}.{SZTP_NODE}"
        field = f"devices/{serial}"
        if isinstance(rdatas, str | bytes) or not isinstance(rdatas, Sequence) or not rdatas:
            raise ValidationError(field, "expected a list of TXT records")
        checked = [_check_rdata(rdata, field) for rdata in rdatas]
        size = _message_size(_LONGEST_QUESTION, (_rdata_wire_size(rdata) for rdata in checked))
        if size > MAX_TCP_MESSAGE:
            raise ValidationError(
                field,
                f"the answer would take {size} octets, over the {MAX_TCP_MESSAGE} of a message",
            )
        rrsets.append((owner, checked, []))
    if servers:
        srvs = [record for record in _check_received_srv(servers) if record.target != _ROOT]
        if len(srvs) != len(servers):
            raise ValidationError("servers", "a target '.' is not published; leave servers out")
        rrsets.append((SRV_OWNER, [], srvs))
    if not rrsets:
        raise ValidationError("devices", "nothing to render: give devices or servers")
    return rrsets


def _srv_text(record: SrvRecord) -> str:
    return f"{record.priority} {record.weight} {record.port} {record.target}."


def _quoted(string: bytes) -> str:
    """A character-string in master-file quotes, `\\DDD` for octets outside printable ASCII."""
    parts = ['"']
    for octet in string:
        if octet in b'"\\':
            parts.append("\\" + chr(octet))
        elif octet in _PRINTABLE:
            parts.append(chr(octet))
        else:
            parts.append(f"\\{octet:03d}")
    parts.append('"')
    return "".join(parts)


def _name_text(label: bytes) -> str:
    """One label in master-file text, special characters escaped."""
    parts = []
    for octet in label:
        if octet in _NAME_SPECIALS:
            parts.append("\\" + chr(octet))
        elif octet in _PRINTABLE and octet != ord(" "):
            parts.append(chr(octet))
        else:
            parts.append(f"\\{octet:03d}")
    return "".join(parts)

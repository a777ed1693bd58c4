"""The few DER encodings this project writes itself (X.690): a TLV, and the bounds of one
in DER this project wrote (never used to read what a peer sent: cms.py checks that)."""

SEQUENCE = 0x30
BIT_STRING = 0x03


def tlv(tag: int, content: bytes) -> bytes:
    """A DER TLV: `tag`, the definite length (short or long form), `content`."""
    size = len(content)
    if size < 0x80:
        return bytes((tag, size)) + content
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(length))) + length + content


def element_bounds(der: bytes, offset: int) -> tuple[int, int]:
    """Where the contents of the DER element at `offset` (a one-byte tag) start, and where the
    element ends."""
    length = der[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    return start, start + length

"""What the device listing shows of a device's current LDevID (RFC 9646), declared once: the
server fills it in, its OpenAPI document describes it and the inventory plugin sets it as the
host variable `sztp_ldevid`. A device's current LDevID is the newest certificate issued to it,
while that one is neither revoked nor expired: a revoked newest one leaves the device none,
whatever it held before. Light on purpose: nothing but names."""

# Each field of the summary and what it holds; every value is a string.
CURRENT_LDEVID_FIELDS: dict[str, str] = {
    "serial_number": "The certificate's serial number, lower-case hex",
    "issuer": "The server's LDevID issuer that signed it (its name in ldevid_issuers)",
    "not_before": "Start of its validity (UTC, ISO 8601)",
    "not_after": "End of its validity (UTC, ISO 8601)",
}
# The fields that are moments, the others being text.
CURRENT_LDEVID_TIMES: frozenset[str] = frozenset({"not_before", "not_after"})

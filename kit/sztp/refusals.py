"""Why the server refused a device's request, declared once: the server names the reason of
every refusal (the device itself only ever learns `access-denied` or the like), and the
metrics, the log, the API, the CLI and the docs show it and say what it means. Light on
purpose: the CLI imports it at start-up."""

import enum


class Refusal(enum.StrEnum):
    """The reason a device request was refused (names of reasons, not secrets)."""

    NO_CREDENTIALS = "no-credentials"
    MALFORMED_CREDENTIALS = "malformed-credentials"
    UNTRUSTED_PROXY_HEADER = "untrusted-proxy-header"
    UNTRUSTED_CERTIFICATE = "untrusted-certificate"
    EXPIRED_CERTIFICATE = "expired-certificate"
    UNUSABLE_CERTIFICATE = "unusable-certificate"
    UNKNOWN_SERIAL = "unknown-serial"
    NO_PASSWORD = "no-password"  # noqa: S105
    WRONG_SECRET = "wrong-secret"  # noqa: S105
    SERIAL_MISMATCH = "serial-mismatch"
    UNUSABLE_STORED_SECRET = "unusable-stored-secret"  # noqa: S105
    RATE_LIMITED = "rate-limited"
    BUSY = "busy"
    REPORTS_TOO_FAST = "reports-too-fast"
    DEVICE_DELETED = "device-deleted"
    NO_BOOTSTRAPPING_DATA = "no-bootstrapping-data"
    DATA_UNAVAILABLE = "data-unavailable"
    LDEVID_REFUSED = "ldevid-refused"
    LDEVID_UNAVAILABLE = "ldevid-unavailable"
    BAD_REQUEST = "bad-request"
    BODY_TOO_LARGE = "body-too-large"
    BODY_INCOMPLETE = "body-incomplete"
    BODY_TOO_SLOW = "body-too-slow"

    @property
    def meaning(self) -> str:
        """What happened, for an operator."""
        return _MEANINGS[self]


_MEANINGS = {
    Refusal.NO_CREDENTIALS: "neither a client certificate nor Basic credentials",
    Refusal.MALFORMED_CREDENTIALS: (
        "credentials that cannot be read: an unsupported Authorization scheme, several "
        "Authorization headers, Basic credentials that are not base64 of serial:secret, a "
        "client certificate that does not parse, or too many certificates"
    ),
    Refusal.UNTRUSTED_PROXY_HEADER: (
        "a client certificate header from an address that is not a trusted proxy, or repeated, "
        "merged or empty"
    ),
    Refusal.UNTRUSTED_CERTIFICATE: (
        "a client certificate no configured trust anchor issued (an unknown manufacturer CA, "
        "a missing intermediate, a broken path)"
    ),
    Refusal.EXPIRED_CERTIFICATE: "a client certificate outside its validity period",
    Refusal.UNUSABLE_CERTIFICATE: (
        "a trusted client certificate that may not authenticate a TLS client, or whose serial "
        "number the trust anchor's serial pattern does not find"
    ),
    Refusal.UNKNOWN_SERIAL: "a serial number the fleet does not hold",
    Refusal.NO_PASSWORD: "Basic credentials for a device that has no password or activation code",
    Refusal.WRONG_SECRET: "the wrong password or activation code",
    Refusal.SERIAL_MISMATCH: "a client certificate and Basic credentials naming different serials",
    Refusal.UNUSABLE_STORED_SECRET: (
        "the device's stored password hash cannot be used: set it again"
    ),
    Refusal.RATE_LIMITED: "too many failed logins from the address or for the serial",
    Refusal.BUSY: "too many password checks under way; the device was told to retry",
    Refusal.REPORTS_TOO_FAST: "progress reports faster than the per-device rate allows",
    Refusal.DEVICE_DELETED: "a progress report from a device deleted meanwhile",
    Refusal.NO_BOOTSTRAPPING_DATA: (
        "no profile of the device matches what it sent (see its selection)"
    ),
    Refusal.DATA_UNAVAILABLE: "its bootstrapping data could not be rendered or signed",
    Refusal.LDEVID_REFUSED: (
        "a device whose profile issues LDevIDs without what RFC 9646 needs: its IDevID, a "
        "trusted connection, csr-support with an allowed key algorithm and PKCS#10, or a CSR "
        "that is correct (signature, subject, key)"
    ),
    Refusal.LDEVID_UNAVAILABLE: (
        "the LDevID issuer did not certify the device's key in time or refused it; the device "
        "was told to retry"
    ),
    Refusal.BAD_REQUEST: "an RPC body or media type the server does not accept",
    Refusal.BODY_TOO_LARGE: "a request body larger than the RPC allows",
    Refusal.BODY_INCOMPLETE: "the connection closed before the request body ended",
    Refusal.BODY_TOO_SLOW: "the request body did not arrive in time",
}

REFUSALS: tuple[str, ...] = tuple(refusal.value for refusal in Refusal)

# What the flight recorder and the metrics name a TLS handshake that refused the client's
# certificate, in place of the RPC it never got to ask for.
TLS_HANDSHAKE = "tls-handshake"

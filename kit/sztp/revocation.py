"""Why a certificate is revoked, declared once: the RFC 5280 CRLReason names the server stores
and puts in its CRLs, that the API accepts and the CLI offers. Light on purpose: the CLI
imports it at start-up."""

REVOCATION_REASONS: tuple[str, ...] = (
    "unspecified",
    "keyCompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
)
DEFAULT_REVOCATION_REASON = "unspecified"

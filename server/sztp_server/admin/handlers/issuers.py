"""`/api/v1/issuers/{name}/crl`: the CRL of a builtin LDevID issuer, for file servers to
publish."""

from __future__ import annotations

import logging

from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding

from ...config import ServerConfig
from ...ldevid.crl import CrlSigners
from ...ldevid.issuers import IssuerError
from ...pkcs11_keys import Pkcs11Keys
from ...store.async_store import AsyncStore
from ...store.base import utc_now
from ..errors import ApiError
from ..requests import text_query

LOG = logging.getLogger(__name__)
# The CRL's encodings by `format`, each with its media type (RFC 2585; PEM as files carry it).
CRL_FORMATS = {
    "der": (Encoding.DER, "application/pkix-crl"),
    "pem": (Encoding.PEM, "application/x-pem-file"),
}


class IssuerHandlers:
    def __init__(self, store: AsyncStore, config: ServerConfig, tokens: Pkcs11Keys) -> None:
        self.store = store
        self.issuers = {issuer.name: issuer for issuer in config.ldevid_issuers}
        self.signers = CrlSigners(config.ldevid_issuers, tokens)

    async def crl(self, request: web.Request) -> web.Response:
        """A CRL signed now by the issuer's CA key, listing every certificate of the issuer
        revoked so far (`format=pem` for PEM, DER otherwise)."""
        name = request.match_info["name"]
        wanted = text_query(request, "format") or "der"
        if wanted not in CRL_FORMATS:
            raise ApiError(400, f"must be one of {', '.join(CRL_FORMATS)}", field="format")
        encoding, media_type = CRL_FORMATS[wanted]
        issuer = self.issuers.get(name)
        if issuer is None:
            raise ApiError(404, f"no LDevID issuer named {name!r} is configured")
        if issuer.type != "builtin":
            raise ApiError(
                404,
                f"issuer {name} is a {issuer.type} issuer: its CA publishes the CRL of the "
                "certificates it issued, not this server",
            )

        def signed() -> bytes:  # on a store thread: a read, then a signature
            revoked = self.store.store.revoked_certificates(name)
            return self.signers.sign(name, revoked, utc_now()).public_bytes(encoding)

        try:
            body = await self.store.run(signed)
        except IssuerError as exc:
            LOG.error("the CRL of issuer %s cannot be signed: %s", name, exc)
            raise ApiError(
                503, f"the CRL of issuer {name} cannot be signed; the server log says why"
            ) from None
        return web.Response(body=body, content_type=media_type)

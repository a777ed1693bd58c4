"""An external CA over CMP (RFC 9810) as the Lightweight CMP Profile (RFC 9483) has it.

One issuance is one CMP transaction, POSTed over HTTP (RFC 6712, `application/pkixcmp`) to
the configured URL:

1. `p10cr` (RFC 9483 §4.1.4): the device's PKCS#10 request as it came, in a PKIMessage whose
   header carries a fresh random transactionID and senderNonce, the shared secret's reference
   as senderKID, and `implicitConfirm` in generalInfo. The protection is a MAC over the DER
   ProtectedPart (header and body) keyed from the shared secret with PasswordBasedMac
   (RFC 4211 §4.4, RFC 9481 §6.1.1; SHA-256 and HMAC-SHA256). PBMAC1 would be preferred, but
   OpenSSL 3.0's CMP (the reference server of the tests) verifies only PasswordBasedMac.
2. `cp`: the answer must be MAC-protected with the same secret, for our transactionID, with
   recipNonce = our senderNonce, and hold one CertResponse whose status is accepted or
   grantedWithMods and whose certificate chains to the configured CA certificates and is for
   the requested key and subject. An `error` body, or any other status, is a refusal whose
   PKIStatusInfo (status, failInfo bits, text) goes into the IssuerError.
3. When the CA granted implicit confirmation (`implicitConfirm` in the answer's generalInfo)
   the transaction ends there. Otherwise `certConf` confirms the certificate by its hash (or
   rejects it, when a check in step 2 failed) and the CA answers `pkiConf`.

The whole exchange is bounded by the issuer's timeout and each answer by MAX_RESPONSE_BYTES.
Only the ASN.1 this client sends or reads is declared below (asn1crypto); CMP's module uses
EXPLICIT TAGS, so every context tag is explicit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

import requests
from asn1crypto import core
from asn1crypto import csr as asn1_csr
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization

from sztp.errors import SztpError
from sztp.protocol import pki

from ..config import LdevidIssuer
from .issuers import Issued, IssueRequest, IssuerError, checked_answer, read_file, read_secret_file

# The largest CMP answer read: a certificate response with a few chain certificates is far less.
MAX_RESPONSE_BYTES = 256 * 1024
CONTENT_TYPE = "application/pkixcmp"

ID_PASSWORD_BASED_MAC = "1.2.840.113533.7.66.13"  # noqa: S105 - an OID, not a password
ID_IT_IMPLICIT_CONFIRM = "1.3.6.1.5.5.7.4.13"
_SHA256 = "2.16.840.1.101.3.4.2.1"
_HMAC_WITH_SHA256 = "1.2.840.113549.2.9"
# What an answer's PasswordBasedMac may use: its one-way function and its MAC (RFC 4211 §4.4
# makes SHA-1 and HMAC-SHA1 mandatory, and OpenSSL answers with HMAC-SHA1 by default).
_OWF_HASHES = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.4": "sha224",
    _SHA256: "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_MAC_HASHES = {
    "1.3.6.1.5.5.8.1.2": "sha1",
    "1.2.840.113549.2.7": "sha1",
    "1.2.840.113549.2.8": "sha224",
    _HMAC_WITH_SHA256: "sha256",
    "1.2.840.113549.2.10": "sha384",
    "1.2.840.113549.2.11": "sha512",
}
# RFC 4211 §4.4 sets the floor; the ceiling (OpenSSL's too) keeps a hostile answer from making
# us hash for minutes. Ours stays low because some deployed CAs refuse counts above 2047.
_MIN_ITERATIONS = 100
_MAX_ITERATIONS = 100_000
_ITERATIONS = 1024
_SALT_BYTES = 16
_NONCE_BYTES = 16
_PVNO_CMP2000 = 2  # RFC 9483 §3.1: 2 unless cmp2021 features (none here) are used
_PVNO_CMP2021 = 3
# RFC 9483 §4.1.4: -1 answers a p10cr; older servers answer 0, which RFC 4210 left open.
_P10CR_CERT_REQ_IDS = (-1, 0)
_MAX_CHAIN_DEPTH = 8
_MAX_TEXT = 300

_STATUS_NAMES = {
    0: "accepted",
    1: "grantedWithMods",
    2: "rejection",
    3: "waiting",
    4: "revocationWarning",
    5: "revocationNotification",
    6: "keyUpdateWarning",
}
_ACCEPTED, _GRANTED_WITH_MODS, _REJECTION = 0, 1, 2
_WAITING = 3
_FAILURE_BITS = {
    0: "badAlg",
    1: "badMessageCheck",
    2: "badRequest",
    3: "badTime",
    4: "badCertId",
    5: "badDataFormat",
    6: "wrongAuthority",
    7: "incorrectData",
    8: "missingTimeStamp",
    9: "badPOP",
    10: "certRevoked",
    11: "certConfirmed",
    12: "wrongIntegrity",
    13: "badRecipientNonce",
    14: "timeNotAvailable",
    15: "unacceptedPolicy",
    16: "unacceptedExtension",
    17: "addInfoNotAvailable",
    18: "badSenderNonce",
    19: "badCertTemplate",
    20: "signerNotTrusted",
    21: "transactionIdInUse",
    22: "unsupportedVersion",
    23: "notAuthorized",
    24: "systemUnavail",
    25: "systemFailure",
    26: "duplicateCertReq",
}
_FAILURE_BIT_NUMBERS = {name: bit for bit, name in _FAILURE_BITS.items()}
_ERRNO = re.compile(r"\[Errno -?\d+\][^'\")]*")


# --- ASN.1 (RFC 9810 appendix F, PKIXCMP-2023, EXPLICIT TAGS) --------------------------------


class _AlgorithmIdentifier(core.Sequence):
    _fields: ClassVar = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class _PBMParameter(core.Sequence):
    _fields: ClassVar = [
        ("salt", core.OctetString),
        ("owf", _AlgorithmIdentifier),
        ("iteration_count", core.Integer),
        ("mac", _AlgorithmIdentifier),
    ]


class _FreeText(core.SequenceOf):
    _child_spec = core.UTF8String


class _InfoTypeAndValue(core.Sequence):
    _fields: ClassVar = [
        ("info_type", core.ObjectIdentifier),
        ("info_value", core.Any, {"optional": True}),
    ]


class _GeneralInfo(core.SequenceOf):
    _child_spec = _InfoTypeAndValue


class _PKIHeader(core.Sequence):
    _fields: ClassVar = [
        ("pvno", core.Integer),
        ("sender", asn1_x509.GeneralName),
        ("recipient", asn1_x509.GeneralName),
        ("message_time", core.GeneralizedTime, {"explicit": 0, "optional": True}),
        ("protection_alg", _AlgorithmIdentifier, {"explicit": 1, "optional": True}),
        ("sender_kid", core.OctetString, {"explicit": 2, "optional": True}),
        ("recip_kid", core.OctetString, {"explicit": 3, "optional": True}),
        ("transaction_id", core.OctetString, {"explicit": 4, "optional": True}),
        ("sender_nonce", core.OctetString, {"explicit": 5, "optional": True}),
        ("recip_nonce", core.OctetString, {"explicit": 6, "optional": True}),
        ("free_text", _FreeText, {"explicit": 7, "optional": True}),
        ("general_info", _GeneralInfo, {"explicit": 8, "optional": True}),
    ]


class _PKIFailureInfo(core.BitString):
    _map: ClassVar = _FAILURE_BITS


class _PKIStatusInfo(core.Sequence):
    _fields: ClassVar = [
        ("status", core.Integer),
        ("status_string", _FreeText, {"optional": True}),
        ("fail_info", _PKIFailureInfo, {"optional": True}),
    ]


class _Certificates(core.SequenceOf):
    _child_spec = asn1_x509.Certificate


class _CertOrEncCert(core.Choice):
    _alternatives: ClassVar = [
        ("certificate", asn1_x509.Certificate, {"explicit": 0}),
        ("encrypted_cert", core.Any, {"explicit": 1}),
    ]


class _CertifiedKeyPair(core.Sequence):
    _fields: ClassVar = [
        ("cert_or_enc_cert", _CertOrEncCert),
        ("private_key", core.Any, {"explicit": 0, "optional": True}),
        ("publication_info", core.Any, {"explicit": 1, "optional": True}),
    ]


class _CertResponse(core.Sequence):
    _fields: ClassVar = [
        ("cert_req_id", core.Integer),
        ("status", _PKIStatusInfo),
        ("certified_key_pair", _CertifiedKeyPair, {"optional": True}),
        ("rsp_info", core.OctetString, {"optional": True}),
    ]


class _CertResponses(core.SequenceOf):
    _child_spec = _CertResponse


class _CertRepMessage(core.Sequence):
    _fields: ClassVar = [
        ("ca_pubs", _Certificates, {"explicit": 1, "optional": True}),
        ("response", _CertResponses),
    ]


class _CertStatus(core.Sequence):
    _fields: ClassVar = [
        ("cert_hash", core.OctetString),
        ("cert_req_id", core.Integer),
        ("status_info", _PKIStatusInfo, {"optional": True}),
        ("hash_alg", _AlgorithmIdentifier, {"explicit": 0, "optional": True}),
    ]


class _CertConfirmContent(core.SequenceOf):
    _child_spec = _CertStatus


class _ErrorMsgContent(core.Sequence):
    _fields: ClassVar = [
        ("pki_status_info", _PKIStatusInfo),
        ("error_code", core.Integer, {"optional": True}),
        ("error_details", _FreeText, {"optional": True}),
    ]


# Every alternative is declared, so that an unexpected answer is named rather than undecodable;
# the ones this client never reads stay opaque.
_BODY_NAMES = [
    "ir",
    "ip",
    "cr",
    "cp",
    "p10cr",
    "popdecc",
    "popdecr",
    "kur",
    "kup",
    "krr",
    "krp",
    "rr",
    "rp",
    "ccr",
    "ccp",
    "ckuann",
    "cann",
    "rann",
    "crlann",
    "pkiconf",
    "nested",
    "genm",
    "genp",
    "error",
    "certConf",
    "pollReq",
    "pollRep",
]
_BODY_SPECS: dict[str, type[core.Asn1Value]] = {
    "cp": _CertRepMessage,
    "ip": _CertRepMessage,
    "p10cr": asn1_csr.CertificationRequest,
    "pkiconf": core.Null,
    "error": _ErrorMsgContent,
    "certConf": _CertConfirmContent,
}


class _PKIBody(core.Choice):
    _alternatives: ClassVar = [
        (name, _BODY_SPECS.get(name, core.Any), {"explicit": tag})
        for tag, name in enumerate(_BODY_NAMES)
    ]


class _ProtectedPart(core.Sequence):
    _fields: ClassVar = [("header", _PKIHeader), ("body", _PKIBody)]


class _PKIMessage(core.Sequence):
    _fields: ClassVar = [
        ("header", _PKIHeader),
        ("body", _PKIBody),
        ("protection", core.OctetBitString, {"explicit": 0, "optional": True}),
        ("extra_certs", _Certificates, {"explicit": 1, "optional": True}),
    ]


# --- the client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Transaction:
    session: requests.Session
    deadline: float  # time.monotonic() by which the whole exchange must be over
    transaction_id: bytes
    sender: asn1_x509.GeneralName


@dataclass(frozen=True)
class _Confirmation:
    """What certConf needs of the cp it confirms."""

    server_nonce: bytes
    certificate_der: bytes
    cert_req_id: int


class CmpIssuer:
    """Certificates from a CMP server that authenticates this client by a shared secret."""

    def __init__(self, config: LdevidIssuer) -> None:
        url, reference = config.url, config.reference
        secret_file, certificate_file = config.secret_file, config.certificate_file
        if not url or not reference or secret_file is None or certificate_file is None:
            raise IssuerError(
                f"issuer {config.name}: url, reference, secret_file and certificate_file"
            )
        self.name = config.name
        self.url = url
        self.reference = reference.encode()
        self.timeout = config.timeout
        # A trailing newline is the file's, not the secret's (as `openssl cmp -secret file:`).
        self.secret = read_secret_file(secret_file, config.name).rstrip(b"\r\n")
        if not self.secret:
            raise IssuerError(f"issuer {self.name}: {secret_file} is empty")
        pem = read_file(certificate_file, self.name)
        try:
            self.ca_certificates = tuple(pki.load_certificates_pem(pem))
        except SztpError as exc:
            raise IssuerError(f"issuer {self.name}: {certificate_file}: {exc}") from None
        # The recipient of our messages: the CA that is to issue.
        self.recipient = _directory_name(self.ca_certificates[0].subject)

    def issue(self, request: IssueRequest) -> Issued:
        with requests.Session() as session:
            # The configured URL is where the CA is: the process environment's proxies and CA
            # bundles are for other traffic.
            session.trust_env = False
            transaction = _Transaction(
                session=session,
                deadline=time.monotonic() + self.timeout,
                transaction_id=os.urandom(_NONCE_BYTES),
                sender=_directory_name(request.csr.subject),
            )
            return self._enroll(transaction, request)

    def _enroll(self, transaction: _Transaction, request: IssueRequest) -> Issued:
        sender_nonce = os.urandom(_NONCE_BYTES)
        csr = asn1_csr.CertificationRequest.load(
            request.csr.public_bytes(serialization.Encoding.DER)
        )
        header = self._header(transaction, sender_nonce, None, implicit_confirm=True)
        answer = self._exchange(transaction, header, _PKIBody(name="p10cr", value=csr))
        with self._decoding("cp"):
            self._check_answer(answer, transaction, sender_nonce)
            body = answer["body"]
            if body.name == "error":
                raise IssuerError(f"issuer {self.name}: {_error_text(body.chosen)}")
            if body.name != "cp":
                raise IssuerError(f"issuer {self.name}: answer is {body.name}, not cp")
            responses = body.chosen["response"]
            if len(responses) != 1:
                raise IssuerError(f"issuer {self.name}: {len(responses)} CertResponses, not 1")
            response = responses[0]
            cert_req_id = response["cert_req_id"].native
            if cert_req_id not in _P10CR_CERT_REQ_IDS:
                raise IssuerError(f"issuer {self.name}: certReqId {cert_req_id} is not -1")
            status = response["status"]
            if status["status"].native == _WAITING:
                # Polling (RFC 9483 §4.4) is not implemented: the device retries instead.
                raise IssuerError(f"issuer {self.name}: the CA wants polling: {_status(status)}")
            if status["status"].native not in (_ACCEPTED, _GRANTED_WITH_MODS):
                raise IssuerError(f"issuer {self.name}: the CA refused: {_status(status)}")
            key_pair = response["certified_key_pair"]
            if (
                isinstance(key_pair, core.Void)
                or key_pair["cert_or_enc_cert"].name != "certificate"
            ):
                raise IssuerError(f"issuer {self.name}: the answer holds no plain certificate")
            leaf_der = key_pair["cert_or_enc_cert"].chosen.untag().dump()
            implicit = _has_implicit_confirm(answer["header"])
            server_nonce = answer["header"]["sender_nonce"].native
            untrusted = _certificates(answer["extra_certs"])
            untrusted += _certificates(body.chosen["ca_pubs"])
        confirmation = _Confirmation(server_nonce, leaf_der, cert_req_id)
        try:
            issued = self._checked(leaf_der, untrusted, request)
        except IssuerError:
            if not implicit:
                # Tell the CA we do not take it (RFC 9483 §4.1.1), so it need not publish it.
                self._confirm(transaction, confirmation, accept=False)
            raise
        if not implicit:
            self._confirm(transaction, confirmation, accept=True)
        return issued

    # --- messages ---

    def _header(
        self,
        transaction: _Transaction,
        sender_nonce: bytes,
        recip_nonce: bytes | None,
        *,
        implicit_confirm: bool,
    ) -> _PKIHeader:
        parameters = _PBMParameter(
            {
                "salt": os.urandom(_SALT_BYTES),
                "owf": {"algorithm": _SHA256},
                "iteration_count": _ITERATIONS,
                "mac": {"algorithm": _HMAC_WITH_SHA256},
            }
        )
        header: dict[str, Any] = {
            "pvno": _PVNO_CMP2000,
            "sender": transaction.sender,
            "recipient": self.recipient,
            "message_time": datetime.now(UTC).replace(microsecond=0),
            "protection_alg": {
                "algorithm": ID_PASSWORD_BASED_MAC,
                "parameters": core.Any.load(parameters.dump()),
            },
            "sender_kid": self.reference,
            "transaction_id": transaction.transaction_id,
            "sender_nonce": sender_nonce,
        }
        if recip_nonce is not None:
            header["recip_nonce"] = recip_nonce
        if implicit_confirm:
            # ImplicitConfirmValue is NULL, present (RFC 9810 §5.1.1.1).
            null = core.Any.load(core.Null().dump())
            header["general_info"] = [{"info_type": ID_IT_IMPLICIT_CONFIRM, "info_value": null}]
        return _PKIHeader(header)

    def _exchange(
        self, transaction: _Transaction, header: _PKIHeader, body: _PKIBody
    ) -> _PKIMessage:
        protected_part = _ProtectedPart({"header": header, "body": body}).dump()
        parameters = _PBMParameter.load(header["protection_alg"]["parameters"].dump())
        protection = _password_based_mac(self.secret, parameters, protected_part)
        message = _PKIMessage({"header": header, "body": body, "protection": protection})
        raw = self._post(transaction, message.dump())
        with self._decoding("answer"):
            answer = _PKIMessage.load(raw, strict=True)
            # asn1crypto parses lazily: walk the header now so that a malformed one fails here.
            answer["header"].native  # noqa: B018
            answer["body"].chosen  # noqa: B018
        return answer

    def _check_answer(
        self, answer: _PKIMessage, transaction: _Transaction, sender_nonce: bytes
    ) -> None:
        """Authenticity first (a forged answer's contents mean nothing), then the transaction."""
        header = answer["header"]
        body = answer["body"]
        problem = self._protection_problem(answer)
        if problem is not None:
            # An unauthenticated error still tells the operator what the server said.
            said = (
                f"; it says (unverified): {_error_text(body.chosen)}"
                if body.name == "error"
                else ""
            )
            raise IssuerError(f"issuer {self.name}: {problem}{said}")
        if header["pvno"].native not in (_PVNO_CMP2000, _PVNO_CMP2021):
            raise IssuerError(f"issuer {self.name}: unsupported pvno {header['pvno'].native}")
        if header["transaction_id"].native != transaction.transaction_id:
            raise IssuerError(f"issuer {self.name}: the answer is for another transactionID")
        if header["recip_nonce"].native != sender_nonce:
            raise IssuerError(f"issuer {self.name}: the answer's recipNonce is not our senderNonce")
        if not header["sender_nonce"].native:
            raise IssuerError(f"issuer {self.name}: the answer has no senderNonce")

    def _protection_problem(self, answer: _PKIMessage) -> str | None:
        algorithm = answer["header"]["protection_alg"]
        protection = answer["protection"]
        if isinstance(algorithm, core.Void) or isinstance(protection, core.Void):
            return "the answer is not protected"
        if algorithm["algorithm"].dotted != ID_PASSWORD_BASED_MAC:
            oid = algorithm["algorithm"].dotted
            return f"the answer is protected by {oid}, not PasswordBasedMac"
        if isinstance(algorithm["parameters"], core.Void):
            return "the answer's PasswordBasedMac has no parameters"
        parameters = _PBMParameter.load(algorithm["parameters"].dump(), strict=True)
        protected_part = _ProtectedPart({"header": answer["header"], "body": answer["body"]}).dump()
        try:
            expected = _password_based_mac(self.secret, parameters, protected_part)
        except ValueError as exc:
            return f"the answer's PasswordBasedMac: {exc}"
        if not hmac.compare_digest(expected, protection.native or b""):
            return "the answer's protection MAC does not verify with the shared secret"
        return None

    def _confirm(
        self, transaction: _Transaction, confirmation: _Confirmation, *, accept: bool
    ) -> None:
        """certConf, answered by pkiConf; a rejection is best effort (its caller raises)."""
        if accept:
            status_info = _PKIStatusInfo({"status": _ACCEPTED})
        else:
            status_info = _PKIStatusInfo(
                {
                    "status": _REJECTION,
                    "status_string": ["the certificate failed the client's checks"],
                    "fail_info": {"incorrectData"},
                }
            )
        sender_nonce = os.urandom(_NONCE_BYTES)
        header = self._header(
            transaction, sender_nonce, confirmation.server_nonce, implicit_confirm=False
        )
        try:
            cert_hash = _certificate_hash(confirmation.certificate_der)
        except ValueError as exc:
            if accept:
                raise IssuerError(f"issuer {self.name}: certConf: {exc}") from None
            return
        cert_status = {
            "cert_hash": cert_hash,
            "cert_req_id": confirmation.cert_req_id,
            "status_info": status_info,
        }
        try:
            body = _PKIBody(name="certConf", value=_CertConfirmContent([cert_status]))
            answer = self._exchange(transaction, header, body)
            with self._decoding("pkiConf"):
                self._check_answer(answer, transaction, sender_nonce)
                if answer["body"].name == "error":
                    error = _error_text(answer["body"].chosen)
                    raise IssuerError(f"issuer {self.name}: certConf: {error}")
                if answer["body"].name != "pkiconf":
                    raise IssuerError(
                        f"issuer {self.name}: certConf answered {answer['body'].name}"
                    )
        except IssuerError:
            if accept:
                raise

    # --- the certificate ---

    def _checked(
        self, leaf_der: bytes, untrusted: Sequence[bytes], request: IssueRequest
    ) -> Issued:
        try:
            leaf = x509.load_der_x509_certificate(leaf_der)
            intermediates = [x509.load_der_x509_certificate(der) for der in untrusted]
        except ValueError as exc:
            raise IssuerError(f"issuer {self.name}: a certificate of the answer: {exc}") from None
        if leaf.not_valid_after_utc <= datetime.now(UTC):
            raise IssuerError(f"issuer {self.name}: the certificate has already expired")
        chain = self._chain(leaf, intermediates)
        pem = b"".join(pki.certificate_to_pem(certificate) for certificate in (leaf, *chain))
        return checked_answer(self.name, pem, request)

    def _chain(
        self, leaf: x509.Certificate, intermediates: Sequence[x509.Certificate]
    ) -> tuple[x509.Certificate, ...]:
        """The leaf's issuers up to and along the configured CA certificates, nearest first;
        the answer's own certificates may bridge the gap, but the path must reach ours."""
        chain: list[x509.Certificate] = []
        current = leaf
        anchored = False
        for _ in range(_MAX_CHAIN_DEPTH):
            issuer = _issuer_among(current, self.ca_certificates)
            if issuer is not None:
                anchored = True
            elif not anchored:
                issuer = _issuer_among(current, intermediates)
            if issuer is None:
                break
            chain.append(issuer)
            if issuer.subject == issuer.issuer:
                break  # a root: nothing above it
            current = issuer
        if not anchored:
            raise IssuerError(
                f"issuer {self.name}: the certificate for {leaf.subject.rfc4514_string()} does "
                f"not chain to the configured CA certificates"
            )
        return tuple(chain)

    # --- transport ---

    def _post(self, transaction: _Transaction, message: bytes) -> bytes:
        """One HTTP round trip (RFC 6712) on the transaction's connection: OpenSSL's server
        keeps a transaction only as long as its connection."""
        deadline = transaction.deadline
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise IssuerError(f"issuer {self.name}: no answer within {self.timeout} s")
        try:
            with transaction.session.post(
                self.url,
                data=message,
                headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
                timeout=remaining,
                allow_redirects=False,
                stream=True,
            ) as response:
                content_type = response.headers.get("Content-Type", "")
                if content_type.split(";")[0].strip().lower() != CONTENT_TYPE:
                    raise IssuerError(
                        f"issuer {self.name}: HTTP {response.status_code} answer of type "
                        f"{_printable(content_type) or 'none'}, not {CONTENT_TYPE}"
                    )
                body = bytearray()
                for chunk in response.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise IssuerError(
                            f"issuer {self.name}: answer larger than {MAX_RESPONSE_BYTES} bytes"
                        )
                    if time.monotonic() > deadline:
                        raise IssuerError(f"issuer {self.name}: no answer within {self.timeout} s")
                return bytes(body)
        except requests.Timeout:
            raise IssuerError(f"issuer {self.name}: no answer within {self.timeout} s") from None
        except requests.RequestException as exc:
            raise IssuerError(f"issuer {self.name}: {self.url}: {_reason(exc)}") from None

    @contextmanager
    def _decoding(self, what: str) -> Iterator[None]:
        """asn1crypto reports bad input by many exception types, some only on access."""
        try:
            yield
        except IssuerError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
            raise IssuerError(
                f"issuer {self.name}: malformed {what}: {_printable(str(exc))}"
            ) from None


# --- helpers ------------------------------------------------------------------------------


def _password_based_mac(secret: bytes, parameters: _PBMParameter, data: bytes) -> bytes:
    """RFC 4211 §4.4: the one-way function applied iterationCount times to secret || salt
    keys the MAC."""
    owf = _OWF_HASHES.get(parameters["owf"]["algorithm"].dotted)
    mac = _MAC_HASHES.get(parameters["mac"]["algorithm"].dotted)
    iterations = parameters["iteration_count"].native
    if owf is None:
        raise ValueError(f"unsupported one-way function {parameters['owf']['algorithm'].dotted}")
    if mac is None:
        raise ValueError(f"unsupported MAC {parameters['mac']['algorithm'].dotted}")
    if not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS:
        raise ValueError(f"iteration count {iterations} out of range")
    key = hashlib.new(owf, secret + parameters["salt"].native).digest()
    for _ in range(iterations - 1):
        key = hashlib.new(owf, key).digest()
    return hmac.new(key, data, mac).digest()


def _has_implicit_confirm(header: _PKIHeader) -> bool:
    general_info = header["general_info"]
    if isinstance(general_info, core.Void):
        return False
    return any(item["info_type"].dotted == ID_IT_IMPLICIT_CONFIRM for item in general_info)


def _certificate_hash(certificate_der: bytes) -> bytes:
    """certConf's certHash (RFC 9810 §5.3.18, pvno 2): by the hash of the certificate's own
    signature algorithm (SHA-512 for Ed25519, SHAKE256 for Ed448: RFC 9481 §3.3)."""
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
        algorithm = certificate.signature_hash_algorithm
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"no hash for the certificate: {exc}") from None
    if algorithm is None:
        oid = certificate.signature_algorithm_oid.dotted_string
        if oid == "1.3.101.112":
            algorithm = hashes.SHA512()
        elif oid == "1.3.101.113":
            algorithm = hashes.SHAKE256(64)
        else:
            raise ValueError(f"no hash for a certificate signed by {oid}")
    digest = hashes.Hash(algorithm)
    digest.update(certificate_der)
    return digest.finalize()


def _issuer_among(
    certificate: x509.Certificate, candidates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The CA certificate among `candidates` whose key signed `certificate`."""
    for candidate in candidates:
        if candidate.subject != certificate.issuer or candidate == certificate:
            continue
        try:
            constraints = candidate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            continue
        if not constraints.value.ca:
            continue
        try:
            certificate.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return candidate
    return None


def _certificates(value: core.Asn1Value) -> list[bytes]:
    if isinstance(value, core.Void):
        return []
    return [certificate.dump() for certificate in value]


def _directory_name(name: x509.Name) -> asn1_x509.GeneralName:
    return asn1_x509.GeneralName(
        name="directory_name", value=asn1_x509.Name.load(name.public_bytes())
    )


def _status(status_info: _PKIStatusInfo) -> str:
    """PKIStatusInfo for the log: status, the failInfo bits by name, the text."""
    status = status_info["status"].native
    words = [_STATUS_NAMES.get(status, f"status {status}")]
    fail_info = status_info["fail_info"]
    if not isinstance(fail_info, core.Void):
        # asn1crypto names the bits it knows and leaves others as their numbers.
        bits = sorted(_FAILURE_BIT_NUMBERS.get(bit, bit) for bit in fail_info.native)
        names = [_FAILURE_BITS.get(bit, f"bit {bit}") for bit in bits]
        if names:
            words.append(f"failInfo {', '.join(names)}")
    text = _free_text(status_info["status_string"])
    return " ".join([", ".join(words), *([f"({text})"] if text else [])])


def _error_text(error: _ErrorMsgContent) -> str:
    words = [f"the CA answered an error: {_status(error['pki_status_info'])}"]
    if not isinstance(error["error_code"], core.Void):
        words.append(f"errorCode {error['error_code'].native}")
    details = _free_text(error["error_details"])
    if details:
        words.append(f"details: {details}")
    return "; ".join(words)


def _free_text(value: core.Asn1Value) -> str:
    if isinstance(value, core.Void):
        return ""
    return _printable("; ".join(item.native for item in value))


def _printable(text: str) -> str:
    """A peer's text as one bounded log line."""
    text = " ".join(text.split())
    return "".join(c if c.isprintable() else "?" for c in text)[:_MAX_TEXT]


def _reason(exc: BaseException) -> str:
    """The OS-level reason of a requests error rather than its nested reprs."""
    text = str(exc)
    found = _ERRNO.search(text)
    return _printable(found.group(0).strip() if found else f"{type(exc).__name__}: {text}")

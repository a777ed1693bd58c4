"""The one client of the sztp-server admin API (`/api/v1`), shared by the CLI, the Ansible
modules and the inventory plugin.

Every failure becomes a typed `SztpError` with a one-line message: `ServerUnreachable` when
the server cannot be reached, an `ApiError` subclass when it answers with an error. The token
travels only in the Authorization header, so no message or exception ever contains it, and only
over TLS or to loopback: a plain `http://` URL naming another host is refused
(`PlainHttpRefused`) unless the caller opts in (`allow_plain_http`, or SZTP_ALLOW_PLAIN_HTTP=1).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from .errors import (
    ApiConflictError,
    ApiError,
    ApiValidationError,
    AuthenticationError,
    JobStillRunning,
    NotFoundApiError,
    PlainHttpRefused,
    ServerUnreachable,
    SztpError,
)
from .json_stream import JsonStream, JsonStreamError
from .loopback import PLAIN_HTTP_VARIABLE, flag, is_loopback
from .state.model import COLLECTIONS

API = "/api/v1"
# Bytes read from the network at a time while the state streams in.
STATE_CHUNK = 64 * 1024
# Devices per request of `device_pages`: small enough that the first page is on screen at
# once, large enough that a request's own overhead is small beside its devices.
DEVICE_PAGE = 2000
# A job being followed is asked how far it got once a second: the server answers at once when
# it ends (`Prefer: wait`). A server that answers at once anyway (one without that) is asked
# again after a pause that grows from JOB_POLL_FIRST to the second.
JOB_WAIT = 1
JOB_POLL_FIRST = 0.05
VOUCHER_MEDIA_TYPE = "application/voucher-cms+json"  # RFC 8366 §8.3
_ERRORS_BY_STATUS: Mapping[int, type[ApiError]] = {
    400: ApiValidationError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundApiError,
    409: ApiConflictError,
    412: ApiConflictError,
    413: ApiValidationError,
    415: ApiValidationError,
    422: ApiValidationError,
}
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


@dataclass(frozen=True)
class ResourceChange:
    """One change the server planned or made; `before`/`after` have secrets hidden. In a
    summary plan, creates and deletes carry neither, updates only the changed fields, and
    `fields` names the fields the change sets, changes or removes (None in a full plan)."""

    action: str
    kind: str
    name: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    fields: list[str] | None = None


@dataclass(frozen=True)
class ApplyResult:
    """The answer to a bulk apply: the state's revision afterwards (or now, for a dry run)."""

    revision: int
    dry_run: bool
    changes: list[ResourceChange]

    def document(self) -> dict[str, Any]:
        """The answer as the server wrote it in JSON: a change leaves out what it does not
        carry (a summary plan's create has no `before` or `after`, a full plan no `fields`)."""
        return {
            "revision": self.revision,
            "dry_run": self.dry_run,
            "changes": [
                {
                    "action": change.action,
                    "kind": change.kind,
                    "name": change.name,
                    **({} if change.fields is None else {"fields": change.fields}),
                    **({} if change.before is None else {"before": change.before}),
                    **({} if change.after is None else {"after": change.after}),
                }
                for change in self.changes
            ],
        }


@dataclass(frozen=True)
class StateStream:
    """The server's state as it arrives (`SztpClient.stream_state`): its revision, then the
    resources kind by kind, each a (kind, entries) pair whose entries are (name, spec) pairs
    in name order, secrets hidden. A kind's entries are read before the next kind is asked
    for (what is left unread is skipped)."""

    revision: int
    kinds: Iterator[tuple[str, Iterator[tuple[str, dict[str, Any]]]]]


def _apply_result(body: Mapping[str, Any]) -> ApplyResult:
    return ApplyResult(
        revision=int(body["revision"]),
        dry_run=bool(body["dry_run"]),
        changes=[
            ResourceChange(
                action=change["action"],
                kind=change["kind"],
                name=change["name"],
                before=change.get("before"),
                after=change.get("after"),
                fields=change.get("fields"),
            )
            for change in body["changes"]
        ],
    )


class _BearerAuth(requests.auth.AuthBase):
    """An explicit auth object also stops requests from applying ~/.netrc credentials."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


class SztpClient:
    """A connection to one sztp-server admin API.

    `ca_bundle` (PEM) verifies the server's TLS certificate; without it `verify` decides, and
    `verify=True` uses the system trust (including REQUESTS_CA_BUNDLE). HTTP(S)_PROXY and
    NO_PROXY from the environment are honoured.

    An `http://` server that is not loopback (localhost, 127.0.0.0/8, ::1) is refused: the
    token and the fleet's secrets would cross the network in clear. `allow_plain_http=True`
    accepts that risk; `None` (the default) leaves the choice to SZTP_ALLOW_PLAIN_HTTP, so the
    Ansible modules and the inventory plugin, which build their client here, follow it too.
    """

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        ca_bundle: Path | None = None,
        verify: bool = True,
        timeout: float = 30,
        allow_plain_http: bool | None = None,
    ) -> None:
        parts = urlsplit(server.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SztpError(f"server {server!r} is not an http:// or https:// URL")
        self.server = server.strip().rstrip("/")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            if allow_plain_http is None:
                allow_plain_http = flag(
                    PLAIN_HTTP_VARIABLE, os.environ.get(PLAIN_HTTP_VARIABLE, "")
                )
            if not allow_plain_http:
                raise PlainHttpRefused(
                    f"refusing plain HTTP to {self.server}: {parts.hostname} is not loopback, so "
                    "the API token and secrets would cross the network unencrypted; use an "
                    "https:// URL (the server's admin_listener with tls_cert and tls_key), or "
                    f"accept the risk with {PLAIN_HTTP_VARIABLE}=1 or the context setting "
                    "allow_plain_http: true"
                )
        self.timeout = timeout
        # Per request, not on the session: requests lets REQUESTS_CA_BUNDLE override
        # Session.verify, but not an explicit per-request CA bundle or verify=False.
        self._verify: bool | str = str(ca_bundle) if ca_bundle is not None else verify
        self._session = requests.Session()
        self._auth = _BearerAuth(token) if token else None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> SztpClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- bulk desired state

    def get_state(self) -> tuple[int, dict[str, dict[str, dict[str, Any]]]]:
        """The revision and every resource (kind → name → spec, secrets hidden)."""
        with self.stream_state() as state:
            return state.revision, {kind: dict(entries) for kind, entries in state.kinds}

    @contextmanager
    def stream_state(self) -> Iterator[StateStream]:
        """The revision and every resource as the server sends them, read as they are used:
        one consistent snapshot whatever its size, never held whole. An answer that breaks
        off raises ServerUnreachable where it does; one that is not the state, ApiError."""
        response = self._send("GET", "/state", stream=True)
        with response:
            document = JsonStream(self._chunks(response))
            with _invalid_answer(response):
                top = document.members()
                revision = None
                # The revision comes first, so it describes the resources before they arrive.
                for key in top:
                    if key == "resources":
                        break
                    value = document.value()
                    if key == "revision":
                        revision = value
                else:
                    raise JsonStreamError("no resources")
                if not isinstance(revision, int) or isinstance(revision, bool):
                    raise JsonStreamError("no revision before the resources")
            yield StateStream(revision, _state_kinds(document, top, response))

    def apply_state(
        self,
        resources: Mapping[str, Mapping[str, Mapping[str, Any]]],
        *,
        prune: bool = False,
        kinds: Sequence[str] | None = None,
        dry_run: bool = False,
        if_match: int | None = None,
        summary: bool = False,
        on_progress: Callable[[int, int], None] | None = None,
        wait: float | None = None,
    ) -> ApplyResult:
        """Make the server's state match `resources` (for the kinds it names, or `kinds`) in
        one transaction; with `prune`, delete what is absent. `dry_run` only plans.

        `summary` asks for the plan without bodies (see `ResourceChange`): enough to show
        what changed, and a fraction of the size for a large fleet.

        The server runs the write as a job (its answer comes at once); this follows it to its
        end, or for `wait` seconds at most (every new device password is a slow hash),
        calling `on_progress(done, total)` with the specs checked so far. A write still
        running then, or when the caller is interrupted (KeyboardInterrupt), raises
        JobStillRunning naming the job, which goes on; losing the server meanwhile raises
        ServerUnreachable saying that the write may still land."""
        payload: dict[str, Any] = {"resources": resources, "prune": prune}
        if kinds is not None:
            payload["kinds"] = list(kinds)
        # A write that ends within a second is answered at once; a longer one becomes a job
        # this client follows, whose id it knows, so that being interrupted still lets it
        # say which write goes on.
        within = min(1, int(self.timeout / 3))
        if wait is not None:
            within = min(within, int(wait))
        headers = {"Prefer": f"respond-async, wait={within}", "Content-Type": "application/json"}
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        # A million specs: encoded without the circular-reference bookkeeping (a loaded fleet
        # is a tree) and without the spaces after separators, which the server would parse.
        data = json.dumps(
            payload, allow_nan=False, check_circular=False, separators=(",", ":")
        ).encode()
        body = self._request(
            "POST",
            "/state",
            params={
                "dry_run": "true" if dry_run else "false",
                "plan": "summary" if summary else "full",
            },
            data=data,
            headers=headers,
        )
        if "state" in body:  # a job (a server without jobs answers with the plan itself)
            body = self._follow_job(body, on_progress, wait)
        return _apply_result(body)

    def job(self, job_id: str, *, wait: int | None = None) -> dict[str, Any]:
        """A write the server runs as a job: {id, state, actor, progress, status, result,
        error}; the server keeps it for an hour after it ends. With `wait`, the server answers
        once the job ends, or after that many seconds if it is still running."""
        headers = {} if wait is None else {"Prefer": f"wait={wait}"}
        return self._request("GET", f"/jobs/{quote(job_id, safe='')}", headers=headers)

    def follow_job(
        self,
        job_id: str,
        *,
        on_progress: Callable[[int, int], None] | None = None,
        wait: float | None = None,
    ) -> ApplyResult:
        """What the write of job `job_id` did, once it ended (as `apply_state` answers)."""
        return _apply_result(self._follow_job(self.job(job_id), on_progress, wait))

    def _follow_job(
        self,
        job: dict[str, Any],
        on_progress: Callable[[int, int], None] | None,
        wait: float | None,
    ) -> dict[str, Any]:
        """The result of a job, once it ended; its error raised as the server's answer would
        have been; JobStillRunning after `wait` seconds or when interrupted."""
        deadline = None if wait is None else time.monotonic() + wait
        pause = JOB_POLL_FIRST
        try:
            while job["state"] == "running":
                done, total = int(job["progress"]["done"]), int(job["progress"]["total"])
                if on_progress is not None:
                    on_progress(done, total)
                if deadline is not None and time.monotonic() >= deadline:
                    raise JobStillRunning(str(job["id"]), done, total)
                left = JOB_WAIT if deadline is None else deadline - time.monotonic()
                asked = max(0.0, min(JOB_WAIT, left))
                asked_at = time.monotonic()
                try:
                    job = self.job(str(job["id"]), wait=int(asked))
                except ServerUnreachable as exc:
                    raise ServerUnreachable(
                        f"{exc}; the write (job {job['id']}) goes on without this client and "
                        "may still land: `sztpctl diff` shows whether it did"
                    ) from None
                rest = asked - (time.monotonic() - asked_at)
                if job["state"] == "running" and rest > 0:  # the server did not wait
                    time.sleep(min(pause, rest))
                    pause = min(pause * 2, JOB_WAIT)
        except KeyboardInterrupt:
            progress = job.get("progress") or {}
            raise JobStillRunning(
                str(job["id"]),
                int(progress.get("done", 0)),
                int(progress.get("total", 0)),
                interrupted=True,
            ) from None
        if job["state"] == "failed":
            error = job.get("error") or {}
            raise _error_for_status(
                int(job.get("status") or 500),
                str(error.get("code", "internal-error")),
                str(error.get("message", "the job failed")),
                error.get("field"),
            )
        return dict(job["result"])

    # ---- single resources

    def list(self, kind: str, **filters: str | None) -> list[dict[str, Any]]:
        """Resources of `kind` as {name, spec, revision, created_at, updated_at}; devices
        can be filtered by `status`, `profile` and `model`."""
        wanted = {key: value for key, value in filters.items() if value is not None}
        return self._request("GET", f"/{_collection(kind)}", params=wanted)

    def device_pages(self, **filters: str | None) -> Iterator[builtins.list[dict[str, Any]]]:
        """Every device (filtered by `status`, `profile`, `model` or `site`) as {name, spec,
        revision, created_at, updated_at, status, last_report, ldevid} (`ldevid`: the fields of
        `sztp.current_ldevid`, or None), in name order, a page of up to DEVICE_PAGE devices at
        a time as each arrives (no empty page): one request per page, instead of one status
        request per device."""
        wanted = {key: value for key, value in filters.items() if value is not None}
        after: dict[str, str] = {}
        while True:
            page: builtins.list[dict[str, Any]] = self._request(
                "GET",
                "/devices",
                params={**wanted, **after, "with_status": "true", "limit": str(DEVICE_PAGE)},
            )
            if page:
                yield page
            # The server fills every page but the last.
            if len(page) < DEVICE_PAGE:
                return
            after = {"after": page[-1]["name"]}

    def devices_with_status(self, **filters: str | None) -> builtins.list[dict[str, Any]]:
        """`device_pages` as one list."""
        return [device for page in self.device_pages(**filters) for device in page]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self._request("GET", _resource_path(kind, name))

    def create(self, kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create one resource; unlike `put`, refuses (409) to replace an existing one."""
        return self._request("POST", f"/{_collection(kind)}", json={"name": name, "spec": spec})

    def put_voucher(self, serial: str, voucher: bytes) -> dict[str, Any]:
        """Upload a device's signed ownership voucher (DER CMS)."""
        return self._request(
            "PUT",
            f"/devices/{quote(serial, safe='')}/voucher",
            data=voucher,
            headers={"Content-Type": VOUCHER_MEDIA_TYPE},
        )

    def put(self, kind: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace one resource; returns it as stored."""
        return self._request("PUT", _resource_path(kind, name), json={"spec": spec})

    def delete(self, kind: str, name: str) -> None:
        self._request("DELETE", _resource_path(kind, name))

    # ---- status

    def device_status(self, serial: str) -> dict[str, Any]:
        """{serial, status, attempts, last_report}."""
        return self._request("GET", f"/devices/{quote(serial, safe='')}/status")

    def device_rendered(self, serial: str) -> dict[str, Any]:
        """{serial, profiles: [...]}: what each profile the device can select would send it,
        templates rendered for it."""
        return self._request("GET", f"/devices/{quote(serial, safe='')}/rendered")

    def device_certificates(self, serial: str) -> dict[str, Any]:
        """{serial, certificates: [...]}: the LDevIDs issued to the device, newest first."""
        return self._request("GET", f"/devices/{quote(serial, safe='')}/certificates")

    def revoke_certificate(
        self, serial: str, serial_number: str, reason: str, *, issuer: str | None = None
    ) -> dict[str, Any]:
        """Revoke the LDevID with `serial_number` (hex) issued to the device, for `reason` (an
        RFC 5280 CRLReason name); the certificate as the server now holds it. Revoking it
        again changes nothing. `issuer` only when two issuers gave the device that number."""
        body = {"reason": reason} if issuer is None else {"reason": reason, "issuer": issuer}
        path = (
            f"/devices/{quote(serial, safe='')}/certificates/{quote(serial_number, safe='')}/revoke"
        )
        return self._request("POST", path, json=body)

    def issuer_crl(self, issuer: str, *, pem: bool = False) -> bytes:
        """The CRL of one of the server's builtin LDevID issuers, signed now: DER, or PEM."""
        params = {"format": "pem" if pem else "der"}
        with self._send("GET", f"/issuers/{quote(issuer, safe='')}/crl", params=params) as answer:
            return answer.content

    def device_progress(self, serial: str) -> dict[str, Any]:
        """{serial, attempts: [{attempt, reports: [...]}]}: every stored report, oldest first.

        Follows the server's pages from the newest back; the history is bounded per device
        (`reports_per_device`, `report_bytes_per_device`), so this is too.
        """
        # Imported here: sztp.progress brings the RESTCONF and CMS code (cryptography,
        # asn1crypto) that every other command, `apply` among them, would load for nothing.
        from .progress import MAX_PROGRESS_PAGE

        path = f"/devices/{quote(serial, safe='')}/progress"
        page = self._request("GET", path, params={"limit": MAX_PROGRESS_PAGE})
        attempts: list[dict[str, Any]] = page["attempts"]
        while (before := page["next_before"]) is not None:
            page = self._request("GET", path, params={"limit": MAX_PROGRESS_PAGE, "before": before})
            if page["next_before"] is not None and page["next_before"] >= before:
                raise SztpError(f"{self.server}: the progress pages of {serial} do not end")
            attempts = _join_attempts(page["attempts"], attempts)
        return {"serial": serial, "attempts": attempts}

    def fleet_status(self) -> dict[str, Any]:
        """{devices, counts: {status: n}, stalled, recent_errors}."""
        return self._request("GET", "/status")

    def device_events(
        self,
        *,
        serial: str | None = None,
        refused: bool = False,
        limit: int = 100,
        before: int | None = None,
    ) -> dict[str, Any]:
        """{events, next_before}: a page of the flight recorder's device requests, newest
        first: those naming `serial`, only refused ones, with an id below `before`."""
        params: dict[str, str] = {"limit": str(limit), "refused": "true" if refused else "false"}
        if serial is not None:
            params["serial"] = serial
        if before is not None:
            params["before"] = str(before)
        return self._request("GET", "/events", params=params)

    def webhooks(self) -> dict[str, Any]:
        """{webhooks}: each webhook the server is configured with and how its deliveries
        stand."""
        return self._request("GET", "/webhooks")

    # ---- audit

    def prune_audit(self, older_than_days: float | None, *, dry_run: bool) -> dict[str, Any]:
        """{dry_run, before, entries}: delete (or count) the audit entries older than
        `older_than_days`, or than the server's `audit_retention_days` when None."""
        params: dict[str, str] = {"dry_run": "true" if dry_run else "false"}
        if older_than_days is not None:
            params["older_than_days"] = f"{older_than_days:g}"
        return self._request("POST", "/audit/prune", params=params)

    # ---- plumbing

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(
                response.status_code,
                "invalid-response",
                f"{response.url} did not answer with JSON: is it an sztp-server admin API?",
            ) from None

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The server's answer, unless it is an error (raised as an ApiError)."""
        url = f"{self.server}{API}{path}"
        try:
            response = self._session.request(
                method, url, auth=self._auth, verify=self._verify, timeout=self.timeout, **kwargs
            )
        except requests.exceptions.SSLError as exc:
            raise ServerUnreachable(
                f"cannot reach {self.server}: TLS handshake failed: {_ssl_reason(exc)}"
            ) from None
        except requests.exceptions.Timeout:
            raise ServerUnreachable(
                f"cannot reach {self.server}: no answer within {self.timeout:g} s"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ServerUnreachable(f"cannot reach {self.server}: {_reason(exc)}") from None
        if not response.ok:
            with response:
                raise _api_error(response)
        return response

    def _chunks(self, response: requests.Response) -> Iterator[bytes]:
        """The body of a streamed answer as it arrives."""
        try:
            yield from response.iter_content(STATE_CHUNK)
        except requests.exceptions.RequestException as exc:
            if isinstance(exc, requests.exceptions.Timeout):
                what = f"nothing more within {self.timeout:g} s"
            elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
                what = "the connection ended before the answer did"
            else:
                what = _reason(exc)
            raise ServerUnreachable(f"the answer from {self.server} broke off: {what}") from None


def _state_kinds(
    document: JsonStream, top: Iterator[str], response: requests.Response
) -> Iterator[tuple[str, Iterator[tuple[str, dict[str, Any]]]]]:
    """The rest of the state document after `"resources":`, kind by kind."""
    with _invalid_answer(response):
        for kind in document.members():
            entries = _state_entries(document, response)
            yield kind, entries
            for _unread in entries:
                pass
        for _key in top:  # members after the resources (none today) are read past
            document.value()
        document.end()


def _state_entries(
    document: JsonStream, response: requests.Response
) -> Iterator[tuple[str, dict[str, Any]]]:
    with _invalid_answer(response):
        for name in document.members():
            yield name, document.value()


@contextmanager
def _invalid_answer(response: requests.Response) -> Iterator[None]:
    """JSON that is not what the admin API sends, as an ApiError naming the request."""
    try:
        yield
    except JsonStreamError as exc:
        raise ApiError(response.status_code, "invalid-response", f"{response.url}: {exc}") from None


def _join_attempts(
    older: list[dict[str, Any]], newer: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Two consecutive pages of attempts as one; an attempt cut by the page boundary is whole
    again."""
    if older and newer and older[-1]["attempt"] == newer[0]["attempt"]:
        joined = {**newer[0], "reports": older[-1]["reports"] + newer[0]["reports"]}
        return [*older[:-1], joined, *newer[1:]]
    return older + newer


def _collection(kind: str) -> str:
    try:
        return COLLECTIONS[kind]
    except KeyError:
        raise SztpError(f"unknown kind {kind!r}; use {', '.join(COLLECTIONS)}") from None


def _resource_path(kind: str, name: str) -> str:
    # Serial numbers may hold '/', '?' or spaces: quote everything.
    return f"/{_collection(kind)}/{quote(name, safe='')}"


def _api_error(response: requests.Response) -> ApiError:
    try:
        error = response.json()["error"]
        code, message, field = str(error["code"]), str(error["message"]), error.get("field")
    except (ValueError, KeyError, TypeError):
        # Not our server's JSON error (a proxy, a load balancer): keep the status line.
        code, message, field = "http-error", f"{response.reason or 'error'}", None
    error = _error_for_status(response.status_code, code, message, field)
    error.retry_after = _retry_after(response.headers.get("Retry-After"))
    return error


def _error_for_status(status: int, code: str, message: str, field: str | None) -> ApiError:
    return _ERRORS_BY_STATUS.get(status, ApiError)(status, code, message, field)


def _retry_after(header: str | None) -> float | None:
    """Retry-After in seconds; None when absent or given as an HTTP date (then the caller's
    own back-off applies)."""
    if header is None or not header.strip().isdigit():
        return None
    return float(header.strip())


def _reason(exc: requests.exceptions.RequestException) -> str:
    """The operating system's reason ("Connection refused"), not urllib3's wrapper chain."""
    found = _ERRNO.findall(str(exc))
    return found[-1].strip() if found else type(exc).__name__


def _ssl_reason(exc: requests.exceptions.SSLError) -> str:
    text = str(exc)
    match = re.search(r"\[SSL: [A-Z_]+\] ([^(')\]]+)", text) or re.search(
        r"SSLError\(['\"]?([^'\"()]+)", text
    )
    return match.group(1).strip() if match else "no details given"

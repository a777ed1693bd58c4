"""A device's voucher, status and progress reports, and the status of the whole fleet."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from sztp.device_status import STATUSES, DeviceStatus
from sztp.errors import ValidationError
from sztp.progress import MAX_PROGRESS_PAGE, group_by_attempt, summarize
from sztp.revocation import DEFAULT_REVOCATION_REASON, REVOCATION_REASONS
from sztp.state.device_templates import rendered_view
from sztp.state.resources import DEVICE, PROFILE

from ...context import ServerContext
from ...fleet_status import (
    derived_status,
    expiry_window,
    head_status,
    stall_after,
    status_filter,
)
from ...metrics import GaugeSample
from ...store.base import DEVICE_FILTER_FIELDS, utc_now
from ...store.model import DeviceHead, HeadCounts
from ..auth import caller
from ..errors import ApiError, error_of
from ..requests import (
    DEFAULT_EVENTS_LIMIT,
    DEFAULT_PROGRESS_LIMIT,
    MAX_DEVICE_PAGE,
    MAX_EVENTS_LIMIT,
    RECENT_ERRORS,
    STALLED_SHOWN,
    bool_query,
    int_query,
    json_object,
    only_fields,
    read_body,
    read_json,
    text_query,
)
from ..service import StateService
from ..views import (
    current_ldevid_view,
    etag,
    event_view,
    expiring_view,
    issued_view,
    report_view,
    resource_view,
)
from ..writes import DeleteVoucher, PutVoucher, stored_device
from .resources import resource_response

LOG = logging.getLogger(__name__)
# Devices a listing without `limit` reads from the store at a time as it streams them out.
STREAM_PAGE = 1000
VOUCHER_TYPES = ("application/voucher-cms+json", "application/octet-stream")


class DeviceHandlers:
    def __init__(self, service: StateService, max_body_bytes: int) -> None:
        self.service = service
        self.store = service.store
        self.config = service.context.config
        self.max_body_bytes = max_body_bytes

    async def list_devices(self, request: web.Request) -> web.StreamResponse:
        """`GET /api/v1/devices`: filtered by profile, model or derived status; with
        `with_status=true` each device also carries its status, last report and current LDevID
        (in the same store read); `limit` and `after` page through in name order, a
        `Link: <...>; rel="next"` header naming the next page while there is one. Each page is
        one store read of that many devices; without `limit` the whole listing streams out,
        read STREAM_PAGE devices at a time."""
        wanted_status = request.query.get("status")
        if wanted_status is not None and wanted_status not in STATUSES:
            raise ApiError(400, f"must be one of {', '.join(STATUSES)}", field="status")
        with_status = bool_query(request, "with_status")
        limit = int_query(request, "limit", default=None, maximum=MAX_DEVICE_PAGE)
        after = text_query(request, "after")
        spec_equals = {
            field: value
            for field in DEVICE_FILTER_FIELDS
            if (value := text_query(request, field)) is not None
        }
        # One moment for the whole request: the status filter and the statuses shown agree.
        now = utc_now()
        stalled_after = stall_after(self.config)
        heads = (
            None
            if wanted_status is None
            else status_filter(DeviceStatus(wanted_status), now, stalled_after)
        )

        async def read(after: str | None, limit: int) -> list[DeviceHead]:
            return await self.store.device_page(
                after=after,
                limit=limit,
                spec_equals=spec_equals,
                heads=heads,
                ldevid_at=now if with_status else None,
            )

        def view(item: DeviceHead) -> dict[str, Any]:
            shown = resource_view(item.device)
            if with_status:
                shown["status"] = derived_status(item.head, now, stalled_after)
                shown["last_report"] = report_view(item.head) if item.head is not None else None
                shown["ldevid"] = (
                    current_ldevid_view(item.ldevid) if item.ldevid is not None else None
                )
            return shown

        headers = etag(await self.store.revision())
        if limit is None:
            return await _stream_devices(request, headers, after, read, view)
        # One more than asked tells whether a next page exists.
        found = await read(after, limit + 1)
        if len(found) > limit:
            found = found[:limit]
            next_page = request.rel_url.update_query(after=found[-1].device.name)
            headers["Link"] = f'<{next_page}>; rel="next"'
        return web.json_response([view(item) for item in found], headers=headers)

    async def put_voucher(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]
        if request.content_type not in VOUCHER_TYPES:
            raise ApiError(415, f"send the signed voucher (DER) as {' or '.join(VOUCHER_TYPES)}")
        der = await read_body(request, self.max_body_bytes)
        if not der:
            raise ValidationError(f"{DEVICE}[{serial}].voucher", "the body is empty")
        encoded = base64.b64encode(der).decode()
        commit = await self.service.commit(
            PutVoucher(serial, encoded),
            actor=caller(request).name,
            if_match=request.headers.get("If-Match"),
        )
        return await resource_response(self.store, DEVICE, serial, commit.revision, status=200)

    async def delete_voucher(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]
        commit = await self.service.commit(
            DeleteVoucher(serial),
            actor=caller(request).name,
            if_match=request.headers.get("If-Match"),
        )
        return web.Response(status=204, headers=etag(commit.revision))

    async def device_status(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]
        stored_device(await self.service.fresh_snapshot(), serial)
        # The latest report decides status and attempt number; the history is never read.
        stored = await self.store.report_summary(serial)
        latest = [stored.latest.stored_report()] if stored is not None else []
        summary = summarize(latest, utc_now(), stall_after(self.config))
        return web.json_response(
            {
                "serial": serial,
                "status": summary.status.value,
                "attempts": summary.attempts,
                "last_report": report_view(stored.latest) if stored is not None else None,
                "reports": stored.report_count if stored is not None else 0,
                "report_bytes": stored.report_bytes if stored is not None else 0,
            }
        )

    async def device_rendered(self, request: web.Request) -> web.Response:
        """`GET /api/v1/devices/{serial}/rendered`: what each profile the device can select
        would send it, its templates rendered for it (in a thread: a template may be long)."""
        serial = request.match_info["name"]
        snapshot = await self.service.fresh_snapshot()
        device = stored_device(snapshot, serial)
        profiles = snapshot.state.get(PROFILE, {})
        try:
            views = await asyncio.to_thread(rendered_view, serial, device, profiles)
        except ValidationError as exc:
            raise ApiError(422, exc.message, field=exc.field) from None
        return web.json_response({"serial": serial, "profiles": views})

    async def device_certificates(self, request: web.Request) -> web.Response:
        """`GET /api/v1/devices/{serial}/certificates`: the LDevIDs issued to the device,
        newest first."""
        serial = request.match_info["name"]
        stored_device(await self.service.fresh_snapshot(), serial)
        limit = int_query(request, "limit", default=100, maximum=MAX_DEVICE_PAGE)
        found = await self.store.run(
            self.store.store.issued_certificates, device=serial, limit=limit
        )
        return web.json_response(
            {"serial": serial, "certificates": [issued_view(record) for record in found]}
        )

    async def revoke_certificate(self, request: web.Request) -> web.Response:
        """`POST /api/v1/devices/{serial}/certificates/{serial_number}/revoke`: mark one of
        the device's LDevIDs revoked, for the reason the body gives; its issuer's CRL lists it
        from then on. Revoking it again changes nothing."""
        serial = request.match_info["name"]
        given = request.match_info["serial_number"]
        body = json_object(await read_json(request, self.max_body_bytes), "body")
        only_fields(body, "body", ("reason", "issuer"))
        reason = body.get("reason", DEFAULT_REVOCATION_REASON)
        if reason not in REVOCATION_REASONS:
            raise ApiError(400, f"must be one of {', '.join(REVOCATION_REASONS)}", field="reason")
        issuer = body.get("issuer")
        if issuer is not None and not isinstance(issuer, str):
            raise ApiError(400, "must be the name of an LDevID issuer", field="issuer")
        stored_device(await self.service.fresh_snapshot(), serial)
        not_found = ApiError(404, f"no LDevID with serial number {given!r} was issued to {serial}")
        serial_number = certificate_serial_number(given)
        if serial_number is None:
            raise not_found
        found = await self.store.run(
            self.store.store.issued_certificates, device=serial, serial_number=serial_number
        )
        found = [record for record in found if issuer in (None, record.issuer)]
        if not found:
            raise not_found
        if len(found) > 1:
            issuers = ", ".join(sorted(record.issuer for record in found))
            raise ApiError(
                409, f"issuers {issuers} each issued {given} to {serial}: name one as `issuer`"
            )
        (chosen,) = found
        actor = caller(request).name
        revoked = await self.store.run(
            self.store.store.revoke_certificate,
            chosen.issuer,
            chosen.serial_number,
            utc_now(),
            reason,
            actor=actor,
        )
        if revoked is None:
            raise not_found
        if chosen.revoked_at is None:
            LOG.info(
                "LDevID revoked",
                extra={
                    "serial": serial,
                    "issuer": revoked.issuer,
                    "certificate_serial": revoked.serial_number,
                    "reason": revoked.revocation_reason,
                    "actor": actor,
                },
            )
        return web.json_response(issued_view(revoked))

    async def device_progress(self, request: web.Request) -> web.Response:
        serial = request.match_info["name"]
        limit = int_query(
            request, "limit", default=DEFAULT_PROGRESS_LIMIT, maximum=MAX_PROGRESS_PAGE
        )
        before = int_query(request, "before", default=None)
        stored_device(await self.service.fresh_snapshot(), serial)
        # One more than asked tells whether an older page exists.
        records = await self.store.reports(serial, limit=limit + 1, before_id=before)
        older = len(records) > limit
        records = records[-limit:]
        # group_by_attempt keeps the order, so the records can be handed out alongside.
        in_order = iter(records)
        attempts = [
            {"attempt": group[0].attempt, "reports": [report_view(next(in_order)) for _ in group]}
            for group in group_by_attempt([record.stored_report() for record in records])
        ]
        return web.json_response(
            {
                "serial": serial,
                "attempts": attempts,
                "next_before": records[0].id if older else None,
            }
        )

    async def device_events(self, request: web.Request) -> web.Response:
        """`GET /api/v1/events`: the flight recorder's device requests, newest first; of one
        serial (which need not be a device: refused requests name what they claimed), the
        refused ones only, a page before an id."""
        limit = int_query(request, "limit", default=DEFAULT_EVENTS_LIMIT, maximum=MAX_EVENTS_LIMIT)
        before = int_query(request, "before", default=None)
        serial = text_query(request, "serial")
        refused = bool_query(request, "refused")
        # One more than asked tells whether an older page exists.
        events = await self.store.device_events(
            serial=serial, refused=refused, before_id=before, limit=limit + 1
        )
        older = len(events) > limit
        events = events[:limit]
        return web.json_response(
            {
                "events": [event_view(event) for event in events],
                "next_before": events[-1].id if older else None,
            }
        )

    async def fleet_status_by(self, request: web.Request) -> web.Response:
        """`GET /api/v1/status/by?field=profile&field=site`: for each field asked for (every
        one of DEVICE_FILTER_FIELDS without any), the devices of each of its values counted by
        status, in one grouped count (the dashboard's funnel by profile, model and site)."""
        fields = request.query.getall("field", list(DEVICE_FILTER_FIELDS))
        for field in fields:
            if field not in DEVICE_FILTER_FIELDS:
                raise ApiError(
                    400, f"must be one of {', '.join(DEVICE_FILTER_FIELDS)}", field="field"
                )
        fields = list(dict.fromkeys(fields))
        now = utc_now()
        stalled_after = stall_after(self.config)
        by_field = await self.store.head_counts_by(fields, now - stalled_after)

        def groups(counted: dict[str | None, Any]) -> list[dict[str, Any]]:
            ordered = sorted(counted.items(), key=lambda item: (item[0] is None, item[0] or ""))
            return [
                {
                    "value": value,
                    "devices": sum(heads.values()),
                    "counts": _statuses(heads, now, stalled_after),
                }
                for value, heads in ordered
            ]

        return web.json_response(
            {"by": [{"field": field, "groups": groups(by_field[field])} for field in fields]}
        )

    async def fleet_status(self, _request: web.Request) -> web.Response:
        """`GET /api/v1/status`: every device counted by status (`count_by_status`), the
        first STALLED_SHOWN stalled devices in name order and the RECENT_ERRORS most recent
        failures."""
        now = utc_now()
        stalled_after = stall_after(self.config)
        context = self.service.context
        counted, stalled, errors, expiring = await asyncio.gather(
            self.store.head_counts(now - stalled_after),
            self.store.device_page(
                after=None,
                limit=STALLED_SHOWN,
                heads=status_filter(DeviceStatus.STALLED, now, stalled_after),
            ),
            self.store.head_reports(
                status_filter(DeviceStatus.FAILED, now, stalled_after), limit=RECENT_ERRORS
            ),
            self.store.run(
                context.expiry.soon, context.snapshot(), now, expiry_window(self.config)
            ),
        )
        return web.json_response(
            {
                "devices": counted.devices,
                "counts": count_by_status(counted, now, stalled_after),
                "stalled": [
                    {"serial": item.device.name, "last_report": report_view(item.head)}
                    for item in stalled
                    if item.head is not None  # always: a stalled device has reported
                ],
                "recent_errors": [report_view(report) for report in errors],
                "expiring": expiring_view(expiring, now, self.config.expiry_warning_days),
            }
        )


def certificate_serial_number(text: str) -> str | None:
    """A certificate serial number as the store keeps it (lower-case hex), from hex in either
    case, with or without the colons `openssl x509 -text` shows; None when it is not hex."""
    try:
        number = int(text.replace(":", ""), 16)
    except ValueError:
        return None
    return format(number, "x") if number >= 0 else None


def count_by_status(counted: HeadCounts, now: datetime, stalled_after: timedelta) -> dict[str, int]:
    """Every status with its number of devices, from the head reports grouped by progress type
    and age (one `head_status` per group)."""
    heads: dict[tuple[str | None, bool], int] = {key: n for key, n in counted.heads.items()}
    heads[None, False] = counted.devices - sum(counted.heads.values())
    return _statuses(heads, now, stalled_after)


def _statuses(
    heads: Mapping[tuple[str | None, bool], int], now: datetime, stalled_after: timedelta
) -> dict[str, int]:
    """Every status with its number of devices, from counts by (progress type of the head
    report, stale); a None type: no report."""
    counts = dict.fromkeys(STATUSES, 0)
    for (progress_type, stale), count in heads.items():
        counts[head_status(progress_type, stale=stale, now=now, stall_after=stalled_after)] += count
    return counts


async def fleet_gauges(context: ServerContext) -> list[GaugeSample]:
    """The admin /metrics gauges: devices by status, what expires soon, webhook backlogs."""
    config, store = context.config, context.admin_store
    now = utc_now()
    stalled_after = stall_after(config)
    counted, expiring, webhooks = await asyncio.gather(
        store.head_counts(now - stalled_after),
        store.run(context.expiry.soon, context.snapshot(), now, expiry_window(config)),
        store.webhook_status(),
    )
    samples: list[GaugeSample] = [
        ("sztp_devices", {"status": status}, count)
        for status, count in count_by_status(counted, now, stalled_after).items()
    ]
    samples += [("sztp_expiring", {"kind": kind}, count) for kind, count in expiring.counts.items()]
    samples += [
        ("sztp_next_expiry_timestamp_seconds", {"kind": kind}, first.timestamp())
        for kind, first in expiring.next_by_kind.items()
    ]
    pending = {status.webhook: status.pending for status in webhooks}
    samples += [
        ("sztp_webhook_backlog", {"webhook": name}, pending.get(name, 0))
        for name in [
            *(hook.name for hook in config.webhooks),
            *sorted(set(pending) - {hook.name for hook in config.webhooks}),
        ]
    ]
    return samples


async def _stream_devices(
    request: web.Request,
    headers: dict[str, str],
    after: str | None,
    read: Callable[[str | None, int], Awaitable[list[DeviceHead]]],
    view: Callable[[DeviceHead], dict[str, Any]],
) -> web.StreamResponse:
    """The whole listing from `after` on as one JSON array, sent as it is read: memory and the
    time to the first byte stay those of one STREAM_PAGE, however large the fleet."""
    # Read before the status line goes out: a store that fails now still answers 503.
    found = await read(after, STREAM_PAGE)
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.charset = "utf-8"
    await response.prepare(request)
    opening = b"["
    try:
        while found:
            page = ", ".join(json.dumps(view(item)) for item in found)
            await response.write(opening + page.encode())
            opening = b", "
            if len(found) < STREAM_PAGE:
                break
            found = await read(found[-1].device.name, STREAM_PAGE)
    except Exception as exc:
        # The status line went out with the first page; the client can only be told by a body
        # cut short. error_of logs the cause.
        error_of(exc, f"admin API {request.method} {request.path}")
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write(b"[]" if opening == b"[" else b"]")
    await response.write_eof()
    return response

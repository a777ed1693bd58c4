"""A device's voucher, status and progress reports, and the status of the whole fleet."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from sztp.device_status import STATUSES, DeviceStatus
from sztp.errors import ValidationError
from sztp.progress import MAX_PROGRESS_PAGE, group_by_attempt, summarize
from sztp.state.resources import DEVICE

from ...store.base import utc_now
from ...store.model import ProgressRecord
from ..auth import caller
from ..errors import ApiError
from ..requests import DEFAULT_PROGRESS_LIMIT, bool_query, int_query, read_body
from ..service import StateService
from ..views import derived_status, etag, report_view, resource_view, stall_after
from ..writes import DeleteVoucher, PutVoucher, stored_device
from .resources import resource_response

RECENT_ERRORS = 50
VOUCHER_TYPES = ("application/voucher-cms+json", "application/octet-stream")


class DeviceHandlers:
    def __init__(self, service: StateService, max_body_bytes: int) -> None:
        self.service = service
        self.store = service.store
        self.config = service.context.config
        self.max_body_bytes = max_body_bytes

    async def list_devices(self, request: web.Request) -> web.Response:
        """`GET /api/v1/devices`: filtered by profile, model or derived status; with
        `with_status=true` each device also carries its status and last report, so a whole
        fleet's status is one request; `limit` and `after` page through in name order, a
        `Link: <...>; rel="next"` header naming the next page while there is one."""
        wanted_status = request.query.get("status")
        if wanted_status is not None and wanted_status not in STATUSES:
            raise ApiError(400, f"must be one of {', '.join(STATUSES)}", field="status")
        with_status = bool_query(request, "with_status")
        limit = int_query(request, "limit", default=None)
        after = request.query.get("after")
        revision = await self.store.revision()
        devices = await self.store.list(DEVICE)
        for field in ("profile", "model"):
            wanted = request.query.get(field)
            if wanted is not None:
                devices = [device for device in devices if device.spec.get(field) == wanted]
        latest: dict[str, ProgressRecord] = {}
        statuses: dict[str, str] = {}
        if wanted_status is not None or with_status:
            latest, statuses = await self._statuses([device.name for device in devices])
        if wanted_status is not None:
            devices = [device for device in devices if statuses[device.name] == wanted_status]
        headers = etag(revision)
        if limit is not None or after is not None:
            # Pages follow Python's order of names, whatever the store's collation sorts by.
            devices = sorted(devices, key=lambda device: device.name)
            if after is not None:
                devices = [device for device in devices if device.name > after]
            if limit is not None and len(devices) > limit:
                devices = devices[:limit]
                next_page = request.rel_url.update_query(after=devices[-1].name)
                headers["Link"] = f'<{next_page}>; rel="next"'
        listing = []
        for device in devices:
            view = resource_view(device)
            if with_status:
                report = latest.get(device.name)
                view["status"] = statuses[device.name]
                view["last_report"] = report_view(report) if report is not None else None
            listing.append(view)
        return web.json_response(listing, headers=headers)

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

    async def fleet_status(self, _request: web.Request) -> web.Response:
        serials = [device.name for device in await self.store.list(DEVICE)]
        latest, statuses = await self._statuses(serials)
        counts = dict.fromkeys(STATUSES, 0)
        stalled: list[dict[str, Any]] = []
        errors: list[ProgressRecord] = []
        for serial in serials:
            report = latest.get(serial)
            derived = statuses[serial]
            counts[derived] += 1
            if report is not None and derived == DeviceStatus.STALLED.value:
                stalled.append({"serial": serial, "last_report": report_view(report)})
            elif report is not None and derived == DeviceStatus.FAILED.value:
                errors.append(report)
        errors.sort(key=lambda report: report.received_at, reverse=True)
        return web.json_response(
            {
                "devices": len(serials),
                "counts": counts,
                "stalled": stalled,
                "recent_errors": [report_view(report) for report in errors[:RECENT_ERRORS]],
            }
        )

    async def _statuses(
        self, serials: list[str]
    ) -> tuple[dict[str, ProgressRecord], dict[str, str]]:
        """The latest report of every device (one query) and the status of each of `serials`."""
        latest = await self.store.latest_reports()
        stalled_after = stall_after(self.config)
        return latest, {
            serial: derived_status(latest.get(serial), stalled_after) for serial in serials
        }

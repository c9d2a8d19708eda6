"""The fleet: the overview, devices and their detail, and the operator's enrolment and grants."""

from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from edgecloud_contracts.identity import KEY_PATTERN

from .api import ApiError, segment
from .render import ActingViewerDep, Viewer, ViewerDep, form_error, form_values, page

router = APIRouter(include_in_schema=False)

STATUSES = ("online", "degraded", "offline")
CONTAINER_STATES = ("running", "pending", "created", "restarting", "exited", "failed", "missing")


async def _optional(coroutine: Any, fallback: Any) -> Any:
    """A panel that cannot be filled says so instead of taking the whole page down."""
    try:
        return await coroutine
    except ApiError as err:
        return {"unavailable": err.message, **fallback}


async def _overview(viewer: Viewer) -> dict[str, Any]:
    devices = await viewer.api.all_pages("/devices")
    containers = await viewer.api.all_pages("/containers")
    device_counts = Counter(d["status"] for d in devices)
    container_counts = Counter(c["state"] for c in containers)
    migrations = await _optional(viewer.api.get("/migrations", limit=5), {"items": []})
    alerts = await _optional(viewer.api.get("/alerts", limit=5), {"items": []})
    return {
        "device_counts": {s: device_counts.get(s, 0) for s in STATUSES},
        "container_counts": dict(sorted(container_counts.items())),
        "device_total": len(devices),
        "container_total": len(containers),
        "migrations": migrations,
        "alerts": alerts,
    }


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, viewer: ViewerDep) -> HTMLResponse:
    recent = (
        await _optional(viewer.api.get("/audit", limit=10), {"items": []})
        if viewer.is_admin
        else None
    )
    return page(request, "overview.html", viewer, **(await _overview(viewer)), recent=recent)


@router.get("/parts/overview", response_class=HTMLResponse)
async def overview_counts(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "_overview_counts.html", viewer, **(await _overview(viewer)))


def _filtered(devices: list[dict[str, Any]], filters: dict[str, str]) -> list[dict[str, Any]]:
    def keep(device: dict[str, Any]) -> bool:
        return all(
            not wanted or str(device.get(name, "")).lower() == wanted.lower()
            for name, wanted in filters.items()
        )

    return [d for d in devices if keep(d)]


async def _device_list(request: Request, viewer: Viewer) -> dict[str, Any]:
    devices = await viewer.api.all_pages("/devices")
    filters = {k: request.query_params.get(k, "") for k in ("location", "arch", "status")}
    return {
        "devices": _filtered(devices, filters),
        "filters": filters,
        "locations": sorted({d["location"] for d in devices if d["location"]}),
        "archs": sorted({d["arch"] for d in devices if d["arch"]}),
        "statuses": STATUSES,
        "total": len(devices),
    }


@router.get("/devices", response_class=HTMLResponse)
async def devices(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "devices.html", viewer, **(await _device_list(request, viewer)))


@router.get("/parts/devices", response_class=HTMLResponse)
async def device_rows(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "_device_rows.html", viewer, **(await _device_list(request, viewer)))


async def _device_detail(viewer: Viewer, key: str) -> dict[str, Any]:
    key = segment(key, KEY_PATTERN)
    device = await viewer.api.get(f"/devices/{key}")
    history = await _optional(viewer.api.get(f"/devices/{key}/history", limit=20), {"items": []})
    containers = await viewer.api.all_pages("/containers", device=key)
    return {"device": device, "history": history["items"], "containers": containers}


@router.get("/devices/{key}", response_class=HTMLResponse)
async def device(request: Request, key: str, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "device.html", viewer, **(await _device_detail(viewer, key)))


@router.get("/parts/devices/{key}", response_class=HTMLResponse)
async def device_status(request: Request, key: str, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "_device_status.html", viewer, **(await _device_detail(viewer, key)))


# --- operators -------------------------------------------------------------------------------


async def _operator_context(viewer: Viewer) -> dict[str, Any]:
    devices = await viewer.api.all_pages("/devices")
    tenants = await viewer.api.all_pages("/tenants")
    grants: dict[str, list[str]] = {}
    names = {t["id"]: t["name"] for t in tenants}
    for device in devices:
        listed = await viewer.api.get(f"/devices/{device['key']}/grants")
        grants[device["key"]] = [names.get(g["tenant"], g["tenant"]) for g in listed["items"]]
    return {"devices": devices, "tenants": tenants, "grants": grants}


@router.get("/operator", response_class=HTMLResponse)
async def operator(request: Request, viewer: ViewerDep) -> HTMLResponse:
    if not viewer.is_operator:
        return page(request, "forbidden.html", viewer, status_code=403)
    return page(request, "operator.html", viewer, values={}, **(await _operator_context(viewer)))


@router.post("/operator/enrolments", response_class=HTMLResponse)
async def create_enrolment(request: Request, viewer: ActingViewerDep) -> HTMLResponse:
    values = form_values(await request.form())
    body: dict[str, Any] = {"note": values.get("note", "")}
    try:
        hours = float(values.get("ttl_hours") or 24)
    except ValueError:
        err = ApiError(422, "invalid_number", "Valid for must be a number of hours.")
        err.fields = {"ttl_hours": "must be a number of hours"}
        return form_error(request, "_enrolment.html", viewer, err, values=values)
    body["ttl_seconds"] = int(hours * 3600)
    try:
        created = await viewer.api.post("/devices/enrolments", body)
    except ApiError as err:
        if "ttl_seconds" in err.fields:
            err.fields["ttl_hours"] = "must be between 1 minute and 30 days"
            err.message = "Valid for must be between 1 minute and 30 days."
        return form_error(request, "_enrolment.html", viewer, err, values=values)
    return page(request, "_enrolment.html", viewer, created=created, values={})


@router.post("/operator/grants", response_class=HTMLResponse)
async def grant(request: Request, viewer: ActingViewerDep) -> Response:
    values = form_values(await request.form())
    key, tenant = values.get("device", ""), values.get("tenant", "")
    try:
        if not key:
            raise ApiError(422, "invalid_device", "Choose a device.", {"device": "is required"})
        device = segment(key, KEY_PATTERN)
        if values.get("revoke"):
            await viewer.api.delete(f"/devices/{device}/grants/{segment(tenant)}")
        else:
            await viewer.api.post(f"/devices/{device}/grants", {"tenant": tenant})
    except ApiError as err:
        return form_error(
            request, "_grants.html", viewer, err, values=values, **(await _operator_context(viewer))
        )
    done = f"Took {key} from {tenant}." if values.get("revoke") else f"Granted {key} to {tenant}."
    return page(
        request, "_grants.html", viewer, notice=done, values={}, **(await _operator_context(viewer))
    )

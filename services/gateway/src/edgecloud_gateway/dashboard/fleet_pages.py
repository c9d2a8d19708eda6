"""The fleet: the overview, devices and their detail, and the operator's enrolment and grants."""

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from edgecloud_contracts.identity import KEY_PATTERN

from .api import ApiError, segment
from .render import (
    ActingViewerDep,
    Viewer,
    ViewerDep,
    form_values,
    optional,
    page,
    wants_part,
)

router = APIRouter(include_in_schema=False)

STATUSES = ("online", "degraded", "offline")


async def _overview(viewer: Viewer) -> dict[str, Any]:
    devices, containers, migrations, alerts = await asyncio.gather(
        viewer.api.all_pages("/devices"),
        viewer.api.all_pages("/containers"),
        optional(viewer.api.get("/migrations", limit=5), {"items": []}),
        optional(viewer.api.get("/alerts", limit=5), {"items": []}),
    )
    device_counts = Counter(d["status"] for d in devices)
    container_counts = Counter(c["state"] for c in containers)
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
    if wants_part(request, "overview-counts"):  # a live refresh of the counts only
        return page(request, "_overview_counts.html", viewer, **(await _overview(viewer)))
    recent = (
        await optional(viewer.api.get("/audit", limit=10), {"items": []})
        if viewer.is_admin
        else None
    )
    return page(request, "overview.html", viewer, **(await _overview(viewer)), recent=recent)


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
    context = await _device_list(request, viewer)
    return page(
        request, "devices.html", viewer, parts={"device-rows": "_device_rows.html"}, **context
    )


@router.get("/devices/{key}", response_class=HTMLResponse)
async def device(request: Request, key: str, viewer: ViewerDep) -> HTMLResponse:
    key = segment(key, KEY_PATTERN)
    device, history, containers, interfaces = await asyncio.gather(
        viewer.api.get(f"/devices/{key}"),
        optional(viewer.api.get(f"/devices/{key}/history", limit=20), {"items": []}),
        viewer.api.all_pages("/containers", device=key),
        _interfaces_context(viewer, key),
    )
    return page(
        request,
        "device.html",
        viewer,
        parts={"device-status": "_device_status.html", "interfaces": "_interfaces.html"},
        device=device,
        history=history["items"],
        containers=containers,
        values={},
        **interfaces,
    )


INTERFACE_KINDS = ("serial", "i2c", "spi", "gpio", "usb", "camera", "sensor")


async def _interfaces_context(
    viewer: Viewer, key: str, chosen: Sequence[str] = ()
) -> dict[str, Any]:
    """The device's interfaces with their holders, and (operators) the tenants to offer,
    those ``chosen`` in a refused declaration still selected."""
    interfaces, tenants = await asyncio.gather(
        optional(viewer.api.get(f"/devices/{key}/interfaces"), {}),
        _tenants_to_offer(viewer),
    )
    unavailable = interfaces.get("unavailable") if isinstance(interfaces, dict) else None
    return {
        "device_key": key,
        "interfaces": interfaces if isinstance(interfaces, list) else [],
        "interfaces_unavailable": unavailable,
        "tenant_names": {t["id"]: t["name"] for t in tenants},
        "tenants": tenants,
        "chosen_tenants": set(chosen),
        "kinds": INTERFACE_KINDS,
    }


async def _tenants_to_offer(viewer: Viewer) -> list[dict[str, Any]]:
    return await viewer.api.all_pages("/tenants") if viewer.is_operator else []


def _declaration(values: dict[str, str], tenants: list[str]) -> dict[str, Any]:
    """The form as a declaration: a sensor has a topic, anything else a device file."""
    sensor = values.get("kind") == "sensor"
    return {
        "kind": values.get("kind", ""),
        "path": None if sensor else values.get("path") or None,
        "container_path": None if sensor else values.get("container_path") or None,
        "topic": values.get("topic") or None if sensor else None,
        "read_only": bool(values.get("read_only")),
        "shareable": bool(values.get("shareable")),
        "tenants": tenants,
        "description": values.get("description", ""),
    }


@router.post("/devices/{key}/interfaces", response_class=HTMLResponse)
async def declare_interface(request: Request, key: str, viewer: ActingViewerDep) -> Response:
    """Declare an interface (operators), or with ``remove`` withdraw one."""
    key = segment(key, KEY_PATTERN)
    form = await request.form()
    values = form_values(form)
    name = values.get("name", "")
    chosen = [t for t in form.getlist("tenants") if isinstance(t, str) and t]
    try:
        if not name:
            raise ApiError(
                422, "invalid_name", "Give the interface a name.", {"name": "is required"}
            )
        path = f"/devices/{key}/interfaces/{segment(name)}"
        if values.get("remove"):
            await viewer.api.delete(path)
            done = f"Withdrew {name}."
        else:
            await viewer.api.put(path, _declaration(values, chosen))
            done = f"Declared {name}."
    except ApiError as err:
        context = await _interfaces_context(viewer, key, chosen)
        return page(request, "_interfaces.html", viewer, error=err, values=values, **context)
    context = await _interfaces_context(viewer, key)
    return page(request, "_interfaces.html", viewer, notice=done, values={}, **context)


# --- operators -------------------------------------------------------------------------------


async def _operator_context(viewer: Viewer) -> dict[str, Any]:
    devices, tenants = await asyncio.gather(
        viewer.api.all_pages("/devices"), viewer.api.all_pages("/tenants")
    )
    names = {t["id"]: t["name"] for t in tenants}
    # One call per device (the API lists grants per device), made side by side.
    listed = await asyncio.gather(*(viewer.api.get(f"/devices/{d['key']}/grants") for d in devices))
    grants = {
        device["key"]: [names.get(g["tenant"], g["tenant"]) for g in found["items"]]
        for device, found in zip(devices, listed, strict=True)
    }
    return {"devices": devices, "tenants": tenants, "grants": grants}


@router.get("/operator", response_class=HTMLResponse)
async def operator(request: Request, viewer: ViewerDep) -> HTMLResponse:
    if not viewer.is_operator:
        return page(request, "forbidden.html", viewer, status_code=403)
    return page(request, "operator.html", viewer, values={}, **(await _operator_context(viewer)))


@router.post("/operator/enrolments", response_class=HTMLResponse)
async def create_enrolment(request: Request, viewer: ActingViewerDep) -> HTMLResponse:
    values = form_values(await request.form())
    try:
        hours = float(values.get("ttl_hours") or 24)
    except ValueError:
        err = ApiError.invalid({"ttl_hours": "must be a number of hours"})
        return page(request, "_enrolment.html", viewer, error=err, values=values)
    body = {"note": values.get("note", ""), "ttl_seconds": int(hours * 3600)}
    try:
        created = await viewer.api.post("/devices/enrolments", body)
    except ApiError as err:
        if "ttl_seconds" in err.fields:
            err = ApiError.invalid({"ttl_hours": "must be between 1 minute and 30 days"})
        return page(request, "_enrolment.html", viewer, error=err, values=values)
    return page(request, "_enrolment.html", viewer, created=created, values={})


WITHDRAWAL_CHOICES = {
    "keep": "its containers there keep running until removed",
    "stop": "its containers there are being stopped",
}


@router.post("/operator/grants", response_class=HTMLResponse)
async def grant(request: Request, viewer: ActingViewerDep) -> Response:
    values = form_values(await request.form())
    key, tenant = values.get("device", ""), values.get("tenant", "")
    try:
        if not key:
            raise ApiError(422, "invalid_device", "Choose a device.", {"device": "is required"})
        device = segment(key, KEY_PATTERN)
        if values.get("revoke"):
            containers = values.get("containers") or "keep"
            if containers not in WITHDRAWAL_CHOICES:
                raise ApiError(
                    422, "validation_failed", "Choose what happens to the containers.", {}
                )
            await viewer.api.delete(
                f"/devices/{device}/grants/{segment(tenant)}?containers={containers}"
            )
        else:
            await viewer.api.post(f"/devices/{device}/grants", {"tenant": tenant})
    except ApiError as err:
        context = await _operator_context(viewer)
        return page(request, "_grants.html", viewer, error=err, values=values, **context)
    if values.get("revoke"):
        done = f"Took {key} from {tenant}; {WITHDRAWAL_CHOICES[containers]}."
    else:
        done = f"Granted {key} to {tenant}."
    return page(
        request, "_grants.html", viewer, notice=done, values={}, **(await _operator_context(viewer))
    )

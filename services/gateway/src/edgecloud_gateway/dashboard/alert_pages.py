"""Alerts: the tenant's rules on devices and containers, and the alerts they raised."""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from edgecloud_contracts.alerts import METRICS_OF, STATE_METRICS, Comparison

from .api import ApiError, segment
from .render import ActingViewerDep, Viewer, ViewerDep, form_values, page

router = APIRouter(include_in_schema=False)

METRIC_WORDS = {
    "cpu_percent": "CPU %",
    "memory_percent": "memory used %",
    "disk_used_percent": "disk used %",
    "offline": "is offline",
    "exited": "has exited",
    "restarting": "keeps restarting",
}


async def _alerts_context(viewer: Viewer) -> dict[str, Any]:
    rules, alerts, devices, containers = await asyncio.gather(
        viewer.api.all_pages("/alert-rules"),
        viewer.api.get("/alerts", limit=100),
        viewer.api.all_pages("/devices"),
        viewer.api.all_pages("/containers"),
    )
    return {
        "rules": rules,
        "alerts": alerts["items"],
        "devices": devices,
        "containers": containers,
        "metrics_of": {kind.value: [m.value for m in ms] for kind, ms in METRICS_OF.items()},
        "state_metrics": {m.value for m in STATE_METRICS},
        "metric_words": METRIC_WORDS,
        "ops": [op.value for op in Comparison],
    }


def _rule_body(form: dict[str, str]) -> dict[str, Any]:
    """The API's rule from the form: the target is one select holding ``kind:id``."""
    kind, _, target = form.get("target", "").partition(":")
    body: dict[str, Any] = {
        "name": form.get("name", ""),
        "target_kind": kind,
        "target": target,
        "metric": form.get("metric", ""),
        "for_seconds": form.get("for_seconds") or 0,
    }
    if body["metric"] not in {m.value for m in STATE_METRICS}:
        body["op"] = form.get("op") or None
        body["threshold"] = form.get("threshold") or None
    if form.get("webhook"):
        body["webhook"] = form["webhook"]
    return body


@router.get("/alerts", response_class=HTMLResponse)
async def alerts(request: Request, viewer: ViewerDep) -> HTMLResponse:
    # Its live refresh (htmx on an alert event) is the panels only, not the page again.
    return page(
        request,
        "alerts.html",
        viewer,
        parts={"alert-panels": "_alert_panels.html"},
        values={},
        **(await _alerts_context(viewer)),
    )


@router.get("/parts/alerts", response_class=HTMLResponse)
async def alert_rows(request: Request, viewer: ViewerDep) -> HTMLResponse:
    return page(request, "_alert_panels.html", viewer, values={}, **(await _alerts_context(viewer)))


@router.post("/alerts/rules", response_class=HTMLResponse)
async def create_rule(request: Request, viewer: ActingViewerDep) -> HTMLResponse:
    form = form_values(await request.form())
    error: ApiError | None = None
    try:
        await viewer.api.post("/alert-rules", _rule_body(form))
    except ApiError as err:
        error = err
    return page(
        request,
        "_alert_panels.html",
        viewer,
        error=error,
        values=form if error else {},
        notice=None if error else "The rule is watching.",
        **(await _alerts_context(viewer)),
    )


@router.post("/alerts/rules/{rule_id}/delete", response_class=HTMLResponse)
async def delete_rule(request: Request, rule_id: str, viewer: ActingViewerDep) -> HTMLResponse:
    await viewer.api.delete(f"/alert-rules/{segment(rule_id)}")
    return page(
        request,
        "_alert_panels.html",
        viewer,
        values={},
        notice="The rule is deleted.",
        **(await _alerts_context(viewer)),
    )

"""Workloads: launching containers, their list and detail, applications, files, migrations
and data."""

import asyncio
import re
import shlex
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from edgecloud_contracts.containers import MIB
from edgecloud_contracts.platforms import fits

from ..security_headers import content_security_policy
from .api import ApiError, segment
from .render import (
    ActingViewerDep,
    Viewer,
    ViewerDep,
    form_values,
    optional,
    page,
    redirect,
    wants_part,
)

router = APIRouter(include_in_schema=False)

ACTIONS = ("start", "stop", "restart")
PUBLISHED = re.compile(r"(?P<host>\d{1,5}):(?P<container>\d{1,5})(?:/(?P<protocol>tcp|udp))?")
"""A published port as the form takes it: ``HOST:CONTAINER``, ``/udp`` for UDP."""


def _published(text: str) -> list[dict[str, Any]]:
    """``8080:80 5353:53/udp`` as the API's ports; ValueError naming what is not one."""
    ports = []
    for item in text.replace(",", " ").split():
        match = PUBLISHED.fullmatch(item)
        if match is None:
            raise ValueError(f"{item!r} is not HOST:CONTAINER or HOST:CONTAINER/udp")
        ports.append(
            {
                "host": int(match["host"]),
                "container": int(match["container"]),
                "protocol": match["protocol"] or "tcp",
            }
        )
    return ports


def _launch_body(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API's create request from the form's text, and what could not be read."""
    problems: dict[str, str] = {}
    body: dict[str, Any] = {
        "device": values.get("device") or None,
        "name": values.get("name", ""),
        "image": values.get("image", ""),
        "auto_remove": values.get("auto_remove") == "on",
    }
    if values.get("command"):
        try:
            body["command"] = shlex.split(values["command"])
        except ValueError:
            problems["command"] = "has an unclosed quote"
    env: dict[str, str] = {}
    for number, line in enumerate(values.get("env", "").splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        if not equals or not name.strip():
            problems["env"] = f"line {number} is not NAME=value"
            break
        env[name.strip()] = value
    body["env"] = env
    # Names and topic filters hold no spaces or commas: either separates them.
    for name in ("interfaces", "subscriptions"):
        listed = values.get(name, "").replace(",", " ").split()
        if listed:
            body[name] = listed
    if values.get("no_network") == "on":
        body["network"] = "none"
    try:
        ports = _published(values.get("ports", ""))
    except ValueError as err:
        problems["ports"] = f"has {err}"
    else:
        if ports and body.get("network") == "none":
            problems["ports"] = "cannot be published by a container without a network"
        elif ports:
            body["ports"] = ports
    limits: dict[str, Any] = {}
    for name, convert, scale in (
        ("memory", int, MIB),
        ("cpus", float, 1),
        ("pids", int, 1),
        ("disk", int, MIB),
    ):
        text = values.get(name, "")
        if not text:
            continue
        try:
            limits[name] = convert(text) * scale
        except ValueError:
            problems[name] = "must be a number"
    if limits:
        body["limits"] = limits
    if not body["device"]:
        problems["device"] = "is required: choose a device"
    return body, problems


async def _launch_context(viewer: Viewer, image: str = "") -> dict[str, Any]:
    """The devices to offer: granted ones, those the image cannot run on disabled. Offline
    devices stay choosable: the container is queued until the device returns."""
    devices = await viewer.api.all_pages("/devices")
    platforms: list[str] | None = None
    if image:
        try:
            platforms = (await viewer.api.get("/images/platforms", image=image))["platforms"]
        except ApiError:  # not an image name (yet): the create will say what is wrong
            platforms = None
    for device in devices:
        device["fits"] = fits(device["arch"], set(platforms) if platforms is not None else None)
    return {
        "devices": _offered(devices),
        "platforms": platforms,
        "platforms_unknown": bool(image) and platforms is None,
    }


def _offered(devices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Devices in the order a form offers them: those that fit first, then online ones."""
    return sorted(
        devices, key=lambda d: (not d.get("fits", True), d["status"] != "online", d["name"])
    )


@router.get("/launch", response_class=HTMLResponse)
async def launch_form(request: Request, viewer: ViewerDep, device: str = "") -> HTMLResponse:
    return page(
        request,
        "launch.html",
        viewer,
        values={"device": device, "memory": "256", "cpus": "1", "pids": "256", "disk": "256"},
        **(await _launch_context(viewer)),
    )


@router.get("/parts/launch/devices", response_class=HTMLResponse)
async def launch_devices(
    request: Request, viewer: ViewerDep, image: str = "", device: str = ""
) -> HTMLResponse:
    return page(
        request,
        "_launch_devices.html",
        viewer,
        values={"device": device},
        **(await _launch_context(viewer, image.strip())),
    )


@router.post("/launch")
async def launch(request: Request, viewer: ActingViewerDep) -> Response:
    values = form_values(await request.form())
    body, problems = _launch_body(values)
    try:
        if problems:
            raise ApiError.invalid(problems, code="invalid_form")
        created = await viewer.api.post("/containers", body)
    except ApiError as err:
        if "limits" in err.fields:
            err.fields.setdefault("memory", err.fields["limits"])
        context = await _launch_context(viewer, values.get("image", ""))
        return page(request, "launch.html", viewer, error=err, values=values, **context)
    return redirect(request, f"/containers/{created['id']}")


async def _containers(viewer: Viewer) -> dict[str, Any]:
    containers = await viewer.api.all_pages("/containers")
    return {"containers": sorted(containers, key=lambda c: c["created_at"], reverse=True)}


@router.get("/containers", response_class=HTMLResponse)
async def containers(request: Request, viewer: ViewerDep) -> HTMLResponse:
    parts = {"container-rows": "_container_rows.html"}
    return page(request, "containers.html", viewer, parts=parts, **(await _containers(viewer)))


async def _container(viewer: Viewer, container_id: str) -> dict[str, Any]:
    return {"container": await viewer.api.get(f"/containers/{container_id}"), "actions": ACTIONS}


async def _outputs(viewer: Viewer, container_id: str) -> dict[str, Any]:
    deployments, files = await asyncio.gather(
        viewer.api.get(f"/containers/{container_id}/deployments"),
        viewer.api.all_pages("/artifacts", container=container_id),
    )
    return {
        "deployments": sorted(deployments, key=lambda d: d["created_at"], reverse=True),
        "files": sorted(files, key=lambda a: a["created_at"], reverse=True),
    }


async def _migrations(viewer: Viewer, container_id: str) -> dict[str, Any]:
    """The container's latest migrations; the page still shows when the scheduler is down."""
    listed = viewer.api.get("/migrations", container=container_id, limit=5)
    return {"container_id": container_id, "migrations": await optional(listed, {"items": []})}


async def _migrate_targets(viewer: Viewer) -> dict[str, Any]:
    """The devices the migrate form offers: the launch form's (the container's own is left
    out by the template)."""
    return {"devices": _offered(await viewer.api.all_pages("/devices"))}


@router.get("/containers/{container_id}", response_class=HTMLResponse)
async def container(request: Request, container_id: str, viewer: ViewerDep) -> HTMLResponse:
    """The page, or one of its live panels (state, outputs, migrations) when htmx refreshes
    it."""
    container_id = segment(container_id)
    if wants_part(request, "container-status"):
        context = await _container(viewer, container_id)
        return page(request, "_container_status.html", viewer, **context)
    if wants_part(request, "outputs"):
        context = await _outputs(viewer, container_id)
        return page(request, "_container_outputs.html", viewer, **context)
    if wants_part(request, "container-migrations"):
        context = await _migrations(viewer, container_id)
        return page(request, "_container_migrations.html", viewer, **context)
    state, outputs, migrations, targets = await asyncio.gather(
        _container(viewer, container_id),
        _outputs(viewer, container_id),
        _migrations(viewer, container_id),
        _migrate_targets(viewer),
    )
    answer = page(
        request,
        "container.html",
        viewer,
        values={},
        **state,
        **outputs,
        **migrations,
        **targets,
    )
    # Its terminal (xterm.js) sizes and colours its cells with <style> elements it writes.
    answer.headers["Content-Security-Policy"] = content_security_policy(inline_styles=True)
    return answer


async def _outputs_after(
    request: Request, viewer: Viewer, container_id: str, call: Any, form: str
) -> HTMLResponse:
    """Run ``call``; answer with the outputs panel, showing a refusal next to ``form``."""
    error: ApiError | None = None
    try:
        await call
    except ApiError as err:
        error = err
    context = await _outputs(viewer, container_id)
    return page(
        request, "_container_outputs.html", viewer, error=error, failed_form=form, **context
    )


@router.post("/containers/{container_id}/deploy", response_class=HTMLResponse)
async def deploy(request: Request, container_id: str, viewer: ActingViewerDep) -> HTMLResponse:
    container_id = segment(container_id)
    values = form_values(await request.form())
    body = {"artifact": values.get("artifact", ""), "script": values.get("script", "")}
    call = viewer.api.post(f"/containers/{container_id}/deploy", body)
    return await _outputs_after(request, viewer, container_id, call, "deploy")


@router.post("/containers/{container_id}/files", response_class=HTMLResponse)
async def fetch_files(request: Request, container_id: str, viewer: ActingViewerDep) -> HTMLResponse:
    container_id = segment(container_id)
    path = form_values(await request.form()).get("path", "")
    call = viewer.api.post(f"/containers/{container_id}/files", {"path": path})
    return await _outputs_after(request, viewer, container_id, call, "files")


@router.post("/containers/{container_id}/migrate", response_class=HTMLResponse)
async def migrate(request: Request, container_id: str, viewer: ActingViewerDep) -> HTMLResponse:
    """Answer with the migrate form again, the migration accepted or why it was refused,
    and the container's migrations (swapped in out of band)."""
    container_id = segment(container_id)
    device = form_values(await request.form()).get("device", "")
    error: ApiError | None = None
    accepted: dict[str, Any] | None = None
    try:
        body = {"device": device or None}  # none chosen: the scheduler picks
        accepted = await viewer.api.post(f"/containers/{container_id}/migrate", body)
    except ApiError as err:
        error = err
    state, migrations, targets = await asyncio.gather(
        _container(viewer, container_id),
        _migrations(viewer, container_id),
        _migrate_targets(viewer),
    )
    return page(
        request,
        "_migrate_form.html",
        viewer,
        error=error,
        accepted=accepted,
        answered=True,
        values={"device": device} if error else {},
        **state,
        **migrations,
        **targets,
    )


@router.get("/data", response_class=HTMLResponse)
async def data(request: Request, viewer: ViewerDep, container: str = "") -> HTMLResponse:
    containers = (await _containers(viewer))["containers"]
    chosen = next((c for c in containers if c["id"] == container), None)
    if chosen is None and containers and not container:
        chosen = containers[0]
    return page(request, "data.html", viewer, containers=containers, chosen=chosen)


# Last: its path would also match the deploy, files and migrate actions above.
@router.post("/containers/{container_id}/{action}", response_class=HTMLResponse)
async def act(
    request: Request, container_id: str, action: str, viewer: ActingViewerDep
) -> Response:
    container_id = segment(container_id)
    if action == "remove":
        await viewer.api.delete(f"/containers/{container_id}")
        return redirect(request, "/containers")
    if action not in ACTIONS:
        raise ApiError(404, "not_found", f"There is no action {action!r}.")
    await viewer.api.post(f"/containers/{container_id}/{action}")
    context = await _container(viewer, container_id)
    return page(request, "_container_status.html", viewer, **context)

"""The fake gateway's containers, commands and event stream (see fake_gateway.py).

A device whose status is ``offline`` queues every command (202); any other device does it at
once. Only the checks the CLI reports are imitated: a few validation rules, unknown device,
no matching device, a name already taken.
"""

import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .problems import problem

MIB = 1 << 20
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
STATES_AFTER = {"start": "running", "restart": "running", "stop": "exited"}
DESIRED_AFTER = {"start": "running", "restart": "running", "stop": "stopped", "remove": "removed"}


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def container(container_id: str, name: str, **changes: Any) -> dict[str, Any]:
    """A container of the user ``admin`` as the API shows it, created 5 minutes ago."""
    created = iso(datetime.now(UTC) - timedelta(minutes=5))
    base: dict[str, Any] = {
        "id": container_id,
        "name": f"admin-{name}",
        "device": "pi-1_020000000001",
        "image": "edgecloud/busybox:latest",
        "state": "running",
        "desired_state": "running",
        "owner": "admin",
        "created_at": created,
        "updated_at": created,
        "exit_code": None,
        "error": None,
        "limits": {"memory": 256 * MIB, "cpus": 1.0, "pids": 256},
        "command": None,
    }
    return {**base, **changes}


def progress_event(
    image: str, status: str, current: int | None, total: int | None
) -> tuple[str, dict[str, Any]]:
    progress = {
        "command_id": "cmd-pull",
        "image": image,
        "status": status,
        "current": current,
        "total": total,
    }
    return "command", {
        "tenant": "t1",
        "id": "cmd-pull",
        "container": "c-pull",
        "device": "pi-1_020000000001",
        "action": "create",
        "state": "sent",
        "error_code": None,
        "progress": progress,
    }


def validation_problem(errors: list[dict[str, Any]]) -> httpx.Response:
    """422 as the gateway's request validation answers it."""
    fields = sorted(".".join(str(p) for p in e["loc"][1:]) for e in errors)
    detail = f"invalid fields: {', '.join(fields)}"
    return problem(422, "validation_failed", detail, errors=errors, fields=fields)


@dataclass
class ContainerRoutes(ABC):
    containers: list[dict[str, Any]] = field(default_factory=list)
    """Newest first, as the API lists them."""
    commands: dict[str, dict[str, Any]] = field(default_factory=dict)
    queued_command_state: str = "queued"
    """The state a new command of an offline device has ("sent": the device is busy)."""
    events: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    """Served by GET /api/v1/events after ": connected"; a str is sent as raw data."""
    events_read: threading.Event = field(default_factory=threading.Event)
    """Set once a stream has sent every event."""
    _streaming: bool = False
    _created: int = 0

    def container_route(self, request: httpx.Request) -> httpx.Response | None:
        """The answer to a container, command or events request; None for other paths."""
        method, path = request.method, request.url.path
        parts = path.removeprefix("/api/v1/").split("/")
        match method, parts:
            case "POST", ["containers"]:
                return self._create(request)
            case "GET", ["containers"]:
                return self._list(request)
            case "GET", ["containers", container_id]:
                found = self._find(container_id)
                return httpx.Response(200, json=found) if found else _not_found(container_id)
            case "POST", ["containers", container_id, ("start" | "stop" | "restart") as action]:
                return self._act(container_id, action)
            case "DELETE", ["containers", container_id]:
                return self._act(container_id, "remove")
            case "GET", ["commands", command_id]:
                if command_id not in self.commands:
                    return problem(404, "command_not_found", f"command {command_id} not found")
                return httpx.Response(200, json=self.commands[command_id])
            case "GET", ["events"]:
                self._streaming = True
                return httpx.Response(
                    200,
                    headers={"Content-Type": "text/event-stream"},
                    content=self._event_stream(),
                )
        return None

    def _event_stream(self) -> Iterator[bytes]:
        try:
            yield b": connected\n\n"
            for kind, data in self.events:
                text = data if isinstance(data, str) else json.dumps(data)
                yield f": keepalive\n\nevent: {kind}\ndata: {text}\n\n".encode()
        finally:
            self.events_read.set()

    def _create(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        errors = []
        if not re.match(NAME_PATTERN, body.get("name", "")):
            errors.append(
                {"loc": ["body", "name"], "msg": f"String should match pattern '{NAME_PATTERN}'"}
            )
        if body.get("limits", {}).get("memory", 6 * MIB) < 6 * MIB:
            errors.append(
                {
                    "loc": ["body", "limits", "memory"],
                    "msg": f"Input should be greater than or equal to {6 * MIB}",
                }
            )
        if errors:
            return validation_problem(errors)
        device = self._device_for(body)
        if isinstance(device, httpx.Response):
            return device
        name = f"admin-{body['name']}"
        if any(c["name"] == name and c["device"] == device["key"] for c in self.containers):
            return problem(
                409, "name_taken", f"a container named {name} already exists on {device['key']}"
            )
        # Like a real pull, the progress comes before the answer (if someone follows it).
        if self._streaming:
            self.events_read.wait(5)
        self._created += 1
        created = container(
            f"{self._created:08x}-0000-4000-8000-000000000000",
            body["name"],
            device=device["key"],
            image=body["image"],
            limits={"memory": 256 * MIB, "cpus": 1.0, "pids": 256, **body.get("limits", {})},
            network=body.get("network", "tenant"),
            ports=[{"protocol": "tcp", **port} for port in body.get("ports", [])],
        )
        self.containers.insert(0, created)
        if device["status"] == "offline":
            created["state"] = "pending"
            return self._queued(created, "create")
        return httpx.Response(201, json=created)

    def _device_for(self, body: dict[str, Any]) -> dict[str, Any] | httpx.Response:
        if "device" in body:
            for device in self.known_devices():
                if device["key"] == body["device"]:
                    return device
            return problem(404, "device_not_found", f"device {body['device']} not found")
        wanted = body["placement"]
        for device in self.known_devices():
            if device["status"] != "offline" and all(
                device[k] == v for k, v in wanted.items() if k in ("location", "arch")
            ):
                return device
        return problem(
            409,
            "no_matching_device",
            "no reachable device granted to the tenant matches the placement",
        )

    def _list(self, request: httpx.Request) -> httpx.Response:
        items = self.containers
        device = request.url.params.get("device")
        if device:
            items = [c for c in items if c["device"] == device]
        return httpx.Response(200, json=self.page_of(items, request))

    def _act(self, container_id: str, action: str) -> httpx.Response:
        found = self._find(container_id)
        if found is None:
            return _not_found(container_id)
        found["desired_state"] = DESIRED_AFTER[action]
        if self._status_of(found["device"]) == "offline":
            return self._queued(found, action)
        if action == "remove":
            self.containers.remove(found)
            return httpx.Response(204)
        found["state"] = STATES_AFTER[action]
        return httpx.Response(200, json=found)

    def _queued(self, found: dict[str, Any], action: str) -> httpx.Response:
        command_id = f"cmd-{len(self.commands) + 1}"
        self.commands[command_id] = {
            "id": command_id,
            "action": action,
            "state": self.queued_command_state,
            "container": found["id"],
            "device": found["device"],
            "result": None,
            "error": None,
            "error_code": None,
            "attempts": 0,
            "created_at": "2025-06-01T12:00:00Z",
            "sent_at": None,
            "finished_at": None,
        }
        return httpx.Response(202, json={**found, "command": command_id})

    def _find(self, container_id: str) -> dict[str, Any] | None:
        return next((c for c in self.containers if c["id"] == container_id), None)

    def _status_of(self, key: str) -> str:
        return next((d["status"] for d in self.known_devices() if d["key"] == key), "online")

    # What the gateway these routes are mixed into provides.
    @abstractmethod
    def known_devices(self) -> list[dict[str, Any]]: ...

    @abstractmethod
    def page_of(self, items: list[dict[str, Any]], request: httpx.Request) -> dict[str, Any]: ...


def _not_found(container_id: str) -> httpx.Response:
    return problem(404, "container_not_found", f"container {container_id} not found")

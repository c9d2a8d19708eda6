"""One user action followed across every process by its request id, in the JSON log lines
of the gateway, the orchestrator and the node's agent; and the series /metrics shows for
the WAMP calls, queues and connected devices behind it."""

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgecloud_contracts.correlation import is_valid_request_id
from tests.conftest import ONE_DATABASE, eventually
from tests.support.stack import Stack

pytestmark = pytest.mark.stack

# Logs and metrics do not depend on the database: once is enough for the suite's time.

IMAGE = "edgecloud/busybox:latest"


def logged_with(path: Path, request_id: str) -> list[dict[str, Any]]:
    """The JSON lines of a process's log that carry ``request_id``."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # e.g. a library's warning printed before logging was set up
        if isinstance(entry, dict) and entry.get("correlation_id") == request_id:
            found.append(entry)
    return found


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The sum of the series ``name`` with ``labels`` (among others); it must be shown."""
    matching = [v for found, v in samples(text, name) if labels.items() <= found.items()]
    assert matching, f"no {name} with {labels}"
    return sum(matching)


async def scrape(stack: Stack, service: str) -> str:
    async with httpx.AsyncClient(base_url=stack.url(service), timeout=5) as client:
        answer = await client.get("/metrics", headers=stack.metrics_headers(service))
    assert answer.status_code == 200
    return answer.text


@ONE_DATABASE
async def test_a_container_create_is_followed_by_its_request_id_and_measured(
    stack: Stack, client: httpx.AsyncClient, node
) -> None:
    agent, user = node
    request_id = f"obs-{secrets.token_hex(8)}"
    answer = await client.post(
        "/api/v1/containers",
        json={"device": agent.key, "name": "traced", "image": IMAGE, "command": ["sleep", "600"]},
        headers={**user.headers, "X-Request-ID": request_id},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["X-Request-ID"] == request_id
    container = answer.json()

    async def followed() -> dict[str, list[dict[str, Any]]] | None:
        lines = {
            "gateway": logged_with(stack.services["gateway"].log_path, request_id),
            "orchestrator": logged_with(stack.services["orchestrator"].log_path, request_id),
            "agent": logged_with(agent.process.log_path, request_id),
        }
        return lines if all(lines.values()) else None

    lines = await eventually(followed, timeout=10, interval=0.2)
    assert any(e["msg"].startswith("POST /api/v1/containers 201") for e in lines["gateway"])
    assert any(e["msg"].startswith("POST /v1/containers 201") for e in lines["orchestrator"])
    assert any(e["msg"].startswith("applying create command") for e in lines["agent"])

    # The next action has its own id (made by the gateway when the caller sends no usable one).
    removed = await client.delete(
        f"/api/v1/containers/{container['id']}",
        headers={**user.headers, "X-Request-ID": "not a safe id"},
    )
    assert removed.status_code == 204, removed.text
    remove_id = removed.headers["X-Request-ID"]
    assert is_valid_request_id(remove_id)
    assert remove_id != request_id

    async def remove_followed() -> bool:
        on_node = logged_with(agent.process.log_path, remove_id)
        return any(e["msg"].startswith("applying remove command") for e in on_node)

    await eventually(remove_followed, timeout=10, interval=0.2)

    registry = await scrape(stack, "registry")
    assert value(registry, "edgecloud_devices_connected", service="registry") >= 1
    beats = value(
        registry,
        "edgecloud_wamp_invocation_duration_seconds_count",
        service="registry",
        procedure="edge.registry.heartbeat",
        outcome="ok",
    )
    assert beats > 0
    assert value(registry, "edgecloud_queue_depth", queue="heartbeat_writes") >= 0

    orchestrator = await scrape(stack, "orchestrator")
    creates = value(
        orchestrator,
        "edgecloud_wamp_call_duration_seconds_count",
        service="orchestrator",
        procedure="edge.device.*.container.create",
        outcome="ok",
    )
    assert creates >= 1
    reports = value(
        orchestrator,
        "edgecloud_wamp_invocation_duration_seconds_count",
        procedure="edge.orchestrator.report",
    )
    assert reports > 0
    assert value(orchestrator, "edgecloud_command_outbox", state="queued") >= 0
    assert value(orchestrator, "edgecloud_command_outbox", state="sent") >= 0
    for text in (registry, orchestrator):
        for name in (
            "edgecloud_wamp_call_duration_seconds_count",
            "edgecloud_wamp_invocation_duration_seconds_count",
        ):
            labels = [found for found, _ in samples(text, name)]
            assert not any(agent.key in v for found in labels for v in found.values())

    gateway = await scrape(stack, "gateway")
    assert value(gateway, "edgecloud_queue_depth", queue="sse_events") >= 0

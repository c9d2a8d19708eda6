"""A manual migration through the public API: ``POST /containers/{id}/migrate`` goes to the
migration-scheduler and is audited as ``container.migrate``; the scheduler's progress events
reach the owning tenant's event stream, and no one else's.

The scheduler's side (``POST /v1/migrations``) comes with the peer migration issue (#8); the
test that needs it skips until the scheduler offers it, and runs by itself from then on.
"""

from datetime import UTC, datetime

import httpx
import pytest

from edgecloud_contracts import uris
from edgecloud_contracts.migrations import (
    MigrationEvent,
    MigrationReason,
    MigrationState,
    MigrationStep,
)
from tests.conftest import eventually
from tests.integration.test_alerts import event_stream
from tests.integration.test_gateway_api import assert_problem
from tests.support.users import Account, register
from tests.support.wamp import service_session

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
SOME_CONTAINER = "3f2a9c1b-4d5e-4f60-8a7b-0123456789ab"


async def audited(client: httpx.AsyncClient, user: Account) -> list[tuple[str, str, dict]]:
    answer = await client.get("/api/v1/audit", headers=user.headers, params={"limit": 500})
    assert answer.status_code == 200, answer.text
    return [(e["action"], e["outcome"], e["detail"]) for e in answer.json()["items"]]


async def migrate(
    client: httpx.AsyncClient, user: Account, container_id: str, body: object
) -> httpx.Response:
    return await client.post(
        f"/api/v1/containers/{container_id}/migrate", json=body, headers=user.headers
    )


@pytest.mark.parametrize(
    ("container_id", "body", "fields"),
    [
        (SOME_CONTAINER, {"device": "Not A Key!"}, ["device"]),
        (SOME_CONTAINER, {"device": "x" * 101}, ["device"]),
        (SOME_CONTAINER, {"device": "pi_1", "priority": "high"}, ["priority"]),
        ("semi;colon", {}, ["container_id"]),
    ],
)
async def test_an_invalid_request_is_refused_before_the_scheduler_and_not_audited(
    stack, client, container_id: str, body: object, fields: list[str]
) -> None:
    user = await register(stack)

    refused = await migrate(client, user, container_id, body)

    problem = assert_problem(refused, 422, "validation_failed")
    assert problem["fields"] == fields
    assert not [a for a in await audited(client, user) if a[0] == "container.migrate"]


def migration_event(tenant_id: str, container_id: str) -> MigrationEvent:
    return MigrationEvent(
        id=f"mig-{container_id}",
        tenant=tenant_id,
        container=container_id,
        source="node_a",
        target="node_b",
        reason=MigrationReason.MANUAL,
        state=MigrationState.TRANSFERRING,
        steps=[MigrationStep(name="select_peer", started_at=datetime.now(UTC), duration_ms=9.0)],
        freeze_ms=None,
        created_at=datetime.now(UTC),
    )


def migration_data(lines: list[str]) -> list[str]:
    """The data lines of the ``migration`` events in a stream."""
    return [line for i, line in enumerate(lines) if i and lines[i - 1] == "event: migration"]


async def test_migration_events_reach_the_owning_tenant_only(stack, client) -> None:
    owner, stranger = await register(stack), await register(stack)
    mine = migration_event(owner.tenant_id, "c-mine")
    theirs = migration_event(stranger.tenant_id, "c-theirs")

    async with (
        event_stream(client, owner) as owner_lines,
        event_stream(client, stranger) as stranger_lines,
        service_session(stack, service="migration-scheduler") as scheduler,
    ):
        await scheduler.wait_joined(10)
        await scheduler.publish(uris.EVENT_MIGRATION, mine.model_dump(mode="json"))
        await scheduler.publish(uris.EVENT_MIGRATION, theirs.model_dump(mode="json"))
        # Each stream has its own event; the other tenant's, published first, would be there.
        await eventually(lambda: _has(owner_lines, "c-mine"), timeout=10)
        await eventually(lambda: _has(stranger_lines, "c-theirs"), timeout=10)

    [seen] = migration_data(owner_lines)
    assert '"state": "transferring"' in seen
    assert '"select_peer"' in seen
    assert not any("c-mine" in line for line in stranger_lines)
    assert not any("c-theirs" in line for line in owner_lines)


async def _has(lines: list[str], container_id: str) -> bool:
    return any(container_id in line for line in migration_data(lines))


async def test_another_tenants_container_is_not_found_and_the_refusal_audited(
    stack, client, node
) -> None:
    agent, owner = node
    created = await client.post(
        "/api/v1/containers",
        json={"device": agent.key, "name": "mine", "image": IMAGE, "command": ["sleep", "600"]},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    stranger = await register(stack)

    refused = await migrate(client, stranger, created.json()["id"], {})
    body = assert_problem(refused, 404, "container_not_found")
    missing = await migrate(client, stranger, SOME_CONTAINER, {"device": agent.key})
    assert assert_problem(missing, 404, "container_not_found")["title"] == body["title"]

    failures = [a for a in await audited(client, stranger) if a[0] == "container.migrate"]
    assert [(outcome, detail["code"]) for _, outcome, detail in failures] == [
        ("failure", "container_not_found"),
        ("failure", "container_not_found"),
    ]
    assert not [a for a in await audited(client, owner) if a[0] == "container.migrate"]

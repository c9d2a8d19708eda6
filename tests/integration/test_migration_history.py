"""Migration history through the public API: the gateway asks the migration-scheduler,
which shows each tenant only its own migrations (operators see all).

The records are stored through the scheduler's service functions (tests/support/
migrations.py): their writer, peer migration, comes with issue #8.
"""

import httpx
import pytest

from edgecloud_contracts.migrations import MigrationReason
from tests.integration.test_gateway_api import assert_problem
from tests.support.migrations import store_migration
from tests.support.users import register

pytestmark = pytest.mark.stack

FIELDS = {"id", "container", "source", "target", "reason", "state", "steps", "freeze_ms"}


async def test_a_tenant_lists_and_reads_its_migrations(stack, client) -> None:
    user = await register(stack)
    older = await store_migration(stack, tenant_id=user.tenant_id, container_id="c-web")
    moving = await store_migration(
        stack,
        tenant_id=user.tenant_id,
        container_id="c-db",
        reason=MigrationReason.PREDICTED_FAILURE,
        completed=False,
    )
    newest = await store_migration(stack, tenant_id=user.tenant_id, container_id="c-web")

    listed = await client.get("/api/v1/migrations", headers=user.headers)
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert [m["id"] for m in page["items"]] == [newest, moving, older]
    assert page["next_cursor"] is None

    answer = await client.get(f"/api/v1/migrations/{older}", headers=user.headers)
    assert answer.status_code == 200, answer.text
    migration = answer.json()
    assert migration == page["items"][2]
    assert set(migration) >= FIELDS
    assert not any("tenant" in field for field in migration)
    assert migration["container"] == "c-web"
    assert (migration["source"], migration["target"]) == ("node_a", "node_b")
    assert (migration["reason"], migration["state"]) == ("cpu", "completed")
    assert migration["freeze_ms"] == 120.0
    steps = ["select_peer", "configuration", "dependencies"]
    assert [s["name"] for s in migration["steps"]] == steps
    assert set(migration["steps"][0]) == {"name", "started_at", "duration_ms"}
    assert migration["finished_at"] is not None

    still = page["items"][1]
    assert (still["reason"], still["state"]) == ("predicted_failure", "transferring")
    assert still["freeze_ms"] is None
    assert still["finished_at"] is None


async def test_pages_and_the_container_filter(stack, client) -> None:
    user = await register(stack)
    stored = [
        await store_migration(stack, tenant_id=user.tenant_id, container_id=f"c-{i % 2}")
        for i in range(5)
    ]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        answer = await client.get("/api/v1/migrations", params=params, headers=user.headers)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["items"]) <= 2
        seen += [m["id"] for m in page["items"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == stored[::-1]

    one = await client.get("/api/v1/migrations", params={"container": "c-1"}, headers=user.headers)
    assert [m["id"] for m in one.json()["items"]] == [stored[3], stored[1]]

    bad = await client.get(
        "/api/v1/migrations", params={"cursor": "not a cursor"}, headers=user.headers
    )
    assert_problem(bad, 400, "invalid_cursor")


async def test_another_tenants_migration_is_not_there(stack, client, api) -> None:
    owner = await register(stack)
    other = await register(stack)
    theirs = await store_migration(stack, tenant_id=owner.tenant_id, container_id="c-secret")

    refused = await client.get(f"/api/v1/migrations/{theirs}", headers=other.headers)
    body = assert_problem(refused, 404, "migration_not_found")
    missing = await client.get("/api/v1/migrations/no-such-migration", headers=other.headers)
    assert assert_problem(missing, 404, "migration_not_found")["title"] == body["title"]
    listed = await client.get("/api/v1/migrations", headers=other.headers)
    assert listed.json() == {"items": [], "next_cursor": None}
    filtered = await client.get(
        "/api/v1/migrations", params={"container": "c-secret"}, headers=other.headers
    )
    assert filtered.json()["items"] == []

    # The operator sees every tenant's migrations.
    assert (await api.get(f"/api/v1/migrations/{theirs}")).status_code == 200
    assert theirs in [m["id"] for m in (await api.get("/api/v1/migrations")).json()["items"]]


@pytest.mark.parametrize("bad_id", ["has space", "a" * 65, "semi;colon"])
async def test_an_id_that_cannot_name_a_migration_is_refused(stack, client, bad_id) -> None:
    user = await register(stack)
    answer = await client.get(f"/api/v1/migrations/{bad_id}", headers=user.headers)
    assert_problem(answer, 422, "validation_failed")


async def test_signing_in_is_needed_and_the_scheduler_trusts_only_signed_identities(
    stack, client
) -> None:
    assert_problem(await client.get("/api/v1/migrations"), 401, "unauthenticated")
    async with httpx.AsyncClient(base_url=stack.url("migration-scheduler"), timeout=5) as direct:
        answer = await direct.get("/v1/migrations")
    assert_problem(answer, 401, "identity_missing")

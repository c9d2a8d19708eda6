"""Migrating from the browser: the container page's Migrate form, labelled and usable from
the keyboard, says in place why a move is refused; the migrations page follows the
scheduler's events without a reload."""

from datetime import UTC, datetime

import httpx
import pytest
from playwright.async_api import expect

from edgecloud_contracts import uris
from edgecloud_contracts.migrations import MigrationEvent, MigrationReason, MigrationState
from tests.support.migrations import store_migration
from tests.support.users import login
from tests.support.wamp import service_session

from .conftest import ON_ONE_STACK, Person, PersonFactory
from .test_journey import grant_in_browser
from .test_layout import check_page

pytestmark = [pytest.mark.stack, ON_ONE_STACK]

IMAGE = "edgecloud/busybox:latest"


async def tenant_and_container(stack, person: Person, device: str) -> tuple[str, str]:
    token = await login(stack, person.username, person.password)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=40) as client:
        tenant_id = (await client.get("/api/v1/me", headers=headers)).json()["tenant"]["id"]
        created = await client.post(
            "/api/v1/containers",
            json={"device": device, "name": "mover", "image": IMAGE, "command": ["sleep", "600"]},
            headers=headers,
        )
    assert created.status_code == 201, created.text
    return tenant_id, created.json()["id"]


async def test_the_migrate_form_and_the_live_migrations_page(
    stack, device: str, operator: Person, people: PersonFactory
) -> None:
    kim = await people()
    await kim.sign_up()
    await grant_in_browser(operator, device, kim.username)
    tenant_id, container_id = await tenant_and_container(stack, kim, device)

    await check_page(kim, f"/containers/{container_id}")
    await expect(kim.page.get_by_role("heading", name="Migrate")).to_be_visible()
    target = kim.page.get_by_label("Move to")
    await expect(target).to_have_value("")
    await expect(target).to_have_attribute("aria-describedby", "h-migrate-device")
    # The device it runs on is no choice: with no other device granted, only the scheduler is.
    await expect(target.locator("option")).to_have_text(["let the scheduler choose"])

    # From the keyboard: the select, then the button; no other device can take it.
    await target.focus()
    await kim.page.keyboard.press("Tab")
    button = kim.page.get_by_role("button", name="Migrate", exact=True)
    await expect(button).to_be_focused()
    await kim.page.keyboard.press("Enter")
    form = kim.page.locator("#migrate-form")
    await expect(form.get_by_role("alert")).to_contain_text("Not done.")
    await expect(form.get_by_label("Move to")).to_be_visible()
    await kim.shot("container-migrate")

    # The migrations page shows a migration as soon as its event arrives.
    await kim.go("/migrations")
    await kim.live()
    stored = await store_migration(stack, tenant_id=tenant_id, container_id=container_id)
    event = MigrationEvent(
        id=stored,
        tenant=tenant_id,
        container=container_id,
        source="node_a",
        target="node_b",
        reason=MigrationReason.CPU,
        state=MigrationState.COMPLETED,
        steps=[],
        freeze_ms=120.0,
        created_at=datetime.now(UTC),
    )
    async with service_session(stack, service="migration-scheduler") as scheduler:
        await scheduler.wait_joined(10)
        await scheduler.publish(uris.EVENT_MIGRATION, event.model_dump(mode="json"))
    row = kim.page.locator(f'tr[data-migration="{stored}"]')
    await expect(row).to_contain_text("completed")
    await expect(row).to_contain_text("120.0 ms")
    await kim.shot("migrations-live")
    await check_page(kim, f"/migrations?container={container_id}")
    await expect(kim.page.locator(f'tr[data-migration="{stored}"]')).to_be_visible()
    assert kim.errors == []

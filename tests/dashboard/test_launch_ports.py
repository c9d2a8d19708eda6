"""The launch form's published ports, "no network" and disk limit: each refusal is shown next
to its field (the form's own reading, the API's validation, the node's range, a port
another tenant holds), and a launch that fits goes through. The device speaks the WAMP
protocol itself and is offline: the launch is queued (no Docker needed)."""

import re

import httpx
import pytest
from playwright.async_api import expect

from tests.security.test_published_ports import RANGE, offline
from tests.support.users import login, register

from .conftest import ON_ONE_STACK, PersonFactory
from .test_forms import containers_of

pytestmark = [pytest.mark.stack, ON_ONE_STACK]


async def test_published_ports_no_network_and_disk_in_the_launch_form(
    stack, api, enrol, people: PersonFactory
) -> None:
    ann = await people()
    await ann.sign_up()
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        token = await login(stack, ann.username, ann.password)
        me = (await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})).json()
        bob = await register(stack)
        key = await offline(stack, api, await enrol(), RANGE)
        for tenant in (me["tenant"]["id"], bob.tenant_id):
            granted = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": tenant})
            assert granted.status_code == 201, granted.text
        held = await client.post(
            "/api/v1/containers",
            json={"device": key, "name": "web", "image": "edgecloud/busybox:latest",
                  "ports": [{"host": 30080, "container": 80}], "limits": {"cpus": 0.5}},
            headers=bob.headers,
        )  # fmt: skip
        assert held.status_code == 202, held.text

    page = ann.page
    await ann.go("/launch")
    await page.get_by_label("Device").select_option(key)
    await page.get_by_label("Name").fill("web")
    await page.get_by_label("Image").fill("edgecloud/busybox:latest")
    ports = page.get_by_label("Published ports (optional)")
    launch = page.get_by_role("button", name="Launch")

    async def refused(field: str, words: str) -> None:
        await launch.click()
        await expect(page.locator(f"#e-{field}")).to_contain_text(words)
        await expect(page.get_by_label("Name")).to_have_value("web")  # the form is kept

    await ports.fill("30081:80 oops")
    await refused("ports", "'oops' is not HOST:CONTAINER")
    await ports.fill("30081:80")
    await page.get_by_label("No network at all").check()
    await refused("ports", "without a network")
    await page.get_by_label("No network at all").uncheck()
    await page.get_by_label("Disk (MiB)").fill("8")
    await refused("disk", "greater than or equal to 16777216")
    await page.get_by_label("Disk (MiB)").fill("64")
    await ports.fill("8080:80")
    await refused("ports", "outside the range")
    await ports.fill("30080:80")
    await refused("ports", "is published on")  # bob holds it
    assert await containers_of(stack, ann) == []

    await ports.fill("30081:80 30053:53/udp")
    await launch.click()
    await expect(page).to_have_url(re.compile(r"/containers/[0-9a-f-]+$"))
    [made] = await containers_of(stack, ann)
    assert (made["device"], made["limits"]["disk"]) == (key, 64 << 20)
    await ann.go(f"/devices/{key}")
    await expect(page.locator("[data-port-range]")).to_have_text("30000\N{EN DASH}30099")

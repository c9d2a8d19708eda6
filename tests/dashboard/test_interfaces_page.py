"""The device page's hardware interfaces: an operator declares one in the browser, for a
tenant; the tenant sees it and which of its containers holds it."""

import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import expect

from tests.support.users import login

from .conftest import ON_ONE_STACK, Person, PersonFactory
from .test_journey import grant_in_browser
from .test_layout import check_page

pytestmark = [pytest.mark.stack, ON_ONE_STACK]

IMAGE = "edgecloud/busybox:latest"


@pytest.fixture
def node() -> Iterator[str]:
    """A character device of the test's own (a /dev/null clone): the node's serial port."""
    path = f"/dev/edgecloud-test-{secrets.token_hex(4)}"
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    yield path
    Path(path).unlink(missing_ok=True)


async def test_an_operator_declares_an_interface_and_the_tenant_sees_who_holds_it(
    stack, device: str, operator: Person, people: PersonFactory, node: str
) -> None:
    lee = await people()
    await lee.sign_up()
    await grant_in_browser(operator, device, lee.username)
    await check_page(operator, f"/devices/{device}")
    panel = operator.page.locator("#interfaces")
    await panel.get_by_text("Declare an interface").click()
    await panel.get_by_label("Name").fill("Serial 0")  # not a valid name
    await panel.get_by_label("Device file on the node").fill(node)
    await panel.get_by_label("Tenants that may use it").select_option(lee.username)
    await panel.get_by_role("button", name="Declare").click()
    await expect(panel.get_by_role("alert")).to_contain_text("Not done")
    # The refused form keeps what was filled in, the tenants chosen too.
    await expect(panel.get_by_label("Device file on the node")).to_have_value(node)
    await expect(panel.get_by_label("Tenants that may use it")).to_have_values([lee.username])
    await panel.get_by_label("Name").fill("serial0")
    await panel.get_by_label("read-only").check()
    await panel.get_by_role("button", name="Declare").click()
    await expect(panel.get_by_role("status")).to_contain_text("Declared serial0")
    row = panel.locator('[data-interface="serial0"]')
    await expect(row).to_contain_text(node)
    await expect(row).to_contain_text("read-only")
    await expect(row).to_contain_text(lee.username)

    # From the launch form: an interface not declared for lee is refused at its field.
    await lee.go(f"/launch?device={device}")
    await lee.page.get_by_label("Name").fill("probe")
    await lee.page.get_by_label("Image").fill(IMAGE)
    await lee.page.get_by_label("Hardware interfaces (optional)").fill("serial9")
    await lee.page.get_by_role("button", name="Launch").click()
    await expect(lee.page.locator("#e-interfaces")).to_be_visible()

    token = await login(stack, lee.username, lee.password)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        made = await client.post(
            "/api/v1/containers",
            json={"device": device, "name": "uart", "image": IMAGE,
                  "command": ["sleep", "600"], "interfaces": ["serial0"]},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
    assert made.status_code == 201, made.text
    await check_page(lee, f"/devices/{device}")
    mine = lee.page.locator('#interfaces [data-interface="serial0"] [data-holders]')
    await expect(mine.get_by_role("link")).to_have_text(f"{lee.username}-uart")
    await expect(lee.page.get_by_role("button", name="Withdraw")).to_have_count(0)

    await operator.go(f"/devices/{device}")
    await (
        operator.page.locator('[data-interface="serial0"]')
        .get_by_role("button", name="Withdraw")
        .click()
    )
    await expect(operator.page.locator("#interfaces").get_by_role("status")).to_contain_text(
        "Withdrew serial0"
    )

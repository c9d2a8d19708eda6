"""The account page: a password change needs the current password, says what is wrong next
to the field, and when done ends the session (sign in again with the new password)."""

import httpx
import pytest
from playwright.async_api import expect

from tests.support.users import Account, invite, login, register

from .conftest import ON_ONE_STACK, PersonFactory

pytestmark = [pytest.mark.stack, ON_ONE_STACK]


async def test_changing_the_password_signs_out_and_the_new_one_signs_in(
    people: PersonFactory,
) -> None:
    erin = await people()
    await erin.sign_up()
    await erin.page.get_by_role("link", name=erin.username).click()
    await expect(erin.page.get_by_role("heading", name="Your account")).to_be_visible()
    new = f"{erin.password}-renewed"

    async def submit(current: str, password: str, again: str) -> None:
        await erin.page.get_by_label("Current password").fill(current)
        await erin.page.get_by_label("New password", exact=True).fill(password)
        await erin.page.get_by_label("New password again").fill(again)
        await erin.page.get_by_role("button", name="Change password").click()

    await submit("not my password", new, new)
    await expect(erin.page.locator("#e-current_password")).to_contain_text("is not right")
    await submit(erin.password, new, new + "x")
    await expect(erin.page.locator("#e-new_password_again")).to_contain_text("is not the same")
    await submit(erin.password, "short", "short")
    await expect(erin.page.locator("#e-new_password")).to_contain_text("too weak")

    await submit(erin.password, new, new)
    await expect(erin.page.get_by_role("heading", name="Sign in")).to_be_visible()
    await erin.go("/account")  # the session ended with the change
    await expect(erin.page.get_by_role("heading", name="Sign in")).to_be_visible()
    erin.password = new
    await erin.sign_in()
    assert erin.errors == []


async def test_an_admin_disables_enables_and_resets_a_member(stack, people: PersonFactory) -> None:
    fay = await people()
    await fay.sign_up()
    admin = Account(
        username=fay.username,
        password=fay.password,
        tenant_id="",
        tenant_name="",
        user_id="",
        token=await login(stack, fay.username, fay.password),
    )
    gus = await register(stack, invitation=await invite(stack, admin))
    await fay.go("/admin")
    members = fay.page.locator("#admin-panels")

    await members.get_by_role("button", name=f"Disable {gus.username}").click()
    await expect(members.get_by_role("status")).to_contain_text(f"{gus.username} is disabled")
    await expect(members.get_by_role("button", name=f"Enable {gus.username}")).to_be_visible()
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        assert (await client.get("/api/v1/me", headers=gus.headers)).status_code == 401
        refused = await client.post(
            "/api/v1/auth/login", json={"username": gus.username, "password": gus.password}
        )
        assert refused.status_code == 401

    await members.get_by_role("button", name=f"Enable {gus.username}").click()
    await expect(members.get_by_role("status")).to_contain_text(f"{gus.username} is enabled")
    assert await login(stack, gus.username, gus.password)

    await members.get_by_role("button", name=f"Reset the password of {gus.username}").click()
    token = (await members.locator("[data-new-reset]").inner_text()).strip()
    assert token.startswith("ecr_")
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        redeemed = await client.post(
            "/api/v1/auth/reset", json={"token": token, "password": "gus's fresh passphrase"}
        )
        assert redeemed.status_code == 204, redeemed.text
    assert await login(stack, gus.username, "gus's fresh passphrase")
    # No buttons against oneself.
    await expect(members.get_by_role("button", name=f"Disable {fay.username}")).to_have_count(0)
    assert fay.errors == []

"""The account page: a password change needs the current password, says what is wrong next
to the field, and when done ends the session (sign in again with the new password)."""

import pytest
from playwright.async_api import expect

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

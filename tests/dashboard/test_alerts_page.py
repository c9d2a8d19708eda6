"""Alerts in the browser: a rule made from the form fires on a real device's heartbeats, the
user is told on whatever page they are, and a rule that makes no sense is refused in words."""

import pytest
from playwright.async_api import expect

from .conftest import ON_ONE_STACK, Person, PersonFactory
from .test_journey import grant_in_browser

pytestmark = [pytest.mark.stack, ON_ONE_STACK]


async def test_a_rule_fires_and_the_user_is_told(
    device: str, operator: Person, people: PersonFactory
) -> None:
    jane = await people()
    await jane.sign_up()
    await grant_in_browser(operator, device, jane.username)

    await jane.go("/alerts")
    await jane.live()
    form = jane.page.locator("[data-rule-form]")
    await form.get_by_label("Watch").select_option(f"device:{device}")
    await form.get_by_label("Condition").select_option("cpu_percent")
    # A percentage without a boundary is refused, next to the form, and nothing is stored.
    await form.get_by_label("For at least (seconds)").fill("0")
    await form.get_by_role("button", name="Add rule").click()
    await expect(jane.page.locator("#alert-panels").get_by_role("alert")).to_contain_text(
        "needs a threshold"
    )
    await expect(jane.page.locator("tr[data-rule]")).to_have_count(0)

    form = jane.page.locator("[data-rule-form]")
    await form.get_by_label("Compare").select_option(">=")
    await form.get_by_label("Threshold (%)").fill("0")
    await form.get_by_label("Name (optional)").fill("busy")
    await form.get_by_role("button", name="Add rule").click()
    await expect(jane.page.locator("tr[data-rule]")).to_have_count(1)

    # The alert reaches her as a notice and in the list, without a reload.
    await expect(jane.page.locator("#toasts")).to_contain_text("Alert:", timeout=30_000)
    await expect(jane.page.locator("tr[data-alert]").first).to_contain_text("firing")
    # The live refresh that brought the alert in swapped the panels, not a page in a page.
    await expect(jane.page.locator("#toasts")).to_have_count(1)
    await expect(jane.page.locator("#alert-panels #alert-panels")).to_have_count(0)
    await jane.shot("alerts-firing")

    # State conditions take no boundary: the form hides it.
    await form.get_by_label("Condition").select_option("offline")
    await expect(jane.page.get_by_label("Threshold (%)")).to_be_hidden()

    await jane.page.get_by_role("button", name="Delete rule busy").click()
    await expect(jane.page.locator("tr[data-rule]")).to_have_count(0)
    await expect(jane.page.locator("tr[data-alert]").first).to_contain_text("cleared")
    assert jane.errors == []

"""Every page at phone and desktop width: nothing wider than the screen, every control
labelled, reachable from the keyboard, and no script errors; one photograph per page."""

import pytest
from playwright.async_api import expect

from .conftest import ON_ONE_STACK, PHONE, Person, PersonFactory

pytestmark = [pytest.mark.stack, ON_ONE_STACK]

PAGES = ["/", "/devices", "/containers", "/launch", "/data", "/alerts", "/migrations", "/admin"]

UNLABELLED = """() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter(el => el.type !== 'hidden' && el.offsetParent !== null)
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map(el => el.outerHTML.slice(0, 120))"""

OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


async def check_page(person: Person, path: str) -> None:
    await person.go(path)
    await expect(person.page.locator("h1")).to_be_visible()
    assert await person.page.evaluate(UNLABELLED) == [], path
    assert await person.page.evaluate(OVERFLOW) <= 1, path


async def test_pages_fit_a_phone_and_every_control_is_labelled(
    people: PersonFactory, device: str, operator: Person
) -> None:
    grace = await people(viewport=PHONE)
    await grace.sign_up()
    for path in PAGES:
        await check_page(grace, path)
    await grace.go("/containers")
    await grace.shot("phone-containers")
    for path in [*PAGES, "/operator", f"/devices/{device}"]:
        await check_page(operator, path)
    assert [*grace.errors, *operator.errors] == []


async def test_the_keyboard_reaches_content_and_navigation(people: PersonFactory) -> None:
    henry = await people()
    await henry.sign_up()
    await henry.page.keyboard.press("Tab")
    skip = henry.page.get_by_role("link", name="Skip to content")
    await expect(skip).to_be_focused()
    await henry.page.keyboard.press("Enter")
    await expect(henry.page.locator("#main")).to_be_focused()
    await henry.go("/")
    # The skip link, the home link, Overview, then Devices.
    for _ in range(4):
        await henry.page.keyboard.press("Tab")
    nav = henry.page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Devices")).to_be_focused()
    await henry.page.keyboard.press("Enter")
    await expect(henry.page.get_by_role("heading", name="Devices")).to_be_visible()


async def test_a_member_of_two_tenants_switches_between_them(
    stack, people: PersonFactory, api
) -> None:
    owner = await people()
    await owner.sign_up()
    # The owner invites; a second person joins with the link, then makes their own tenant.
    await owner.go("/admin")
    await owner.page.get_by_role("button", name="Invite").click()
    link = (await owner.page.locator("[data-invitation-link]").text_content() or "").strip()
    assert "/signup?invitation=" in link
    ivy = await people()
    await ivy.page.goto(link)
    await ivy.page.get_by_label("Username").fill(ivy.username)
    await ivy.page.get_by_label("Password", exact=True).fill(ivy.password)
    await ivy.page.get_by_label("Password again").fill(ivy.password)
    await ivy.page.get_by_role("button", name="Create account").click()
    await expect(ivy.page.locator(".tenant")).to_contain_text(owner.username)
    created = await api.post("/api/v1/tenants", json={"name": f"{ivy.username}-lab"})
    assert created.status_code == 201, created.text
    invited = await api.post(
        "/api/v1/invitations", json={"tenant": f"{ivy.username}-lab", "role": "member"}
    )
    assert invited.status_code == 201, invited.text
    accepted = await ivy.page.request.post(
        ivy.base + "/api/v1/invitations/accept",
        data={"token": invited.json()["token"]},
        headers={"X-CSRF-Token": await ivy.csrf()},
    )
    assert accepted.status == 200, await accepted.text()
    await ivy.go("/")
    lab = f"{ivy.username}-lab (member)"
    # The switch reloads the page in the other tenant.
    async with ivy.page.expect_navigation():
        await ivy.page.get_by_label("Tenant").select_option(label=lab)
    await expect(ivy.page.get_by_label("Tenant").locator("option:checked")).to_have_text(lab)
    await ivy.go("/admin")
    await expect(ivy.page.get_by_role("heading", name=f"Tenant {ivy.username}-lab")).to_be_visible()

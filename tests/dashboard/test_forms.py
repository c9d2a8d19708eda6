"""Bad input in the browser: the server refuses it (the browser's checks are off: every form
is ``novalidate``), says why next to the field, and leaves nothing half-done."""

import re
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import expect

from tests.support.users import login

from .conftest import ON_ONE_STACK, Person, PersonFactory

pytestmark = [pytest.mark.stack, ON_ONE_STACK]


async def containers_of(stack, person: Person) -> list[dict]:
    token = await login(stack, person.username, person.password)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        listed = await client.get(
            "/api/v1/containers", headers={"Authorization": f"Bearer {token}"}
        )
    return listed.json()["items"]


async def test_sign_in_and_sign_up_refusals_say_why(people: PersonFactory) -> None:
    carol = await people()
    await carol.go("/login")
    await carol.page.get_by_label("Username").fill("nobody-here")
    await carol.page.get_by_label("Password").fill("wrong password")
    await carol.page.get_by_role("button", name="Sign in").click()
    await expect(carol.page.get_by_role("alert")).to_contain_text("Not done.")
    await expect(carol.page.get_by_label("Username")).to_have_value("nobody-here")
    await expect(carol.page.get_by_label("Password")).to_have_value("")

    await carol.go("/signup")
    await carol.page.get_by_label("Username").fill(carol.username)
    await carol.page.get_by_label("Password", exact=True).fill(carol.password)
    await carol.page.get_by_label("Password again").fill(carol.password + "x")
    await carol.page.get_by_role("button", name="Create account").click()
    await expect(carol.page.locator("#e-password_again")).to_contain_text("is not the same")

    await carol.page.get_by_label("Password", exact=True).fill("short")
    await carol.page.get_by_label("Password again").fill("short")
    await carol.page.get_by_role("button", name="Create account").click()
    await expect(carol.page.locator("#e-password")).to_contain_text("too weak")
    await expect(carol.page.get_by_label("Password", exact=True)).to_have_attribute(
        "aria-invalid", "true"
    )
    # Nothing was created: the same username still signs up.
    await carol.sign_up()

    # After signing in, ``next`` leads only to a page of this site.
    for elsewhere in ("https://example.invalid/", "//example.invalid/", "/\\example.invalid/"):
        await carol.page.get_by_role("button", name="Sign out").click()
        await carol.sign_in(at=f"/login?next={quote(elsewhere, safe='')}")
        assert carol.page.url == carol.base + "/", elsewhere
    await carol.page.get_by_role("button", name="Sign out").click()
    await carol.sign_in(at=f"/login?next={quote('/containers', safe='')}", lands="Containers")
    assert carol.page.url == carol.base + "/containers"


async def test_a_refused_launch_keeps_the_form_and_creates_nothing(
    stack, device: str, operator: Person, people: PersonFactory
) -> None:
    dave = await people()
    await dave.sign_up()
    await dave.go("/launch")
    # No device chosen, a name and image the API refuses, a broken command and env.
    await dave.page.get_by_label("Name").fill("Bad Name!")
    await dave.page.get_by_label("Image").fill("not an image")
    await dave.page.get_by_label("Command (optional)").fill("echo 'unclosed")
    await dave.page.get_by_label("Environment (optional)").fill("JUST_A_NAME")
    await dave.page.get_by_label("Memory (MiB)").fill("lots")
    await dave.page.get_by_role("button", name="Launch").click()
    await expect(dave.page.locator("#e-device")).to_contain_text("choose a device")
    await expect(dave.page.locator("#e-command")).to_contain_text("unclosed quote")
    await expect(dave.page.locator("#e-env")).to_contain_text("line 1 is not NAME=value")
    await expect(dave.page.locator("#e-memory")).to_contain_text("must be a number")
    await expect(dave.page.get_by_label("Name")).to_have_value("Bad Name!")

    # A device not granted to this tenant is refused by the platform, in words.
    await dave.page.evaluate(
        """key => { const s = document.querySelector('#f-device');
                    s.add(new Option(key, key)); s.value = key; }""",
        device,
    )
    await dave.page.get_by_label("Command (optional)").fill("sleep 1")
    await dave.page.get_by_label("Environment (optional)").fill("")
    await dave.page.get_by_label("Memory (MiB)").fill("64")
    await dave.page.get_by_label("Name").fill("fine")
    await dave.page.get_by_label("Image").fill("edgecloud/busybox:latest")
    await dave.page.get_by_role("button", name="Launch").click()
    await expect(dave.page.get_by_role("alert").first).to_contain_text("Not done.")
    await expect(dave.page.locator("#e-device")).to_be_visible()
    assert await containers_of(stack, dave) == []
    await dave.shot("launch-refused")


async def test_actions_without_the_pages_csrf_token_are_refused(
    stack, people: PersonFactory
) -> None:
    erin = await people()
    await erin.sign_up()
    # A form posted from elsewhere carries the cookie but not the page's token.
    answer = await erin.page.request.post(erin.base + "/admin/tokens", form={"name": "stolen"})
    assert answer.status == 403
    answer = await erin.page.request.post(erin.base + "/logout", form={})
    assert answer.status == 403
    # Nothing happened: no token was made, and the session was not signed out.
    token = await login(stack, erin.username, erin.password)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        tokens = await client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {token}"})
    assert [t["name"] for t in tokens.json()["items"]] == []
    await erin.go("/admin")
    await expect(erin.page.get_by_role("heading", name=re.compile("^Tenant "))).to_be_visible()
    # With the page's token the same form works.
    answer = await erin.page.request.post(
        erin.base + "/admin/tokens", form={"name": "made", "csrf_token": await erin.csrf()}
    )
    assert answer.status == 200


async def test_operator_forms_refuse_bad_values(operator: Person, people: PersonFactory) -> None:
    await operator.go("/operator")
    await operator.page.get_by_label("Valid for (hours)").fill("100000")
    await operator.page.get_by_role("button", name="Create enrolment token").click()
    await expect(operator.page.locator("#e-ttl_hours")).to_contain_text("between")
    await expect(operator.page.locator("[data-enrol-command]")).to_have_count(0)
    grants = operator.page.locator("#grants")
    await grants.get_by_role("button", name="Grant").click()
    await expect(grants.get_by_role("alert")).to_contain_text("Choose a device")

    # Not an operator: the page says so, and the actions are refused by the API.
    frank = await people()
    await frank.sign_up()
    await frank.go("/operator")
    await expect(frank.page.get_by_role("heading", name="Operators only")).to_be_visible()
    await expect(frank.page.get_by_role("link", name="Operator")).to_have_count(0)
    refused = await frank.page.request.post(
        frank.base + "/operator/enrolments",
        form={"ttl_hours": "1", "csrf_token": await frank.csrf()},
    )
    assert refused.status == 422
    assert "only operators" in await refused.text()

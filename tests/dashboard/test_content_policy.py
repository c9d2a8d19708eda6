"""The pages work under their Content-Security-Policy (every browser test fails on a refusal
Chromium reports, conftest.py; these visit what the others do not), cannot be framed, and
another site cannot sign a visitor in."""

from playwright.async_api import expect

from tests.support.stack import Stack
from tests.support.users import register

from .conftest import ON_ONE_STACK, Person, PersonFactory

pytestmark = ON_ONE_STACK


async def test_the_api_explorer_runs_under_its_policy(operator: Person) -> None:
    await operator.go("/docs")
    await expect(operator.page.get_by_role("heading", name="edgecloud gateway")).to_be_visible()
    await expect(operator.page.get_by_text("/api/v1/auth/login").first).to_be_visible()
    assert operator.errors == []


async def test_the_pages_without_a_node_run_under_their_policy(operator: Person) -> None:
    for path, heading in (
        ("/", "Overview"),
        ("/devices", "Devices"),
        ("/containers", "Containers"),
        ("/launch", "Launch"),
        ("/data", "Collected data"),
        ("/alerts", "Alerts"),
        ("/migrations", "Migrations"),
        ("/operator", "Operator"),
    ):
        await operator.go(path)
        await expect(operator.page.get_by_role("heading", name=heading).first).to_be_visible()
    assert operator.errors == []


async def test_a_page_of_another_site_cannot_frame_the_dashboard(operator: Person) -> None:
    elsewhere = await operator.context.new_page()
    # The parent's load waits for its frame, refused or not.
    await elsewhere.set_content(f'<iframe src="{operator.base}/login"></iframe>', wait_until="load")
    [_, frame] = elsewhere.frames
    # A refused frame shows Chromium's error page, not the sign-in form.
    assert await frame.locator("form[action='/login']").count() == 0
    await elsewhere.close()


async def test_another_site_cannot_sign_a_visitor_in(stack: Stack, people: PersonFactory) -> None:
    """Login CSRF: a page elsewhere posts the attacker's username and password to our
    sign-in form from the visitor's browser (which has our sign-in page open, so holds our
    pre-session cookie). Nobody is signed in; the form is shown again and works."""
    mallory = await register(stack)
    visitor = await people()
    await visitor.go("/login")
    elsewhere = await visitor.context.new_page()
    await elsewhere.set_content(
        f'<form method="post" action="{visitor.base}/login">'
        f'<input name="username" value="{mallory.username}">'
        f'<input name="password" value="{mallory.password}"></form>'
    )
    async with elsewhere.expect_navigation():
        await elsewhere.evaluate("document.forms[0].submit()")
    await expect(elsewhere.get_by_role("alert")).to_contain_text("not sent from this site")
    cookies = {cookie["name"] for cookie in await visitor.context.cookies()}
    assert "edgecloud_session" not in cookies
    await elsewhere.get_by_label("Password").fill(mallory.password)
    await elsewhere.get_by_role("button", name="Sign in").click()
    await expect(elsewhere.get_by_role("heading", name="Overview")).to_be_visible()
    assert visitor.errors == []

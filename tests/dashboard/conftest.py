"""Browser tests of the dashboard: Debian's Chromium, driven by Playwright, against the real
stack (router, services, database, a real agent and Docker).

Screenshots land in ``var/screenshots`` (or ``$EDGECLOUD_SCREENSHOTS``); the README shows
copies of a few of them from ``docs/screenshots``.
"""

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    async_playwright,
    expect,
)

from tests.conftest import eventually
from tests.integration.conftest import online
from tests.support.agents import AgentFactory
from tests.support.stack import Stack
from tests.support.users import unique

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("EDGECLOUD_SCREENSHOTS", ROOT / "var" / "screenshots"))
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# Containers start and applications deploy on a real node: more than Playwright's 5 s default.
expect.set_options(timeout=20_000)

# The dashboard is one client of the API: one database backend tests it as well as two.
ON_ONE_STACK = pytest.mark.parametrize("stack", ["sqlite"], indirect=True)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@dataclass
class Person:
    """Someone at the dashboard, in a browser context of their own (own cookies)."""

    context: BrowserContext
    page: Page
    base: str
    username: str
    password: str
    errors: list[str]

    async def go(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def shot(self, name: str) -> None:
        # Playwright makes the folder.
        await self.page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)

    async def sign_in(
        self, tenant: str | None = None, *, at: str = "/login", lands: str = "Overview"
    ) -> None:
        """Sign in with the form on ``at`` (a sign-in page, perhaps with its ``next``) and
        land on the page headed ``lands``."""
        await self.go(at)
        await self.page.get_by_label("Username").fill(self.username)
        await self.page.get_by_label("Password").fill(self.password)
        if tenant:
            await self.page.get_by_label("Tenant (optional)").fill(tenant)
        await self.page.get_by_role("button", name="Sign in").click()
        await expect(self.page.get_by_role("heading", name=lands)).to_be_visible()

    async def sign_up(self) -> None:
        await self.go("/signup")
        await self.page.get_by_label("Username").fill(self.username)
        await self.page.get_by_label("Password", exact=True).fill(self.password)
        await self.page.get_by_label("Password again").fill(self.password)
        await self.page.get_by_role("button", name="Create account").click()
        await expect(self.page.get_by_role("heading", name="Overview")).to_be_visible()

    async def csrf(self) -> str:
        """The page's CSRF token, for calls a test makes on the person's behalf."""
        return await self.page.locator('meta[name="csrf-token"]').get_attribute("content") or ""

    async def live(self) -> None:
        """Wait until the page's live event stream is connected."""
        await expect(self.page.locator("#live-state")).to_have_text("live", timeout=10_000)


PersonFactory = Callable[..., Awaitable[Person]]


def refused_by_policy(person: Person, message: ConsoleMessage) -> None:
    """Chromium reports what the Content-Security-Policy refused on the console: for these
    tests that is an error of the page like any other."""
    if "Content Security Policy" in message.text:
        person.errors.append(message.text)


@pytest.fixture
async def people(stack: Stack, browser: Browser) -> AsyncIterator[PersonFactory]:
    """Open a browser for a new person (``username``/``password`` for an existing account)."""
    contexts: list[BrowserContext] = []
    signed_up: list[Person] = []
    base = stack.url("gateway")

    async def open_browser(
        username: str | None = None,
        password: str | None = None,
        viewport: dict[str, int] = DESKTOP,
    ) -> Person:
        context = await browser.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        page = await context.new_page()
        page.set_default_timeout(15_000)
        person = Person(
            context=context,
            page=page,
            base=base,
            username=username or unique("user"),
            password=password or f"pw-{unique('secret')}-{unique('x')}",
            errors=[],
        )
        page.on("pageerror", lambda error: person.errors.append(str(error)))
        page.on("console", lambda message: refused_by_policy(person, message))
        page.on("dialog", lambda dialog: dialog.accept())
        if username is None:
            signed_up.append(person)
        return person

    yield open_browser
    for context in contexts:
        await context.close()
    # What the test left running goes through the API, as a tenant would remove it.
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for person in signed_up:
            login = await client.post(
                "/api/v1/auth/login",
                json={"username": person.username, "password": person.password},
            )
            if login.status_code != 200:
                continue
            headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
            listed = await client.get("/api/v1/containers", headers=headers)
            for container in listed.json()["items"]:
                await client.delete(f"/api/v1/containers/{container['id']}", headers=headers)


@pytest.fixture
async def operator(stack: Stack, people: PersonFactory) -> Person:
    person = await people(username="admin", password=stack.admin_password)
    await person.sign_in()
    return person


@pytest.fixture
async def device(stack, api, agents: AgentFactory, enrol) -> str:
    """A real agent, online, granted to nobody yet."""
    agent = agents.start(token=await enrol())
    await eventually(lambda: online(api, agent.key), timeout=20)
    return agent.key


def status_text(state: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(state)}\b")

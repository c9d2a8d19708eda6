"""The container page's terminal: a real shell in a real container, typed into through
xterm.js, resized without flooding the link, ended with its exit code; and what the page says
when the device is on its slow mesh link or the gateway refuses the shell."""

import json
import re
from dataclasses import dataclass

import pytest
from playwright.async_api import Locator, Page, WebSocket, WebSocketRoute, expect

from tests.conftest import eventually
from tests.support.stack import Stack

from .conftest import ON_ONE_STACK, PHONE, Person, PersonFactory
from .test_journey import grant_in_browser
from .test_layout import OVERFLOW, UNLABELLED
from .test_migrate_page import tenant_and_container

pytestmark = [pytest.mark.stack, ON_ONE_STACK]

SIZE = re.compile(r"(\d+)\u00d7(\d+)")  # columns by rows, with a multiplication sign


@dataclass
class TerminalPanel:
    person: Person
    page: Page
    panel: Locator
    status: Locator
    slow_notice: Locator


@pytest.fixture
async def kim(stack: Stack, device: str, operator: Person, people: PersonFactory) -> TerminalPanel:
    """Someone new on the page of their running container, at its Terminal panel."""
    person = await people()
    await person.sign_up()
    await grant_in_browser(operator, device, person.username)
    _, container_id = await tenant_and_container(stack, person, device)
    await person.go(f"/containers/{container_id}")
    await expect(person.page.locator("[data-container-state]")).to_have_text("running")
    panel = person.page.locator("[data-terminal]")
    return TerminalPanel(
        person=person,
        page=person.page,
        panel=panel,
        status=panel.locator("[data-terminal-status]"),
        slow_notice=panel.locator("[data-terminal-slow]"),
    )


def screen_row(page: Page, text: str) -> Locator:
    """The terminal's rows reading exactly ``text`` (xterm.js draws one element per row)."""
    return page.locator(".xterm-rows > div").filter(
        has_text=re.compile(rf"^\s*{re.escape(text)}\s*$")
    )


async def enter(page: Page, line: str) -> None:
    await page.keyboard.type(line)
    await page.keyboard.press("Enter")


def resizes_sent(page: Page) -> list[dict[str, int]]:
    """The resize messages the page sends on its WebSockets from now on."""
    sent: list[dict[str, int]] = []

    def on_frame(payload: str | bytes) -> None:
        if isinstance(payload, str) and '"resize"' in payload:
            sent.append(json.loads(payload))

    def on_socket(socket: WebSocket) -> None:
        socket.on("framesent", on_frame)

    page.on("websocket", on_socket)
    return sent


async def test_a_shell_in_the_container_page(kim: TerminalPanel) -> None:
    page, panel, status = kim.page, kim.panel, kim.status
    resizes = resizes_sent(page)
    # The test stack closes a shell after 8 s without typing: no dawdling from here on.
    await panel.get_by_role("button", name="Open shell").click()
    await expect(status).to_contain_text("Connected over WAN")
    await expect(kim.slow_notice).to_be_hidden()
    await expect(panel.get_by_role("button", name="Open shell")).to_be_hidden()
    await enter(page, "echo $((6*7))")
    await expect(screen_row(page, "42")).to_have_count(1)
    assert await page.evaluate(UNLABELLED) == []
    assert await page.evaluate(OVERFLOW) <= 1

    # A window dragged down to a phone's width: many sizes in a row, one resize message once
    # it settles.
    before = SIZE.search(await status.inner_text())
    assert before is not None
    for width in [*range(1240, PHONE["width"], -50), PHONE["width"]]:
        await page.set_viewport_size({"width": width, "height": PHONE["height"]})
    await expect(status).not_to_contain_text(before.group(0))
    await page.wait_for_timeout(600)  # a second message would have left by now
    assert 1 <= len(resizes) <= 2, resizes
    after = SIZE.search(await status.inner_text())
    assert after is not None
    cols, rows = after.groups()
    assert resizes[-1] == {"type": "resize", "cols": int(cols), "rows": int(rows)}
    await enter(page, "stty size")
    await expect(screen_row(page, f"{rows} {cols}")).to_have_count(1)
    assert await page.evaluate(OVERFLOW) <= 1

    await enter(page, "exit 3")
    await expect(status).to_have_text("The shell exited with code 3.")
    await expect(panel.get_by_role("button", name="Close")).to_be_hidden()

    # Another shell, ended with Close.
    await panel.get_by_role("button", name="Open shell").click()
    await expect(status).to_contain_text("Connected over WAN")
    await panel.get_by_role("button", name="Close").click()
    await expect(status).to_have_text("The shell was closed.")
    await expect(panel.get_by_role("button", name="Open shell")).to_be_visible()
    await kim.person.shot("container-terminal")
    assert kim.person.errors == []


async def test_the_slow_link_notice_and_a_refused_shell(kim: TerminalPanel) -> None:
    page, panel, status, notice = kim.page, kim.panel, kim.status, kim.slow_notice
    typed = bytearray()
    sockets: list[WebSocketRoute] = []
    refusing = False

    # A stand-in for the gateway: a dashboard test cannot put its node on the emulated mesh
    # (tests/testbed/test_fusion.py drives a real shell over it), so the page is told "slow"
    # the way the gateway tells it.
    async def stand_in(socket: WebSocketRoute) -> None:
        if refusing:
            await socket.close()
            return
        sockets.append(socket)
        socket.on_message(lambda m: typed.extend(m) if isinstance(m, bytes) else None)
        socket.send(json.dumps({"type": "ready", "session": "s1", "link": "lowpan", "slow": True}))
        socket.send(b"$ ")

    await page.route_web_socket(re.compile(r"/shell\?"), stand_in)
    await expect(notice).to_be_hidden()
    await panel.get_by_role("button", name="Open shell").click()
    await expect(notice).to_be_visible()
    await expect(notice).to_contain_text("slow mesh link")
    await expect(status).to_contain_text("Connected over 6LoWPAN")
    await enter(page, "ls")

    async def typed_ls() -> bool:
        return b"ls\r" in typed

    await eventually(typed_ls, timeout=10)
    sockets[0].send(b"ls\r\napp.tar\r\n$ ")  # the echo, then the output
    await expect(screen_row(page, "app.tar")).to_have_count(1)
    await kim.person.shot("container-terminal-slow")
    sockets[0].send(json.dumps({"type": "exit", "reason": "exited", "exit_code": 0}))
    await sockets[0].close(code=1000)
    await expect(status).to_have_text("The shell exited with code 0.")
    await expect(notice).to_be_hidden()

    # A refusal is an HTTP answer to the upgrade, which a browser only sees as a close.
    refusing = True
    await panel.get_by_role("button", name="Open shell").click()
    await expect(status).to_contain_text("Could not open a shell")
    await expect(status).to_contain_text("too many shells open")
    await expect(panel.get_by_role("button", name="Open shell")).to_be_visible()
    assert kim.person.errors == []

"""Signing in and up cannot be done from another site (login CSRF): the dashboard's forms
take a post only with the token of the page that showed them, and the JSON API only JSON.
The browser's side of it is tests/dashboard/test_content_policy.py."""

import re

import httpx

from tests.conftest import ONE_DATABASE
from tests.support.stack import Stack
from tests.support.users import register, unique

pytestmark = ONE_DATABASE

TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


async def form_token(client: httpx.AsyncClient, path: str) -> str:
    shown = await client.get(path)
    assert shown.status_code == 200
    assert "edgecloud_presession" in client.cookies
    found = TOKEN.search(shown.text)
    assert found, "the form carries no token"
    return found.group(1)


def assert_refused(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert "not sent from this site" in answer.text
    assert "edgecloud_session" not in answer.headers.get("set-cookie", "")
    # The form is shown again, with a token that works.
    assert TOKEN.search(answer.text)


async def test_the_sign_in_form_takes_only_its_own_posts(stack: Stack) -> None:
    user = await register(stack)
    fields = {"username": user.username, "password": user.password}
    base = stack.url("gateway")
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as victim,
        httpx.AsyncClient(base_url=base, timeout=10) as attacker,
    ):
        # Another site's form: no token, or the token of a page the attacker loaded
        # (the victim's browser holds a cookie of its own, or none).
        assert_refused(await victim.post("/login", data=fields))
        stolen = await form_token(attacker, "/login")
        assert_refused(await victim.post("/login", data=fields | {"csrf_token": stolen}))
        await form_token(victim, "/login")
        assert_refused(await victim.post("/login", data=fields | {"csrf_token": stolen}))
        assert_refused(await victim.post("/login", data=fields | {"csrf_token": "0" * 64}))
        assert "edgecloud_session" not in victim.cookies

        own = await form_token(victim, "/login")
        signed_in = await victim.post("/login", data=fields | {"csrf_token": own})
        assert signed_in.status_code == 303, signed_in.text
        assert "edgecloud_session" in victim.cookies


async def test_the_sign_up_form_takes_only_its_own_posts(stack: Stack) -> None:
    username, password = unique("user"), f"pw-{unique('secret')}"
    fields = {"username": username, "password": password, "password_again": password}
    base = stack.url("gateway")
    async with httpx.AsyncClient(base_url=base, timeout=10) as browser:
        assert_refused(await browser.post("/signup", data=fields))
        nobody = await browser.post(
            "/api/v1/auth/login", json={"username": username, "password": password}
        )
        assert nobody.status_code == 401, "the refused sign-up made an account"
        token = await form_token(browser, "/signup")
        made = await browser.post("/signup", data=fields | {"csrf_token": token})
        assert made.status_code == 303, made.text


async def test_the_json_sign_in_takes_only_json(stack: Stack, client: httpx.AsyncClient) -> None:
    user = await register(stack)
    body = f'{{"username": "{user.username}", "password": "{user.password}"}}'
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {"content-type": content_type} if content_type else {}
        for path in ("/api/v1/auth/login", "/api/v1/auth/register"):
            answer = await client.post(path, content=body, headers=headers)
            assert answer.status_code == 415, (path, content_type, answer.text)
            assert answer.json()["code"] == "json_required"
            assert "set-cookie" not in answer.headers
    signed_in = await client.post(
        "/api/v1/auth/login", content=body, headers={"content-type": "application/json"}
    )
    assert signed_in.status_code == 200, signed_in.text

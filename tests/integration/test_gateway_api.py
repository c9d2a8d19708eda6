"""The gateway's public API: sign-in, tokens, cookies with CSRF, problem+json errors."""

import httpx
import pytest

pytestmark = pytest.mark.stack


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    return body


async def test_me_shows_the_bootstrap_operator(api) -> None:
    me = (await api.get("/api/v1/me")).json()
    assert me["user"]["username"] == "admin"
    assert me["tenant"]["name"] == "operators"
    assert me["roles"] == ["operator"]


async def test_requests_without_or_with_bad_tokens_are_401(client) -> None:
    assert_problem(await client.get("/api/v1/devices"), 401, "unauthenticated")
    bad = await client.get("/api/v1/devices", headers={"Authorization": "Bearer ec_forged"})
    assert_problem(bad, 401, "token_invalid")


async def test_wrong_password_is_401(stack, client) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "nope"}
    )
    assert_problem(response, 401, "invalid_credentials")
    unknown = await client.post(
        "/api/v1/auth/login", json={"username": "ghost", "password": "nope"}
    )
    assert_problem(unknown, 401, "invalid_credentials")


async def test_login_with_missing_field_names_it(client) -> None:
    body = assert_problem(
        await client.post("/api/v1/auth/login", json={"username": "admin"}),
        422,
        "validation_failed",
    )
    assert body["fields"] == ["password"]


async def test_logout_revokes_the_token(stack, client) -> None:
    login = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": stack.admin_password}
    )
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    client.cookies.clear()
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert_problem(await client.get("/api/v1/me", headers=headers), 401, "token_invalid")


async def test_cookie_session_needs_csrf_for_changes(stack, client) -> None:
    login = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": stack.admin_password}
    )
    session_cookie = login.cookies["edgecloud_session"]
    assert "httponly" in login.headers.get_list("set-cookie")[0].lower()
    assert "samesite=lax" in login.headers.get_list("set-cookie")[0].lower()
    assert (await client.get("/api/v1/me")).status_code == 200

    refused = await client.post("/api/v1/devices/enrolments", json={})
    assert_problem(refused, 403, "csrf_failed")
    forged = await client.post(
        "/api/v1/devices/enrolments", json={}, headers={"X-CSRF-Token": "guess"}
    )
    assert_problem(forged, 403, "csrf_failed")
    accepted = await client.post(
        "/api/v1/devices/enrolments", json={}, headers={"X-CSRF-Token": login.json()["csrf_token"]}
    )
    assert accepted.status_code == 201
    assert session_cookie not in accepted.text


async def test_enrolment_answer_says_how_to_start_an_agent(stack, api) -> None:
    created = (await api.post("/api/v1/devices/enrolments", json={"ttl_seconds": 600})).json()
    assert created["token"].startswith("ece_")
    assert stack.router_url in created["agent_command"]
    assert created["token"] in created["agent_command"]


async def test_enrolment_with_bad_ttl_is_422(api) -> None:
    body = assert_problem(
        await api.post("/api/v1/devices/enrolments", json={"ttl_seconds": 1}),
        422,
        "validation_failed",
    )
    assert body["fields"] == ["ttl_seconds"]


async def test_unknown_device_is_404(api) -> None:
    assert_problem(await api.get("/api/v1/devices/no_such_device"), 404, "device_not_found")
    assert_problem(await api.get("/api/v1/devices/no_such_device/metrics"), 404, "device_not_found")


async def test_bad_cursor_is_400(api) -> None:
    assert_problem(
        await api.get("/api/v1/devices", params={"cursor": "%%%"}), 400, "invalid_cursor"
    )


async def test_device_list_pages(api, stack, enrol) -> None:

    from tests.support.beats import heartbeat
    from tests.support.wamp import device_session, probe_key

    keys = sorted(probe_key() for _ in range(3))
    for key in keys:
        async with device_session(stack, key=key, token=await enrol()) as uplink:
            await uplink.call("edge.registry.heartbeat", heartbeat(key), timeout=5)
    seen: list[str] = []
    cursor = None
    while True:
        page = (
            await api.get(
                "/api/v1/devices", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            )
        ).json()
        assert len(page["items"]) <= 2
        seen += [item["key"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(keys) <= set(seen)
    assert seen == sorted(seen)


async def test_api_explorer_and_dashboard_are_served_without_a_cdn(client) -> None:
    root = await client.get("/")
    assert root.status_code == 303
    assert root.headers["location"] == "/login"
    sign_in = await client.get("/login")
    assert sign_in.status_code == 200
    assert "/static/vendor/htmx/htmx.min.js" in sign_in.text
    assert "cdn" not in sign_in.text.lower()
    for asset in (
        "htmx/htmx.min.js",
        "htmx-ext-sse/sse.min.js",
        "uplot/uPlot.iife.min.js",
        "xterm/xterm.js",
        "xterm/xterm.css",
        "xterm-addon-fit/addon-fit.js",
    ):
        assert (await client.get(f"/static/vendor/{asset}")).status_code == 200, asset
    page = await client.get("/docs")
    assert page.status_code == 200
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in page.text
    assert "cdn" not in page.text.lower()
    bundle = await client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js")
    assert bundle.status_code == 200, "run infra/setup/assets.sh (make setup)"
    spec = (await client.get("/openapi.json")).json()
    assert "/api/v1/devices" in spec["paths"]

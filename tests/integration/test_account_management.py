"""Password change, reset and disabling through the public API: each ends the user's
sessions and tokens; a tenant admin acts only on members of their tenant alone, never on an
operator; bad input is a problem with a code and changes nothing."""

import httpx
import pytest

from tests.integration.test_gateway_api import assert_problem
from tests.support.stack import Stack
from tests.support.users import Account, invite, register

pytestmark = pytest.mark.stack

NEW_PASSWORD = "a brand new passphrase"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )


async def api_token(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    created = await client.post("/api/v1/tokens", json={"name": "script"}, headers=account.headers)
    assert created.status_code == 201, created.text
    return bearer(created.json()["token"])


async def all_refused(client: httpx.AsyncClient, *headers: dict[str, str]) -> None:
    for each in headers:
        assert_problem(await client.get("/api/v1/me", headers=each), 401, "token_invalid")


async def audited(client: httpx.AsyncClient, headers: dict[str, str], action: str) -> list[dict]:
    answer = await client.get("/api/v1/audit", params={"action": action}, headers=headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


async def test_a_password_change_needs_the_current_one_and_ends_every_session(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    user = await register(stack)
    script = await api_token(client, user)
    other_session = bearer(
        (await sign_in(client, user.username, user.password)).json()["access_token"]
    )
    change = "/api/v1/me/password"

    wrong = await client.post(
        change,
        json={"current_password": "not the password", "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    assert_problem(wrong, 403, "wrong_password")
    for weak in ("short", user.password, f"my {user.username} pass"):
        refused = await client.post(
            change,
            json={"current_password": user.password, "new_password": weak},
            headers=user.headers,
        )
        assert_problem(refused, 422, "weak_password")
    assert_problem(
        await client.post(change, json={"new_password": NEW_PASSWORD}, headers=user.headers),
        422,
        "validation_failed",
    )
    # Nothing changed so far.
    assert (await client.get("/api/v1/me", headers=script)).status_code == 200

    changed = await client.post(
        change,
        json={"current_password": user.password, "new_password": NEW_PASSWORD},
        headers=user.headers,
    )
    assert changed.status_code == 204, changed.text
    await all_refused(client, user.headers, script, other_session)
    assert_problem(await sign_in(client, user.username, user.password), 401, "invalid_credentials")
    again = await sign_in(client, user.username, NEW_PASSWORD)
    assert again.status_code == 200, again.text
    admin_view = bearer(again.json()["access_token"])
    outcomes = [e["outcome"] for e in await audited(client, admin_view, "user.password.change")]
    assert outcomes == ["success"] + ["failure"] * 4  # newest first


async def test_an_admin_sets_a_members_password_and_their_sessions_end(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = await register(stack)
    member = await register(stack, invitation=await invite(stack, admin))
    script = await api_token(client, member)
    reset = f"/api/v1/users/{member.user_id}/password"

    assert_problem(
        await client.post(reset, json={"password": "short"}, headers=admin.headers),
        422,
        "weak_password",
    )
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 200

    done = await client.post(reset, json={"password": NEW_PASSWORD}, headers=admin.headers)
    assert done.status_code == 200, done.text
    assert done.json()["reset_token"] is None
    await all_refused(client, member.headers, script)
    assert_problem(
        await sign_in(client, member.username, member.password), 401, "invalid_credentials"
    )
    assert (await sign_in(client, member.username, NEW_PASSWORD)).status_code == 200
    entries = await audited(client, admin.headers, "user.password.reset")
    assert [(e["outcome"], e["target"]) for e in entries] == [
        ("success", f"user:{member.user_id}"),
        ("failure", f"user:{member.user_id}"),  # the weak password
    ]


async def test_a_one_time_reset_stops_the_old_password_and_works_once(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = await register(stack)
    member = await register(stack, invitation=await invite(stack, admin))
    issued = await client.post(
        f"/api/v1/users/{member.user_id}/password", json={}, headers=admin.headers
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["reset_token"]
    assert token.startswith("ecr_")
    await all_refused(client, member.headers)
    assert_problem(
        await sign_in(client, member.username, member.password), 401, "invalid_credentials"
    )

    redeem = "/api/v1/auth/reset"
    weak = await client.post(redeem, json={"token": token, "password": "short"})
    assert_problem(weak, 422, "weak_password")
    made_up = await client.post(redeem, json={"token": "ecr_nope", "password": NEW_PASSWORD})
    assert_problem(made_up, 400, "reset_invalid")
    assert (
        await client.post(redeem, json={"token": token, "password": NEW_PASSWORD})
    ).status_code == 204
    assert_problem(
        await client.post(redeem, json={"token": token, "password": NEW_PASSWORD + "!"}),
        400,
        "reset_invalid",
    )
    assert (await sign_in(client, member.username, NEW_PASSWORD)).status_code == 200
    # The tenant's admin sees the reset issued and used.
    [issued_entry] = await audited(client, admin.headers, "user.password.reset")
    assert issued_entry["detail"]["one_time"] is True
    used = await audited(client, admin.headers, "auth.reset")
    assert [(e["outcome"], e["actor"]) for e in used] == [("success", member.username)]


async def test_a_disabled_account_cannot_sign_in_until_enabled(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    admin = await register(stack)
    member = await register(stack, invitation=await invite(stack, admin))
    script = await api_token(client, member)

    disabled = await client.post(f"/api/v1/users/{member.user_id}/disable", headers=admin.headers)
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["disabled_at"] is not None
    await all_refused(client, member.headers, script)
    assert_problem(
        await sign_in(client, member.username, member.password), 401, "invalid_credentials"
    )
    members = (await client.get("/api/v1/members", headers=admin.headers)).json()["items"]
    assert {m["user"]["id"]: m["user"]["disabled_at"] is not None for m in members} == {
        admin.user_id: False,
        member.user_id: True,
    }

    enabled = await client.post(f"/api/v1/users/{member.user_id}/enable", headers=admin.headers)
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["disabled_at"] is None
    await all_refused(client, script)  # old tokens stay revoked
    assert (await sign_in(client, member.username, member.password)).status_code == 200
    actions = {e["action"] for e in await audited(client, admin.headers, "user.disable")}
    assert actions == {"user.disable"}


async def test_a_tenant_admin_acts_only_on_members_of_their_tenant_alone(
    stack: Stack, api: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    admin = await register(stack)
    member = await register(stack, invitation=await invite(stack, admin))
    stranger = await register(stack)
    # A member of the admin's tenant who belongs to another tenant too.
    shared = await register(stack, invitation=await invite(stack, admin))
    joined = await client.post(
        "/api/v1/invitations/accept",
        json={"token": await invite(stack, stranger)},
        headers=shared.headers,
    )
    assert joined.status_code == 200, joined.text
    # An operator who is also a member of the admin's tenant.
    created = await api.post("/api/v1/invitations", json={"role": "operator"})
    operator = await register(stack, invitation=created.json()["token"])
    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": await invite(stack, admin)},
        headers=operator.headers,
    )
    assert accepted.status_code == 200, accepted.text

    for action, body in (("password", {"password": NEW_PASSWORD}), ("disable", None)):
        for target, status, code in (
            (stranger, 404, "user_not_found"),
            (shared, 403, "user_not_managed"),
            (operator, 403, "user_not_managed"),
            (admin, 409, "not_on_yourself"),
        ):
            answer = await client.post(
                f"/api/v1/users/{target.user_id}/{action}", json=body, headers=admin.headers
            )
            assert_problem(answer, status, code)
        by_member = await client.post(
            f"/api/v1/users/{admin.user_id}/{action}", json=body, headers=member.headers
        )
        assert_problem(by_member, 403, "tenant_admin_only")
    # Every refusal left everyone as they were.
    for untouched in (admin, member, stranger, shared, operator):
        assert (await client.get("/api/v1/me", headers=untouched.headers)).status_code == 200
        assert (await sign_in(client, untouched.username, untouched.password)).status_code == 200

    # A tenant admin of the operators' own tenant may not act on its operators either.
    ops_admin = await register(
        stack,
        invitation=(await api.post("/api/v1/invitations", json={"role": "tenant_admin"})).json()[
            "token"
        ],
    )
    colleague = await register(
        stack,
        invitation=(await api.post("/api/v1/invitations", json={"role": "operator"})).json()[
            "token"
        ],
    )
    for action, body in (("password", {"password": NEW_PASSWORD}), ("disable", None)):
        answer = await client.post(
            f"/api/v1/users/{colleague.user_id}/{action}", json=body, headers=ops_admin.headers
        )
        assert_problem(answer, 403, "user_not_managed")
    assert (await client.get("/api/v1/me", headers=colleague.headers)).status_code == 200

    # An operator may act on anyone.
    assert (await api.post(f"/api/v1/users/{shared.user_id}/disable")).status_code == 200
    await all_refused(client, shared.headers)
    assert (await api.post(f"/api/v1/users/{shared.user_id}/enable")).status_code == 200

"""Registration and sign-in: clear errors, no partial accounts, nothing about others revealed."""

import asyncio

import pytest

from tests.integration.test_gateway_api import assert_problem
from tests.support.users import invite, register, unique

pytestmark = pytest.mark.stack


async def test_open_registration_creates_a_tenant_and_its_admin(stack, client) -> None:
    username = unique("alice")
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": "correct horse battery"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["user"]["username"] == username
    assert body["tenant"]["name"] == username
    assert body["role"] == "tenant_admin"
    assert "password" not in response.text


async def test_registration_names_the_tenant_and_lowercases_the_username(client) -> None:
    name = unique("Acme").lower()
    username = unique("Bob")
    response = await client.post(
        "/api/v1/auth/register",
        json={"username": username, "password": "correct horse battery", "tenant": name},
    )
    assert response.status_code == 201, response.text
    assert response.json()["user"]["username"] == username.lower()
    assert response.json()["tenant"]["name"] == name


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("short", "weak_password"),
        ("aaaaaaaaaaaaaaaa", "weak_password"),
        ("password1234", "weak_password"),
        ("x" * 257, "validation_failed"),
    ],
)
async def test_weak_or_oversized_passwords_are_refused(client, password, code) -> None:
    username = unique("weak")
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": password}
    )
    assert_problem(response, 422, code)
    # Nothing was created: the name is still free.
    again = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": "correct horse battery"}
    )
    assert again.status_code == 201


async def test_password_containing_the_username_is_weak(client) -> None:
    username = unique("carol")
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": f"my-{username}-pass"}
    )
    body = assert_problem(response, 422, "weak_password")
    assert "do not include the username" in body["problems"]


@pytest.mark.parametrize("username", ["ab", "has space", "Ünïcode", "-leadingdash", "x" * 65])
async def test_bad_usernames_are_refused(client, username) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"username": username, "password": "correct horse battery"}
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["fields"] == ["username"]


async def test_duplicate_username_and_tenant_are_409(stack, client) -> None:
    first = await register(stack)
    taken = await client.post(
        "/api/v1/auth/register",
        json={"username": first.username.upper(), "password": "correct horse battery"},
    )
    assert_problem(taken, 409, "username_taken")
    tenant_taken = await client.post(
        "/api/v1/auth/register",
        json={
            "username": unique("dave"),
            "password": "correct horse battery",
            "tenant": first.tenant_name,
        },
    )
    assert_problem(tenant_taken, 409, "tenant_taken")


async def test_concurrent_registrations_of_one_name_create_one_account(client) -> None:
    username = unique("race")
    body = {"username": username, "password": "correct horse battery"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/auth/register", json=body) for _ in range(4))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 1
    assert set(codes) <= {201, 409}


async def test_invitation_joins_the_tenant_once(stack, client) -> None:
    admin = await register(stack)
    token = await invite(stack, admin)
    member = await register(stack, invitation=token)
    assert member.tenant_id == admin.tenant_id
    me = (await client.get("/api/v1/me", headers=member.headers)).json()
    assert me["roles"] == ["member"]

    reused = await client.post(
        "/api/v1/auth/register",
        json={"username": unique("eve"), "password": "correct horse battery", "invitation": token},
    )
    assert_problem(reused, 400, "invitation_invalid")


async def test_bad_invitations_reveal_nothing(stack, client) -> None:
    admin = await register(stack)
    token = await invite(stack, admin)
    made_up = await client.post(
        "/api/v1/auth/register",
        json={
            "username": unique("mallory"),
            "password": "correct horse battery",
            "invitation": "eci_nope",
        },
    )
    wrong_tenant = await client.post(
        "/api/v1/auth/register",
        json={
            "username": unique("mallory"),
            "password": "correct horse battery",
            "invitation": token,
            "tenant": "some-other-tenant",
        },
    )
    assert (
        made_up.json()["detail"] == wrong_tenant.json()["detail"] == "the invitation is not valid"
    )
    assert_problem(made_up, 400, "invitation_invalid")
    assert_problem(wrong_tenant, 400, "invitation_invalid")
    # The refused attempt did not use the invitation up.
    joined = await register(stack, invitation=token)
    assert joined.tenant_id == admin.tenant_id


async def test_login_throttles_then_says_when_to_retry(stack, client) -> None:
    account = await register(stack)
    wrong = {"username": account.username, "password": "not the password"}
    for _ in range(3):  # the test stack's free failures
        assert_problem(
            await client.post("/api/v1/auth/login", json=wrong), 401, "invalid_credentials"
        )
    assert_problem(await client.post("/api/v1/auth/login", json=wrong), 401, "invalid_credentials")
    # Now the account has to wait, even with the right password.
    right = {"username": account.username, "password": account.password}
    throttled = await client.post("/api/v1/auth/login", json=right)
    body = assert_problem(throttled, 429, "login_throttled")
    assert int(throttled.headers["Retry-After"]) >= 1
    assert "try again in" in body["detail"]
    await asyncio.sleep(int(throttled.headers["Retry-After"]) + 0.2)
    ok = await client.post("/api/v1/auth/login", json=right)
    assert ok.status_code == 200, ok.text
    # Success clears the record: a new mistake is free again.
    assert_problem(await client.post("/api/v1/auth/login", json=wrong), 401, "invalid_credentials")


async def test_repeated_failures_wait_longer_and_never_lock(stack, client) -> None:
    """Each failure past the free ones doubles this client's wait; there is no lockout
    (it would be anyone's to aim at anyone): the right password works after the wait."""
    account = await register(stack)
    wrong = {"username": account.username, "password": "not the password"}
    waits = []
    while len(waits) < 3:
        response = await client.post("/api/v1/auth/login", json=wrong)
        if response.status_code == 429:
            assert_problem(response, 429, "login_throttled")
            waits.append(int(response.headers["Retry-After"]))
            if len(waits) < 3:
                await asyncio.sleep(waits[-1] + 0.1)
    assert waits == [1, 2, 4]
    right = {"username": account.username, "password": account.password}
    throttled = await client.post("/api/v1/auth/login", json=right)
    assert_problem(throttled, 429, "login_throttled")
    await asyncio.sleep(int(throttled.headers["Retry-After"]) + 0.1)
    assert (await client.post("/api/v1/auth/login", json=right)).status_code == 200


async def test_unknown_users_fail_like_wrong_passwords(client) -> None:
    ghost = await client.post(
        "/api/v1/auth/login", json={"username": unique("ghost"), "password": "whatever!"}
    )
    assert_problem(ghost, 401, "invalid_credentials")
    assert ghost.json()["detail"] == "wrong username or password"


async def test_me_lists_every_tenant_and_login_can_switch(stack, client) -> None:
    first = await register(stack)
    second_admin = await register(stack)
    token = await invite(stack, second_admin)
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": token}, headers=first.headers
    )
    assert accepted.status_code == 200, accepted.text
    me = (await client.get("/api/v1/me", headers=first.headers)).json()
    assert {t["tenant"]["name"] for t in me["tenants"]} == {
        first.tenant_name,
        second_admin.tenant_name,
    }

    switched = await client.post(
        "/api/v1/auth/login",
        json={
            "username": first.username,
            "password": first.password,
            "tenant": second_admin.tenant_name,
        },
    )
    assert switched.status_code == 200
    headers = {"Authorization": f"Bearer {switched.json()['access_token']}"}
    me_there = (await client.get("/api/v1/me", headers=headers)).json()
    assert me_there["tenant"]["name"] == second_admin.tenant_name
    assert me_there["roles"] == ["member"]

    stranger = await client.post(
        "/api/v1/auth/login",
        json={"username": first.username, "password": first.password, "tenant": "not-mine"},
    )
    assert_problem(stranger, 403, "not_a_member")

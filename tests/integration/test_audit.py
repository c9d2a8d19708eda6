"""The audit log records who did what, when and how it ended, per tenant."""

import httpx
import pytest

from tests.support.users import invite, register

pytestmark = pytest.mark.stack


async def events(client: httpx.AsyncClient, headers: dict, **params) -> list[dict]:
    response = await client.get("/api/v1/audit", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_actions_and_failures_are_recorded_for_the_tenant(stack, client, api) -> None:
    admin = await register(stack)
    token = (await client.post("/api/v1/tokens", json={"name": "ci"}, headers=admin.headers)).json()
    await client.delete(f"/api/v1/tokens/{token['id']}", headers=admin.headers)
    invitation = await invite(stack, admin)
    member = await register(stack, invitation=invitation)
    await client.post(
        "/api/v1/auth/login", json={"username": member.username, "password": "wrong password"}
    )
    reuse = await client.post(
        "/api/v1/auth/register",
        json={
            "username": "someone-else",
            "password": "correct horse battery",
            "invitation": invitation,
        },
    )
    assert reuse.status_code == 400

    mine = await events(client, admin.headers)
    seen = [(e["action"], e["outcome"]) for e in reversed(mine)]
    assert seen[:2] == [("auth.register", "success"), ("auth.login", "success")]
    assert ("token.create", "success") in seen
    assert ("token.revoke", "success") in seen
    assert ("invitation.create", "success") in seen
    assert ("auth.login", "failure") in seen
    assert all(e["tenant"] == admin.tenant_id for e in mine)

    failed_login = next(
        e for e in mine if e["action"] == "auth.login" and e["outcome"] == "failure"
    )
    assert failed_login["actor"] == member.username
    assert failed_login["detail"]["code"] == "invalid_credentials"
    assert failed_login["address"] == "127.0.0.1"
    created = next(e for e in mine if e["action"] == "token.create")
    assert created["actor"] == admin.username
    assert created["target"] == "token:ci"
    assert token["token"] not in str(mine)

    # The refused registration is recorded, but not in the tenant's log: it revealed nothing.
    assert not any(e["action"] == "auth.register" and e["outcome"] == "failure" for e in mine)
    everything = await events(api, api.headers, action="auth.register", limit=500)
    assert any(
        e["outcome"] == "failure" and e["detail"]["code"] == "invitation_invalid"
        for e in everything
    )


async def test_operators_read_every_tenant_and_filter(stack, client, api) -> None:
    first, second = await register(stack), await register(stack)
    assert {first.tenant_id, second.tenant_id} <= {
        e["tenant"] for e in await events(api, api.headers, limit=500)
    }
    only_first = await events(api, api.headers, tenant=first.tenant_id)
    assert only_first
    assert {e["tenant"] for e in only_first} == {first.tenant_id}
    # A tenant admin's tenant filter cannot reach another tenant.
    sneaky = await events(client, first.headers, tenant=second.tenant_id)
    assert {e["tenant"] for e in sneaky} == {first.tenant_id}


async def test_audit_pages_newest_first(stack, client) -> None:
    admin = await register(stack)
    for n in range(3):
        await client.post("/api/v1/tokens", json={"name": f"t{n}"}, headers=admin.headers)
    page = (await client.get("/api/v1/audit", headers=admin.headers, params={"limit": 2})).json()
    assert len(page["items"]) == 2
    assert page["items"][0]["target"] == "token:t2"
    rest = (
        await client.get(
            "/api/v1/audit",
            headers=admin.headers,
            params={"limit": 100, "cursor": page["next_cursor"]},
        )
    ).json()
    ids = [int(e["id"]) for e in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == len(ids)

"""Tenants, roles, members, device grants and quotas through the public API."""

import asyncio
import secrets
from datetime import UTC, datetime

import pytest

from tests.integration.test_gateway_api import assert_problem
from tests.support.beats import heartbeat
from tests.support.users import invite, register
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack


async def test_members_are_managed_by_tenant_admins_only(stack, client) -> None:
    admin = await register(stack)
    member = await register(stack, invitation=await invite(stack, admin))

    listed = (await client.get("/api/v1/members", headers=admin.headers)).json()["items"]
    assert {m["user"]["username"]: m["role"] for m in listed} == {
        admin.username: "tenant_admin",
        member.username: "member",
    }
    assert_problem(
        await client.get("/api/v1/members", headers=member.headers), 403, "tenant_admin_only"
    )
    assert_problem(
        await client.post("/api/v1/invitations", json={}, headers=member.headers),
        403,
        "tenant_admin_only",
    )
    assert_problem(
        await client.get("/api/v1/audit", headers=member.headers), 403, "tenant_admin_only"
    )

    promoted = await client.patch(
        f"/api/v1/members/{member.user_id}", json={"role": "tenant_admin"}, headers=admin.headers
    )
    assert promoted.json()["role"] == "tenant_admin"
    # The role is read per request: the member's existing token is an admin's now.
    assert (await client.get("/api/v1/members", headers=member.headers)).status_code == 200

    assert (
        await client.delete(f"/api/v1/members/{member.user_id}", headers=admin.headers)
    ).status_code == 204
    assert_problem(await client.get("/api/v1/me", headers=member.headers), 401, "token_invalid")


async def test_the_last_admin_stays(stack, client) -> None:
    admin = await register(stack)
    demote = await client.patch(
        f"/api/v1/members/{admin.user_id}", json={"role": "member"}, headers=admin.headers
    )
    assert_problem(demote, 409, "last_admin")
    leave = await client.delete(f"/api/v1/members/{admin.user_id}", headers=admin.headers)
    assert_problem(leave, 409, "last_admin")


async def test_only_operators_hand_out_the_operator_role(stack, client, api) -> None:
    admin = await register(stack)
    refused = await client.post(
        "/api/v1/invitations", json={"role": "operator"}, headers=admin.headers
    )
    assert_problem(refused, 403, "role_not_allowed")


async def test_invitations_can_be_listed_and_revoked(stack, client) -> None:
    admin = await register(stack)
    created = (
        await client.post("/api/v1/invitations", json={"note": "for dana"}, headers=admin.headers)
    ).json()
    listed = (await client.get("/api/v1/invitations", headers=admin.headers)).json()["items"]
    assert [(i["id"], i["state"]) for i in listed] == [(created["id"], "pending")]
    assert "token" not in listed[0]
    assert (
        await client.delete(f"/api/v1/invitations/{created['id']}", headers=admin.headers)
    ).status_code == 204
    listed = (await client.get("/api/v1/invitations", headers=admin.headers)).json()["items"]
    assert listed[0]["state"] == "revoked"
    refused = await client.post(
        "/api/v1/auth/register",
        json={
            "username": f"dana-{secrets.token_hex(3)}",
            "password": "correct horse battery",
            "invitation": created["token"],
        },
    )
    assert_problem(refused, 400, "invitation_invalid")


async def test_operator_creates_a_tenant_and_invites_its_admin(stack, client, api) -> None:
    name = f"corp-{secrets.token_hex(3)}"
    tenant = await api.post("/api/v1/tenants", json={"name": name})
    assert tenant.status_code == 201, tenant.text
    invitation = await api.post(
        "/api/v1/invitations", json={"role": "tenant_admin", "tenant": name}
    )
    assert invitation.status_code == 201, invitation.text
    assert invitation.json()["tenant"]["name"] == name
    first_admin = await register(stack, invitation=invitation.json()["token"])
    assert first_admin.tenant_name == name
    assert (await client.get("/api/v1/members", headers=first_admin.headers)).status_code == 200
    duplicate = await api.post("/api/v1/tenants", json={"name": name})
    assert_problem(duplicate, 409, "tenant_taken")


async def test_tenant_sees_only_granted_devices(stack, client, api, enrol) -> None:
    tenant_user = await register(stack)
    key = probe_key()
    async with device_session(stack, key=key, token=await enrol()) as uplink:
        await uplink.call("edge.registry.heartbeat", heartbeat(key), timeout=5)

    assert_problem(
        await client.get(f"/api/v1/devices/{key}", headers=tenant_user.headers),
        404,
        "device_not_found",
    )
    assert key not in str((await client.get("/api/v1/devices", headers=tenant_user.headers)).json())

    assert_problem(
        await client.post(
            f"/api/v1/devices/{key}/grants",
            json={"tenant": tenant_user.tenant_name},
            headers=tenant_user.headers,
        ),
        403,
        "operator_only",
    )
    granted = await api.post(
        f"/api/v1/devices/{key}/grants", json={"tenant": tenant_user.tenant_name}
    )
    assert granted.status_code == 201, granted.text
    assert (
        await client.get(f"/api/v1/devices/{key}", headers=tenant_user.headers)
    ).status_code == 200
    grants = (await api.get(f"/api/v1/devices/{key}/grants")).json()["items"]
    assert [g["tenant"] for g in grants] == [tenant_user.tenant_id]

    assert (
        await api.delete(f"/api/v1/devices/{key}/grants/{tenant_user.tenant_name}")
    ).status_code == 204
    assert_problem(
        await client.get(f"/api/v1/devices/{key}", headers=tenant_user.headers),
        404,
        "device_not_found",
    )
    assert_problem(
        await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": "no-such-tenant"}),
        404,
        "tenant_not_found",
    )


async def test_api_rate_quota_answers_429(stack, client, api) -> None:
    user = await register(stack)
    changed = await api.patch(
        f"/api/v1/tenants/{user.tenant_id}/quotas", json={"api_requests_per_minute": 3}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["quotas"]["api_requests_per_minute"] == 3
    # The quota counts in fixed minutes of the clock: all of this within one of them.
    seconds = datetime.now(UTC).second + datetime.now(UTC).microsecond / 1e6
    if seconds > 50:
        await asyncio.sleep(60.5 - seconds)
    answers = [await client.get("/api/v1/me", headers=user.headers) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    body = assert_problem(answers[3], 429, "rate_limited")
    assert 1 <= int(answers[3].headers["Retry-After"]) <= 60
    assert "3 requests per minute" in body["detail"]
    own = await client.get(f"/api/v1/tenants/{user.tenant_id}", headers=user.headers)
    assert own.status_code == 429  # the quota covers every request of the tenant
    # Other tenants are not affected.
    assert (await api.get("/api/v1/me")).status_code == 200


async def test_quotas_are_readable_by_the_tenant_and_set_by_operators(stack, client) -> None:
    user = await register(stack)
    own = (await client.get(f"/api/v1/tenants/{user.tenant_id}", headers=user.headers)).json()
    assert own["quotas"] == {
        "containers": 20,
        "storage_bytes": 10 << 30,
        "api_requests_per_minute": 100000,
    }
    refused = await client.patch(
        f"/api/v1/tenants/{user.tenant_id}/quotas", json={"containers": 999}, headers=user.headers
    )
    assert_problem(refused, 403, "operator_only")


async def test_a_member_of_two_tenants_switches_without_a_password(stack, client) -> None:
    lab = await register(stack)
    user = await register(stack)
    joined = await client.post(
        "/api/v1/invitations/accept",
        json={"token": await invite(stack, lab)},
        headers=user.headers,
    )
    assert joined.status_code == 200, joined.text

    switched = await client.post(
        "/api/v1/auth/switch", json={"tenant": lab.tenant_name}, headers=user.headers
    )
    assert switched.status_code == 200, switched.text
    assert {"edgecloud_session", "edgecloud_csrf"} <= set(switched.cookies)
    moved = {"Authorization": f"Bearer {switched.json()['access_token']}"}
    me = (await client.get("/api/v1/me", headers=moved)).json()
    assert (me["tenant"]["id"], me["roles"]) == (lab.tenant_id, ["member"])
    # The token it replaced is revoked: a session is in one tenant at a time.
    assert (await client.get("/api/v1/me", headers=user.headers)).status_code == 401

    stranger = await register(stack)
    assert_problem(
        await client.post(
            "/api/v1/auth/switch", json={"tenant": stranger.tenant_name}, headers=moved
        ),
        403,
        "not_a_member",
    )
    # Refused: the session is still where it was.
    assert (await client.get("/api/v1/me", headers=moved)).json()["tenant"]["id"] == lab.tenant_id
    assert_problem(
        await client.post("/api/v1/auth/switch", json={"tenant": "../x"}, headers=moved),
        422,
        "validation_failed",
    )
    # A script's API token belongs to one tenant: it is refused, and stays valid.
    made = await client.post("/api/v1/tokens", json={"name": "ci"}, headers=moved)
    api_token = {"Authorization": f"Bearer {made.json()['token']}"}
    assert_problem(
        await client.post(
            "/api/v1/auth/switch", json={"tenant": user.tenant_name}, headers=api_token
        ),
        403,
        "not_a_session",
    )
    assert (await client.get("/api/v1/me", headers=api_token)).status_code == 200

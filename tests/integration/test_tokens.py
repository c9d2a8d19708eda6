"""API tokens: named, expiring, revocable, stored hashed; expiry and revocation apply at once."""

import subprocess
from datetime import datetime

import pytest

from tests.integration.test_gateway_api import assert_problem
from tests.support.stack import PG_ADMIN
from tests.support.users import invite, register

pytestmark = pytest.mark.stack


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def expire_token_in_database(stack, token_id: str) -> None:
    """Move a token's expiry into the past, as time would."""
    sql = (
        f"UPDATE access_tokens SET expires_at = '2000-01-01 00:00:00+00:00' WHERE id = '{token_id}'"
    )
    if stack.backend == "postgresql":
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{stack.pg_database}"
        subprocess.run(["psql", url, "-qc", sql], check=True, capture_output=True)
    else:
        import sqlite3

        with sqlite3.connect(stack.workdir / "var" / "gateway.db") as db:
            db.execute(sql.replace("+00:00", ""))


async def test_create_list_use_and_revoke(stack, client) -> None:
    owner = await register(stack)
    created = await client.post(
        "/api/v1/tokens", json={"name": "ci deploys", "expires_in_days": 30}, headers=owner.headers
    )
    assert created.status_code == 201, created.text
    token = created.json()
    assert token["token"].startswith("ec_")
    assert token["name"] == "ci deploys"

    script = {"Authorization": f"Bearer {token['token']}"}
    assert (await client.get("/api/v1/me", headers=script)).json()["user"][
        "username"
    ] == owner.username

    listed = (await client.get("/api/v1/tokens", headers=owner.headers)).json()
    assert [t["id"] for t in listed["items"]] == [token["id"]]
    assert token["token"] not in str(listed)
    assert listed["items"][0]["last_used_at"] is not None

    assert (
        await client.delete(f"/api/v1/tokens/{token['id']}", headers=owner.headers)
    ).status_code == 204
    assert_problem(await client.get("/api/v1/me", headers=script), 401, "token_invalid")
    assert (await client.get("/api/v1/tokens", headers=owner.headers)).json()["items"] == []
    assert_problem(
        await client.delete(f"/api/v1/tokens/{token['id']}", headers=owner.headers),
        404,
        "token_not_found",
    )


async def test_expired_token_stops_working_at_once(stack, client) -> None:
    owner = await register(stack)
    token = (
        await client.post("/api/v1/tokens", json={"name": "short"}, headers=owner.headers)
    ).json()
    script = {"Authorization": f"Bearer {token['token']}"}
    assert (await client.get("/api/v1/me", headers=script)).status_code == 200
    expire_token_in_database(stack, token["id"])
    assert_problem(await client.get("/api/v1/me", headers=script), 401, "token_expired")


async def test_another_users_token_is_404(stack, client) -> None:
    owner = await register(stack)
    other = await register(stack)
    token = (
        await client.post("/api/v1/tokens", json={"name": "mine"}, headers=owner.headers)
    ).json()
    assert_problem(
        await client.delete(f"/api/v1/tokens/{token['id']}", headers=other.headers),
        404,
        "token_not_found",
    )
    script = {"Authorization": f"Bearer {token['token']}"}
    assert (await client.get("/api/v1/me", headers=script)).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "ok", "expires_in_days": 0},
        {"name": "ok", "expires_in_days": 366},
    ],
)
async def test_bad_token_requests_are_422(stack, client, body) -> None:
    owner = await register(stack)
    assert_problem(
        await client.post("/api/v1/tokens", json=body, headers=owner.headers),
        422,
        "validation_failed",
    )


@pytest.mark.parametrize(
    "value", [b"ec_", b"ec_" + b"a" * 300, b"Bearer", b"not-a-token", "ec_\u00e9\u00e9".encode()]
)
async def test_malformed_tokens_are_401(client, value: bytes) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": b"Bearer " + value})
    assert_problem(response, 401, "token_invalid")


async def test_a_token_made_with_a_token_is_no_more_than_its_parent(stack, client) -> None:
    """An API token can mint tokens, but none outlives it or survives its revocation (nor
    their own children), and none acts with another role than the member's own."""
    admin = await register(stack)
    member = await register(stack, invitation=await invite(stack, admin))
    parent = (
        await client.post(
            "/api/v1/tokens", json={"name": "parent", "expires_in_days": 2}, headers=member.headers
        )
    ).json()
    as_parent = {"Authorization": f"Bearer {parent['token']}"}
    child = await client.post(
        "/api/v1/tokens", json={"name": "child", "expires_in_days": 365}, headers=as_parent
    )
    assert child.status_code == 201, child.text
    assert when(child.json()["expires_at"]) <= when(parent["expires_at"])
    as_child = {"Authorization": f"Bearer {child.json()['token']}"}
    grandchild = (
        await client.post("/api/v1/tokens", json={"name": "grandchild"}, headers=as_child)
    ).json()
    as_grandchild = {"Authorization": f"Bearer {grandchild['token']}"}
    assert when(grandchild["expires_at"]) <= when(parent["expires_at"])
    me = (await client.get("/api/v1/me", headers=as_grandchild)).json()
    assert (me["roles"], me["tenant"]["id"]) == (["member"], admin.tenant_id)
    assert_problem(
        await client.post("/api/v1/invitations", json={}, headers=as_grandchild),
        403,
        "tenant_admin_only",
    )

    revoked = await client.delete(f"/api/v1/tokens/{parent['id']}", headers=member.headers)
    assert revoked.status_code == 204
    for headers in (as_parent, as_child, as_grandchild):
        assert_problem(await client.get("/api/v1/me", headers=headers), 401, "token_invalid")
    # The person's own session is not the parent of anything, and lives on.
    assert (await client.get("/api/v1/me", headers=member.headers)).status_code == 200


async def test_revoking_a_child_leaves_its_parent(stack, client) -> None:
    owner = await register(stack)
    parent = (
        await client.post("/api/v1/tokens", json={"name": "parent"}, headers=owner.headers)
    ).json()
    as_parent = {"Authorization": f"Bearer {parent['token']}"}
    child = (await client.post("/api/v1/tokens", json={"name": "child"}, headers=as_parent)).json()
    assert (
        await client.delete(f"/api/v1/tokens/{child['id']}", headers=as_parent)
    ).status_code == 204
    assert (await client.get("/api/v1/me", headers=as_parent)).status_code == 200
    assert_problem(
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {child['token']}"}),
        401,
        "token_invalid",
    )

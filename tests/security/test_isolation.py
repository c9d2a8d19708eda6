"""Tenant isolation: every gateway route that takes an id, called by another tenant's admin.

The matrix is checked against the gateway's own route list, so a new route with an id
fails this test until it says how it is isolated. (The shell's WebSocket is not in that
list: tests/integration/test_terminal.py refuses it to another tenant.)
"""

import httpx
import pytest

from tests.security.probe_nodes import create_container, offline_device
from tests.support.migrations import store_migration
from tests.support.users import Account, invite, register

pytestmark = pytest.mark.stack

# (method, path) -> (status for another tenant's admin, JSON body or None).
# 404: the object is invisible to them. 403: the route is for operators only, whatever the id.
MATRIX: dict[tuple[str, str], tuple[int, dict | None]] = {
    ("GET", "/api/v1/devices/{key}"): (404, None),
    ("GET", "/api/v1/devices/{key}/metrics"): (404, None),
    ("GET", "/api/v1/devices/{key}/history"): (404, None),
    ("GET", "/api/v1/devices/{key}/grants"): (403, None),
    ("POST", "/api/v1/devices/{key}/grants"): (403, {"tenant": "{own_tenant}"}),
    ("DELETE", "/api/v1/devices/{key}/grants/{tenant}"): (403, None),
    ("POST", "/api/v1/devices/{key}/revoke"): (403, None),
    ("GET", "/api/v1/devices/{key}/interfaces"): (404, None),
    ("PUT", "/api/v1/devices/{key}/interfaces/{name}"): (
        403,
        {"kind": "serial", "path": "/dev/ttyS0"},
    ),
    ("DELETE", "/api/v1/devices/{key}/interfaces/{name}"): (403, None),
    ("DELETE", "/api/v1/tokens/{token_id}"): (404, None),
    ("DELETE", "/api/v1/invitations/{invitation_id}"): (404, None),
    ("PATCH", "/api/v1/members/{user_id}"): (404, {"role": "tenant_admin"}),
    ("DELETE", "/api/v1/members/{user_id}"): (404, None),
    ("POST", "/api/v1/users/{user_id}/password"): (404, {"password": "a brand new passphrase"}),
    ("POST", "/api/v1/users/{user_id}/disable"): (404, None),
    ("POST", "/api/v1/users/{user_id}/enable"): (404, None),
    ("GET", "/api/v1/tenants/{tenant_id}"): (404, None),
    ("PATCH", "/api/v1/tenants/{tenant_id}/quotas"): (403, {"containers": 0}),
    ("GET", "/api/v1/containers/{container_id}"): (404, None),
    ("DELETE", "/api/v1/containers/{container_id}"): (404, None),
    ("POST", "/api/v1/containers/{container_id}/{action}"): (404, None),
    ("GET", "/api/v1/commands/{command_id}"): (404, None),
    ("POST", "/api/v1/containers/{container_id}/deploy"): (
        404,
        {"artifact": "{artifact_id}", "script": "{artifact_id}"},
    ),
    ("GET", "/api/v1/containers/{container_id}/deployments"): (404, None),
    ("POST", "/api/v1/containers/{container_id}/files"): (404, {"path": "/app"}),
    ("POST", "/api/v1/containers/{container_id}/migrate"): (404, {}),
    ("POST", "/api/v1/containers/{container_id}/exec"): (404, {"cmd": ["id"]}),
    ("GET", "/api/v1/containers/{container_id}/logs"): (404, None),
    ("GET", "/api/v1/containers/{container_id}/data"): (404, None),
    ("GET", "/api/v1/containers/{container_id}/copies"): (404, None),
    ("DELETE", "/api/v1/containers/{container_id}/copies/{device}"): (404, None),
    ("GET", "/api/v1/deployments/{deployment_id}"): (404, None),
    ("GET", "/api/v1/alert-rules/{rule_id}"): (404, None),
    ("DELETE", "/api/v1/alert-rules/{rule_id}"): (404, None),
    ("GET", "/api/v1/migrations/{migration_id}"): (404, None),
    ("GET", "/api/v1/artifacts/{artifact_id}"): (404, None),
    ("PATCH", "/api/v1/artifacts/{artifact_id}"): (404, None),
    ("GET", "/api/v1/artifacts/{artifact_id}/content"): (404, None),
    ("DELETE", "/api/v1/artifacts/{artifact_id}"): (404, None),
    # Nodes' transfers take a grant, not a user: without one nothing is reached.
    ("GET", "/api/v1/transfers/{artifact_id}"): (422, None),
    ("GET", "/api/v1/transfers/{artifact_id}/status"): (422, None),
    ("PATCH", "/api/v1/transfers/{artifact_id}"): (422, None),
    ("POST", "/api/v1/transfers/{container_id}/logs"): (422, None),
}


async def test_every_route_with_an_id_is_in_the_matrix(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        spec = (await client.get("/openapi.json")).json()
    with_ids = {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        if "{" in path
        for method in operations
    }
    assert with_ids == set(MATRIX), "add the new route to MATRIX with its isolation rule"


@pytest.fixture
async def victim(stack, api, enrol):
    """Tenant B with one of everything: a member, a token, an invitation, a device."""
    admin = await register(stack)
    member = await register(stack, invitation=await invite(stack, admin))
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        token = (
            await client.post("/api/v1/tokens", json={"name": "b"}, headers=admin.headers)
        ).json()
        invitation = (
            await client.post("/api/v1/invitations", json={}, headers=admin.headers)
        ).json()
    key = await offline_device(stack, api, await enrol(), tenant_id=admin.tenant_id)
    # The device is offline now: the container waits with its create command queued.
    queued = await create_container(stack, admin, key, expect=(202,))
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        artifact = await client.post(
            "/api/v1/artifacts", files={"file": ("run.sh", b"echo hi\n")}, headers=admin.headers
        )
    assert artifact.status_code == 201, artifact.text
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        deployed = await client.post(
            f"/api/v1/containers/{queued['id']}/deploy",
            json={"artifact": artifact.json()["id"], "script": artifact.json()["id"]},
            headers=admin.headers,
        )
    assert deployed.status_code == 202, deployed.text
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        rule = await client.post(
            "/api/v1/alert-rules",
            json={"target_kind": "device", "target": key, "metric": "offline"},
            headers=admin.headers,
        )
    assert rule.status_code == 201, rule.text
    # Stored directly: nothing migrates containers before peer migration (#8).
    migration_id = await store_migration(
        stack, tenant_id=admin.tenant_id, container_id=queued["id"]
    )
    return {
        "admin": admin,
        "member": member,
        "ids": {
            "key": key,
            "device": key,
            "tenant": admin.tenant_id,
            "token_id": token["id"],
            "invitation_id": invitation["id"],
            "user_id": member.user_id,
            "tenant_id": admin.tenant_id,
            "container_id": queued["id"],
            "command_id": queued["command"],
            "artifact_id": artifact.json()["id"],
            "deployment_id": deployed.json()["deployment"],
            "rule_id": rule.json()["id"],
            "migration_id": migration_id,
            "action": "stop",
            "name": "serial0",
        },
        "api_token": token["token"],
    }


async def snapshot(api: httpx.AsyncClient, victim: dict) -> dict:
    admin: Account = victim["admin"]
    headers = admin.headers
    # Use the victim's API token first: using it records last_used_at, seen below.
    api_token = await api.get(
        "/api/v1/me", headers={"Authorization": f"Bearer {victim['api_token']}"}
    )
    return {
        "api_token": api_token.status_code,
        "members": (await api.get("/api/v1/members", headers=headers)).json(),
        "invitations": (await api.get("/api/v1/invitations", headers=headers)).json(),
        "tokens": (await api.get("/api/v1/tokens", headers=headers)).json(),
        "tenant": (await api.get(f"/api/v1/tenants/{admin.tenant_id}", headers=headers)).json(),
        "device": (
            await api.get(f"/api/v1/devices/{victim['ids']['key']}", headers=headers)
        ).status_code,
        "artifacts": (await api.get("/api/v1/artifacts", headers=headers)).json(),
        "alert_rules": [
            rule["id"]
            for rule in (await api.get("/api/v1/alert-rules", headers=headers)).json()["items"]
        ],
        "artifact_content": (
            await api.get(
                f"/api/v1/artifacts/{victim['ids']['artifact_id']}/content", headers=headers
            )
        ).content,
    }


async def test_another_tenants_ids_answer_404_and_change_nothing(stack, api, victim) -> None:
    attacker = await register(stack)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        before = await snapshot(client, victim)
        for (method, template), (expected, body) in MATRIX.items():
            path = template.format(**victim["ids"])
            payload = None
            if body is not None:
                payload = {
                    k: v.format(own_tenant=attacker.tenant_id, **victim["ids"])
                    if isinstance(v, str)
                    else v
                    for k, v in body.items()
                }
            response = await client.request(method, path, json=payload, headers=attacker.headers)
            assert response.status_code == expected, (
                f"{method} {template}: {response.status_code} {response.text}"
            )
            assert response.headers["content-type"].startswith("application/problem+json")
            # Nothing of the victim's leaks into the answer.
            for value in victim["ids"].values():
                if expected == 404:
                    assert value not in response.json().get("title", "")
        after = await snapshot(client, victim)
    assert after == before


# Every GET route without an id in its path, with the victim's ids as its filters where it
# takes any: the attacker's answer names nothing of the victim's.
LISTS: dict[str, dict[str, str]] = {
    "/livez": {},
    "/healthz": {},
    "/metrics": {},
    "/api/v1/me": {},
    "/api/v1/tokens": {},
    "/api/v1/invitations": {},
    "/api/v1/members": {},
    "/api/v1/tenants": {},
    "/api/v1/audit": {"tenant": "{tenant_id}"},
    "/api/v1/devices": {},
    "/api/v1/containers": {"device": "{key}"},
    "/api/v1/images/platforms": {"image": "edgecloud/busybox:latest"},
    "/api/v1/artifacts": {"container": "{container_id}"},
    "/api/v1/artifacts/usage": {},
    "/api/v1/alert-rules": {},
    "/api/v1/alerts": {"rule": "{rule_id}"},
    "/api/v1/migrations": {"container": "{container_id}"},
}
NOT_LISTED = {
    # A live stream: tests/security/test_event_isolation.py publishes the victim's events
    # while another tenant listens.
    "/api/v1/events",
}
GENERIC_IDS = {"action", "name"}
"""Entries of the victim's ids that are ordinary words (``stop``, ``serial0``)."""


async def test_every_list_route_is_checked(stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        spec = (await client.get("/openapi.json")).json()
    lists = {
        path
        for path, operations in spec["paths"].items()
        if "{" not in path and "get" in operations
    }
    assert lists == set(LISTS) | NOT_LISTED, "add the new list route to LISTS (or NOT_LISTED)"


async def test_lists_show_another_tenant_nothing_of_the_victims(stack, victim) -> None:
    attacker = await register(stack)
    secrets_of_the_victim = {
        value for key, value in victim["ids"].items() if key not in GENERIC_IDS
    } | {
        victim["admin"].username,
        victim["member"].username,
        victim["admin"].tenant_name,
        victim["api_token"],
    }
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=20) as client:
        for path, filters in LISTS.items():
            for params in ({}, {k: v.format(**victim["ids"]) for k, v in filters.items()}):
                response = await client.get(path, params=params, headers=attacker.headers)
                assert response.status_code < 500, f"{path} {params}: {response.text[:300]}"
                if response.status_code >= 400:
                    assert response.headers["content-type"].startswith("application/problem+json")
                leaked = [s for s in secrets_of_the_victim if s in response.text]
                assert not leaked, f"{path} {params} shows the victim's {leaked}"
        # The victim's own lists do show them: the check above looks in the right places.
        own = await client.get(
            "/api/v1/containers",
            params={"device": victim["ids"]["key"]},
            headers=victim["admin"].headers,
        )
        assert victim["ids"]["container_id"] in own.text

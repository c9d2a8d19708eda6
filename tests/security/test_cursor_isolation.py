"""A list's cursor is the tenant's own: another tenant handing in the victim's next-page
cursor, on every paged list of the API, is refused (400 ``invalid_cursor``) and shown none
of the victim's rows, nor any of its own placed around them."""

import httpx

from tests.conftest import ONE_DATABASE
from tests.security.probe_nodes import offline_device
from tests.support.migrations import store_migration
from tests.support.users import register

pytestmark = ONE_DATABASE

PAGED = [
    "/api/v1/tokens",
    "/api/v1/audit",
    "/api/v1/containers",
    "/api/v1/artifacts",
    "/api/v1/alert-rules",
    "/api/v1/migrations",
    "/api/v1/devices",
]


async def two_of_everything(client: httpx.AsyncClient, headers: dict[str, str], key: str) -> None:
    for n in range(2):
        made = [
            await client.post("/api/v1/tokens", json={"name": f"t{n}"}, headers=headers),
            await client.post(
                "/api/v1/containers",
                json={"device": key, "name": f"web{n}", "image": "edgecloud/busybox:latest"},
                headers=headers,
            ),
            await client.post(
                "/api/v1/artifacts", files={"file": (f"f{n}.sh", b"echo\n")}, headers=headers
            ),
            await client.post(
                "/api/v1/alert-rules",
                json={"target_kind": "device", "target": key, "metric": "offline"},
                headers=headers,
            ),
        ]
        assert all(r.status_code in (201, 202) for r in made), [r.text for r in made]


async def test_a_victims_cursor_is_refused_on_every_paged_list(stack, api, enrol) -> None:
    victim, attacker = await register(stack), await register(stack)
    keys = {}
    for account in (victim, attacker):
        # Two devices each, so that the device list has a next page too.
        keys[account.tenant_id] = [
            await offline_device(stack, api, await enrol(), tenant_id=account.tenant_id)
            for _ in range(2)
        ]
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        for account in (victim, attacker):
            await two_of_everything(client, account.headers, keys[account.tenant_id][0])
            containers = (await client.get("/api/v1/containers", headers=account.headers)).json()[
                "items"
            ]
            for container in containers:
                await store_migration(
                    stack, tenant_id=account.tenant_id, container_id=container["id"]
                )
        for path in PAGED:
            first = await client.get(path, params={"limit": 1}, headers=victim.headers)
            assert first.status_code == 200, f"{path}: {first.text}"
            cursor = first.json()["next_cursor"]
            assert cursor, f"{path} has one page only: the test cannot check it"
            own = await client.get(
                path, params={"limit": 1, "cursor": cursor}, headers=victim.headers
            )
            assert own.status_code == 200, f"{path}: {own.text}"
            stolen = await client.get(
                path, params={"limit": 100, "cursor": cursor}, headers=attacker.headers
            )
            assert stolen.status_code == 400, f"{path} took the victim's cursor: {stolen.text}"
            assert stolen.json()["code"] == "invalid_cursor"

"""A migration over the 6LoWPAN mesh: n1 (the source) loses its WAN in the middle of moving a
container to its neighbour n2, and the move completes over their shaped lowpan link (the
peer channel to n2's broker at its mesh address, n1's uplink through n2's relay)."""

import asyncio

import httpx
import pytest

from tests.conftest import eventually
from tests.support.stack import Stack
from tests.support.testbed import TestbedFleet, reachable_stack_of_module
from tests.support.users import register
from tests.testbed.test_migration import AGENT_ENV, inspect, make_container, measuring, migrate

pytestmark = pytest.mark.stack

# A cloud side of this module's own, as in test_migration.py.
stack = reachable_stack_of_module

APP_BYTES = 400_000
"""/app's size: about 12 s on a 256 kbit/s WAN, so the cut lands in it; the rest over the
mesh (250 kbit/s, 2 % loss) takes a few seconds more."""
SLOW_WAN_KBIT = 256


def link_bytes(testbed: TestbedFleet, node: str, interface: str) -> int:
    total = 0
    for direction in ("rx_bytes", "tx_bytes"):
        path = f"/sys/class/net/{interface}/statistics/{direction}"
        total += int(testbed.bed.exec(node, ["cat", path]).stdout.strip())
    return total


async def test_a_wan_cut_during_a_migration_completes_over_the_mesh(
    testbed: TestbedFleet, stack: Stack, api: httpx.AsyncClient, client: httpx.AsyncClient, enrol
) -> None:
    n2 = testbed.start_agent("n2", token=await enrol(), fusion=True, env=AGENT_ENV)
    n1 = testbed.start_agent("n1", token=await enrol(), fusion=True, env=AGENT_ENV)
    await measuring(api, n1, n2)
    device = (await api.get(f"/api/v1/devices/{n2.key}")).json()
    mesh_address = testbed.bed.lowpan_address("n2", "n1")
    assert device["peer_urls"][1] == f"mqtt://[{mesh_address}]:1883", device["peer_urls"]
    user = await register(stack)
    for agent in (n1, n2):
        granted = await api.post(
            f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id}
        )
        assert granted.status_code == 201, granted.text
    container = await make_container(client, user, n1.key, "meshmover")
    name = container["name"]
    wrote = testbed.bed.docker(
        "n1", "exec", name, "sh", "-c", f"head -c {APP_BYTES} /dev/urandom > /app/blob"
    )
    assert wrote.returncode == 0, wrote.stderr
    digest = testbed.bed.docker("n1", "exec", name, "sha256sum", "/app/blob").stdout.split()[0]
    mesh = testbed.bed.interface("n1", "n2")

    testbed.bed.degrade("n1", "wan", rate_kbit=SLOW_WAN_KBIT)
    try:
        answer = await migrate(client, user, container, device=n2.key)
        assert answer.status_code == 202, answer.text
        migration_id = answer.json()["migration"]

        async def view() -> dict:
            found = await client.get(f"/api/v1/migrations/{migration_id}", headers=user.headers)
            assert found.status_code == 200, found.text
            return dict(found.json())

        async def sending_dependencies() -> bool:
            return any(step["name"] == "dependencies" for step in (await view())["steps"])

        await eventually(sending_dependencies, timeout=60, interval=0.05)
        await asyncio.sleep(2)  # into /app's transfer
        before = link_bytes(testbed, "n1", mesh)
        testbed.bed.cut("n1", "wan")

        async def ended() -> dict | None:
            seen = await view()
            return (
                None
                if seen["state"] in ("requested", "planning", "transferring", "activating")
                else seen
            )

        # The scheduler's call to n1 went down with n1's WAN session: it learns the outcome
        # when the router drops that session and it calls n1 again (over the mesh).
        migration = await eventually(ended, timeout=240, interval=0.5)
        over_mesh = link_bytes(testbed, "n1", mesh) - before
    finally:
        testbed.bed.restore("n1", "wan")
        testbed.bed.degrade("n1", "wan", rate_kbit=0)

    assert migration["state"] == "completed", migration
    moved = (await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)).json()
    assert moved["device"] == n2.key
    assert inspect(testbed, "n2", name)["State"]["Running"] is True
    assert inspect(testbed, "n1", name) is None
    carried = testbed.bed.docker("n2", "exec", name, "sha256sum", "/app/blob").stdout.split()[0]
    assert carried == digest
    # What was left of /app when the WAN went crossed the mesh.
    assert over_mesh > APP_BYTES // 4, over_mesh

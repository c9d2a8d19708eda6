"""A tenant sees only its own on a shared node (issue 20, point 6). Tenant B, hostile, rents
a container on the node tenant A uses too; the node's heartbeat lists both tenants'
containers (Docker names hold usernames), the node's own broker address and round trips to
its neighbours, one of them never granted to B. Through the public API (which the
dashboard's pages read too), B is shown the node, its own container there and its own
neighbour, nothing else. Operators keep seeing everything. The node speaks the WAMP
protocol itself (no Docker)."""

import httpx
import pytest

from edgecloud_contracts import uris
from edgecloud_contracts.events import DeviceStatusChanged
from tests.support.beats import heartbeat
from tests.support.stack import Stack
from tests.support.users import Account, register
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack

POLICY = {"pids_per_container": 512, "pids_total": 4096, "ports": [30000, 30099]}
BROKER = "mqtt://10.77.0.9:1883"


async def enrolled(stack: Stack, token: str, **beat: object) -> str:
    """A device known from one heartbeat (then offline)."""
    key = probe_key()
    async with device_session(stack, key=key, token=token) as uplink:
        await uplink.call(uris.HEARTBEAT, heartbeat(key, **beat), timeout=5)
    return key


async def granted(api: httpx.AsyncClient, key: str, *accounts: Account) -> None:
    for account in accounts:
        answer = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": account.tenant_id})
        assert answer.status_code == 201, answer.text


@pytest.fixture
async def shared(stack: Stack, api: httpx.AsyncClient, enrol) -> dict:
    """A node granted to A and B, a neighbour granted to B only, one granted to nobody."""
    a, b = await register(stack), await register(stack)
    bs_neighbour = await enrolled(stack, await enrol())
    strangers = await enrolled(stack, await enrol())
    key = probe_key()
    containers = [
        {"id": "a" * 64, "name": f"{a.username}-db", "image": "registry.a/secret-app:3",
         "state": "running", "tenant": a.tenant_id},
        {"id": "b" * 64, "name": f"{b.username}-web", "image": "edgecloud/busybox:latest",
         "state": "running", "tenant": b.tenant_id},
        {"id": "c" * 64, "name": "operator-exporter", "image": "prom/node-exporter",
         "state": "running"},
    ]  # fmt: skip
    device = heartbeat(key)["device"] | {"peer_url": BROKER, "policy": POLICY}
    async with device_session(stack, key=key, token=await enrol()) as uplink:
        beat = heartbeat(
            key,
            device=device,
            containers=containers,
            neighbours={bs_neighbour: 2.5, strangers: 4.0},
        )
        await uplink.call(uris.HEARTBEAT, beat, timeout=5)
    await granted(api, key, a, b)
    await granted(api, bs_neighbour, b)
    return {
        "a": a,
        "b": b,
        "key": key,
        "bs_neighbour": bs_neighbour,
        "strangers": strangers,
        "secrets": [a.username, "registry.a/secret-app", "a" * 64, "operator-exporter",
                    strangers, BROKER, "10.77.0.9"],
    }  # fmt: skip


async def test_a_tenant_is_shown_only_its_own_on_a_shared_node(
    stack: Stack, api: httpx.AsyncClient, shared: dict
) -> None:
    b: Account = shared["b"]
    key = shared["key"]
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        detail = await client.get(f"/api/v1/devices/{key}", headers=b.headers)
        listed = await client.get("/api/v1/devices", headers=b.headers)
    assert detail.status_code == 200, detail.text
    seen = detail.json()
    assert [c["name"] for c in seen["containers"]] == [f"{b.username}-web"]
    assert seen["neighbours"] == {shared["bs_neighbour"]: 2.5}
    assert seen["peer_url"] == ""
    assert seen["policy"]["ports"] == [30000, 30099]  # what B may publish: shown
    [in_list] = [d for d in listed.json()["items"] if d["key"] == key]
    assert (in_list["neighbours"], in_list["peer_url"]) == (seen["neighbours"], "")
    for answer in (detail, listed):
        for secret in shared["secrets"]:
            assert secret not in answer.text, secret

    # A sees its own, and no neighbour (none is granted to it).
    a: Account = shared["a"]
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        as_a = (await client.get(f"/api/v1/devices/{key}", headers=a.headers)).json()
    assert [c["name"] for c in as_a["containers"]] == [f"{a.username}-db"]
    assert as_a["neighbours"] == {}

    # The operator sees the whole node.
    everything = (await api.get(f"/api/v1/devices/{key}")).json()
    assert len(everything["containers"]) == 3
    assert set(everything["neighbours"]) == {shared["bs_neighbour"], shared["strangers"]}
    assert everything["peer_url"] == BROKER


def test_device_events_name_no_containers_and_no_neighbours() -> None:
    """The live stream passes device events on to every tenant granted the device
    (gateway/events/hub.py): were they to carry a node's containers or neighbours, the hub
    would have to cut them as the registry's views do."""
    assert set(DeviceStatusChanged.model_fields) == {
        "key", "id", "status", "previous", "link", "reason", "at",
    }  # fmt: skip

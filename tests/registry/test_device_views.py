"""What the registry shows of a device, and to whom: the node's policy as its last full
heartbeat gave it, and for a tenant only its own containers, no broker address and no
neighbour it was not granted. In process, on the registry's real (SQLite) schema; the
hostile tenant through the public API is in tests/security/test_device_views.py."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.devices import DeviceDetail
from edgecloud_contracts.heartbeat import CompactBeat, ContainerState, DeviceInfo, NodePolicy
from edgecloud_registry.devices import schemas, service
from edgecloud_registry.devices.models import Device
from edgecloud_registry.devices.visibility import audience_of
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import Identity

from .test_alerts import OPERATOR_ID, grant, new_device, tenant
from .test_ingest import beat

POLICY = {"pids_per_container": 512, "pids_total": 4096, "ports": [30000, 30099]}


async def record(sessions: async_sessionmaker[AsyncSession], key: str, **fields: Any) -> None:
    async with transaction(sessions) as session:
        await service.record_heartbeats(
            session=session,
            received=[service.ReceivedBeat(beat(key, 2, **fields), None, utcnow())],
            missed_heartbeats=3,
            sample_metrics_for=set(),
        )


async def seen(
    sessions: async_sessionmaker[AsyncSession], key: str, caller: Identity
) -> DeviceDetail:
    async with transaction(sessions) as session:
        device = await service.get_device(session=session, caller=caller, key=key)
        return schemas.to_detail(device, await audience_of(session=session, caller=caller))


def info_with(key: str, policy: dict[str, Any] | None) -> dict[str, Any]:
    device = beat(key, 1).device.model_dump(mode="json")
    return {**device, "policy": policy}


async def test_the_policy_of_the_last_full_heartbeat_is_kept(sessions) -> None:
    key = await new_device(sessions)
    assert (await seen(sessions, key, OPERATOR_ID)).policy is None  # an agent before policies

    await record(sessions, key, device=info_with(key, POLICY))
    shown = (await seen(sessions, key, OPERATOR_ID)).policy
    assert shown == NodePolicy.model_validate(POLICY)
    assert shown is not None
    assert shown.internet  # its default

    # A compact beat on the mesh says nothing of the device: the registry completes it
    # with what it stored (devices/rpc.py), so the policy stays.
    async with sessions() as session:
        device = await session.get(Device, key)
        assert device is not None
        stored = DeviceInfo.model_validate(
            {name: getattr(device, name) for name in DeviceInfo.model_fields}
        )
    compact = CompactBeat(s=3, i=30, m=(1.0, 0.1, 1, 1))
    async with transaction(sessions) as session:
        await service.record_heartbeats(
            session=session,
            received=[service.ReceivedBeat(compact.expand(stored, []), None, utcnow())],
            missed_heartbeats=3,
            sample_metrics_for=set(),
        )
    assert (await seen(sessions, key, OPERATOR_ID)).policy == shown

    await record(sessions, key, device=info_with(key, {**POLICY, "ports": None}))
    replaced = (await seen(sessions, key, OPERATOR_ID)).policy
    assert replaced is not None
    assert replaced.ports is None


async def test_a_tenant_sees_only_its_own_on_a_shared_node(sessions) -> None:
    ann, bob = tenant(), tenant()
    shared, bobs_other, strangers = [await new_device(sessions) for _ in range(3)]
    for key in (shared, bobs_other):
        await grant(sessions, key, bob)
    await grant(sessions, shared, ann)
    containers = [
        ContainerState(id="a1", name="ann-db", image="ann/x:1", state="up", tenant=ann.tenant_id),
        ContainerState(id="b1", name="bob-web", image="busybox", state="up", tenant=bob.tenant_id),
        ContainerState(id="n1", name="node-exporter", image="prom/node", state="up"),
    ]
    await record(
        sessions,
        shared,
        device={**info_with(shared, POLICY), "peer_url": "mqtt://10.0.0.7:1883"},
        containers=[c.model_dump() for c in containers],
        neighbours={bobs_other: 3.0, strangers: 4.0},
    )

    as_bob = await seen(sessions, shared, bob)
    assert [c.name for c in as_bob.containers] == ["bob-web"]
    assert as_bob.neighbours == {bobs_other: 3.0}
    assert as_bob.peer_url == ""
    assert as_bob.policy == NodePolicy.model_validate(POLICY)  # what it may ask for: shown

    as_ann = await seen(sessions, shared, ann)
    assert [c.name for c in as_ann.containers] == ["ann-db"]
    assert as_ann.neighbours == {}

    everything = await seen(sessions, shared, OPERATOR_ID)
    assert [c.name for c in everything.containers] == ["ann-db", "bob-web", "node-exporter"]
    assert everything.neighbours == {bobs_other: 3.0, strangers: 4.0}
    assert everything.peer_url == "mqtt://10.0.0.7:1883"

    # The list view is cut the same way.
    async with transaction(sessions) as session:
        listed, _ = await service.list_devices(session=session, caller=bob, limit=100, cursor=None)
        audience = await audience_of(session=session, caller=bob)
        views = {d.key: schemas.to_view(d, audience) for d in listed}
    assert set(views) == {shared, bobs_other}
    assert views[shared].neighbours == {bobs_other: 3.0}
    assert views[shared].peer_url == ""

"""Which peers a node is asked to measure (registry/devices/peers.py), on the registry's
real (SQLite) schema: the quiet ones too, lately silent, so that the migration-scheduler
hears whether a node the cloud lost is still reached by its neighbours."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.heartbeat import MAX_NEIGHBOURS, DeviceInfo, DeviceStatus
from edgecloud_registry.devices.models import Device
from edgecloud_registry.devices.peers import QUIET_HORIZON, PeerDirectory
from edgecloud_servicekit.db import transaction, utcnow
from tests.support.databases import migrated_sessions


@pytest.fixture
async def sessions(tmp_path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with migrated_sessions(tmp_path, "edgecloud_registry") as factory:
        yield factory


def device(key: str, status: DeviceStatus, *, silent_for: timedelta = timedelta(0)) -> Device:
    now = utcnow()
    return Device(
        key=key, id=f"device-{key}", name=key, mac="02:00:00:00:00:01", location="lab",
        arch="x86_64",
        os="Debian", kernel="6.1", cpu_count=2, memory_total=1 << 30, disk_total=1 << 34,
        peer_url=f"mqtt://{key}:1883", status=status.value, status_changed_at=now,
        first_seen=now, last_seen=now - silent_for,
    )  # fmt: skip


def asking(key: str) -> DeviceInfo:
    return DeviceInfo(
        key=key, id=f"device-{key}", name=key, mac="02:00:00:00:00:01", location="lab",
        arch="x86_64",
        os="Debian", kernel="6.1", cpu_count=2, memory_total=1 << 30, disk_total=1 << 34,
    )  # fmt: skip


async def test_quiet_nodes_are_measured_after_the_online_ones(sessions) -> None:
    async with transaction(sessions) as session:
        session.add_all(
            [
                device("a_online", DeviceStatus.ONLINE),
                device("b_quiet", DeviceStatus.OFFLINE, silent_for=timedelta(minutes=3)),
                device("c_degraded", DeviceStatus.DEGRADED),
                device("d_retired", DeviceStatus.OFFLINE, silent_for=QUIET_HORIZON * 2),
                *(device(f"z_{n:02d}", DeviceStatus.ONLINE) for n in range(MAX_NEIGHBOURS)),
            ]
        )
    directory = PeerDirectory(sessions)
    peers = await directory.near(asking("a_online"))
    assert len(peers) == MAX_NEIGHBOURS
    assert "a_online" not in peers  # not itself
    assert "c_degraded" in peers
    assert "b_quiet" not in peers  # the online ones come first and fill the list

    few = PeerDirectory(sessions)
    async with transaction(sessions) as session:
        for n in range(MAX_NEIGHBOURS):
            await session.delete(await session.get(Device, f"z_{n:02d}"))
    assert list(await few.near(asking("a_online"))) == ["c_degraded", "b_quiet"]


async def test_a_peer_reached_over_several_links_is_named_with_its_addresses(sessions) -> None:
    mesh = device("b_mesh", DeviceStatus.ONLINE)
    mesh.peer_urls = ["mqtt://b_mesh:1883", "mqtt://[fd00:1::2]:1883"]
    async with transaction(sessions) as session:
        session.add_all([device("a_wan_only", DeviceStatus.ONLINE), mesh])
    directory = PeerDirectory(sessions)
    peers = await directory.near(asking("c_asking"))
    assert set(peers) == {"a_wan_only", "b_mesh"}
    # Only for those with more than one way to them.
    assert directory.addresses(peers) == {"b_mesh": mesh.peer_urls}

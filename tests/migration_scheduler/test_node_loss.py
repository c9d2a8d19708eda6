"""Telling a lost node from an outage of the cloud (moves/watchdog.py). The registry, the
orchestrator and the router session are stood in for here: what is tested is the decision
on the answers they give; the testbed runs the real cold restart (tests/testbed)."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from edgecloud_migration_scheduler.moves.watchdog import NodeLossWatch
from edgecloud_servicekit.internal_http import ServiceAnswer
from edgecloud_servicekit.problems import Unavailable

LOST_AFTER_S = 60.0
A_WHILE = timedelta(seconds=90)
"""Silent past the 60 s window, and lately: a loss, or part of an outage."""
LONG_AGO = datetime.now(UTC) - timedelta(days=30)


def device(
    key: str,
    status: str,
    *,
    neighbours: dict[str, float] | None = None,
    last_seen: datetime | None = None,
) -> dict:
    return {
        "key": key,
        "id": key,
        "name": key,
        "mac": "02:00:00:00:00:01",
        "location": "lab",
        "arch": "x86_64",
        "os": "Debian",
        "kernel": "6.1",
        "cpu_count": 2,
        "memory_total": 1 << 30,
        "disk_total": 1 << 34,
        "status": status,
        "link": None if status == "offline" else "wan",
        # Read when the test runs, not when the module was collected minutes earlier.
        "last_seen": (last_seen or datetime.now(UTC) - A_WHILE).isoformat(),
        "metrics": {"cpu_percent": 5.0, "memory_used": 1 << 28, "disk_free": 1 << 33},
        "neighbours": neighbours or {},
    }


class FakeService:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.failure: Exception | None = None

    async def request(self, method: str, path: str, **_: Any) -> ServiceAnswer:
        if self.failure is not None:
            raise self.failure
        return ServiceAnswer(200, json.dumps(self.answers[path]).encode())


class FakeLink:
    connected = True


class FakeCoordinator:
    def __init__(self) -> None:
        self.restarted: list[tuple[str, str, str]] = []

    async def cold_restart(self, *, container_id: str, tenant_id: str, lost: Any) -> bool:
        self.restarted.append((container_id, tenant_id, lost.key))
        return True


def watch(
    devices: list[dict], *, healthy_window_s: float = 0.0, share: float = 0.5
) -> tuple[NodeLossWatch, FakeCoordinator, FakeService, FakeLink]:
    coordinator, link = FakeCoordinator(), FakeLink()
    registry = FakeService({"/v1/devices": {"items": devices, "next_cursor": None}})
    orchestrator = FakeService(
        {
            f"/v1/nodes/{d['key']}/containers": [{"id": f"c-{d['key']}", "tenant": "t1"}]
            for d in devices
        }
    )
    found = NodeLossWatch(
        coordinator=coordinator,  # type: ignore[arg-type]
        registry=registry,  # type: ignore[arg-type]
        orchestrator=orchestrator,  # type: ignore[arg-type]
        link=link,  # type: ignore[arg-type]
        lost_after_s=LOST_AFTER_S,
        check_every_s=1,
        max_lost_share=share,
        healthy_window_s=healthy_window_s,
    )
    return found, coordinator, registry, link


def fleet() -> list[dict]:
    """n1 silent for a while, n2 and n3 online."""
    return [device("n1", "offline"), device("n2", "online"), device("n3", "online")]


async def test_a_silent_node_nobody_sees_is_lost_and_its_containers_restart_once() -> None:
    found, coordinator, _, _ = watch(fleet())
    assert await found.check() == ["n1"]
    await found.settled()  # the restarts run side by side
    assert coordinator.restarted == [("c-n1", "t1", "n1")]
    await found.check()
    await found.settled()
    assert coordinator.restarted == [("c-n1", "t1", "n1")]


async def test_a_node_its_neighbours_still_reach_is_not_lost() -> None:
    devices = [device("n1", "offline"), device("n2", "online", neighbours={"n1": 1.2})]
    found, coordinator, _, _ = watch(devices)
    assert await found.check() == []
    assert coordinator.restarted == []


async def test_many_silent_nodes_are_an_outage_not_lost_nodes() -> None:
    devices = [device("n1", "offline"), device("n2", "offline"), device("n3", "online")]
    found, coordinator, _, _ = watch(devices)
    assert await found.check() == []
    assert coordinator.restarted == []


async def test_nothing_moves_until_the_control_plane_was_healthy_long_enough() -> None:
    found, coordinator, registry, link = watch(fleet(), healthy_window_s=3600)
    assert await found.check() == []  # healthy only from now on
    # The router session or the database away: the wait starts again afterwards.
    link.connected = False
    assert await found.check() == []
    link.connected = True
    registry.failure = Unavailable("the registry's database is paused", code="database_unavailable")
    assert await found.check() == []
    registry.failure = None
    assert await found.check() == []
    assert coordinator.restarted == []


async def test_nodes_retired_long_ago_are_not_an_outage() -> None:
    devices = [
        device("n1", "offline"),
        device("old1", "offline", last_seen=LONG_AGO),
        device("old2", "offline", last_seen=LONG_AGO),
        device("n2", "online"),
    ]
    found, coordinator, _, _ = watch(devices)
    assert "n1" in await found.check()
    await found.settled()
    assert ("c-n1", "t1", "n1") in coordinator.restarted


async def test_a_node_asleep_as_announced_is_not_lost_before_its_contact_and_the_window() -> None:
    """A duty-cycled node, silent longer than the window, whose announced next contact is
    still to come (or came less than a window ago): asleep, not lost. Past both: lost."""
    now = datetime.now(UTC)
    for next_contact, lost in [
        (now + timedelta(minutes=10), []),
        (now - timedelta(seconds=LOST_AFTER_S / 2), []),
        (now - timedelta(seconds=LOST_AFTER_S * 2), ["n1"]),
    ]:
        sleeper = {**device("n1", "offline"), "next_contact_at": next_contact.isoformat()}
        found, _, _, _ = watch([sleeper, *fleet()[1:]])
        assert await found.check() == lost, next_contact
        await found.settled()


async def test_a_node_silent_for_less_than_the_window_is_not_lost() -> None:
    recently = datetime.now(UTC) - timedelta(seconds=20)
    devices = [device("n1", "offline", last_seen=recently), *fleet()[1:]]
    found, coordinator, _, _ = watch(devices)
    assert await found.check() == []
    assert coordinator.restarted == []

"""Fencing on the node, against the machine's Docker engine: a copy the cloud has placed
elsewhere is cut from its networks, stopped and kept with its /app; a failed check stops
nothing; kept copies go after their retention time or give way to a new placement.

The cloud's answer comes from a function standing in for ``edge.orchestrator.placements``
(the orchestrator's side is tested in tests/orchestrator/test_placements.py, the two
together on the testbed in tests/testbed/test_fencing.py)."""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgecloud_agent.deploy.fencing import Fencing
from edgecloud_agent.deploy.outbox import Outbox
from edgecloud_agent.deploy.reports import ReportSender
from edgecloud_agent.runtime.hardening import LABEL_GENERATION
from edgecloud_agent.uplink.errors import CallTimeout
from edgecloud_contracts import uris
from edgecloud_contracts.containers import Action, ContainerReport
from tests.agent.conftest import Node, command_for, docker, docker_inspect, make_spec

KEEP_S = 3600.0


class Cloud:
    """Answers the placement check: the ids in ``stale`` are placed elsewhere; while
    ``failing`` it does not answer at all."""

    def __init__(self, stale: set[str] | None = None) -> None:
        self.stale = stale or set()
        self.failing = False
        self.asked: list[dict[str, Any]] = []

    async def call(self, uri: str, *args: Any, timeout: float) -> object:
        assert uri == uris.PLACEMENTS
        if self.failing:
            raise CallTimeout(uri, timeout)
        self.asked.append(args[0])
        return {"placed": {}, "stale": sorted(self.stale)}


def fencing(node: Node, cloud: Cloud, *, retention_s: float = KEEP_S) -> Fencing:
    return Fencing(
        node=node.node,
        desired=node.desired,
        call=cloud.call,
        timeout_s=2,
        stop_timeout_s=1,
        retention_s=retention_s,
        hold_s=KEEP_S,
    )


async def running(node: Node, name: str) -> tuple[str, str]:
    spec = make_spec(name, command=["sh", "-c", "echo started-1; exec sleep 600"])
    result = await node.executor.execute(command_for(spec, Action.CREATE))
    assert result.ok, result.error
    wrote = docker("exec", name, "sh", "-c", "echo reading-7 > /app/state.txt")
    assert wrote.returncode == 0, wrote.stderr
    return spec.container_id, name


def app_file(name: str, tmp_path: Path) -> str:
    """/app/state.txt of the (stopped) container, as the tenant's copy-out reads it."""
    target = tmp_path / "state.txt"
    copied = docker("cp", f"{name}:/app/state.txt", str(target))
    assert copied.returncode == 0, copied.stderr
    return target.read_text()


async def test_a_copy_placed_elsewhere_is_cut_off_stopped_and_kept(
    node: Node, names: Callable[[], str], tmp_path: Path
) -> None:
    container_id, name = await running(node, names())
    assert docker_inspect(name)["Config"]["Labels"][LABEL_GENERATION] == "1"
    assert docker_inspect(name)["NetworkSettings"]["Networks"]
    cloud = Cloud(stale={container_id})

    assert await fencing(node, cloud).check() == [container_id]

    assert cloud.asked[0]["held"] == [{"container_id": container_id, "generation": 1}]
    seen = docker_inspect(name)
    assert seen["State"]["Running"] is False
    # Off every network: nothing of it reaches anyone, even should it be started again.
    assert seen["NetworkSettings"]["Networks"] == {}
    assert node.desired.get(container_id) is None
    kept = node.desired.kept_copy(container_id)
    assert kept is not None
    assert (kept.docker_name, kept.generation) == (name, 1)
    # Its /app and its logs stay for the tenant.
    assert app_file(name, tmp_path) == "reading-7\n"
    assert "started-1" in docker("logs", name).stdout

    # Asked again (the next join), the kept copy is not the cloud's business any more.
    assert await fencing(node, cloud).check() == []
    assert cloud.asked[1]["held"] == []


async def test_copies_that_are_the_nodes_own_run_on(node: Node, names: Callable[[], str]) -> None:
    container_id, name = await running(node, names())
    # The cloud names a copy this node does not hold: nothing to do with it.
    cloud = Cloud(stale={"c-somewhere-else"})
    assert await fencing(node, cloud).check() == []
    assert docker_inspect(name)["State"]["Running"] is True
    assert node.desired.get(container_id) is not None


async def test_a_check_the_cloud_does_not_answer_stops_nothing_and_is_made_again(
    node: Node, names: Callable[[], str]
) -> None:
    container_id, name = await running(node, names())
    cloud = Cloud(stale={container_id})
    cloud.failing = True
    fence = fencing(node, cloud)

    await fence.on_join(1)  # the join goes on
    assert docker_inspect(name)["State"]["Running"] is True
    assert not fence.reports_may_go(1)

    class Joined:
        connected, sessions_joined = True, 1

    cloud.failing = False
    repeating = asyncio.create_task(fence.run(Joined()))
    try:
        for _ in range(100):
            if fence.reports_may_go(1):
                break
            await asyncio.sleep(0.1)
    finally:
        repeating.cancel()
    assert fence.reports_may_go(1)
    assert docker_inspect(name)["State"]["Running"] is False


async def test_kept_copies_are_removed_when_their_time_is_up(
    node: Node, names: Callable[[], str]
) -> None:
    container_id, name = await running(node, names())
    fence = fencing(node, Cloud(stale={container_id}), retention_s=0.2)
    await fence.check()
    assert await fence.remove_expired() == []  # not yet
    await asyncio.sleep(0.3)
    assert await fence.remove_expired() == [container_id]
    assert docker("inspect", "--type", "container", name).returncode != 0
    assert node.desired.kept_copies() == []


async def test_a_new_placement_on_the_node_replaces_its_kept_copy(
    node: Node, names: Callable[[], str]
) -> None:
    container_id, name = await running(node, names())
    await fencing(node, Cloud(stale={container_id})).check()
    again = make_spec(name, container_id=container_id, generation=3)

    result = await node.executor.execute(command_for(again, Action.CREATE))

    assert result.ok, result.error
    seen = docker_inspect(name)
    assert seen["State"]["Running"] is True
    assert seen["Config"]["Labels"][LABEL_GENERATION] == "3"
    assert node.desired.kept_copy(container_id) is None
    assert node.desired.get(container_id) is not None
    assert docker("exec", name, "cat", "/app/state.txt").returncode != 0  # a fresh /app


class Uplink:
    link = "wan"
    connected = True
    sessions_joined = 1

    def __init__(self) -> None:
        self.sent: list[str] = []

    async def call(self, uri: str, *args: Any, timeout: float) -> object:
        self.sent.append(args[0]["kind"])
        return None


async def test_reports_wait_for_the_check(tmp_path: Path) -> None:
    uplink, held = Uplink(), True
    outbox = Outbox(tmp_path)
    sender = ReportSender(uplink=uplink, outbox=outbox, timeout_s=1, hold=lambda _: held)
    runner = asyncio.create_task(sender.run())
    try:
        sender.container(ContainerReport(container_id="c", docker_id="d", docker_name="n",
                                         image="i", state="running"))  # fmt: skip
        await asyncio.sleep(0.5)
        assert uplink.sent == []
        held = False
        for _ in range(50):
            if uplink.sent:
                break
            await asyncio.sleep(0.1)
        assert uplink.sent == ["container"]
    finally:
        runner.cancel()
        outbox.close()

"""A peer migration's bad input, on this machine's Docker engine and Mosquitto: a peer that
offers less than compute, says something out of turn or gives up midway, and a source
without the right token or with another container's configuration. The other side is
scripted here over a real PeerChannel; the scheduler's WAMP side is recorded (the whole move
between two nodes runs in tests/testbed/test_migration.py)."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.peers.channel import PeerChannel
from edgecloud_agent.peers.migration import PeerMigrations, topic_of
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.runtime.feeds import SensorFeeds
from edgecloud_agent.state.desired import DesiredState
from edgecloud_contracts.containers import ContainerSpec
from edgecloud_contracts.interfaces import DeviceMapping
from edgecloud_contracts.migrations import MigrationExpectation, MigrationOrder

from .conftest import containers_named, docker_inspect, make_spec

BROKER = "mqtt://127.0.0.1:1883"
SOURCE, TARGET = "node_source", "node_target"


class Node:
    """One agent's migration role, with its desired state; the scheduler's calls recorded."""

    def __init__(self, me: str, runtime: DockerRuntime, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.desired = DesiredState(state_dir)
        self.reports: list[Any] = []
        self.feeds = SensorFeeds(runtime=runtime, local_broker_url=BROKER)
        self.migrations = PeerMigrations(
            me=me,
            runtime=runtime,
            desired=self.desired,
            call=self._call,
            work_dir=state_dir,
            local_broker_url=BROKER,
            collaboration_level=2,
            feeds=self.feeds,
            contexts_dir=state_dir / "contexts",
        )

    async def _call(self, uri: str, *args: Any, timeout: float) -> Any:
        self.reports.append((uri, args))
        return {"ok": True}

    async def close(self) -> None:
        await self.migrations.close()
        await self.feeds.close()
        self.desired.close()


@pytest.fixture
async def source(runtime: DockerRuntime, tmp_path: Path) -> AsyncIterator[Node]:
    node = Node(SOURCE, runtime, tmp_path / "source")
    yield node
    await node.close()


@pytest.fixture
async def target(runtime: DockerRuntime, tmp_path: Path) -> AsyncIterator[Node]:
    node = Node(TARGET, runtime, tmp_path / "target")
    yield node
    await node.close()


async def running_container(
    runtime: DockerRuntime, node: Node, names: Callable[[], str]
) -> ContainerSpec:
    spec = make_spec(names())
    node.desired.put(spec, running=True)
    report = await runtime.create(spec)
    await runtime.start_created(report)
    return spec


def order_for(spec: ContainerSpec, migration: str) -> MigrationOrder:
    return MigrationOrder(
        migration=migration,
        container_id=spec.container_id,
        docker_name=spec.docker_name,
        target=TARGET,
        target_url=BROKER,
        token=secrets.token_urlsafe(24),
    )


async def scripted_peer(migration: str, answer: Callable[[str], tuple[str, dict] | None]) -> Any:
    """The target's side, answering each of the source's messages by its kind."""
    peer = PeerChannel(me=TARGET, broker_url=BROKER)
    await peer.connect(SOURCE, topic_of(migration))

    async def converse() -> None:
        try:
            while True:
                message = await peer.get_message(SOURCE, timeout=20)
                reply = answer(message.kind)
                if reply is not None:
                    await peer.send(*reply)
        finally:
            await peer.disconnect(end_session=True)

    return asyncio.create_task(converse())


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        # Announced level 2, offers 1 when asked: storage, no compute.
        (lambda kind: ("level", {"level": 1, "has_image": True}), "peer_level_too_low"),
        # Out of turn: a peer that claims it has started what it was never sent.
        (lambda kind: ("activated", {"activation_ms": 1.0}), "unexpected_message"),
        # Gives up after the configuration.
        (
            lambda kind: {
                "resource_request": ("level", {"level": 2, "has_image": True}),
                "configuration": ("failed", {"code": "disk_full", "message": "no room"}),
            }.get(kind),
            "disk_full",
        ),
    ],
    ids=["lower_level", "out_of_turn", "peer_gives_up"],
)
async def test_a_peer_that_cannot_take_it_leaves_the_source_serving(
    runtime: DockerRuntime,
    source: Node,
    names: Callable[[], str],
    answer: Callable[[str], Any],
    code: str,
) -> None:
    spec = await running_container(runtime, source, names)
    migration = f"m-{secrets.token_hex(6)}"
    peer = await scripted_peer(migration, answer)
    outcome = await source.migrations.start(order_for(spec, migration).model_dump(mode="json"))
    peer.cancel()
    await asyncio.gather(peer, return_exceptions=True)

    assert outcome["ok"] is False
    assert outcome["error_code"] == code
    assert outcome["rolled_back"] is True
    assert docker_inspect(spec.docker_name)["State"]["Running"] is True
    assert source.desired.get(spec.container_id) is not None


async def test_the_target_serves_no_one_without_the_token(
    runtime: DockerRuntime, target: Node, names: Callable[[], str]
) -> None:
    spec = make_spec(names())
    migration = f"m-{secrets.token_hex(6)}"
    expected = MigrationExpectation(
        migration=migration,
        container_id=spec.container_id,
        tenant_id=spec.tenant_id,
        source=SOURCE,
        token=secrets.token_urlsafe(24),
    )
    assert await target.migrations.expect(expected.model_dump(mode="json")) == {"ok": True}
    intruder = PeerChannel(me=SOURCE, broker_url=BROKER)
    await intruder.connect(TARGET, topic_of(migration))
    try:
        await intruder.send(
            "resource_request",
            {"token": secrets.token_urlsafe(24), "container_id": spec.container_id},
        )
        refusal = await intruder.get_message(TARGET, timeout=10)
    finally:
        await intruder.disconnect(end_session=True)
    assert (refusal.kind, refusal.body["code"]) == ("failed", "not_expected")
    assert target.desired.get(spec.container_id) is None


@asynccontextmanager
async def source_asking(target: Node, spec: ContainerSpec) -> AsyncIterator[PeerChannel]:
    """The source's side, scripted: the scheduler has announced the move of ``spec`` to
    ``target``, and the source has asked for resources with the right token and heard the
    target's level. Send it the configuration next."""
    migration, token = f"m-{secrets.token_hex(6)}", secrets.token_urlsafe(24)
    expected = MigrationExpectation(
        migration=migration,
        container_id=spec.container_id,
        tenant_id=spec.tenant_id,
        source=SOURCE,
        token=token,
    )
    assert await target.migrations.expect(expected.model_dump(mode="json")) == {"ok": True}
    sender = PeerChannel(me=SOURCE, broker_url=BROKER)
    await sender.connect(TARGET, topic_of(migration))
    try:
        await sender.send(
            "resource_request",
            {"token": token, "container_id": spec.container_id, "image": spec.image},
        )
        assert (await sender.get_message(TARGET, timeout=20)).kind == "level"
        yield sender
    finally:
        await sender.disconnect(end_session=True)


# Docker options a peer slips in beside the spec: the spec's model has no such fields.
SMUGGLED: dict[str, dict[str, Any]] = {
    "privileged": {"privileged": True},
    "binds": {"host_config": {"Binds": ["/:/host"]}},
    "cap_add": {"cap_add": ["SYS_ADMIN"]},
}


@pytest.mark.parametrize("offered", ["another_container", "devices", *SMUGGLED])
async def test_the_target_refuses_a_configuration_it_was_not_promised(
    runtime: DockerRuntime, target: Node, names: Callable[[], str], offered: str
) -> None:
    spec = make_spec(names())
    if offered == "another_container":  # not the container the scheduler announced
        other, code = make_spec(names()), "bad_configuration"
    elif offered == "devices":  # the node's own serial port, which no one declared for it
        serial = DeviceMapping(interface="serial0", host_path="/dev/ttyS0",
                               container_path="/dev/ttyS0")  # fmt: skip
        other, code = spec.model_copy(update={"devices": [serial]}), "holds_hardware"
    else:
        other, code = spec, "bad_configuration"
    configuration = {**other.model_dump(mode="json"), **SMUGGLED.get(offered, {})}
    async with source_asking(target, spec) as sender:
        await sender.send("configuration", {"spec": configuration})
        refusal = await sender.get_message(TARGET, timeout=10)
    assert (refusal.kind, refusal.body["code"]) == ("failed", code)
    assert target.desired.get(other.container_id) is None
    assert target.desired.get(spec.container_id) is None
    assert containers_named(spec.docker_name) == []

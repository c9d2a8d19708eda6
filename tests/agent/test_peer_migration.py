"""A peer migration's bad input, on this machine's Docker engine and a node broker (as
broker-setup makes it): a peer that offers less than compute, says something out of turn or
gives up midway, and a source without the right token or with another container's
configuration. The other side is scripted here over a real PeerChannel, with the login the
target made for it; the scheduler's WAMP side is recorded (the whole move between two nodes
runs in tests/testbed/test_migration.py)."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.peers.channel import PeerChannel
from edgecloud_agent.peers.migration import PeerMigrations, topic_of
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.sensors.feeds import SensorFeeds
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.uplink.errors import CommandRejected
from edgecloud_contracts import errors
from edgecloud_contracts.containers import ContainerSpec
from edgecloud_contracts.interfaces import DeviceMapping
from edgecloud_contracts.migrations import (
    BrokerLogin,
    MigrationExpectation,
    MigrationOrder,
    MigrationReady,
)
from tests.support.agents import release_disks
from tests.support.brokers import NodeBroker

from .conftest import containers_named, docker_inspect, isolation, make_spec

SOURCE, TARGET = "node_source", "node_target"


class Node:
    """One agent's migration role, with its desired state; the scheduler's calls recorded."""

    def __init__(self, me: str, node: Provisioner, broker: NodeBroker, state_dir: Path) -> None:
        self.desired = DesiredState(state_dir)
        self.node = node
        self.state_dir = state_dir
        self.reports: list[Any] = []

        async def app_root(container_id: str) -> Path:
            root = node.app_root(container_id)
            assert root is not None
            return root

        self.feeds = SensorFeeds(
            app_root=app_root, identities=node.identities, local_broker_url=broker.url
        )
        self.migrations = PeerMigrations(
            me=me,
            node=node,
            desired=self.desired,
            call=self._call,
            work_dir=state_dir,
            local_broker_url=broker.url,
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
        self.node.images.close()
        if self.node.identities is not None:
            self.node.identities.close()
        release_disks(self.state_dir)


@asynccontextmanager
async def peer_node(
    me: str, runtime: DockerRuntime, broker: NodeBroker, state_dir: Path
) -> AsyncIterator[Node]:
    node = Node(me, await isolation(runtime, state_dir, broker), broker, state_dir)
    try:
        yield node
    finally:
        await node.close()


@pytest.fixture
async def source(
    runtime: DockerRuntime, node_broker: NodeBroker, tmp_path: Path
) -> AsyncIterator[Node]:
    async with peer_node(SOURCE, runtime, node_broker, tmp_path / "source") as node:
        yield node


@pytest.fixture
async def target(
    runtime: DockerRuntime, node_broker: NodeBroker, tmp_path: Path
) -> AsyncIterator[Node]:
    async with peer_node(TARGET, runtime, node_broker, tmp_path / "target") as node:
        yield node


async def running_container(node: Node, names: Callable[[], str]) -> ContainerSpec:
    spec = make_spec(names())
    node.desired.put(spec, running=True)
    image_id = await node.node.images.find(spec)
    assert image_id is not None
    report = await node.node.create(spec, image_id)
    await node.node.runtime.start_created(report)
    return spec


def order_for(
    spec: ContainerSpec, migration: str, broker: NodeBroker, login: BrokerLogin
) -> MigrationOrder:
    return MigrationOrder(
        migration=migration,
        container_id=spec.container_id,
        docker_name=spec.docker_name,
        target=TARGET,
        target_url=broker.url,
        token=secrets.token_urlsafe(24),
        login=login,
    )


async def expect(target: Node, expectation: MigrationExpectation) -> BrokerLogin:
    """Announce a migration to the target as the scheduler does; the source's login."""
    ready = MigrationReady.model_validate(
        await target.migrations.expect(expectation.model_dump(mode="json"))
    )
    assert ready.ok
    assert ready.login is not None
    return ready.login


async def scripted_peer(
    migration: str,
    broker: NodeBroker,
    login: BrokerLogin,
    answer: Callable[[str], tuple[str, dict] | None],
) -> Any:
    """The target's side, answering each of the source's messages by its kind."""
    peer = PeerChannel(me=TARGET, broker_url=broker.url, login=login)
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
    source: Node,
    node_broker: NodeBroker,
    names: Callable[[], str],
    answer: Callable[[str], Any],
    code: str,
) -> None:
    spec = await running_container(source, names)
    migration = f"m-{secrets.token_hex(6)}"
    assert source.node.identities is not None  # on the one broker, as the target's would be
    for_target, for_source = await source.node.identities.migration(
        migration, me=TARGET, peer=SOURCE
    )
    peer = await scripted_peer(migration, node_broker, for_target, answer)
    order = order_for(spec, migration, node_broker, for_source)
    outcome = await source.migrations.start(order.model_dump(mode="json"))
    peer.cancel()
    await asyncio.gather(peer, return_exceptions=True)

    assert outcome["ok"] is False
    assert outcome["error_code"] == code
    assert outcome["rolled_back"] is True
    assert docker_inspect(spec.docker_name)["State"]["Running"] is True
    assert source.desired.get(spec.container_id) is not None


async def test_the_target_serves_no_one_without_the_token(
    target: Node, node_broker: NodeBroker, names: Callable[[], str]
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
    # Even with the source's login (the broker admits no one else on the migration's topics).
    login = await expect(target, expected)
    intruder = PeerChannel(me=SOURCE, broker_url=node_broker.url, login=login)
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
async def source_asking(
    target: Node, broker: NodeBroker, spec: ContainerSpec
) -> AsyncIterator[PeerChannel]:
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
    login = await expect(target, expected)
    sender = PeerChannel(me=SOURCE, broker_url=broker.url, login=login)
    await sender.connect(TARGET, topic_of(migration))
    try:
        shared = await target.node.images.shared(spec.image)
        await sender.send(
            "resource_request",
            {
                "token": token,
                "container_id": spec.container_id,
                "image": spec.image,
                "image_id": shared,
            },
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
    target: Node, node_broker: NodeBroker, names: Callable[[], str], offered: str
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
    async with source_asking(target, node_broker, spec) as sender:
        await sender.send("configuration", {"spec": configuration})
        refusal = await sender.get_message(TARGET, timeout=10)
    assert (refusal.kind, refusal.body["code"]) == ("failed", code)
    assert target.desired.get(other.container_id) is None
    assert target.desired.get(spec.container_id) is None
    assert containers_named(spec.docker_name) == []


# Migration ids a compromised relay could send: each would name the node's scratch
# directory (``in-<id>-…``, ``out-<id>-…``), its broker logins and its MQTT topic.
HOSTILE_MIGRATIONS = ["../", "..", ".", "/abs", "a/../../b", "a\x00b", "%2e%2e", "m+1", "#", ""]


async def test_migration_ids_and_names_off_the_node_are_refused_and_touch_nothing(
    source: Node, target: Node, node_broker: NodeBroker, names: Callable[[], str]
) -> None:
    """``migration.expect`` and ``migration.start`` with a hostile migration id (and a
    start with a hostile Docker name): ``edge.error.invalid_argument`` before anything is
    made: no scratch directory, nothing in either state directory, the container serves."""
    spec = await running_container(source, names)
    assert source.node.identities is not None
    _, login = await source.node.identities.migration(
        f"m-{secrets.token_hex(6)}", me=TARGET, peer=SOURCE
    )
    root = source.state_dir.parent
    before = set(root.rglob("*"))
    expectation = MigrationExpectation(
        migration="m-1",
        container_id=spec.container_id,
        tenant_id=spec.tenant_id,
        source=SOURCE,
        token=secrets.token_urlsafe(24),
    ).model_dump(mode="json")
    order = order_for(spec, "m-1", node_broker, login).model_dump(mode="json")
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = []
    for hostile in HOSTILE_MIGRATIONS:
        calls.append((target.migrations.expect, {**expectation, "migration": hostile}))
        calls.append((source.migrations.start, {**order, "migration": hostile}))
        calls.append((target.migrations.expect, {**expectation, "container_id": hostile}))
        calls.append((source.migrations.start, {**order, "container_id": hostile}))
    for hostile in ["../../volumes/x", "..", "a/b", "%2e%2e"]:
        calls.append((source.migrations.start, {**order, "docker_name": hostile}))
    for procedure, payload in calls:
        with pytest.raises(CommandRejected) as refused:
            await procedure(payload)
        assert refused.value.uri == errors.INVALID_ARGUMENT, payload
    assert set(root.rglob("*")) == before
    assert docker_inspect(spec.docker_name)["State"]["Running"] is True
    assert source.desired.get(spec.container_id) is not None

"""A peer migration's bad input, on this machine's Docker engine and a node broker (as
broker-setup makes it): a peer that offers less than compute, says something out of turn or
gives up midway; someone with the source's broker login but not the migration's key racing
the source; and a compromised source (it holds the key) trying to change what the target
creates or to plant another image. The other side is scripted here over a real
PeerChannel, with the login the target made for it; the scheduler's WAMP side is recorded
(the whole move between two nodes runs in tests/testbed/test_migration.py)."""

import asyncio
import contextlib
import io
import secrets
import tarfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.peers.channel import PeerChannel, PeerUnavailable
from edgecloud_agent.peers.migration import PeerMigrations, migration_key, topic_of
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.sensors.feeds import SensorFeeds
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.uplink.errors import CommandRejected
from edgecloud_contracts import errors
from edgecloud_contracts.containers import ContainerSpec, Limits
from edgecloud_contracts.interfaces import DeviceMapping
from edgecloud_contracts.migrations import (
    BrokerLogin,
    MigrationExpectation,
    MigrationOrder,
    MigrationReady,
)
from tests.conftest import eventually
from tests.support.agents import release_disks
from tests.support.brokers import NodeBroker

from .conftest import containers_named, docker, docker_inspect, isolation, make_spec

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


def new_key() -> str:
    """A migration's key, as the scheduler makes it."""
    return secrets.token_urlsafe(32)


def order_for(
    spec: ContainerSpec, migration: str, broker: NodeBroker, login: BrokerLogin, key: str
) -> MigrationOrder:
    return MigrationOrder(
        migration=migration,
        container_id=spec.container_id,
        docker_name=spec.docker_name,
        target=TARGET,
        target_url=broker.url,
        key=key,
        login=login,
    )


def expectation_for(
    spec: ContainerSpec, migration: str, key: str, image_id: str | None
) -> MigrationExpectation:
    """What the scheduler tells the target: the cloud's record of the container."""
    return MigrationExpectation(
        migration=migration,
        container_id=spec.container_id,
        tenant_id=spec.tenant_id,
        source=SOURCE,
        key=key,
        spec=spec,
        image_id=image_id,
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
    key: str,
) -> Any:
    """The target's side, answering each of the source's messages by its kind."""
    peer = PeerChannel(me=TARGET, key=migration_key(key), broker_url=broker.url, login=login)
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
    key = new_key()
    peer = await scripted_peer(migration, node_broker, for_target, answer, key)
    order = order_for(spec, migration, node_broker, for_source, key)
    outcome = await source.migrations.start(order.model_dump(mode="json"))
    peer.cancel()
    await asyncio.gather(peer, return_exceptions=True)

    assert outcome["ok"] is False
    assert outcome["error_code"] == code
    assert outcome["rolled_back"] is True
    assert docker_inspect(spec.docker_name)["State"]["Running"] is True
    assert source.desired.get(spec.container_id) is not None


def app_tar(content: bytes) -> bytes:
    """/app as the source sends it: one file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo("./data.txt")
        member.size = len(content)
        tar.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


@asynccontextmanager
async def announced(
    target: Node, spec: ContainerSpec, *, image_id: str | None = None
) -> AsyncIterator[tuple[str, str, BrokerLogin]]:
    """The scheduler has announced the move of ``spec`` (the cloud's record, with its
    image ``image_id``: by default the node's shared image of that name) to ``target``:
    the migration, its key and the source's login. The target's side is ended afterwards."""
    migration, key = f"m-{secrets.token_hex(6)}", new_key()
    if image_id is None:
        image_id = await target.node.images.shared(spec.image)
    login = await expect(target, expectation_for(spec, migration, key, image_id))
    try:
        yield migration, key, login
    finally:
        await target.migrations.close()


@asynccontextmanager
async def source_side(
    broker: NodeBroker, migration: str, key: str, login: BrokerLogin
) -> AsyncIterator[PeerChannel]:
    """The source's side of the conversation, scripted (sealed with ``key``)."""
    sender = PeerChannel(me=SOURCE, key=migration_key(key), broker_url=broker.url, login=login)
    await sender.connect(TARGET, topic_of(migration))
    try:
        yield sender
    finally:
        # The target forgets the login when the migration ends: nothing is left to end then.
        with contextlib.suppress(PeerUnavailable):
            await sender.disconnect(end_session=True)


async def ask(sender: PeerChannel, spec: ContainerSpec) -> dict[str, Any]:
    await sender.send("resource_request", {"container_id": spec.container_id})
    level = await sender.get_message(TARGET, timeout=20)
    assert level.kind == "level"
    return level.body


async def test_someone_without_the_key_racing_the_source_is_not_heard(
    target: Node, node_broker: NodeBroker, names: Callable[[], str]
) -> None:
    """They hold the source's login (read off the plain MQTT between the nodes) and get in
    first with their own /app and a whole conversation; the target hears none of it, and
    the source's move that follows goes through with the source's /app."""
    spec = make_spec(names())
    async with announced(target, spec) as (migration, key, login):
        async with source_side(node_broker, migration, new_key(), login) as intruder:
            await intruder.send("resource_request", {"container_id": spec.container_id})
            await intruder.send("configuration", {})
            await intruder.send("dependencies", {"image": False, "context": False})
            await intruder.send_file("app", app_tar(b"planted"))
            await intruder.send("activate", {})
        async with source_side(node_broker, migration, key, login) as source:
            assert (await ask(source, spec))["has_image"] is True
            await source.send("configuration", {})
            assert (await source.get_message(TARGET, timeout=20)).kind == "configuration_ok"
            await source.send("dependencies", {"image": False, "context": False})
            await source.send_file("app", app_tar(b"the tenant's own"))
            await source.send("activate", {})
            assert (await source.get_message(TARGET, timeout=60)).kind == "activated"
            await source.send("done", {"replay": []})
            await until_ended(target, migration)
    inspected = docker_inspect(spec.docker_name)
    assert inspected["State"]["Running"] is True
    assert read_app(spec.docker_name) == b"the tenant's own"
    # resource_request, configuration, dependencies, the file's head, chunk and end, activate
    assert target.migrations.refused == {"forged": 7}


async def until_ended(target: Node, migration: str) -> None:
    """Until the target has closed the migration (and counted what it refused)."""

    async def ended() -> bool:
        return migration not in target.migrations._expected

    await eventually(ended, timeout=20)


def read_app(docker_name: str) -> bytes:
    return docker("exec", docker_name, "cat", "/app/data.txt", check=True).stdout.encode()


# What a compromised source (it holds the key) sends in place of the cloud's record.
OTHER_SPECS: dict[str, dict[str, Any]] = {
    "other_limits": {"limits": Limits(memory=8 << 30, cpus=8, pids=32768).model_dump()},
    "every_sensor": {"subscriptions": ["#"]},
    "privileged": {"privileged": True},
}


@pytest.mark.parametrize("offered", list(OTHER_SPECS))
async def test_a_source_cannot_say_what_is_created(
    target: Node, node_broker: NodeBroker, names: Callable[[], str], offered: str
) -> None:
    spec = make_spec(names())
    async with (
        announced(target, spec) as (migration, key, login),
        source_side(node_broker, migration, key, login) as source,
    ):
        await ask(source, spec)
        mine = {**spec.model_dump(mode="json"), **OTHER_SPECS[offered]}
        await source.send("configuration", {"spec": mine})
        refusal = await source.get_message(TARGET, timeout=10)
    assert (refusal.kind, refusal.body["code"]) == ("failed", "bad_configuration")
    assert target.desired.get(spec.container_id) is None
    assert containers_named(spec.docker_name) == []


async def test_an_image_other_than_the_recorded_one_is_refused_unloaded(
    target: Node, node_broker: NodeBroker, names: Callable[[], str], tmp_path: Path
) -> None:
    """The cloud recorded another image than the one the source sends (its own build,
    say, or an image the attacker wants on every node it can reach)."""
    spec = make_spec(names())
    shared = await target.node.images.shared(spec.image)
    assert shared is not None
    archive = tmp_path / "image.tar"
    await target.node.images.save(shared, archive)
    recorded = "sha256:" + "ab" * 32
    async with (
        announced(target, spec, image_id=recorded) as (migration, key, login),
        source_side(node_broker, migration, key, login) as source,
    ):
        assert (await ask(source, spec))["has_image"] is False
        await source.send("configuration", {})
        await source.get_message(TARGET, kind="configuration_ok", timeout=10)
        await source.send("dependencies", {"image": True, "context": False})
        await source.send_file("image", archive)
        await source.send_file("app", app_tar(b"x"))
        await source.send("activate", {})
        refusal = await source.get_message(TARGET, timeout=60)
    assert (refusal.kind, refusal.body["code"]) == ("failed", "bad_image")
    assert target.desired.get(spec.container_id) is None
    assert containers_named(spec.docker_name) == []
    assert not await target.node.images.may_use(spec.tenant_id, "other/name", shared)


@pytest.mark.parametrize("wrong", ["another_container", "devices", "over_the_policy"])
async def test_the_target_refuses_an_expectation_it_cannot_honour(
    target: Node, names: Callable[[], str], wrong: str
) -> None:
    spec = make_spec(names())
    announced_as = spec
    if wrong == "another_container":
        announced_as = make_spec(names())
    elif wrong == "devices":  # only the orchestrator gives a container a node's devices
        serial = DeviceMapping(interface="serial0", host_path="/dev/ttyS0",
                               container_path="/dev/ttyS0")  # fmt: skip
        spec = announced_as = spec.model_copy(update={"devices": [serial]})
    else:
        pids = target.node.runtime.policy.pids_per_container + 1
        spec = announced_as = spec.model_copy(
            update={"limits": spec.limits.model_copy(update={"pids": pids})}
        )
    expectation = expectation_for(announced_as, f"m-{secrets.token_hex(6)}", new_key(), None)
    expectation = expectation.model_copy(update={"container_id": spec.container_id})
    with pytest.raises(CommandRejected):
        await target.migrations.expect(expectation.model_dump(mode="json"))
    assert target.desired.get(spec.container_id) is None


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
    expectation = expectation_for(spec, "m-1", new_key(), None).model_dump(mode="json")
    order = order_for(spec, "m-1", node_broker, login, new_key()).model_dump(mode="json")
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

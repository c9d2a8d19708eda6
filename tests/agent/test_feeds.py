"""Sensor feeds against a node broker (as broker-setup makes it) and this machine's Docker
engine: a feed stopped and started again while a sensor publishes fast loses no message
(each is acknowledged to the broker only once it is in the container's inbox, so the broker
gives the unwritten ones again)."""

import asyncio
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from edgecloud_agent.deploy.commands import CommandExecutor
from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.sensors.feeds import INBOX, SensorFeeds
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.state.journal import CommandJournal
from edgecloud_contracts.containers import Action, ContainerSpec
from edgecloud_contracts.migrations import BrokerLogin
from tests.support.brokers import NodeBroker, client_with

from .conftest import command_for, make_spec

MESSAGES = 1500
BURST = 50  # messages sent back to back, then a 20 ms pause: bursts of about 2,500 msg/s


async def publish_numbered(broker: NodeBroker, login: BrokerLogin, topic: str) -> None:
    async with client_with("127.0.0.1", broker.port, login) as sensor:
        for number in range(MESSAGES):
            await sensor.publish(topic, json.dumps({"n": number}), qos=1)
            if number % BURST == BURST - 1:
                await asyncio.sleep(0.02)


def numbers_in(inbox_text: str) -> set[int]:
    return {json.loads(json.loads(line)["payload"])["n"] for line in inbox_text.splitlines()}


async def test_a_feed_restarted_under_a_fast_sensor_loses_nothing(
    runtime: DockerRuntime,
    provisioner: Provisioner,
    create: Callable[..., Any],
    node_broker: NodeBroker,
    names: Callable[[], str],
) -> None:
    topic = f"sensors/feeds-{secrets.token_hex(4)}/t"
    spec = make_spec(names(), subscriptions=[topic])
    await runtime.start_created(await create(spec))
    assert provisioner.identities is not None
    sensor = await provisioner.identities.sensor(f"feeds-{secrets.token_hex(4)}", [topic])
    root = provisioner.app_root(spec.container_id)
    assert root is not None

    async def app_root(container_id: str) -> Path:
        assert root is not None
        return root

    feeds = SensorFeeds(
        app_root=app_root, identities=provisioner.identities, local_broker_url=node_broker.url
    )
    inbox = root / INBOX
    try:
        await feeds.reconcile([spec])
        # Subscribed (the inbox is opened after the SUBSCRIBE is acknowledged): its broker
        # session now keeps what it misses. Before that, a message would have no session to
        # wait in; on a loaded machine the first subscription can take seconds.
        for _ in range(600):
            if inbox.exists():
                break
            await asyncio.sleep(0.05)
        assert inbox.exists(), "the feed did not subscribe within 30 s"
        publishing = asyncio.create_task(publish_numbered(node_broker, sensor, topic))
        restarts = 0
        while not publishing.done():
            await asyncio.sleep(0.07)
            if restarts % 2:  # as a migration's source and target do
                await feeds.hold(spec.container_id)
                feeds.release(spec.container_id, start=spec)
            else:  # as the desired state does when the container stops and starts
                await feeds.reconcile([])
                await feeds.reconcile([spec])
            restarts += 1
        await publishing
        seen: set[int] = set()
        for _ in range(200):
            seen = numbers_in(inbox.read_text())
            if len(seen) == MESSAGES:
                break
            await asyncio.sleep(0.05)
        assert restarts >= 5
        assert sorted(set(range(MESSAGES)) - seen) == []
    finally:
        await feeds.close()


async def test_an_unsubscribe_cuts_a_containers_sensor_feed_for_good(
    runtime: DockerRuntime,
    provisioner: Provisioner,
    create: Callable[..., Any],
    node_broker: NodeBroker,
    names: Callable[[], str],
    tmp_path: Path,
) -> None:
    """A grant withdrawn: the node's unsubscribe stops the container's feed, deletes its
    feed login from the broker (the login is refused from then on) and keeps it stopped:
    neither the next reconciliation, nor a migration's release, nor the node's record of
    the container feeds it again. A second container on the same topic is the witness
    that the sensor went on publishing."""
    topic = f"sensors/withdrawn-{secrets.token_hex(4)}/t"
    cut, witness = (make_spec(names(), subscriptions=[topic]) for _ in range(2))
    for spec in (cut, witness):
        await runtime.start_created(await create(spec))
    identities = provisioner.identities
    assert identities is not None
    sensor = await identities.sensor(f"withdrawn-{secrets.token_hex(4)}", [topic])
    roots = {spec.container_id: provisioner.app_root(spec.container_id) for spec in (cut, witness)}

    async def app_root(container_id: str) -> Path:
        root = roots[container_id]
        assert root is not None
        return root

    def inbox_of(spec: ContainerSpec) -> Path:
        root = roots[spec.container_id]
        assert root is not None
        return root / INBOX

    async def published(value: int, *, into: list[ContainerSpec]) -> None:
        """Publish ``value`` until every inbox of ``into`` has it."""
        async with client_with("127.0.0.1", node_broker.port, sensor) as client:
            await client.publish(topic, json.dumps({"n": value}), qos=1)
        for _ in range(600):
            if all(
                inbox_of(s).exists() and value in numbers_in(inbox_of(s).read_text()) for s in into
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{value} did not reach {[s.docker_name for s in into]}")

    feeds = SensorFeeds(app_root=app_root, identities=identities, local_broker_url=node_broker.url)
    state = tmp_path / "state"
    state.mkdir()
    journal, desired = CommandJournal(state), DesiredState(state)
    executor = CommandExecutor(node=provisioner, journal=journal, desired=desired, feeds=feeds)
    try:
        for spec in (cut, witness):
            desired.put(spec, running=True)
        await feeds.reconcile([cut, witness])
        for _ in range(600):
            if inbox_of(cut).exists() and inbox_of(witness).exists():
                break
            await asyncio.sleep(0.05)
        await published(1, into=[cut, witness])
        old_login = await feeds.login(cut)

        unsubscribe = command_for(cut, Action.UNSUBSCRIBE)
        result = await executor.execute(unsubscribe)
        assert result.ok, result
        assert cut.container_id not in feeds.running()
        recorded = desired.get(cut.container_id)
        assert recorded is not None
        assert recorded.spec.subscriptions == []
        assert recorded.running  # kept running: only its sensors are cut
        assert cut.container_id not in identities.owners("feed")
        with pytest.raises(aiomqtt.MqttCodeError):
            async with client_with("127.0.0.1", node_broker.port, old_login):
                pass

        # A reconciliation or a migration's release that still holds the old spec.
        await feeds.reconcile([cut, witness])
        feeds.release(cut.container_id, start=cut)
        assert cut.container_id not in feeds.running()
        await published(2, into=[witness])
        await published(3, into=[witness])
        assert numbers_in(inbox_of(cut).read_text()) == {1}
        # Repeated (at least once delivery): the first answer.
        assert (await executor.execute(unsubscribe)).replayed
    finally:
        await feeds.close()
        journal.close()
        desired.close()

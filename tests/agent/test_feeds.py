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

from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.sensors.feeds import INBOX, SensorFeeds
from edgecloud_contracts.migrations import BrokerLogin
from tests.support.brokers import NodeBroker, client_with

from .conftest import make_spec

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

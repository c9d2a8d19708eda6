"""Sensor feeds against this machine's Mosquitto and Docker engine: a feed stopped and started
again while a sensor publishes fast loses no message (each is acknowledged to the broker only
once it is in the container's inbox, so the broker gives the unwritten ones again)."""

import asyncio
import json
import secrets
from collections.abc import Callable

import aiomqtt

from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.runtime.feeds import INBOX, SensorFeeds

from .conftest import make_spec

BROKER = "mqtt://127.0.0.1:1883"
MESSAGES = 1500
BURST = 50  # messages sent back to back, then a 20 ms pause: bursts of about 2,500 msg/s


async def publish_numbered(topic: str) -> None:
    async with aiomqtt.Client("127.0.0.1", 1883, identifier=f"sensor-{secrets.token_hex(4)}") as c:
        for number in range(MESSAGES):
            await c.publish(topic, json.dumps({"n": number}), qos=1)
            if number % BURST == BURST - 1:
                await asyncio.sleep(0.02)


def numbers_in(inbox_text: str) -> set[int]:
    return {json.loads(json.loads(line)["payload"])["n"] for line in inbox_text.splitlines()}


async def test_a_feed_restarted_under_a_fast_sensor_loses_nothing(
    runtime: DockerRuntime, names: Callable[[], str]
) -> None:
    topic = f"sensors/feeds-{secrets.token_hex(4)}/t"
    spec = make_spec(names(), subscriptions=[topic])
    await runtime.start_created(await runtime.create(spec))
    feeds = SensorFeeds(runtime=runtime, local_broker_url=BROKER)
    inbox = await runtime.volume_path(spec.container_id) / INBOX
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
        publishing = asyncio.create_task(publish_numbered(topic))
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

"""The node broker's shipped configuration (infra/node/mosquitto.conf, as the testbed's nodes
run it), here on loopback: a broker killed with SIGKILL while it holds queued QoS 2
messages for a persistent session gives every one of them after its restart."""

import asyncio
import json
import secrets
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest

from infra.testbed.daemons import mosquitto_config
from tests.support.processes import free_port

MESSAGES = 500
HELD_S = 0.3
"""How long the broker holds the queue before it is killed: a few turns of its loop."""


class Broker:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = mosquitto_config(directory, port=self.port, address="127.0.0.1")
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                ["mosquitto", "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    started = Broker(tmp_path)
    started.start()
    try:
        yield started
    finally:
        started.stop()


async def connect(broker: Broker, identifier: str, **options: object) -> aiomqtt.Client:
    for _ in range(50):  # the broker may still be opening its port
        client = aiomqtt.Client("127.0.0.1", broker.port, identifier=identifier, **options)
        try:
            await client.__aenter__()
            return client
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"no broker on port {broker.port}: {broker.log.read_text()[-2000:]}")


async def test_queued_qos2_messages_survive_a_killed_broker(broker: Broker) -> None:
    topic, reader = f"sensors/{secrets.token_hex(4)}", f"reader-{secrets.token_hex(4)}"
    subscriber = await connect(broker, reader, clean_session=False)
    await subscriber.subscribe(topic, qos=2)
    await subscriber.__aexit__(None, None, None)  # away: the broker queues for it now

    publisher = await connect(broker, f"sensor-{secrets.token_hex(4)}")
    for number in range(MESSAGES):
        await publisher.publish(topic, json.dumps({"n": number}), qos=2)  # until PUBCOMP
    await publisher.__aexit__(None, None, None)
    await asyncio.sleep(HELD_S)
    broker.kill()
    broker.start()

    received: set[int] = set()
    subscriber = await connect(broker, reader, clean_session=False)
    try:
        async with asyncio.timeout(10):
            async for message in subscriber.messages:
                received.add(json.loads(bytes(message.payload))["n"])
                if len(received) == MESSAGES:
                    break
    except TimeoutError:
        pass
    finally:
        await subscriber.__aexit__(None, None, None)
    assert sorted(set(range(MESSAGES)) - received) == []

"""The node broker as ``edgecloud-agent broker-setup`` configures it (the testbed's nodes run
the same), here on loopback: a broker killed with SIGKILL while it holds queued QoS 2
messages for a persistent session gives every one of them after its restart; and it admits
only the identities the agent made, each for what it was made for."""

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from edgecloud_agent.broker.control import DynsecAdmin
from edgecloud_agent.broker.identities import BrokerIdentities
from edgecloud_agent.broker.setup import ADMIN_SECRET_FILE, ADMIN_USER, read_admin_secret
from edgecloud_contracts.migrations import BrokerLogin
from infra.testbed.daemons import mosquitto_config
from tests.support.processes import free_port

MESSAGES = 500
HELD_S = 0.3
"""How long the broker holds the queue before it is killed: a few turns of its loop."""


class Broker:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.secret = directory / ADMIN_SECRET_FILE
        self.config = mosquitto_config(
            directory, listeners=[("127.0.0.1", self.port)], admin_secret=self.secret
        )
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.identities: BrokerIdentities | None = None

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
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    started = Broker(tmp_path)
    started.start()
    secret = read_admin_secret(started.secret)
    assert secret is not None
    admin = DynsecAdmin(
        url=f"mqtt://127.0.0.1:{started.port}", username=ADMIN_USER, password=secret
    )
    started.identities = BrokerIdentities(admin=admin, state_dir=tmp_path)
    try:
        await connect(started, None)  # up: the port answers
        yield started
    finally:
        started.identities.close()
        started.stop()


async def connect(
    broker: Broker, login: BrokerLogin | None, **options: object
) -> aiomqtt.Client | None:
    """A connected client (None for a login of None: the broker just had to answer)."""
    for _ in range(50):  # the broker may still be opening its port
        client = aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            identifier=login.client_id if login else f"probe-{secrets.token_hex(4)}",
            username=login.username if login else None,
            password=login.password if login else None,
            **options,
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttCodeError:
            if login is None:
                return None  # answered: refused, as anonymous clients are
            raise
        except aiomqtt.MqttError:
            await asyncio.sleep(0.1)
            continue
        if login is None:
            await client.__aexit__(None, None, None)
            raise AssertionError("the node broker let an anonymous client in")
        return client
    raise AssertionError(f"no broker on port {broker.port}: {broker.log.read_text()[-2000:]}")


async def arrivals(client: aiomqtt.Client, within_s: float = 1.0) -> list[str]:
    """The topics of what reaches ``client`` within ``within_s``."""
    seen: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            async for message in client.messages:
                seen.append(str(message.topic))
    return seen


async def test_queued_qos2_messages_survive_a_killed_broker(broker: Broker) -> None:
    assert broker.identities is not None
    topic = f"sensors/{secrets.token_hex(4)}"
    reader = await broker.identities.feed(f"c-{secrets.token_hex(4)}", [topic])
    sensor = await broker.identities.sensor(f"s{secrets.token_hex(4)}", [topic])
    subscriber = await connect(broker, reader, clean_session=False)
    assert subscriber is not None
    await subscriber.subscribe(topic, qos=2)
    await subscriber.__aexit__(None, None, None)  # away: the broker queues for it now

    publisher = await connect(broker, sensor)
    assert publisher is not None
    for number in range(MESSAGES):
        await publisher.publish(topic, json.dumps({"n": number}), qos=2)  # until PUBCOMP
    await publisher.__aexit__(None, None, None)
    await asyncio.sleep(HELD_S)
    broker.kill()
    broker.start()

    received: set[int] = set()
    subscriber = await connect(broker, reader, clean_session=False)
    assert subscriber is not None
    try:
        async with asyncio.timeout(10):
            async for message in subscriber.messages:
                received.add(json.loads(bytes(message.payload))["n"])  # type: ignore[arg-type]
                if len(received) == MESSAGES:
                    break
    except TimeoutError:
        pass
    finally:
        await subscriber.__aexit__(None, None, None)
    assert sorted(set(range(MESSAGES)) - received) == []


async def test_only_the_agents_identities_get_in_each_for_its_topics(broker: Broker) -> None:
    """Defence: ``allow_anonymous false`` and the dynamic security plugin's identities, each
    bound to its client id and limited to its topics (without the plugin, every check below
    passes for an anonymous client: the configuration before it let anyone in)."""
    assert broker.identities is not None
    topic = f"sensors/{secrets.token_hex(4)}"
    feed = await broker.identities.feed(f"c-{secrets.token_hex(4)}", [topic])
    container = await broker.identities.container(f"c-{secrets.token_hex(4)}")
    mine = BrokerLogin(username=container.username, password=container.password,
                       client_id=container.client_id)  # fmt: skip
    assert await connect(broker, None) is None  # anonymous: refused
    wrong = mine.model_copy(update={"password": secrets.token_urlsafe(24)})
    with pytest.raises(aiomqtt.MqttCodeError):
        await connect(broker, wrong)
    # Its own login under the feed's client id: refused (no one takes a session over).
    with pytest.raises(aiomqtt.MqttCodeError):
        await connect(broker, mine.model_copy(update={"client_id": feed.client_id}))

    reader = await connect(broker, feed)
    tenant = await connect(broker, mine)
    assert reader is not None
    assert tenant is not None
    try:
        await reader.subscribe(topic, qos=1)
        await tenant.subscribe("#", qos=1)  # refused by the broker (SUBACK failure)
        # A container may publish neither the sensors' topics nor anyone's data but its own.
        await tenant.publish(topic, b"forged", qos=1)
        await tenant.publish("edgecloud/data/someone-else", b"{}", qos=1)
        await tenant.publish(container.topic, b'{"x": 1}', qos=1)
        assert await arrivals(reader) == []
        assert await arrivals(tenant) == []
    finally:
        await reader.__aexit__(None, None, None)
        await tenant.__aexit__(None, None, None)

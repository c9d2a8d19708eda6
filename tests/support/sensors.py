"""A sensor and a consuming application for peer migration tests and benchmarks: the sensor
publishes numbers to a node's broker, the application prints each number it is fed, and
the engines' logs tell which copy handled which number when."""

import asyncio
import secrets
import subprocess

import httpx

from edgecloud_contracts.migrations import BrokerLogin

from .brokers import client_with
from .processes import PYTHON
from .testbed import TestbedFleet

# Prints "handled <n>" for each sensor message fed to it (payload: the message's number).
CONSUMER = [
    "sh",
    "-c",
    "touch /app/inbox.jsonl; exec 3</app/inbox.jsonl; while true; do"
    ' if read -r line <&3; then n=${line##*\\"payload\\":\\"}; echo "handled ${n%%\\"*}";'
    " else sleep 0.05; fi; done",
]
SENSOR_TOPIC = "sensors/counter"


async def grant_sensor(
    client: httpx.AsyncClient, key: str, tenant_id: str, operator: dict[str, str] | None = None
) -> None:
    """Declare the sensor's topic on the node for the tenant (as the operator)."""
    answer = await client.put(
        f"/api/v1/devices/{key}/interfaces/counter",
        json={"kind": "sensor", "topic": SENSOR_TOPIC, "tenants": [tenant_id]},
        headers=operator,
    )
    answer.raise_for_status()


class HandledLog:
    """The numbers a container printed as handled on one node, followed live with the
    engine's timestamps (the source's copy is removed at the end of the move)."""

    def __init__(self, testbed: TestbedFleet, node: str, name: str) -> None:
        self.handled: list[tuple[str, int]] = []
        self._url = testbed.bed.node(node).engine.url
        self._name = name
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        process = await asyncio.create_subprocess_exec(
            "docker", "-H", self._url, "logs", "-f", "--timestamps", self._name,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        assert process.stdout is not None
        try:
            async for raw in process.stdout:
                at, _, text = raw.decode(errors="replace").strip().partition(" ")
                if text.startswith("handled ") and text[8:].isdigit():
                    self.handled.append((at, int(text[8:])))
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def sensor_login(testbed: TestbedFleet, node: str, topics: list[str]) -> BrokerLogin:
    """A login on the node's broker for a sensor publishing ``topics``, made as an operator
    makes one: ``edgecloud-agent sensor add`` run on the node, with the agent's settings."""
    here = testbed.bed.node(node)
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        **testbed.bed.agent_env(here),
    }
    topic_args = [word for topic in topics for word in ("--topic", topic)]
    added = subprocess.run(
        [*testbed.bed.nsenter(here), str(PYTHON), "-m", "edgecloud_agent", "sensor", "add",
         f"sensor-{secrets.token_hex(3)}", *topic_args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return BrokerLogin.model_validate_json(added.stdout)


async def publish_sequence(broker: str, count: int, *, per_s: float, login: BrokerLogin) -> None:
    """A sensor: numbers 0..count-1 to its broker at QoS 1, ``per_s`` a second."""
    async with client_with(broker, 1883, login) as sensor:
        for number in range(count):
            await sensor.publish(SENSOR_TOPIC, str(number), qos=1)
            await asyncio.sleep(1 / per_s)

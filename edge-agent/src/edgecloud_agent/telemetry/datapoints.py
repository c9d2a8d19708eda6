"""Collected data: the numbers applications publish, forwarded to the cloud in batches.

An application publishes by printing ``EDGECLOUD_DATA {"name": number, ...}`` on its
output, or by sending that JSON object to its data topic on the node's MQTT broker
(``EDGECLOUD_DATA_TOPIC``, with the login in its ``EDGECLOUD_MQTT_*`` variables). The agent
follows the output of each running tenant container and subscribes to the broker's data
topics under a login of its own; points are sent about once a second.

A point published on the broker is credited to the container whose identity sent it: the
topic names the identity, and the broker lets only that identity publish there
(:mod:`edgecloud_agent.broker.identities`). Nothing is credited by a container's name.
"""

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from pydantic import ValidationError

from edgecloud_contracts.containers import DATA_PREFIX, ContainerReport, DataBatch, DataPoint

from ..broker.identities import DATA_PREFIX as DATA_TOPIC_PREFIX
from ..broker.identities import DATA_TOPICS, BrokerError, BrokerIdentities
from ..runtime.docker import DockerRuntime
from ..runtime.errors import RuntimeFailure
from ..state.desired import DesiredState

logger = logging.getLogger(__name__)

MAX_POINTS_PER_REPORT = 2000
START_SLACK = timedelta(seconds=1)
MAX_PENDING = 20_000
"""Points kept while the cloud cannot take them; the oldest go first beyond this."""


def parse(payload: str, at: datetime) -> list[DataPoint]:
    """The points in one publication; anything malformed is dropped whole."""
    try:
        values = json.loads(payload)
        if not isinstance(values, dict):
            return []
        return [
            DataPoint(at=at, name=name, value=value)
            for name, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
    except (ValueError, ValidationError):
        return []


class DataCollector:
    def __init__(
        self,
        *,
        runtime: DockerRuntime,
        desired: DesiredState,
        send: Callable[[list[DataBatch]], None],
        mqtt_url: str,
        identities: BrokerIdentities | None = None,
        owner: str = "agent",
        flush_every_s: float = 1.0,
    ) -> None:
        """``identities`` make the collector's own login on the broker (and say whose a
        data topic is); without them it reads applications' output only."""
        self._runtime = runtime
        self._desired = desired
        self._identities = identities
        self._owner = owner
        self._send = send
        self._mqtt_url = mqtt_url
        self._flush_every = flush_every_s
        self._pending: defaultdict[str, list[DataPoint]] = defaultdict(list)
        self._pending_count = 0
        self._following: dict[str, asyncio.Task[None]] = {}
        self._started_at = datetime.now(UTC)
        self.dropped = 0

    def observe(self, report: ContainerReport) -> None:
        """A container's state: follow the output of those that run, from their start
        (or from this agent's own start: what came before was read by the last one)."""
        container_id, docker_id = report.container_id, report.docker_id
        if container_id is None or report.state != "running" or docker_id in self._following:
            return
        # Docker stamps StartedAt after the process is already running: its first lines
        # can be older, so look a little further back.
        started = (report.started_at or self._started_at) - START_SLACK
        since = max(started, self._started_at)
        task = asyncio.create_task(
            self._follow(container_id, docker_id, since), name=f"data {docker_id}"
        )
        self._following[docker_id] = task
        task.add_done_callback(lambda _: self._following.pop(docker_id, None))

    def add(self, container_id: str, points: list[DataPoint]) -> None:
        if not points:
            return
        if self._pending_count + len(points) > MAX_PENDING:
            self.dropped += len(points)
            return
        self._pending[container_id].extend(points)
        self._pending_count += len(points)

    async def run(self, ready: Callable[[], Awaitable[object]] | None = None) -> None:
        """Send what was collected, about once a second; listen to the broker once
        ``ready`` returns (the node has joined the cloud: a node that is refused never
        opens a broker connection it would then have to wait out when it exits). Runs
        until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            if self._mqtt_url and self._identities is not None:
                tasks.create_task(self._listen(ready), name="data-mqtt")
            while True:
                await asyncio.sleep(self._flush_every)
                self.flush()

    def flush(self) -> None:
        budget, batches = MAX_POINTS_PER_REPORT, []
        for container_id in list(self._pending):
            points = self._pending[container_id]
            taken, rest = points[:budget], points[budget:]
            if taken:
                batches.append(DataBatch(container_id=container_id, points=taken))
                budget -= len(taken)
                self._pending_count -= len(taken)
            if rest:
                self._pending[container_id] = rest
            else:
                del self._pending[container_id]
            if budget <= 0:
                break
        if batches:
            self._send(batches)

    async def close(self) -> None:
        tasks = list(self._following.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, container_id: str, docker_id: str, since: datetime) -> None:
        try:
            async for line in self._runtime.follow_logs(docker_id, since=since):
                if line.text.startswith(DATA_PREFIX):
                    self.add(container_id, parse(line.text[len(DATA_PREFIX) :], line.at))
        except RuntimeFailure as err:
            logger.debug("stopped following %s: %s", docker_id, err)

    async def _listen(self, ready: Callable[[], Awaitable[object]] | None) -> None:
        if ready is not None:
            await ready()
        # Imported here: a node configured without a broker never loads the MQTT client.
        import aiomqtt

        assert self._identities is not None
        address = urlsplit(self._mqtt_url)
        delay = 1.0
        while True:
            try:
                login = await self._identities.data(self._owner)
                async with aiomqtt.Client(
                    address.hostname or "127.0.0.1",
                    port=address.port or 1883,
                    identifier=login.client_id,
                    username=login.username,
                    password=login.password,
                    timeout=5,
                ) as client:
                    await client.subscribe(DATA_TOPICS, qos=1)
                    delay = 1.0
                    async for message in client.messages:
                        self._received(str(message.topic), message.payload)
            except (aiomqtt.MqttError, BrokerError) as err:
                logger.debug("node broker unavailable (%s); again in %.0f s", err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _received(self, topic: str, payload: object) -> None:
        assert self._identities is not None
        if not topic.startswith(DATA_TOPIC_PREFIX) or not isinstance(payload, bytes | bytearray):
            return
        container_id = self._identities.container_of(topic[len(DATA_TOPIC_PREFIX) :])
        if container_id is None or self._desired.get(container_id) is None:
            return  # no container of ours sent it: nobody to credit it to
        points = parse(bytes(payload).decode(errors="replace"), datetime.now(UTC))
        self.add(container_id, points)

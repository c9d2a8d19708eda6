"""Sensor feeds: the MQTT topics a container subscribes to, delivered into its app volume.

Tenant containers may have no network at all (``AGENT_CONTAINER_NETWORK=none``), so the
agent reads the container's ``subscriptions`` from the broker for it and appends each
message as one JSON line (``{"topic", "payload"}``) to ``/app/inbox.jsonl``, which the
application follows (``tail -F``).

The agent reads them in a persistent MQTT session (QoS 1, ``clean_session=False``) whose
client id is the container's own, not the node's: while no one reads, the broker keeps the
messages, and whoever connects next under that id gets them. That is how a container keeps
its sensors across a migration (edgecloud_agent.peers.migration): the source stops reading,
the target connects to the source's broker under the same id and reads on, and sensors go
on publishing to the broker they always used.

A message is acknowledged to the broker only once its line is in the inbox (paho's manual
acknowledgement), so a feed stopped at any moment (a move, a stop, a reconnect) leaves the
broker holding every message not yet written, and the session's next reader gets it again.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import aiomqtt

from edgecloud_contracts.containers import ContainerSpec

from .docker import DockerRuntime
from .errors import RuntimeFailure

logger = logging.getLogger(__name__)

INBOX = "inbox.jsonl"
REPLAY_S = 3.0
"""How far back a moving container's next copy is given its lines again: past what any
application still had to read when its copy stopped."""
REPLAY_MAX = 2000
RECONCILE_EVERY_S = 1.0
RETRY_MAX_S = 10.0


def client_id(container_id: str) -> str:
    return f"edgecloud-feed-{container_id}"[:64]


class SensorFeeds:
    """One feed per running container that has subscriptions, kept in step with the desired
    state; a container being migrated is ``held``: no feed of it runs here meanwhile."""

    def __init__(self, *, runtime: DockerRuntime, local_broker_url: str) -> None:
        self._runtime = runtime
        self._local_broker_url = local_broker_url
        self._feeds: dict[str, asyncio.Task[None]] = {}
        self._held: set[str] = set()
        self._recent: dict[str, deque[tuple[float, str]]] = {}
        self.delivered = 0

    def running(self) -> set[str]:
        return {cid for cid, task in self._feeds.items() if not task.done()}

    async def reconcile(self, specs: Iterable[ContainerSpec]) -> None:
        """Feed exactly the given containers (those meant to run), minus the held ones."""
        wanted = {s.container_id: s for s in specs if s.subscriptions}
        for container_id in list(self._feeds):
            if container_id not in wanted or container_id in self._held:
                await self._stop(container_id)
        for container_id, spec in wanted.items():
            task = self._feeds.get(container_id)
            if container_id not in self._held and (task is None or task.done()):
                self._feeds[container_id] = asyncio.create_task(
                    self._feed(spec), name=f"feed-{container_id}"
                )

    async def hold(self, container_id: str) -> None:
        """Stop feeding the container and keep it stopped (its broker session keeps what
        comes meanwhile) until :meth:`release`."""
        self._held.add(container_id)
        await self._stop(container_id)

    def recent(self, container_id: str, *, within_s: float = REPLAY_S) -> list[str]:
        """The lines given to the container in the last ``within_s``: the ones its
        application may not have read yet when it stopped (for the next copy to replay)."""
        since = time.monotonic() - within_s
        return [line for at, line in self._recent.get(container_id, ()) if at >= since]

    async def replay(self, container_id: str, lines: list[str]) -> None:
        """Give the container lines another copy of it was given (repeats are the
        application's to drop by the message's own sequence)."""
        if lines:
            inbox = await self._runtime.volume_path(container_id) / INBOX
            with inbox.open("a", encoding="utf-8") as out:
                out.writelines(line + "\n" for line in lines)

    def release(self, container_id: str, *, start: ContainerSpec | None = None) -> None:
        """Let the container be fed again; ``start``: at once, from its spec's broker (the
        next reconciliation would otherwise, within a second)."""
        self._held.discard(container_id)
        task = self._feeds.get(container_id)
        if start is not None and start.subscriptions and (task is None or task.done()):
            self._feeds[container_id] = asyncio.create_task(
                self._feed(start), name=f"feed-{container_id}"
            )

    async def close(self) -> None:
        for container_id in list(self._feeds):
            await self._stop(container_id)

    def forget(self, container_id: str) -> None:
        self._recent.pop(container_id, None)

    async def _stop(self, container_id: str) -> None:
        task = self._feeds.pop(container_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _feed(self, spec: ContainerSpec) -> None:
        broker = urlsplit(spec.sensor_broker or self._local_broker_url)
        delay = 0.5
        while True:
            try:
                inbox = await self._runtime.volume_path(spec.container_id) / INBOX
                async with aiomqtt.Client(
                    broker.hostname or "127.0.0.1",
                    broker.port or 1883,
                    identifier=client_id(spec.container_id),
                    protocol=aiomqtt.ProtocolVersion.V311,
                    clean_session=False,
                    keepalive=10,
                    timeout=10,
                    max_queued_incoming_messages=100_000,
                ) as client:
                    # aiomqtt does not expose paho's manual acknowledgement; its client does.
                    client._client.manual_ack_set(True)
                    for topic in spec.subscriptions:
                        await client.subscribe(topic, qos=1)
                    delay = 0.5
                    logger.info("feeding %s from %s", spec.docker_name, broker.netloc)
                    recent = self._recent.setdefault(spec.container_id, deque(maxlen=REPLAY_MAX))
                    with inbox.open("a", encoding="utf-8") as out:
                        async for message in client.messages:
                            line = _line(str(message.topic), message.payload)
                            out.write(line + "\n")
                            out.flush()
                            if message.qos > 0:
                                client._client.ack(message.mid, message.qos)
                            recent.append((time.monotonic(), line))
                            self.delivered += 1
            except (aiomqtt.MqttError, RuntimeFailure, OSError) as err:
                logger.info("feed of %s: %s; again in %.1f s", spec.docker_name, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)


def _line(topic: str, payload: object) -> str:
    data = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
    try:
        text = data.decode()
        return json.dumps({"topic": topic, "payload": text}, separators=(",", ":"))
    except UnicodeDecodeError:
        return json.dumps({"topic": topic, "payload_hex": data.hex()}, separators=(",", ":"))


async def run_feeds(feeds: SensorFeeds, meant_to_run: Callable[[], list[ContainerSpec]]) -> None:
    """Keep the feeds in step with the containers meant to run; runs until cancelled."""
    while True:
        with contextlib.suppress(RuntimeFailure):
            await feeds.reconcile(meant_to_run())
        await asyncio.sleep(RECONCILE_EVERY_S)

"""Sensor feeds: the MQTT topics a container subscribes to, delivered into its app volume.

Tenant containers may have no network at all (``AGENT_CONTAINER_NETWORK=none``), so the
agent reads the container's ``subscriptions`` from the broker for it and appends each
message as one JSON line (``{"topic", "payload"}``) to ``/app/inbox.jsonl``, which the
application follows (``tail -F``).

The agent reads them in a persistent MQTT session (QoS 1, ``clean_session=False``) under
the container's own feed login (:mod:`edgecloud_agent.broker.identities`: allowed only the
container's granted topics, with a random client id no one else may use): while no one
reads, the broker keeps the messages, and whoever connects next under that login gets them.
That is how a container keeps its sensors across a migration (edgecloud_agent.peers.migration):
the source stops reading and hands the login over, the target connects to the source's broker
with it and reads on, and sensors go on publishing to the broker they always used.

A message is acknowledged to the broker only once its line is in the inbox (paho's manual
acknowledgement), so a feed stopped at any moment (a move, a stop, a reconnect) leaves the
broker holding every message not yet written, and the session's next reader gets it again.

The inbox is the tenant's file: it is opened without following links, refused unless it is
a regular file, and written from a worker thread (:mod:`edgecloud_agent.isolation.volume_files`).
A feed whose inbox is not a regular file stops writing, keeps its messages in the broker, and
tries again later; every other feed goes on.
"""

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt

from edgecloud_contracts.containers import ContainerSpec
from edgecloud_contracts.migrations import BrokerLogin

from ..broker.identities import BrokerError, BrokerIdentities
from ..isolation import volume_files
from ..runtime.errors import RuntimeFailure, UnsafeFile

logger = logging.getLogger(__name__)

INBOX = "inbox.jsonl"
REPLAY_S = 3.0
"""How far back a moving container's next copy is given its lines again: past what any
application still had to read when its copy stopped."""
REPLAY_MAX = 2000
RECONCILE_EVERY_S = 1.0
RETRY_MAX_S = 10.0


AppRoot = Callable[[str], Awaitable[Path]]
"""A container id -> its /app as the node sees it."""


class SensorFeeds:
    """One feed per running container that has subscriptions, kept in step with the desired
    state; a container being migrated is ``held``: no feed of it runs here meanwhile."""

    def __init__(
        self,
        *,
        app_root: AppRoot,
        identities: BrokerIdentities | None,
        local_broker_url: str,
    ) -> None:
        self._app_root = app_root
        self._identities = identities
        self._local_broker_url = local_broker_url
        self._unsafe: set[str] = set()
        self._feeds: dict[str, asyncio.Task[None]] = {}
        self._held: set[str] = set()
        self._cut: set[str] = set()
        self._recent: dict[str, deque[tuple[float, str]]] = {}
        self.delivered = 0

    def running(self) -> set[str]:
        return {cid for cid, task in self._feeds.items() if not task.done()}

    async def reconcile(self, specs: Iterable[ContainerSpec]) -> None:
        """Feed exactly the given containers (those meant to run), minus the held ones."""
        wanted = {
            s.container_id: s for s in specs if s.subscriptions and s.container_id not in self._cut
        }
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

    async def cut(self, container_id: str) -> None:
        """Stop feeding the container for good (its grant on the device was withdrawn):
        no reconciliation and no migration's release starts its feed again in this
        process; the node's record of it keeps no subscriptions across restarts."""
        self._cut.add(container_id)
        self._held.discard(container_id)
        await self._stop(container_id)
        self._recent.pop(container_id, None)

    def recent(self, container_id: str, *, within_s: float = REPLAY_S) -> list[str]:
        """The lines given to the container in the last ``within_s``: the ones its
        application may not have read yet when it stopped (for the next copy to replay)."""
        since = time.monotonic() - within_s
        return [line for at, line in self._recent.get(container_id, ()) if at >= since]

    async def replay(self, container_id: str, lines: list[str]) -> None:
        """Give the container lines another copy of it was given (repeats are the
        application's to drop by the message's own sequence)."""
        if lines:
            root = await self._app_root(container_id)
            await asyncio.to_thread(volume_files.append_lines, root, INBOX, lines)

    def release(self, container_id: str, *, start: ContainerSpec | None = None) -> None:
        """Let the container be fed again; ``start``: at once, from its spec's broker (the
        next reconciliation would otherwise, within a second)."""
        self._held.discard(container_id)
        task = self._feeds.get(container_id)
        if container_id in self._cut:
            return
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

    async def login(self, spec: ContainerSpec) -> BrokerLogin:
        """The container's feed login: the one a migration's source handed over for its
        broker, or this node's own."""
        if self._identities is None:
            raise BrokerError("this node has no broker identities (broker-setup)")
        if spec.sensor_broker:
            remote = self._identities.remote_feed(spec.container_id)
            if remote is None:
                raise BrokerError(f"no login for {spec.sensor_broker}")
            return remote
        return await self._identities.feed(spec.container_id, list(spec.subscriptions))

    async def _feed(self, spec: ContainerSpec) -> None:
        broker = urlsplit(spec.sensor_broker or self._local_broker_url)
        delay = 0.5
        while True:
            try:
                login = await self.login(spec)
                inbox = await asyncio.to_thread(
                    volume_files.open_for_append, await self._app_root(spec.container_id), INBOX
                )
                self._note_safe(spec)
                try:
                    await self._read_into(spec, broker.hostname, broker.port, login, inbox)
                finally:
                    os.close(inbox)
            except UnsafeFile as err:
                self._note_unsafe(spec, err)
                await asyncio.sleep(RETRY_MAX_S)
            except (aiomqtt.MqttError, RuntimeFailure, BrokerError, OSError) as err:
                logger.info("feed of %s: %s; again in %.1f s", spec.docker_name, err, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            else:
                delay = 0.5

    async def _read_into(
        self,
        spec: ContainerSpec,
        host: str | None,
        port: int | None,
        login: BrokerLogin,
        inbox: int,
    ) -> None:
        async with aiomqtt.Client(
            host or "127.0.0.1",
            port or 1883,
            identifier=login.client_id,
            username=login.username,
            password=login.password,
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
            logger.info("feeding %s from %s:%s", spec.docker_name, host, port or 1883)
            recent = self._recent.setdefault(spec.container_id, deque(maxlen=REPLAY_MAX))
            async for message in client.messages:
                line = _line(str(message.topic), message.payload)
                await asyncio.to_thread(volume_files.write_all, inbox, (line + "\n").encode())
                if message.qos > 0:
                    client._client.ack(message.mid, message.qos)
                recent.append((time.monotonic(), line))
                self.delivered += 1

    def _note_unsafe(self, spec: ContainerSpec, err: UnsafeFile) -> None:
        """Said once, until the inbox is a file again."""
        if spec.container_id not in self._unsafe:
            self._unsafe.add(spec.container_id)
            logger.warning(
                "feed of %s stopped: %s; its messages wait in the broker",
                spec.docker_name,
                err.message,
                extra={"container_id": spec.container_id, "code": err.code},
            )

    def _note_safe(self, spec: ContainerSpec) -> None:
        if spec.container_id in self._unsafe:
            self._unsafe.discard(spec.container_id)
            logger.info("feed of %s writes its inbox again", spec.docker_name)


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

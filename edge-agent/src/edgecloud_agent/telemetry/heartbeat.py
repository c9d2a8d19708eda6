"""Sending a heartbeat every few seconds: who the node is, its load, its containers."""

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Protocol

from edgecloud_contracts import errors, uris
from edgecloud_contracts.heartbeat import (
    CompactBeat,
    ContainerState,
    Heartbeat,
    HeartbeatAck,
    Link,
)

from ..peers.neighbours import NeighbourProber
from ..runtime.docker import RuntimeUnavailable
from ..uplink.errors import CallFailed, CallTimeout, UplinkError
from .system import SystemProbe

logger = logging.getLogger(__name__)


class ContainerLister(Protocol):
    async def list_containers(self) -> list[ContainerState]: ...


class HeartbeatSender(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def link(self) -> str: ...

    @property
    def sessions_joined(self) -> int: ...

    @property
    def next_contact_at(self) -> datetime | None: ...

    def beat_acknowledged(self, session_number: int) -> None: ...

    def beat_unanswered(self) -> None: ...

    async def call(self, uri: str, *args: object, timeout: float) -> object: ...


def _essentials(containers: list[ContainerState]) -> list[tuple[str, str, str, str]]:
    return [(c.id, c.name, c.image, c.state) for c in containers]


class HeartbeatReporter:
    def __init__(
        self,
        *,
        uplink: HeartbeatSender,
        probe: SystemProbe,
        runtime: ContainerLister,
        interval_s: float,
        timeout_s: float,
        lowpan_interval_s: float | None = None,
        neighbours: NeighbourProber | None = None,
    ) -> None:
        self._uplink = uplink
        self._neighbours = neighbours
        self._lowpan_interval = lowpan_interval_s or interval_s
        self._probe = probe
        self._runtime = runtime
        self._interval = interval_s
        self._timeout = timeout_s
        # Counted from the start time: a restarted agent's beats still come after its
        # earlier ones, so the cloud can tell a late beat of a left session from a new one.
        self._seq = int(time.time())
        self._stopping = asyncio.Event()
        self._healthy = True
        self.sent = 0
        self.last_ack: HeartbeatAck | None = None
        self._acked_containers: list[ContainerState] | None = None
        """The containers as the cloud last acknowledged them (compact beats send changes)."""

    async def build(self) -> Heartbeat:
        try:
            containers = await self._runtime.list_containers()
            runtime = "docker"
        except RuntimeUnavailable:
            containers, runtime = [], "unavailable"
        self._seq += 1
        return Heartbeat(
            device=self._probe.info(),
            metrics=self._probe.metrics(),
            containers=containers,
            runtime=runtime,
            link=Link(self._uplink.link),
            interval_s=self.interval,
            seq=self._seq,
            sent_at=datetime.now(UTC),
            next_contact_at=self._uplink.next_contact_at,
            neighbours=self._neighbours.rtts() if self._neighbours is not None else {},
        )

    async def send_one(self) -> HeartbeatAck:
        """A full heartbeat on the WAN; on the slow mesh a compact one, unless the cloud has
        none of this node yet."""
        beat = await self.build()
        answer: object = None
        if beat.link is Link.LOWPAN and self._acked_containers is not None:
            # Docker's status text ("Up 3 minutes") changes every minute: only what the
            # containers are, and their state, count as a change worth the mesh's bytes.
            changed = _essentials(beat.containers) != _essentials(self._acked_containers)
            compact = CompactBeat.of(beat, containers_changed=changed)
            try:
                answer = await self._uplink.call(
                    uris.COMPACT_BEAT,
                    compact.model_dump(mode="json", exclude_defaults=True),
                    timeout=self._timeout,
                )
            except CallFailed as err:
                if err.error != errors.FULL_HEARTBEAT_NEEDED:
                    raise
        if answer is None:
            answer = await self._uplink.call(
                uris.HEARTBEAT, beat.model_dump(mode="json"), timeout=self._timeout
            )
        self.sent += 1
        self._acked_containers = beat.containers
        self.last_ack = HeartbeatAck.model_validate(answer)
        if self.last_ack.peers is not None and self._neighbours is not None:
            self._neighbours.update(self.last_ack.peers, self.last_ack.peer_urls or {})
        return self.last_ack

    @property
    def interval(self) -> float:
        """Rarer on the slow mesh: the cloud allows for it from the beat's own interval_s."""
        return self._lowpan_interval if self._uplink.link == "lowpan" else self._interval

    async def run(self) -> None:
        """Beat every interval while connected, and at once over a new session (the cloud
        learns the link in use as soon as it changes); returns after :meth:`stop`.

        A beat in flight is finished before returning, so that the node's leaving
        is always the last thing the cloud hears from it.
        """
        beaten_session = -1
        next_beat = 0.0
        while not self._stopping.is_set():
            if not self._uplink.connected:
                await self._sleep_unless_stopped(0.1)
                continue
            session = self._uplink.sessions_joined
            if session == beaten_session and time.monotonic() < next_beat:
                await self._sleep_unless_stopped(min(0.2, next_beat - time.monotonic()))
                continue
            started = time.monotonic()
            try:
                await self.send_one()
                self._uplink.beat_acknowledged(session)
                self._log_health(None)
            except CallTimeout as err:
                self._uplink.beat_unanswered()
                self._log_health(err)
            except UplinkError as err:
                self._log_health(err)
            beaten_session, next_beat = session, started + self.interval

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))

    def stop(self) -> None:
        self._stopping.set()

    def _log_health(self, error: Exception | None) -> None:
        if error is None and not self._healthy:
            logger.info("heartbeats are accepted again")
        elif error is not None and self._healthy:
            logger.error("heartbeat failed: %s", error)
        self._healthy = error is None

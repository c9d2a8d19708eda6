"""Sending a heartbeat every few seconds: who the node is, its load, its containers."""

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Protocol

from edgecloud_contracts import uris
from edgecloud_contracts.heartbeat import ContainerState, Heartbeat, HeartbeatAck, Link

from ..runtime.docker import RuntimeUnavailable
from ..uplink.errors import UplinkError
from .system import SystemProbe

logger = logging.getLogger(__name__)


class ContainerLister(Protocol):
    async def list_containers(self) -> list[ContainerState]: ...


class HeartbeatSender(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def link(self) -> str: ...

    async def call(self, uri: str, *args: object, timeout: float) -> object: ...


class HeartbeatReporter:
    def __init__(
        self,
        *,
        uplink: HeartbeatSender,
        probe: SystemProbe,
        runtime: ContainerLister,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self._uplink = uplink
        self._probe = probe
        self._runtime = runtime
        self._interval = interval_s
        self._timeout = timeout_s
        self._seq = 0
        self._stopping = asyncio.Event()
        self._healthy = True
        self.sent = 0
        self.last_ack: HeartbeatAck | None = None

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
            interval_s=self._interval,
            seq=self._seq,
            sent_at=datetime.now(UTC),
        )

    async def send_one(self) -> HeartbeatAck:
        beat = await self.build()
        answer = await self._uplink.call(
            uris.HEARTBEAT, beat.model_dump(mode="json"), timeout=self._timeout
        )
        self.sent += 1
        self.last_ack = HeartbeatAck.model_validate(answer)
        return self.last_ack

    async def run(self) -> None:
        """Beat every interval while connected; returns after :meth:`stop`.

        A beat in flight is finished before returning, so that the node's leaving
        is always the last thing the cloud hears from it.
        """
        while not self._stopping.is_set():
            if not self._uplink.connected:
                await self._sleep_unless_stopped(0.1)
                continue
            started = time.monotonic()
            try:
                await self.send_one()
                self._log_health(None)
            except UplinkError as err:
                self._log_health(err)
            await self._sleep_unless_stopped(self._interval - (time.monotonic() - started))

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

"""Reports from the node to the orchestrator between heartbeats: container state changes
(from Docker's events) and image pull progress, as ``NodeReport`` calls.

Reports are sent in order by one task, so neither Docker events nor a pull ever wait on
the network. While the node is not connected they are dropped: every heartbeat carries
the full container list, from which the cloud catches up. (A durable outbox on the node,
so that an outage delays reports instead of losing them, comes with a later issue.)
"""

import asyncio
import logging
from collections.abc import Callable
from contextlib import aclosing
from datetime import UTC, datetime
from typing import Protocol

from edgecloud_contracts import uris
from edgecloud_contracts.artifacts import DeploymentReport
from edgecloud_contracts.containers import (
    ContainerReport,
    DataBatch,
    NodeReport,
    PullProgress,
)

from ..runtime.docker import DockerRuntime
from ..runtime.errors import RuntimeUnavailable
from ..uplink.errors import UplinkError

logger = logging.getLogger(__name__)


class ReportUplink(Protocol):
    @property
    def connected(self) -> bool: ...

    async def call(self, uri: str, *args: object, timeout: float) -> object: ...


class ReportSender:
    def __init__(self, *, uplink: ReportUplink, timeout_s: float, max_queued: int = 1000) -> None:
        self._uplink = uplink
        self._timeout = timeout_s
        # (report, None) is best effort; (report, future) must arrive, and says when it did.
        self._queue: asyncio.Queue[tuple[NodeReport, asyncio.Future[None] | None]] = asyncio.Queue(
            max_queued
        )
        self._healthy = True
        self.sent = 0
        self.dropped = 0

    def container(self, report: ContainerReport) -> None:
        self.submit(NodeReport(kind="container", container=report, at=datetime.now(UTC)))

    def inventory(self, containers: list[ContainerReport]) -> None:
        self.submit(NodeReport(kind="inventory", inventory=containers, at=datetime.now(UTC)))

    def pull(self, progress: PullProgress) -> None:
        self.submit(NodeReport(kind="pull", pull=progress, at=datetime.now(UTC)))

    def data(self, batches: list[DataBatch]) -> None:
        self.submit(NodeReport(kind="data", data=batches, at=datetime.now(UTC)))

    def deployment(self, report: DeploymentReport) -> None:
        self.submit(NodeReport(kind="deployment", deployment=report, at=datetime.now(UTC)))

    async def deliver_deployment(self, report: DeploymentReport) -> None:
        """Send until the cloud has it, in order after the progress before it, waiting out
        any outage (the end of a deployment)."""
        await self.deliver(NodeReport(kind="deployment", deployment=report, at=datetime.now(UTC)))

    async def deliver(self, report: NodeReport) -> None:
        """Queue ``report`` to be sent whatever happens to the link; return once sent."""
        sent = asyncio.get_running_loop().create_future()
        await self._queue.put((report, sent))
        await sent

    def submit(self, report: NodeReport) -> None:
        """Queue ``report`` for sending; never blocks, drops it when it cannot be sent."""
        if not self._uplink.connected:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait((report, None))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        """Send queued reports one at a time, in order; runs until cancelled."""
        while True:
            report, sent = await self._queue.get()
            if sent is None:
                await self._send_once(report)
                continue
            delay = 0.5
            while not await self._send_once(report, count_drop=False):
                await asyncio.sleep(delay)  # a report that must arrive waits for the link
                delay = min(delay * 2, 30.0)
            if not sent.done():
                sent.set_result(None)

    async def _send_once(self, report: NodeReport, *, count_drop: bool = True) -> bool:
        if not self._uplink.connected:
            self.dropped += count_drop
            return False
        try:
            await self._uplink.call(
                uris.NODE_REPORT, report.model_dump(mode="json"), timeout=self._timeout
            )
        except UplinkError as err:
            self.dropped += count_drop
            self._log_health(err)
            return False
        self.sent += 1
        self._log_health(None)
        return True

    def _log_health(self, error: Exception | None) -> None:
        if error is None and not self._healthy:
            logger.info("node reports are accepted again")
        elif error is not None and self._healthy:
            logger.warning("node report failed (the heartbeat will catch up): %s", error)
        self._healthy = error is None


Observer = Callable[[ContainerReport], None]


async def forward_container_events(
    runtime: DockerRuntime, sender: ReportSender, observe: Observer | None = None
) -> None:
    """Report every state change of our containers (and show it to ``observe``); runs
    until cancelled."""
    async with aclosing(runtime.container_events()) as events:
        async for report in events:
            logger.debug("container %s is %s", report.docker_name, report.state)
            sender.container(report)
            if observe is not None:
                observe(report)


class SessionCounter(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def sessions_joined(self) -> int: ...


async def send_inventory(
    runtime: DockerRuntime,
    sender: ReportSender,
    uplink: SessionCounter,
    *,
    every_s: float,
    observe: Observer | None = None,
) -> None:
    """Tell the cloud every container this node runs: after each (re)connect, so that what
    changed while offline catches up at once, and every ``every_s`` seconds."""
    reported_session = 0
    last = float("-inf")
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(0.2)
        if not uplink.connected:
            continue
        if uplink.sessions_joined == reported_session and loop.time() - last < every_s:
            continue
        try:
            containers = await runtime.managed_containers()
        except RuntimeUnavailable as err:
            logger.debug("no inventory: %s", err)
            last = loop.time()
            continue
        sender.inventory(containers)
        reported_session, last = uplink.sessions_joined, loop.time()
        if observe is not None:  # e.g. a job that ended while the agent was down
            for container in containers:
                observe(container)

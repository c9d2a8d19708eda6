"""Reports from the node to the orchestrator between heartbeats, as ``NodeReport`` calls:
container state changes (from Docker's events), deployment steps, collected data, image
pull progress and the node's inventory.

Container, deployment and data reports are durable: each gets an id and is written to the
node's outbox (deploy/outbox.py) before anything is sent, even while the node is not
connected. One task drains the outbox in order, removes a report once the cloud has
acknowledged it, and on a failure retries that same report when the link allows; the
cloud applies each id once. Pull progress and inventories are best effort: kept in memory,
sent only while connected (a later one supersedes a lost one), each after the durable
reports made before it, so an inventory is never overtaken by older replayed reports.

On the LoWPAN mesh only control traffic goes: container and deployment reports are sent,
data reports wait in the outbox until the node is back on the WAN, and pull progress is
dropped. Neither Docker events nor a pull ever wait on the network.
"""

import asyncio
import logging
import sqlite3
import uuid
from collections import deque
from collections.abc import Callable
from contextlib import aclosing, suppress
from datetime import UTC, datetime
from typing import Protocol

from edgecloud_contracts import errors, uris
from edgecloud_contracts.artifacts import DeploymentReport
from edgecloud_contracts.containers import (
    ContainerReport,
    DataBatch,
    NodeReport,
    PullProgress,
)
from edgecloud_contracts.heartbeat import Link

from ..runtime.docker import DockerRuntime
from ..runtime.errors import RuntimeUnavailable
from ..uplink.errors import CallFailed, UplinkError
from .outbox import Outbox, OutboxEntry

logger = logging.getLogger(__name__)

DURABLE_KINDS = frozenset({"container", "deployment", "data"})
HELD_ON_LOWPAN = ("data",)
# The cloud refuses these for good: retrying such a report would block the outbox forever.
_REFUSALS = frozenset({errors.INVALID_ARGUMENT, errors.NOT_AUTHORIZED, errors.PAYLOAD_TOO_LARGE})


class ReportUplink(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def sessions_joined(self) -> int: ...

    @property
    def link(self) -> str: ...

    async def call(self, uri: str, *args: object, timeout: float) -> object: ...


class ReportSender:
    def __init__(
        self,
        *,
        uplink: ReportUplink,
        outbox: Outbox,
        timeout_s: float,
        max_queued: int = 1000,
        poll_s: float = 0.2,
        max_retry_s: float = 10.0,
        hold: Callable[[int], bool] | None = None,
    ) -> None:
        """``hold(session)``: whether reports wait on that session (deploy/fencing.py: until
        the cloud has said which copies are this node's)."""
        self._uplink = uplink
        self._hold = hold
        self._outbox = outbox
        self._timeout = timeout_s
        self._poll = poll_s
        self._max_retry = max_retry_s
        # Best effort, each with the outbox's last seq when it came: it goes after those.
        self._best_effort: deque[tuple[NodeReport, int]] = deque()
        self._max_queued = max_queued
        self._acknowledged: dict[str, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._healthy = True
        self._dropped = 0
        self.sent = 0

    @property
    def dropped(self) -> int:
        """Best-effort reports not sent, and durable ones the full outbox gave up."""
        return self._dropped + self._outbox.dropped

    @property
    def pending(self) -> int:
        """Durable reports not acknowledged yet."""
        return len(self._outbox)

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
        """Put ``report`` in the outbox and return once the cloud has acknowledged it (or
        the full outbox gave it up, which is counted and logged)."""
        report_id = self._store(report)
        if report_id is None:
            return
        acknowledged = asyncio.get_running_loop().create_future()
        self._acknowledged[report_id] = acknowledged
        try:
            await acknowledged
        finally:
            self._acknowledged.pop(report_id, None)

    def submit(self, report: NodeReport) -> None:
        """Queue ``report`` for sending; never blocks. Durable kinds go to the outbox;
        the others are dropped when they cannot be sent now."""
        if report.kind in DURABLE_KINDS:
            self._store(report)
            return
        if (
            not self._uplink.connected
            or (report.kind == "pull" and self._uplink.link == Link.LOWPAN)
            or len(self._best_effort) >= self._max_queued
        ):
            self._dropped += 1
            return
        self._best_effort.append((report, self._outbox.last_seq))
        self._wake.set()

    def _store(self, report: NodeReport) -> str | None:
        """Write ``report`` to the outbox with a fresh id; the id, None if it could not."""
        report = report.model_copy(update={"id": report.id or uuid.uuid4().hex})
        try:
            given_up = self._outbox.put(report)
        except sqlite3.Error as err:
            logger.error("cannot write a %s report to the outbox: %s", report.kind, err)
            self._dropped += 1
            return None
        for report_id in given_up:
            self._acknowledge(report_id)
        self._wake.set()
        return report.id

    async def run(self) -> None:
        """Send reports one at a time, in order; runs until cancelled."""
        delay = self._poll
        while True:
            self._wake.clear()
            if not self._uplink.connected:
                self._dropped += len(self._best_effort)  # stale by the time the link is back
                self._best_effort.clear()
                await self._idle()
                continue
            if self._hold is not None and self._hold(self._uplink.sessions_joined):
                await self._idle()
                continue
            held = HELD_ON_LOWPAN if self._uplink.link == Link.LOWPAN else ()
            # An empty outbox (its count is kept in memory) costs no query.
            durable = next(iter(self._outbox.oldest(1, held=held)), None) if self._outbox else None
            if self._best_effort and (durable is None or durable.seq > self._best_effort[0][1]):
                await self._send_best_effort(self._best_effort.popleft()[0])
            elif durable is not None:
                if await self._send_durable(durable):
                    delay = self._poll
                else:
                    await self._retry_later(delay)
                    delay = min(delay * 2, self._max_retry)
            else:
                await self._idle()

    async def _send_durable(self, entry: OutboxEntry) -> bool:
        """Whether the cloud is done with the report (it was acknowledged or refused)."""
        report_id = entry.report.id
        assert report_id is not None
        try:
            await self._send(entry.report)
        except CallFailed as err:
            if err.error not in _REFUSALS:
                return False
            logger.error("the cloud refused report %s: %s", report_id, err)
            self._dropped += 1
        except UplinkError:
            return False
        self._outbox.remove(report_id)
        self._acknowledge(report_id)
        return True

    async def _send_best_effort(self, report: NodeReport) -> None:
        if report.kind == "pull" and self._uplink.link == Link.LOWPAN:
            self._dropped += 1
            return
        try:
            await self._send(report)
        except UplinkError:
            self._dropped += 1

    async def _send(self, report: NodeReport) -> None:
        try:
            await self._uplink.call(
                uris.NODE_REPORT, report.model_dump(mode="json"), timeout=self._timeout
            )
        except UplinkError as err:
            self._log_health(err)
            raise
        self.sent += 1
        self._log_health(None)

    def _acknowledge(self, report_id: str) -> None:
        acknowledged = self._acknowledged.get(report_id)
        if acknowledged is not None and not acknowledged.done():
            acknowledged.set_result(None)

    async def _idle(self) -> None:
        """Until something is submitted, or a poll later (the link may have changed)."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _retry_later(self, delay: float) -> None:
        """Wait before repeating a failed report: ``delay`` with a session up, or less
        once a new session has joined."""
        loop = asyncio.get_running_loop()
        joined, until = self._uplink.sessions_joined, loop.time() + delay
        # Polled: the uplink has no event for "a new session joined".
        while not (  # noqa: ASYNC110
            self._uplink.connected
            and (loop.time() >= until or self._uplink.sessions_joined != joined)
        ):
            await asyncio.sleep(self._poll)

    def _log_health(self, error: Exception | None) -> None:
        if error is None and not self._healthy:
            logger.info("node reports are accepted again (%d waiting)", self.pending)
        elif error is not None and self._healthy:
            logger.warning("node reports wait in the outbox: %s", error)
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

    @property
    def link(self) -> str: ...


async def send_inventory(
    runtime: DockerRuntime,
    sender: ReportSender,
    uplink: SessionCounter,
    *,
    every_s: float,
    lowpan_every_s: float = 600.0,
    observe: Observer | None = None,
) -> None:
    """Tell the cloud every container this node runs: after each (re)connect, so that what
    changed while offline catches up at once, and every ``every_s`` seconds (``lowpan_every_s``
    on the slow mesh, where the compact beats carry container changes meanwhile)."""
    reported_session = 0
    last = float("-inf")
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(0.2)
        if not uplink.connected:
            continue
        period = lowpan_every_s if uplink.link == "lowpan" else every_s
        if uplink.sessions_joined == reported_session and loop.time() - last < period:
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

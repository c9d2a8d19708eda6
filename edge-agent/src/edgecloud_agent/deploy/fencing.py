"""Fencing: a node that comes back stops its copies of containers placed elsewhere meanwhile.

While a node is cut off, the cloud may have declared it lost and started its containers
again on a peer, at a newer placement (``ContainerSpec.generation``). On every (re)join,
before its procedures are registered and before any report leaves its outbox, the agent
asks the cloud which of the copies it holds are its own (``edge.orchestrator.placements``)
and fences the others: each is cut from its networks first (nothing more of it reaches
anyone), then stopped; its ``/app`` and its logs stay for the tenant, who reads them through
the cloud and removes the copy, or the node removes it after ``retention_s``.

A failed check (the cloud unreachable, an error) stops nothing: the copies run on as they
were and the check is made again until it is answered. Reports wait for the answer, but
only ``hold_s`` long, so that a cloud that cannot answer (an older one) does not hold them
for ever; the cloud ignores a report of an old placement anyway.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pydantic import ValidationError

from edgecloud_contracts import uris
from edgecloud_contracts.containers import ContainerReport
from edgecloud_contracts.placements import HeldCopy, PlacementAnswer, PlacementCheck

from ..isolation.provision import Provisioner
from ..runtime.errors import RuntimeFailure
from ..state.desired import DesiredState, KeptCopy
from ..uplink.errors import UplinkError

logger = logging.getLogger(__name__)

Call = Callable[..., Awaitable[object]]
RETRY_S = 5.0


class Sessions(Protocol):
    @property
    def connected(self) -> bool: ...

    @property
    def sessions_joined(self) -> int: ...


class Fencing:
    def __init__(
        self,
        *,
        node: Provisioner,
        desired: DesiredState,
        call: Call,
        timeout_s: float,
        stop_timeout_s: float,
        retention_s: float,
        hold_s: float,
    ) -> None:
        self._node = node
        self._runtime = node.runtime
        self._desired = desired
        self._call = call
        self._timeout = timeout_s
        self._stop_timeout = stop_timeout_s
        self._retention = retention_s
        self._hold = hold_s
        self._checked_session = -1
        self._joined_at: float | None = None
        self._failing = False

    def reports_may_go(self, session: int) -> bool:
        """Whether reports may be sent on ``session``: its check was answered, or it has
        waited ``hold_s`` for an answer."""
        if session == self._checked_session:
            return True
        return self._joined_at is not None and time.monotonic() - self._joined_at > self._hold

    async def on_join(self, session: int) -> None:
        """A session has joined: check before anything else happens on it (a failure is
        logged and left to :meth:`run` to repeat)."""
        self._joined_at = time.monotonic()
        await self._try(session)

    async def run(self, uplink: Sessions) -> None:
        """Repeat a check that failed, and remove kept copies whose time is up; runs until
        cancelled."""
        while True:
            session = uplink.sessions_joined
            if uplink.connected and session != self._checked_session:
                await self._try(session)
            await self.remove_expired()
            await asyncio.sleep(RETRY_S)

    async def _try(self, session: int) -> None:
        try:
            await self.check()
        except (UplinkError, RuntimeFailure, ValidationError) as err:
            if not self._failing:
                logger.warning("which copies are still this node's is not known yet: %s", err)
            self._failing = True
            return
        if self._failing:
            logger.info("the cloud said which copies are this node's")
        self._failing = False
        self._checked_session = session

    async def check(self) -> list[str]:
        """Ask the cloud about every copy the node holds and fence the stale ones; their
        container ids."""
        kept = {copy.container_id for copy in self._desired.kept_copies()}
        held = {
            report.container_id: report
            for report in await self._runtime.managed_containers()
            if report.container_id and report.container_id not in kept
        }
        asked = PlacementCheck(
            held=[
                HeldCopy(container_id=container_id, generation=report.generation or 1)
                for container_id, report in held.items()
            ]
        )
        answer = PlacementAnswer.model_validate(
            await self._call(uris.PLACEMENTS, asked.model_dump(mode="json"), timeout=self._timeout)
        )
        fenced = []
        for container_id in answer.stale:
            report = held.get(container_id)
            if report is None:
                continue  # not asked about: the cloud has no say over it
            await self.fence(report)
            fenced.append(container_id)
        return fenced

    async def fence(self, report: ContainerReport) -> None:
        """Cut the copy from every network, then stop it; keep it and its ``/app``."""
        assert report.container_id is not None
        name = report.docker_name
        desired = self._desired.get(report.container_id)
        for network in await self._runtime.inspect_networks(name) or set():
            await self._runtime.disconnect(network, name)
        await self._runtime.stop(
            name, container_id=report.container_id, timeout_s=self._stop_timeout
        )
        self._desired.keep_copy(
            KeptCopy(
                container_id=report.container_id,
                docker_name=name,
                tenant_id=desired.spec.tenant_id if desired is not None else None,
                generation=report.generation or 1,
                fenced_at=time.time(),
            )
        )
        logger.warning(
            "%s is placed on another node now: this old copy is stopped and kept for %.0f s",
            name,
            self._retention,
            extra={"container": report.container_id},
        )

    async def remove_expired(self) -> list[str]:
        """Remove the kept copies whose retention time is up; their container ids."""
        deadline = time.time() - self._retention
        removed = []
        for copy in self._desired.kept_copies():
            if copy.fenced_at >= deadline:
                continue
            try:
                await self._node.remove(
                    copy.docker_name, container_id=copy.container_id, tenant_id=copy.tenant_id
                )
            except RuntimeFailure as err:
                logger.warning("kept copy %s not removed yet: %s", copy.docker_name, err)
                continue
            self._desired.remove(copy.container_id)
            removed.append(copy.container_id)
            logger.info("kept copy %s removed: its retention time is up", copy.docker_name)
        return removed

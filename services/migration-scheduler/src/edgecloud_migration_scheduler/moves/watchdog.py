"""Lost nodes: their containers are started again on a peer (a cold restart).

A node that stops answering may be dead, or the cloud may be what is broken: a paused
database or router silences every node at once, and a cut uplink silences a node that
still runs. So a node counts as lost only when all of these hold:

- the control plane itself has been healthy (this scheduler's router session up, the
  registry and the orchestrator answering) for longer than ``lost_after_s``; after any
  outage of its own the clock starts again, and by then the nodes are back;
- the node has been silent for ``lost_after_s``, and, for a node on a duty cycle, for
  ``lost_after_s`` past the next contact it announced (asleep is not lost);
- its neighbours no longer reach its broker (a node with a dead uplink but a live
  broker is running: its containers keep serving where they are);
- not too many nodes went silent together with it (``max_lost_share`` of those alive or
  silent within one loss window of it): that is a network or cloud problem, which moving
  containers around cannot fix (Kubernetes' node lifecycle controller stops evicting for
  the same reason).

Replicas of the scheduler take turns through a lease (edgecloud_servicekit.leases): only its
holder checks, so a lost node's containers are restarted once; a new holder first watches
the control plane for a whole healthy window of its own.
"""

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

from edgecloud_contracts.devices import DeviceView
from edgecloud_contracts.heartbeat import DeviceStatus
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.leases import Lease
from edgecloud_servicekit.problems import Problem
from edgecloud_servicekit.wamp import WampLink

from .coordinator import Coordinator, acting_for

logger = logging.getLogger(__name__)

ALL_DEVICES = 1000


class NodeLossWatch:
    def __init__(
        self,
        *,
        coordinator: Coordinator,
        registry: ServiceClient,
        orchestrator: ServiceClient,
        link: WampLink,
        lost_after_s: float,
        check_every_s: float,
        max_lost_share: float,
        healthy_window_s: float | None = None,
        lease: Lease | None = None,
    ) -> None:
        """``healthy_window_s``: how long the control plane must have been healthy before
        any node counts as lost (``lost_after_s`` by default)."""
        self._coordinator = coordinator
        self._registry = registry
        self._orchestrator = orchestrator
        self._link = link
        self._lost_after_s = lost_after_s
        self._check_every_s = check_every_s
        self._max_lost_share = max_lost_share
        self._healthy_window_s = lost_after_s if healthy_window_s is None else healthy_window_s
        self._healthy_since: float | None = None
        self._lease = lease
        self._restarting: set[asyncio.Task[None]] = set()
        self._handled: set[str] = set()
        self._outage_told: set[str] = set()
        """Nodes already logged as silent in an outage (said once, not every round)."""
        """Containers already restarted elsewhere (the orchestrator moved their records)."""

    async def run(self) -> None:
        while True:
            try:
                if self._lease is None or await self._lease.hold():
                    await self.check()
                    # Level-1 packages go on as soon as a node can run them.
                    await self._coordinator.hand_on_stored()
                else:  # another replica watches; were this one to take over, it starts afresh
                    self._healthy_since = None
            except Exception:  # the watch must go on whatever one round met
                logger.exception("node loss check failed")
            await asyncio.sleep(self._check_every_s)

    async def check(self) -> list[str]:
        """One round; the keys of the nodes found lost."""
        devices = await self._control_plane_view()
        if devices is None:
            return []
        now = datetime.now(UTC)
        # How long each silent node has been silent.
        quiet_s = {
            d.key: (now - d.last_seen).total_seconds()
            for d in devices
            if d.status is DeviceStatus.OFFLINE and d.last_seen is not None
        }
        window = timedelta(seconds=self._lost_after_s)
        silent = [
            d
            for d in devices
            if quiet_s.get(d.key, 0.0) > self._lost_after_s
            and (d.next_contact_at is None or now > d.next_contact_at + window)
        ]
        if not silent:
            return []
        alive = [d for d in devices if d.status is not DeviceStatus.OFFLINE]
        silent = [d for d in silent if not self._outage_around(d, quiet_s, alive_count=len(alive))]
        if not silent:
            return []
        # A neighbour that measured the node's broker lately saw it alive.
        seen_alive = {
            key for d in devices if d.status is not DeviceStatus.OFFLINE for key in d.neighbours
        }
        lost = [d for d in silent if d.key not in seen_alive]
        for device in lost:
            await self._restart_elsewhere(device)
        return [d.key for d in lost]

    def _outage_around(
        self, node: DeviceView, quiet_s: dict[str, float], *, alive_count: int
    ) -> bool:
        """Whether ``node`` went silent together with many others (within one loss window
        of it): then the network or the cloud failed, not the node. Nodes silent since long
        before (retired, unplugged) say nothing about it."""
        together = sum(
            1 for quiet in quiet_s.values() if abs(quiet - quiet_s[node.key]) <= self._lost_after_s
        )
        if together > self._max_lost_share * (together + alive_count):
            if node.key in self._outage_told:
                return True
            self._outage_told.add(node.key)
            logger.warning(
                "%s went silent with %d other nodes (%d answer): a network or cloud outage, "
                "not a lost node; nothing is moved",
                node.key,
                together - 1,
                alive_count,
            )
            return True
        self._outage_told.discard(node.key)
        return False

    async def _control_plane_view(self) -> list[DeviceView] | None:
        """Every device, or None while the control plane is not known healthy for long."""
        operator = acting_for("")
        try:
            if not self._link.connected:
                raise ConnectionError("no router session")
            answer = await self._registry.request(
                "GET", "/v1/devices", identity=operator, params={"limit": ALL_DEVICES}
            )
        except (Problem, ConnectionError) as err:
            if self._healthy_since is not None:
                logger.warning("control plane unhealthy (%s): node loss checks wait", err)
            self._healthy_since = None
            return None
        now = time.monotonic()
        if self._healthy_since is None:
            self._healthy_since = now
        if now - self._healthy_since < self._healthy_window_s:
            return None
        return [DeviceView.model_validate(item) for item in answer.json()["items"]]

    async def _restart_elsewhere(self, device: DeviceView) -> None:
        try:
            answer = await self._orchestrator.request(
                "GET", f"/v1/nodes/{device.key}/containers", identity=acting_for("")
            )
        except Problem as err:
            logger.warning("containers of lost node %s unknown: %s", device.key, err)
            return
        for item in answer.json():
            container_id, tenant = str(item["id"]), str(item["tenant"])
            if container_id in self._handled:
                continue
            logger.warning("node %s is lost: %s starts elsewhere", device.key, container_id)
            self._handled.add(container_id)
            # Side by side: one container slow to start must not hold up the others.
            task = asyncio.create_task(
                self._restart_one(container_id, tenant, device), name=f"restart-{container_id}"
            )
            self._restarting.add(task)
            task.add_done_callback(self._restarting.discard)

    async def _restart_one(self, container_id: str, tenant: str, device: DeviceView) -> None:
        try:
            done = await self._coordinator.cold_restart(
                container_id=container_id, tenant_id=tenant, lost=device
            )
        except Exception:
            logger.exception("cold restart of %s failed", container_id)
            done = False
        if not done:  # tried again at a later round
            self._handled.discard(container_id)

    async def settled(self) -> None:
        """Return once the restarts under way have ended."""
        await asyncio.gather(*self._restarting, return_exceptions=True)

    async def close(self) -> None:
        for task in self._restarting:
            task.cancel()
        await asyncio.gather(*self._restarting, return_exceptions=True)
        if self._lease is not None:
            await self._lease.release()

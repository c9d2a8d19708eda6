"""One tenant container's share of the node, made before Docker creates it and taken back
when it goes: every path that creates or removes a container goes through here (commands,
deployments' jobs, migrations in and out).

For a container it makes, in order: its /app disk (:mod:`.disks`), its broker login (its
``EDGECLOUD_MQTT_*`` variables; :mod:`edgecloud_agent.broker.identities`) unless it has no
network, and, held while Docker creates it, its tenant's network (:mod:`.networks`), only
once the node's firewall is in place (:mod:`.firewall`). The image comes by the ID
:mod:`.images` gave. When it goes: the container, its volume and disk, its broker
identities, its tenant's network if no other container of the tenant is left, and the
tenant's own images no container uses any more.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from edgecloud_contracts.containers import ContainerReport, ContainerSpec

from ..broker.identities import BrokerError, BrokerIdentities
from ..runtime.docker import DockerRuntime
from ..runtime.errors import PolicyRefused, RuntimeFailure
from ..runtime.hardening import Placement, app_volume, labels
from .cgroups import Cgroups, GroupLimits, tenant_group
from .disks import AppDisks
from .firewall import NodeFirewall
from .images import TenantImages
from .networks import NO_NETWORK, TenantNetworks, network_name

logger = logging.getLogger(__name__)

BeforeRemove = Callable[[str, str], Awaitable[None]]
"""Awaited with a container's Docker name and id before the node removes it."""
GROUP_PATIENCE_S = 0.5
"""How long a removal waits for its tenant's emptied cgroup to go; then it goes later."""
GROUP_RETRIES = 10


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where this node's tenant containers reach its broker."""

    host: str
    port: int


class Provisioner:
    def __init__(
        self,
        *,
        runtime: DockerRuntime,
        images: TenantImages,
        networks: TenantNetworks,
        firewall: NodeFirewall,
        disks: AppDisks,
        identities: BrokerIdentities | None,
        broker: BrokerAddress | None,
        cgroups: Cgroups,
        tenant_share: GroupLimits | None,
        before_remove: BeforeRemove | None = None,
    ) -> None:
        """``tenant_share``: what all of one tenant's containers together may take of the
        node (None: no cap beyond each container's own limits). ``before_remove(docker_name,
        container_id)`` is awaited before a container is removed (its last output shipped)."""
        self.cgroups = cgroups
        self.tenant_share = tenant_share
        self.runtime = runtime
        self.images = images
        self.networks = networks
        self.firewall = firewall
        self.disks = disks
        self.identities = identities
        self.broker = broker
        self._before_remove = before_remove
        self._later: set[asyncio.Task[None]] = set()
        self._tenants: dict[str, asyncio.Lock] = {}
        """A tenant's network and cgroup are made for a create and taken back when its
        last container goes: one or the other at a time."""

    async def create(self, spec: ContainerSpec, image_id: str) -> ContainerReport:
        """Create (not start) the container from ``image_id`` with its share of the node.
        Nothing of it is left when this fails."""
        self.runtime.policy.check(spec)
        try:
            async with self._tenant(spec.tenant_id), self._placed(spec, image_id) as placement:
                return await self.runtime.create(spec, placement)
        except (RuntimeFailure, BrokerError):
            with contextlib.suppress(RuntimeFailure, BrokerError):
                await self.remove(spec.docker_name, container_id=spec.container_id,
                                  tenant_id=spec.tenant_id)  # fmt: skip
            raise

    async def remove(
        self,
        docker_name: str,
        *,
        container_id: str,
        tenant_id: str | None,
        keep_feed: bool = False,
    ) -> None:
        """Remove the container (if it is ours) and everything the node gave it; the
        tenant, when not given, is the container's own label. ``keep_feed``: its sensor
        feed's login stays (a migration's target reads this node's broker with it)."""
        if tenant_id is None:
            tenant_id = await self.runtime.tenant_of(docker_name, container_id=container_id)
        if self._before_remove is not None:
            await self._before_remove(docker_name, container_id)
        await self.runtime.remove(docker_name, container_id=container_id)
        # Its volume, if its create got that far without the container.
        await self.runtime.remove_volume(app_volume(container_id))
        await self.disks.release(container_id)
        if self.identities is not None:
            try:
                await self.identities.forget("container", container_id)
                if not keep_feed:
                    await self.identities.forget("feed", container_id)
            except BrokerError as err:
                logger.warning("broker identities of %s not removed: %s", container_id, err)
        if tenant_id is None:
            return
        group_busy = False
        async with self._tenant(tenant_id):
            await self.networks.release(tenant_id)
            in_use = await self.runtime.images_of_tenant(tenant_id)
            if not in_use and self.tenant_share is not None:
                group_busy = not await self.cgroups.remove(
                    tenant_group(tenant_id), patience_s=GROUP_PATIENCE_S
                )
        await self.images.forget_unused(tenant_id, in_use)
        if group_busy:
            # Docker had not let go of it yet: a removal (a migration's end, a command) does
            # not wait for that, and the group is not left behind either.
            task = asyncio.create_task(self._remove_group_later(tenant_id))
            self._later.add(task)
            task.add_done_callback(self._later.discard)

    async def settled(self) -> None:
        """Until what removals left for later (a busy tenant cgroup) is done."""
        while self._later:
            await asyncio.gather(*self._later, return_exceptions=True)

    async def _remove_group_later(self, tenant_id: str) -> None:
        delay = GROUP_PATIENCE_S
        for _ in range(GROUP_RETRIES):
            await asyncio.sleep(delay)
            async with self._tenant(tenant_id):
                if await self.runtime.images_of_tenant(tenant_id):
                    return  # the tenant has a container here again: the group is in use
                if await self.cgroups.remove(tenant_group(tenant_id), patience_s=0):
                    return
            delay = min(delay * 2, 60.0)
        logger.warning("the cgroup of tenant %s is left behind: it stays busy", tenant_id)

    def _tenant(self, tenant_id: str) -> asyncio.Lock:
        return self._tenants.setdefault(tenant_id, asyncio.Lock())

    def app_root(self, container_id: str) -> Path | None:
        """The container's /app as the node sees it (its mounted disk)."""
        return self.disks.app_root(container_id)

    @contextlib.asynccontextmanager
    async def _placed(self, spec: ContainerSpec, image_id: str) -> AsyncIterator[Placement]:
        volume = await self.disks.provide(spec.container_id, spec.limits.disk, labels=labels(spec))
        parent = ""
        if self.tenant_share is not None:
            parent = await self.cgroups.ensure(tenant_group(spec.tenant_id), self.tenant_share)
        if spec.network == NO_NETWORK:
            yield Placement(image_id, NO_NETWORK, volume, cgroup_parent=parent)
            return
        if not self.firewall.ready:
            raise PolicyRefused("the node firewall is not in place: no tenant network now")
        env = await self._broker_env(spec)
        async with self.networks.held(spec.tenant_id) as network:
            yield Placement(image_id, network, volume, env=env, cgroup_parent=parent)

    async def _broker_env(self, spec: ContainerSpec) -> dict[str, str]:
        """The container's own broker login, as ``EDGECLOUD_MQTT_*`` variables."""
        if self.identities is None or self.broker is None:
            return {}
        login = await self.identities.container(spec.container_id)
        return {
            "EDGECLOUD_MQTT_HOST": self.broker.host,
            "EDGECLOUD_MQTT_PORT": str(self.broker.port),
            "EDGECLOUD_MQTT_USERNAME": login.username,
            "EDGECLOUD_MQTT_PASSWORD": login.password,
            "EDGECLOUD_MQTT_CLIENT_ID": login.client_id,
            "EDGECLOUD_DATA_TOPIC": login.topic,
        }

    async def adopt(self, specs: list[ContainerSpec]) -> None:
        """At start: move the node's tenant containers made before tenant networks (on
        Docker's default bridge, open to every other tenant) onto their tenant's network."""
        for spec in specs:
            if spec.network == NO_NETWORK:
                continue
            try:
                found = await self.runtime.inspect_networks(spec.docker_name)
                if found is None or "bridge" not in found or not self.firewall.ready:
                    continue
                async with self.networks.held(spec.tenant_id):
                    await self.runtime.connect(network_name(spec.tenant_id), spec.docker_name)
                    await self.runtime.disconnect("bridge", spec.docker_name)
                logger.warning(
                    "%s moved from Docker's default bridge to its tenant's network; recreate"
                    " it for its own /app disk and broker login",
                    spec.docker_name,
                )
            except RuntimeFailure as err:
                logger.error("could not move %s to its tenant's network: %s", spec.docker_name, err)

"""A node's Docker engine held in memory, for simulated agents (tests/support/fleet.py).

It stands in for the agent's ``DockerRuntime`` at exactly that boundary (and
:class:`FakeNode` for the node's isolation above it: networks, disks, broker logins and
images, which a simulated node does not need): the agent's own ``CommandExecutor``, command
journal, desired state, report sender and heartbeat reporter run unchanged on top of it. It
answers as the runtime does over a real engine: a create converges on a container of the
same name made for the same cloud id and refuses anyone else's name, actions on a container
that is not ours (by name *and* id label) raise ``ContainerNotFound``, a remove of a
container that is gone is no error, the node's container policy is applied, and every state
change of our containers comes out of ``container_events()`` as the runtime's Docker-events
stream yields it.

A container is a record of a few hundred bytes; nothing is pulled, run or logged.
``delay_s`` makes each engine call take that long (a real engine's create + start takes
about 150 ms on these machines; 0 measures the platform alone).
"""

import asyncio
import secrets
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import UTC, datetime

from edgecloud_agent.runtime.errors import ContainerNotFound, NameConflict
from edgecloud_agent.runtime.hardening import ContainerPolicy, Placement, create_body
from edgecloud_agent.runtime.reports import PullCallback
from edgecloud_contracts.containers import ContainerReport, ContainerSpec, LogLine
from edgecloud_contracts.heartbeat import ContainerState

REMOVED = "removed"  # the runtime's word (runtime/reports.py) for a container that is gone


@dataclass(slots=True)
class _Container:
    docker_id: str
    docker_name: str
    container_id: str
    image: str
    state: str = "created"
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def report(self, state: str | None = None) -> ContainerReport:
        return ContainerReport(
            container_id=self.container_id,
            docker_id=self.docker_id,
            docker_name=self.docker_name,
            image=self.image,
            state=state or self.state,
            exit_code=self.exit_code if self.state == "exited" else None,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )

    def summary(self) -> ContainerState:
        """What ``docker ps -a`` says, as the heartbeat carries it."""
        if self.state == "running":
            status = "Up"
        elif self.state == "exited":
            status = f"Exited ({self.exit_code})"
        else:
            status = "Created"
        return ContainerState(
            id=self.docker_id,
            name=self.docker_name,
            image=self.image,
            state=self.state,
            status=status,
        )


class FakeDocker:
    """The agent's container runtime for one simulated node (see the module docstring)."""

    def __init__(self, *, policy: ContainerPolicy | None = None, delay_s: float = 0.0) -> None:
        self.policy = policy or ContainerPolicy()
        self._delay = delay_s
        self._containers: dict[str, _Container] = {}
        """By Docker name."""
        self._events: asyncio.Queue[tuple[str, ContainerReport | None]] | None = None
        """Events: a container's Docker id, with its last report if it was destroyed."""
        self.operations = 0
        """Engine calls that changed something (create, start, stop, restart, remove)."""

    # What the heartbeat, the inventory and inspect read.

    async def list_containers(self) -> list[ContainerState]:
        return [container.summary() for container in self._containers.values()]

    async def managed_containers(self) -> list[ContainerReport]:
        return [container.report() for container in self._containers.values()]

    async def inspect(self, docker_name: str) -> ContainerReport | None:
        found = self._containers.get(docker_name)
        return found.report() if found is not None else None

    async def logs(
        self, docker_name: str, *, container_id: str, tail: int, since: datetime | None
    ) -> tuple[list[LogLine], bool]:
        container = self._owned(docker_name, container_id)
        return [], container.state == "running"

    # What commands do.

    async def create(self, spec: ContainerSpec, placement: Placement) -> ContainerReport:
        create_body(spec, self.policy, placement)  # the policy's refusals, as a real create
        await self._engine_call()
        existing = self._containers.get(spec.docker_name)
        if existing is not None:
            if existing.container_id == spec.container_id:
                return existing.report()
            raise NameConflict(f"a container named {spec.docker_name} already exists", status=409)
        container = _Container(
            docker_id=secrets.token_hex(32),
            docker_name=spec.docker_name,
            container_id=spec.container_id,
            image=spec.image,
        )
        self._containers[spec.docker_name] = container
        self._changed(container)
        return container.report()

    async def start_created(self, report: ContainerReport) -> ContainerReport:
        container = self._containers.get(report.docker_name)
        if container is None or container.docker_id != report.docker_id:
            return report.model_copy(update={"state": REMOVED})
        await self._engine_call()
        self._run(container)
        return container.report()

    async def start(self, docker_name: str, *, container_id: str) -> ContainerReport:
        container = self._owned(docker_name, container_id)
        await self._engine_call()
        if container.state != "running":
            self._run(container)
        return container.report()

    async def stop(
        self, docker_name: str, *, container_id: str, timeout_s: float
    ) -> ContainerReport:
        container = self._owned(docker_name, container_id)
        await self._engine_call()
        if container.state == "running":
            self._exit(container)
        return container.report()

    async def restart(
        self, docker_name: str, *, container_id: str, timeout_s: float
    ) -> ContainerReport:
        container = self._owned(docker_name, container_id)
        await self._engine_call()
        if container.state == "running":
            self._exit(container)
        self._run(container)
        return container.report()

    async def remove(self, docker_name: str, *, container_id: str) -> None:
        container = self._containers.get(docker_name)
        if container is None or container.container_id != container_id:
            return
        await self._engine_call()
        if container.state == "running":
            self._exit(container)
        del self._containers[docker_name]
        self._emit(container.docker_id, container.report(REMOVED))

    # Docker's events, as the runtime turns them into reports.

    async def container_events(self) -> AsyncGenerator[ContainerReport, None]:
        """Every state change of our containers from now on; runs until cancelled. Like the
        runtime, which inspects the container when an event arrives, each report gives the
        container's state when it is read, not when the event happened."""
        self._events = asyncio.Queue()
        try:
            while True:
                docker_id, gone = await self._events.get()
                if gone is not None:
                    yield gone
                    continue
                container = self._by_id(docker_id)
                if container is not None:  # None: removed meanwhile; its destroy follows
                    yield container.report()
        finally:
            self._events = None

    def _owned(self, docker_name: str, container_id: str) -> _Container:
        container = self._containers.get(docker_name)
        if container is None or container.container_id != container_id:
            raise ContainerNotFound(f"no container {docker_name} for {container_id} on this node")
        return container

    async def _engine_call(self) -> None:
        self.operations += 1
        if self._delay > 0:
            await asyncio.sleep(self._delay)

    def _run(self, container: _Container) -> None:
        container.state, container.exit_code = "running", None
        container.started_at = datetime.now(UTC)
        self._changed(container)

    def _exit(self, container: _Container) -> None:
        container.state, container.exit_code = "exited", 0
        container.finished_at = datetime.now(UTC)
        self._changed(container)

    def _changed(self, container: _Container) -> None:
        self._emit(container.docker_id)

    def _emit(self, docker_id: str, gone: ContainerReport | None = None) -> None:
        # Like Docker's stream: nobody subscribed, nobody hears it.
        if self._events is not None:
            self._events.put_nowait((docker_id, gone))

    def _by_id(self, docker_id: str) -> _Container | None:
        return next((c for c in self._containers.values() if c.docker_id == docker_id), None)


SIMULATED_IMAGE = "sha256:" + "5" * 64


class FakeImages:
    """Every image is on the node already: the platform, not the registry, is measured."""

    async def find(self, spec: ContainerSpec) -> str | None:
        return SIMULATED_IMAGE

    async def pull(self, reference: str, on_progress: PullCallback | None = None) -> str:
        return SIMULATED_IMAGE


class FakeDisks:
    def room(self, size: int) -> None:
        """A simulated node never runs out."""


class FakeNode:
    """The agent's ``Provisioner`` for a simulated node: the container is created on the
    fake engine as placed on its tenant's network, nothing else is made."""

    def __init__(self, runtime: FakeDocker) -> None:
        self.runtime = runtime
        self.images = FakeImages()
        self.disks = FakeDisks()
        self.identities = None

    async def create(self, spec: ContainerSpec, image_id: str) -> ContainerReport:
        self.runtime.policy.check(spec)
        placed = Placement(image_id=image_id, network="edgecloud-t-sim", volume="sim")
        return await self.runtime.create(spec, placed)

    async def remove(
        self,
        docker_name: str,
        *,
        container_id: str,
        tenant_id: str | None,
        keep_feed: bool = False,
    ) -> None:
        await self.runtime.remove(docker_name, container_id=container_id)

    def app_root(self, container_id: str) -> None:
        return None

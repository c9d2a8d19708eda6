"""Simulated edge agents by the thousand, speaking the real protocol to the real cloud.

Each simulated agent is the agent's own code with only the Docker engine left out:

- its uplink (uplink/wamp.py): a WAMP session of its own, logging in with its own Ed25519
  key by WAMP-cryptosign, presenting a one-time enrolment token until enrolled (the router
  asks the registry's authenticator, which records the key), with WebSocket pings and the
  agent's jittered exponential backoff when the router goes away;
- on every join, what the agent registers: ``edge.device.<key>.container.<action>`` for
  every action and ``container.logs`` (deploy/rpc.py), answered by the agent's
  ``CommandExecutor`` with its command journal and desired state (state/), so a repeated
  command gets the first result;
- full heartbeats built by the agent's ``HeartbeatReporter`` (the contracts' payload) every
  ``heartbeat_interval_s`` with jitter, and at once on a new session;
- container reports from the engine's events and inventories on each join and every
  ``inventory_interval_s``, through the agent's ``ReportSender`` and durable outbox.

What is simulated: the engine (tests/support/fake_docker.py), the system probe (a fixed
device description and plausible load figures instead of this machine's), and where the
node keeps its state: the journal, desired state and outbox are the agent's sqlite3 code on
one in-memory database per node instead of three files. The heartbeat and inventory loops
are driven here, one timer per node, rather than by the agent's 5-per-second polling loops,
which would cost a core at a few thousand nodes; they send what the agent sends.

tests/support/fleet_processes.py spreads a fleet over a few processes and reads their
statistics.
"""

import asyncio
import logging
import random
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from edgecloud_agent import __version__ as agent_version
from edgecloud_agent.deploy import outbox as outbox_module
from edgecloud_agent.deploy import rpc
from edgecloud_agent.deploy.commands import CommandExecutor
from edgecloud_agent.deploy.outbox import Outbox
from edgecloud_agent.deploy.reports import ReportSender, forward_container_events
from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.settings import AgentSettings
from edgecloud_agent.state import desired as desired_module
from edgecloud_agent.state import journal as journal_module
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.state.journal import CommandJournal
from edgecloud_agent.telemetry.heartbeat import HeartbeatReporter
from edgecloud_agent.telemetry.system import SystemProbe
from edgecloud_agent.uplink.errors import CallTimeout, LoginRefused, UplinkError
from edgecloud_agent.uplink.wamp import Backoff, Login, Transport, Uplink
from edgecloud_contracts.heartbeat import DeviceInfo, Metrics
from edgecloud_contracts.identity import device_id, device_key

from .fake_docker import FakeDocker, FakeNode

logger = logging.getLogger(__name__)
_AGENT = AgentSettings.model_fields


def _agent_default(name: str) -> Any:
    return _AGENT[name].default


@dataclass(frozen=True, slots=True)
class SimIdentity:
    """Who a simulated node is: hostname and MAC (hence its key) and its own private key."""

    hostname: str
    mac: str
    private_key: bytes

    @property
    def key(self) -> str:
        return device_key(self.hostname, self.mac)

    @property
    def id(self) -> str:
        return device_id(self.hostname, self.mac)


def new_identities(count: int, *, prefix: str = "sim") -> list[SimIdentity]:
    """``count`` fresh nodes; locally administered MACs, so no two runs collide."""
    run = random.randbytes(2).hex()
    return [
        SimIdentity(
            hostname=f"{prefix}-{run}-{n}",
            mac="02:" + ":".join(f"{b:02x}" for b in random.randbytes(5)),
            private_key=secrets.token_bytes(32),
        )
        for n in range(count)
    ]


@dataclass(frozen=True, slots=True)
class Member:
    """A node of the fleet, with the enrolment token it presents until it is enrolled."""

    identity: SimIdentity
    token: str | None = None


@dataclass(frozen=True)
class FleetSettings:
    """How the simulated agents behave; the defaults are the real agent's."""

    router_url: str
    heartbeat_interval_s: float = _agent_default("heartbeat_interval_s")
    heartbeat_jitter: float = 0.1
    """Each beat comes ``interval * uniform(1 - jitter, 1 + jitter)`` after the last."""
    inventory_interval_s: float = _agent_default("inventory_interval_s")
    call_timeout_s: float = _agent_default("call_timeout_s")
    ping_interval_s: float = _agent_default("ping_interval_s")
    ping_timeout_s: float = _agent_default("ping_timeout_s")
    reconnect_initial_s: float = _agent_default("reconnect_initial_s")
    reconnect_max_s: float = _agent_default("reconnect_max_s")
    stop_timeout_s: float = _agent_default("stop_timeout_s")
    ramp_s: float = 5.0
    """Nodes start at random moments over this long, as a fleet powering up would."""
    docker_delay_s: float = 0.0
    location: str = "fleet"
    arch: str = "aarch64"


class SimProbe:
    """The system probe of a simulated node: a fixed description, plausible load."""

    def __init__(self, identity: SimIdentity, settings: FleetSettings) -> None:
        self.key = identity.key
        self.id = identity.id
        self._info = DeviceInfo(
            id=identity.id,
            key=identity.key,
            name=identity.hostname,
            mac=identity.mac,
            location=settings.location,
            arch=settings.arch,
            os="Debian GNU/Linux 12 (bookworm)",
            kernel="6.1.0-rpi7-rpi-v8",
            cpu_count=4,
            memory_total=4 << 30,
            disk_total=32 << 30,
            agent_version=agent_version,
        )

    def info(self) -> DeviceInfo:
        return self._info

    def metrics(self) -> Metrics:
        busy = random.random()
        return Metrics(
            cpu_percent=round(5 + 30 * busy, 1),
            load_1m=round(0.2 + 1.5 * busy, 2),
            memory_used=(1 << 30) + int(busy * (1 << 30)),
            disk_free=20 << 30,
        )


@contextmanager
def _state_in(db: sqlite3.Connection) -> Iterator[None]:
    """While the agent's state classes are made, their ``connect`` gives ``db``: the
    journal, desired state and outbox run their own code on one in-memory database."""
    modules = (journal_module, desired_module, outbox_module)
    saved = [module.connect for module in modules]
    for module in modules:
        module.connect = lambda path: db  # type: ignore[assignment]
    try:
        yield
    finally:
        for module, connect in zip(modules, saved, strict=True):
            module.connect = connect  # type: ignore[assignment]


@dataclass
class FleetStats:
    """What the agents of one process did, for the benchmark and the tests."""

    beats_sent: int = 0
    beats_acked: int = 0
    beats_failed: int = 0
    beat_ms: list[float] = field(default_factory=list)
    """Send -> acknowledged (the registry answers once the beat is committed); taken out
    by each statistics line."""
    beat_lag_ms: list[float] = field(default_factory=list)
    """How late each timed beat started (this process falling behind its schedule)."""
    joins: int = 0
    refused: list[str] = field(default_factory=list)
    crashed: int = 0


_NOWHERE = Path("/nonexistent/simulated-node")


class SimAgent:
    """One simulated node (see the module docstring)."""

    def __init__(self, member: Member, settings: FleetSettings, stats: FleetStats) -> None:
        identity = member.identity
        self.key = identity.key
        self._settings = settings
        self._stats = stats
        self.docker = FakeDocker(delay_s=settings.docker_delay_s)
        self._db = sqlite3.connect(":memory:", isolation_level=None)
        self._db.execute("PRAGMA page_size=1024")
        with _state_in(self._db):
            journal = CommandJournal(_NOWHERE)
            desired = DesiredState(_NOWHERE)
            outbox = Outbox(_NOWHERE)
        self.uplink = Uplink(
            transports=[
                Transport(
                    "wan",
                    settings.router_url,
                    settings.ping_interval_s,
                    settings.ping_timeout_s,
                    5.0,
                ),
            ],
            realm="edgecloud",
            login=Login(identity.key, identity.private_key, member.token),
            backoff=Backoff(settings.reconnect_initial_s, settings.reconnect_max_s),
            on_join=self._on_join,
        )
        node = cast(Provisioner, FakeNode(self.docker))
        self.reports = ReportSender(
            uplink=self.uplink, outbox=outbox, timeout_s=settings.call_timeout_s, poll_s=2.0
        )
        self.executor = CommandExecutor(
            node=node,
            journal=journal,
            desired=desired,
            stop_timeout_s=settings.stop_timeout_s,
            on_pull=self.reports.pull,
            bulk_gate=self.uplink.wait_bulk_ok,
        )
        self.reporter = HeartbeatReporter(
            uplink=self.uplink,
            probe=cast(SystemProbe, SimProbe(identity, settings)),
            runtime=self.docker,
            interval_s=settings.heartbeat_interval_s,
            timeout_s=settings.call_timeout_s,
        )
        self._new_session = asyncio.Event()

    async def _on_join(self) -> None:
        """What the agent does on every join (agent.py): stop presenting the enrolment
        token, register the container procedures."""
        self.uplink.enrolment_done()
        try:
            await rpc.register(self.uplink, self.key, self.executor)
        except UplinkError as err:
            logger.error("%s cannot register its container procedures: %s", self.key, err)
        self._stats.joins += 1
        self._new_session.set()

    async def run(self, start_after_s: float) -> None:
        await asyncio.sleep(start_after_s)
        try:
            async with asyncio.TaskGroup() as tasks:
                uplink = tasks.create_task(self.uplink.run(), name=f"uplink {self.key}")
                others = [
                    tasks.create_task(self._beats(), name=f"heartbeat {self.key}"),
                    tasks.create_task(self.reports.run(), name=f"reports {self.key}"),
                    tasks.create_task(
                        forward_container_events(cast(DockerRuntime, self.docker), self.reports),
                        name=f"container-events {self.key}",
                    ),
                ]
                await uplink
                for task in others:
                    task.cancel()
        except* LoginRefused as refused:
            self._stats.refused.append(f"{self.key}: {refused.exceptions[0]}")
        except* Exception as failed:  # a bug here: say so, the node is gone
            logger.error("%s stopped", self.key, exc_info=failed.exceptions[0])
            self._stats.crashed += 1

    async def _beats(self) -> None:
        """Beat every interval (with jitter) while connected and at once on a new session,
        as HeartbeatReporter.run does; an inventory on each join and every interval, as
        reports.send_inventory does."""
        settings, stats = self._settings, self._stats
        loop = asyncio.get_running_loop()
        beaten_session, due = -1, 0.0
        inventoried_at = float("-inf")
        while True:
            await self.uplink.wait_connected()
            self._new_session.clear()
            session = self.uplink.sessions_joined
            started = loop.time()
            if session == beaten_session:  # a timed beat, not one for a new session
                stats.beat_lag_ms.append(max(0.0, started - due) * 1000)
            stats.beats_sent += 1
            try:
                await self.reporter.send_one()
            except CallTimeout:
                self.uplink.beat_unanswered()
                stats.beats_failed += 1
            except UplinkError:
                stats.beats_failed += 1
            else:
                self.uplink.beat_acknowledged(session)
                stats.beats_acked += 1
                stats.beat_ms.append((loop.time() - started) * 1000)
            if session != beaten_session or (
                loop.time() - inventoried_at >= settings.inventory_interval_s
            ):
                self.reports.inventory(await self.docker.managed_containers())
                inventoried_at = loop.time()
            beaten_session = session
            jitter = random.uniform(1 - settings.heartbeat_jitter, 1 + settings.heartbeat_jitter)
            due = started + settings.heartbeat_interval_s * jitter
            with suppress(TimeoutError):
                await asyncio.wait_for(self._new_session.wait(), max(0.0, due - loop.time()))

    async def close(self) -> None:
        await self.uplink.close()

    def forget_state(self) -> None:
        self._db.close()


class Fleet:
    """Many simulated agents in this process's event loop."""

    def __init__(self, settings: FleetSettings, members: list[Member]) -> None:
        self.settings = settings
        self.stats = FleetStats()
        self.agents = [SimAgent(member, settings, self.stats) for member in members]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        ramp = self.settings.ramp_s
        self._tasks = [
            asyncio.create_task(agent.run(random.uniform(0, ramp)), name=f"node {agent.key}")
            for agent in self.agents
        ]

    @property
    def connected(self) -> int:
        return sum(1 for agent in self.agents if agent.uplink.connected)

    @property
    def min_sessions(self) -> int:
        """The fewest sessions any agent has joined (2 once every one has rejoined)."""
        return min((agent.uplink.sessions_joined for agent in self.agents), default=0)

    def snapshot(self) -> dict[str, Any]:
        """A statistics line; the latency samples are handed over (and cleared)."""
        stats = self.stats
        line = {
            "t": time.time(),
            "agents": len(self.agents),
            "connected": self.connected,
            "min_sessions": self.min_sessions,
            "beaten": sum(1 for agent in self.agents if agent.reporter.sent > 0),
            "joins": stats.joins,
            "refused": stats.refused[:5],
            "refused_count": len(stats.refused),
            "crashed": stats.crashed,
            "beats_sent": stats.beats_sent,
            "beats_acked": stats.beats_acked,
            "beats_failed": stats.beats_failed,
            "beat_ms": [round(ms, 2) for ms in stats.beat_ms],
            "beat_lag_ms": [round(ms, 1) for ms in stats.beat_lag_ms],
            "reports_sent": sum(agent.reports.sent for agent in self.agents),
            "reports_pending": sum(agent.reports.pending for agent in self.agents),
            "engine_calls": sum(agent.docker.operations for agent in self.agents),
        }
        stats.beat_ms.clear()
        stats.beat_lag_ms.clear()
        return line

    async def stop(self) -> None:
        """Leave cleanly (the cloud shows the nodes offline at once), then end."""
        await asyncio.gather(*(agent.close() for agent in self.agents), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for agent in self.agents:
            agent.forget_state()

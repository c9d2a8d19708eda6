"""The heartbeat an agent sends every few seconds, and the registry's answer."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from .identity import KEY_PATTERN

# Heartbeats are small; anything bigger is refused before it is parsed further.
MAX_HEARTBEAT_BYTES = 64 * 1024
MAX_CONTAINERS_PER_HEARTBEAT = 256

ShortText = Annotated[str, Field(max_length=200)]


class Link(StrEnum):
    WAN = "wan"
    LOWPAN = "lowpan"


class DeviceStatus(StrEnum):
    ONLINE = "online"
    DEGRADED = "degraded"
    OFFLINE = "offline"


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodePolicy(WireModel):
    """What the node's operator allows tenant containers, so that the cloud refuses a create
    the node would refuse before it is sent."""

    pids_per_container: Annotated[int, Field(ge=8, le=4_194_304)]
    """The most PIDs one container may have here."""
    pids_total: Annotated[int, Field(ge=8, le=4_194_304)]
    """The PIDs the node has for tenants: a tenant's share of the node is a share of these."""
    ports: (
        tuple[Annotated[int, Field(ge=1, le=65535)], Annotated[int, Field(ge=1, le=65535)]] | None
    ) = None
    """The range tenants may publish container ports from (inclusive); None: none."""
    internet: bool = True
    """Whether tenant containers reach the Internet from this node."""


PeerUrl = Annotated[str, Field(max_length=300, pattern=r"^mqtt://\S+$")]


class DeviceInfo(WireModel):
    """What a node says about itself; the first heartbeat registers it."""

    id: Annotated[str, Field(min_length=3, max_length=300)]
    key: Annotated[str, Field(pattern=KEY_PATTERN)]
    name: ShortText
    mac: Annotated[str, Field(pattern=r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")]
    location: ShortText = ""
    arch: Annotated[str, Field(min_length=1, max_length=40)]
    os: ShortText
    kernel: ShortText
    cpu_count: Annotated[int, Field(ge=1, le=4096)]
    memory_total: Annotated[int, Field(ge=0)]
    disk_total: Annotated[int, Field(ge=0)]
    agent_version: Annotated[str, Field(max_length=40)] = ""
    peer_url: Annotated[str, Field(max_length=300, pattern=r"^(mqtt://\S+)?$")] = ""
    """Where peers reach this node's broker for migrations (``mqtt://host:port``); empty
    when the node takes no part in them."""
    peer_urls: Annotated[list[PeerUrl], Field(max_length=4)] = []
    """The same broker over each of the node's links in order of preference (the WAN's
    address, then its mesh address): a peer whose WAN is gone reaches it by the next."""
    collaboration_level: Annotated[int, Field(ge=0, le=2)] = 2
    """What the node offers peers at most: 0 messaging only, 1 storage too, 2 storage,
    CPU and memory (it may answer a resource request with less when it is busy)."""
    policy: NodePolicy | None = None
    """None from agents that predate it: the cloud then applies its own defaults."""


MAX_NEIGHBOURS = 32


class Metrics(WireModel):
    cpu_percent: Annotated[float, Field(ge=0, le=100)]
    load_1m: Annotated[float, Field(ge=0)] = 0.0
    memory_used: Annotated[int, Field(ge=0)]
    disk_free: Annotated[int, Field(ge=0)]


class ContainerState(WireModel):
    """One container on the node's Docker engine, as the agent last saw it."""

    id: Annotated[str, Field(min_length=1, max_length=80)]
    name: ShortText
    image: Annotated[str, Field(max_length=400)]
    state: Annotated[str, Field(max_length=40)]
    status: ShortText = ""
    tenant: Annotated[str, Field(max_length=64)] | None = None
    """The tenant whose container it is (its label); None: not a tenant's (the operator's
    own, or Docker's). A tenant is shown only its own."""


class Heartbeat(WireModel):
    device: DeviceInfo
    metrics: Metrics
    containers: Annotated[list[ContainerState], Field(max_length=MAX_CONTAINERS_PER_HEARTBEAT)]
    runtime: Literal["docker", "unavailable"] = "docker"
    link: Link = Link.WAN
    interval_s: Annotated[float, Field(gt=0, le=3600)]
    seq: Annotated[int, Field(ge=0)]
    sent_at: datetime
    next_contact_at: datetime | None = None
    """A node on a duty cycle: when it will be back after closing its uplink to save power."""
    neighbours: Annotated[
        dict[Annotated[str, Field(pattern=KEY_PATTERN)], Annotated[float, Field(ge=0)]],
        Field(max_length=MAX_NEIGHBOURS),
    ] = {}
    """Round trips (ms) to the peers' brokers, as measured from this node: the scheduler
    prefers near peers."""


class CompactBeat(WireModel):
    """The heartbeat on the slow mesh (``edge.registry.beat``), a tenth of the full one's
    size: the device's description is the one its last full heartbeat gave, and the
    containers are sent only when they changed. One-letter keys: every byte crosses a
    250 kbit/s radio."""

    s: Annotated[int, Field(ge=0, description="seq")]
    i: Annotated[float, Field(gt=0, le=3600, description="interval_s")]
    m: Annotated[
        tuple[
            Annotated[float, Field(ge=0, le=100)],
            Annotated[float, Field(ge=0)],
            Annotated[int, Field(ge=0)],
            Annotated[int, Field(ge=0)],
        ],
        Field(description="cpu_percent, load_1m, memory_used, disk_free"),
    ]
    c: Annotated[list[ContainerState], Field(max_length=MAX_CONTAINERS_PER_HEARTBEAT)] | None = None
    """The containers, when they changed since the last acknowledged beat."""
    r: Literal["docker", "unavailable"] = "docker"
    l: Link = Link.LOWPAN  # noqa: E741  (the wire key)
    n: Annotated[int, Field(ge=0, description="next_contact_at, Unix seconds")] | None = None

    @classmethod
    def of(cls, beat: "Heartbeat", *, containers_changed: bool) -> "CompactBeat":
        m = beat.metrics
        return cls(
            s=beat.seq,
            i=beat.interval_s,
            # Tenths are all a graph shows; fewer digits, fewer bytes.
            m=(round(m.cpu_percent, 1), round(m.load_1m, 2), m.memory_used, m.disk_free),
            c=list(beat.containers) if containers_changed else None,
            r=beat.runtime,
            l=beat.link,
            n=int(beat.next_contact_at.timestamp()) if beat.next_contact_at else None,
        )

    def expand(
        self,
        device: DeviceInfo,
        containers: list[ContainerState],
        neighbours: dict[str, float] | None = None,
    ) -> "Heartbeat":
        """The full heartbeat this stands for, given what the registry knows of the device."""
        cpu, load, memory, disk = self.m
        return Heartbeat(
            device=device,
            metrics=Metrics(cpu_percent=cpu, load_1m=load, memory_used=memory, disk_free=disk),
            containers=self.c if self.c is not None else containers,
            runtime=self.r,
            link=self.l,
            interval_s=self.i,
            seq=self.s,
            sent_at=datetime.now(UTC),
            next_contact_at=datetime.fromtimestamp(self.n, UTC) if self.n is not None else None,
            neighbours=neighbours or {},
        )


class HeartbeatAck(WireModel):
    status: DeviceStatus
    interval_s: float
    peers: dict[str, str] | None = None
    """Answering a full heartbeat: the nearby nodes' peer URLs, whose round trips the node
    measures and reports (never sent over the slow mesh)."""
    peer_urls: dict[str, list[str]] | None = None
    """With ``peers``: the same nodes' brokers over each of their links in order, for those
    that announce several (the node measures the first that answers: its mesh address
    once its own WAN is gone)."""

"""Peer migrations as the API shows them: where a container moved, why, each timed step.

A migration goes ``requested -> planning -> transferring -> activating -> completed``
(ARCHITECTURE 4.6: peer chosen, configuration and dependency files sent, the peer starts
the container and takes over its sensor subscription, the source stops its copy). It ends
early as ``failed`` (nothing moved: no peer, refused), ``rolled_back`` (the peer could not
take over; the source kept or resumed its copy), or ``cold_restarted`` (the source was
lost: the container started afresh on the target, and ``lost_window`` says when it was
not running anywhere).
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field

from .containers import IMAGE_ID_PATTERN, ContainerSpec
from .heartbeat import WireModel
from .identity import KEY_PATTERN
from .ids import DockerName, Identifier


class MigrationState(StrEnum):
    REQUESTED = "requested"
    PLANNING = "planning"
    TRANSFERRING = "transferring"
    ACTIVATING = "activating"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    COLD_RESTARTED = "cold_restarted"
    STORED = "stored"
    """Level 1: a peer keeps the container's package (its image when needed, its /app)
    until a node that can run it appears; the scheduler then hands it on. Not an end."""


MIGRATION_DONE = frozenset(
    {
        MigrationState.COMPLETED,
        MigrationState.ROLLED_BACK,
        MigrationState.FAILED,
        MigrationState.COLD_RESTARTED,
    }
)


class MigrationReason(StrEnum):
    CPU = "cpu"
    MEMORY = "memory"
    DISK = "disk"
    PREDICTED_FAILURE = "predicted_failure"
    DRAIN = "drain"
    """An operator empties the node (maintenance)."""
    MANUAL = "manual"
    """``POST /containers/{id}/migrate``."""
    NODE_LOST = "node_lost"
    """The source stopped answering: its containers are started again elsewhere."""


class MigrationStep(WireModel):
    name: str
    """e.g. ``select_peer``, ``resource_request``, ``configuration``, ``dependencies``,
    ``start``, ``handover``, ``stop_source``."""
    started_at: datetime
    duration_ms: float | None = None
    """None while the step runs."""


class LostWindow(WireModel):
    """When a cold-restarted container ran nowhere: from the source's last sign of life
    until the target started it. Sensor messages of that time may be lost."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    from_: datetime = Field(alias="from")
    until: datetime


class MigrationView(WireModel):
    id: str
    container: str
    source: str
    """The device key the container left."""
    target: str | None
    """The device key it moves to; None until a peer is chosen (or when none was)."""
    reason: MigrationReason
    state: MigrationState
    steps: list[MigrationStep]
    freeze_ms: float | None
    """How long the container served nowhere during the move; None until known."""
    error_code: str | None = None
    error: str | None = None
    lost_window: LostWindow | None = None
    """Only for ``cold_restarted``."""
    level: int = 2
    """The peer's collaboration level this move used: 2, the target ran it at once; 1, a
    keeper stored it (``keeper``) and handed it on to ``target``; 0, a peer (``via``)
    found the target among its own neighbours and relayed the move through its broker."""
    keeper: str | None = None
    """Level 1: the device that stored the container's package."""
    via: str | None = None
    """Level 0: the peer near the source that found the target and relayed the move."""
    created_at: datetime
    finished_at: datetime | None = None


class MigrationPage(WireModel):
    items: list[MigrationView]
    next_cursor: str | None


class MigrationEvent(MigrationView):
    """Published on ``edge.event.migration`` at every step and at the end of a migration.
    ``tenant`` lets the gateway pass it to that tenant only."""

    tenant: str


class MigrateRequest(WireModel):
    """``POST /api/v1/containers/{id}/migrate``: move the container to ``device``, or to
    the peer the scheduler picks when it is left out."""

    device: Annotated[str, Field(pattern=KEY_PATTERN, max_length=100)] | None = None


class MigrationAccepted(WireModel):
    """The answer (202) to a migrate request: follow it at ``GET /migrations/{id}``."""

    migration: str


# Between the scheduler and the two agents of a move (WAMP). The agents then talk to each
# other over MQTT, through the target's broker (edgecloud_agent.peers).

TOKEN_PATTERN = r"^[A-Za-z0-9_-]{16,128}$"
MIGRATION_KEY_PATTERN = r"^[A-Za-z0-9_-]{43}$"
"""A migration's key: 32 random bytes, base64url without padding. Given to its two nodes
over their cloud sessions, it seals every message they exchange (edgecloud_agent.peers.wire)
and is never itself sent between them."""


BROKER_NAME = r"^[A-Za-z0-9_-]{1,64}$"


class BrokerLogin(WireModel):
    """An identity on a node's broker that its agent made for one purpose (the source's
    side of one migration, a moved container's sensor session), limited to that purpose's
    topics. The client id is random and bound to the identity: nobody else can take its
    session over."""

    username: Annotated[str, Field(pattern=BROKER_NAME)]
    password: Annotated[str, Field(pattern=TOKEN_PATTERN)]
    client_id: Annotated[str, Field(pattern=BROKER_NAME)]


class MigrationReady(WireModel):
    """The target's answer to :class:`MigrationExpectation`: the login the source uses on
    the target's broker (None from a target whose broker admits anyone)."""

    ok: bool = True
    login: BrokerLogin | None = None


class MigrationExpectation(WireModel):
    """``edge.device.<target>.migration.expect``: a migration is coming from ``source``.
    Only a peer sealing its messages with ``key`` is heard, and what it sends must be this
    container: the cloud's own record of it (``spec``, with ``image_id``), not the peer's
    word, says what the target creates."""

    migration: Identifier
    """Names the migration's scratch directory, broker logins and topic on the node."""
    container_id: Identifier
    tenant_id: Annotated[str, Field(min_length=1, max_length=64)]
    source: Annotated[str, Field(pattern=KEY_PATTERN)]
    key: Annotated[str, Field(pattern=MIGRATION_KEY_PATTERN)]
    spec: ContainerSpec
    """As the orchestrator holds it, its sensors read on the source's broker: limits,
    subscriptions, broker and restart policy come from here."""
    image_id: Annotated[str, Field(pattern=IMAGE_ID_PATTERN)] | None = None
    """The image the container was created from, as its first node reported it; an image
    the source sends must be this one. None for a built image (the target builds it from
    the context whose digest ``spec`` names)."""
    level: Annotated[int, Field(ge=1, le=2)] = 2
    """2: run it; 1: keep its package (image when needed, /app) for a later hand-on."""
    broker_url: Annotated[str, Field(pattern=r"^mqtt://\S+$", max_length=300)] | None = None
    """Level 0: the broker of the peer that relays the migration (the source and this node
    do not reach each other), with this node's ``login`` there. None: this node's own."""
    login: BrokerLogin | None = None


class MigrationOrder(WireModel):
    """``edge.device.<source>.migration.start``: move the container to ``target``, whose
    broker is at ``target_url``. Answered with a :class:`MigrationOutcome` when done."""

    migration: Identifier
    container_id: Identifier
    docker_name: DockerName
    target: Annotated[str, Field(pattern=KEY_PATTERN)]
    target_url: Annotated[str, Field(pattern=r"^mqtt://\S+$", max_length=300)]
    target_urls: Annotated[
        list[Annotated[str, Field(pattern=r"^mqtt://\S+$", max_length=300)]], Field(max_length=4)
    ] = []
    """The target's broker over each of its links in order (WAN first, then the mesh); the
    source falls over to the next when one dies mid-migration. Empty: ``target_url`` only."""
    key: Annotated[str, Field(pattern=MIGRATION_KEY_PATTERN)]
    login: BrokerLogin | None = None
    """Who the source is on the target's broker (:class:`MigrationReady`)."""
    level: Annotated[int, Field(ge=1, le=2)] = 2
    """1: the target only keeps the package; the source's copy stops once it is stored."""


PeerUrl = Annotated[str, Field(pattern=r"^mqtt://\S+$", max_length=300)]
DeviceKey = Annotated[str, Field(pattern=KEY_PATTERN)]


class MigrationFind(WireModel):
    """``edge.device.<peer>.migration.find`` (level 0): the scheduler cannot place a
    container near its source; this peer, near the source, tries to reach the nodes
    named (their brokers) from where it is and answers which it reached."""

    container_id: Identifier
    """The container a place is sought for (no migration is recorded yet): for the log."""
    candidates: Annotated[dict[DeviceKey, PeerUrl], Field(max_length=32)]


class MigrationFound(WireModel):
    reached: dict[DeviceKey, float]
    """Round trip in ms to each candidate's broker that answered."""


class MigrationRelay(WireModel):
    """``edge.device.<peer>.migration.relay`` (level 0): make logins on this node's broker
    for the migration's two sides, who do not reach each other but both reach it; only
    they may use the migration's topics, as on a target's broker. Ended with
    ``migration.release`` (or by itself after ``RELAY_TTL_S``)."""

    migration: Identifier
    source: DeviceKey
    target: DeviceKey


class MigrationRelayed(WireModel):
    source_login: BrokerLogin | None = None
    target_login: BrokerLogin | None = None
    """None from a peer whose broker admits anyone (a development set-up)."""


class MigrationRelease(WireModel):
    migration: Identifier


class MigrationOutcome(WireModel):
    ok: bool
    steps: list[MigrationStep]
    freeze_ms: float | None = None
    error_code: str | None = None
    error: str | None = None
    rolled_back: bool = False
    """The target could not take over and the source kept (or resumed) its copy."""
    stored: bool = False
    """Level 1: the package is on the keeper and the source's copy is gone."""


class StepReport(WireModel):
    """``edge.migration.report``: an agent's step of a migration, as it happens."""

    migration: Annotated[str, Field(min_length=1, max_length=64)]
    step: MigrationStep
    state: MigrationState | None = None


class NodeMigrationRequest(WireModel):
    """``edge.migration.request``: a node's monitor asks for containers to move off it
    (sustained pressure, a predicted failure, an operator's drain)."""

    reason: MigrationReason
    containers: (
        Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=256)] | None
    ) = None
    """The containers to move; None: every container of the node."""
    detail: Annotated[str, Field(max_length=500)] = ""
    """What the monitor saw, for people (e.g. ``cpu 97% for 60 s``)."""

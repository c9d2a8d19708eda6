"""Containers and the commands that act on them, as the orchestrator and agents exchange them.

The orchestrator resolves a request into a full :class:`ContainerSpec` (defaults filled,
the Docker name made) before anything is sent; the agent applies its hardening on top,
whatever the spec says.
"""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from .artifacts import DeploymentOrder, DeploymentReport, TransferRef, TransferUrl
from .heartbeat import WireModel
from .identity import KEY_PATTERN
from .ids import DOCKER_NAME_PATTERN, Identifier
from .interfaces import DeviceMapping
from .text import SINGLE_LINE, ObjectId

# A container's own name: what the user picks; the Docker name is "<username>-<name>".
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# Docker's reference grammar, simplified: [registry[:port]/]path[:tag][@digest].
IMAGE_PATTERN = (
    r"^(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_ENV_PREFIX = "EDGECLOUD_"
"""The node sets these itself (the container's broker identity, its data topic)."""
TENANT_IMAGES = "edgecloud-tenants"
"""The node's own namespace for images tenants brought (archives, builds): never a name a
tenant may ask for, or it could run another tenant's private image."""
NO_NUL = r"^[^\x00]*$"

MIB = 1 << 20
DEFAULT_MEMORY = 256 * MIB
DEFAULT_CPUS = 1.0
DEFAULT_PIDS = 256
DEFAULT_DISK = 256 * MIB


class Action(StrEnum):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    REMOVE = "remove"
    INSPECT = "inspect"
    DEPLOY = "deploy"
    """Bring an application (archive and script) into the container and run the script."""
    FILES = "files"
    """Copy a file or directory out of the container into storage."""
    UNSUBSCRIBE = "unsubscribe"
    """Stop feeding the container its sensor topics for good: its feed login on the node's
    broker is deleted and the node's record of it keeps no subscriptions (a grant
    withdrawn)."""


class CommandState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


SENSOR_TOPIC = r"^[^$\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
"""An MQTT topic filter of the node's sensors; never a broker's own ``$SYS`` topics."""


class Limits(WireModel):
    memory: Annotated[int, Field(ge=6 * MIB, le=64 << 30, description="bytes")] = DEFAULT_MEMORY
    cpus: Annotated[float, Field(gt=0, le=64)] = DEFAULT_CPUS
    pids: Annotated[int, Field(ge=8, le=32768)] = DEFAULT_PIDS
    disk: Annotated[int, Field(ge=16 * MIB, le=64 << 30, description="bytes")] = DEFAULT_DISK
    """The size of the container's ``/app`` (its only writable place that lasts): writes
    past it fail inside the container. The node sets the space aside at create."""


class PortMapping(WireModel):
    """A container port published on the node, from the range its operator allows."""

    container: Annotated[int, Field(ge=1, le=65535)]
    host: Annotated[int, Field(ge=1, le=65535)]
    protocol: Literal["tcp", "udp"] = "tcp"


NetworkMode = Literal["tenant", "none"]
"""``tenant``: the tenant's own network on the node (the Internet, unless the node's
operator turned it off; nothing of other tenants, of the node or of its neighbours);
``none``: no network at all."""


class ContainerConfig(WireModel):
    """How a container runs: what a tenant asks for, and what its node is told."""

    image: Annotated[str, Field(max_length=255, pattern=IMAGE_PATTERN)]
    command: (
        Annotated[
            list[Annotated[str, Field(max_length=4096, pattern=NO_NUL)]],
            Field(min_length=1, max_length=256),
        ]
        | None
    ) = None
    env: Annotated[
        dict[str, Annotated[str, Field(max_length=4096, pattern=SINGLE_LINE)]],
        Field(max_length=128),
    ] = {}
    limits: Limits = Limits()
    auto_remove: bool = False
    restart_policy: Literal["no", "on-failure", "unless-stopped"] = "unless-stopped"
    network: NetworkMode = "tenant"
    ports: Annotated[list[PortMapping], Field(max_length=16)] = []
    """Published on the node: each ``host`` port within the node's range and free there."""
    subscriptions: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=200, pattern=SENSOR_TOPIC)]],
        Field(max_length=16),
    ] = []
    """Sensor topics (MQTT filters) on the node's broker fed to the application, one JSON
    line per message in ``/app/inbox.jsonl``: received in a persistent session, so none is
    lost while the container moves to a peer."""

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.match(name):
                raise ValueError(f"not an environment variable name: {name!r}")
            if name.upper().startswith(RESERVED_ENV_PREFIX):
                raise ValueError(f"{name}: names beginning {RESERVED_ENV_PREFIX} are the node's")
        return env

    @field_validator("image")
    @classmethod
    def _not_reserved_image(cls, image: str) -> str:
        if is_reserved_image(image):
            raise ValueError(f"{image!r} names an image the node keeps for itself")
        return image

    @model_validator(mode="after")
    def _ports(self) -> "ContainerConfig":
        seen: set[tuple[int, str]] = set()
        for port in self.ports:
            if (port.host, port.protocol) in seen:
                raise ValueError(f"host port {port.host}/{port.protocol} is published twice")
            seen.add((port.host, port.protocol))
        if self.ports and self.network == "none":
            raise ValueError("a container without a network publishes no ports")
        return self


def is_reserved_image(image: str) -> bool:
    """Whether ``image`` names the node's tenant-scoped images, or an image by its id
    (``sha256:...``), which Docker would look up among every tenant's images."""
    path = image.split("@", 1)[0]
    first, _, rest = path.partition("/")
    if first in ("docker.io", "index.docker.io") and rest:
        path = rest
    repository = path.rsplit(":", 1)[0] if ":" in path.rsplit("/", 1)[-1] else path
    return repository in ("sha256", TENANT_IMAGES) or repository.startswith(f"{TENANT_IMAGES}/")


class ContainerSpec(ContainerConfig):
    """Everything a node needs to create one tenant container."""

    sensor_broker: Annotated[str, Field(pattern=r"^mqtt://\S+$", max_length=300)] | None = None
    """Where the subscriptions are read: None, the node's own broker; after a migration, the
    broker of the node the container left, where its sensors still publish."""

    container_id: Identifier
    """Names the container's ``/app`` disk, its mount point and its volume on the node."""
    docker_name: Annotated[str, Field(pattern=DOCKER_NAME_PATTERN)]
    tenant_id: Annotated[str, Field(min_length=1, max_length=64)]
    owner: Annotated[str, Field(min_length=1, max_length=64)]
    image_archive: TransferRef | None = None
    """Load the image from this ``docker save`` archive instead of pulling it."""
    build_context: TransferRef | None = None
    """Build the image from this context (a tar with a ``Dockerfile`` at its root) instead
    of pulling it; a peer it migrates to is sent the context to build, not the image."""
    devices: Annotated[list[DeviceMapping], Field(max_length=32)] = []
    """The declared interfaces the container holds, resolved by the orchestrator: the agent
    maps exactly these device files, each only after checking it is a character device."""
    generation: Annotated[int, Field(ge=1)] = 1
    """Which placement of the container this is: the cloud counts up each time it places
    the container on another node (a migration, a cold restart). The node labels the copy
    with it, so a copy left behind on a node the container has since left is told apart
    from the current one (edgecloud_contracts.placements)."""


class Command(WireModel):
    """One command for a node; its id makes delivery idempotent (applied once)."""

    id: Identifier
    """Also names the command's files on the node (a copy out's tar)."""
    action: Action
    container_id: Identifier
    docker_name: Annotated[str, Field(pattern=DOCKER_NAME_PATTERN)]
    spec: ContainerSpec | None = None
    """Only for create."""
    deployment: DeploymentOrder | None = None
    """Only for deploy."""
    files: "FilesOrder | None" = None
    """Only for files."""


def _no_parent_steps(path: str) -> str:
    if ".." in path.split("/"):
        raise ValueError("a container path may not contain ..")
    return path


# Inside the container: absolute, no control characters, no "..". Docker resolves it in the
# container's own filesystem, never on the node.
ContainerPath = Annotated[
    str,
    Field(
        pattern=r"^/[^\x00-\x1f\x7f]{0,1023}$",
        description="an absolute path inside the container, file or directory",
    ),
    AfterValidator(_no_parent_steps),
]


class FilesOrder(WireModel):
    """Copy ``path`` out of the container and upload it (a tar) as this artifact."""

    path: ContainerPath
    artifact_id: Identifier
    url: TransferUrl
    """Relative to the platform's public API address, carrying a short-lived upload grant."""


class CopyFiles(WireModel):
    """``POST /containers/{id}/files``."""

    path: ContainerPath


class FilesAccepted(WireModel):
    artifact: str
    """Complete once the node has sent the files (a tar); then download its content."""
    command: str


IMAGE_ID_PATTERN = r"^sha256:[0-9a-f]{64}$"


class ContainerRecord(WireModel):
    """``GET /v1/containers/{id}/record``, for the migration-scheduler only: what the
    cloud holds of a container, which a migration's target creates rather than what the
    source says."""

    spec: ContainerSpec
    image_id: str | None
    """The image it was created from, as its first node reported it (None until then)."""


class ContainerReport(WireModel):
    """A container as the node sees it."""

    container_id: str | None
    """The cloud's id (from the container's label); None for containers the cloud did not make."""
    docker_id: str
    docker_name: str
    image: str
    image_id: Annotated[str, Field(pattern=IMAGE_ID_PATTERN)] | None = None
    """The image's ID on the node (the tenant's own name for it is ``image``)."""
    state: str
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    generation: Annotated[int, Field(ge=1)] | None = None
    """The placement this copy was created for (its label); None for copies made before
    placements were counted. The cloud ignores a report of any other placement."""


class CommandResult(WireModel):
    command_id: str
    ok: bool
    error_code: str | None = None
    error: str | None = None
    container: ContainerReport | None = None
    """The container after the command (None once removed)."""
    replayed: bool = False
    """True when the node had already applied this command and answers from memory."""


class PullProgress(WireModel):
    command_id: str
    image: str
    status: str
    current: int | None = None
    total: int | None = None


# Collected data: numbers an application publishes, on its output after this prefix (a JSON
# object of name -> number) or as that same JSON on its topic of the node's broker.
DATA_PREFIX = "EDGECLOUD_DATA "
DATA_TOPIC = "edgecloud/data/{docker_name}"
DATA_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class DataPoint(WireModel):
    at: datetime
    name: Annotated[str, Field(pattern=DATA_NAME_PATTERN)]
    value: Annotated[float, Field(allow_inf_nan=False)]


class DataBatch(WireModel):
    container_id: Annotated[str, Field(min_length=1, max_length=64)]
    points: Annotated[list[DataPoint], Field(min_length=1, max_length=2000)]


class DataSeries(WireModel):
    """``GET /containers/{id}/data``: each name's points, oldest first."""

    series: dict[str, list[tuple[datetime, float]]]
    truncated: bool = False
    """True when more points matched than one answer carries (ask for a shorter range)."""


class NodeReport(WireModel):
    """What a node tells the orchestrator between heartbeats: a container changed, a
    deployment moved on, data was collected, a pull made progress, what the node runs.

    Container, deployment and data reports go through the node's durable outbox: they are
    sent at least once, each with its ``id``, and the orchestrator applies an id once.
    Pull progress and inventories are best effort (a later one supersedes a lost one) and
    carry no id."""

    id: ObjectId | None = None
    """Assigned by the node (a uuid4 hex); None from agents that predate the outbox."""
    kind: Literal["container", "pull", "inventory", "deployment", "data"]
    container: ContainerReport | None = None
    pull: PullProgress | None = None
    deployment: DeploymentReport | None = None
    data: Annotated[list[DataBatch], Field(max_length=100)] | None = None
    inventory: Annotated[list[ContainerReport], Field(max_length=1000)] | None = None
    """Every container the node manages, sent on each (re)connect and periodically, so
    the cloud can reconcile its view with the node's."""
    at: datetime


# The orchestrator's REST API, as the gateway passes it on (../shared/API.md).


class LogLine(WireModel):
    at: datetime
    stream: Literal["stdout", "stderr"]
    text: str


class LogsRequest(WireModel):
    """``container.logs``: the last ``tail`` lines, or the lines after ``since``."""

    container_id: Identifier
    docker_name: Annotated[str, Field(pattern=DOCKER_NAME_PATTERN)]
    tail: Annotated[int, Field(ge=0, le=10000)] = 100
    since: datetime | None = None


class LogsAnswer(WireModel):
    lines: list[LogLine]
    running: bool
    """False once the container has stopped: a follower has seen everything."""


class Placement(WireModel):
    """Pick a matching device instead of naming one."""

    location: Annotated[str, Field(min_length=1, max_length=200, pattern=SINGLE_LINE)] | None = None
    arch: (
        Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")] | None
    ) = None


class CreateContainer(ContainerConfig):
    device: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None
    placement: Placement | None = None
    name: Annotated[
        str, Field(pattern=NAME_PATTERN, description="lowercase letters, digits, _ . -")
    ]
    interfaces: Annotated[list[Annotated[str, Field(max_length=100)]], Field(max_length=32)] = []
    image_artifact: ObjectId | None = None
    """An uploaded image archive (``docker save``, kind ``image``) holding ``image``: the
    node loads it instead of pulling, so nodes without registry access run custom images."""
    build_artifact: ObjectId | None = None
    """An uploaded build context (a ``.tar`` with a ``Dockerfile`` at its root, kind
    ``file``): the node builds ``image`` from it, without network, instead of pulling; a
    migration then sends the context to the peer to build, not the image."""

    @model_validator(mode="after")
    def _one_image_source(self) -> "CreateContainer":
        if self.image_artifact is not None and self.build_artifact is not None:
            raise ValueError("give image_artifact or build_artifact, not both")
        return self

    @model_validator(mode="after")
    def _one_target(self) -> "CreateContainer":
        if (self.device is None) == (self.placement is None):
            raise ValueError("give either device or placement")
        if (
            self.placement is not None
            and self.placement.location is None
            and self.placement.arch is None
        ):
            raise ValueError("placement needs a location or an arch")
        return self


class ContainerView(WireModel):
    id: str
    name: str
    """``<username>-<name>``, as on the node."""
    device: str
    image: str
    state: str
    desired_state: str
    owner: str
    created_at: datetime
    updated_at: datetime
    exit_code: int | None = None
    error: str | None = None
    limits: Limits
    command: str | None = None
    """The pending command when the node has not answered yet."""
    interfaces: list[str] = []
    """The node's hardware interfaces it holds (it is bound to that node: it never moves)."""
    network: NetworkMode = "tenant"
    ports: list[PortMapping] = []
    """Its published ports, on its node's addresses."""


class ContainerPage(WireModel):
    items: list[ContainerView]
    next_cursor: str | None


class CommandView(WireModel):
    id: str
    action: Action
    state: CommandState
    container: str
    device: str
    result: dict[str, object] | None
    error: str | None
    error_code: str | None
    attempts: int
    created_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None

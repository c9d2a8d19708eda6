"""The shapes of the gateway's answers and requests, as the CLI reads and sends them
(/work/shared/API.md); typed dicts, since the JSON is printed as is by ``--json``."""

from typing import Any, NotRequired, TypedDict


class Login(TypedDict):
    access_token: str
    token_type: str
    expires_at: str
    csrf_token: NotRequired[str]


class User(TypedDict):
    id: str
    username: str
    created_at: str
    disabled_at: NotRequired[str | None]


class Tenant(TypedDict):
    id: str
    name: str


class Me(TypedDict):
    user: User
    tenant: Tenant
    roles: list[str]


class DeviceMetrics(TypedDict):
    cpu_percent: float | None
    memory_used: int | None
    disk_free: int | None


class Device(TypedDict):
    key: str
    id: str
    name: str
    mac: str
    location: str | None
    arch: str
    os: str
    kernel: str
    cpu_count: int
    memory_total: int
    disk_total: int
    status: str
    link: str | None
    last_seen: str | None
    metrics: DeviceMetrics | None


class Token(TypedDict):
    id: str
    name: str
    created_at: str
    expires_at: str
    last_used_at: str | None


class CreatedToken(Token):
    token: str


class Limits(TypedDict):
    memory: int
    cpus: float
    pids: int
    disk: NotRequired[int]


class PortMapping(TypedDict):
    """A container port published on its node's ``host`` port."""

    container: int
    host: int
    protocol: str
    """tcp or udp."""


class Container(TypedDict):
    id: str
    name: str
    """``<username>-<name>``."""
    device: str
    image: str
    state: str
    desired_state: str
    owner: str
    created_at: str
    updated_at: str
    exit_code: int | None
    error: str | None
    limits: Limits
    command: str | None
    """The id of the command still waiting for the device, else None."""
    network: NotRequired[str]
    """tenant (the tenant's own network on the node) or none."""
    ports: NotRequired[list[PortMapping]]


class Command(TypedDict):
    id: str
    action: str
    state: str
    """queued, sent, succeeded, failed or expired."""
    container: str
    device: str
    result: dict[str, Any] | None
    error: str | None
    error_code: str | None
    attempts: int
    created_at: str
    sent_at: str | None
    finished_at: str | None


class Placement(TypedDict, total=False):
    location: str
    arch: str


class LimitsRequest(TypedDict, total=False):
    memory: int
    cpus: float
    pids: int
    disk: int


class NewContainer(TypedDict):
    """``POST /api/v1/containers``: exactly one of ``device`` and ``placement``."""

    name: str
    image: str
    device: NotRequired[str]
    placement: NotRequired[Placement]
    command: NotRequired[list[str]]
    env: NotRequired[dict[str, str]]
    limits: NotRequired[LimitsRequest]
    auto_remove: NotRequired[bool]
    restart_policy: NotRequired[str]
    interfaces: NotRequired[list[str]]
    subscriptions: NotRequired[list[str]]
    network: NotRequired[str]
    ports: NotRequired[list[PortMapping]]


class NewArtifact(TypedDict):
    """``POST /api/v1/artifacts``: announce an upload; its bytes follow in pieces."""

    name: str
    size: int
    sha256: str
    kind: str


class Artifact(TypedDict):
    id: str
    name: str
    kind: str
    """application, script, image, log, result or file."""
    state: str
    """uploading or complete."""
    size: int | None
    """None until a device that did not announce it sends its first bytes."""
    received: int
    sha256: str | None
    owner: str
    container: str | None
    created_at: str
    completed_at: str | None
    upload_url: str | None
    """Where to ``PATCH`` the bytes while uploading."""
    content_url: str | None


class Deployed(TypedDict):
    """The answer to ``POST /api/v1/containers/{id}/deploy`` (202)."""

    deployment: str
    command: str
    state: str


class DeploymentStep(TypedDict):
    name: str
    """download, verify, extract, copy, run."""
    started_at: str
    duration_ms: float | None
    """None while the step goes on."""
    detail: str | None


class Deployment(TypedDict):
    id: str
    container: str
    device: str
    artifact: str
    script: str
    state: str
    """queued, downloading, extracting, copying, running, succeeded or failed."""
    steps: list[DeploymentStep]
    received: int | None
    total: int | None
    exit_code: int | None
    error_code: str | None
    error: str | None
    command: str | None
    created_at: str
    finished_at: str | None


class CopyOut(TypedDict):
    """The answer to ``POST /api/v1/containers/{id}/files`` (202): the artifact the device
    fills, and the command that asks it to."""

    artifact: str
    command: str


class MigrationAccepted(TypedDict):
    """The answer to ``POST /api/v1/containers/{id}/migrate`` (202)."""

    migration: str


class MigrationStep(TypedDict):
    name: str
    """select_peer, resource_request, configuration, dependencies, start, handover,
    stop_source."""
    started_at: str
    duration_ms: float | None
    """None while the step goes on."""


class Migration(TypedDict):
    id: str
    container: str
    source: str
    target: str | None
    """None until a peer is chosen (or when none was)."""
    reason: str
    state: str
    """requested, planning, transferring, activating, stored (level 1, waiting for a node
    that can run it), then completed, rolled_back, failed or cold_restarted."""
    steps: list[MigrationStep]
    freeze_ms: float | None
    error_code: NotRequired[str | None]
    error: NotRequired[str | None]
    lost_window: NotRequired[dict[str, str] | None]
    level: NotRequired[int]
    """The collaboration level used: 2 full migration, 1 kept by ``keeper`` then handed on."""
    keeper: NotRequired[str | None]
    created_at: str
    finished_at: NotRequired[str | None]


class ExecResult(TypedDict):
    exit_code: int | None
    """None when the command was killed at its timeout."""
    output: str
    truncated: bool
    timed_out: bool


class InterfaceHolder(TypedDict):
    container: str | None
    """None for another tenant's container."""
    name: str | None
    tenant: str | None
    since: str | None


class Interface(TypedDict):
    name: str
    device: str
    kind: str
    path: str | None
    container_path: str | None
    topic: str | None
    read_only: bool
    shareable: bool
    tenants: list[str]
    description: str
    holders: NotRequired[list[InterfaceHolder]]


class Member(TypedDict):
    user: User
    role: str
    joined_at: str


class PasswordReset(TypedDict):
    user: User
    reset_token: str | None
    expires_at: str | None

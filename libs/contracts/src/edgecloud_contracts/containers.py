"""Containers and the commands that act on them, as the orchestrator and agents exchange them.

The orchestrator resolves a request into a full :class:`ContainerSpec` (defaults filled,
the Docker name made) before anything is sent; the agent applies its hardening on top,
whatever the spec says.
"""

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator

from .heartbeat import WireModel
from .text import SINGLE_LINE

# A container's own name: what the user picks; the Docker name is "<username>-<name>".
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# Docker's reference grammar, simplified: [registry[:port]/]path[:tag][@digest].
IMAGE_PATTERN = (
    r"^(?:[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]{1,5})?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

MIB = 1 << 20
DEFAULT_MEMORY = 256 * MIB
DEFAULT_CPUS = 1.0
DEFAULT_PIDS = 256


class Action(StrEnum):
    CREATE = "create"
    START = "start"
    STOP = "stop"
    RESTART = "restart"
    REMOVE = "remove"
    INSPECT = "inspect"


class CommandState(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class Limits(WireModel):
    memory: Annotated[int, Field(ge=6 * MIB, le=64 << 30, description="bytes")] = DEFAULT_MEMORY
    cpus: Annotated[float, Field(gt=0, le=64)] = DEFAULT_CPUS
    pids: Annotated[int, Field(ge=8, le=32768)] = DEFAULT_PIDS


class ContainerSpec(WireModel):
    """Everything a node needs to create one tenant container."""

    container_id: Annotated[str, Field(min_length=1, max_length=64)]
    docker_name: Annotated[str, Field(min_length=1, max_length=128)]
    image: Annotated[str, Field(max_length=255, pattern=IMAGE_PATTERN)]
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)] | None = None
    env: Annotated[dict[str, Annotated[str, Field(max_length=4096, pattern=SINGLE_LINE)]], Field(max_length=128)] = {}
    limits: Limits = Limits()
    auto_remove: bool = False
    restart_policy: Literal["no", "on-failure", "unless-stopped"] = "unless-stopped"
    tenant_id: Annotated[str, Field(min_length=1, max_length=64)]
    owner: Annotated[str, Field(min_length=1, max_length=64)]

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not ENV_NAME.match(name):
                raise ValueError(f"not an environment variable name: {name!r}")
        return env


class Command(WireModel):
    """One command for a node; its id makes delivery idempotent (applied once)."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    action: Action
    container_id: Annotated[str, Field(min_length=1, max_length=64)]
    docker_name: Annotated[str, Field(min_length=1, max_length=128)]
    spec: ContainerSpec | None = None
    """Only for create."""


class ContainerReport(WireModel):
    """A container as the node sees it."""

    container_id: str | None
    """The cloud's id (from the container's label); None for containers the cloud did not make."""
    docker_id: str
    docker_name: str
    image: str
    state: str
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


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


class NodeReport(WireModel):
    """What a node tells the orchestrator between heartbeats: a container changed, a pull
    made progress. Sent through the node's durable outbox."""

    kind: Literal["container", "pull"]
    container: ContainerReport | None = None
    pull: PullProgress | None = None
    at: datetime

"""Fencing: exactly one copy of a container runs, as the cloud sees it.

Every placement of a container has a generation (``ContainerSpec.generation``), counted up
by the cloud each time it places the container on another node. A node that comes back
after the cloud restarted its containers elsewhere still holds their old copies. Before it
reports anything it asks (``edge.orchestrator.placements``) which of the copies it holds
are its own; it stops the others (network first, then the process), keeps their ``/app``
and logs for the tenant, and removes them on the tenant's word or after a retention time.
The cloud, for its part, takes a report only from the node a container is placed on, and
only of the current generation.
"""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field

from .heartbeat import WireModel
from .ids import Identifier

MAX_HELD = 1000


class HeldCopy(WireModel):
    container_id: Identifier
    generation: Annotated[int, Field(ge=1)]
    """Its label; 1 for a copy made before placements were counted."""


class PlacementCheck(WireModel):
    """``edge.orchestrator.placements(check)``: the copies a node holds."""

    held: Annotated[list[HeldCopy], Field(max_length=MAX_HELD)]


class PlacementAnswer(WireModel):
    placed: dict[str, int]
    """Every container placed on the asking node, with its current generation."""
    stale: list[str]
    """The held copies whose container the cloud has placed on another node, removed, or
    placed here again at a newer generation: the node stops them. A held copy the cloud has
    no record of at all is in neither list (an orphan: flagged, not touched)."""


CopyState = Literal["fenced", "removing", "removed"]


class RetainedCopy(WireModel):
    """``GET /containers/{id}/copies``: an old copy of the container kept on a node that
    came back after the container was placed elsewhere. Its ``/app`` files and logs are
    read with ``?copy=<device>`` on the container's files and logs."""

    device: str
    generation: int
    state: CopyState
    found_at: datetime
    """When the node came back and was told to stop it."""
    removed_at: datetime | None = None
    reason: str

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

from pydantic import ConfigDict, Field

from .heartbeat import WireModel


class MigrationState(StrEnum):
    REQUESTED = "requested"
    PLANNING = "planning"
    TRANSFERRING = "transferring"
    ACTIVATING = "activating"
    COMPLETED = "completed"
    ROLLED_BACK = "rolled_back"
    FAILED = "failed"
    COLD_RESTARTED = "cold_restarted"


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
    created_at: datetime
    finished_at: datetime | None = None


class MigrationPage(WireModel):
    items: list[MigrationView]
    next_cursor: str | None

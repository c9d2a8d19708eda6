"""A container's output as its node ships it to storage, while the container runs.

The node cuts what a container prints into segments (by size and by time) and uploads each
one over HTTP with a grant for that container (``edge.orchestrator.log_stream``). A segment
is keyed by where it starts: the time of its first line and how many lines of that same
instant the node shipped before it (Docker's stamps can repeat), so a segment uploaded
twice, after an answer lost on a bad link, is stored once. Storage keeps segments per
container for the operator's retention and serves them in time order, whichever node
produced them.
"""

import itertools
from datetime import datetime
from typing import Annotated, Self

from pydantic import Field, model_validator

from .containers import LogLine
from .heartbeat import WireModel
from .ids import Identifier

MAX_SEGMENT_LINES = 5000
MAX_SEGMENT_BYTES = 512 << 10
"""The largest segment body storage reads; the node cuts its segments well below it."""
MAX_LINE_CHARS = 16 << 10
"""Docker splits longer output into lines of 16 KiB."""
SEGMENT_PATH = "logs"
"""Under a transfer URL: ``/api/v1/transfers/<container id>/logs?grant=...``."""


class ShippedLine(LogLine):
    text: Annotated[str, Field(max_length=MAX_LINE_CHARS)]


class LogSegment(WireModel):
    container_id: Identifier
    start_skip: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """Lines stamped with the first line's instant that earlier segments carried."""
    lines: Annotated[list[ShippedLine], Field(min_length=1, max_length=MAX_SEGMENT_LINES)]

    @model_validator(mode="after")
    def _in_time_order(self) -> Self:
        if any(b.at < a.at for a, b in itertools.pairwise(self.lines)):
            raise ValueError("a segment's lines are in time order")
        return self

    @property
    def start_at(self) -> datetime:
        return self.lines[0].at

    @property
    def end_at(self) -> datetime:
        return self.lines[-1].at


class SegmentStored(WireModel):
    """Storage's answer to an upload (``stored`` False: it had the segment already)."""

    stored: bool
    lines: int


class StoredLine(LogLine):
    device: str
    """The node that produced the line."""


class StoredLogs(WireModel):
    """``GET /v1/logs/{container_id}``: stored lines, oldest first."""

    lines: list[StoredLine]

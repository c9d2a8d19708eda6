"""Docker's JSON (inspect results, events, pull progress) turned into our wire models."""

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from edgecloud_contracts.containers import IMAGE_ID_PATTERN, ContainerReport, LogLine
from edgecloud_contracts.heartbeat import ContainerState

from .hardening import LABEL_CONTAINER_ID, LABEL_GENERATION, LABEL_IMAGE, LABEL_TENANT

# ContainerReport.state for a container that no longer exists (the orchestrator's word too).
REMOVED = "removed"
_NEVER = "0001-01-01T00:00:00Z"
_FINISHED_STATES = ("exited", "dead")


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value or value == _NEVER:
        return None
    # Docker gives nanoseconds; datetime keeps microseconds.
    head, dot, tail = value.partition(".")
    if dot:
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits) :]
        value = f"{head}.{digits[:6]}{zone}"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def from_inspect(data: dict[str, Any]) -> ContainerReport:
    """A report from ``GET /containers/{id}/json``."""
    config = data.get("Config") or {}
    state = data.get("State") or {}
    status = str(state.get("Status", "unknown"))
    exit_code = state.get("ExitCode")
    found = config.get("Labels") or {}
    return ContainerReport(
        container_id=found.get(LABEL_CONTAINER_ID),
        docker_id=str(data.get("Id", "")),
        docker_name=str(data.get("Name", "")).lstrip("/"),
        # Made from an image ID: the tenant's own name for it is in the label.
        image=str(found.get(LABEL_IMAGE) or config.get("Image", "")),
        image_id=_image_id(data.get("Image")),
        state=status,
        exit_code=int(exit_code)
        if status in _FINISHED_STATES and isinstance(exit_code, int)
        else None,
        started_at=_timestamp(state.get("StartedAt")),
        finished_at=_timestamp(state.get("FinishedAt")),
        generation=generation_of(found),
    )


def generation_of(labels: dict[str, Any]) -> int | None:
    """The placement a copy was created for, from its labels (None: made before them)."""
    value = labels.get(LABEL_GENERATION)
    if isinstance(value, str) and value.isdigit() and 0 < int(value) < 2**31:
        return int(value)
    return None


def _image_id(value: object) -> str | None:
    """The engine's ``Image`` of a container: its image's ID, when it is one."""
    return value if isinstance(value, str) and re.fullmatch(IMAGE_ID_PATTERN, value) else None


def removed(docker_id: str, attributes: dict[str, Any]) -> ContainerReport:
    """A report for a container that is gone, from a ``destroy`` event's attributes."""
    return ContainerReport(
        container_id=attributes.get(LABEL_CONTAINER_ID),
        docker_id=docker_id,
        docker_name=str(attributes.get("name", "")),
        image=str(attributes.get(LABEL_IMAGE) or attributes.get("image", "")),
        state=REMOVED,
        generation=generation_of(attributes),
    )


def label(data: dict[str, Any], name: str) -> str | None:
    value = ((data.get("Config") or {}).get("Labels") or {}).get(name)
    return str(value) if value is not None else None


def after_ns(time_ns: int) -> str:
    """Docker's ``since`` syntax (seconds.nanoseconds) for just after ``time_ns``."""
    after = time_ns + 1
    return f"{after // 1_000_000_000}.{after % 1_000_000_000:09d}"


def summary(data: dict[str, Any]) -> ContainerState:
    names = data.get("Names") or [""]
    found = data.get("Labels") or {}
    tenant = found.get(LABEL_TENANT)
    return ContainerState(
        id=str(data.get("Id", ""))[:64],
        name=str(names[0]).lstrip("/")[:200],
        image=str(found.get(LABEL_IMAGE) or data.get("Image", ""))[:400],
        state=str(data.get("State", "unknown"))[:40],
        status=str(data.get("Status", ""))[:200],
        tenant=str(tenant)[:64] if tenant else None,
    )


@dataclass(frozen=True, slots=True)
class PullStatus:
    """Progress of one image pull, summed over its layers."""

    image: str
    status: str
    current: int | None = None
    total: int | None = None


PullCallback = Callable[[PullStatus], None]


class PullTracker:
    """Folds Docker's per-layer progress lines into one throttled stream of updates.

    A pull emits a line per layer per chunk; the cloud needs a few updates a second at most.
    """

    def __init__(self, image: str, report: PullCallback | None, interval_s: float = 0.25) -> None:
        self._image = image
        self._report = report
        self._interval = interval_s
        self._layers: dict[str, tuple[int, int]] = {}
        self._last_sent = 0.0
        self._last_status = ""

    def feed(self, line: dict[str, Any]) -> None:
        status = str(line.get("status", ""))
        layer = str(line.get("id", ""))
        detail = line.get("progressDetail") or {}
        current, total = detail.get("current"), detail.get("total")
        if status == "Downloading" and isinstance(current, int) and isinstance(total, int):
            self._layers[layer] = (current, total)
        elif status in ("Download complete", "Pull complete", "Already exists") and layer:
            done = self._layers.get(layer)
            if done is not None:
                self._layers[layer] = (done[1], done[1])
        now = time.monotonic()
        changed = status != self._last_status
        if changed or now - self._last_sent >= self._interval:
            self._send(status, now)

    def finish(self, status: str = "done") -> None:
        self._send(status, time.monotonic())

    def _send(self, status: str, now: float) -> None:
        self._last_sent, self._last_status = now, status
        if self._report is None:
            return
        if self._layers:
            current = sum(c for c, _ in self._layers.values())
            total = sum(t for _, t in self._layers.values())
            self._report(PullStatus(self._image, status[:200], current, total))
        else:
            self._report(PullStatus(self._image, status[:200]))


# Container output: Docker multiplexes stdout and stderr into frames of an 8-byte header
# (stream, 0, 0, 0, big-endian length) and the payload, when the container has no TTY.
_STREAMS: dict[int, Literal["stdout", "stderr"]] = {1: "stdout", 2: "stderr"}


class FrameReader:
    """Splits a multiplexed log stream into (stream, payload), across chunk boundaries."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> Iterator[tuple[Literal["stdout", "stderr"], bytes]]:
        self._buffer += chunk
        while len(self._buffer) >= 8:
            size = int.from_bytes(self._buffer[4:8], "big")
            if len(self._buffer) < 8 + size:
                return
            stream = _STREAMS.get(self._buffer[0], "stdout")
            payload = bytes(self._buffer[8 : 8 + size])
            del self._buffer[: 8 + size]
            yield stream, payload


def log_lines(raw: bytes) -> Iterator[LogLine]:
    """Lines of a ``timestamps=1`` log answer, each with its time and stream."""
    frames = FrameReader()
    for stream, payload in frames.feed(raw):
        yield from log_lines_of(stream, payload)


def log_lines_of(stream: Literal["stdout", "stderr"], payload: bytes) -> Iterator[LogLine]:
    for line in payload.decode(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        at = _timestamp(stamp)
        if at is None:  # not a timestamped line (should not happen): keep it whole
            at, text = datetime.now(UTC), line
        yield LogLine(at=at, stream=stream, text=text)

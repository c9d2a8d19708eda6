"""A followed log is a server-sent event stream: whatever a container prints, each line
arrives as one ``log`` event with one ``data`` field, and cannot add fields or events."""

import re
from datetime import UTC, datetime
from typing import Any

from edgecloud_contracts.containers import LogLine, LogsAnswer
from edgecloud_orchestrator.commands.dispatch import Dispatcher
from edgecloud_orchestrator.containers.models import Container
from edgecloud_orchestrator.containers.outputs import _follow
from edgecloud_orchestrator.events import EventPublisher

HOSTILE = [
    "plain",
    "evil\rid: 42\r\revent: end\rdata: forged",
    "crlf\r\nevent: end",
    "lf\ndata: more",
    "nul\0here",
]


class LoggingNode:
    """The orchestrator's WAMP link to a node whose container printed ``HOSTILE`` and then
    stopped: asked again for newer lines, it has none."""

    def __init__(self) -> None:
        self.asked = 0

    async def call(self, uri: str, request: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.asked += 1
        return LogsAnswer(lines=[], running=False).model_dump(mode="json")


def parse_event_stream(stream: str) -> tuple[list[tuple[str, str]], str | None]:
    """The events (type, data) and the last event id a browser's EventSource would see,
    following the WHATWG event-stream grammar (any of CRLF, CR, LF ends a line)."""
    events: list[tuple[str, str]] = []
    last_id: str | None = None
    kind, data = "", list[str]()
    for line in re.split(r"\r\n|\r|\n", stream):
        if line == "":
            if data:
                events.append((kind or "message", "\n".join(data)))
            kind, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            last_id = value
    return events, last_id


async def test_a_log_line_cannot_add_fields_or_events_to_the_stream() -> None:
    node = LoggingNode()
    events = EventPublisher()
    events.link = node  # type: ignore[assignment]
    dispatcher = Dispatcher(
        sessions=None,  # type: ignore[arg-type]
        events=events,
        command_timeout_s=5,
        create_timeout_s=5,
        sweep_interval_s=1,
        secret="a-test-secret-of-at-least-32-bytes",
    )
    container = Container(id="c-1", docker_name="u-web", device_key="n1")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    first = LogsAnswer(
        lines=[LogLine(at=at, stream="stdout", text=text) for text in HOSTILE], running=True
    )
    stream = "".join([chunk async for chunk in _follow(dispatcher, container, first, 0)])

    parsed, last_id = parse_event_stream(stream)
    assert node.asked == 1
    assert last_id is None
    assert parsed == [
        ("log", "plain"),
        ("log", "evil"),
        ("log", "id: 42"),
        ("log", ""),
        ("log", "event: end"),
        ("log", "data: forged"),
        ("log", "crlf"),
        ("log", "event: end"),
        ("log", "lf"),
        ("log", "data: more"),
        ("log", "nul\ufffdhere"),
        ("end", "the container stopped"),
    ]

"""A container's logs as its nodes shipped them to storage (edgecloud_contracts.log_segments).

Read when the node cannot answer (lost, offline, the container removed) and to put in front
of what the node has: after a migration the node running the container knows only its own
lines, the ones before come from storage, from the node that ran it then.
"""

import collections
import logging
from collections.abc import AsyncIterator
from datetime import datetime

from fastapi import Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from edgecloud_contracts.containers import LogLine, LogsAnswer
from edgecloud_contracts.log_segments import StoredLogs
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import Conflict, Problem, Unavailable

from .models import Container
from .sse import event, log_events

logger = logging.getLogger(__name__)


async def shipped(
    storage: ServiceClient,
    caller: Identity,
    container_id: str,
    *,
    tail: int,
    before: datetime | None = None,
) -> list[LogLine]:
    """The last ``tail`` shipped lines (stamped before ``before``), oldest first."""
    answer = await storage.request(
        "GET",
        f"/v1/logs/{container_id}",
        identity=caller,
        params={"tail": tail, "before": before.isoformat() if before else None},
    )
    stored = StoredLogs.model_validate_json(answer.content)
    return [LogLine(at=line.at, stream=line.stream, text=line.text) for line in stored.lines]


async def with_history(
    storage: ServiceClient, caller: Identity, container: Container, live: LogsAnswer, *, tail: int
) -> LogsAnswer:
    """``live`` (the node's answer) with the shipped lines older than its first in front,
    when the node had fewer than ``tail``: its history may begin on another node."""
    missing = tail - len(live.lines)
    if missing <= 0:
        return live
    before = live.lines[0].at if live.lines else None
    try:
        earlier = await shipped(storage, caller, container.id, tail=missing, before=before)
    except Problem as err:
        # The node's own lines still answer; the history comes back with the storage.
        logger.warning("shipped logs of %s unavailable: %s", container.id, err.detail)
        return live
    if not earlier:
        return live
    return LogsAnswer(lines=[*earlier, *live.lines], running=live.running)


async def stored_logs(
    storage: ServiceClient,
    caller: Identity,
    container: Container,
    *,
    tail: int,
    follow: bool,
    unreachable: Exception | None = None,
) -> Response:
    """The logs without the node: a removed job's archive as its node uploaded it, or the
    segments its nodes shipped. ``unreachable``: why the node did not answer."""
    if container.removed_at is not None and container.log_artifact_id:
        content = await storage.request(
            "GET", f"/v1/artifacts/{container.log_artifact_id}/content", identity=caller
        )
        text = content.content.decode(errors="replace").splitlines()
        lines = list(collections.deque(text, maxlen=tail))
    else:
        lines = [line.text for line in await shipped(storage, caller, container.id, tail=tail)]
    if not lines and tail > 0:
        if unreachable is not None:
            raise Unavailable(
                f"the device did not answer and nothing was shipped: {unreachable}",
                code="device_unreachable",
            )
        if container.removed_at is not None:
            raise Conflict(
                "the container's logs are not available: it is gone and kept no logs",
                code="logs_unavailable",
            )
    if not follow:
        return PlainTextResponse("".join(f"{line}\n" for line in lines))
    ending = "the container has finished" if unreachable is None else "the device is unreachable"

    async def replay() -> AsyncIterator[str]:
        for line in lines:
            yield log_events(line)
        yield event("end", ending)

    return StreamingResponse(replay(), media_type="text/event-stream")

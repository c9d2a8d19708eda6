"""A command keeps the request id of the action that made it, and every delivery carries
it, also a late one by the delivery loop; the outbox's depth as /metrics reads it."""

from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import CommandResult
from edgecloud_contracts.correlation import bound_request_id, current_request_id
from edgecloud_orchestrator.commands import service
from edgecloud_orchestrator.commands.dispatch import Dispatcher
from edgecloud_orchestrator.commands.gauges import OutboxGauge
from edgecloud_orchestrator.events import EventPublisher
from edgecloud_servicekit.db import transaction

from .conftest import queue


class NodeLink:
    """The orchestrator's WAMP link as the dispatcher uses it, to a node that is connected
    and answers every command; it notes the request id current at each call."""

    def __init__(self) -> None:
        self.request_ids: list[str | None] = []

    async def is_registered(self, uri: str) -> bool:
        return True

    async def call(self, uri: str, command: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.request_ids.append(current_request_id())
        return CommandResult(command_id=command["id"], ok=True).model_dump(mode="json")

    async def publish(self, topic: str, *args: Any, **kwargs: Any) -> None:
        return None


async def test_a_command_keeps_the_request_id_of_its_action(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessions) as session:
        with bound_request_id("req-create-1"):
            traced = queue(session, "node_a")
        untraced = queue(session, "node_a")
    async with sessions() as session:
        rows = {r.id: r for r in await service.pending_for(session=session, device_key="node_a")}
    assert rows[traced].correlation_id == "req-create-1"
    assert rows[untraced].correlation_id is None


async def test_a_later_delivery_by_the_loop_carries_the_original_request_id(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessions) as session:
        with bound_request_id("req-while-away"):
            queue(session, "node_b")
    link = NodeLink()
    events = EventPublisher()
    events.link = link  # type: ignore[assignment]
    dispatcher = Dispatcher(
        sessions=sessions,
        events=events,
        command_timeout_s=5,
        create_timeout_s=5,
        sweep_interval_s=1,
        secret="a-test-secret-of-at-least-32-bytes",
    )
    # The node came back: the loop sends, on behalf of nobody in particular.
    assert current_request_id() is None
    await dispatcher.deliver_waiting("node_b")
    assert link.request_ids == ["req-while-away"]
    assert current_request_id() is None
    async with sessions() as session:
        assert list(await service.pending_for(session=session, device_key="node_b")) == []


async def test_the_outbox_gauge_counts_queued_and_sent_commands(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        before = await service.pending_counts(session=session)
    async with transaction(sessions) as session:
        queue(session, "node_c")
        queue(session, "node_c")
        sent = queue(session, "node_c")
    async with transaction(sessions) as session:
        assert await service.mark_sent(session=session, command_id=sent, attempts=0)
    await OutboxGauge(sessions)()

    def gauge(state: str) -> float | None:
        return REGISTRY.get_sample_value(
            "edgecloud_command_outbox", {"service": "orchestrator", "state": state}
        )

    assert gauge("queued") == before["queued"] + 2
    assert gauge("sent") == before["sent"] + 1

"""The command outbox in process, on a real (SQLite) schema."""

from datetime import timedelta

from edgecloud_contracts.containers import CommandResult
from edgecloud_contracts.platforms import fits
from edgecloud_orchestrator.commands import service
from edgecloud_orchestrator.containers.images import parse
from edgecloud_servicekit.db import transaction, utcnow

from .conftest import queue


async def test_commands_wait_in_order_and_expire(sessions) -> None:
    async with transaction(sessions) as session:
        first = queue(session, "node_a", timedelta(seconds=-1))
        second = queue(session, "node_a", timedelta(hours=1))
        queue(session, "node_b", timedelta(hours=1))
    async with sessions() as session:
        assert [r.id for r in await service.pending_for(session=session, device_key="node_a")] == [
            first,
            second,
        ]
    async with transaction(sessions) as session:
        expired = await service.expire_overdue(session=session, now=utcnow())
    assert [r.id for r in expired] == [first]
    assert expired[0].state == "expired"
    async with sessions() as session:
        assert [r.id for r in await service.pending_for(session=session, device_key="node_a")] == [
            second
        ]


async def test_a_late_repeat_of_an_answer_changes_nothing(sessions) -> None:
    async with transaction(sessions) as session:
        command_id = queue(session, "node_c", timedelta(hours=1))
    async with transaction(sessions) as session:
        assert await service.mark_sent(session=session, command_id=command_id, attempts=0)
        done = await service.finish(
            session=session,
            command_id=command_id,
            result=CommandResult(command_id=command_id, ok=True),
        )
    assert done is not None
    assert (done.state, done.attempts) == ("succeeded", 1)
    async with transaction(sessions) as session:
        late = await service.finish(
            session=session,
            command_id=command_id,
            result=CommandResult(command_id=command_id, ok=False, error="late"),
        )
    assert late is None


def test_image_references_and_architectures() -> None:
    assert parse("127.0.0.1:5000/edgecloud/busybox:1.0").registry == "127.0.0.1:5000"
    assert parse("busybox").reference == "latest"
    assert parse("example.com/a/b@sha256:" + "a" * 64).reference.startswith("sha256:")
    assert fits("x86_64", {"amd64"})
    assert fits("aarch64", {"amd64", "arm64"})
    assert not fits("aarch64", {"amd64"})
    assert fits("aarch64", None)


async def test_replicas_reading_the_same_waiting_command_send_it_once(sessions) -> None:
    """Two replicas' sweeps read the command at attempt 0; only the first claim counts, and
    the command can be claimed again only at its new attempt (sent again after a timeout)."""
    async with transaction(sessions) as session:
        command_id = queue(session, "node_d", timedelta(hours=1))
    async with transaction(sessions) as session:
        assert await service.mark_sent(session=session, command_id=command_id, attempts=0)
    async with transaction(sessions) as session:
        assert not await service.mark_sent(session=session, command_id=command_id, attempts=0)
    async with transaction(sessions) as session:
        assert await service.mark_sent(session=session, command_id=command_id, attempts=1)

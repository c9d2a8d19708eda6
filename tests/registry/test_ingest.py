"""Heartbeat ingestion against a real (SQLite) database, in process."""

import secrets

import pytest
from sqlalchemy import func, select

from edgecloud_contracts.events import DeviceStatusChanged
from edgecloud_contracts.heartbeat import Heartbeat
from edgecloud_registry.devices import service
from edgecloud_registry.devices.events import DeviceEventPublisher
from edgecloud_registry.devices.ingest import HeartbeatIngest
from edgecloud_registry.devices.models import Device, DeviceMetric, DeviceStatusChange
from edgecloud_servicekit.db import transaction
from tests.support.beats import heartbeat


class RecordingEvents(DeviceEventPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[DeviceStatusChanged] = []

    async def publish(self, changes) -> None:  # type: ignore[no-untyped-def]
        self.published.extend(changes)


def beat(key: str, seq: int, **overrides: object) -> Heartbeat:
    return Heartbeat.model_validate(heartbeat(key, seq=seq, **overrides))


async def test_a_batch_collapses_per_device_and_counts_every_beat(sessions) -> None:
    received = [
        service.ReceivedBeat(beat("dev_a", 1, location="old"), 11, service.utcnow()),
        service.ReceivedBeat(beat("dev_b", 1), 12, service.utcnow()),
        service.ReceivedBeat(beat("dev_a", 2, location="new"), 11, service.utcnow()),
    ]
    async with transaction(sessions) as session:
        changes = await service.record_heartbeats(
            session=session, received=received, missed_heartbeats=3, sample_metrics_for={"dev_a"}
        )
    assert sorted(c.key for c in changes) == ["dev_a", "dev_b"]
    assert all(c.status == "online" and c.previous is None for c in changes)
    async with sessions() as session:
        a = await session.get(Device, "dev_a")
        assert a is not None
        assert (a.location, a.heartbeats, a.last_seq, a.wamp_session) == ("new", 2, 2, 11)
        assert a.deadline_at is not None
        assert a.last_seen is not None
        assert (a.deadline_at - a.last_seen).total_seconds() == pytest.approx(15)
        metrics = await session.scalar(select(func.count()).select_from(DeviceMetric))
        assert metrics == 1
        history = await session.scalar(select(func.count()).select_from(DeviceStatusChange))
        assert history == 2


async def test_no_change_no_event_then_lowpan_degrades(sessions) -> None:
    events = RecordingEvents()
    ingest = HeartbeatIngest(
        sessions=sessions,
        events=events,
        missed_heartbeats=3,
        batch_max=100,
        queue_max=100,
        metrics_sample_interval_s=60,
    )
    import asyncio

    writer = asyncio.create_task(ingest.run())
    try:
        first = await ingest.submit(beat("dev_c", 1), session_id=21)
        second = await ingest.submit(beat("dev_c", 2), session_id=21)
        assert first.status == second.status == "online"
        assert [e.status for e in events.published] == ["online"]
        degraded = await ingest.submit(beat("dev_c", 3, link="lowpan"), session_id=21)
        assert degraded.status == "degraded"
        assert [e.status for e in events.published] == ["online", "degraded"]
        assert events.published[-1].previous == "online"
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_session_leave_and_overdue_mark_offline_once(sessions) -> None:
    async with transaction(sessions) as session:
        await service.record_heartbeats(
            session=session,
            received=[service.ReceivedBeat(beat("dev_d", 1), 31, service.utcnow())],
            missed_heartbeats=3,
            sample_metrics_for=set(),
        )
    async with transaction(sessions) as session:
        changes = await service.mark_session_closed(session=session, wamp_session=31)
    assert [(c.key, c.status, c.previous) for c in changes] == [("dev_d", "offline", "online")]
    async with transaction(sessions) as session:
        assert await service.mark_session_closed(session=session, wamp_session=31) == []
        assert "dev_d" not in [c.key for c in await service.mark_overdue_offline(session=session)]


async def test_retention_drops_only_old_history(sessions) -> None:
    from datetime import timedelta

    now = service.utcnow()
    async with transaction(sessions) as session:
        session.add_all(
            [
                DeviceMetric(
                    device_key="dev_e",
                    at=now - timedelta(days=8),
                    cpu_percent=1,
                    load_1m=0,
                    memory_used=1,
                    disk_free=1,
                ),
                DeviceMetric(
                    device_key="dev_e",
                    at=now - timedelta(hours=1),
                    cpu_percent=2,
                    load_1m=0,
                    memory_used=1,
                    disk_free=1,
                ),
            ]
        )
    async with transaction(sessions) as session:
        await service.prune_history(
            session=session,
            metrics_before=now - timedelta(days=7),
            status_before=now - timedelta(days=30),
        )
    async with sessions() as session:
        left = (
            await session.scalars(
                select(DeviceMetric.cpu_percent).where(DeviceMetric.device_key == "dev_e")
            )
        ).all()
    assert left == [2]


async def test_concurrent_heartbeats_share_transactions(sessions) -> None:
    import asyncio

    ingest = HeartbeatIngest(
        sessions=sessions,
        events=RecordingEvents(),
        missed_heartbeats=3,
        batch_max=500,
        queue_max=1000,
        metrics_sample_interval_s=60,
    )
    writer = asyncio.create_task(ingest.run())
    try:
        acks = await asyncio.gather(
            *(ingest.submit(beat(f"dev_many_{n}", 1), session_id=n) for n in range(200))
        )
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    assert len(acks) == ingest.beats_written == 200
    assert ingest.batches_written < 20  # group commit: many heartbeats per transaction
    async with sessions() as session:
        stored = await session.scalar(
            select(func.count()).select_from(Device).where(Device.key.like("dev_many_%"))
        )
    assert stored == 200


async def test_a_full_backlog_is_refused_not_queued_forever(sessions) -> None:
    from edgecloud_registry.devices.exceptions import IngestOverloaded

    ingest = HeartbeatIngest(
        sessions=sessions,
        events=RecordingEvents(),
        missed_heartbeats=3,
        batch_max=10,
        queue_max=1,
        metrics_sample_interval_s=60,
    )
    import asyncio

    first = asyncio.create_task(ingest.submit(beat("dev_q1", 1), session_id=1))
    await asyncio.sleep(0)
    with pytest.raises(IngestOverloaded):
        await ingest.submit(beat("dev_q2", 1), session_id=2)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)


def fresh_sessions(count: int) -> list[int]:
    """WAMP session ids no other test in this module's database uses."""
    return [secrets.randbits(48) for _ in range(count)]


async def record(sessions, key: str, seq: int, session_id: int, **overrides: object) -> None:  # type: ignore[no-untyped-def]
    async with transaction(sessions) as session:
        await service.record_heartbeats(
            session=session,
            received=[
                service.ReceivedBeat(beat(key, seq, **overrides), session_id, service.utcnow())
            ],
            missed_heartbeats=3,
            sample_metrics_for=set(),
        )


async def state_of(sessions, key: str) -> tuple[str, str | None, int | None]:  # type: ignore[no-untyped-def]
    async with sessions() as session:
        device = await session.get(Device, key)
        assert device is not None
        return device.status, device.link, device.wamp_session


async def test_a_late_beat_of_a_left_session_changes_nothing(sessions) -> None:
    # The node was on the WAN (session 1), moved to the mesh (session 2) and beat there.
    wan, mesh = fresh_sessions(2)
    await record(sessions, "dev_m", 5, wan)
    async with transaction(sessions) as session:
        await service.attach_session(session=session, device_key="dev_m", wamp_session=mesh)
    await record(sessions, "dev_m", 6, mesh, link="lowpan")
    # A beat still in flight over the WAN session arrives now: it must not bring the WAN
    # back, nor make that session's leaving look like the node leaving.
    await record(sessions, "dev_m", 5, wan)
    assert await state_of(sessions, "dev_m") == ("degraded", "lowpan", mesh)
    async with transaction(sessions) as session:
        assert await service.mark_session_closed(session=session, wamp_session=wan) == []
    assert (await state_of(sessions, "dev_m"))[0] == "degraded"


async def test_the_announced_session_stays_the_devices_whatever_beats_say(sessions) -> None:
    # The router announced session 2 before the last beat of session 1 was written.
    first, second, third = fresh_sessions(3)
    await record(sessions, "dev_n", 5, first)
    async with transaction(sessions) as session:
        await service.attach_session(session=session, device_key="dev_n", wamp_session=second)
    await record(sessions, "dev_n", 6, first)
    assert (await state_of(sessions, "dev_n"))[2] == second
    async with transaction(sessions) as session:
        assert await service.mark_session_closed(session=session, wamp_session=first) == []
        changes = await service.mark_session_closed(session=session, wamp_session=second)
    assert [c.status for c in changes] == ["offline"]
    # Offline clears the session: the next beat, over a new one, names it.
    await record(sessions, "dev_n", 7, third)
    assert await state_of(sessions, "dev_n") == ("online", "wan", third)

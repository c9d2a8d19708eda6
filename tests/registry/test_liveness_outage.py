"""The liveness sweep against a real (SQLite) database, in process: silence counts only
while the registry itself could hear. The router's answer is the one thing given here (a
flag the test turns); a paused router and database on the real stack are in
tests/integration/test_control_plane_pauses.py."""

from datetime import timedelta

from edgecloud_registry.devices import service
from edgecloud_registry.devices.liveness import Liveness
from edgecloud_registry.devices.models import Device, RegistryLease
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.leases import Lease

from .test_ingest import RecordingEvents, beat

SESSIONS = {"dev_leaves": 51, "dev_reconnects": 52}


async def heard(sessions, key: str, *, ago_s: float) -> None:
    """A heartbeat received ``ago_s`` seconds ago (its window is 3 x 5 s), over the session
    SESSIONS gives it (41 for the others)."""
    at = utcnow() - timedelta(seconds=ago_s)
    async with transaction(sessions) as session:
        await service.record_heartbeats(
            session=session,
            received=[service.ReceivedBeat(beat(key, 1), SESSIONS.get(key, 41), at)],
            missed_heartbeats=3,
            sample_metrics_for=set(),
        )


async def status(sessions, key: str) -> str:
    async with sessions() as session:
        device = await session.get(Device, key)
        assert device is not None
        return device.status


def liveness(
    sessions, events: RecordingEvents, router: dict[str, bool], lease: Lease | None = None
) -> Liveness:
    watch = Liveness(
        sessions=sessions,
        events=events,
        sweep_interval_s=1,
        metrics_retention=timedelta(days=1),
        status_retention=timedelta(days=1),
        lease=lease,
    )

    async def answers() -> bool:
        return router["up"]

    watch.router_answers = answers
    return watch


async def test_silence_during_a_router_outage_marks_no_one_and_the_window_starts_again(
    sessions,
) -> None:
    events, router = RecordingEvents(), {"up": True}
    watch = liveness(sessions, events, router)
    await watch.sweep()  # a first round after start: the sweep is healthy from now on
    await heard(sessions, "dev_out", ago_s=10)
    router["up"] = False
    await heard(sessions, "dev_out", ago_s=20)  # its deadline passed during the outage
    await watch.sweep()
    assert await status(sessions, "dev_out") == "online"
    router["up"] = True
    await watch.sweep()  # back: the device is given its whole window again
    assert await status(sessions, "dev_out") == "online"
    assert events.published == []
    async with sessions() as session:
        device = await session.get(Device, "dev_out")
        assert device is not None
        assert device.deadline_at is not None
        assert device.deadline_at > utcnow() + timedelta(seconds=14)


async def test_a_fresh_registry_gives_every_device_a_window_then_silence_counts(
    sessions,
) -> None:
    events, router = RecordingEvents(), {"up": True}
    await heard(sessions, "dev_fresh", ago_s=20)
    watch = liveness(sessions, events, router)
    await watch.sweep()  # just started: the device could not have reached a registry
    assert await status(sessions, "dev_fresh") == "online"
    async with transaction(sessions) as session:  # its new window passes in silence
        device = await session.get(Device, "dev_fresh")
        assert device is not None
        device.deadline_at = utcnow() - timedelta(seconds=1)
    await watch.sweep()
    assert await status(sessions, "dev_fresh") == "offline"
    assert [(e.key, e.status) for e in events.published] == [("dev_fresh", "offline")]


async def test_silence_while_the_database_fails_marks_no_one(sessions) -> None:
    events, router = RecordingEvents(), {"up": True}
    database = {"up": True}

    def sessions_while_up():  # the real sessions, or the error a dropped server gives
        if not database["up"]:
            raise ConnectionRefusedError("database down")
        return sessions()

    watch = liveness(sessions_while_up, events, router)
    await watch.sweep()
    await heard(sessions, "dev_db", ago_s=10)
    database["up"] = False
    await heard(sessions, "dev_db", ago_s=20)
    await watch.sweep()  # raises nothing: it waits for the database
    database["up"] = True
    await watch.sweep()
    assert await status(sessions, "dev_db") == "online"
    assert events.published == []


async def test_a_session_leaving_during_an_outage_gets_a_window_otherwise_is_offline(
    sessions,
) -> None:
    events, router = RecordingEvents(), {"up": True}
    watch = liveness(sessions, events, router)
    await watch.sweep()
    await heard(sessions, "dev_leaves", ago_s=0)
    await watch.on_session_leave(51)  # a fresh, healthy registry: the node itself left
    assert await status(sessions, "dev_leaves") == "offline"

    await heard(sessions, "dev_reconnects", ago_s=20)
    router["up"] = False
    await watch.sweep()
    # The node gave up on the frozen router; its old session's leaving arrives now.
    await watch.on_session_leave(52)
    router["up"] = True
    await watch.sweep()
    await heard(sessions, "dev_reconnects", ago_s=20)
    await watch.on_session_leave(52)  # (or just after the router answers again)
    assert await status(sessions, "dev_reconnects") == "online"
    async with sessions() as session:
        device = await session.get(Device, "dev_reconnects")
        assert device is not None
        assert device.wamp_session is None
        assert device.deadline_at is not None
        assert device.deadline_at > utcnow()
    assert [(e.key, e.status) for e in events.published] == [("dev_leaves", "offline")]


async def test_only_the_replica_holding_the_lease_marks_and_a_new_holder_starts_afresh(
    sessions,
) -> None:
    replicas = []
    for name in ("a", "b"):
        events = RecordingEvents()
        lease = Lease(sessions=sessions, model=RegistryLease, name="sweep", ttl_s=30, holder=name)
        watch = liveness(sessions, events, {"up": True}, lease)
        replicas.append((watch, events))
    (first, first_events), (second, second_events) = replicas
    await first.sweep()
    await second.sweep()
    assert first.lease is not None
    assert first.lease.held
    await heard(sessions, "dev_lease_1", ago_s=20)  # overdue by 5 s
    await second.sweep()
    assert await status(sessions, "dev_lease_1") == "online"
    await first.sweep()
    assert await status(sessions, "dev_lease_1") == "offline"
    assert [e.key for e in first_events.published] == ["dev_lease_1"]
    assert second_events.published == []

    await heard(sessions, "dev_lease_2", ago_s=20)
    await first.lease.release()  # (or it lapses: the holder was killed)
    await second.sweep()  # the new holder cannot know what the old one heard
    assert await status(sessions, "dev_lease_2") == "online"
    assert second_events.published == []

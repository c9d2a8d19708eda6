"""Migration records in process, on the scheduler's real (SQLite) schema."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.migrations import (
    LostWindow,
    MigrationReason,
    MigrationState,
    MigrationStep,
)
from edgecloud_migration_scheduler.moves import service
from edgecloud_migration_scheduler.moves.exceptions import MigrationNotFound
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import OPERATOR, Identity
from edgecloud_servicekit.problems import BadRequest
from tests.support.databases import migrated_sessions

ALICE = Identity(user_id="u-a", username="alice", tenant_id="t-alice")
BOB = Identity(user_id="u-b", username="bob", tenant_id="t-bob")
OPS = Identity(user_id="u-o", username="op", tenant_id="t-ops", roles=frozenset({OPERATOR}))


@pytest.fixture(scope="module")
async def sessions(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    directory = tmp_path_factory.mktemp("scheduler")
    async with migrated_sessions(directory, "edgecloud_migration_scheduler") as factory:
        yield factory


async def record(
    sessions: async_sessionmaker[AsyncSession],
    *,
    tenant: Identity = ALICE,
    container: str = "c-1",
    reason: MigrationReason = MigrationReason.CPU,
) -> str:
    async with transaction(sessions) as session:
        row = service.record_migration(
            session,
            tenant_id=tenant.tenant_id,
            container_id=container,
            source_device="node_a",
            reason=reason,
        )
    return row.id


def step(name: str, duration_ms: float | None = None) -> MigrationStep:
    return MigrationStep(name=name, started_at=utcnow(), duration_ms=duration_ms)


async def test_a_migration_is_told_step_by_step_and_ends_once(sessions) -> None:
    migration_id = await record(sessions)
    async with transaction(sessions) as session:
        await service.set_plan(
            session=session,
            migration_id=migration_id,
            target_device="node_b",
            plan={"candidates": ["node_b"]},
        )
        await service.add_step(
            session=session,
            migration_id=migration_id,
            step=step("select_peer", 12.5),
            state=MigrationState.PLANNING,
        )
        await service.add_step(
            session=session,
            migration_id=migration_id,
            step=step("dependencies"),
            state=MigrationState.TRANSFERRING,
        )
        await service.add_step(
            session=session,
            migration_id=migration_id,
            step=step("start"),
            state=MigrationState.ACTIVATING,
        )
    async with transaction(sessions) as session:
        # The end of the transfer, reported after the activation began: its step is
        # completed in place, and the state does not go back.
        moved = await service.add_step(
            session=session,
            migration_id=migration_id,
            step=step("dependencies", 800.0),
            state=MigrationState.TRANSFERRING,
        )
    assert moved is not None
    assert moved.state == "activating"
    assert [(s["name"], s["duration_ms"]) for s in moved.steps] == [
        ("select_peer", 12.5),
        ("dependencies", 800.0),
        ("start", None),
    ]
    async with transaction(sessions) as session:
        ended = await service.finish(
            session=session,
            migration_id=migration_id,
            state=MigrationState.COMPLETED,
            freeze_ms=140.0,
        )
    assert ended is not None
    assert ended.finished_at is not None
    async with transaction(sessions) as session:
        late_step = await service.add_step(
            session=session, migration_id=migration_id, step=step("stop_source", 3.0)
        )
        late_end = await service.finish(
            session=session, migration_id=migration_id, state=MigrationState.FAILED
        )
        late_plan = await service.set_plan(
            session=session, migration_id=migration_id, target_device="node_c", plan={}
        )
    assert late_step is late_end is late_plan is None
    async with sessions() as session:
        view = service.to_view(
            await service.get(session=session, caller=ALICE, migration_id=migration_id)
        )
    assert view.state is MigrationState.COMPLETED
    assert view.target == "node_b"
    assert view.freeze_ms == 140.0
    assert [s.name for s in view.steps] == ["select_peer", "dependencies", "start"]


async def test_the_view_has_the_api_fields_and_a_cold_restart_its_lost_window(sessions) -> None:
    migration_id = await record(sessions, reason=MigrationReason.NODE_LOST)
    lost = LostWindow(from_=utcnow() - timedelta(seconds=30), until=utcnow())
    async with transaction(sessions) as session:
        await service.finish(
            session=session,
            migration_id=migration_id,
            state=MigrationState.COLD_RESTARTED,
            error_code="source_lost",
            error="x" * 3000,
            lost_window=lost,
        )
        row = await service.get(session=session, caller=ALICE, migration_id=migration_id)
    shown = service.to_view(row).model_dump(mode="json")
    assert {"id", "container", "source", "target", "reason", "state", "steps", "freeze_ms"} <= set(
        shown
    )
    assert not any("tenant" in field for field in shown)
    assert shown["reason"] == "node_lost"
    assert shown["state"] == "cold_restarted"
    assert shown["source"] == "node_a"
    assert shown["target"] is None
    assert len(shown["error"]) == 2000
    assert shown["lost_window"] == lost.model_dump(mode="json")
    assert set(shown["lost_window"]) == {"from", "until"}


async def test_misuse_is_refused(sessions) -> None:
    migration_id = await record(sessions)
    async with transaction(sessions) as session:
        with pytest.raises(ValueError, match="finish"):
            await service.add_step(
                session=session,
                migration_id=migration_id,
                step=step("start"),
                state=MigrationState.COMPLETED,
            )
        with pytest.raises(ValueError, match="does not end"):
            await service.finish(
                session=session, migration_id=migration_id, state=MigrationState.ACTIVATING
            )
        with pytest.raises(ValueError, match="cold restart"):
            await service.finish(
                session=session,
                migration_id=migration_id,
                state=MigrationState.FAILED,
                lost_window=LostWindow(from_=utcnow(), until=utcnow()),
            )
        with pytest.raises(MigrationNotFound):
            await service.add_step(session=session, migration_id="nope", step=step("start"))


async def test_a_tenant_sees_only_its_own_and_an_operator_all(sessions) -> None:
    mine = await record(sessions, tenant=ALICE)
    theirs = await record(sessions, tenant=BOB)
    async with sessions() as session:
        with pytest.raises(MigrationNotFound) as refused:
            await service.get(session=session, caller=ALICE, migration_id=theirs)
        assert refused.value.status == 404
        assert refused.value.code == "migration_not_found"
        assert (await service.get(session=session, caller=OPS, migration_id=theirs)).id == theirs
        listed, _ = await service.list_for(
            session=session, caller=ALICE, limit=1000, cursor=None, container=None
        )
        everyone, _ = await service.list_for(
            session=session, caller=OPS, limit=1000, cursor=None, container=None
        )
    assert mine in [r.id for r in listed]
    assert {r.tenant_id for r in listed} == {ALICE.tenant_id}
    assert {mine, theirs} <= {r.id for r in everyone}


async def test_pages_are_newest_first_and_cover_each_migration_once(sessions) -> None:
    tenant = Identity(user_id="u-p", username="pat", tenant_id="t-paging")
    created = [await record(sessions, tenant=tenant, container=f"c-{i % 2}") for i in range(7)]
    async with transaction(sessions) as session:
        # Three of them at the same instant: the id breaks the tie.
        same = utcnow()
        for migration_id in created[2:5]:
            row = await service.get(session=session, caller=tenant, migration_id=migration_id)
            row.created_at = same
    seen: list[str] = []
    cursor = None
    async with sessions() as session:
        while True:
            rows, cursor = await service.list_for(
                session=session, caller=tenant, limit=2, cursor=cursor, container=None
            )
            assert len(rows) <= 2
            seen += [r.id for r in rows]
            if cursor is None:
                break
        everything, last = await service.list_for(
            session=session, caller=tenant, limit=100, cursor=None, container=None
        )
        of_one, _ = await service.list_for(
            session=session, caller=tenant, limit=100, cursor=None, container="c-1"
        )
    assert last is None
    assert seen == [r.id for r in everything]
    assert sorted(seen) == sorted(created)
    keys = [(r.created_at, r.id) for r in everything]
    assert keys == sorted(keys, reverse=True)
    assert {r.id for r in of_one} == set(created[1::2])


@pytest.mark.parametrize("cursor", ["%%%", "bm90LWEtZGF0ZQ", "MjAyNi0wMS0wMVQwMDowMDowMCBh"])
async def test_a_cursor_we_did_not_make_is_a_bad_request(sessions, cursor) -> None:
    async with sessions() as session:
        with pytest.raises(BadRequest):
            await service.list_for(
                session=session, caller=ALICE, limit=10, cursor=cursor, container=None
            )

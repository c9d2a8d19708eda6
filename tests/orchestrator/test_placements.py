"""Placements: each move of a container is a new generation; the cloud takes a report only
from the node the container is placed on and of its current generation; a returning node
is told which copies it holds are stale, and those are recorded for the tenant. In process,
on the real schema."""

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.containers import Action, CommandResult, ContainerReport, ContainerSpec
from edgecloud_contracts.placements import HeldCopy
from edgecloud_orchestrator.commands import service as commands_service
from edgecloud_orchestrator.containers import service
from edgecloud_orchestrator.containers.models import Container
from edgecloud_orchestrator.copies import service as copies_service
from edgecloud_orchestrator.copies.models import RetainedCopy
from edgecloud_servicekit.db import transaction, utcnow

from .test_node_fit import create, node, tenant

pytestmark = pytest.mark.usefixtures("granting_registry")

SOURCE = node()


async def placed(sessions: async_sessionmaker[AsyncSession]) -> tuple[Container, str, str]:
    """A container created on one node (the same one each time); the node and a peer."""
    return await create(sessions, tenant(), SOURCE), SOURCE["key"], node()["key"]


async def cold_restart(
    sessions: async_sessionmaker[AsyncSession], container: Container, source: str, target: str
) -> ContainerSpec:
    """As the scheduler's watchdog does for a lost node; the spec the target is sent."""
    async with transaction(sessions) as session:
        _, command = await service.relocate(
            session=session, container_id=container.id, source=source, target=target, restart=True
        )
    assert command is not None
    assert command.payload["spec"] is not None
    return ContainerSpec.model_validate(command.payload["spec"])


def report(container: Container, *, generation: int | None, state: str = "running"):  # type: ignore[no-untyped-def]
    return ContainerReport(
        container_id=container.id,
        docker_id="d" * 64,
        docker_name=container.docker_name,
        image="busybox",
        state=state,
        generation=generation,
    )


async def reload(sessions: async_sessionmaker[AsyncSession], container: Container) -> Container:
    async with sessions() as session:
        row = await session.get(Container, container.id)
    assert row is not None
    return row


async def test_each_move_is_a_new_placement(sessions: async_sessionmaker[AsyncSession]) -> None:
    container, source, peer = await placed(sessions)
    assert container.generation == 1
    assert ContainerSpec.model_validate(container.spec).generation == 1

    sent = await cold_restart(sessions, container, source, peer)

    moved = await reload(sessions, container)
    assert (moved.device_key, moved.generation) == (peer, 2)
    assert sent.generation == 2
    # Asked again (the scheduler repeating itself), it is the same placement.
    async with transaction(sessions) as session:
        again, command = await service.relocate(
            session=session, container_id=container.id, source=source, target=peer
        )
    assert (again.generation, command) == (2, None)


async def test_only_the_current_placement_speaks_for_the_container(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    container, source, peer = await placed(sessions)
    await cold_restart(sessions, container, source, peer)
    old = [
        (source, report(container, generation=1)),  # the copy on the node it left
        (peer, report(container, generation=1)),  # an old copy on the node it is on now
        (source, report(container, generation=2)),  # the right number from the wrong node
    ]
    for device, said in old:
        async with transaction(sessions) as session:
            assert (
                await service.apply_report(session=session, device_key=device, report=said)
            ) is None, (device, said.generation)
    assert (await reload(sessions, container)).state == service.PENDING

    async with transaction(sessions) as session:
        changed = await service.apply_report(
            session=session, device_key=peer, report=report(container, generation=2)
        )
    assert changed is not None
    assert (await reload(sessions, container)).state == "running"


async def test_an_inventory_with_an_old_copy_does_not_stand_for_the_container(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    container, source, peer = await placed(sessions)
    await cold_restart(sessions, container, source, peer)
    async with transaction(sessions) as session:
        changed, orphans = await service.reconcile(
            session=session, device_key=peer, inventory=[report(container, generation=1)]
        )
    assert changed == []
    assert [orphan.generation for orphan in orphans] == [1]
    assert (await reload(sessions, container)).state == service.PENDING


async def test_a_command_for_an_old_copy_leaves_the_container_alone(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    container, source, peer = await placed(sessions)
    await cold_restart(sessions, container, source, peer)
    async with transaction(sessions) as session:
        command = commands_service.enqueue(
            session,
            tenant_id=container.tenant_id,
            container_id=container.id,
            device_key=source,
            docker_name=container.docker_name,
            action=Action.REMOVE,
            ttl=timedelta(hours=1),
        )
    async with transaction(sessions) as session:
        done = CommandResult(command_id=command.id, ok=True)
        assert await service.apply_result(session=session, command=command, result=done) is None
    assert (await reload(sessions, container)).removed_at is None


async def test_a_returning_node_is_told_which_copies_are_stale(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    moved, source, peer = await placed(sessions)
    await cold_restart(sessions, moved, source, peer)
    stays = await create(sessions, tenant(), SOURCE)
    removed = await create(sessions, tenant(), SOURCE)
    async with transaction(sessions) as session:
        row = await session.get(Container, removed.id)
        assert row is not None
        row.removed_at = utcnow()
    held = [
        HeldCopy(container_id=moved.id, generation=1),
        HeldCopy(container_id=stays.id, generation=1),
        HeldCopy(container_id=removed.id, generation=1),
        HeldCopy(container_id="c-the-cloud-never-made", generation=1),
    ]

    async with transaction(sessions) as session:
        answer, news = await copies_service.check(session=session, device_key=source, held=held)

    assert answer.placed[stays.id] == 1
    assert moved.id not in answer.placed
    assert sorted(answer.stale) == sorted([moved.id, removed.id])
    assert sorted(container.id for container, _ in news) == sorted([moved.id, removed.id])
    async with sessions() as session:
        kept = await session.get(RetainedCopy, (moved.id, source))
    assert kept is not None
    assert (kept.state, kept.generation, kept.tenant_id) == ("fenced", 1, moved.tenant_id)
    assert peer in kept.reason

    # Asked again on the next join: the same answer, nothing new to tell the tenant.
    async with transaction(sessions) as session:
        again, news = await copies_service.check(session=session, device_key=source, held=held)
    assert sorted(again.stale) == sorted(answer.stale)
    assert news == []


async def test_a_migrations_target_before_the_move_is_recorded_is_not_stale(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The target of a live migration holds the next placement (the record it created
    from) before the scheduler moves the record: a join then must not stop it."""
    container, _, peer = await placed(sessions)
    async with transaction(sessions) as session:
        answer, _ = await copies_service.check(
            session=session,
            device_key=peer,
            held=[HeldCopy(container_id=container.id, generation=2)],
        )
    assert answer.stale == []


async def test_a_kept_copy_ends_when_its_node_says_so(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    container, source, peer = await placed(sessions)
    await cold_restart(sessions, container, source, peer)
    held = [HeldCopy(container_id=container.id, generation=1)]
    async with transaction(sessions) as session:
        await copies_service.check(session=session, device_key=source, held=held)
        kept = await copies_service.reconcile(
            session=session, device_key=source, inventory=[report(container, generation=1)]
        )
    assert kept == {container.id}
    async with transaction(sessions) as session:
        ended = await copies_service.observe(
            session=session,
            device_key=source,
            report=report(container, generation=1, state="removed"),
        )
    assert ended is not None
    assert ended.state == "removed"
    assert ended.removed_at is not None


async def test_a_node_speaks_only_for_copies_placed_on_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A node naming another node's container (a compromised one, or a stale id) learns
    nothing of it, and nothing is recorded or told to its tenant."""
    container, source, peer = await placed(sessions)
    await cold_restart(sessions, container, source, peer)
    stranger = node()["key"]
    for device, generation in [(stranger, 1), (stranger, 2), (peer, 1)]:
        async with transaction(sessions) as session:
            answer, news = await copies_service.check(
                session=session,
                device_key=device,
                held=[HeldCopy(container_id=container.id, generation=generation)],
            )
        assert (answer.stale, news) == ([], []), (device, generation)
        async with sessions() as session:
            assert await session.get(RetainedCopy, (container.id, device)) is None

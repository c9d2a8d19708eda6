"""A grant withdrawn, applied to the tenant's containers on the device, on both databases:
what was waiting for the node and would act on it is never sent, the sensor feeds are cut
(on the node and in the spec a migration would carry), the containers are stopped when the
operator asks, nothing of another tenant or another device is touched, and doing it again
queues nothing twice. And what the grant check answers."""

import uuid
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.artifacts import DeploymentOrder
from edgecloud_contracts.containers import Action, CommandState, FilesOrder
from edgecloud_orchestrator.commands import service as commands_service
from edgecloud_orchestrator.commands.models import CommandRow
from edgecloud_orchestrator.containers.models import Container
from edgecloud_orchestrator.deployments import service as deployments_service
from edgecloud_orchestrator.deployments.models import Deployment
from edgecloud_orchestrator.deployments.router import transfer_ref
from edgecloud_orchestrator.withdrawals import service
from edgecloud_orchestrator.withdrawals.exceptions import DeviceNotGranted
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.internal_http import ServiceClient
from edgecloud_servicekit.problems import RemoteProblem
from tests.support.local_http import serving

from .test_node_fit import create, node, tenant

pytestmark = pytest.mark.usefixtures("granting_registry")
TTL = timedelta(hours=1)
TOPIC = "sensors/kitchen/temp"
SMALL = {"pids": 64, "memory": 64 << 20}


async def running(sessions: async_sessionmaker[AsyncSession], container: Container) -> None:
    """The node created it: its create succeeded and it runs."""
    async with transaction(sessions) as session:
        row = await session.get(Container, container.id)
        assert row is not None
        row.state = "running"
        for command in await session.scalars(
            select(CommandRow).where(CommandRow.container_id == container.id)
        ):
            command.state = CommandState.SUCCEEDED.value


async def queue(
    sessions: async_sessionmaker[AsyncSession], container: Container, action: Action
) -> str:
    """A command of the tenant's waiting for the node (offline); its id."""
    async with transaction(sessions) as session:
        extra = {}
        if action is Action.DEPLOY:
            archive = transfer_ref({"id": str(uuid.uuid4()), "name": "a.tar", "size": 1,
                                    "sha256": "0" * 64})  # fmt: skip
            script = transfer_ref({"id": str(uuid.uuid4()), "name": "run.sh", "size": 1,
                                   "sha256": "0" * 64})  # fmt: skip
            extra["deployment"] = DeploymentOrder(
                deployment_id=str(uuid.uuid4()),
                container_id=container.id,
                docker_name=container.docker_name,
                archive=archive,
                script=script,
            )
        if action is Action.FILES:
            extra["files"] = FilesOrder(path="/app/out", artifact_id=str(uuid.uuid4()), url="")
        row = commands_service.enqueue(
            session,
            tenant_id=container.tenant_id,
            container_id=container.id,
            device_key=container.device_key,
            docker_name=container.docker_name,
            action=action,
            ttl=TTL,
            **extra,  # type: ignore[arg-type]
        )
        if action is Action.DEPLOY:
            deployments_service.new(
                session,
                tenant_id=container.tenant_id,
                container_id=container.id,
                device_key=container.device_key,
                artifact_id="a",
                script_id="s",
                command_id=row.id,
            )
        return row.id


async def commands_of(
    sessions: async_sessionmaker[AsyncSession], container: Container
) -> dict[str, list[str]]:
    """Each action's commands' states, oldest first."""
    async with sessions() as session:
        rows = await session.scalars(
            select(CommandRow)
            .where(CommandRow.container_id == container.id)
            .order_by(CommandRow.seq)
        )
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row.action, []).append(row.state)
        return found


async def withdraw(
    sessions: async_sessionmaker[AsyncSession], device: str, tenant_id: str, *, stop: bool
) -> service.Withdrawal:
    async with transaction(sessions) as session:
        return await service.withdraw(
            session=session, device_key=device, tenant_id=tenant_id, stop=stop, ttl=TTL
        )


async def test_a_withdrawal_cancels_cuts_and_stops_only_the_tenants_containers_there(
    backend_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sessions = backend_sessions
    device, elsewhere = node(), node()
    caller, neighbour = tenant(), tenant()
    fed = await create(sessions, caller, device, limits=SMALL, subscriptions=[TOPIC])
    waiting = await create(
        sessions, caller, device, limits=SMALL
    )  # its node was offline: create queued
    theirs = await create(sessions, neighbour, device, limits=SMALL, subscriptions=[TOPIC])
    other_node = await create(sessions, caller, elsewhere, limits=SMALL, subscriptions=[TOPIC])
    for container in (fed, theirs, other_node):
        await running(sessions, container)
    for container in (fed, theirs, other_node):
        await queue(sessions, container, Action.START)
    deploy_id = await queue(sessions, fed, Action.DEPLOY)
    await queue(sessions, fed, Action.FILES)  # a copy out: a read, still sent

    done = await withdraw(sessions, device["key"], caller.tenant_id, stop=True)

    assert done.unsubscribed == [fed.id]
    assert done.stopped == [fed.id]
    assert await commands_of(sessions, fed) == {
        "create": ["succeeded"],
        "start": ["failed"],
        "deploy": ["failed"],
        "files": ["queued"],
        "unsubscribe": ["queued"],
        "stop": ["queued"],
    }
    assert await commands_of(sessions, waiting) == {"create": ["failed"]}
    untouched = {"create": ["succeeded"], "start": ["queued"]}
    assert await commands_of(sessions, theirs) == untouched
    assert await commands_of(sessions, other_node) == untouched
    async with sessions() as session:
        rows = {c.id: c for c in await session.scalars(select(Container))}
        deployment = await session.scalar(
            select(Deployment).where(Deployment.command_id == deploy_id)
        )
        cancelled = await session.scalar(
            select(CommandRow).where(
                CommandRow.container_id == fed.id, CommandRow.action == Action.START.value
            )
        )
    assert cancelled is not None
    assert cancelled.error_code == "device_not_granted"
    assert deployment is not None
    assert (deployment.state, deployment.error_code) == ("failed", "device_not_granted")
    assert rows[fed.id].spec["subscriptions"] == []
    assert rows[fed.id].desired_state == "stopped"
    assert rows[waiting.id].removed_at is not None
    assert rows[waiting.id].state == "failed"
    for kept in (theirs, other_node):
        assert rows[kept.id].spec["subscriptions"] == [TOPIC]
        assert rows[kept.id].desired_state == "running"

    # Again (a retried withdrawal): nothing is queued twice.
    again = await withdraw(sessions, device["key"], caller.tenant_id, stop=True)
    assert (again.unsubscribed, again.stopped, again.commands, again.cancelled) == ([], [], [], [])


async def test_kept_containers_run_on_without_their_sensors(
    backend_sessions: async_sessionmaker[AsyncSession],
) -> None:
    sessions, device, caller = backend_sessions, node(), tenant()
    fed = await create(sessions, caller, device, limits=SMALL, subscriptions=[TOPIC])
    await running(sessions, fed)

    done = await withdraw(sessions, device["key"], caller.tenant_id, stop=False)

    assert (done.unsubscribed, done.stopped) == ([fed.id], [])
    assert await commands_of(sessions, fed) == {"create": ["succeeded"], "unsubscribe": ["queued"]}
    async with sessions() as session:
        row = await session.get(Container, fed.id)
    assert row is not None
    assert row.desired_state == "running"
    assert row.spec["subscriptions"] == []


async def test_the_grant_check_answers_with_the_registrys_view() -> None:
    """Granted: nothing. Not shown to the tenant: 403 device_not_granted for an action on
    its container, the registry's own 404 for a create. Another failure is passed on."""
    shown = {"node_granted"}

    async def device(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key == "node_broken":
            return web.json_response({"code": "database_unavailable"}, status=503)
        if key in shown:
            return web.json_response({"key": key})
        return web.json_response(
            {"code": "device_not_found", "detail": "no", "title": "Not found", "status": 404},
            status=404,
        )

    caller = Identity(user_id="u", username="alice", tenant_id="t")
    async with serving(device, path="/v1/devices/{key}", method="GET") as url:
        registry = ServiceClient(service="registry", base_url=url, secret="s" * 40)
        try:
            await service.check_granted(
                registry=registry, caller=caller, device_key="node_granted", container_id="c"
            )
            with pytest.raises(DeviceNotGranted) as refused:
                await service.check_granted(
                    registry=registry, caller=caller, device_key="node_withdrawn", container_id="c"
                )
            assert (refused.value.status, refused.value.code) == (403, "device_not_granted")
            with pytest.raises(RemoteProblem) as missing:
                await service.check_granted(
                    registry=registry, caller=caller, device_key="node_withdrawn"
                )
            assert (missing.value.status, missing.value.code) == (404, "device_not_found")
            with pytest.raises(RemoteProblem) as broken:
                await service.check_granted(
                    registry=registry, caller=caller, device_key="node_broken", container_id="c"
                )
            assert broken.value.status == 503
        finally:
            await registry.aclose()


async def test_containers_that_moved_away_stop_reading_the_devices_sensors(
    backend_sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A container migrated off the device reads its sensors from the device's broker (the
    migration's ``sensor_broker``): withdrawn there, that feed is cut too; a feed from
    another device's broker is not."""
    sessions, device, elsewhere, caller = backend_sessions, node(), node(), tenant()
    source_broker, other_broker = "mqtt://10.0.0.1:1883", "mqtt://10.0.0.2:1883"
    moved = await create(sessions, caller, elsewhere, limits=SMALL, subscriptions=[TOPIC])
    other = await create(sessions, caller, elsewhere, limits=SMALL, subscriptions=[TOPIC])
    async with transaction(sessions) as session:
        for container, broker in ((moved, source_broker), (other, other_broker)):
            row = await session.get(Container, container.id)
            assert row is not None
            row.spec = {**row.spec, "sensor_broker": broker}
    for container in (moved, other):
        await running(sessions, container)

    async with transaction(sessions) as session:
        done = await service.withdraw(
            session=session,
            device_key=device["key"],
            tenant_id=caller.tenant_id,
            stop=True,
            ttl=TTL,
            sensor_brokers=frozenset({source_broker}),
        )

    assert (done.unsubscribed, done.stopped) == ([moved.id], [])
    assert await commands_of(sessions, moved) == {
        "create": ["succeeded"],
        "unsubscribe": ["queued"],
    }
    assert await commands_of(sessions, other) == {"create": ["succeeded"]}
    async with sessions() as session:
        cut, kept = await session.get(Container, moved.id), await session.get(Container, other.id)
    assert cut is not None
    assert kept is not None
    assert (cut.spec["subscriptions"], cut.spec["sensor_broker"]) == ([], None)
    assert (kept.spec["subscriptions"], kept.spec["sensor_broker"]) == ([TOPIC], other_broker)

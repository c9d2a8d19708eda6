"""The whole agent, in process, behind the real router: a service calls its container
procedures as the orchestrator does."""

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from edgecloud_agent.agent import Agent
from edgecloud_agent.settings import AgentSettings
from edgecloud_agent.state import credentials
from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import Action, CommandResult
from edgecloud_contracts.identity import device_key
from edgecloud_servicekit.wamp import WampCallError, WampLink
from tests.support.agents import random_mac
from tests.support.stack import Stack
from tests.support.wamp import device_session, service_session

from .conftest import command_for, containers_named, make_spec

pytestmark = pytest.mark.stack


def agent_settings(stack: Stack, state_dir: Path, **overrides: Any) -> AgentSettings:
    fields: dict[str, Any] = {
        "router_url": stack.router_url,
        "state_dir": state_dir,
        "hostname": f"wamp-{secrets.token_hex(3)}",
        "mac": random_mac(),
        "heartbeat_interval_s": 0.5,
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 2,
        "container_network": "none",
        "stop_timeout_s": 1,
    }
    fields.update(overrides)
    return AgentSettings(**fields)


@contextlib.asynccontextmanager
async def running(settings: AgentSettings) -> AsyncIterator[Agent]:
    agent = Agent(settings)
    task = asyncio.create_task(agent.run(), name="agent under test")
    try:
        await agent.uplink.wait_connected(15)
        yield agent
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


@pytest.fixture
async def agent(stack: Stack, enrol: Callable[[], Any], tmp_path: Path) -> AsyncIterator[Agent]:
    token = SecretStr(await enrol())
    async with running(agent_settings(stack, tmp_path / "agent", enrolment_token=token)) as agent:
        yield agent


@pytest.fixture
async def orchestrator(stack: Stack) -> AsyncIterator[WampLink]:
    async with service_session(stack, service="orchestrator") as link:
        await link.wait_joined(10)
        yield link


def procedure(agent: Agent, action: Action) -> str:
    return uris.device_procedure(agent.credential.device_key, uris.container_operation(action))


async def test_commands_through_the_router(
    agent: Agent, orchestrator: WampLink, names: Callable[[], str]
) -> None:
    for action in Action:
        assert await orchestrator.is_registered(procedure(agent, action)), action
    spec = make_spec(names())
    create = command_for(spec, Action.CREATE).model_dump(mode="json")

    first = CommandResult.model_validate(
        await orchestrator.call(procedure(agent, Action.CREATE), create, timeout=30)
    )
    assert first.ok, first
    assert first.container is not None
    assert first.container.state == "running"
    again = CommandResult.model_validate(
        await orchestrator.call(procedure(agent, Action.CREATE), create, timeout=30)
    )
    assert again.replayed
    assert len(containers_named(spec.docker_name)) == 1

    with pytest.raises(WampCallError) as refused:
        await orchestrator.call(procedure(agent, Action.STOP), create, timeout=5)
    assert refused.value.error == errors.INVALID_ARGUMENT

    inspect = command_for(spec, Action.INSPECT).model_dump(mode="json")
    seen = CommandResult.model_validate(
        await orchestrator.call(procedure(agent, Action.INSPECT), inspect, timeout=5)
    )
    assert seen.container == first.container

    remove = command_for(spec, Action.REMOVE).model_dump(mode="json")
    removed = CommandResult.model_validate(
        await orchestrator.call(procedure(agent, Action.REMOVE), remove, timeout=10)
    )
    assert removed.ok
    assert containers_named(spec.docker_name) == []


async def stale(*_: object) -> str:
    return "stale"


async def test_a_stale_session_does_not_block_the_procedures(
    stack: Stack, enrol: Callable[[], Any], orchestrator: WampLink, tmp_path: Path
) -> None:
    """The router may still hold the registrations of a session it has not yet seen die
    (a half-open link); the agent's new session must take over its procedures."""
    settings = agent_settings(stack, tmp_path / "agent")
    key = device_key(settings.hostname, settings.mac)
    credential = credentials.load_or_create(settings.state_dir, key)
    async with device_session(
        stack, key=key, private_key=credential.private_key, token=await enrol()
    ) as old:
        credentials.mark_enrolled(settings.state_dir, credential)
        inspect_uri = uris.device_procedure(key, uris.container_operation(Action.INSPECT))
        for action in Action:
            await old.register(uris.device_procedure(key, uris.container_operation(action)), stale)
        assert await orchestrator.call(inspect_uri, {}, timeout=5) == "stale"
        async with running(settings):
            spec = make_spec("t-nothing-here")
            inspect = command_for(spec, Action.INSPECT).model_dump(mode="json")
            answer = await orchestrator.call(inspect_uri, inspect, timeout=5)
            result = CommandResult.model_validate(answer)
            assert result.error_code == "container_not_found"

"""The container procedures as the cloud calls them: URIs, arguments, answers, errors."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import RegisterOptions

from edgecloud_agent.deploy import rpc
from edgecloud_agent.deploy.commands import CommandExecutor
from edgecloud_agent.uplink.errors import CommandRejected
from edgecloud_contracts import errors
from edgecloud_contracts.containers import Action, CommandResult

from .conftest import command_for, joined_uplink, make_spec

KEY = "node_0200000000aa"


class RecordingSession:
    def __init__(self) -> None:
        self.registered: dict[str, Callable[..., Awaitable[Any]]] = {}
        self.options: dict[str, RegisterOptions] = {}

    async def register(
        self, handler: Callable[..., Awaitable[Any]], uri: str, options: RegisterOptions
    ) -> None:
        self.registered[uri] = handler
        self.options[uri] = options


async def test_one_procedure_per_action(executor: CommandExecutor) -> None:
    session = RecordingSession()
    await rpc.register(joined_uplink(session, KEY), KEY, executor)
    assert sorted(session.registered) == sorted(
        [f"edge.device.{KEY}.container.{action}" for action in Action]
        + [f"edge.device.{KEY}.container.logs"]
    )
    assert "edge.device.node_0200000000aa.container.create" in session.registered
    # A stale session of this same node must not keep the new one from registering.
    assert {options.invoke for options in session.options.values()} == {"last"}


async def test_refusals_reach_the_caller_as_error_uris(executor: CommandExecutor) -> None:
    session = RecordingSession()
    await rpc.register(joined_uplink(session, KEY), KEY, executor)
    create = session.registered[f"edge.device.{KEY}.container.create"]
    spec = make_spec("t-x")
    good = command_for(spec, Action.CREATE).model_dump(mode="json")
    bad_calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        ((good, good), {}),
        ((good,), {"extra": 1}),
        (("not a dict",), {}),
        (({**good, "id": ""},), {}),
        (({**good, "unknown": 1},), {}),
        (({**good, "action": "stop"},), {}),  # a stop sent to the create procedure
        (({**good, "spec": None},), {}),
        (({**good, "docker_name": "a/../../b"},), {}),
    ]
    for args, kwargs in bad_calls:
        with pytest.raises(ApplicationError) as refused:
            await create(*args, **kwargs)
        assert refused.value.error == errors.INVALID_ARGUMENT, (args, kwargs)
        assert isinstance(refused.value.args[0], str)


async def test_handler_answers_with_a_command_result(executor: CommandExecutor) -> None:
    """An engine that cannot be reached is an answer (ok: false), not a WAMP error."""
    handle = rpc.handler(executor, Action.INSPECT)
    spec = make_spec("t-x")
    answer = await handle(command_for(spec, Action.INSPECT, "cmd-1").model_dump(mode="json"))
    result = CommandResult.model_validate(answer)
    assert result.command_id == "cmd-1"
    assert not result.ok
    assert result.error_code == "docker_unavailable"
    with pytest.raises(CommandRejected):
        await handle(command_for(spec, Action.STOP).model_dump(mode="json"))

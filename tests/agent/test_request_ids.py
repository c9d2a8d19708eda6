"""The cloud's request id on the node: a procedure's handler never sees the reserved keyword,
the command it applies is logged under the id, and what the node calls meanwhile carries it
on to the cloud."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from autobahn.wamp.types import RegisterOptions

from edgecloud_agent.deploy import rpc
from edgecloud_agent.deploy.commands import CommandExecutor
from edgecloud_contracts.containers import Action, CommandResult
from edgecloud_contracts.correlation import (
    REQUEST_ID_KWARG,
    RequestIdFilter,
    bound_request_id,
    current_request_id,
)

from .conftest import command_for, joined_uplink, make_spec

KEY = "node_0200000000bb"


class FakeSession:
    """A joined session: it keeps what is registered and answers every call at once."""

    def __init__(self) -> None:
        self.registered: dict[str, Callable[..., Awaitable[Any]]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def register(
        self, handler: Callable[..., Awaitable[Any]], uri: str, options: RegisterOptions
    ) -> None:
        self.registered[uri] = handler

    def call(self, uri: str, *args: Any, options: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        self.calls.append((uri, kwargs))
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        answered.set_result({"ok": True})
        return answered


async def test_a_command_is_applied_and_logged_under_the_callers_id(
    executor: CommandExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    session = FakeSession()
    await rpc.register(joined_uplink(session, KEY), KEY, executor)
    start = session.registered[f"edge.device.{KEY}.container.start"]
    command = command_for(make_spec("t-traced"), Action.START, "cmd-traced")
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="edgecloud_agent"):
        # The procedure refuses unknown keywords: the request id must not reach it.
        answer = await start(command.model_dump(mode="json"), **{REQUEST_ID_KWARG: "req-77"})
    assert CommandResult.model_validate(answer).command_id == "cmd-traced"
    applied = [r for r in caplog.records if getattr(r, "command_id", None) == "cmd-traced"]
    assert applied
    assert applied[0].getMessage().startswith("applying start command cmd-traced")
    assert {getattr(r, "correlation_id", None) for r in applied} == {"req-77"}
    assert current_request_id() is None


async def test_a_streaming_procedure_gets_its_progress_sender_and_the_id() -> None:
    session = FakeSession()
    uplink = joined_uplink(session, KEY)
    seen: list[tuple[tuple[Any, ...], dict[str, Any], str | None]] = []

    async def shell_open(*args: Any, **kwargs: Any) -> str:
        seen.append((args, kwargs, current_request_id()))
        return "opened"

    uri = f"edge.device.{KEY}.shell.open"
    await uplink.register(uri, shell_open, streams=True)
    invoke = session.registered[uri]
    assert await invoke({"tty": True}, details=None, **{REQUEST_ID_KWARG: "req-78"}) == "opened"
    assert seen == [(({"tty": True},), {"progress": None}, "req-78")]


async def test_calls_to_the_cloud_carry_the_current_id() -> None:
    session = FakeSession()
    uplink = joined_uplink(session, KEY)
    await uplink.call("edge.migration.report", {"step": "configuration"}, timeout=5)
    with bound_request_id("req-79"):
        await uplink.call("edge.migration.report", {"step": "dependencies"}, timeout=5)
    assert [kwargs for _, kwargs in session.calls] == [{}, {REQUEST_ID_KWARG: "req-79"}]

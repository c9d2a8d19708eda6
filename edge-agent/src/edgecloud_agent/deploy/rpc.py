"""The node's container procedures, ``edge.device.<key>.container.<action>`` (thin).

Each takes one positional argument, the :class:`Command` as a dict, and answers with the
:class:`CommandResult` as a dict. A call that is not a valid command for that procedure
gets the WAMP error ``edge.error.invalid_argument``; a command the node tried and could
not carry out is an answer (``ok: false`` with an ``error_code``), not a WAMP error.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import ValidationError

from edgecloud_contracts import errors, uris
from edgecloud_contracts.containers import Action, Command, LogsAnswer, LogsRequest

from ..runtime.docker import DockerRuntime
from ..runtime.errors import ContainerNotFound, RuntimeFailure
from ..uplink.errors import CommandRejected
from .commands import CommandExecutor

logger = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[dict[str, Any]]]


class Registrar(Protocol):
    async def register(self, uri: str, handler: Callable[..., Awaitable[Any]]) -> None: ...


def container_procedures(device_key: str, executor: CommandExecutor) -> dict[str, Handler]:
    """Every container procedure of this node, by URI."""
    return {
        uris.device_procedure(device_key, uris.container_operation(action)): handler(
            executor, action
        )
        for action in Action
    }


def handler(executor: CommandExecutor, action: Action) -> Handler:
    async def handle(*args: Any, **kwargs: Any) -> dict[str, Any]:
        command = parse(action, args, kwargs)
        result = await executor.execute(command)
        return result.model_dump(mode="json")

    handle.__name__ = f"container_{action.value}"
    return handle


def parse(action: Action, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Command:
    if len(args) != 1 or kwargs:
        raise CommandRejected(errors.INVALID_ARGUMENT, "expected one argument: the command")
    try:
        command = Command.model_validate(args[0])
    except ValidationError as err:
        raise CommandRejected(
            errors.INVALID_ARGUMENT, f"not a valid command: {err}"[:1000]
        ) from err
    if command.action is not action:
        raise CommandRejected(
            errors.INVALID_ARGUMENT, f"a {command.action} command sent to container.{action}"
        )
    return command


# A log answer is one WAMP message: keep it well under the router's payload limit.
MAX_LOG_ANSWER_BYTES = 1 << 20


def logs_handler(runtime: DockerRuntime) -> Handler:
    """``container.logs``: a read, answered from Docker now (never journaled)."""

    async def logs(*args: Any, **kwargs: Any) -> dict[str, Any]:
        if len(args) != 1 or kwargs:
            raise CommandRejected(errors.INVALID_ARGUMENT, "expected one argument: the request")
        try:
            request = LogsRequest.model_validate(args[0])
        except ValidationError as err:
            raise CommandRejected(
                errors.INVALID_ARGUMENT, f"not a valid logs request: {err}"[:1000]
            ) from err
        try:
            lines, running = await runtime.logs(
                request.docker_name,
                container_id=request.container_id,
                tail=request.tail,
                since=request.since,
            )
        except ContainerNotFound as err:
            raise CommandRejected(errors.NOT_FOUND, err.message) from err
        except RuntimeFailure as err:
            raise CommandRejected(errors.UNAVAILABLE, err.message) from err
        # Newest lines first in line for the budget; an answer keeps the latest ones.
        kept, budget = [], MAX_LOG_ANSWER_BYTES
        for line in reversed(lines):
            budget -= len(line.text) + 64
            if budget < 0:
                break
            kept.append(line)
        kept.reverse()
        return LogsAnswer(lines=kept, running=running).model_dump(mode="json")

    return logs


async def register(uplink: Registrar, device_key: str, executor: CommandExecutor) -> None:
    """Register the container procedures on the current session (after every join)."""
    for uri, handle in container_procedures(device_key, executor).items():
        await uplink.register(uri, handle)
    await uplink.register(
        uris.device_procedure(device_key, uris.CONTAINER_LOGS), logs_handler(executor.runtime)
    )
    logger.debug("registered the container procedures of %s", device_key)

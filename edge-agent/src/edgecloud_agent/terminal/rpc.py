"""The node's terminal procedures: ``container.exec``, ``shell.open``, ``shell.input`` (thin).

Only services may call a device's procedures (the router's policy); the gateway has
already checked that the caller's tenant owns the container, and the runtime checks that
the named container is ours, with that id, before anything runs in it.
"""

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from edgecloud_contracts import errors, uris
from edgecloud_contracts.shell import ExecOrder, ShellOpen

from ..runtime.docker import DockerRuntime
from ..runtime.errors import ContainerNotFound, RuntimeFailure
from ..uplink.errors import CommandRejected
from .oneshot import run_once
from .shells import Progress, ShellSessions

Model = TypeVar("Model", bound=BaseModel)


class Registrar(Protocol):
    async def register(
        self, uri: str, handler: Callable[..., Awaitable[Any]], *, streams: bool = False
    ) -> None: ...


def _one(model: type[Model], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Model:
    if len(args) != 1 or kwargs:
        raise CommandRejected(errors.INVALID_ARGUMENT, "expected one argument")
    try:
        return model.model_validate(args[0])
    except ValidationError as err:
        raise CommandRejected(
            errors.INVALID_ARGUMENT, f"not a valid {model.__name__}: {err}"[:1000]
        ) from err


async def register(
    uplink: Registrar, device_key: str, runtime: DockerRuntime, shells: ShellSessions
) -> None:
    """Register the terminal procedures on the current session (after every join)."""

    async def container_exec(*args: Any, **kwargs: Any) -> dict[str, Any]:
        order = _one(ExecOrder, args, kwargs)
        try:
            result = await run_once(runtime, order)
        except ContainerNotFound as err:
            raise CommandRejected(errors.NOT_FOUND, err.message) from err
        except RuntimeFailure as err:
            raise CommandRejected(errors.UNAVAILABLE, err.message) from err
        return result.model_dump(mode="json")

    async def shell_open(*args: Any, progress: Progress | None, **kwargs: Any) -> dict[str, Any]:
        end = await shells.open(_one(ShellOpen, args, kwargs), progress)
        return end.model_dump(mode="json")

    async def shell_input(*args: Any, **kwargs: Any) -> None:
        if len(args) != 2 or kwargs:
            raise CommandRejected(errors.INVALID_ARGUMENT, "expected (session id, frames)")
        await shells.input(args[0], args[1])

    await uplink.register(uris.device_procedure(device_key, uris.CONTAINER_EXEC), container_exec)
    await uplink.register(
        uris.device_procedure(device_key, uris.SHELL_OPEN), shell_open, streams=True
    )
    await uplink.register(uris.device_procedure(device_key, uris.SHELL_INPUT), shell_input)

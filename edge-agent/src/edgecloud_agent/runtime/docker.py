"""The node's Docker Engine, through aiodocker (used only in this module).

An engine that is down or missing is a normal state on an edge node: the agent keeps
running, reports the runtime as unavailable, and reconnects when it is back.
"""

import asyncio
import logging
from typing import Any

import aiodocker

from edgecloud_contracts.heartbeat import ContainerState

logger = logging.getLogger(__name__)


class RuntimeUnavailable(Exception):
    """The Docker engine cannot be reached."""


class DockerRuntime:
    def __init__(self, *, url: str | None = None, timeout_s: float = 10.0) -> None:
        self._url = url
        self._timeout = timeout_s
        self._docker: aiodocker.Docker | None = None
        self._reachable = True

    async def __aenter__(self) -> "DockerRuntime":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._close()

    async def _close(self) -> None:
        if self._docker is not None:
            docker, self._docker = self._docker, None
            await docker.close()

    def _client(self) -> aiodocker.Docker:
        if self._docker is None:
            self._docker = aiodocker.Docker(url=self._url)
        return self._docker

    def _note(self, reachable: bool, error: Exception | None = None) -> None:
        if reachable and not self._reachable:
            logger.info("Docker engine is reachable again")
        elif not reachable and self._reachable:
            logger.error("Docker engine unreachable: %s", error)
        self._reachable = reachable

    async def list_containers(self) -> list[ContainerState]:
        """Every container on the engine, running or not."""
        try:
            raw: list[Any] = await asyncio.wait_for(
                self._client().containers.list(all=True), self._timeout
            )
        except (TimeoutError, aiodocker.DockerError, OSError, ValueError) as err:
            self._note(False, err)
            await self._close()
            raise RuntimeUnavailable(str(err)) from err
        self._note(True)
        return [_summary(container._container) for container in raw]


def _summary(data: dict[str, Any]) -> ContainerState:
    names = data.get("Names") or [""]
    return ContainerState(
        id=str(data.get("Id", ""))[:64],
        name=str(names[0]).lstrip("/")[:200],
        image=str(data.get("Image", ""))[:400],
        state=str(data.get("State", "unknown"))[:40],
        status=str(data.get("Status", ""))[:200],
    )

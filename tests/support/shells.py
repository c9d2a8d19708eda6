"""A test's terminal: the shell WebSocket of a container, driven like a user would."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed


class Terminal:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.screen = bytearray()
        self.controls: list[dict[str, Any]] = []

    async def ready(self, timeout: float = 20) -> dict[str, Any]:
        return await self.control("ready", timeout=timeout)

    async def type(self, text: str) -> None:
        await self.connection.send(text.encode())

    async def resize(self, cols: int, rows: int) -> None:
        await self.connection.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    async def read_until(self, wanted: str, timeout: float = 20) -> str:
        """The screen so far, once ``wanted`` is on it."""
        async with asyncio.timeout(timeout):
            while wanted.encode() not in self.screen:
                await self._receive()
        return self.screen.decode(errors="replace")

    async def control(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        """The next JSON message of that type (output read meanwhile goes on the screen)."""
        async with asyncio.timeout(timeout):
            while True:
                for message in self.controls:
                    if message.get("type") == kind:
                        self.controls.remove(message)
                        return message
                await self._receive()

    async def closed(self, timeout: float = 20) -> tuple[int | None, list[dict[str, Any]]]:
        """Read to the end: the close code and the JSON messages not taken yet."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._receive()
        except ConnectionClosed:
            pass
        return self.connection.close_code, self.controls

    async def _receive(self) -> None:
        message = await self.connection.recv()
        if isinstance(message, bytes):
            self.screen += message
        else:
            self.controls.append(json.loads(message))


def shell_url(gateway_url: str, container_id: str, **query: Any) -> str:
    base = gateway_url.replace("http://", "ws://", 1)
    pairs = [
        f"{name}={value}"
        for name, values in query.items()
        for value in (values if isinstance(values, list) else [values])
    ]
    suffix = f"?{'&'.join(pairs)}" if pairs else ""
    return f"{base}/api/v1/containers/{container_id}/shell{suffix}"


@asynccontextmanager
async def terminal(
    gateway_url: str, container_id: str, headers: dict[str, str], **query: Any
) -> AsyncIterator[Terminal]:
    async with connect(
        shell_url(gateway_url, container_id, **query),
        additional_headers=headers,
        open_timeout=20,
    ) as connection:
        yield Terminal(connection)

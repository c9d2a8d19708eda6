"""A webhook receiver on 127.0.0.1 that keeps what is posted to it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .local_http import serving


@dataclass
class Receiver:
    url: str = ""
    status: int = 200
    """What it answers; set it to fail deliveries on purpose."""
    bodies: list[dict[str, Any]] = field(default_factory=list)
    """Every JSON body posted, answered or not, in order."""
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        self.headers.append(dict(request.headers))
        return web.Response(status=self.status)

    def posted(self, transition: str, *, alert: str | None = None) -> list[dict[str, Any]]:
        return [
            body
            for body in self.bodies
            if body["transition"] == transition and (alert is None or body["id"] == alert)
        ]


@asynccontextmanager
async def webhook_receiver(status: int = 200) -> AsyncIterator[Receiver]:
    receiver = Receiver(status=status)
    async with serving(receiver.handle, path="/hook", method="POST") as url:
        receiver.url = f"{url}/hook"
        yield receiver

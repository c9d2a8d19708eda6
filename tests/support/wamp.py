"""WAMP sessions driven directly by tests: a device (the agent's own uplink) or a service."""

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from edgecloud_agent.uplink.wamp import Backoff, Login, Uplink
from edgecloud_servicekit.wamp import WampLink

from .stack import Stack


def probe_key() -> str:
    return f"probe_{secrets.token_hex(6)}"


@asynccontextmanager
async def device_session(
    stack: Stack, *, key: str, private_key: bytes | None = None, token: str | None = None
) -> AsyncIterator[Uplink]:
    """A joined device session, with a fresh key pair unless ``private_key`` is given;
    raises the uplink's LoginRefused if refused."""
    login = Login(
        device_key=key,
        private_key=private_key or secrets.token_bytes(32),
        enrolment_token=token,
    )
    uplink = Uplink(
        url=stack.router_url,
        realm="edgecloud",
        login=login,
        backoff=Backoff(0.1, 0.5),
    )
    running = asyncio.create_task(uplink.run())
    joined = asyncio.create_task(uplink.wait_connected())
    try:
        done, _ = await asyncio.wait(
            {running, joined}, timeout=15, return_when=asyncio.FIRST_COMPLETED
        )
        if running in done:
            running.result()  # raises LoginRefused
        if joined not in done:
            raise TimeoutError("device session did not join")
        yield uplink
    finally:
        joined.cancel()
        await uplink.close()
        running.cancel()
        await asyncio.gather(running, joined, return_exceptions=True)


@asynccontextmanager
async def service_session(
    stack: Stack, *, service: str, ticket: str | None = None
) -> AsyncIterator[WampLink]:
    link = WampLink(
        url=stack.router_url,
        realm="edgecloud",
        authid=service,
        ticket=ticket if ticket is not None else stack.tickets[service],
        call_timeout=5,
    )
    async with link:
        yield link

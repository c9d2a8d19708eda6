"""Slow and silent clients (slowloris) are disconnected, a stalled body is cut, and everyone
else keeps being served: edgecloud_servicekit.slow_clients.

The deadlines are tested on an in-process uvicorn with the services' own protocol class and
short timeouts, and once against the real gateway (the stack's head timeout is 4 s), which
shows the services run with it.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request

from edgecloud_servicekit.slow_clients import guarded_http_protocol
from tests.conftest import ONE_DATABASE, eventually
from tests.support.processes import free_port

HEAD_TIMEOUT_S = 0.5
BODY_STALL_S = 0.5
CLOSED_WITHIN_S = 10.0
"""Generous: the machine is busy; what matters is that the connection does get closed."""
REQUEST = b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"


def small_app() -> FastAPI:
    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"received": sum([len(chunk) async for chunk in request.stream()])}

    @app.post("/late-reader")
    async def late_reader(request: Request) -> dict[str, int]:
        # Longer than the stall deadline before reading: uvicorn stops reading from the
        # client meanwhile (flow control), which is no stall of the client's.
        await asyncio.sleep(1.5 * BODY_STALL_S)
        return {"received": len(await request.body())}

    return app


@asynccontextmanager
async def serving(*, guarded: bool = True, limit_concurrency: int = 1000) -> AsyncIterator[int]:
    """An in-process uvicorn on a free port, with the services' guarded protocol (or
    uvicorn's own, to show what it lacks)."""
    port = free_port()
    protocol = guarded_http_protocol(head_timeout_s=HEAD_TIMEOUT_S, body_stall_s=BODY_STALL_S)
    server = uvicorn.Server(
        uvicorn.Config(
            small_app(),
            host="127.0.0.1",
            port=port,
            log_config=None,
            timeout_keep_alive=5,
            # A failing test must not hang in shutdown on the request it left open.
            timeout_graceful_shutdown=1,
            limit_concurrency=limit_concurrency,
            http=protocol if guarded else "httptools",
        )
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        return server.started

    try:
        await eventually(started, timeout=10)
        yield port
    finally:
        server.should_exit = True
        await task


async def closed(reader: asyncio.StreamReader) -> None:
    """Wait until the server closes the connection, having answered nothing on it."""
    assert await asyncio.wait_for(reader.read(), CLOSED_WITHIN_S) == b""


async def trickling(port: int) -> tuple[asyncio.StreamReader, asyncio.Task[None]]:
    """A connection sending an endless request head, a byte every 200 ms."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def trickle() -> None:
        writer.write(b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Slow: ")
        try:
            while not reader.at_eof():
                writer.write(b"a")
                await asyncio.sleep(0.2)
        finally:
            writer.close()

    return reader, asyncio.create_task(trickle())


async def stopped(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_silent_and_trickling_connections_are_closed_while_others_are_served() -> None:
    async with serving() as port:
        silent, writer = await asyncio.open_connection("127.0.0.1", port)
        slow, trickle = await trickling(port)
        silent_closed = asyncio.create_task(closed(silent))
        slow_closed = asyncio.create_task(closed(slow))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):
                assert (await client.get("/ping")).status_code == 200
        await silent_closed
        await slow_closed
        await stopped(trickle)
        writer.close()


async def test_a_flood_of_trickling_connections_does_not_lock_others_out() -> None:
    """limit_concurrency connections that never finish their head: uvicorn alone answers
    everyone else 503 for as long as they trickle; with the head deadline they are gone
    after it and the next client is served."""
    async with serving(limit_concurrency=20) as port:
        flood = [await trickling(port) for _ in range(20)]
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/ping")).status_code == 503  # the flood holds them all
            await asyncio.gather(*(closed(reader) for reader, _ in flood))
            assert (await client.get("/ping")).status_code == 200
        for _, task in flood:
            await stopped(task)


async def test_keep_alive_outlives_the_head_deadline() -> None:
    """The idle time between requests on a kept-alive connection is keep-alive's (5 s),
    not the head deadline's."""
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for pause in (1.5 * HEAD_TIMEOUT_S, 0):
            writer.write(REQUEST)
            assert (await asyncio.wait_for(reader.readuntil(b'{"ok":true}'), 5)).startswith(
                b"HTTP/1.1 200 OK"
            )
            await asyncio.sleep(pause)
        writer.close()


async def test_a_stalled_body_is_cut_off() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nhalf")
        await closed(reader)
        writer.close()


async def test_a_slow_but_progressing_upload_goes_through() -> None:
    """3 MB in pieces, slower in total than the stall deadline, each piece well within it;
    and a service that takes its time before reading is no stall either."""
    pieces = [bytes(512 * 1024)] * 6

    async def slowly() -> AsyncIterator[bytes]:
        for piece in pieces:
            await asyncio.sleep(BODY_STALL_S / 3)
            yield piece

    async with (
        serving() as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        answer = await client.post("/upload", content=slowly())
        assert answer.json() == {"received": 3 << 20}
        late = await client.post("/late-reader", content=bytes(4 << 20))
        assert late.json() == {"received": 4 << 20}


async def test_an_oversized_request_head_is_refused() -> None:
    async with serving() as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /ping HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), CLOSED_WITHIN_S)
        assert answer.startswith(b"HTTP/1.1 431 ")
        writer.close()


@ONE_DATABASE
@pytest.mark.stack
async def test_the_gateway_closes_silent_and_trickling_connections(stack) -> None:
    port = stack.ports["gateway"]
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
    slow = [await trickling(port) for _ in range(5)]
    closing = [closed(reader) for reader in [r for r, _ in silent] + [r for r, _ in slow]]
    waiting = asyncio.gather(*closing)
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=10) as client:
        assert (await client.get("/livez")).status_code == 200
    await waiting  # the stack's head timeout is 4 s
    for _, writer in silent:
        writer.close()
    for _, task in slow:
        await stopped(task)

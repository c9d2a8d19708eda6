"""A link that can be cut, in-process: a TCP proxy to the router on loopback.

Cutting it swallows everything in flight without closing anything (as a dead radio or a
pulled cable does: no FIN, no RST, only silence) and refuses new connections; restoring it
listens again on the same port. For the real thing (namespaces, iptables DROP) see the
testbed.
"""

import asyncio
import contextlib


class SeverableLink:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self.port = 0
        self.cut_now = False
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "SeverableLink":
        await self._listen()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.cut()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def url(self, path: str = "/ws") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self.cut_now = True
        if self._server is not None:
            self._server.close()
            self._server = None

    async def restore(self) -> None:
        self.cut_now = False
        await self._listen()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    if self.cut_now:
                        continue  # swallowed: the other end hears nothing, not even a close
                    sink.write(chunk)
                    await sink.drain()
            if not self.cut_now:
                sink.close()

        tasks = [
            asyncio.create_task(pipe(reader, up_writer)),
            asyncio.create_task(pipe(up_reader, writer)),
        ]
        self._pipes.update(tasks)
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._pipes.difference_update(tasks)
            for end in (writer, up_writer):
                end.transport.abort()

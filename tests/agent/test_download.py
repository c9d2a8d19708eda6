"""Artifact downloads against a real local HTTP server that breaks links on purpose.

The server (aiohttp.web on 127.0.0.1, ephemeral port) serves one random payload with
proper Range support, and misbehaves as told, one request at a time. It logs every
request's Range header with the size of the ``.part`` file at the moment the request
arrived: a resume must ask for exactly the bytes that are already on disk.
"""

import asyncio
import contextlib
import hashlib
import itertools
import random
import re
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from edgecloud_agent.deploy.download import DownloadFailed, DownloadProgress, download

MIB = 1 << 20
SEND_BLOCK = 64 * 1024


@dataclass
class Misbehave:
    """What the server does wrong for one request (the default: nothing)."""

    cut_after: int | None = None  # body bytes sent before the connection is dropped
    stall_s: float = 0.0  # sleep this long mid-body (after cut_after bytes), then drop
    ignore_range: bool = False  # answer 200 with the full body to a ranged request
    wrong_start: bool = False  # answer a ranged request 206 from byte 0
    status: int | None = None  # answer only this status
    payload: bytes | None = None  # serve these bytes instead
    chunked: bool = False  # no Content-Length


@dataclass
class Logged:
    range: str | None
    on_disk: int | None  # size of the watched .part when the request arrived
    status: int


@dataclass
class Server:
    payload: bytes
    url: str = ""
    watch: Path | None = None
    plan: list[Misbehave] = field(default_factory=list)  # consumed one per request
    always: Misbehave = field(default_factory=Misbehave)  # once the plan is used up
    log: list[Logged] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)  # ends every stall

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        asked = request.headers.get("Range")
        on_disk = self.watch.stat().st_size if self.watch and self.watch.exists() else None
        how = self.plan.pop(0) if self.plan else self.always
        data = memoryview(how.payload if how.payload is not None else self.payload)
        if how.status is not None:
            self.log.append(Logged(asked, on_disk, how.status))
            return web.Response(status=how.status)
        start = 0
        if asked and not how.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", asked)
            assert match, asked
            start = 0 if how.wrong_start else int(match[1])
            if start >= len(data):
                self.log.append(Logged(asked, on_disk, 416))
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(data)}"})
            response = web.StreamResponse(status=206)
            response.headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        else:
            response = web.StreamResponse(status=200)
        self.log.append(Logged(asked, on_disk, response.status))
        body = data[start:]
        if how.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = len(body)
        await response.prepare(request)
        sent = body if how.cut_after is None else body[: how.cut_after]
        try:
            for offset in range(0, len(sent), SEND_BLOCK):
                await response.write(sent[offset : offset + SEND_BLOCK])
            if how.cut_after is None:
                await response.write_eof()
                return response
        except ConnectionError:  # the client hung up first (it found the body wrong)
            return response
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closing.wait(), how.stall_s)
        if request.transport is not None:  # None: the client gave up waiting
            request.transport.close()  # the link drops: the client sees a short body
        return response


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    serving = Server(payload=random.randbytes(5 * MIB))
    app = web.Application()
    app.router.add_get("/artifact", serving.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    serving.url = f"http://{host}:{port}/artifact?signature=test"
    try:
        yield serving
    finally:
        serving.closing.set()
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


@pytest.fixture
def target(tmp_path: Path, server: Server) -> Path:
    destination = tmp_path / "app.tar.gz"
    server.watch = part_of(destination)
    return destination


def part_of(destination: Path) -> Path:
    return destination.with_name(destination.name + ".part")


# Small local files, read blocking on purpose: these are the test's checks.
def content(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def size_of(path: Path) -> int:
    return path.stat().st_size


async def fetch(
    server: Server,
    session: aiohttp.ClientSession,
    target: Path,
    *,
    attempts: int = 8,
    read_timeout_s: float = 5.0,
    progress: Callable[[DownloadProgress], Awaitable[None] | None] | None = None,
) -> Path:
    """The payload, with short backoffs so the tests stay quick."""
    return await download(
        session,
        server.url,
        target,
        sha256=server.sha256,
        size=len(server.payload),
        attempts=attempts,
        backoff_s=0.01,
        max_backoff_s=0.05,
        progress=progress,
        read_timeout_s=read_timeout_s,
    )


def ranges(server: Server) -> list[str | None]:
    return [entry.range for entry in server.log]


async def test_plain_download(server: Server, session: aiohttp.ClientSession, target: Path) -> None:
    assert await fetch(server, session, target) == target
    assert content(target) == server.payload
    assert content(part_of(target)) is None
    assert ranges(server) == [None]


async def test_cut_in_the_middle_resumes_from_what_is_on_disk(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    cut = 2 * MIB + 12345
    server.plan = [Misbehave(cut_after=cut)]
    await fetch(server, session, target)
    assert content(target) == server.payload
    first, second = server.log
    assert first.range is None
    # Bytes aiohttp had buffered but not handed out when the link dropped are lost: at
    # most a few hundred KiB, and never more than were sent.
    assert second.on_disk is not None
    assert cut - MIB // 2 < second.on_disk <= cut
    assert second.range == f"bytes={second.on_disk}-"
    assert second.status == 206


async def test_several_cuts_in_a_row(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.plan = [Misbehave(cut_after=n) for n in (700_000, 0, 300_000, 1_500_000, 0, 5)]
    await fetch(server, session, target)
    assert content(target) == server.payload
    assert len(server.log) == 7
    for entry in server.log[1:]:
        assert entry.range == (f"bytes={entry.on_disk}-" if entry.on_disk else None)
    offsets = [entry.on_disk or 0 for entry in server.log]
    assert offsets == sorted(offsets)


async def test_resume_across_a_restart(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.plan = [Misbehave(cut_after=3 * MIB)]
    server.always = Misbehave(cut_after=0)
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target, attempts=1)
    assert failed.value.code == "download_failed"
    left = size_of(part_of(target))
    assert 0 < left <= 3 * MIB
    assert content(target) is None

    server.always, server.log = Misbehave(), []
    await fetch(server, session, target)  # a new call: the hash state comes from the disk
    assert content(target) == server.payload
    assert ranges(server) == [f"bytes={left}-"]


async def test_resume_after_the_agent_was_killed_mid_transfer(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    halfway = asyncio.Event()

    def on_progress(event: DownloadProgress) -> None:
        if event.received >= 2 * MIB:
            halfway.set()

    server.plan = [Misbehave(cut_after=3 * MIB, stall_s=2.0)]
    task = asyncio.create_task(fetch(server, session, target, progress=on_progress))
    await asyncio.wait_for(halfway.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    left = size_of(part_of(target))
    assert 2 * MIB <= left <= 3 * MIB

    await fetch(server, session, target)
    assert content(target) == server.payload
    assert ranges(server)[1:] == [f"bytes={left}-"]


async def test_complete_part_from_an_earlier_run_needs_no_request(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    part_of(target).write_bytes(server.payload)
    await fetch(server, session, target)
    assert content(target) == server.payload
    assert server.log == []


async def test_stall_resumes(server: Server, session: aiohttp.ClientSession, target: Path) -> None:
    server.plan = [Misbehave(cut_after=MIB, stall_s=1.5)]
    await fetch(server, session, target, read_timeout_s=0.3)
    assert content(target) == server.payload
    assert len(server.log) == 2
    assert server.log[1].range == f"bytes={server.log[1].on_disk}-"


async def test_server_ignoring_range_starts_over(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.plan = [Misbehave(cut_after=2 * MIB), Misbehave(ignore_range=True)]
    await fetch(server, session, target)
    assert content(target) == server.payload
    assert server.log[1].range is not None
    assert server.log[1].status == 200
    assert len(server.log) == 2


async def test_wrong_content_range_start_restarts_from_zero(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.plan = [Misbehave(cut_after=2 * MIB), Misbehave(wrong_start=True)]
    await fetch(server, session, target)
    assert content(target) == server.payload
    assert [entry.status for entry in server.log] == [200, 206, 200]
    assert server.log[2].range is None


@pytest.mark.parametrize("status", [403, 401])
async def test_refused_url_is_expired_without_retries(
    server: Server, session: aiohttp.ClientSession, target: Path, status: int
) -> None:
    server.always = Misbehave(status=status)
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target)
    assert failed.value.code == "url_expired"
    assert len(server.log) == 1


async def test_expired_url_midway_keeps_the_part_for_a_fresh_url(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.plan = [Misbehave(cut_after=MIB), Misbehave(status=403)]
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target)
    assert failed.value.code == "url_expired"
    kept = size_of(part_of(target))
    assert kept > 0
    await fetch(server, session, target)  # the caller's retry with a fresh URL
    assert content(target) == server.payload
    assert server.log[-1].range == f"bytes={kept}-"


async def test_missing_artifact(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.always = Misbehave(status=404)
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target)
    assert failed.value.code == "not_found"
    assert len(server.log) == 1


async def test_server_errors_are_retried_then_give_up(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.always = Misbehave(status=503)
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target, attempts=4)
    assert failed.value.code == "download_failed"
    assert len(server.log) == 4


async def test_cuts_without_progress_give_up_and_keep_the_part(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.plan = [Misbehave(cut_after=MIB)]
    server.always = Misbehave(cut_after=0)
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target, attempts=3)
    assert failed.value.code == "download_failed"
    assert len(server.log) == 1 + 3
    assert size_of(part_of(target)) > 0


async def test_wrong_bytes_are_a_checksum_mismatch(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.always = Misbehave(payload=random.randbytes(len(server.payload)))
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target)
    assert failed.value.code == "checksum_mismatch"
    assert content(target) is None
    assert content(part_of(target)) is None


async def test_expected_hash_compares_case_insensitively(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    await download(
        session, server.url, target, sha256=server.sha256.upper(), size=len(server.payload)
    )
    assert content(target) == server.payload


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_more_bytes_than_announced(
    server: Server, session: aiohttp.ClientSession, target: Path, chunked: bool
) -> None:
    server.always = Misbehave(payload=server.payload + b"x" * 1000, chunked=chunked)
    with pytest.raises(DownloadFailed) as failed:
        await fetch(server, session, target)
    assert failed.value.code == "too_large"
    assert content(target) is None
    assert content(part_of(target)) is None


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_progress_is_monotonic_and_ends_at_size(
    server: Server, session: aiohttp.ClientSession, target: Path, asynchronous: bool
) -> None:
    seen: list[DownloadProgress] = []

    def on_progress(event: DownloadProgress) -> None:
        seen.append(event)

    async def on_progress_async(event: DownloadProgress) -> None:
        seen.append(event)

    server.plan = [Misbehave(cut_after=2 * MIB)]
    await fetch(
        server, session, target, progress=on_progress_async if asynchronous else on_progress
    )
    size = len(server.payload)
    received = [event.received for event in seen]
    assert received == sorted(received)
    assert received[-1] == size
    assert all(event.total == size for event in seen)
    steps = [later - earlier for earlier, later in itertools.pairwise(received)]
    assert all(step >= 256 * 1024 for step in steps[:-1])  # the last one: the end
    assert seen[-1].attempt == 2
    assert seen[-1].resumed_from == server.log[1].on_disk


async def test_never_buffers_the_whole_body(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    server.payload = random.randbytes(20 * MIB)
    tracemalloc.start()
    try:
        await fetch(server, session, target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size_of(target) == len(server.payload)
    assert peak < 4 * MIB, peak


async def test_a_closed_gate_holds_each_attempt_without_counting_it_a_failure(
    server: Server, session: aiohttp.ClientSession, target: Path
) -> None:
    """The node on the slow mesh: the download waits (however long) and resumes on the WAN."""
    server.plan = [Misbehave(cut_after=MIB)]
    wan = asyncio.Event()
    wan.set()
    waited = 0

    async def gate() -> None:
        nonlocal waited
        if not wan.is_set():
            waited += 1
        await wan.wait()

    async def mesh_after_the_cut(progress: DownloadProgress) -> None:
        if progress.attempt == 1:
            wan.clear()  # the link changes mid-download
            asyncio.get_running_loop().call_later(0.3, wan.set)

    fetched = await download(
        session,
        server.url,
        target,
        sha256=server.sha256,
        size=len(server.payload),
        attempts=1,  # one failure would end it: waiting at the gate is none
        backoff_s=0.01,
        progress=mesh_after_the_cut,
        before_attempt=gate,
    )
    assert content(fetched) == server.payload
    assert waited == 1
    assert ranges(server)[1] is not None  # resumed, not restarted

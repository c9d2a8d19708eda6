"""The agent's exec and shells against the real Docker engine, without the cloud: the
WAMP call's progressive results are a list here."""

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.terminal.oneshot import run_once
from edgecloud_agent.terminal.shells import SLOW_WINDOW_BYTES, ShellSessions
from edgecloud_agent.uplink.errors import CommandRejected
from edgecloud_contracts import errors
from edgecloud_contracts.containers import ContainerSpec
from edgecloud_contracts.shell import ExecOrder, ShellEnd, ShellOpen
from tests.agent.conftest import docker, make_spec
from tests.conftest import eventually


@pytest.fixture
async def box(
    runtime: DockerRuntime, create: Callable[..., Any], names: Callable[[], str]
) -> ContainerSpec:
    spec = make_spec(names())
    await create(spec)
    await runtime.start(spec.docker_name, container_id=spec.container_id)
    return spec


class Session:
    """One shell, opened as the gateway would, with its output gathered."""

    def __init__(self, shells: ShellSessions, request: ShellOpen) -> None:
        self.shells = shells
        self.request = request
        self.output = bytearray()
        self.frames: list[tuple[Any, ...]] = []
        self.ready: dict[str, Any] | None = None
        self.end: asyncio.Task[ShellEnd] = asyncio.create_task(shells.open(request, self._take))

    def _take(self, kind: str, payload: Any) -> None:
        self.frames.append((kind, payload))
        if kind == "r":
            self.ready = payload
        else:
            self.output += payload

    async def send(self, *frames: list[Any]) -> None:
        await self.shells.input(self.request.session_id, [list(frame) for frame in frames])

    async def screen_has(self, text: str) -> bool:
        return text.encode() in self.output


async def opened(shells: ShellSessions, spec: ContainerSpec, **fields: Any) -> Session:
    request = ShellOpen(
        session_id=fields.pop("session_id", "s1"),
        container_id=spec.container_id,
        docker_name=spec.docker_name,
        **fields,
    )
    session = Session(shells, request)
    await eventually(lambda: _ready(session), timeout=20)
    return session


async def _ready(session: Session) -> bool:
    if session.end.done():
        session.end.result()  # raise what refused it
    return session.ready is not None


@pytest.fixture
async def shells(runtime: DockerRuntime) -> AsyncIterator[ShellSessions]:
    sessions = ShellSessions(runtime, link=lambda: "wan", max_sessions=2)
    yield sessions
    await sessions.close_all()


async def no_process(spec: ContainerSpec, args: str) -> bool:
    return args not in docker("top", spec.docker_name, "-o", "pid,args").stdout


async def test_a_shell_types_resizes_and_exits(shells: ShellSessions, box: ContainerSpec) -> None:
    session = await opened(shells, box, cols=90, rows=20)
    await session.send(["i", b"stty size\n"])
    await eventually(lambda: session.screen_has("20 90"), timeout=10)
    await session.send(["z", 132, 43], ["i", b"stty size; exit 4\n"])
    end = await asyncio.wait_for(session.end, 20)
    assert end == ShellEnd(exit_code=4, reason="exited")
    assert b"43 132" in session.output
    assert shells.count == 0


async def test_closing_a_shell_ends_its_jobs_too(shells: ShellSessions, box: ContainerSpec) -> None:
    session = await opened(shells, box)
    await session.send(["i", b"sleep 321 & sleep 322\n"])
    await eventually(lambda: _running(box, "sleep 322"), timeout=10)
    await session.send(["x"])
    end = await asyncio.wait_for(session.end, 20)
    assert end == ShellEnd(exit_code=None, reason="closed")
    for job in ("sleep 321", "sleep 322"):
        assert await no_process(box, job)
    assert docker("inspect", "-f", "{{.State.Running}}", box.docker_name).stdout.strip() == "true"


async def _running(spec: ContainerSpec, args: str) -> bool:
    return not await no_process(spec, args)


async def test_a_silent_gateway_loses_its_shell(shells: ShellSessions, box: ContainerSpec) -> None:
    session = await opened(shells, box, lease_s=5)
    await session.send(["k"])
    end = await asyncio.wait_for(session.end, 20)
    assert end.reason == "lease_expired"


async def test_output_waits_for_acknowledgements(shells: ShellSessions, box: ContainerSpec) -> None:
    session = await opened(shells, box, window_bytes=4096)
    await session.send(
        ["i", b"yes abcdefghijklmnopqrstuvwxyz | head -c 200000; echo; echo d''one\n"]
    )
    await asyncio.sleep(1.5)
    held = len(session.output)
    assert held <= 4096  # the window
    assert b"done" not in session.output
    while b"done" not in session.output:
        before = len(session.output)
        await session.send(["a", len(session.output)])
        await eventually(lambda b=before: _grew(session, b), timeout=10)
    assert session.output.count(b"abcdefghijklmnopqrstuvwxyz") >= 7000


async def _grew(session: Session, before: int) -> bool:
    return len(session.output) > before or b"done" in session.output


async def test_the_slow_link_gets_few_large_frames(
    runtime: DockerRuntime, box: ContainerSpec
) -> None:
    shells = ShellSessions(runtime, link=lambda: "lowpan", max_sessions=2)
    session = await opened(shells, box, window_bytes=65536)
    assert session.ready == {"link": "lowpan", "window": SLOW_WINDOW_BYTES}
    await session.send(["i", b"for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; done\n"])
    await eventually(lambda: session.screen_has("line10"), timeout=10)
    output_frames = [frame for frame in session.frames if frame[0] == "o"]
    # Twenty-odd echoes and writes, gathered into a handful of frames.
    assert len(output_frames) <= 5
    await shells.close_all()
    await asyncio.wait_for(session.end, 20)


async def test_bad_input_ends_the_shell_not_the_container(
    shells: ShellSessions, box: ContainerSpec
) -> None:
    session = await opened(shells, box)
    for bad in (
        "not a list",
        [["i", "text, not bytes"]],
        [["z", 0, 10]],
        [["q"]],
        [["i", b"x" * (16 * 1024 + 1)]],
    ):
        with pytest.raises(CommandRejected) as refused:
            await shells.input("s1", bad)
        assert refused.value.uri == errors.INVALID_ARGUMENT
        end = await asyncio.wait_for(session.end, 20)
        assert end.reason == "error"
        session = await opened(shells, box)
    with pytest.raises(CommandRejected) as unknown:
        await shells.input("nobody", [["k"]])
    assert unknown.value.uri == errors.NOT_FOUND
    assert docker("inspect", "-f", "{{.State.Running}}", box.docker_name).stdout.strip() == "true"


async def test_shells_are_limited_and_only_in_our_containers(
    shells: ShellSessions, box: ContainerSpec
) -> None:
    await opened(shells, box, session_id="a")
    with pytest.raises(CommandRejected) as twice:
        await shells.open(
            ShellOpen(session_id="a", container_id=box.container_id, docker_name=box.docker_name),
            lambda *_: None,
        )
    assert twice.value.uri == errors.FAILED_PRECONDITION
    await opened(shells, box, session_id="b")
    with pytest.raises(CommandRejected) as full:
        await opened(shells, box, session_id="c")
    assert full.value.uri == errors.UNAVAILABLE
    await shells.close_all()
    await eventually(lambda: _none_open(shells), timeout=20)
    wrong_id = ShellOpen(session_id="d", container_id="someone-else", docker_name=box.docker_name)
    with pytest.raises(CommandRejected) as foreign:
        await shells.open(wrong_id, lambda *_: None)
    assert foreign.value.uri == errors.NOT_FOUND


async def _none_open(shells: ShellSessions) -> bool:
    return shells.count == 0


async def test_one_shot_exec_collects_output_and_cuts_what_is_too_much(
    runtime: DockerRuntime, box: ContainerSpec
) -> None:
    def order(*cmd: str, timeout_s: float = 30) -> ExecOrder:
        return ExecOrder(
            container_id=box.container_id,
            docker_name=box.docker_name,
            cmd=list(cmd),
            timeout_s=timeout_s,
        )

    done = await run_once(runtime, order("sh", "-c", "echo out; echo err >&2; exit 7"))
    assert done.exit_code == 7
    assert sorted(done.output.split()) == ["err", "out"]
    flood = await run_once(runtime, order("sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x"))
    assert flood.exit_code == 0
    assert flood.truncated is True
    assert len(flood.output) == 1 << 20
    slow = await run_once(runtime, order("sh", "-c", "sleep 333 & sleep 334", timeout_s=1))
    assert slow.timed_out is True
    assert slow.exit_code is None
    for job in ("sleep 333", "sleep 334"):
        await eventually(lambda j=job: no_process(box, j), timeout=10)

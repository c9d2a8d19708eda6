"""Exec and interactive shells inside containers, on a real agent and Docker engine."""

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import termios
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import docker
from tests.integration.test_containers import IMAGE, create, inspect
from tests.integration.test_gateway_api import assert_problem
from tests.support.shells import shell_url, terminal
from tests.support.users import Account, register

pytestmark = pytest.mark.stack

# The shell's path does not touch the database but for the tenant's count of open shells,
# so only that test runs on both; the rest once, to keep the suite's time.


async def running(client: httpx.AsyncClient, node, name: str = "box") -> dict:
    agent, user = node
    answer = await create(
        client, user, device=agent.key, name=name, image=IMAGE, command=["sleep", "600"]
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def run(client: httpx.AsyncClient, user: Account, container: dict, **body) -> httpx.Response:
    return await client.post(
        f"/api/v1/containers/{container['id']}/exec", json=body, headers=user.headers, timeout=60
    )


async def audit(client: httpx.AsyncClient, user: Account, action: str) -> list[dict]:
    answer = await client.get("/api/v1/audit", params={"action": action}, headers=user.headers)
    return answer.json()["items"]


def processes(name: str) -> str:
    return docker("top", name, "-o", "pid,args").stdout


async def no_process(name: str, args: str) -> bool:
    return args not in processes(name)


@ONE_DATABASE
async def test_exec_answers_output_and_exit_code_and_is_audited(client, node) -> None:
    _, user = node
    container = await running(client, node)
    answer = await run(
        client, user, container, cmd=["sh", "-c", "echo hello; echo oops >&2; exit 3"]
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["exit_code"] == 3
    assert "hello" in result["output"]
    assert "oops" in result["output"]
    assert result["truncated"] is False
    assert result["timed_out"] is False
    # Arguments are an argv: nothing of them is read by a shell on the way.
    literal = (await run(client, user, container, cmd=["echo", "$(id); rm -rf /"])).json()
    assert literal == {**literal, "exit_code": 0, "output": "$(id); rm -rf /\n"}
    entries = await audit(client, user, "container.exec")
    assert entries[1]["detail"]["exit_code"] == 3
    assert entries[0]["target"] == f"container:{container['id']}"


@ONE_DATABASE
async def test_exec_runs_inside_the_container_with_its_hardening(client, node) -> None:
    _, user = node
    container = await running(client, node)
    seen = inspect(container["name"])
    script = "hostname; cat /proc/1/cmdline | tr '\\0' ' '; echo; touch /x 2>/dev/null; echo $?"
    output = (await run(client, user, container, cmd=["sh", "-c", script])).json()["output"]
    hostname, init, touched = output.splitlines()[:3]
    assert hostname == seen["Config"]["Hostname"]
    assert init.strip() == "sleep 600"  # the container's own processes, not the node's
    assert touched != "0"  # its root filesystem is read-only
    capabilities = await run(client, user, container, cmd=["grep", "CapEff", "/proc/self/status"])
    assert capabilities.json()["output"].split()[-1] == "0000000000000000"


@ONE_DATABASE
async def test_exec_timeout_kills_the_command(client, node) -> None:
    _, user = node
    container = await running(client, node)
    answer = await run(
        client, user, container, cmd=["sh", "-c", "echo started; sleep 300"], timeout_s=1
    )
    result = answer.json()
    assert result["timed_out"] is True
    assert result["exit_code"] is None
    assert result["output"] == "started\n"
    await eventually(lambda: no_process(container["name"], "sleep 300"), timeout=10)
    assert inspect(container["name"])["State"]["Running"] is True


async def test_exec_refusals_change_nothing(stack, client, node) -> None:
    _, user = node
    container = await running(client, node)
    stranger = await register(stack)
    refused = await run(client, stranger, container, cmd=["id"])
    assert_problem(refused, 404, "container_not_found")
    for body in ({"cmd": []}, {"cmd": "id"}, {"cmd": ["a\x00b"]}, {"cmd": ["id"], "timeout_s": 0}):
        assert (await run(client, user, container, **body)).status_code == 422
    path = f"/api/v1/containers/{container['id']}"
    assert (await client.post(f"{path}/stop", headers=user.headers)).status_code == 200
    assert_problem(await run(client, user, container, cmd=["id"]), 409, "container_not_running")
    failures = [e for e in await audit(client, user, "container.exec") if e["outcome"] == "failure"]
    assert failures
    assert failures[0]["detail"]["code"] == "container_not_running"


@ONE_DATABASE
async def test_an_interactive_session_types_resizes_and_exits(stack, client, node) -> None:
    _, user = node
    container = await running(client, node)
    gateway = stack.url("gateway")
    async with terminal(gateway, container["id"], user.headers, cols=100, rows=30) as shell:
        ready = await shell.ready()
        assert ready["link"] == "wan"
        assert ready["slow"] is False
        await shell.type("echo $((6*7))\n")
        await shell.read_until("42")
        await shell.type("stty size\n")
        await shell.read_until("30 100")
        await shell.resize(120, 40)
        await shell.type("stty size\n")
        await shell.read_until("40 120")
        await shell.type("id -u; exit 5\n")
        end = await shell.control("exit")
        assert end == {"type": "exit", "reason": "exited", "exit_code": 5}
        code, _ = await shell.closed()
        assert code == 1000
    opened = (await audit(client, user, "container.shell.open"))[0]
    assert opened["outcome"] == "success"
    assert opened["detail"]["cmd"] == "sh"
    closed = await eventually(lambda: audit(client, user, "container.shell.close"), timeout=10)
    detail = closed[0]["detail"]
    assert detail["session"] == opened["detail"]["session"] == ready["session"]
    assert detail["reason"] == "exited"
    assert detail["exit_code"] == 5
    assert detail["duration_s"] > 0
    assert detail["bytes_in"] > 0
    assert detail["bytes_out"] > 0
    assert closed[0]["actor"] == user.username
    assert inspect(container["name"])["State"]["Running"] is True


async def test_only_the_owner_tenant_opens_a_shell(stack, client, node) -> None:
    _, user = node
    container = await running(client, node)
    gateway = stack.url("gateway")
    stranger = await register(stack)
    for headers, status in ((stranger.headers, 404), ({}, 401)):
        with pytest.raises(InvalidStatus) as refused:
            async with terminal(gateway, container["id"], headers):
                pass
        assert refused.value.response.status_code == status
        assert json.loads(refused.value.response.body)["code"]
    # The dashboard's cookie is honoured from the dashboard's own pages only.
    cookie = {"Cookie": f"edgecloud_session={user.token}", "Origin": "http://evil.example"}
    with pytest.raises(InvalidStatus) as foreign:
        async with terminal(gateway, container["id"], cookie):
            pass
    assert foreign.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as bad_query:
        async with terminal(gateway, container["id"], user.headers, cols=0):
            pass
    assert bad_query.value.response.status_code == 422
    refusal = (await audit(client, stranger, "container.shell.open"))[0]
    assert refusal["outcome"] == "failure"
    assert refusal["detail"]["code"] == "container_not_found"


async def test_a_tenant_has_a_limited_number_of_shells(stack, client, node) -> None:
    _, user = node
    container = await running(client, node)
    gateway = stack.url("gateway")
    opened = [
        await connect(shell_url(gateway, container["id"]), additional_headers=user.headers)
        for _ in range(4)
    ]
    try:
        with pytest.raises(InvalidStatus) as refused:
            async with terminal(gateway, container["id"], user.headers):
                pass
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body)["code"] == "too_many_shells"
        await opened.pop().close()

        async def admitted() -> bool:
            try:
                async with terminal(gateway, container["id"], user.headers) as shell:
                    await shell.ready()
            except InvalidStatus:
                return False
            return True

        assert await eventually(admitted, timeout=10)
    finally:
        for connection in opened:
            await connection.close()


@ONE_DATABASE
async def test_bad_frames_end_the_session_cleanly(stack, client, node) -> None:
    _, user = node
    container = await running(client, node)
    gateway = stack.url("gateway")
    for message, close_code, code in [
        (b"x" * (64 * 1024 + 1), 1009, "message_too_big"),
        ("{not json", 1007, "malformed_message"),
        (json.dumps({"type": "resize", "cols": 10**6, "rows": 1}), 1007, "malformed_message"),
    ]:
        async with terminal(gateway, container["id"], user.headers) as shell:
            await shell.ready()
            await shell.connection.send(message)
            closed, controls = await shell.closed()
        assert closed == close_code
        assert controls[-1]["type"] == "error"
        assert controls[-1]["code"] == code
    await _nothing_left_behind(stack, client, user, container)


@ONE_DATABASE
async def test_a_resize_storm_and_a_dropped_client_leave_nothing_behind(
    stack, client, node
) -> None:
    _, user = node
    container = await running(client, node)
    gateway = stack.url("gateway")
    async with terminal(gateway, container["id"], user.headers) as shell:
        await shell.ready()
        for side in range(1, 501):
            await shell.resize(20 + side % 200, 10 + side % 50)
        await shell.resize(90, 33)
        await shell.type("stty size\n")
        await shell.read_until("33 90")
        await shell.type("sleep 300\n")
        await asyncio.sleep(0.5)
        shell.connection.transport.abort()  # no close frame: the client is just gone
    await _nothing_left_behind(stack, client, user, container)


@ONE_DATABASE
async def test_a_quiet_shell_is_closed_for_idleness(stack, client, node) -> None:
    _, user = node
    container = await running(client, node)
    async with terminal(stack.url("gateway"), container["id"], user.headers) as shell:
        await shell.ready()
        closed, controls = await shell.closed(timeout=30)
    assert closed == 4408
    assert controls[-1]["code"] == "idle_timeout"


async def _nothing_left_behind(stack, client, user, container) -> None:
    """The session is closed and audited, its process gone, the container running, and a
    new shell works."""

    async def closed() -> bool:
        return any(
            e["detail"]["reason"] != "exited"
            for e in await audit(client, user, "container.shell.close")
        )

    await eventually(closed, timeout=15)
    await eventually(lambda: no_process(container["name"], "sleep 300"), timeout=15)
    assert inspect(container["name"])["State"]["Running"] is True
    async with terminal(stack.url("gateway"), container["id"], user.headers) as shell:
        await shell.ready()
        await shell.type("echo still-here\n")
        await shell.read_until("still-here")


EDGECLOUD = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "edgecloud"


def cli_env(stack, user: Account, home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "EDGECLOUD_URL": stack.url("gateway"),
        "EDGECLOUD_TOKEN": user.token,
    }


@ONE_DATABASE
async def test_the_cli_runs_commands_and_shells(stack, client, node, tmp_path) -> None:
    _, user = node
    container = await running(client, node, name="cli")
    env = cli_env(stack, user, tmp_path)
    once = await asyncio.to_thread(
        subprocess.run,
        [str(EDGECLOUD), "exec", "cli", "--", "sh", "-c", "echo hi; exit 3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (once.returncode, once.stdout) == (3, "hi\n"), once.stderr

    # -it in a real terminal: typed keys, the window's size, the shell's exit code.
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = await asyncio.create_subprocess_exec(
        str(EDGECLOUD),
        "exec",
        "-it",
        container["id"][:8],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
    )
    os.close(secondary)
    screen = bytearray()

    async def shows(text: str) -> None:
        try:
            async with asyncio.timeout(30):
                while text.encode() not in screen:
                    await asyncio.to_thread(_read_into, primary, screen)
        except TimeoutError:
            raise AssertionError(f"{text!r} not on the screen: {bytes(screen)!r}") from None

    async def prompt() -> None:
        """Wait for the shell's prompt, answering its cursor query as a terminal would."""
        await shows("# ")
        if b"\x1b[6n" in screen:
            os.write(primary, b"\x1b[1;1R")
        screen.clear()

    try:
        await prompt()
        os.write(primary, b"stty size\r")
        await shows("30 100")
        fcntl.ioctl(primary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        process.send_signal(signal.SIGWINCH)
        await asyncio.sleep(0.5)
        os.write(primary, b"stty size; echo $((6*7))x\r")
        await shows("40 120")
        await shows("42x")
        await prompt()
        os.write(primary, b"exit 7\r")
        async with asyncio.timeout(30):
            assert await process.wait() == 7
    finally:
        if process.returncode is None:
            process.kill()
        os.close(primary)


def _read_into(fd: int, screen: bytearray) -> None:
    ready, _, _ = select.select([fd], [], [], 0.5)
    if ready:
        with contextlib.suppress(OSError):
            screen += os.read(fd, 4096)

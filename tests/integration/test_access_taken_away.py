"""A shell and a followed log end when the access they were opened with is taken away: the
token revoked, or the tenant's grant on the container's device withdrawn. The caller is
told why, and the shell's end is audited like any other."""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import ONE_DATABASE, eventually
from tests.integration.test_terminal import audit, running
from tests.security.test_live_access import api_token
from tests.support.shells import Terminal, terminal
from tests.support.users import Account

pytestmark = [pytest.mark.stack, ONE_DATABASE]

ACCESS_ENDED = 4403


class FollowedLog:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.last: tuple[str, str] | None = None


@asynccontextmanager
async def following(
    client: httpx.AsyncClient, container: dict, headers: dict[str, str]
) -> AsyncIterator[tuple[httpx.Response, FollowedLog]]:
    log = FollowedLog()
    async with client.stream(
        "GET",
        f"/api/v1/containers/{container['id']}/logs",
        params={"follow": "true", "tail": 1},
        headers=headers,
        timeout=httpx.Timeout(30, read=20),
    ) as answer:
        yield answer, log


async def read_to_the_end(answer: httpx.Response, log: FollowedLog) -> None:
    kind = ""
    async for line in answer.aiter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            log.lines.append(line)
            log.last = (kind, line.removeprefix("data: "))


async def ended_for(shell: Terminal, code: str) -> None:
    close_code, messages = await shell.closed()
    assert close_code == ACCESS_ENDED
    assert messages[-1]["type"] == "error"
    assert messages[-1]["code"] == code


async def closing_reason(client: httpx.AsyncClient, user: Account) -> str:
    async def closed() -> list[dict]:
        return await audit(client, user, "container.shell.close")

    return str((await eventually(closed, timeout=10))[0]["detail"]["reason"])


async def test_a_revoked_token_ends_its_shell_and_its_followed_log(stack, client, node) -> None:
    _, user = node
    container = await running(client, node)
    token_id, headers = await api_token(stack, user)
    async with (
        terminal(stack.url("gateway"), container["id"], headers) as shell,
        following(client, container, headers) as (answer, log),
    ):
        await shell.ready()
        assert answer.status_code == 200
        gone = await client.delete(f"/api/v1/tokens/{token_id}", headers=user.headers)
        assert gone.status_code == 204
        await ended_for(shell, "access_revoked")
        await read_to_the_end(answer, log)
        assert log.last is not None
        assert log.last[0] == "error"
        assert log.last[1].startswith("access_revoked: ")
    assert await closing_reason(client, user) == "revoked"


async def test_withdrawing_the_grant_ends_the_tenants_shell_and_follow(
    stack, api, client, node
) -> None:
    agent, user = node
    container = await running(client, node)
    async with (
        terminal(stack.url("gateway"), container["id"], user.headers) as shell,
        following(client, container, user.headers) as (answer, log),
    ):
        await shell.ready()
        withdrawn = await api.delete(f"/api/v1/devices/{agent.key}/grants/{user.tenant_id}")
        assert withdrawn.status_code == 204, withdrawn.text
        await ended_for(shell, "grant_withdrawn")
        await read_to_the_end(answer, log)
        assert log.last is not None
        assert log.last[1].startswith("grant_withdrawn: ")
    # And no new one opens there.
    with pytest.raises(InvalidStatus) as refused:
        async with terminal(stack.url("gateway"), container["id"], user.headers):
            pass
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body)["code"] == "device_not_granted"

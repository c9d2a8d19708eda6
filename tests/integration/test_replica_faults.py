"""Kill -9 one replica of each service under load, on a cloud side running two replicas of
every service on PostgreSQL, with a real agent and its container.

While a node heartbeats (the agent's own uplink, 10 beats a second) and a user issues
container commands and reads through both gateway replicas, one replica of each service in
turn is killed with SIGKILL and started again. Afterwards:

- every heartbeat was acknowledged (an acknowledgement means written) and is in the
  device's metrics history: none lost;
- every command the API accepted reached ``succeeded``: none lost;
- no user request failed after the client's retry (a new connection to the other gateway
  replica, or again after a 503), and none answered 500.

At a small size here; bench/fleet.py runs the platform at full size.
"""

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from edgecloud_contracts import uris
from tests.conftest import eventually
from tests.integration.conftest import online, remove_tenant_containers
from tests.support.agents import AgentFactory
from tests.support.beats import numbered_heartbeat, numbers_written
from tests.support.brokers import NodeBroker
from tests.support.stack import SERVICES, Stack
from tests.support.users import Account, operator_headers, register
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
RETRY_FOR_S = 20.0
"""How long the user's client keeps trying one request (as the CLI would) before it counts
as failed."""


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(
        backend="postgresql",
        workdir=tmp_path_factory.mktemp("replicated"),
        replicas=dict.fromkeys(SERVICES, 2),
    )
    with stack.running():
        yield stack


class RetryingUser:
    """A user's client over both gateway replicas: a request that meets a dead connection
    or a 503 is sent again to the next replica, for up to RETRY_FOR_S; one still failing
    then fails the test."""

    def __init__(self, stack: Stack, account: Account | None = None) -> None:
        self._urls = itertools.cycle(stack.urls("gateway"))
        self._http = httpx.AsyncClient(timeout=15)
        self.headers = dict(account.headers) if account else {}
        self.retried = 0

    async def __aenter__(self) -> "RetryingUser":
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **options: Any) -> httpx.Response:
        deadline = time.monotonic() + RETRY_FOR_S
        while True:
            url = next(self._urls)
            try:
                answer = await self._http.request(
                    method, url + path, headers=self.headers, **options
                )
                assert answer.status_code != 500, f"{method} {path}: 500 {answer.text}"
                if answer.status_code not in (502, 503, 504):
                    return answer
                outcome = f"{answer.status_code} {answer.text[:200]}"
            except httpx.TransportError as err:
                outcome = f"{type(err).__name__}: {err}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path} failed after retries: {outcome}")
            self.retried += 1
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def node(
    replicated: Stack, tmp_path_factory: pytest.TempPathFactory, node_broker: NodeBroker
) -> AsyncIterator[Any]:
    stack = replicated
    agents = AgentFactory(stack, tmp_path_factory.mktemp("agents"), node_broker)
    async with RetryingUser(stack) as operator:
        operator.headers.update(await operator_headers(stack))
        enrolment = await operator.request("POST", "/api/v1/devices/enrolments", json={})
        agent = agents.start(token=enrolment.json()["token"])
        user = await register(stack)
        try:
            async with httpx.AsyncClient(
                base_url=stack.url("gateway"), headers=operator.headers, timeout=10
            ) as api:
                await eventually(lambda: online(api, agent.key), timeout=30)
                granted = await api.post(
                    f"/api/v1/devices/{agent.key}/grants", json={"tenant": user.tenant_id}
                )
                assert granted.status_code == 201, granted.text
            yield agent, user, operator
        finally:
            agents.stop_all()
            remove_tenant_containers(user.tenant_id)


async def test_killing_one_replica_of_each_service_loses_nothing(
    replicated: Stack, node: Any
) -> None:
    stack = replicated
    agent, account, operator = node
    async with RetryingUser(stack, account) as user:
        created = await user.request(
            "POST",
            "/api/v1/containers",
            json={
                "device": agent.key,
                "name": "steady",
                "image": IMAGE,
                "command": ["sleep", "600"],
            },
        )
        assert created.status_code == 201, created.text
        container = created.json()["id"]

        probe = probe_key()
        token = (await operator.request("POST", "/api/v1/devices/enrolments", json={})).json()[
            "token"
        ]
        acknowledged: list[int] = []
        commands: list[str] = []
        done = asyncio.Event()

        async def heartbeats() -> None:
            async with device_session(stack, key=probe, token=token) as uplink:
                for seq in itertools.count(1):
                    if done.is_set():
                        return
                    await uplink.call(uris.HEARTBEAT, numbered_heartbeat(probe, seq), timeout=10)
                    acknowledged.append(seq)
                    await asyncio.sleep(0.1)

        async def commands_and_reads() -> None:
            for action in itertools.cycle(("restart", "stop", "start")):
                if done.is_set():
                    return
                answer = await user.request("POST", f"/api/v1/containers/{container}/{action}")
                assert answer.status_code in (200, 202), answer.text
                if answer.status_code == 202:
                    commands.append(answer.json()["command"])
                for path in ("/api/v1/containers", "/api/v1/migrations", "/api/v1/artifacts"):
                    read = await user.request("GET", path)
                    assert read.status_code == 200, f"{path}: {read.status_code} {read.text}"

        async def kill_one_replica_of_each() -> None:
            await asyncio.sleep(1)
            for number, service in enumerate(SERVICES):
                replica = 1 + number % 2
                stack.replica(service, replica).signal(signal.SIGKILL)
                await asyncio.sleep(1.5)  # the load meets the dead replica meanwhile
                await asyncio.to_thread(stack.restart_replica, service, replica)
            await asyncio.sleep(1)
            done.set()

        beating = asyncio.create_task(heartbeats())
        using = asyncio.create_task(commands_and_reads())
        await kill_one_replica_of_each()
        await asyncio.gather(beating, using)

        # (Seen with -s: how much the load met the dead replicas.)
        print(f"beats {len(acknowledged)}, requests sent again {user.retried}")
        assert len(acknowledged) >= 50
        assert acknowledged == list(range(1, len(acknowledged) + 1))

        async def every_beat_in_the_history() -> bool:
            series = await operator.request("GET", f"/api/v1/devices/{probe}/metrics")
            return set(acknowledged) <= numbers_written(series.json())

        await eventually(every_beat_in_the_history, timeout=10)

        async def command_state(command: str) -> str:
            answer = await user.request("GET", f"/api/v1/commands/{command}")
            return str(answer.json()["state"])

        for command in commands:

            async def finished(command: str = command) -> bool:
                return await command_state(command) == "succeeded"

            await eventually(finished, timeout=60, interval=0.5)

"""PostgreSQL restarted (pg_ctl restart -m fast, every connection dropped) while a node
heartbeats and a user writes through the API, on a PostgreSQL server of this test's own.

Meanwhile every answer is a success or a 503 with a code, never a 500; within 10 s of the
server being back every kind of write succeeds again; and every write that was
acknowledged (a 201, an acknowledged heartbeat) is there afterwards.
"""

import asyncio
import itertools
import time
from collections.abc import Iterator

import httpx
import pytest

from edgecloud_agent.uplink.errors import UplinkError
from edgecloud_contracts import uris
from tests.conftest import eventually
from tests.support.beats import numbered_heartbeat, numbers_written
from tests.support.postgres import PrivatePostgres
from tests.support.stack import Stack
from tests.support.users import operator_headers, register
from tests.support.wamp import device_session, probe_key

pytestmark = pytest.mark.stack

RECOVERY_S = 10.0


def code_of(answer: httpx.Response) -> str:
    """A refusal's problem code ("" for a success, or for a body that is no problem)."""
    if answer.status_code < 400:
        return ""
    try:
        return str(answer.json().get("code", ""))
    except ValueError:
        return ""


@pytest.fixture(scope="module")
def restartable(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, PrivatePostgres]]:
    server = PrivatePostgres().start()
    stack = Stack(
        backend="postgresql", workdir=tmp_path_factory.mktemp("pg-restart"), pg_port=server.port
    )
    try:
        with stack.running():
            yield stack, server
    finally:
        server.stop()


async def test_a_database_restart_gives_503s_then_recovers_and_loses_no_write(
    restartable: tuple[Stack, PrivatePostgres],
) -> None:
    stack, server = restartable
    user = await register(stack)
    async with (
        httpx.AsyncClient(base_url=stack.url("gateway"), headers=user.headers, timeout=15) as api,
        httpx.AsyncClient(
            base_url=stack.url("gateway"), headers=await operator_headers(stack), timeout=15
        ) as operator,
    ):
        await restart_under_load(stack, server, api, operator)


async def restart_under_load(
    stack: Stack, server: PrivatePostgres, api: httpx.AsyncClient, operator: httpx.AsyncClient
) -> None:
    token = (await operator.post("/api/v1/devices/enrolments", json={})).json()["token"]
    probe = probe_key()

    answers: list[tuple[float, str, int, str]] = []  # when, what, status, code
    tokens_made: list[str] = []
    beats_acked: list[int] = []
    done = asyncio.Event()

    async def write_tokens() -> None:
        for number in itertools.count():
            if done.is_set():
                return
            name = f"restart-{number}"
            answer = await api.post("/api/v1/tokens", json={"name": name})
            answers.append((time.monotonic(), "token", answer.status_code, code_of(answer)))
            if answer.status_code == 201:
                tokens_made.append(name)
            await asyncio.sleep(0.05)

    async def read_containers() -> None:
        while not done.is_set():
            answer = await api.get("/api/v1/containers")
            answers.append((time.monotonic(), "containers", answer.status_code, code_of(answer)))
            await asyncio.sleep(0.05)

    async def beat() -> None:
        async with device_session(stack, key=probe, token=token) as uplink:
            for seq in itertools.count(1):
                if done.is_set():
                    return
                try:
                    await uplink.call(uris.HEARTBEAT, numbered_heartbeat(probe, seq), timeout=5)
                except UplinkError as err:  # refused or unanswered: not acknowledged
                    answers.append((time.monotonic(), "heartbeat", 503, type(err).__name__))
                else:
                    beats_acked.append(seq)
                    answers.append((time.monotonic(), "heartbeat", 200, ""))
                await asyncio.sleep(0.05)

    load = [asyncio.create_task(job()) for job in (write_tokens, read_containers, beat)]
    await asyncio.sleep(1.5)
    await asyncio.to_thread(server.restart)
    back_at = time.monotonic()

    async def all_recovered() -> bool:
        kinds = {"token", "containers", "heartbeat"}
        succeeded = {what for when, what, status, _ in answers if when > back_at and status < 300}
        return kinds <= succeeded

    try:
        await eventually(all_recovered, timeout=RECOVERY_S, interval=0.1)
    except AssertionError:
        after = [
            (round(w - back_at, 2), what, st, c)
            for w, what, st, c in answers
            if w > back_at - 1 and what != "heartbeat"
        ]
        raise AssertionError(f"not recovered: {after[-40:]}") from None
    recovery_s = max(
        min(
            when
            for when, what, status, _ in answers
            if what == kind and status < 300 and when > back_at
        )
        - back_at
        for kind in ("token", "containers", "heartbeat")
    )
    await asyncio.sleep(0.5)
    done.set()
    await asyncio.gather(*load)

    statuses = {status for _, _, status, _ in answers}
    assert 500 not in statuses
    assert statuses <= {200, 201, 503}, statuses
    refused = [(what, code) for _, what, status, code in answers if status == 503]
    assert all(code for _, code in refused), refused
    print(f"answers {len(answers)}, refused meanwhile {len(refused)}, recovery {recovery_s:.2f} s")

    listed = (await api.get("/api/v1/tokens", params={"limit": 500})).json()["items"]
    assert set(tokens_made) <= {item["name"] for item in listed}

    async def every_beat_in_the_history() -> bool:
        series = await operator.get(f"/api/v1/devices/{probe}/metrics")
        return set(beats_acked) <= numbers_written(series.json())

    await eventually(every_beat_in_the_history, timeout=10)

"""Command round trip: a lightweight command (inspect) from the REST API through the gateway,
the orchestrator, the router and the agent to Docker and back; and, in the same run, the
raw WAMP RPC round trip through the same router.

Starts the router and the services on PostgreSQL, one real agent on this machine's Docker
engine, and one tenant container. Then times `GET /api/v1/containers/{id}?live=true`
(which asks the device) and a bare WAMP call between two sessions on the router.

Figures: command_rtt_p50_ms, command_rtt_p99_ms, wamp_rtt_p50_ms, command_to_wamp_ratio.
Usage: .venv/bin/python bench/command_rtt.py [--requests 2000]
"""

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.support.agents import AgentFactory  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

IMAGE = "edgecloud/busybox:latest"


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


async def login(client: httpx.AsyncClient, password: str) -> dict[str, str]:
    answer = await client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": password}
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def wait_online(client: httpx.AsyncClient, headers: dict[str, str], key: str) -> None:
    for _ in range(300):
        answer = await client.get(f"/api/v1/devices/{key}", headers=headers)
        if answer.status_code == 200 and answer.json()["status"] == "online":
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"device {key} never came online")


async def time_commands(stack: Stack, agents: AgentFactory, requests: int) -> list[float]:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=30) as client:
        headers = await login(client, stack.admin_password)
        enrolment = await client.post("/api/v1/devices/enrolments", json={}, headers=headers)
        agent = agents.start(token=enrolment.json()["token"])
        await wait_online(client, headers, agent.key)
        created = await client.post(
            "/api/v1/containers",
            json={
                "device": agent.key,
                "name": f"rtt-{secrets.token_hex(3)}",
                "image": IMAGE,
                "command": ["sleep", "3600"],
            },
            headers=headers,
        )
        if created.status_code != 201:
            raise RuntimeError(f"create failed: {created.status_code} {created.text}")
        path = f"/api/v1/containers/{created.json()['id']}"
        for _ in range(50):  # warm up connections and caches
            (await client.get(path, params={"live": "true"}, headers=headers)).raise_for_status()
        samples = []
        for _ in range(requests):
            started = time.perf_counter()
            answer = await client.get(path, params={"live": "true"}, headers=headers)
            samples.append((time.perf_counter() - started) * 1000)
            answer.raise_for_status()
        await client.delete(path, headers=headers)
        return samples


async def time_raw_wamp(stack: Stack, calls: int) -> list[float]:
    from edgecloud_servicekit.wamp import Procedure, WampLink

    async def echo(value: Any = None) -> Any:
        return value

    callee = WampLink(
        url=stack.router_url,
        realm="edgecloud",
        authid="storage",
        ticket=stack.tickets["storage"],
        procedures=[Procedure("edge.bench.echo", echo)],
    )
    caller = WampLink(
        url=stack.router_url,
        realm="edgecloud",
        authid="migration-scheduler",
        ticket=stack.tickets["migration-scheduler"],
    )
    async with callee, caller:
        await callee.wait_joined(10)
        await caller.wait_joined(10)
        for _ in range(50):
            await caller.call("edge.bench.echo", "x")
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await caller.call("edge.bench.echo", "x")
            samples.append((time.perf_counter() - started) * 1000)
        return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-rtt-"))
    stack = Stack(
        backend="postgresql", workdir=workdir, only=("registry", "orchestrator", "gateway")
    )
    agents = AgentFactory(stack, workdir)
    try:
        stack.start()
        commands = asyncio.run(time_commands(stack, agents, args.requests))
        wamp = asyncio.run(time_raw_wamp(stack, args.requests))
    finally:
        agents.stop_all()
        stack.stop()
    stack.cleanup()
    command_p50, wamp_p50 = percentile(commands, 0.5), percentile(wamp, 0.5)
    common = {"requests": args.requests}
    for figure in (
        {
            "name": "command_rtt_p50_ms",
            "value": round(command_p50, 3),
            "unit": "ms",
            "target": 3,
            **common,
        },
        {
            "name": "command_rtt_p99_ms",
            "value": round(percentile(commands, 0.99), 3),
            "unit": "ms",
            "target": 10,
            **common,
        },
        {"name": "wamp_rtt_p50_ms", "value": round(wamp_p50, 3), "unit": "ms", **common},
        {
            "name": "command_to_wamp_ratio",
            "value": round(command_p50 / wamp_p50, 2),
            "unit": "x",
            "target": 5,
            **common,
        },
    ):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()

"""Container create+start: through the whole platform (REST -> gateway -> orchestrator ->
router -> agent -> Docker, answered once the container runs) against the same create+start
done directly with aiodocker, in the same run, with the same hardened configuration.

Figures: platform_create_ms, direct_create_ms, create_overhead_ms, create_overhead_ratio
(p50 over --rounds creates of each kind).
Usage: .venv/bin/python bench/container_create.py [--rounds 30]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiodocker  # noqa: E402
import httpx  # noqa: E402

from bench.command_rtt import IMAGE, login, wait_online  # noqa: E402
from edgecloud_agent.runtime.hardening import ContainerPolicy, create_body  # noqa: E402
from edgecloud_contracts.containers import ContainerSpec  # noqa: E402
from tests.support.agents import AgentFactory  # noqa: E402
from tests.support.stack import Stack  # noqa: E402


def hardened(name: str) -> dict[str, object]:
    """Exactly what the agent asks Docker for (its own hardening module)."""
    spec = ContainerSpec(
        container_id=name,
        docker_name=name,
        image=IMAGE,
        command=["sleep", "3600"],
        tenant_id="bench",
        owner="bench",
    )
    return create_body(spec, ContainerPolicy(network="none", allow_host_network=False))


async def direct_once(docker: aiodocker.Docker) -> float:
    name = f"bench-direct-{secrets.token_hex(4)}"
    started = time.perf_counter()
    container = await docker.containers.create(hardened(name), name=name)
    await container.start()
    elapsed = (time.perf_counter() - started) * 1000
    volumes = [m["Name"] for m in (await container.show())["Mounts"]]
    await container.delete(force=True)
    for volume in volumes:  # the application volume outlives its container
        await (await docker.volumes.get(volume)).delete()
    return elapsed


async def platform_once(client: httpx.AsyncClient, headers: dict[str, str], key: str) -> float:
    body = {
        "device": key,
        "name": f"bench-{secrets.token_hex(4)}",
        "image": IMAGE,
        "command": ["sleep", "3600"],
    }
    started = time.perf_counter()
    created = await client.post("/api/v1/containers", json=body, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if created.status_code != 201:
        raise RuntimeError(f"create failed: {created.status_code} {created.text}")
    (
        await client.delete(f"/api/v1/containers/{created.json()['id']}", headers=headers)
    ).raise_for_status()
    return elapsed


async def measure(
    stack: Stack, agents: AgentFactory, rounds: int
) -> tuple[list[float], list[float]]:
    """Both kinds in alternating order, round by round, so that the engine's drift (its
    create time moves over a run) falls on both alike."""
    platform: list[float] = []
    direct: list[float] = []
    docker = aiodocker.Docker()
    try:
        async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
            headers = await login(client, stack.admin_password)
            enrolment = await client.post("/api/v1/devices/enrolments", json={}, headers=headers)
            agent = agents.start(token=enrolment.json()["token"])
            await wait_online(client, headers, agent.key)
            for _ in range(3):  # warm up both paths
                await platform_once(client, headers, agent.key)
                await direct_once(docker)
            for n in range(rounds):
                if n % 2:
                    direct.append(await direct_once(docker))
                    platform.append(await platform_once(client, headers, agent.key))
                else:
                    platform.append(await platform_once(client, headers, agent.key))
                    direct.append(await direct_once(docker))
    finally:
        await docker.close()
    return platform, direct


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-create-"))
    stack = Stack(
        backend="postgresql", workdir=workdir, only=("registry", "orchestrator", "gateway")
    )
    agents = AgentFactory(stack, workdir)
    try:
        stack.start()
        through_platform, straight = asyncio.run(measure(stack, agents, args.rounds))
    finally:
        agents.stop_all()
        stack.stop()
    stack.cleanup()
    platform_ms, direct_ms = statistics.median(through_platform), statistics.median(straight)
    overhead = platform_ms - direct_ms
    allowed = max(15.0, 0.10 * direct_ms)
    common = {"rounds": args.rounds}
    for figure in (
        {"name": "platform_create_ms", "value": round(platform_ms, 2), "unit": "ms", **common},
        {"name": "direct_create_ms", "value": round(direct_ms, 2), "unit": "ms", **common},
        {
            "name": "create_overhead_ms",
            "value": round(overhead, 2),
            "unit": "ms",
            "target": round(allowed, 2),
            **common,
        },
        {
            "name": "create_overhead_ratio",
            "value": round(overhead / direct_ms, 4),
            "unit": "x",
            **common,
        },
    ):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()

"""Container create+start: through the whole platform (REST -> gateway -> orchestrator ->
router -> agent -> Docker, answered once the container runs) against the same create+start
done directly with aiodocker, in the same run.

The platform's create does what a shared node needs: the image resolved for the tenant, an
/app disk of its own (a preallocated ext4 file, mounted), a broker login (two commands to
the broker's dynamic security), the tenant's network (made with the tenant's first container
on the node) inside the node's firewall, the tenant's cgroup. The direct one is what a
careful operator would run by hand: the same hardened configuration on Docker's default
bridge with a plain named volume; and, to tell our own cost from Docker's, the same on a
user-defined bridge network of its own (Docker starts a container there about 40 ms slower
than on its default bridge: its embedded DNS and the network's rules in the container's
namespace). Two platform figures: a tenant's first container on the node (its network and
cgroup are made) and a later one.

Figures: platform_first_create_ms, platform_create_ms, direct_create_ms,
direct_network_create_ms, first_create_overhead_ms, create_overhead_ms (target: < 10% or
15 ms, whichever is larger), create_overhead_vs_network_ms, create_overhead_ratio (p50 over
--rounds creates of each kind).
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
from edgecloud_agent.runtime.hardening import ContainerPolicy, Placement, create_body  # noqa: E402
from edgecloud_contracts.containers import ContainerSpec  # noqa: E402
from tests.support.agents import AgentFactory  # noqa: E402
from tests.support.brokers import NodeBroker  # noqa: E402
from tests.support.stack import Stack  # noqa: E402
from tests.support.users import Account, register  # noqa: E402

BENCH_NETWORK = "bench-direct-net"


def hardened(name: str, image_id: str, network: str = "bridge") -> dict[str, object]:
    """The agent's own hardening, on ``network`` with a plain named volume."""
    spec = ContainerSpec(
        container_id=name,
        docker_name=name,
        image=IMAGE,
        command=["sleep", "3600"],
        tenant_id="bench",
        owner="bench",
    )
    placed = Placement(image_id=image_id, network=network, volume=f"{name}-app")
    return create_body(spec, ContainerPolicy(), placed)


async def direct_once(docker: aiodocker.Docker, image_id: str, network: str = "bridge") -> float:
    name = f"bench-direct-{secrets.token_hex(4)}"
    started = time.perf_counter()
    container = await docker.containers.create(hardened(name, image_id, network), name=name)
    await container.start()
    elapsed = (time.perf_counter() - started) * 1000
    volumes = [m["Name"] for m in (await container.show())["Mounts"]]
    await container.delete(force=True)
    for volume in volumes:  # the application volume outlives its container
        await (await docker.volumes.get(volume)).delete()
    return elapsed


async def platform_once(client: httpx.AsyncClient, user: Account, key: str) -> tuple[float, str]:
    body = {
        "device": key,
        "name": f"bench-{secrets.token_hex(4)}",
        "image": IMAGE,
        "command": ["sleep", "3600"],
        "limits": {"cpus": 0.1, "memory": 32 << 20, "disk": 16 << 20},
    }
    started = time.perf_counter()
    created = await client.post("/api/v1/containers", json=body, headers=user.headers)
    elapsed = (time.perf_counter() - started) * 1000
    if created.status_code != 201:
        raise RuntimeError(f"create failed: {created.status_code} {created.text}")
    return elapsed, str(created.json()["id"])


async def remove(client: httpx.AsyncClient, user: Account, container_ids: list[str]) -> None:
    for container_id in container_ids:
        gone = await client.delete(f"/api/v1/containers/{container_id}", headers=user.headers)
        gone.raise_for_status()


async def measure(stack: Stack, agents: AgentFactory, rounds: int) -> dict[str, list[float]]:
    """Round by round, in alternating order so the engine's drift falls on all alike: a new
    tenant's first container on the node, a later one of the same tenant, and the direct
    ones."""
    found: dict[str, list[float]] = {"first": [], "later": [], "direct": [], "network": []}
    docker = aiodocker.Docker()
    await docker.networks.create({"Name": BENCH_NETWORK, "Driver": "bridge"})
    try:
        image_id = str((await docker.images.inspect(IMAGE))["Id"])
        async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
            headers = await login(client, stack.admin_password)
            enrolment = await client.post("/api/v1/devices/enrolments", json={}, headers=headers)
            agent = agents.start(token=enrolment.json()["token"])
            await wait_online(client, headers, agent.key)

            async def tenant() -> Account:
                user = await register(stack)
                granted = await client.post(
                    f"/api/v1/devices/{agent.key}/grants",
                    json={"tenant": user.tenant_id},
                    headers=headers,
                )
                granted.raise_for_status()
                return user

            warm = await tenant()
            for _ in range(3):  # warm up every path
                _, made = await platform_once(client, warm, agent.key)
                await remove(client, warm, [made])
                await direct_once(docker, image_id)
                await direct_once(docker, image_id, BENCH_NETWORK)
            for n in range(rounds):
                user = await tenant()
                # A tenant's "later" needs its "first": the direct ones go before or after.
                order = (
                    ["first", "later", "direct", "network"]
                    if n % 2
                    else ["direct", "network", "first", "later"]
                )
                made = []
                for kind in order:
                    if kind in ("direct", "network"):
                        network = BENCH_NETWORK if kind == "network" else "bridge"
                        found[kind].append(await direct_once(docker, image_id, network))
                        continue
                    elapsed, container_id = await platform_once(client, user, agent.key)
                    found[kind].append(elapsed)
                    made.append(container_id)
                await remove(client, user, made)
    finally:
        await (await docker.networks.get(BENCH_NETWORK)).delete()
        await docker.close()
    return found


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
    broker = NodeBroker(workdir / "broker").start()
    agents = AgentFactory(stack, workdir, broker)
    try:
        stack.start()
        found = asyncio.run(measure(stack, agents, args.rounds))
    finally:
        agents.stop_all()
        stack.stop()
        broker.stop()
    stack.cleanup()
    first_ms, later_ms = statistics.median(found["first"]), statistics.median(found["later"])
    direct_ms, network_ms = statistics.median(found["direct"]), statistics.median(found["network"])
    allowed = max(15.0, 0.10 * direct_ms)
    common = {"rounds": args.rounds}
    for figure in (
        {"name": "platform_first_create_ms", "value": round(first_ms, 2), "unit": "ms", **common},
        {"name": "platform_create_ms", "value": round(later_ms, 2), "unit": "ms", **common},
        {"name": "direct_create_ms", "value": round(direct_ms, 2), "unit": "ms", **common},
        {
            "name": "direct_network_create_ms",
            "value": round(network_ms, 2),
            "unit": "ms",
            **common,
        },
        {
            "name": "first_create_overhead_ms",
            "value": round(first_ms - direct_ms, 2),
            "unit": "ms",
            **common,
        },
        {
            "name": "create_overhead_ms",
            "value": round(later_ms - direct_ms, 2),
            "unit": "ms",
            "target": round(allowed, 2),
            **common,
        },
        {
            "name": "create_overhead_vs_network_ms",
            "value": round(later_ms - network_ms, 2),
            "unit": "ms",
            **common,
        },
        {
            "name": "create_overhead_ratio",
            "value": round((later_ms - direct_ms) / direct_ms, 4),
            "unit": "x",
            **common,
        },
    ):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()

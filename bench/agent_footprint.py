"""The agent's footprint on its node: resident memory and CPU, idle and with 20 running
tenant containers, each over a window of at least 60 s (heartbeats every 5 s, as deployed),
with the node's isolation in place: the node broker with an identity per container (and the
agent's data collector's), tenant networks and the firewall, /app disks.

Figures: agent_rss_mb (the peak over both windows), agent_cpu_percent_idle,
agent_cpu_percent_20 (percent of one core).
Usage: .venv/bin/python bench/agent_footprint.py [--window 60]
"""

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench.command_rtt import IMAGE, login, wait_online  # noqa: E402
from tests.support.agents import AgentFactory  # noqa: E402
from tests.support.brokers import NodeBroker  # noqa: E402
from tests.support.stack import Stack  # noqa: E402

CONTAINERS = 20


def observe(pid: int, window: float) -> tuple[float, float]:
    """(peak RSS in MB, CPU in percent of one core) of the process over ``window`` seconds."""
    process = psutil.Process(pid)
    before = process.cpu_times()
    started = time.monotonic()
    peak = 0
    while time.monotonic() - started < window:
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.5)
    after = process.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return peak / 2**20, 100 * used / (time.monotonic() - started)


async def enrol_and_fill(stack: Stack, agents: AgentFactory, *, fill: bool, state: dict) -> None:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        headers = await login(client, stack.admin_password)
        if not fill:
            enrolment = await client.post("/api/v1/devices/enrolments", json={}, headers=headers)
            agent = agents.start(token=enrolment.json()["token"], heartbeat_interval_s=5.0)
            await wait_online(client, headers, agent.key)
            state["agent"] = agent
            return
        for n in range(CONTAINERS):
            body = {
                "device": state["agent"].key,
                "name": f"load-{n}-{secrets.token_hex(3)}",
                "image": IMAGE,
                "command": ["sleep", "3600"],
            }
            created = await client.post("/api/v1/containers", json=body, headers=headers)
            if created.status_code != 201:
                raise RuntimeError(f"create failed: {created.status_code} {created.text}")
            state.setdefault("ids", []).append(created.json()["id"])


async def clean(stack: Stack, state: dict) -> None:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        headers = await login(client, stack.admin_password)
        for container_id in state.get("ids", []):
            await client.delete(f"/api/v1/containers/{container_id}", headers=headers)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window", type=float, default=60.0)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-footprint-"))
    stack = Stack(
        backend="postgresql", workdir=workdir, only=("registry", "orchestrator", "gateway")
    )
    broker = NodeBroker(workdir / "broker").start()
    agents = AgentFactory(stack, workdir, broker)
    state: dict = {}
    try:
        stack.start()
        asyncio.run(enrol_and_fill(stack, agents, fill=False, state=state))
        time.sleep(5)  # let start-up settle
        pid = state["agent"].process.pid
        idle_rss, idle_cpu = observe(pid, args.window)
        asyncio.run(enrol_and_fill(stack, agents, fill=True, state=state))
        busy_rss, busy_cpu = observe(pid, args.window)
        asyncio.run(clean(stack, state))
    finally:
        agents.stop_all()
        stack.stop()
        broker.stop()
    stack.cleanup()
    common = {"window_s": args.window, "containers": CONTAINERS, "broker_identities": True}
    for figure in (
        {
            "name": "agent_rss_mb",
            "value": round(max(idle_rss, busy_rss), 1),
            "unit": "MB",
            "target": 60,
            "idle_mb": round(idle_rss, 1),
            "with_containers_mb": round(busy_rss, 1),
            **common,
        },
        {
            "name": "agent_cpu_percent_idle",
            "value": round(idle_cpu, 3),
            "unit": "%",
            "target": 1,
            **common,
        },
        {"name": "agent_cpu_percent_20", "value": round(busy_cpu, 3), "unit": "%", **common},
    ):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()

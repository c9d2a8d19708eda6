"""The fusion link on the testbed: how fast a node whose WAN dies is served over the 6LoWPAN
mesh, what a command costs there, what the node's heartbeats cost the mesh, and how fast it
is back on the WAN; in the same run, a node without the fusion link as the baseline.

Builds three testbed nodes (infra/testbed): n1 falls back through n2 (border router, relaying
over its own WAN); n3 has its WAN only. The cloud side runs on PostgreSQL. Then:
  failover_s                 WAN cut (a silent DROP) -> first command acknowledged over LoWPAN
  lowpan_command_rtt_ms      command round trip (inspect, asking the node) over the mesh, p50
  lowpan_heartbeat_bytes_per_min  bytes on n1's lowpan0 per minute while idle on the mesh: every
                             packet (beats, router pings, TCP/IPv6 headers, acknowledgements,
                             neighbour discovery), an upper bound on what the beats cost
  back_to_wan_s              WAN restored -> the registry shows the node on its WAN again
  baseline_*                 n3, cut at the same moment: when it is shown offline, whether any
                             of the commands sent to it every 500 ms during the outage was
                             answered, and when it is shown on its WAN again
  mesh_dead_link_s           then n1 on the mesh again, idle, and its lowpan link to n2 cut:
                             the cut -> n1's uplink reporting the mesh link lost (its log),
                             with its next heartbeat minutes away (the relay's beacons, not a
                             heartbeat, must notice)
With --tls the router serves wss:// only and the gateway https://: n1's mesh uplink is the
router's URL reached via n2's relay, so TLS ends at the router and n2 carries ciphertext.
Usage (root): .venv/bin/python bench/failover.py [--idle-s 120] [--outage-s 150] [--tls]
"""

import argparse
import asyncio
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.testbed_runs import print_figures, run_on_testbed  # noqa: E402
from infra.testbed.testbed import Testbed  # noqa: E402
from tests.support.agents import AgentHandle  # noqa: E402
from tests.support.stack import Stack  # noqa: E402
from tests.support.testbed import TestbedFleet  # noqa: E402

IMAGE = "edgecloud/busybox:latest"
# As in production: the test harness's quicker settings (inventory every second, reconnects
# after 0.2 s at most 2 s apart) undone; beats every 5 s (60 s on the mesh, the default).
AGENT_ENV = {
    "AGENT_INVENTORY_INTERVAL_S": "60",
    "AGENT_RECONNECT_INITIAL_S": "0.5",
    "AGENT_RECONNECT_MAX_S": "30",
}


class Cloud:
    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def device(self, key: str) -> dict[str, Any]:
        answer = await self.client.get(f"/api/v1/devices/{key}", headers=self.headers)
        return answer.json() if answer.status_code == 200 else {}

    async def until(self, key: str, check: Any, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(await self.device(key)):
                return time.monotonic()
            await asyncio.sleep(0.05)
        raise TimeoutError(f"{key} never reached the state")

    async def inspect(self, path: str, timeout: float) -> bool:
        try:
            answer = await self.client.get(
                path, params={"live": "true"}, headers=self.headers, timeout=timeout
            )
        except httpx.HTTPError:
            return False
        return answer.status_code == 200 and answer.json().get("command") is None


def link_bytes(bed: Testbed, node: str, interface: str) -> int:
    total = 0
    for direction in ("rx_bytes", "tx_bytes"):
        path = f"/sys/class/net/{interface}/statistics/{direction}"
        total += int(bed.exec(node, ["cat", path]).stdout.strip())
    return total


async def first_success_after(cloud: Cloud, path: str, since: float, window_s: float) -> float:
    """Send a command every 100 ms from ``since``; when the first one came back (monotonic)."""
    done: list[float] = []

    async def probe() -> None:
        if await cloud.inspect(path, timeout=10):
            done.append(time.monotonic())

    probes = []
    while time.monotonic() < since + window_s and not done:
        probes.append(asyncio.create_task(probe()))
        await asyncio.sleep(0.1)
    await asyncio.gather(*probes)
    if not done:
        raise RuntimeError("no command was acknowledged over the mesh")
    return min(done)


async def answered_until(cloud: Cloud, path: str, over: asyncio.Event) -> int:
    """How many of the commands sent every 500 ms until ``over`` were answered."""
    answered = 0
    while not over.is_set():
        answered += await cloud.inspect(path, timeout=2)
        await asyncio.sleep(0.5)
    return answered


async def mesh_dead_link(cloud: Cloud, bed: Testbed, agent: AgentHandle) -> float:
    """n1 onto the mesh again, then its hop to n2 cut: seconds until its uplink says the
    mesh link is lost."""
    bed.cut("n1", "wan")
    await cloud.until(agent.key, lambda d: d.get("link") == "lowpan", timeout=60)
    await asyncio.sleep(5)  # idle on the mesh
    since = agent.process.log_path.stat().st_size
    cut_at = time.monotonic()
    bed.cut("n1", "n2")
    try:
        while time.monotonic() - cut_at < 120:
            seen = agent.process.log_path.read_bytes()[since:]
            if b"lost the lowpan link" in seen:
                return round(time.monotonic() - cut_at, 2)
            await asyncio.sleep(0.1)
        raise RuntimeError("the dead mesh link was not noticed within 120 s")
    finally:
        bed.restore("n1", "n2")
        bed.restore("n1", "wan")


async def measure(stack: Stack, fleet: TestbedFleet, idle_s: float, outage_s: float) -> dict:
    bed = fleet.bed
    async with httpx.AsyncClient(
        base_url=stack.url("gateway"), timeout=30, verify=stack.verify
    ) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": stack.admin_password}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        cloud = Cloud(client, headers)

        async def token() -> str:
            made = await client.post("/api/v1/devices/enrolments", json={}, headers=headers)
            return str(made.json()["token"])

        n2 = fleet.start_agent(
            "n2", token=await token(), fusion=True, env=AGENT_ENV, heartbeat_interval_s=5
        )
        n1 = fleet.start_agent(
            "n1", token=await token(), fusion=True, env=AGENT_ENV, heartbeat_interval_s=5
        )
        n3 = fleet.start_agent("n3", token=await token(), env=AGENT_ENV, heartbeat_interval_s=5)
        for agent in (n1, n2, n3):
            await cloud.until(agent.key, lambda d: d.get("link") == "wan", timeout=60)
        paths = {}
        for agent in (n1, n3):
            made = await client.post(
                "/api/v1/containers",
                json={
                    "device": agent.key,
                    "name": f"fo-{secrets.token_hex(3)}",
                    "image": IMAGE,
                    "command": ["sleep", "3600"],
                },
                headers=headers,
                timeout=60,
            )
            made.raise_for_status()
            paths[agent.key] = f"/api/v1/containers/{made.json()['id']}"
        for _ in range(20):  # warm up
            await cloud.inspect(paths[n1.key], timeout=10)

        # Cut both WANs at once: n1 has the mesh, n3 nothing.
        cut_at = time.monotonic()
        bed.cut("n1", "wan")
        bed.cut("n3", "wan")
        degraded = asyncio.create_task(cloud.until(n1.key, lambda d: d.get("link") == "lowpan"))
        baseline_offline = asyncio.create_task(
            cloud.until(n3.key, lambda d: d.get("status") == "offline", timeout=120)
        )
        outage_over = asyncio.Event()
        baseline_answers = asyncio.create_task(answered_until(cloud, paths[n3.key], outage_over))
        first_ack = await first_success_after(cloud, paths[n1.key], cut_at, window_s=30)
        degraded_at = await degraded

        rtts = []
        for _ in range(50):
            started = time.perf_counter()
            if await cloud.inspect(paths[n1.key], timeout=10):
                rtts.append((time.perf_counter() - started) * 1000)

        baseline_offline_at = await baseline_offline

        # Idle on the mesh: every byte n1's lowpan0 carries.
        await asyncio.sleep(5)
        before = link_bytes(bed, "n1", "lowpan0")
        await asyncio.sleep(idle_s)
        idle_bytes = link_bytes(bed, "n1", "lowpan0") - before
        await asyncio.sleep(max(0.0, outage_s - (time.monotonic() - cut_at)))

        outage_over.set()
        baseline_reached = await baseline_answers
        restored_at = time.monotonic()
        bed.restore("n1", "wan")
        bed.restore("n3", "wan")
        back_at, baseline_back_at = await asyncio.gather(
            cloud.until(n1.key, lambda d: d.get("link") == "wan", timeout=60),
            cloud.until(n3.key, lambda d: d.get("link") == "wan", timeout=60),
        )
        for path in paths.values():
            await client.delete(path, headers=headers)
        dead_link_s = await mesh_dead_link(cloud, bed, n1)

    return {
        "failover_s": round(first_ack - cut_at, 3),
        "degraded_shown_s": round(degraded_at - cut_at, 3),
        "lowpan_command_rtt_ms": round(statistics.median(rtts), 1),
        "lowpan_command_rtt_max_ms": round(max(rtts), 1),
        "lowpan_commands_ok": len(rtts),
        "lowpan_heartbeat_bytes_per_min": round(idle_bytes * 60 / idle_s),
        "back_to_wan_s": round(back_at - restored_at, 3),
        "baseline_offline_after_s": round(baseline_offline_at - cut_at, 3),
        "baseline_commands_answered_during_outage": baseline_reached,
        "baseline_back_to_wan_s": round(baseline_back_at - restored_at, 3),
        "mesh_dead_link_s": dead_link_s,
    }


TARGETS = {"failover_s": 3.0, "lowpan_heartbeat_bytes_per_min": 1000, "mesh_dead_link_s": 15.0}
"""Upper bounds."""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle-s", type=float, default=120.0)
    parser.add_argument("--outage-s", type=float, default=150.0)
    parser.add_argument("--tls", action="store_true", help="the cloud side on TLS only")
    args = parser.parse_args()
    figures = run_on_testbed(
        3,
        lambda stack, fleet: measure(stack, fleet, args.idle_s, args.outage_s),
        name="failover",
        tls=args.tls,
    )
    print_figures(figures, TARGETS)


if __name__ == "__main__":
    main()

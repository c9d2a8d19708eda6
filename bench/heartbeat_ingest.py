"""Heartbeat ingestion: how many heartbeats per second the registry commits, and how fast.

Starts the router and the registry on a fresh PostgreSQL database, then N simulated
agents from a few client processes. Every simulated agent is a real WAMP session that
logs in with its own Ed25519 key and sends heartbeats with the agent's own code (its
uplink, system probe and heartbeat reporter); only the Docker engine is left out (an
empty container list). Agents start at random phases, as a real fleet would.

Figures (one JSON object per line):
    heartbeats_per_s   heartbeats committed per second, counted from the database
                       over the measured window, beside the offered rate and the ratio
    latency_p50_ms     send -> committed row (the RPC returns after the commit)
    latency_p99_ms
    router_rss_mb      peak resident memory of the Crossbar controller and its worker
    registry_rss_mb    peak resident memory of the registry process

Usage: .venv/bin/python bench/heartbeat_ingest.py --agents 1000 --interval 0.5
"""

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from tests.support.processes import PYTHON, tree_rss, wait_until  # noqa: E402
from tests.support.stack import PG_ADMIN, Stack  # noqa: E402

READY = "ready"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.5, help="heartbeat interval, seconds")
    parser.add_argument("--duration", type=float, default=30.0, help="measured window, seconds")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds of load before measuring"
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes for the agents")
    parser.add_argument("--client", type=Path, help=argparse.SUPPRESS)  # internal: run one client
    return parser.parse_args()


# The client side: many agents in one process.


class TimedUplink:
    """The agent's uplink as the heartbeat reporter sees it, timing every call."""

    def __init__(self, uplink: Any, samples: list[tuple[float, float, bool]]) -> None:
        self._uplink = uplink
        self._samples = samples

    @property
    def connected(self) -> bool:
        return bool(self._uplink.connected)

    @property
    def link(self) -> str:
        return str(self._uplink.link)

    @property
    def sessions_joined(self) -> int:
        return int(self._uplink.sessions_joined)

    @property
    def next_contact_at(self) -> Any:
        return self._uplink.next_contact_at

    def beat_acknowledged(self, session_number: int) -> None:
        self._uplink.beat_acknowledged(session_number)

    def beat_unanswered(self) -> None:
        self._uplink.beat_unanswered()

    async def call(self, uri: str, *args: Any, timeout: float) -> Any:
        started = time.perf_counter()
        ok = False
        try:
            result = await self._uplink.call(uri, *args, timeout=timeout)
            ok = True
            return result
        finally:
            self._samples.append((time.time(), time.perf_counter() - started, ok))


class NoContainers:
    async def list_containers(self) -> list[Any]:
        return []


async def run_client(spec: dict[str, Any]) -> list[tuple[float, float, bool]]:
    from edgecloud_agent.settings import AgentSettings
    from edgecloud_agent.telemetry.heartbeat import HeartbeatReporter
    from edgecloud_agent.telemetry.system import SystemProbe
    from edgecloud_agent.uplink.wamp import Backoff, Login, Uplink

    interval = float(spec["interval"])
    samples: list[tuple[float, float, bool]] = []
    uplinks: list[Uplink] = []
    reporters: list[HeartbeatReporter] = []
    tasks: list[asyncio.Task[None]] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    for agent in spec["agents"]:
        settings = AgentSettings(hostname=agent["hostname"], mac=agent["mac"], location="bench")
        uplink = Uplink(
            url=spec["router_url"],
            realm="edgecloud",
            login=Login(agent["key"], bytes.fromhex(agent["private_key"]), None),
            backoff=Backoff(0.5, 5.0),
        )
        reporter = HeartbeatReporter(
            uplink=TimedUplink(uplink, samples),
            probe=SystemProbe(settings),
            runtime=NoContainers(),
            interval_s=interval,
            timeout_s=10,
        )
        uplinks.append(uplink)
        reporters.append(reporter)

    async def start(uplink: Uplink, reporter: HeartbeatReporter, delay: float) -> None:
        await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(uplink.run()))
        await uplink.wait_connected()
        await asyncio.sleep(random.uniform(0, interval))  # random phase
        tasks.append(asyncio.create_task(reporter.run()))

    ramp = float(spec["ramp"])
    await asyncio.gather(
        *(start(u, r, random.uniform(0, ramp)) for u, r in zip(uplinks, reporters, strict=True))
    )
    print(READY, flush=True)
    await stop.wait()
    for reporter in reporters:
        reporter.stop()
    await asyncio.gather(*(u.close() for u in uplinks), return_exceptions=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return samples


# The driver: the stack, the clients, the measurements.


def make_agents(count: int) -> list[dict[str, str]]:
    from nacl.signing import SigningKey

    from edgecloud_contracts.identity import device_key

    agents = []
    for n in range(count):
        mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
        hostname = f"sim-{n}"
        signing = SigningKey.generate()
        agents.append(
            {
                "hostname": hostname,
                "mac": mac,
                "key": device_key(hostname, mac),
                "private_key": bytes(signing).hex(),
                "public_key": signing.verify_key.encode().hex(),
            }
        )
    return agents


def psql(database: str, sql: str) -> str:
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    done = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def seed_credentials(database: str, agents: list[dict[str, str]], workdir: Path) -> None:
    """Register every simulated node's public key, as enrolment would have."""
    rows = workdir / "credentials.csv"
    rows.write_text(
        "".join(f"{a['key']},{a['public_key']},bench,2026-01-01T00:00:00Z\n" for a in agents)
    )
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    subprocess.run(
        [
            "psql",
            url,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            "\\copy device_credentials (device_key, public_key, enrolment_id, created_at) "
            f"FROM '{rows}' WITH (FORMAT csv)",
        ],
        check=True,
        capture_output=True,
    )


class PeakRss(threading.Thread):
    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.5):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], tree_rss(pid))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1]


def drive(args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-heartbeat-"))
    stack = Stack(backend="postgresql", workdir=workdir, only=("registry",))
    clients: list[subprocess.Popen[str]] = []
    try:
        stack.start()
        assert stack.pg_database is not None
        agents = make_agents(args.agents)
        seed_credentials(stack.pg_database, agents, workdir)

        per_client = [agents[i :: args.clients] for i in range(args.clients)]
        results = [workdir / f"client-{i}.json" for i in range(args.clients)]
        ramp = max(5.0, args.agents / 200)
        for i, group in enumerate(per_client):
            spec = workdir / f"client-{i}-spec.json"
            spec.write_text(
                json.dumps(
                    {
                        "router_url": stack.router_url,
                        "interval": args.interval,
                        "agents": group,
                        "results": str(results[i]),
                        "ramp": ramp,
                    }
                )
            )
            clients.append(
                subprocess.Popen(
                    [str(PYTHON), __file__, "--client", str(spec)],
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline().strip()
            if line != READY:
                raise RuntimeError(f"a client failed to start its agents (said {line!r})")

        assert stack.router is not None
        rss = PeakRss({"router": stack.router.pid, "registry": stack.services["registry"].pid})
        rss.start()
        time.sleep(args.warmup)
        count = "SELECT coalesce(sum(heartbeats), 0) FROM devices"
        started_at, before = time.time(), int(psql(stack.pg_database, count))
        time.sleep(args.duration)
        ended_at, after = time.time(), int(psql(stack.pg_database, count))
        online = int(
            psql(stack.pg_database, "SELECT count(*) FROM devices WHERE status = 'online'")
        )
        rss.stop()

        for client in clients:
            client.send_signal(signal.SIGTERM)
        for client in clients:
            client.wait(60)
        wait_until(lambda: all(r.exists() for r in results), timeout=30, what="client results")
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        stack.stop()

    samples = [s for r in results for s in json.loads(r.read_text())]
    window = [s for s in samples if started_at <= s[0] <= ended_at]
    latencies = [s[1] * 1000 for s in window if s[2]]
    failed = sum(1 for s in window if not s[2])
    elapsed = ended_at - started_at
    rate = (after - before) / elapsed
    offered = args.agents / args.interval
    # What the agents actually managed to send (their pacing slips on a busy machine).
    sent = len(window) / elapsed
    common = {"agents": args.agents, "interval_s": args.interval, "duration_s": args.duration}
    stack.cleanup()
    return [
        {
            "name": "heartbeats_per_s",
            "value": round(rate, 1),
            "unit": "1/s",
            "offered": offered,
            "ratio": round(rate / offered, 4),
            "target": offered,
            "sent_per_s": round(sent, 1),
            "ingested_of_sent": round(rate / sent, 4) if sent else None,
            "failed_calls": failed,
            "devices_online": online,
            **common,
        },
        {
            "name": "latency_p50_ms",
            "value": round(percentile(latencies, 0.50), 2),
            "unit": "ms",
            **common,
        },
        {
            "name": "latency_p99_ms",
            "value": round(percentile(latencies, 0.99), 2),
            "unit": "ms",
            "target": 1000,
            **common,
        },
        {
            "name": "router_rss_mb",
            "value": round(rss.peak["router"] / 2**20, 1),
            "unit": "MB",
            **common,
        },
        {
            "name": "registry_rss_mb",
            "value": round(rss.peak["registry"] / 2**20, 1),
            "unit": "MB",
            **common,
        },
    ]


def main() -> None:
    args = parse_args()
    if args.client:
        spec = json.loads(args.client.read_text())
        samples = asyncio.run(run_client(spec))
        Path(spec["results"]).write_text(json.dumps(samples))
        return
    for figure in drive(args):
        print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()

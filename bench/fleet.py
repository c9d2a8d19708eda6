"""The platform under a fleet: how many nodes it serves within its targets.

Starts the router and the five services on a fresh PostgreSQL database, then steps a
fleet of simulated agents (tests/support/fleet.py: the agent's own uplink, command
executor, journal, outbox and heartbeat code, only Docker in memory) through ``--sizes``.
Every node enrols with its own one-time token from the public API and its own Ed25519 key,
beats every 5 s with jitter, answers commands and reports its containers. Meanwhile
``--users`` simulated users run container lifecycles (create, stop, start, restart, remove)
through the public REST API on nodes granted to their tenants, with ``--think`` seconds
between requests. Each step runs ``--warmup`` then measures for ``--duration``.
The whole run is made once with one replica of each service and once with two replicas of
the registry and the orchestrator (``--replicas 1,2``).

Figures (one JSON object per line; every figure carries ``agents`` and ``replicas``):
    command_p99_ms      p99 of REST request sent -> the API reports the command succeeded:
                        the 201/200/204 answer itself, or for a 202 the first
                        GET /api/v1/commands/{id} showing ``succeeded`` (polled every 20 ms);
                        over every command started in the window, by every user
    heartbeat_backlog   the registry's heartbeat write queue (edgecloud_queue_depth
                        {queue="heartbeat_writes"}, summed over replicas, read each second):
                        its mean over the last third of the window, with the first third's,
                        whether it grows, and beats offered / sent / written per second
    max_service_rss_mb  the largest peak RSS of any one service process (psutil)
    largest_fleet_meeting_targets
                        per configuration: the largest size with command p99 < 50 ms, no
                        failed command, no growing backlog, every beat offered written
                        (>= 90%) and every service process < 300 MB
    fleet_rejoin_s      (--router-kill) router killed with SIGKILL and started again: time
                        from its restart until every node has rejoined, and the fate of a
                        command issued while it was down

Usage: .venv/bin/python bench/fleet.py [--sizes 250,500,1000,2000] [--duration 60]
       [--replicas 1,2] [--router-kill --router-kill-size 500]
"""

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.support.fleet import FleetSettings, SimIdentity, new_identities  # noqa: E402
from tests.support.fleet_processes import FleetProcesses, enrol  # noqa: E402
from tests.support.processes import tree_rss  # noqa: E402
from tests.support.stack import PG_ADMIN, SERVICES, Stack  # noqa: E402
from tests.support.users import Account, register  # noqa: E402

IMAGE = "edgecloud/busybox:latest"
P99_TARGET_MS = 50.0
RSS_TARGET_MB = 300.0
WRITTEN_TARGET = 0.9
REPLICATED = ("registry", "orchestrator")
COMMAND_DEFINITION = (
    "REST request sent -> the API reports the command succeeded (its 201/200/204 answer, "
    "or for a 202 the first GET /api/v1/commands/{id} showing succeeded)"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="250,500,1000,2000", help="fleet sizes, in order")
    parser.add_argument("--duration", type=float, default=60.0, help="measured s per step")
    parser.add_argument("--warmup", type=float, default=10.0, help="s of load before measuring")
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--think", type=float, default=1.0, help="mean s between requests")
    parser.add_argument("--devices-per-user", type=int, default=10)
    parser.add_argument("--processes", type=int, default=2, help="processes for the fleet")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--join-rate", type=float, default=50.0, help="nodes starting per s")
    parser.add_argument(
        "--ping-timeout",
        type=float,
        default=None,
        help="the nodes' WebSocket ping interval and timeout (default: the agent's)",
    )
    parser.add_argument("--docker-delay", type=float, default=0.0, help="s per engine call")
    parser.add_argument(
        "--replicas", default="1,2", help="configurations: replicas of registry + orchestrator"
    )
    parser.add_argument("--router-kill", action="store_true")
    parser.add_argument("--router-kill-size", type=int, default=500)
    return parser.parse_args()


# Users of the public API.


@dataclass
class CommandSample:
    started: float
    """Wall clock when the request was sent."""
    action: str
    ms: float
    ok: bool
    detail: str = ""


class User:
    """A person running container lifecycles on the nodes granted to them."""

    def __init__(self, account: Account, base_url: str, think_s: float) -> None:
        self.account = account
        self.pool: list[str] = []
        self._think = think_s
        self._http = httpx.AsyncClient(base_url=base_url, headers=account.headers, timeout=60)
        self.samples: list[CommandSample] = []

    async def close(self) -> None:
        await self._http.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        """Lifecycles until ``stop``; the one under way is finished (its container removed)."""
        while not stop.is_set():
            if not self.pool:
                return
            await self._pause()
            body = await self._command(
                "create",
                "POST",
                "/api/v1/containers",
                json={
                    "device": random.choice(self.pool),
                    "name": f"f{random.randbytes(4).hex()}",
                    "image": IMAGE,
                    "command": ["sleep", "3600"],
                },
            )
            if body is None:
                continue
            path = f"/api/v1/containers/{body['id']}"
            for action in ("stop", "start", "restart"):
                await self._pause()
                await self._command(action, "POST", f"{path}/{action}")
            await self._pause()
            await self._command("remove", "DELETE", path)

    async def _pause(self) -> None:
        await asyncio.sleep(random.uniform(0.5, 1.5) * self._think)

    async def _command(self, action: str, method: str, path: str, **options: Any) -> Any:
        """Send one command and follow it to the end; its body when it succeeded."""
        started, clock = time.time(), time.perf_counter()
        try:
            answer = await self._http.request(method, path, **options)
            body = answer.json() if answer.content else {}
            if answer.status_code == 202:
                ok, detail = await self._follow(str(body["command"]))
            else:
                ok = answer.status_code in (200, 201, 204)
                detail = "" if ok else f"{answer.status_code} {body.get('code', '')}"
        except (httpx.HTTPError, ValueError, KeyError) as err:
            ok, detail, body = False, f"{type(err).__name__}: {err}"[:200], None
        ms = (time.perf_counter() - clock) * 1000
        self.samples.append(CommandSample(started, action, ms, ok, detail))
        return body if ok else None

    async def _follow(self, command: str) -> tuple[bool, str]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = await self._http.get(f"/api/v1/commands/{command}")
            state = seen.json().get("state")
            if state == "succeeded":
                return True, "202"
            if state in ("failed", "expired"):
                return False, f"202 then {state}"
            await asyncio.sleep(0.02)
        return False, "202, still pending after 60 s"


# What the cloud's processes show.


def service_processes(stack: Stack) -> dict[str, int]:
    found = {}
    for service, process in stack.services.items():
        found[service] = process.pid
        for number, replica in enumerate(stack.more_replicas.get(service, []), start=2):
            found[f"{service}-{number}"] = replica.pid
    return found


async def heartbeat_queue(client: httpx.AsyncClient, urls: list[str]) -> float | None:
    """The registry replicas' heartbeat write queues, added up; None if not exposed."""
    total, seen = 0.0, False
    for url in urls:
        try:
            text = (await client.get(f"{url}/metrics")).text
        except httpx.HTTPError:
            continue
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("queue") == "heartbeat_writes":
                    total += sample.value
                    seen = True
    return total if seen else None


async def heartbeats_written(database: str) -> int:
    """Heartbeats the registry has written, from its own counters (a read)."""
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{database}"
    process = await asyncio.create_subprocess_exec(
        "psql",
        url,
        "-qAtc",
        "SELECT coalesce(sum(heartbeats), 0) FROM devices",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await process.communicate()
    return int(out.strip() or 0)


@dataclass
class Watch:
    """Sampled every second while a step runs."""

    queue: list[tuple[float, float]] = field(default_factory=list)
    written: list[tuple[float, int]] = field(default_factory=list)
    peak_rss: dict[str, int] = field(default_factory=dict)
    router_rss: int = 0


async def watch(stack: Stack, into: Watch, stop: asyncio.Event) -> None:
    assert stack.pg_database is not None
    assert stack.router is not None
    pids = service_processes(stack)
    n = 0
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            now = time.time()
            depth = await heartbeat_queue(client, stack.urls("registry"))
            if depth is not None:
                into.queue.append((now, depth))
            if n % 5 == 0:
                into.written.append((time.time(), await heartbeats_written(stack.pg_database)))
            for name, pid in pids.items():
                into.peak_rss[name] = max(into.peak_rss.get(name, 0), tree_rss(pid))
            into.router_rss = max(into.router_rss, tree_rss(stack.router.pid))
            n += 1
            await _sleep_unless(stop, 1.0)
        into.written.append((time.time(), await heartbeats_written(stack.pg_database)))


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


# One step of one configuration.


def percentile(values: list[float], q: float) -> float | None:
    if len(values) < 2:
        return round(values[0], 2) if values else None
    return round(statistics.quantiles(values, n=1000, method="inclusive")[int(q * 1000) - 1], 2)


def rate(points: list[tuple[float, int]], start: float, end: float) -> float | None:
    """Growth per second of a sampled counter between the samples nearest two moments."""
    inside = [p for p in points if start - 3 <= p[0] <= end + 6]
    if len(inside) < 2:
        return None
    (t0, v0), (t1, v1) = inside[0], inside[-1]
    return (v1 - v0) / (t1 - t0) if t1 > t0 else None


def mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


@dataclass
class Config:
    stack: Stack
    replicas: int
    api: httpx.AsyncClient
    users: list[User]
    identities: list[SimIdentity]
    enrolled: set[str] = field(default_factory=set)
    granted: set[tuple[int, str]] = field(default_factory=set)


def fleet_settings(args: argparse.Namespace, stack: Stack, size: int) -> FleetSettings:
    ping: dict[str, float] = {}
    if args.ping_timeout is not None:
        ping = {"ping_interval_s": args.ping_timeout, "ping_timeout_s": args.ping_timeout}
    return FleetSettings(
        router_url=stack.router_url,
        heartbeat_interval_s=args.heartbeat_interval,
        ramp_s=max(2.0, size / args.join_rate),
        docker_delay_s=args.docker_delay,
        **ping,
    )


async def fleet_of(config: Config, args: argparse.Namespace, size: int) -> FleetProcesses:
    members = await enrol(config.api, config.identities[:size], config.enrolled)
    settings = fleet_settings(args, config.stack, size)
    return FleetProcesses(
        settings,
        members,
        processes=args.processes,
        workdir=config.stack.workdir / f"fleet-{size}-{time.monotonic_ns()}",
    )


async def grant_pools(config: Config, size: int, per_user: int) -> None:
    """Each user gets ``per_user`` of the nodes, spread over the fleet."""
    nodes = config.identities[:size]
    gate = asyncio.Semaphore(16)

    async def grant(index: int, key: str) -> None:
        async with gate:
            answer = await config.api.post(
                f"/api/v1/devices/{key}/grants",
                json={"tenant": config.users[index].account.tenant_id},
            )
        if answer.status_code != 201:
            raise RuntimeError(f"grant of {key} refused: {answer.status_code} {answer.text}")
        config.granted.add((index, key))

    wanted = []
    for index, user in enumerate(config.users):
        user.pool = [node.key for node in nodes[index :: len(config.users)][:per_user]]
        wanted += [(index, key) for key in user.pool if (index, key) not in config.granted]
    await asyncio.gather(*(grant(index, key) for index, key in wanted))


async def run_step(config: Config, args: argparse.Namespace, size: int) -> dict[str, Any]:
    stack = config.stack
    fleet = await fleet_of(config, args, size)
    stop_users, stop_watch = asyncio.Event(), asyncio.Event()
    seen = Watch()
    async with fleet:
        ramp = fleet.settings.ramp_s
        await fleet.wait_connected(timeout=ramp + 60 + size / 20)
        config.enrolled.update(m.identity.key for m in fleet.members)
        await grant_pools(config, size, args.devices_per_user)
        watcher = asyncio.create_task(watch(stack, seen, stop_watch), name="watch")
        users = [asyncio.create_task(u.run(stop_users), name="user") for u in config.users]
        joins_before = fleet.totals()["joins"]
        await asyncio.sleep(args.warmup)
        start = time.time()
        await asyncio.sleep(args.duration)
        end = time.time()
        stop_users.set()
        await asyncio.wait(users, timeout=30)
        stop_watch.set()
        await watcher
        totals = fleet.totals()
        sent = fleet.counter_at("beats_sent", end) - fleet.counter_at("beats_sent", start)
        beat_ms = [s.ms for s in fleet.beat_ms if start <= s.at <= end]
        lag_ms = [s.ms for s in fleet.beat_lag_ms if start <= s.at <= end]
    commands = [s for u in config.users for s in u.samples if start <= s.started <= end]
    for user in config.users:
        user.samples.clear()
    return summarise(
        config,
        args,
        size,
        commands=commands,
        seen=seen,
        window=(start, end),
        beats={
            "sent_per_s": sent / (end - start),
            "ack_ms": beat_ms,
            "lag_ms": lag_ms,
            "failed": totals["beats_failed"],
            "rejoins": totals["joins"] - joins_before,
            "loop_lag_ms": totals["loop_lag_ms"],
        },
    )


def summarise(
    config: Config,
    args: argparse.Namespace,
    size: int,
    *,
    commands: list[CommandSample],
    seen: Watch,
    window: tuple[float, float],
    beats: dict[str, Any],
) -> dict[str, Any]:
    common = {"agents": size, "replicas": config.replicas, "duration_s": args.duration}
    start, end = window
    ok_ms = [s.ms for s in commands if s.ok]
    failed = [f"{s.action}: {s.detail}" for s in commands if not s.ok]
    p99 = percentile(ok_ms, 0.99)
    command = {
        "name": "command_p99_ms",
        "value": p99,
        "unit": "ms",
        "target": P99_TARGET_MS,
        "definition": COMMAND_DEFINITION,
        "p50_ms": percentile(ok_ms, 0.50),
        "commands": len(commands),
        "failed": len(failed),
        "failures": failed[:5],
        "answered_202": sum(1 for s in commands if s.detail.startswith("202")),
        "by_action_p99_ms": {
            action: percentile([s.ms for s in commands if s.ok and s.action == action], 0.99)
            for action in ("create", "stop", "start", "restart", "remove")
        },
        "users": len(config.users),
        "think_s": args.think,
        **common,
    }

    queue = [(t, depth) for t, depth in seen.queue if start <= t <= end]
    third = (end - start) / 3
    first = mean([d for t, d in queue if t < start + third])
    last = mean([d for t, d in queue if t >= end - third])
    growing = bool(queue) and last > first + max(10.0, first)
    offered = size / args.heartbeat_interval
    written = rate(seen.written, start, end)
    written_share = written / offered if written is not None else 0.0
    backlog = {
        "name": "heartbeat_backlog",
        "value": round(last, 1) if queue else None,
        "unit": "heartbeats",
        "signal": "registry heartbeat write queue depth, mean over the window's last third",
        "first_third": round(first, 1),
        "max": max((d for _, d in queue), default=None),
        "growing": growing,
        "offered_per_s": round(offered, 1),
        "sent_per_s": round(beats["sent_per_s"], 1),
        "written_per_s": round(written, 1) if written is not None else None,
        "written_of_offered": round(written_share, 3),
        "beat_ack_p50_ms": percentile(beats["ack_ms"], 0.50),
        "beat_ack_p99_ms": percentile(beats["ack_ms"], 0.99),
        "beats_failed": beats["failed"],
        "node_rejoins": beats["rejoins"],
        "simulator_beat_lag_p99_ms": percentile(beats["lag_ms"], 0.99),
        "simulator_loop_lag_ms": beats["loop_lag_ms"],
        **common,
    }

    rss_mb = {name: round(peak / 2**20, 1) for name, peak in seen.peak_rss.items()}
    largest = max(rss_mb.values(), default=0.0)
    rss = {
        "name": "max_service_rss_mb",
        "value": largest,
        "unit": "MB",
        "target": RSS_TARGET_MB,
        "per_process": rss_mb,
        "router_rss_mb": round(seen.router_rss / 2**20, 1),
        **common,
    }
    reasons = []
    if p99 is None or p99 >= P99_TARGET_MS:
        reasons.append(f"command p99 {p99} ms")
    if failed:
        reasons.append(f"{len(failed)} commands failed")
    if growing or not queue:
        reasons.append("heartbeat backlog grows" if queue else "no backlog readings")
    if written_share < WRITTEN_TARGET:
        reasons.append(f"{written_share:.0%} of the offered beats written")
    if largest >= RSS_TARGET_MB:
        reasons.append(f"a service at {largest} MB")
    return {"figures": [command, backlog, rss], "meets": not reasons, "misses": reasons}


# Router kill.


async def router_kill(config: Config, args: argparse.Namespace) -> dict[str, Any]:
    """Kill the router under a connected fleet, issue a command while it is down, start
    it again: how long until every node is back, and whether the command arrived."""
    stack = config.stack
    size = args.router_kill_size
    if len(config.identities) < size:
        config.identities += new_identities(size - len(config.identities))
    fleet = await fleet_of(config, args, size)
    loop = asyncio.get_running_loop()
    async with fleet:
        await fleet.wait_connected(timeout=fleet.settings.ramp_s + 60 + size / 20)
        config.enrolled.update(m.identity.key for m in fleet.members)
        await grant_pools(config, size, args.devices_per_user)
        user = config.users[0]
        http = httpx.AsyncClient(
            base_url=stack.url("gateway"), headers=user.account.headers, timeout=60
        )
        async with http:
            created = await http.post(
                "/api/v1/containers",
                json={"device": user.pool[0], "name": "victim", "image": IMAGE},
            )
            created.raise_for_status()
            path = f"/api/v1/containers/{created.json()['id']}"
            sessions = fleet.totals()["min_sessions"]
            assert stack.router is not None
            os.killpg(stack.router.pid, signal.SIGKILL)
            await loop.run_in_executor(None, stack.router.wait, 10)
            stop = await http.post(f"{path}/stop")
            await loop.run_in_executor(None, stack.restart_router)
            restarted = time.monotonic()
            try:
                await fleet.wait_rejoined(sessions + 1, timeout=300)
                rejoin_s: float | None = round(time.monotonic() - restarted, 2)
            except TimeoutError:
                rejoin_s = None
            command_state = "not accepted"
            if stop.status_code == 202:
                command = stop.json()["command"]
                for _ in range(600):
                    command_state = (await http.get(f"/api/v1/commands/{command}")).json()["state"]
                    if command_state in ("succeeded", "failed", "expired"):
                        break
                    await asyncio.sleep(0.1)
            await http.delete(path)
    return {
        "name": "fleet_rejoin_s",
        "value": rejoin_s,
        "unit": "s",
        "target": 60,
        "agents": size,
        "replicas": config.replicas,
        "command_while_down": {"answer": stop.status_code, "final_state": command_state},
    }


# The driver.


async def configuration(args: argparse.Namespace, replicas: int, sizes: list[int]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-fleet-{replicas}-"))
    options: dict[str, Any] = {}
    if replicas > 1:
        if "replicas" not in inspect.signature(Stack).parameters:
            print(json.dumps({"name": "skipped", "replicas": replicas, "why": "no replicas"}))
            return
        options["replicas"] = dict.fromkeys(REPLICATED, replicas)
    stack = Stack(backend="postgresql", workdir=workdir, only=tuple(SERVICES), **options)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, stack.start)
        async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as api:
            login = await api.post(
                "/api/v1/auth/login",
                json={"username": "admin", "password": stack.admin_password},
            )
            login.raise_for_status()
            api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            accounts = await gather_limited(
                [lambda: register(stack) for _ in range(args.users)], limit=4
            )
            users = [User(account, stack.url("gateway"), args.think) for account in accounts]
            config = Config(stack, replicas, api, users, new_identities(max(sizes)))
            largest, steps = 0, []
            try:
                for size in sizes:
                    try:
                        step = await run_step(config, args, size)
                    except (TimeoutError, RuntimeError) as err:
                        # The fleet could not even join: larger ones will not either.
                        steps.append({"agents": size, "meets": False, "misses": [str(err)[:600]]})
                        break
                    for figure in step["figures"]:
                        print(json.dumps(figure), flush=True)
                    steps.append({"agents": size, "meets": step["meets"], "misses": step["misses"]})
                    if step["meets"]:
                        largest = max(largest, size)
                print(
                    json.dumps(
                        {
                            "name": "largest_fleet_meeting_targets",
                            "value": largest,
                            "unit": "agents",
                            "replicas": config.replicas,
                            "replicated": list(REPLICATED) if replicas > 1 else [],
                            "targets": {
                                "command_p99_ms": P99_TARGET_MS,
                                "failed_commands": 0,
                                "heartbeat_backlog": "not growing",
                                "written_of_offered": WRITTEN_TARGET,
                                "service_rss_mb": RSS_TARGET_MB,
                            },
                            "steps": steps,
                            "heartbeat_interval_s": args.heartbeat_interval,
                            "duration_s": args.duration,
                        }
                    ),
                    flush=True,
                )
                if args.router_kill:
                    print(json.dumps(await router_kill(config, args)), flush=True)
            finally:
                for user in users:
                    await user.close()
    finally:
        await loop.run_in_executor(None, stack.stop)
    stack.cleanup()


async def gather_limited(makers: list[Callable[[], Awaitable[Account]]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(make: Callable[[], Awaitable[Account]]) -> Account:
        async with gate:
            return await make()

    return list(await asyncio.gather(*(one(make) for make in makers)))


async def main() -> None:
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    for replicas in (int(r) for r in args.replicas.split(",") if r):
        await configuration(args, replicas, sizes)


if __name__ == "__main__":
    asyncio.run(main())

"""The fusion link across the testbed: n1 reaches the cloud over its WAN, or over the shaped
6LoWPAN hop through n2, which relays it over n2's own WAN."""

import asyncio
import json
import re
import subprocess
import tempfile
import time
from collections import Counter

import httpx
import pytest

from tests.conftest import eventually
from tests.support.agents import AgentHandle
from tests.support.shells import terminal
from tests.support.stack import Stack
from tests.support.testbed import TestbedFleet
from tests.support.users import Account, register

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
# A container that stops at once on SIGTERM, so a stream of stops and starts goes quickly.
QUICK_STOP = ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
# The beats' liveness window (3 beats) must outlast a failover, as 3 x 5 s does.
BEAT_S = 2.0
FUSION_ENV = {"AGENT_LOWPAN_HEARTBEAT_INTERVAL_S": "5", "AGENT_STOP_TIMEOUT_S": "2"}


class StatusWatch:
    """Every (status, link) the API shows for a device, polled every 100 ms."""

    def __init__(self, api: httpx.AsyncClient, key: str) -> None:
        self.seen: list[tuple[float, str, str | None]] = []
        self._task = asyncio.create_task(self._poll(api, key))

    async def _poll(self, api: httpx.AsyncClient, key: str) -> None:
        while True:
            answer = await api.get(f"/api/v1/devices/{key}")
            if answer.status_code == 200:
                device = answer.json()
                self.seen.append((time.monotonic(), device["status"], device["link"]))
            await asyncio.sleep(0.1)

    async def until(self, status: str, link: str | None, *, after: float, timeout: float) -> float:
        async def reached() -> float | None:
            return next(
                (t for t, s, lk in self.seen if t > after and (s, lk) == (status, link)), None
            )

        return float(await eventually(reached, timeout=timeout, interval=0.1))

    def statuses(self, since: float) -> set[str]:
        return {status for t, status, _ in self.seen if t >= since}

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


async def fusion_pair(
    testbed: TestbedFleet, stack: Stack, api: httpx.AsyncClient, enrol
) -> tuple[AgentHandle, AgentHandle, Account]:
    """n2 (border router) and n1 (falls back through n2), online over their WANs; n1 granted
    to a new tenant."""
    n2 = testbed.start_agent(
        "n2", token=await enrol(), fusion=True, env=FUSION_ENV, heartbeat_interval_s=BEAT_S
    )
    n1 = testbed.start_agent(
        "n1", token=await enrol(), fusion=True, env=FUSION_ENV, heartbeat_interval_s=BEAT_S
    )
    for agent in (n1, n2):

        async def on_wan(agent: AgentHandle = agent) -> bool:
            answer = await api.get(f"/api/v1/devices/{agent.key}")
            return answer.status_code == 200 and answer.json()["link"] == "wan"

        await eventually(on_wan, timeout=40, interval=0.2)
    user = await register(stack)
    granted = await api.post(f"/api/v1/devices/{n1.key}/grants", json={"tenant": user.tenant_id})
    assert granted.status_code == 201, granted.text
    return n1, n2, user


async def make_container(client: httpx.AsyncClient, user: Account, key: str, name: str) -> dict:
    made = await client.post(
        "/api/v1/containers",
        json={"device": key, "name": name, "image": IMAGE, "command": QUICK_STOP},
        headers=user.headers,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    return made.json()


async def finished(client: httpx.AsyncClient, user: Account, command_id: str) -> dict:
    async def done() -> dict | None:
        found = (await client.get(f"/api/v1/commands/{command_id}", headers=user.headers)).json()
        return found if found["state"] in ("succeeded", "failed", "expired") else None

    return await eventually(done, timeout=120, interval=0.25)


class EngineEvents:
    """A node engine's container starts and deaths, followed live (``docker events`` with
    ``--since`` only remembers the engine's last 256 events)."""

    def __init__(self, testbed: TestbedFleet, node: str, names: set[str]) -> None:
        self._names = names
        # Into a file: an unread pipe would fill, and the engine drops a slow reader's events.
        self._file = tempfile.TemporaryFile()  # noqa: SIM115  (closed in counts())
        self._process = subprocess.Popen(
            [
                "docker",
                "-H",
                testbed.bed.node(node).engine.url,
                "events",
                "--filter",
                "type=container",
                "--format",
                "{{json .}}",
            ],
            stdout=self._file,
            stderr=subprocess.DEVNULL,
        )

    async def subscribed(self) -> "EngineEvents":
        await asyncio.sleep(0.5)  # following before anything happens
        return self

    async def counts(self) -> Counter:
        """(container name, action) -> how many times; stops following."""
        await asyncio.sleep(1.0)  # the last events on their way
        self._process.terminate()
        self._process.wait(timeout=10)
        with self._file:
            self._file.seek(0)
            lines = self._file.read().decode().splitlines()
        counts: Counter = Counter()
        for line in lines:
            event = json.loads(line)
            name = event.get("Actor", {}).get("Attributes", {}).get("name")
            if name in self._names and event.get("Action") in ("start", "die"):
                counts[(name, event["Action"])] += 1
        return counts


# Each container gets stop, start, stop, start, ... from before the cut until n1 is back on
# its WAN, then this many pairs more: the streams span the failover, the mesh and the return,
# however fast this machine runs them.
PAIRS_AFTER_RETURN = 3


async def test_a_wan_cut_during_a_stream_of_commands_loses_none_and_applies_each_once(
    testbed: TestbedFleet, stack: Stack, api, client, enrol
) -> None:
    n1, _, user = await fusion_pair(testbed, stack, api, enrol)
    containers = [await make_container(client, user, n1.key, f"c{i}") for i in range(4)]
    events = await EngineEvents(testbed, "n1", {c["name"] for c in containers}).subscribed()
    watch = StatusWatch(api, n1.key)
    returned = asyncio.Event()
    pairs: Counter = Counter()  # container name -> stops (and as many starts) that succeeded
    streams: asyncio.Future | None = None
    try:

        async def command(container: dict, action: str) -> None:
            answer = await client.post(
                f"/api/v1/containers/{container['id']}/{action}",
                headers=user.headers,
                timeout=60,
            )
            assert answer.status_code in (200, 202), answer.text
            if answer.status_code == 202:  # queued or still running: wait for its end
                outcome = await finished(client, user, answer.json()["command"])
                assert outcome["state"] == "succeeded", outcome

        async def stream(container: dict) -> None:
            after_return = 0
            while after_return < PAIRS_AFTER_RETURN:
                after_return += returned.is_set()
                await command(container, "stop")
                await command(container, "start")
                pairs[container["name"]] += 1

        streams = asyncio.gather(*(stream(c) for c in containers))
        await asyncio.sleep(3)
        cut_at = time.monotonic()
        testbed.bed.cut("n1", "wan")
        await watch.until("degraded", "lowpan", after=cut_at, timeout=30)
        on_mesh = sum(pairs.values())
        await asyncio.sleep(5)  # commands flow over the mesh for a while

        async def over_the_mesh() -> bool:
            # The commands caught on the dead WAN session end first (at the latest when the
            # orchestrator gives up on it and sends them again), then others go over the mesh.
            return sum(pairs.values()) > on_mesh

        await eventually(over_the_mesh, timeout=45, interval=0.1)
        restored_at = time.monotonic()
        testbed.bed.restore("n1", "wan")
        back_at = await watch.until("online", "wan", after=restored_at, timeout=30)
        returned.set()
        assert back_at - restored_at < 10
        await streams
        assert "offline" not in watch.statuses(cut_at)
    finally:
        if streams is not None:  # a stream waits for the return: not past a failed test
            streams.cancel()
            await asyncio.gather(streams, return_exceptions=True)
        await watch.stop()

    # Exactly once, on the node's own engine: as many stops and starts as succeeded (the
    # create came before the events were followed).
    counts = await events.counts()
    for name in {c["name"] for c in containers}:
        assert pairs[name] > PAIRS_AFTER_RETURN, (name, pairs)
        assert counts[(name, "die")] == pairs[name], (name, pairs[name], counts)
        assert counts[(name, "start")] == pairs[name], (name, pairs[name], counts)
    for container in containers:
        seen = (
            await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)
        ).json()
        assert seen["state"] == "running", seen


async def test_a_shell_over_the_mesh_works_for_short_commands_and_says_it_is_slow(
    testbed: TestbedFleet, stack: Stack, api, client, enrol
) -> None:
    n1, _, user = await fusion_pair(testbed, stack, api, enrol)
    container = await make_container(client, user, n1.key, "shell")
    watch = StatusWatch(api, n1.key)
    cut_at = time.monotonic()
    testbed.bed.cut("n1", "wan")
    try:
        await watch.until("degraded", "lowpan", after=cut_at, timeout=30)
        keys = "echo $((6*7))x\n"
        async with terminal(stack.url("gateway"), container["id"], user.headers) as shell:
            ready = await shell.ready(timeout=30)
            assert ready["link"] == "lowpan"
            assert ready["slow"] is True
            for key in keys:  # typed one by one, as a person types
                await shell.type(key)
                await asyncio.sleep(0.02)
            await shell.read_until("42x", timeout=30)
            await shell.type("exit\n")
            end = await shell.control("exit", timeout=30)
            assert end["exit_code"] == 0
    finally:
        await watch.stop()
        testbed.bed.restore("n1", "wan")

    async def closed() -> list[dict]:
        answer = await client.get(
            "/api/v1/audit", params={"action": "container.shell.close"}, headers=user.headers
        )
        return answer.json()["items"]

    detail = (await eventually(closed, timeout=15))[0]["detail"]
    # Keystrokes went in batches, and output in a few frames, not one message per key.
    assert detail["input_calls"] <= len(keys) // 2, detail
    assert detail["output_frames"] <= len(keys) // 2, detail


async def test_both_links_cut_the_node_is_offline_keeps_running_and_reports_later(
    testbed: TestbedFleet, stack: Stack, api, client, enrol
) -> None:
    n1, _, user = await fusion_pair(testbed, stack, api, enrol)
    steady = await make_container(client, user, n1.key, "steady")
    # Ends by itself 20 s into the outage: the cloud must learn it afterwards.
    made = await client.post(
        "/api/v1/containers",
        json={
            "device": n1.key,
            "name": "ends",
            "image": IMAGE,
            "command": ["sh", "-c", "sleep 25; echo 'EDGECLOUD_DATA {\"done\": 1}'; exit 3"],
            "restart_policy": "no",
        },
        headers=user.headers,
        timeout=60,
    )
    assert made.status_code == 201, made.text
    ends = made.json()

    cut_at = time.monotonic()
    testbed.bed.cut("n1", "wan")
    testbed.bed.cut("n1", "lowpan0")

    async def offline() -> bool:
        return (await api.get(f"/api/v1/devices/{n1.key}")).json()["status"] == "offline"

    await eventually(offline, timeout=30, interval=0.2)
    await asyncio.sleep(max(0.0, 60 - (time.monotonic() - cut_at)))
    # The node kept running its containers all along.
    running = testbed.bed.docker("n1", "ps", "--format", "{{.Names}}").stdout.split()
    assert steady["name"] in running
    assert ends["name"] not in running  # it ended during the outage

    testbed.bed.restore("n1", "wan")
    testbed.bed.restore("n1", "lowpan0")

    async def caught_up() -> dict | None:
        seen = (await client.get(f"/api/v1/containers/{ends['id']}", headers=user.headers)).json()
        return seen if seen["state"] == "exited" else None

    seen = await eventually(caught_up, timeout=40, interval=0.5)
    assert seen["exit_code"] == 3

    async def data_arrived() -> bool:
        data = (
            await client.get(f"/api/v1/containers/{ends['id']}/data", headers=user.headers)
        ).json()
        return data["series"].get("done") is not None

    await eventually(data_arrived, timeout=40, interval=0.5)
    steady_now = (
        await client.get(f"/api/v1/containers/{steady['id']}", headers=user.headers)
    ).json()
    assert steady_now["state"] == "running"


async def test_repeated_outages_cause_no_duplicates_no_migrations_and_no_storm(
    testbed: TestbedFleet, stack: Stack, api, client, enrol
) -> None:
    n1, _, user = await fusion_pair(testbed, stack, api, enrol)
    container = await make_container(client, user, n1.key, "flappy")
    events = await EngineEvents(testbed, "n1", {container["name"]}).subscribed()
    log_from = n1.process.log_path.stat().st_size
    commands = []
    # Outages of every link of n1, one command sent into each: each lasts the orchestrator's
    # wait for the node (command_timeout_s, 15 s) and then 5 to 15 s more, 20 to 30 s in all.
    # The 5 to 45 s for several minutes, shortened to three outages (stop, start,
    # stop) in about a minute and a half to keep the suite short.
    outages_s = (5, 15, 9)
    for number, outage_s in enumerate(outages_s):
        testbed.bed.cut("n1", "wan")
        testbed.bed.cut("n1", "lowpan0")
        action = "stop" if number % 2 == 0 else "start"
        answer = await client.post(
            f"/api/v1/containers/{container['id']}/{action}", headers=user.headers, timeout=60
        )
        assert answer.status_code == 202, answer.text  # the node is unreachable: queued
        commands.append(answer.json()["command"])
        await asyncio.sleep(outage_s)
        testbed.bed.restore("n1", "wan")
        testbed.bed.restore("n1", "lowpan0")
        await asyncio.sleep(4)
    for command_id in commands:
        assert (await finished(client, user, command_id))["state"] == "succeeded"

    counts = await events.counts()
    assert counts[(container["name"], "die")] == len(outages_s[::2])  # each stop once
    assert counts[(container["name"], "start")] == len(outages_s[1::2])  # each start once
    # None of this tenant's (other tests' nodes on this cloud side may have been lost).
    assert (await client.get("/api/v1/migrations", headers=user.headers)).json()["items"] == []
    # No reconnect storm: a handful of sessions per outage, at jittered times.
    log = n1.process.log_path.read_bytes()[log_from:].decode()
    joins = len(re.findall(r"joined .* over the (wan|lowpan) link", log))
    assert joins <= 2 + 3 * len(commands), joins
    # Retries back off (never a tight loop) with jitter (not all the same), within the cap.
    delays = [float(d) for d in re.findall(r"retrying in ([0-9.]+)s", log)]
    assert len(delays) <= 5 * len(commands) * 4, delays
    assert all(delay <= 2.0 for delay in delays), delays  # AGENT_RECONNECT_MAX_S in tests
    assert len(delays) < 3 or len(set(delays)) > 1, delays

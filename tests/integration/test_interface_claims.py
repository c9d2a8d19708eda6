"""Holding hardware interfaces, on a real agent and Docker: the kernel keeps a read-only
device read-only; a claim ends with its holder (removed, or never made on the node) and is
given to one of several asking at once; a stopped holder takes back only what is still
declared for it; a container holding hardware never moves; a placement goes where the
tenant's sensor topics are granted.

The devices are made by the test with mknod under /dev (see test_interfaces).
"""

import asyncio
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import online
from tests.integration.test_containers import IMAGE
from tests.integration.test_gateway_api import assert_problem
from tests.integration.test_interfaces import create, declare, listed, names_on_node, run
from tests.support.users import Account, scheduler_headers

pytestmark = pytest.mark.stack

# The race for one exclusive interface matters on PostgreSQL (SQLite has one writer at a
# time); the rest runs once, on SQLite, to keep the suite's time.

MakeDevice = Callable[..., str]
# A device Docker does not allow every container anyway (unlike null, zero, ...), so that
# the device cgroup's "r" is what stands between a container and a write.
LATENCY_DEV = Path("/sys/class/misc/cpu_dma_latency/dev")


@pytest.fixture
def make_device() -> Iterator[MakeDevice]:
    """Character devices of the test's own under /dev (a /dev/null clone unless told),
    removed afterwards; ``made=False`` only names one."""
    paths: list[str] = []

    def make(major: int = 1, minor: int = 3, *, made: bool = True) -> str:
        path = f"/dev/edgecloud-test-{secrets.token_hex(4)}"
        paths.append(path)
        if made:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            os.chmod(path, 0o666)
        return path

    yield make
    for path in paths:
        Path(path).unlink(missing_ok=True)


async def holders(client: httpx.AsyncClient, user: Account, key: str) -> dict[str, list]:
    return {i["name"]: i["holders"] for i in await listed(client, user, key)}


@pytest.fixture
def latency_number() -> tuple[int, int]:
    # PM QoS registers this misc device on every Linux kernel (kernel/power/qos.c).
    assert LATENCY_DEV.exists(), f"{LATENCY_DEV} is missing: no device to clone"
    major, minor = LATENCY_DEV.read_text().split(":")
    return int(major), int(minor)


@ONE_DATABASE
async def test_the_kernel_keeps_a_read_only_device_read_only(
    api, client, node, make_device, latency_number
) -> None:
    agent, user = node
    tenants = [user.tenant_id]
    await declare(api, agent.key, "bus-ro", kind="i2c", path=make_device(*latency_number),
                  container_path="/dev/i2c-7", read_only=True, tenants=tenants)  # fmt: skip
    await declare(api, agent.key, "bus-rw", kind="i2c", path=make_device(*latency_number),
                  container_path="/dev/i2c-8", tenants=tenants)  # fmt: skip
    # Two containers: the kernel allows a container a device by number, whatever the path.
    reader = await create(client, user, agent.key, "reader", interfaces=["bus-ro"])
    writer = await create(client, user, agent.key, "writer", interfaces=["bus-rw"])
    assert (reader.status_code, writer.status_code) == (201, 201), (reader.text, writer.text)

    script = "head -c 4 /dev/i2c-7 | wc -c; (echo 1000 > /dev/i2c-7) 2>&1 || echo refused"
    output = await run(client, user, reader.json(), script)
    assert output.split()[0] == "4"
    assert "Operation not permitted" in output
    assert "refused" in output
    written = await run(client, user, writer.json(), "echo 1000 > /dev/i2c-8 && echo written")
    assert written.split() == ["written"]


@ONE_DATABASE
async def test_a_claim_ends_when_its_holder_is_removed_or_never_made(
    api, client, node, make_device
) -> None:
    agent, user = node
    key, tenants = agent.key, [user.tenant_id]
    await declare(api, key, "gpio", kind="gpio", path=make_device(), tenants=tenants)
    missing = make_device(made=False)
    await declare(api, key, "ghost", kind="serial", path=missing, tenants=tenants)

    # The node refuses a device it does not have: nothing is made, nothing stays held.
    refused = await create(client, user, key, "ghost-1", interfaces=["ghost"])
    assert_problem(refused, 422, "device_refused")
    assert names_on_node(user) == []
    assert (await holders(client, user, key))["ghost"] == []
    os.mknod(missing, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    assert (await create(client, user, key, "ghost-2", interfaces=["ghost"])).status_code == 201

    first = (await create(client, user, key, "first", interfaces=["gpio"])).json()
    busy = await create(client, user, key, "second", interfaces=["gpio"])
    assert_problem(busy, 409, "interface_busy")
    removed = await client.delete(f"/api/v1/containers/{first['id']}", headers=user.headers)
    assert removed.status_code == 204, removed.text
    second = await create(client, user, key, "second", interfaces=["gpio"])
    assert second.status_code == 201, second.text
    held = (await holders(client, user, key))["gpio"]
    assert [h["container"] for h in held] == [second.json()["id"]]


@pytest.mark.parametrize("stack", ["postgresql"], indirect=True)
async def test_of_several_asking_at_once_one_gets_an_exclusive_interface(
    api, client, node, make_device
) -> None:
    agent, user = node
    await declare(api, agent.key, "uart", kind="serial", path=make_device(),
                  tenants=[user.tenant_id])  # fmt: skip

    answers = await asyncio.gather(
        *(create(client, user, agent.key, f"racer-{n}", interfaces=["uart"]) for n in range(6))
    )

    assert sorted(answer.status_code for answer in answers) == [201, *[409] * 5]
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409, "interface_busy")
    winner = next(answer.json() for answer in answers if answer.status_code == 201)
    assert names_on_node(user) == [winner["name"]]
    listed_ = (await client.get("/api/v1/containers", headers=user.headers)).json()["items"]
    assert [c["id"] for c in listed_] == [winner["id"]]


@ONE_DATABASE
async def test_a_stopped_holder_takes_back_only_what_is_still_declared_for_it(
    api, client, node, make_device
) -> None:
    agent, user = node
    key = agent.key
    port = {"kind": "serial", "path": make_device(), "tenants": [user.tenant_id]}
    await declare(api, key, "port", **port)
    container = (await create(client, user, key, "logger", interfaces=["port"])).json()
    path = f"/api/v1/containers/{container['id']}"
    assert (await client.post(f"{path}/stop", headers=user.headers)).status_code == 200

    assert (await api.delete(f"/api/v1/devices/{key}/interfaces/port")).status_code == 204
    assert_problem(
        await client.post(f"{path}/start", headers=user.headers), 422, "interface_not_declared"
    )
    # Declared again, but no longer writable: the container was made with it writable.
    await declare(api, key, "port", **port, read_only=True)
    assert_problem(
        await client.post(f"{path}/start", headers=user.headers), 422, "interface_not_declared"
    )
    await declare(api, key, "port", **port)
    started = await client.post(f"{path}/start", headers=user.headers)
    assert started.status_code == 200, started.text
    assert [h["container"] for h in (await holders(client, user, key))["port"]] == [container["id"]]


@ONE_DATABASE
async def test_a_container_holding_hardware_does_not_move(
    stack, api, client, node, make_device
) -> None:
    agent, user = node
    await declare(api, agent.key, "camera", kind="camera", path=make_device(),
                  shareable=True, tenants=[user.tenant_id])  # fmt: skip
    container = (await create(client, user, agent.key, "watcher", interfaces=["camera"])).json()

    moved = await client.post(
        f"/api/v1/containers/{container['id']}/migrate", json={}, headers=user.headers
    )
    assert_problem(moved, 409, "holds_hardware")

    # Nor does the orchestrator move its record, whoever asks.
    async with httpx.AsyncClient(base_url=stack.url("orchestrator"), timeout=10) as orchestrator:
        relocated = await orchestrator.post(
            f"/v1/containers/{container['id']}/relocation",
            json={"source": agent.key, "target": "some_other_node", "migration": "m-1"},
            headers=scheduler_headers(stack, user.tenant_id),
        )
    assert_problem(relocated, 409, "holds_hardware")
    answer = await client.get(f"/api/v1/containers/{container['id']}", headers=user.headers)
    assert answer.json()["device"] == agent.key


async def place(client: httpx.AsyncClient, user: Account, name: str, topic: str):
    body = {"placement": {"location": "test bench"}, "name": name, "image": IMAGE,
            "command": ["sleep", "600"], "subscriptions": [topic]}  # fmt: skip
    return await client.post("/api/v1/containers", json=body, headers=user.headers, timeout=60)


@ONE_DATABASE
async def test_a_placement_goes_where_the_sensor_topics_are_granted(
    api, client, node, agents, enrol
) -> None:
    first, user = node
    second = agents.start(token=await enrol())
    await eventually(lambda: online(api, second.key), timeout=20)
    granted = await api.post(
        f"/api/v1/devices/{second.key}/grants", json={"tenant": user.tenant_id}
    )
    assert granted.status_code == 201, granted.text
    base = f"edgetest/{secrets.token_hex(4)}"
    for agent in (first, second):
        await declare(api, agent.key, "here", kind="sensor", topic=f"{base}/{agent.key}/#",
                      tenants=[user.tenant_id])  # fmt: skip

    # Whichever of the two is the lighter, each one's topic decides.
    for n, agent in enumerate((first, second)):
        placed = await place(client, user, f"placed-{n}", f"{base}/{agent.key}/temp")
        assert placed.status_code == 201, placed.text
        assert placed.json()["device"] == agent.key
    assert_problem(
        await place(client, user, "nowhere", f"{base}/elsewhere"), 422, "topic_not_granted"
    )

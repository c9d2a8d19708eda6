"""Hardware interfaces and sensor streams, declared by operators, on a real agent and Docker.

The test machine has no serial ports or buses: the interfaces are character devices the
test makes with mknod under /dev (clones of /dev/null and /dev/zero), which Docker maps
like any other.
"""

import asyncio
import json
import os
import secrets
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import docker
from tests.integration.test_containers import IMAGE, inspect
from tests.integration.test_gateway_api import assert_problem
from tests.support.brokers import NodeBroker, client_with, sensor_login
from tests.support.users import Account, register

pytestmark = pytest.mark.stack

# The declarations are stored on both databases (the first test); what containers do with
# them runs once, to keep the suite's time.


@pytest.fixture
def pseudo_devices() -> Iterator[dict[str, str]]:
    """Two character devices of the test's own: ``null`` (1:3) and ``zero`` (1:5)."""
    made = {
        "null": f"/dev/edgecloud-test-{secrets.token_hex(4)}-null",
        "zero": f"/dev/edgecloud-test-{secrets.token_hex(4)}-zero",
    }
    for name, path in made.items():
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3 if name == "null" else 5))
        os.chmod(path, 0o666)
    yield made
    for path in made.values():
        Path(path).unlink(missing_ok=True)


async def declare(api: httpx.AsyncClient, key: str, name: str, **body) -> httpx.Response:
    return await api.put(f"/api/v1/devices/{key}/interfaces/{name}", json=body)


async def create(client: httpx.AsyncClient, user: Account, key: str, name: str, **body):
    body = {"device": key, "name": name, "image": IMAGE, "command": ["sleep", "600"], **body}
    return await client.post("/api/v1/containers", json=body, headers=user.headers, timeout=60)


async def listed(client: httpx.AsyncClient, user: Account, key: str) -> list[dict]:
    answer = await client.get(f"/api/v1/devices/{key}/interfaces", headers=user.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
async def stranger(stack, api: httpx.AsyncClient, node) -> AsyncIterator[Account]:
    """Another tenant, granted the same device; its containers are removed afterwards."""
    agent, _ = node
    other = await register(stack)
    granted = await api.post(
        f"/api/v1/devices/{agent.key}/grants", json={"tenant": other.tenant_id}
    )
    assert granted.status_code == 201, granted.text
    yield other
    for name in names_on_node(other):
        docker("rm", "-f", name)
    volumes = docker("volume", "ls", "-q", "--filter", f"label=edgecloud.tenant={other.tenant_id}")
    for volume in volumes.stdout.split():
        docker("volume", "rm", "-f", volume)


async def run(client: httpx.AsyncClient, user: Account, container: dict, script: str) -> str:
    answer = await client.post(
        f"/api/v1/containers/{container['id']}/exec",
        json={"cmd": ["sh", "-c", script]},
        headers=user.headers,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["output"])


def names_on_node(user: Account) -> list[str]:
    tenant = f"label=edgecloud.tenant={user.tenant_id}"
    return docker("ps", "-a", "--format", "{{.Names}}", "--filter", tenant).stdout.split()


async def test_operators_declare_and_tenants_see_only_their_own(
    stack, api, client, node, pseudo_devices, stranger
) -> None:
    agent, user = node
    key = agent.key
    body = {"kind": "serial", "path": pseudo_devices["null"], "tenants": [user.tenant_name]}
    assert (await declare(api, key, "serial0", **body)).status_code == 201
    replaced = await declare(api, key, "serial0", **{**body, "read_only": True})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["tenants"] == [user.tenant_id]  # a name given, the id kept

    seen = await listed(client, user, key)
    assert [(i["name"], i["read_only"], i["tenants"], i["holders"]) for i in seen] == [
        ("serial0", True, [user.tenant_id], [])
    ]
    assert await listed(client, stranger, key) == []
    refused = await client.put(
        f"/api/v1/devices/{key}/interfaces/mine", json=body, headers=user.headers
    )
    assert_problem(refused, 403, "operator_only")
    refused = await client.delete(f"/api/v1/devices/{key}/interfaces/serial0", headers=user.headers)
    assert_problem(refused, 403, "operator_only")

    outsider = await register(stack)
    camera = {"kind": "camera", "path": "/dev/video0"}
    for name, bad, status, code in [
        ("Bad Name", body, 422, "validation_failed"),
        ("x", {"kind": "sensor", "path": pseudo_devices["null"]}, 422, "validation_failed"),
        ("x", {"kind": "serial"}, 422, "validation_failed"),
        ("x", {"kind": "gpio", "path": "/dev/../etc/passwd"}, 422, "validation_failed"),
        ("x", {"kind": "usb", "path": "/etc/passwd"}, 422, "validation_failed"),
        ("x", {**camera, "tenants": ["nobody-here"]}, 404, "tenant_not_found"),
        ("x", {**camera, "tenants": [outsider.tenant_id]}, 422, "tenant_not_granted"),
        ("serial0", {**body, "tenants": [outsider.tenant_id]}, 422, "tenant_not_granted"),
    ]:
        assert_problem(await declare(api, key, name, **bad), status, code)
    assert_problem(await declare(api, "no_such_device", "x", **body), 404, "device_not_found")
    # Nothing stored, nothing replaced.
    assert [
        (i["name"], i["read_only"], i["tenants"]) for i in await listed(client, api_user(api), key)
    ] == [("serial0", True, [user.tenant_id])]

    assert (await api.delete(f"/api/v1/devices/{key}/interfaces/serial0")).status_code == 204
    gone = await api.delete(f"/api/v1/devices/{key}/interfaces/serial0")
    assert_problem(gone, 404, "interface_not_found")

    # Declared for two tenants: each sees only itself; a revoked grant takes the tenant off
    # the device's interfaces, and granting the device again does not bring them back.
    shared = {**camera, "shareable": True, "tenants": [user.tenant_id, stranger.tenant_id]}
    assert (await declare(api, key, "camera", **shared)).status_code == 201
    for account in (user, stranger):
        assert [i["tenants"] for i in await listed(client, account, key)] == [[account.tenant_id]]
    revoked = await api.delete(f"/api/v1/devices/{key}/grants/{stranger.tenant_id}")
    assert revoked.status_code == 204, revoked.text
    regranted = await api.post(f"/api/v1/devices/{key}/grants", json={"tenant": stranger.tenant_id})
    assert regranted.status_code == 201, regranted.text
    assert await listed(client, stranger, key) == []
    assert [i["tenants"] for i in await listed(client, api_user(api), key)] == [[user.tenant_id]]
    actions = [
        e["action"] for e in (await api.get("/api/v1/audit", params={"limit": 50})).json()["items"]
    ]
    assert {"device.interface.declare", "device.interface.remove"} <= set(actions)


def api_user(api: httpx.AsyncClient) -> Account:
    """The operator's client as an account, for the helpers that take one."""
    token = api.headers["Authorization"].removeprefix("Bearer ")
    return Account("admin", "", "", "", "", token)


@ONE_DATABASE
async def test_a_container_gets_exactly_the_devices_it_holds(
    api, client, node, pseudo_devices
) -> None:
    agent, user = node
    key, tenants = agent.key, [user.tenant_id]
    await declare(api, key, "ro-port", kind="serial", path=pseudo_devices["null"],
                  container_path="/dev/ttyS7", read_only=True, tenants=tenants)  # fmt: skip
    await declare(api, key, "rw-bus", kind="i2c", path=pseudo_devices["zero"], tenants=tenants)
    answer = await create(client, user, key, "hw", interfaces=["ro-port", "rw-bus"])
    assert answer.status_code == 201, answer.text
    container = answer.json()
    assert container["interfaces"] == ["ro-port", "rw-bus"]
    devices = inspect(container["name"])["HostConfig"]["Devices"]
    assert sorted(
        (d["PathOnHost"], d["PathInContainer"], d["CgroupPermissions"]) for d in devices
    ) == sorted(
        [
            (pseudo_devices["null"], "/dev/ttyS7", "r"),
            (pseudo_devices["zero"], pseudo_devices["zero"], "rw"),
        ]
    )
    zero = pseudo_devices["zero"]
    script = (
        "head -c 4 /dev/ttyS7 >/dev/null && echo ro-read;"
        " (echo x > /dev/ttyS7) 2>/dev/null && echo ro-written;"
        f" head -c 4 {zero} | od -An -tx1; (echo x > {zero}) 2>/dev/null && echo rw-written"
    )
    output = await run(client, user, container, script)
    assert "ro-read" in output
    assert "00 00 00 00" in output
    assert "rw-written" in output
    # null (1:3) is a device Docker allows every container anyway, so the write goes
    # through; the kernel's refusal of a write to a read-only device is shown in
    # test_interface_claims with a device no container has by default.

    plain = (await create(client, user, key, "plain")).json()
    assert not inspect(plain["name"])["HostConfig"]["Devices"]


@ONE_DATABASE
async def test_exclusive_and_shared_interfaces_behave_as_declared(
    api, client, node, pseudo_devices, stranger
) -> None:
    agent, user = node
    key = agent.key
    both = [user.tenant_id, stranger.tenant_id]
    await declare(api, key, "gpio", kind="gpio", path=pseudo_devices["null"], tenants=both)
    await declare(api, key, "camera", kind="camera", path=pseudo_devices["zero"],
                  shareable=True, read_only=True, tenants=both)  # fmt: skip

    first = (await create(client, user, key, "first", interfaces=["gpio"])).json()
    before = names_on_node(stranger)
    busy = await create(client, stranger, key, "second", interfaces=["gpio"])
    assert_problem(busy, 409, "interface_busy")
    assert names_on_node(stranger) == before
    assert (await client.get("/api/v1/containers", headers=stranger.headers)).json()["items"] == []

    holders = {i["name"]: i["holders"] for i in await listed(client, stranger, key)}
    assert holders["gpio"] == [{"container": None, "name": None, "tenant": None,
                                "since": holders["gpio"][0]["since"]}]  # fmt: skip
    mine = {i["name"]: i["holders"] for i in await listed(client, user, key)}
    assert mine["gpio"][0]["container"] == first["id"]

    # The first holder has it until it stops; then it must wait its turn to start again.
    path = f"/api/v1/containers/{first['id']}"
    assert (await client.post(f"{path}/stop", headers=user.headers)).status_code == 200
    second = await create(client, stranger, key, "second", interfaces=["gpio"])
    assert second.status_code == 201, second.text
    assert_problem(await client.post(f"{path}/start", headers=user.headers), 409, "interface_busy")
    assert inspect(first["name"])["State"]["Running"] is False

    shared = [
        await create(client, account, key, f"cam-{index}", interfaces=["camera"])
        for index, account in enumerate((user, stranger))
    ]
    assert [answer.status_code for answer in shared] == [201, 201]
    cameras = {i["name"]: i["holders"] for i in await listed(client, api_user(api), key)}
    assert len(cameras["camera"]) == 2


@ONE_DATABASE
async def test_undeclared_or_foreign_devices_are_refused_and_nothing_is_made(
    api, client, node, pseudo_devices, stranger
) -> None:
    agent, user = node
    key = agent.key
    await declare(api, key, "serial0", kind="serial", path=pseudo_devices["null"],
                  tenants=[user.tenant_id])  # fmt: skip
    for account, interfaces in [
        (user, ["/dev/sda"]),
        (user, ["nope"]),
        (user, ["serial0", "nope"]),
        (stranger, ["serial0"]),
    ]:
        answer = await create(client, account, key, "intruder", interfaces=interfaces)
        assert_problem(answer, 422, "interface_not_declared")
    extra = await create(client, user, key, "raw", devices=[{"PathOnHost": "/dev/sda"}])
    assert extra.status_code == 422
    placed = await client.post(
        "/api/v1/containers",
        json={
            "placement": {"arch": "x86_64"},
            "name": "p",
            "image": IMAGE,
            "interfaces": ["serial0"],
        },
        headers=user.headers,
    )
    assert_problem(placed, 422, "interfaces_need_a_device")
    for account in (user, stranger):
        assert names_on_node(account) == []


@ONE_DATABASE
async def test_sensor_streams_are_shared_each_tenant_its_granted_topics(
    api, client, node, stranger, node_broker: NodeBroker
) -> None:
    agent, user = node
    key = agent.key
    base = f"edgetest/{secrets.token_hex(4)}"
    await declare(api, key, "temps", kind="sensor", topic=f"{base}/temp/#",
                  tenants=[user.tenant_id, stranger.tenant_id])  # fmt: skip
    await declare(api, key, "humidity", kind="sensor", topic=f"{base}/humid",
                  tenants=[user.tenant_id])  # fmt: skip

    refused = await create(client, stranger, key, "nosy", subscriptions=[f"{base}/humid"])
    assert_problem(refused, 422, "topic_not_granted")
    wider = await create(client, stranger, key, "wide", subscriptions=[f"{base}/#"])
    assert_problem(wider, 422, "topic_not_granted")
    mine = await create(client, user, key, "all", subscriptions=[f"{base}/temp/#", f"{base}/humid"])
    theirs = await create(client, stranger, key, "temp", subscriptions=[f"{base}/temp/+"])
    assert (mine.status_code, theirs.status_code) == (201, 201), (mine.text, theirs.text)

    async def inbox(account: Account, container: dict) -> set[str]:
        text = await run(client, account, container, "cat /app/inbox.jsonl 2>/dev/null; true")
        return {json.loads(line)["topic"] for line in text.splitlines() if line}

    sensor = await sensor_login(node_broker, [f"{base}/#"])

    async def both_read() -> bool:
        async with client_with("127.0.0.1", node_broker.port, sensor) as broker:
            await broker.publish(f"{base}/temp/kitchen", b"21.5", qos=1)
            await broker.publish(f"{base}/humid", b"40", qos=1)
        await asyncio.sleep(0.3)
        return {f"{base}/temp/kitchen", f"{base}/humid"} <= await inbox(
            user, mine.json()
        ) and f"{base}/temp/kitchen" in await inbox(stranger, theirs.json())

    await eventually(both_read, timeout=30, interval=0.5)
    assert await inbox(stranger, theirs.json()) == {f"{base}/temp/kitchen"}

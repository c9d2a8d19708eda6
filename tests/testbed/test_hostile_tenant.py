"""A hostile tenant on a shared node (issue #20), on the testbed with Docker's defaults (its
bridge and iptables on), as every real node runs: tenants A and B share node n1, whose
neighbour is n2. Each test is one attack made from inside B's container (through B's own
exec) or through B's API, and names the defence it proves (SECURITY.md says which were seen
to fail with their defence taken out). Throughout, n1's heartbeats must stay on time.
"""

import asyncio
import itertools
import json
import os
import secrets
import selectors
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud_contracts.migrations import BrokerLogin
from infra.testbed.topology import INTERNET_IP
from tests.conftest import eventually
from tests.security.test_container_policy import exec_in
from tests.support.agents import AgentFactory, AgentHandle
from tests.support.brokers import client_with
from tests.support.images import build_context
from tests.support.mqtt_shell import (
    REFUSED_NOT_AUTHORISED,
    SUBSCRIPTION_FAILED,
    answers,
    publish_script,
    subscribe_script,
)
from tests.support.processes import PYTHON, ROOT
from tests.support.sensors import sensor_login
from tests.support.stack import Stack
from tests.support.testbed import TestbedFleet, reachable_stack_of_module
from tests.support.users import Account, operator_headers, register

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
SLEEP = ["sleep", "3600"]
LISTENER = ROOT / "tests" / "support" / "listener.py"
PORTS = (30000, 30099)
COPY_OUT_MAX = 8 << 20
NODE_PIDS = 1600
"""n1 gives tenants 1600 PIDs in all: a tenant's share (half) is 800."""
HEARTBEAT_GAP_S = 5.0
"""Beats every 0.5 s; the registry records them at least every second or two."""
SECRET_PAGE = "tenant A's secret page"


# A cloud side of this module's own, which lets a tenant reserve all of a node's PIDs: as a
# migration or a cold restart would (they do not check shares), so that the node's own line
# (the tenant's cgroup) is what the fork bomb meets.
stack = reachable_stack_of_module


@pytest.fixture(scope="module")
def testbed_stack_env() -> dict[str, str]:
    return {"ORCHESTRATOR_TENANT_NODE_PIDS_SHARE": "1.0"}


@pytest.fixture(scope="module")
def testbed_nodes() -> int:
    return 2


@dataclass
class House:
    """The shared node n1, its neighbour n2, and the two tenants living on n1."""

    fleet: TestbedFleet
    api: httpx.AsyncClient
    n1: AgentHandle
    n2: AgentHandle
    a: Account
    b: Account
    a_web: dict[str, Any]
    a_feed: dict[str, Any]
    b_probe: dict[str, Any]
    a_topic: str
    listeners: list[subprocess.Popen[str]] = field(default_factory=list)

    def engine(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Docker on n1, as its operator would run it."""
        return self.fleet.bed.docker("n1", *args)

    def ip_of(self, container: dict[str, Any]) -> str:
        found = self.engine("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}"
                            "{{end}}", container["name"])  # fmt: skip
        return found.stdout.strip()

    def listen(self, where: list[str], host: str, port: int, answer: str = "hello") -> Any:
        """A listener inside a namespace (``where``: the command prefix into it)."""
        process = subprocess.Popen(
            [*where, str(PYTHON), str(LISTENER), host, str(port), answer],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "listening"
        self.listeners.append(process)
        return process


async def exec_as(
    client: httpx.AsyncClient, user: Account, container: dict[str, Any], script: str
) -> str:
    """``sh -c script`` inside the container, through the tenant's own exec; its output."""
    return str((await exec_in(client, user, container["id"], script))["output"])


def fetch(host: str, port: int) -> str:
    """A script fetching ``/`` over HTTP (busybox's static wget cannot resolve even an IP)."""
    return f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}"


async def reaches(
    client: httpx.AsyncClient, user: Account, container: dict[str, Any], host: str, port: int
) -> bool:
    """Whether the container opens a TCP connection to ``host:port`` within 3 s."""
    out = await exec_as(client, user, container, f"nc -w 3 {host} {port} </dev/null; echo rc=$?")
    return "rc=0" in out


SMALL = {"cpus": 0.2, "memory": 64 << 20, "pids": 32}


async def make(client: httpx.AsyncClient, user: Account, key: str, name: str, **body: Any) -> dict:
    limits = {**SMALL, **body.pop("limits", {})}
    answer = await client.post(
        "/api/v1/containers",
        json={
            "device": key,
            "name": name,
            "image": IMAGE,
            "command": SLEEP,
            "limits": limits,
            **body,
        },
        headers=user.headers,
        timeout=120,
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def upload(
    client: httpx.AsyncClient, user: Account, name: str, data: bytes, kind: str
) -> str:
    answer = await client.post(
        "/api/v1/artifacts",
        files={"file": (name, data)},
        data={"kind": kind},
        headers=user.headers,
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


@pytest.fixture(scope="module")
async def house(
    testbed_network: Any, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[House]:
    fleet = TestbedFleet(testbed_network, AgentFactory(stack, tmp_path_factory.mktemp("house")))
    headers = await operator_headers(stack)
    client = httpx.AsyncClient(base_url=stack.url("gateway"), headers=headers, timeout=30)
    try:
        tokens = []
        for _ in range(2):
            enrolled = await client.post("/api/v1/devices/enrolments", json={"note": "house"})
            tokens.append(enrolled.json()["token"])
        n1 = fleet.start_agent(
            "n1",
            token=tokens[0],
            fusion=True,  # its relay listens for neighbours: one more of the node's services
            env={
                "AGENT_PUBLISHED_PORTS": f"{PORTS[0]}-{PORTS[1]}",
                "AGENT_COPY_OUT_MAX_BYTES": str(COPY_OUT_MAX),
                "AGENT_NODE_PIDS": str(NODE_PIDS),
                "AGENT_STOP_TIMEOUT_S": "1",
            },
        )
        # n2's operator keeps tenants off the Internet.
        n2 = fleet.start_agent("n2", token=tokens[1], env={"AGENT_TENANT_INTERNET": "false"})

        async def online(key: str) -> bool:
            answer = await client.get(f"/api/v1/devices/{key}")
            return answer.status_code == 200 and answer.json()["status"] == "online"

        for agent in (n1, n2):
            await eventually(lambda key=agent.key: online(key), timeout=60, interval=0.3)
        a, b = await register(stack), await register(stack)
        grants = [(n1, a), (n1, b), (n2, a)]  # n2 is A's, not B's
        for agent, account in grants:
            granted = await client.post(
                f"/api/v1/devices/{agent.key}/grants", json={"tenant": account.tenant_id}
            )
            assert granted.status_code == 201, granted.text
        a_topic = f"sensors/a-{secrets.token_hex(3)}"
        for name, topic, tenant in (("a-sensors", a_topic, a), ("b-sensors", "sensors/b", b)):
            declared = await client.put(
                f"/api/v1/devices/{n1.key}/interfaces/{name}",
                json={"kind": "sensor", "topic": f"{topic}/#", "tenants": [tenant.tenant_id]},
            )
            assert declared.status_code in (200, 201), declared.text
        gateway = httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60)
        web = ["sh", "-c", f"mkdir -p /app/www && echo \"{SECRET_PAGE}\" > /app/www/index.html"
               " && exec httpd -f -p 8080 -h /app/www"]  # fmt: skip
        a_web = await make(gateway, a, n1.key, "web", command=web)
        a_feed = await make(gateway, a, n1.key, "feed", subscriptions=[f"{a_topic}/#"])
        b_probe = await make(gateway, b, n1.key, "probe")
        house = House(fleet, client, n1, n2, a, b, a_web, a_feed, b_probe, a_topic)
        try:
            yield house
        finally:
            for listener in house.listeners:
                listener.kill()
                listener.wait(5)
                if listener.stdout is not None:
                    listener.stdout.close()
            await gateway.aclose()
    finally:
        fleet.reset()
        await client.aclose()


@pytest.fixture
async def gateway(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("gateway"), timeout=60) as client:
        yield client


@pytest.fixture(autouse=True)
async def heartbeats_on_time(house: House) -> AsyncIterator[None]:
    """n1's heartbeats keep coming while each attack runs: no tenant's file, fork or flood
    holds the agent up."""
    seen: list[tuple[float, str]] = []

    async def watch() -> None:
        while True:
            answer = await house.api.get(f"/api/v1/devices/{house.n1.key}")
            if answer.status_code == 200 and (
                not seen or seen[-1][1] != answer.json()["last_seen"]
            ):
                seen.append((time.monotonic(), answer.json()["last_seen"]))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch())
    try:
        yield
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    moments = [at for at, _ in seen] + [time.monotonic()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(moments)]
    assert max(gaps, default=0) < HEARTBEAT_GAP_S, f"n1's heartbeats stalled: {max(gaps):.1f} s"


# --- the network -----------------------------------------------------------------------------


async def test_another_tenants_containers_are_out_of_reach(house: House, gateway) -> None:
    """Defence: a network per tenant (isolation/networks.py). With one network for all (the
    default bridge, as before), B gets A's page (seen)."""
    web = house.ip_of(house.a_web)
    assert await reaches(gateway, house.a, house.a_feed, web, 8080)  # A's own: yes
    page = await exec_as(gateway, house.a, house.a_feed, fetch(web, 8080))
    assert SECRET_PAGE in page
    assert not await reaches(gateway, house.b, house.b_probe, web, 8080)
    taken = await exec_as(gateway, house.b, house.b_probe, fetch(web, 8080))
    assert SECRET_PAGE not in taken


async def test_the_node_itself_is_out_of_reach_but_for_its_broker(house: House, gateway) -> None:
    """Defence: the node firewall's EDGECLOUD-INPUT. Every port n1 listens on (its broker on
    three addresses, the agent's relay, an SSH stand-in on every address) is tried on every
    address of the node; only the broker's listener for containers answers."""
    house.listen(house.fleet.bed.nsenter("n1"), "0.0.0.0", 22, "SSH-2.0-node")
    bed = house.fleet.bed
    listening = bed.exec("n1", ["ss", "-Hltn"]).stdout
    addresses = {bed.node("n1").wan_ip, bed.bridge_address("n1")}
    gateway_of_b = house.engine(
        "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        json.loads(house.engine("inspect", house.b_probe["name"]).stdout)[0]["HostConfig"][
            "NetworkMode"
        ],
    ).stdout.strip()  # fmt: skip
    addresses.add(gateway_of_b)
    targets: set[tuple[str, int]] = set()
    for line in listening.splitlines():
        local = line.split()[3]
        host, _, port = local.rpartition(":")
        host = host.strip("[]")
        if host.startswith("127.") or host == "::1":
            continue  # a container's own loopback is its own
        for address in addresses if host in ("0.0.0.0", "*", "::") else {host} & addresses:
            targets.add((address, int(port)))
    assert (bed.bridge_address("n1"), 1883) in targets
    assert {port for _, port in targets} >= {22, 1883, 8099}
    reached = {t for t in sorted(targets) if await reaches(gateway, house.b, house.b_probe, *t)}
    assert reached == {(bed.bridge_address("n1"), 1883)}


async def test_neighbours_are_out_of_reach_and_the_internet_is_not(house: House, gateway) -> None:
    """Defence: EDGECLOUD-FORWARD drops what goes to private and the node's own subnets (the
    LAN, the cloud side, other nodes). The Internet (a stand-in at a public address) is
    reached: tenants keep it by default."""
    bed = house.fleet.bed
    internet = house.listen(bed.internet_command(), "0.0.0.0", 8443, "the internet")
    neighbour = house.listen(bed.nsenter("n2"), "0.0.0.0", 2222, "n2")
    assert await reaches(gateway, house.b, house.b_probe, INTERNET_IP, 8443)
    assert not await reaches(gateway, house.b, house.b_probe, bed.node("n2").wan_ip, 2222)
    assert not await reaches(gateway, house.b, house.b_probe, bed.node("n2").wan_ip, 1883)
    assert not await reaches(gateway, house.b, house.b_probe, bed.cloud_ip, bed.api_port)
    await asyncio.sleep(0.2)
    house_lines = _drain(internet)
    assert any(line.startswith("from ") for line in house_lines)
    assert not any(line.startswith("from ") for line in _drain(neighbour))


async def test_an_operator_may_close_the_internet_and_a_container_may_have_none(
    house: House, gateway
) -> None:
    """Defence: AGENT_TENANT_INTERNET=false (n2): its tenants' containers reach nothing
    beyond their own network. A container asking for no network has none: no interface but
    its loopback."""
    house.listen(house.fleet.bed.internet_command(), "0.0.0.0", 8444, "the internet")
    on_n2 = await make(gateway, house.a, house.n2.key, "closed")
    assert not await reaches(gateway, house.a, on_n2, INTERNET_IP, 8444)
    assert await reaches(gateway, house.a, house.a_feed, INTERNET_IP, 8444)  # n1: open
    alone = await make(gateway, house.b, house.n1.key, "alone", network="none")
    interfaces = await exec_as(gateway, house.b, alone, "cat /proc/net/dev")
    assert [line.split(":")[0].strip() for line in interfaces.splitlines()[2:]] == ["lo"]
    assert not await reaches(gateway, house.b, alone, INTERNET_IP, 8444)
    assert "EDGECLOUD_MQTT_USERNAME" not in await exec_as(gateway, house.b, alone, "env")


async def test_a_published_port_reaches_its_container_and_no_one_else(
    house: House, gateway
) -> None:
    """Defence: ports only from the operator's range, each once per node (the cloud refuses
    and the node refuses again); from outside the node (the Internet stand-in) the port
    reaches B's container."""
    serve = ["sh", "-c", "mkdir -p /app/w && echo B-page > /app/w/index.html &&"
             " exec httpd -f -p 8080 -h /app/w"]  # fmt: skip
    port = {"container": 8080, "host": PORTS[0] + 7}
    published = await make(gateway, house.b, house.n1.key, "pub", command=serve, ports=[port])
    bed = house.fleet.bed
    url = f"http://{bed.node('n1').wan_ip}:{port['host']}/"
    fetching = await asyncio.create_subprocess_exec(
        *bed.internet_command(), str(PYTHON), "-c",
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    fetched, said = await fetching.communicate()
    assert fetched.decode().strip() == "B-page", said
    for user, body, status, code in (
        (house.a, {"ports": [port]}, 409, "port_taken"),
        (house.b, {"ports": [{"container": 80, "host": PORTS[1] + 1}]}, 422, "port_out_of_range"),
    ):
        answer = await gateway.post(
            "/api/v1/containers",
            json={
                "device": house.n1.key,
                "name": "x",
                "image": IMAGE,
                "command": SLEEP,
                "limits": SMALL,
                **body,
            },
            headers=user.headers,
        )
        assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text
    assert published["state"] == "running"


def _drain(process: subprocess.Popen[str]) -> list[str]:
    """What a listener printed so far (it keeps running)."""
    assert process.stdout is not None
    os.set_blocking(process.stdout.fileno(), False)
    lines = []
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    while selector.select(timeout=0.5):
        chunk = process.stdout.read()
        if not chunk:
            break
        lines += chunk.splitlines()
    return lines


# --- the broker ------------------------------------------------------------------------------


def feed_login_of(house: House, container: dict[str, Any]) -> BrokerLogin:
    """A's feed login, as B might have learned it (only the node's root can read it)."""
    state = house.fleet.bed.node("n1").state_dir / "broker.sqlite3"
    with sqlite3.connect(state) as db:
        row = db.execute(
            "SELECT username, client_id, password FROM identities WHERE kind = 'feed'"
            " AND owner = ?",
            (container["id"],),
        ).fetchone()
    assert row is not None, "A's feed made no login"
    return BrokerLogin(username=row[0], client_id=row[1], password=row[2])


async def test_the_broker_admits_no_one_but_its_identities(house: House, gateway) -> None:
    """Defence: the broker's dynamic security (allow_anonymous false; every login bound to
    its client id). Before it, an anonymous client got in (seen)."""
    feed = feed_login_of(house, house.a_feed)
    tries = {
        "anonymous": publish_script("{}", username="", password="", client_id="anyone"),
        "wrong password": publish_script("{}", password=secrets.token_urlsafe(24)),
        # B's own login under A's feed's client id: would take over A's sensor session.
        "A's feed session": publish_script("{}", client_id=feed.client_id),
        # A's feed login itself, if B had it: bound to its own client id.
        "A's login, B's id": publish_script(
            "{}", username=feed.username, password=feed.password, client_id="stolen"
        ),
    }
    for what, script in tries.items():
        out = await exec_as(gateway, house.b, house.b_probe, script)
        assert answers(out).connack == REFUSED_NOT_AUTHORISED, f"{what}: {out}"
    out = await exec_as(gateway, house.b, house.b_probe, publish_script('{"x": 1}'))
    assert answers(out).connack == 0, out


async def test_a_tenants_login_reads_no_one_elses_stream(house: House, gateway) -> None:
    """Defence: logins limited to their topics (a container's may only publish its own data
    topic). B subscribes to ``#`` while A's sensor publishes: refused, nothing arrives; A's
    feed gets the messages."""
    sensor = sensor_login(house.fleet, "n1", [f"{house.a_topic}/#"])
    listening = asyncio.create_task(
        exec_as(gateway, house.b, house.b_probe, subscribe_script("#", wait_s=4))
    )
    await asyncio.sleep(1.5)
    async with client_with(house.fleet.bed.node("n1").wan_ip, 1883, sensor) as publisher:
        for number in range(5):
            await publisher.publish(f"{house.a_topic}/t", str(number), qos=1)
    heard = answers(await listening)
    assert heard.connack == 0
    assert heard.suback == SUBSCRIPTION_FAILED
    assert heard.topics == []

    async def a_got_them() -> bool:
        inbox = await exec_as(gateway, house.a, house.a_feed, "cat /app/inbox.jsonl 2>/dev/null")
        return inbox.count(f"{house.a_topic}/t") >= 5

    await eventually(a_got_them, timeout=20, interval=0.5)


async def test_a_tenant_cannot_forge_another_containers_data(house: House, gateway) -> None:
    """Defence: a data point is credited to the identity that sent it (the topic names the
    identity and only it may publish there). Before, points went to whichever container the
    topic named (seen)."""
    a_env = json.loads(house.engine("inspect", house.a_feed["name"]).stdout)[0]["Config"]["Env"]
    a_topic = next(v.split("=", 1)[1] for v in a_env if v.startswith("EDGECLOUD_DATA_TOPIC="))
    for topic in (a_topic, f"edgecloud/data/{house.a_feed['name']}"):
        out = await exec_as(gateway, house.b, house.b_probe, publish_script(
            '{"forged": 666}', topic=topic))  # fmt: skip
        assert answers(out).connack == 0
    out = await exec_as(gateway, house.b, house.b_probe, publish_script('{"own": 1}'))
    assert answers(out).connack == 0

    async def series(user: Account, container: dict[str, Any], name: str) -> list:
        answer = await gateway.get(
            f"/api/v1/containers/{container['id']}/data", params={"name": name},
            headers=user.headers,
        )  # fmt: skip
        return list(answer.json()["series"].get(name, []))

    await eventually(lambda: series(house.b, house.b_probe, "own"), timeout=20, interval=0.5)
    assert await series(house.a, house.a_feed, "forged") == []


# --- files the agent writes into a tenant's volume --------------------------------------------


@pytest.mark.parametrize("planted", ["symlink", "fifo", "directory"])
async def test_a_planted_inbox_is_refused_and_the_node_serves_on(
    house: House, gateway, tmp_path: Path, planted: str
) -> None:
    """Defence: the inbox is opened through the volume's directory with O_NOFOLLOW and
    O_NONBLOCK and written only if it is a regular file, off the event loop
    (isolation/volume_files.py). Before: the symlink made the agent append to a node file
    as root, the FIFO froze the agent (every heartbeat stopped), the directory failed the
    feed (seen)."""
    canary = tmp_path / "ld.so.preload"
    canary.write_text("untouched\n")
    # Put in place by rename (the feed may create the inbox again at any moment), until it is.
    inbox = "/app/inbox.jsonl"
    make_it = {
        "symlink": ("-L", f"ln -sf {canary} /app/.p && mv -f /app/.p {inbox}"),
        "fifo": ("-p", f"rm -f /app/.p; mkfifo /app/.p && mv -f /app/.p {inbox}"),
        "directory": ("-d", f"rm -f {inbox}; mkdir {inbox}"),
    }
    test, command = make_it[planted]
    plant = f"until [ {test} {inbox} ]; do {command}; done"
    victim = await make(gateway, house.b, house.n1.key, f"inbox-{planted}",
                        subscriptions=["sensors/b/#"])  # fmt: skip
    # Planted while its feed has the inbox open; found when the feed opens it again, after
    # the container stops (the feed stops within a second) and starts.
    path = f"/api/v1/containers/{victim['id']}"
    await exec_as(gateway, house.b, victim, plant)
    assert (await gateway.post(f"{path}/stop", headers=house.b.headers)).status_code == 200
    await asyncio.sleep(2.5)
    assert (await gateway.post(f"{path}/start", headers=house.b.headers)).status_code == 200
    sensor = sensor_login(house.fleet, "n1", ["sensors/b/#", f"{house.a_topic}/#"])
    n1 = house.fleet.bed.node("n1").wan_ip
    async with client_with(n1, 1883, sensor) as publisher:
        for number in range(20):
            await publisher.publish("sensors/b/x", f"payload {number}", qos=1)
            await publisher.publish(f"{house.a_topic}/after-{planted}", str(number), qos=1)
            await asyncio.sleep(0.1)

    async def a_fed() -> bool:  # every other tenant's feed goes on
        inbox = await exec_as(gateway, house.a, house.a_feed, "cat /app/inbox.jsonl")
        return inbox.count(f"after-{planted}") >= 20

    await eventually(a_fed, timeout=30, interval=0.5)
    assert canary.read_text() == "untouched\n"
    kind = await exec_as(gateway, house.b, victim, "ls -ld /app/inbox.jsonl")
    assert kind.startswith({"symlink": "l", "fifo": "p", "directory": "d"}[planted]), kind


# --- the image store -------------------------------------------------------------------------


def archive_of(tmp_path: Path, marker: str, *tags: str) -> bytes:
    """A ``docker save`` archive of a small image of its own (``/marker`` holds ``marker``),
    carrying ``tags``."""
    root = tmp_path / f"root-{secrets.token_hex(3)}"
    root.mkdir()
    (root / "marker").write_text(marker)
    busybox = Path("/bin/busybox")
    (root / "bin").mkdir()
    (root / "bin" / "busybox").write_bytes(busybox.read_bytes())
    (root / "bin" / "busybox").chmod(0o755)
    for applet in ("sh", "sleep", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    subprocess.run(["tar", "-C", str(root), "-cf", f"{root}.tar", "."], check=True)
    first = tags[0]
    subprocess.run(["docker", "import", "--change", 'CMD ["sh"]', f"{root}.tar", first],
                   check=True, capture_output=True)  # fmt: skip
    for tag in tags[1:]:
        subprocess.run(["docker", "tag", first, tag], check=True)
    saved = subprocess.run(["docker", "save", *tags], check=True, capture_output=True).stdout
    subprocess.run(["docker", "image", "rm", "-f", *tags], check=True, capture_output=True)
    return saved


async def test_an_archive_cannot_take_another_tenants_or_the_nodes_image_names(
    house: House, gateway, tmp_path: Path
) -> None:
    """Defence: an archive's manifest is read before it is loaded, and what is loaded keeps
    none of its tags (isolation/image_archives.py). Before, B's archive moved the tags of
    A's image and of redis:7 on the node, and A's next container ran B's image (seen)."""
    a_name, b_name = f"a-app-{secrets.token_hex(3)}:1", f"b-app-{secrets.token_hex(3)}:1"
    a_archive = await upload(gateway, house.a, "a.tar", archive_of(tmp_path, "A", a_name), "image")
    a_first = await make(gateway, house.a, house.n1.key, "app1", image=a_name,
                         image_artifact=a_archive)  # fmt: skip
    # The node's operator keeps an image of its own under a well-known name.
    house.engine("tag", IMAGE, "redis:7")
    redis_before = house.engine("image", "inspect", "-f", "{{.Id}}", "redis:7").stdout.strip()

    hostile = archive_of(tmp_path, "B", b_name, a_name, "redis:7")
    b_archive = await upload(gateway, house.b, "b.tar", hostile, "image")
    answer = await gateway.post(
        "/api/v1/containers",
        json={"device": house.n1.key, "name": "app", "image": b_name, "command": SLEEP,
              "image_artifact": b_archive, "limits": SMALL},
        headers=house.b.headers, timeout=120,
    )  # fmt: skip
    assert (answer.status_code, answer.json()["code"]) == (422, "image_refused"), answer.text
    assert (
        house.engine("image", "inspect", "-f", "{{.Id}}", "redis:7").stdout.strip() == redis_before
    )
    assert house.engine("image", "inspect", a_name).returncode != 0  # no tag was applied
    # A's next container of that name runs A's image, by its tenant's own record.
    a_again = await make(gateway, house.a, house.n1.key, "app2", image=a_name)
    for container in (a_first, a_again):
        assert (await exec_as(gateway, house.a, container, "cat /marker")).strip() == "A"


async def test_a_tenant_cannot_run_an_image_only_another_brought(
    house: House, gateway, tmp_path: Path
) -> None:
    """Defence: a name reaches an image only through its tenant's record or a real tag, never
    an ID or ID prefix (isolation/images.py). Docker itself hands an image to a prefix of its
    ID (seen: B ran A's private image by twelve hex digits)."""
    a_name = f"a-private-{secrets.token_hex(3)}:1"
    a_archive = await upload(gateway, house.a, "p.tar", archive_of(tmp_path, "A", a_name), "image")
    mine = await make(gateway, house.a, house.n1.key, "private", image=a_name,
                      image_artifact=a_archive)  # fmt: skip
    image_id = json.loads(house.engine("inspect", mine["name"]).stdout)[0]["Image"]
    for reference in (a_name, image_id.removeprefix("sha256:")[:12]):
        answer = await gateway.post(
            "/api/v1/containers",
            json={"device": house.n1.key, "name": f"steal-{secrets.token_hex(2)}",
                  "image": reference, "command": ["cat", "/marker"], "limits": SMALL},
            headers=house.b.headers, timeout=120,
        )  # fmt: skip
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "image_pull_failed"
    for reference in (image_id, f"edgecloud-tenants/{'0' * 16}:{image_id[7:]}"):
        answer = await gateway.post(
            "/api/v1/containers",
            json={"device": house.n1.key, "name": "steal", "image": reference, "limits": SMALL},
            headers=house.b.headers,
        )
        assert answer.status_code == 422, answer.text


async def test_a_build_fetches_nothing_and_starts_from_nothing_of_anyone_else(
    house: House, gateway
) -> None:
    """Defence: the Dockerfile is read before the engine builds it (isolation/dockerfiles.py):
    ADD of a URL would be fetched by the node itself, from its own network (here n2, which
    B's containers cannot reach); FROM an ID prefix would build on A's private image."""
    bed = house.fleet.bed
    neighbour = house.listen(bed.nsenter("n2"), "0.0.0.0", 8081, "neighbour file")
    a_image = json.loads(house.engine("inspect", house.a_web["name"]).stdout)[0]["Image"]
    for dockerfile in (
        f"FROM {IMAGE}\nADD http://{bed.node('n2').wan_ip}:8081/secret /secret\n",
        f"FROM {a_image.removeprefix('sha256:')[:12]}\n",
    ):
        context = await upload(gateway, house.b, "ctx.tar", build_context(dockerfile, {}), "file")
        answer = await gateway.post(
            "/api/v1/containers",
            json={"device": house.n1.key, "name": f"built-{secrets.token_hex(2)}",
                  "image": f"b-built-{secrets.token_hex(2)}:1", "build_artifact": context,
                  "command": SLEEP, "limits": SMALL},
            headers=house.b.headers, timeout=120,
        )  # fmt: skip
        assert (answer.status_code, answer.json()["code"]) == (422, "build_refused"), answer.text
    await asyncio.sleep(0.5)
    assert not any(line.startswith("from ") for line in _drain(neighbour))


# --- the node's resources --------------------------------------------------------------------


async def test_filling_its_disk_fails_inside_and_the_node_keeps_its_own(
    house: House, gateway
) -> None:
    """Defence: each /app is a filesystem of its own size (isolation/disks.py). Before, /app
    was a plain volume on the node's disk: the same write took the node's space (seen)."""
    state = house.fleet.bed.node("n1").state_dir
    free_before = _free(state)
    hog = await make(gateway, house.b, house.n1.key, "hog", limits={"disk": 32 << 20})
    out = await exec_as(gateway, house.b, hog,
                        "dd if=/dev/zero of=/app/fill bs=1M count=64 2>&1; echo rc=$?")  # fmt: skip
    assert "No space left on device" in out, out
    assert "rc=0" not in out
    assert free_before - _free(state) < 40 << 20  # its 32 MiB were set aside, no more
    fine = await exec_as(gateway, house.a, house.a_feed,
                         "dd if=/dev/zero of=/app/ok bs=1M count=8 2>&1; echo rc=$?")  # fmt: skip
    assert "rc=0" in fine, fine


def _free(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


async def test_a_fork_bomb_stops_at_its_tenants_share(house: House, gateway) -> None:
    """Defence: a tenant's cgroup holding its share of the node's PIDs (isolation/cgroups.py),
    whatever its containers' own limits and whatever the cloud let through. Two of B's
    containers, each allowed 500 PIDs, fork what they can: together they stop at B's share
    (800 here, B's other containers included); A still forks."""
    # One line per process that could start; busybox's shell ends at the first refused fork.
    bomb = "i=0; while [ $i -lt 600 ]; do sleep 60 & echo forked; i=$((i+1)); done"
    limits = {"pids": 500, "memory": 64 << 20}
    first = await make(gateway, house.b, house.n1.key, "bomb1", limits=limits)
    second = await make(gateway, house.b, house.n1.key, "bomb2", limits=limits)
    try:
        forked = []
        for container in (first, second):
            out = await exec_as(gateway, house.b, container, bomb)
            forked.append(out.count("forked"))
        assert sum(forked) <= NODE_PIDS // 2, forked
        assert forked[0] > 450, forked  # the first, within its own limit
        assert forked[1] < NODE_PIDS // 2 - 450, forked  # the second ran into the share
        out = await exec_as(gateway, house.a, house.a_feed, "sleep 60 & echo rc=$?")
        assert "rc=0" in out
    finally:
        for container in (first, second):
            await gateway.delete(f"/api/v1/containers/{container['id']}", headers=house.b.headers)


async def test_a_copy_out_of_a_huge_file_is_cut_off(house: House, gateway) -> None:
    """Defence: copies out of a container are bounded (AGENT_COPY_OUT_MAX_BYTES) and the
    partial tar removed. Before, the node wrote the whole tar to its disk (seen)."""
    big = await make(gateway, house.b, house.n1.key, "big", limits={"disk": 64 << 20})
    await exec_as(gateway, house.b, big, "dd if=/dev/zero of=/app/huge bs=1M count=24 2>&1")
    asked = await gateway.post(
        f"/api/v1/containers/{big['id']}/files", json={"path": "/app/huge"},
        headers=house.b.headers,
    )  # fmt: skip
    assert asked.status_code == 202, asked.text
    command = asked.json()["command"]

    async def ended() -> dict | None:
        answer = await gateway.get(f"/api/v1/commands/{command}", headers=house.b.headers)
        found = answer.json()
        return found if found["state"] in ("succeeded", "failed") else None

    done = await eventually(ended, timeout=60, interval=0.5)
    assert done["state"] == "failed", done
    assert "larger than this node copies out" in (done["error"] or ""), done
    outgoing = house.fleet.bed.node("n1").state_dir / "outgoing"
    assert [path.name for path in outgoing.glob("*.tar")] == []


# --- what a tenant sees ----------------------------------------------------------------------


async def test_the_device_view_shows_a_tenant_only_its_own(house: House, gateway) -> None:
    """Defence: device views filtered for tenants (registry, devices/visibility.py)."""
    seen = await gateway.get(f"/api/v1/devices/{house.n1.key}", headers=house.b.headers)
    assert seen.status_code == 200, seen.text
    device = seen.json()
    names = {container["name"] for container in device["containers"]}
    assert house.b_probe["name"] in names
    assert not names & {house.a_web["name"], house.a_feed["name"]}
    assert house.n2.key not in device.get("neighbours", {})
    assert not device.get("peer_url")
    text = seen.text
    for secret in (house.a.username, house.a_web["id"], house.n2.key):
        assert secret not in text

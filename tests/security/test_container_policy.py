"""The hardening of tenant containers (ARCHITECTURE.md section 5), read back from the real
engine after every path that starts one: create, deploy, restart (the API's and Docker's
restart policy), a cold restart on another node (what the migration-scheduler asks when a
node is lost) and a migration's restore on the peer. And, from inside such a container,
the usual escapes fail, each for the right reason: the same probe succeeds in a
deliberately unhardened control container of the same image."""

import json
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_contracts.containers import MIB, Limits
from tests.agent.conftest import make_spec
from tests.agent.test_peer_migration import TARGET, announced, ask, peer_node, source_side
from tests.conftest import ONE_DATABASE, eventually
from tests.integration.conftest import docker, online
from tests.integration.test_applications import deploy, finished, tar_of
from tests.support.brokers import NodeBroker
from tests.support.users import Account, scheduler_headers

pytestmark = pytest.mark.stack

IMAGE = "edgecloud/busybox:latest"
LIMITS = {"memory": 48 << 20, "cpus": 0.5, "pids": 48}
DOCKER_SOCKET = "/var/run/docker.sock"


def inspect(name: str) -> dict[str, Any]:
    done = docker("inspect", "--type", "container", name)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)[0])


def assert_hardened(
    seen: dict[str, Any], *, memory: int, cpus: float, pids: int, devices: int = 0
) -> None:
    """The one policy every tenant container runs under, whatever started it."""
    host = seen["HostConfig"]
    assert host["Privileged"] is False
    assert [c.upper() for c in host["CapDrop"] or []] in (["ALL"], ["CAP_ALL"])
    assert not host.get("CapAdd")
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == host["MemorySwap"] == memory
    assert host["NanoCpus"] == round(cpus * 1e9)
    assert host["PidsLimit"] == pids
    assert not host.get("Binds")
    assert not host.get("VolumesFrom")
    # Nothing of the node's filesystem: its own named volume at /app, a small tmpfs at /tmp.
    assert [(m["Type"], m["Destination"]) for m in seen["Mounts"]] == [("volume", "/app")]
    assert set(host.get("Tmpfs") or {}) == {"/tmp"}
    assert all(DOCKER_SOCKET not in (m.get("Source") or "") for m in seen["Mounts"])
    assert len(host.get("Devices") or []) == devices
    assert not host.get("DeviceCgroupRules")
    assert host["NetworkMode"] != "host"
    assert not host["NetworkMode"].startswith("container:")
    assert host["PidMode"] == ""
    assert host["IpcMode"] == "private"
    assert host["UTSMode"] == ""
    assert host["UsernsMode"] == ""
    assert host["CgroupnsMode"] == "private"
    assert host["PublishAllPorts"] is False
    assert seen["Config"]["Labels"]["edgecloud.managed"] == "true"


async def exec_in(
    client: httpx.AsyncClient, user: Account, container_id: str, script: str
) -> dict[str, Any]:
    """``sh -c script`` through the public exec endpoint, as the tenant."""
    answer = await client.post(
        f"/api/v1/containers/{container_id}/exec",
        json={"cmd": ["sh", "-c", script], "timeout_s": 30},
        headers=user.headers,
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def create(client: httpx.AsyncClient, user: Account, key: str, name: str, **body: Any):
    answer = await client.post(
        "/api/v1/containers",
        json={"device": key, "name": name, "image": IMAGE, **body},
        headers=user.headers,
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


@ONE_DATABASE
async def test_create_deploy_restarts_and_a_cold_restart_elsewhere_all_harden(
    stack, api, client, node, agents, enrol
) -> None:
    agent, user = node
    container = await create(
        client, user, agent.key, "hard", command=["sleep", "3600"], limits=LIMITS
    )
    name, path = container["name"], f"/api/v1/containers/{container['id']}"
    first = inspect(name)
    assert_hardened(first, **LIMITS)

    # Deploy: the script runs inside it without a capability or a way to gain one.
    script = b"grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status > /app/status.txt\n"
    accepted = await deploy(client, user, container["id"], tar_of({"a.txt": b"a"}), script)
    done = await finished(client, user, accepted["deployment"])
    assert done["state"] == "succeeded", done
    status = (await exec_in(client, user, container["id"], "cat /app/status.txt"))["output"]
    fields = dict(line.split(":\t") for line in status.splitlines())
    assert fields == {"CapEff": "0000000000000000", "CapBnd": "0000000000000000",
                      "NoNewPrivs": "1"}  # fmt: skip
    assert_hardened(inspect(name), **LIMITS)

    # A restart through the API.
    restarted = await client.post(f"{path}/restart", headers=user.headers, timeout=60)
    assert restarted.status_code == 200, restarted.text
    after_api = inspect(name)
    assert after_api["State"]["StartedAt"] != first["State"]["StartedAt"]
    assert_hardened(after_api, **LIMITS)

    # Docker's restart policy, when the main process dies on the node.
    os.kill(after_api["State"]["Pid"], signal.SIGKILL)

    async def restarted_by_docker() -> dict[str, Any] | None:
        seen = inspect(name)
        grown = seen["RestartCount"] > after_api["RestartCount"]
        return seen if grown and seen["State"]["Running"] else None

    assert_hardened(await eventually(restarted_by_docker, timeout=30, interval=0.2), **LIMITS)

    # A cold restart on another node (its first node lost, with the container): the
    # scheduler moves the record and the new node creates it afresh from the spec.
    other = agents.start(token=await enrol())
    await eventually(lambda: online(api, other.key), timeout=30)
    granted = await api.post(f"/api/v1/devices/{other.key}/grants", json={"tenant": user.tenant_id})
    assert granted.status_code == 201, granted.text
    gone = docker("rm", "-f", name)
    assert gone.returncode == 0, gone.stderr
    async with httpx.AsyncClient(base_url=stack.url("orchestrator"), timeout=30) as orchestrator:
        moved = await orchestrator.post(
            f"/v1/containers/{container['id']}/relocation",
            json={"source": agent.key, "target": other.key, "migration": "m-cold", "restart": True},
            headers=scheduler_headers(stack, user.tenant_id),
        )
    assert moved.status_code == 200, moved.text

    async def recreated() -> dict[str, Any] | None:
        done = docker("inspect", "--type", "container", name)
        if done.returncode != 0:
            return None
        seen = dict(json.loads(done.stdout)[0])
        return seen if seen["State"]["Running"] else None

    again = await eventually(recreated, timeout=60, interval=0.2)
    assert again["Id"] != first["Id"]
    assert_hardened(again, **LIMITS)


async def test_a_migration_restored_on_the_peer_is_hardened(
    runtime: DockerRuntime, node_broker: NodeBroker, names, tmp_path: Path
) -> None:
    """The peer's side of a migration, driven by a scripted source over the real broker: the
    spec comes from the cloud's record, through the scheduler, and the container it starts
    gets this node's policy. (A source that sends a spec of its own is refused:
    tests/agent/test_peer_migration.py::test_a_source_cannot_say_what_is_created.)"""
    spec = make_spec(names(), limits=Limits(memory=40 * MIB, cpus=0.25, pids=40))
    async with (
        peer_node(TARGET, runtime, node_broker, tmp_path / "target") as target,
        announced(target, spec) as (migration, key, login),
        source_side(node_broker, migration, key, login) as source,
    ):
        await ask(source, spec)
        await source.send("configuration", {})
        assert (await source.get_message(TARGET, timeout=20)).kind == "configuration_ok"
        await source.send("dependencies", {"image": False, "context": False})
        await source.send_file("app", tar_of({"./data.txt": b"moved"}))
        await source.send("activate", {})
        activated = await source.get_message(TARGET, timeout=30)
        assert activated.kind == "activated", activated.body
        await source.send("done", {})
    restored = inspect(spec.docker_name)
    assert restored["Id"] == activated.body["docker_id"]
    assert restored["State"]["Running"] is True
    assert_hardened(restored, memory=40 * MIB, cpus=0.25, pids=40)


# Each probe prints "<name>=<exit code>" after its own messages.
PROBES = {
    "mount": "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m",
    "raw_socket": "ping -c 1 -W 2 127.0.0.1",
    "kernel_module": "printf notamodule > /tmp/m.ko && insmod /tmp/m.ko",
    "root_write": "touch /probe-root",
    "docker_socket": 'test -n "$(find / -xdev -name docker.sock)"',
    # A pattern that does not match this very script's command line.
    "other_process": "ps | grep -q 'sleep 424[2]'",
}
PROBE_SCRIPT = " ; ".join(f'( {probe} ) 2>&1; echo "{name}=$?"' for name, probe in PROBES.items())


def probe_results(output: str) -> tuple[dict[str, int], str]:
    codes = {}
    for line in output.splitlines():
        name, _, code = line.partition("=")
        if name in PROBES and code.isdigit():
            codes[name] = int(code)
    return codes, output


@ONE_DATABASE
async def test_escapes_from_a_tenant_container_fail_for_the_right_reason(
    client, node, neighbours
) -> None:
    agent, user = node
    # Another tenant on the same node, with a process anyone would recognise.
    neighbour = await neighbours(agent.key)
    await create(client, neighbour, agent.key, "neighbour", command=["sleep", "4242"])
    mine = await create(client, user, agent.key, "prisoner", command=["sleep", "3600"])

    inside = await exec_in(client, user, mine["id"], PROBE_SCRIPT)
    codes, output = probe_results(inside["output"])
    assert set(codes) == set(PROBES), output
    assert all(code != 0 for code in codes.values()), output
    # Refused by the kernel for lack of privilege, not for a missing tool or file.
    assert "mount: permission denied" in output, output
    assert "ping: permission denied" in output, output
    assert "insmod: can't insert '/tmp/m.ko': Operation not permitted" in output, output
    assert "touch: /probe-root: Read-only file system" in output, output
    # Its own processes only: the sleep it runs and the probe's shell, nothing of the node.
    listed = await exec_in(client, user, mine["id"], "ls -d /proc/[0-9]* | wc -l; ps")
    assert "sleep 3600" in listed["output"]
    assert "sleep 4242" not in listed["output"]
    assert "dockerd" not in listed["output"]
    assert int(listed["output"].split()[0]) < 10, listed["output"]

    # The control: the same probes in the same image, without the hardening (a throwaway
    # container, sharing the node's PIDs and given the Docker socket) succeed or fail
    # differently, so each refusal above is the hardening's doing.
    control = docker(
        "run", "--rm", "--network", "none", "--pid", "host",
        "--cap-add", "SYS_ADMIN", "--cap-add", "NET_RAW",
        "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
        "-v", f"{DOCKER_SOCKET}:{DOCKER_SOCKET}", IMAGE, "sh", "-c", PROBE_SCRIPT,
    )  # fmt: skip
    unhardened, control_output = probe_results(control.stdout + control.stderr)
    assert unhardened == {**unhardened, "mount": 0, "raw_socket": 0, "root_write": 0,
                          "docker_socket": 0, "other_process": 0}, control_output  # fmt: skip
    # This node itself lacks CAP_SYS_MODULE, so no container can load a module here; the
    # control shows the call reaches the kernel's module loader instead of the capability
    # check the tenant's container fails.
    assert "Operation not permitted" not in control_output, control_output
    assert "insmod: can't insert '/tmp/m.ko'" in control_output, control_output

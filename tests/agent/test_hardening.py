"""The create body, the network policy and the device checks (Docker only for the last)."""

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.runtime.errors import PolicyRefused
from edgecloud_agent.runtime.hardening import ContainerPolicy, create_body, device_entry
from edgecloud_agent.settings import AgentSettings
from edgecloud_contracts.containers import MIB, Limits
from edgecloud_contracts.interfaces import DeviceMapping

from .conftest import containers_named, make_spec


def test_every_container_is_hardened() -> None:
    spec = make_spec("t-x", limits=Limits(memory=128 * MIB, cpus=1.5, pids=100))
    body = create_body(spec, ContainerPolicy(network="none"))
    host = body["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["Memory"] == host["MemorySwap"] == 128 * MIB
    assert host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 100
    assert host["ReadonlyRootfs"] is True
    assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,size=64m"}
    assert not host["Binds"]
    # Its own application volume, and nothing of the host.
    assert host["Mounts"] == [
        {
            "Type": "volume",
            "Source": f"edgecloud-app-{spec.container_id}",
            "Target": "/app",
            "ReadOnly": False,
            "VolumeOptions": {"Labels": body["Labels"]},
        }
    ]
    assert not host["Devices"]
    assert host["NetworkMode"] == "none"
    assert host["PidMode"] == ""
    assert host["IpcMode"] == "private"
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }
    assert body["Labels"] == {
        "edgecloud.managed": "true",
        "edgecloud.container_id": spec.container_id,
        "edgecloud.tenant": "tenant-1",
        "edgecloud.owner": "alice",
    }
    assert body["Env"] == ["GREETING=hello"]
    assert body["Cmd"] == ["sleep", "600"]


def test_restart_policy_and_auto_remove() -> None:
    policy = ContainerPolicy(network="none")
    kept = create_body(make_spec("t-x", restart_policy="on-failure"), policy)["HostConfig"]
    assert kept["RestartPolicy"]["Name"] == "on-failure"
    assert kept["AutoRemove"] is False
    job_body = create_body(make_spec("t-x", auto_remove=True), policy)
    job = job_body["HostConfig"]
    # The agent removes a finished job itself, once its logs are shipped.
    assert job["AutoRemove"] is False
    assert job_body["Labels"]["edgecloud.auto_remove"] == "true"
    # Docker refuses a restart policy together with auto-remove.
    assert job["RestartPolicy"]["Name"] == "no"


def test_no_command_keeps_the_image_default() -> None:
    body = create_body(make_spec("t-x", command=None), ContainerPolicy(network="none"))
    assert "Cmd" not in body


def test_host_network_needs_the_operator() -> None:
    with pytest.raises(PolicyRefused) as refused:
        create_body(make_spec("t-x"), ContainerPolicy(network="host"))
    assert refused.value.code == "policy_refused"
    allowed = create_body(make_spec("t-x"), ContainerPolicy("host", allow_host_network=True))
    assert allowed["HostConfig"]["NetworkMode"] == "host"
    with pytest.raises(PolicyRefused):
        ContainerPolicy(network="container:other", allow_host_network=True).check()


def test_settings_refuse_host_network_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AgentSettings().container_network == "bridge"
    monkeypatch.setenv("AGENT_CONTAINER_NETWORK", "host")
    with pytest.raises(ValidationError, match="allow_host_network"):
        AgentSettings()
    monkeypatch.setenv("AGENT_ALLOW_HOST_NETWORK", "true")
    assert AgentSettings().container_policy == ContainerPolicy("host", allow_host_network=True)
    monkeypatch.setenv("AGENT_CONTAINER_NETWORK", "none")
    assert AgentSettings().container_policy.network == "none"


@pytest.fixture
def dev_entries(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Things under /dev a spec might name: a character device of the test's own, a
    block device, a regular file, and links leading out of /dev or to the node's memory."""
    tag = secrets.token_hex(4)
    made = {
        "char": f"/dev/edgecloud-test-{tag}-char",
        "block": f"/dev/edgecloud-test-{tag}-block",
        "file": f"/dev/shm/edgecloud-test-{tag}-file",
        "out": f"/dev/edgecloud-test-{tag}-out",
        "mem": f"/dev/edgecloud-test-{tag}-mem",
    }
    os.mknod(made["char"], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(made["block"], 0o600 | stat.S_IFBLK, os.makedev(7, 250))
    Path(made["file"]).write_text("x")
    os.symlink("/etc/passwd", made["out"])
    os.symlink("/dev/mem", made["mem"])
    yield made
    for path in made.values():
        Path(path).unlink(missing_ok=True)


def mapping(path: str, *, read_only: bool = False) -> DeviceMapping:
    return DeviceMapping(
        interface="x", host_path=path, container_path="/dev/ttyS0", read_only=read_only
    )


def test_a_declared_character_device_is_mapped_read_only_when_declared_so(
    dev_entries: dict[str, str],
) -> None:
    spec = make_spec("t-x", devices=[mapping(dev_entries["char"], read_only=True)])
    body = create_body(spec, ContainerPolicy(network="none"))
    assert body["HostConfig"]["Devices"] == [
        {
            "PathOnHost": dev_entries["char"],
            "PathInContainer": "/dev/ttyS0",
            "CgroupPermissions": "r",
        }
    ]
    assert device_entry(mapping(dev_entries["char"]))["CgroupPermissions"] == "rw"


@pytest.mark.parametrize("kind", ["block", "file", "out", "mem"])
def test_anything_but_a_plain_character_device_is_refused(
    dev_entries: dict[str, str], kind: str
) -> None:
    with pytest.raises(PolicyRefused):
        device_entry(mapping(dev_entries[kind]))


@pytest.mark.parametrize(
    "path", ["/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/tty3", "/dev/nonexistent"]
)
def test_the_nodes_own_devices_are_refused(path: str) -> None:
    with pytest.raises(PolicyRefused):
        device_entry(mapping(path))


async def test_a_refused_device_leaves_no_container(
    runtime: DockerRuntime, names: Callable[[], str], dev_entries: dict[str, str]
) -> None:
    spec = make_spec(names(), devices=[mapping(dev_entries["char"]), mapping("/dev/mem")])
    with pytest.raises(PolicyRefused):
        await runtime.create(spec)
    assert containers_named(spec.docker_name) == []

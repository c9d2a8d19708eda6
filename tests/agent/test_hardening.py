"""The create body and the node's container policy, without Docker (the device checks:
test_devices; the node's isolation on the real engine: tests/agent/test_isolation.py)."""

import pytest
from pydantic import ValidationError

from edgecloud_agent.runtime.errors import PolicyRefused, PortRefused
from edgecloud_agent.runtime.hardening import ContainerPolicy, Placement, create_body
from edgecloud_agent.settings import AgentSettings
from edgecloud_contracts.containers import MIB, Limits, PortMapping

from .conftest import make_spec

IMAGE_ID = "sha256:" + "ab" * 32


def placed(network: str = "edgecloud-t-0123456789a", **env: str) -> Placement:
    return Placement(image_id=IMAGE_ID, network=network, volume="edgecloud-app-x", env=env)


def test_every_container_is_hardened() -> None:
    spec = make_spec("t-x", limits=Limits(memory=128 * MIB, cpus=1.5, pids=100))
    body = create_body(spec, ContainerPolicy(), placed(EDGECLOUD_MQTT_USERNAME="c01"))
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
        {"Type": "volume", "Source": "edgecloud-app-x", "Target": "/app", "ReadOnly": False}
    ]
    assert not host["Devices"]
    # Its tenant's network, no IPv6 (nothing link-local to the node), nothing published.
    assert host["NetworkMode"] == "edgecloud-t-0123456789a"
    assert host["Sysctls"] == {"net.ipv6.conf.all.disable_ipv6": "1"}
    assert not host["PortBindings"]
    assert host["PublishAllPorts"] is False
    assert host["PidMode"] == ""
    assert host["IpcMode"] == "private"
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-size": "10m", "max-file": "3"},
    }
    # By the ID its tenant may run, never a name another tenant's action could move.
    assert body["Image"] == IMAGE_ID
    assert body["Labels"] == {
        "edgecloud.managed": "true",
        "edgecloud.container_id": spec.container_id,
        "edgecloud.tenant": "tenant-1",
        "edgecloud.owner": "alice",
        "edgecloud.image": spec.image,
        "edgecloud.auto_remove": "false",
        "edgecloud.generation": "1",
    }
    assert body["Env"] == ["GREETING=hello", "EDGECLOUD_MQTT_USERNAME=c01"]
    assert body["Cmd"] == ["sleep", "600"]


def test_a_container_without_a_network() -> None:
    body = create_body(make_spec("t-x", network="none"), ContainerPolicy(), placed("none"))
    assert body["HostConfig"]["NetworkMode"] == "none"
    assert body["HostConfig"]["Sysctls"] is None


def test_ports_only_from_the_operators_range() -> None:
    spec = make_spec("t-x", ports=[PortMapping(container=80, host=30080)])
    with pytest.raises(PortRefused) as refused:
        create_body(spec, ContainerPolicy(), placed())  # no range: nothing published
    assert refused.value.code == "port_refused"
    with pytest.raises(PortRefused):
        create_body(spec, ContainerPolicy(ports=(31000, 31999)), placed())
    body = create_body(spec, ContainerPolicy(ports=(30000, 30999)), placed())
    assert body["ExposedPorts"] == {"80/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "30080"}]}


def test_pids_above_the_nodes_cap_are_refused() -> None:
    spec = make_spec("t-x", limits=Limits(pids=2048))
    with pytest.raises(PolicyRefused):
        create_body(spec, ContainerPolicy(pids_per_container=1024), placed())
    assert create_body(spec, ContainerPolicy(pids_per_container=4096), placed())


def test_restart_policy_and_auto_remove() -> None:
    policy = ContainerPolicy()
    kept = create_body(make_spec("t-x", restart_policy="on-failure"), policy, placed())
    assert kept["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
    assert kept["HostConfig"]["AutoRemove"] is False
    job_body = create_body(make_spec("t-x", auto_remove=True), policy, placed())
    job = job_body["HostConfig"]
    # The agent removes a finished job itself, once its logs are shipped.
    assert job["AutoRemove"] is False
    assert job_body["Labels"]["edgecloud.auto_remove"] == "true"
    # Docker refuses a restart policy together with auto-remove.
    assert job["RestartPolicy"]["Name"] == "no"


def test_no_command_keeps_the_image_default() -> None:
    body = create_body(make_spec("t-x", command=None), ContainerPolicy(), placed())
    assert "Cmd" not in body


def test_settings_make_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AgentSettings().container_policy == ContainerPolicy(pids_per_container=1024)
    monkeypatch.setenv("AGENT_PUBLISHED_PORTS", "30000-30099")
    monkeypatch.setenv("AGENT_CONTAINER_PIDS_MAX", "512")
    assert AgentSettings().container_policy == ContainerPolicy(512, (30000, 30099))
    for bad in ("30000", "30100-30000", "0-10", "a-b", "30000-70000"):
        monkeypatch.setenv("AGENT_PUBLISHED_PORTS", bad)
        with pytest.raises(ValidationError, match="published_ports"):
            AgentSettings()
    monkeypatch.delenv("AGENT_PUBLISHED_PORTS")
    monkeypatch.setenv("AGENT_TENANT_BLOCKED_NETWORKS", '["203.0.113.0/24", "not a network"]')
    with pytest.raises(ValidationError, match="tenant_blocked_networks"):
        AgentSettings()

"""The create body and the network policy, without Docker (the device checks: test_devices)."""

import pytest
from pydantic import ValidationError

from edgecloud_agent.runtime.errors import PolicyRefused
from edgecloud_agent.runtime.hardening import ContainerPolicy, create_body
from edgecloud_agent.settings import AgentSettings
from edgecloud_contracts.containers import MIB, Limits

from .conftest import make_spec


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

"""The runtime against the real Docker engine: hardening, lifecycle, pulls, events.

Containers are made as the node makes them (their image resolved for their tenant, then
provisioned: the tenant's network, an /app disk, a broker login)."""

import asyncio
import contextlib
import secrets
import subprocess
import tarfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.deploy.outbox import Outbox
from edgecloud_agent.deploy.reports import ReportSender, forward_container_events
from edgecloud_agent.isolation.networks import network_name
from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.runtime.errors import (
    ContainerNotFound,
    ImagePullFailed,
    NameConflict,
    PolicyRefused,
)
from edgecloud_agent.runtime.reports import PullStatus
from edgecloud_contracts import uris
from edgecloud_contracts.containers import MIB, ContainerReport, NodeReport

from .conftest import containers_named, docker, docker_inspect, make_spec

Create = Callable[..., Any]

pytestmark = pytest.mark.stack

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


async def test_created_container_is_hardened(
    runtime: DockerRuntime, create: Create, names: Callable[[], str]
) -> None:
    spec = make_spec(names())
    created = await create(spec)
    assert created.state == "created"
    assert created.container_id == spec.container_id
    started = await runtime.start(spec.docker_name, container_id=spec.container_id)
    assert started.state == "running"

    data = docker_inspect(spec.docker_name)
    host = data["HostConfig"]
    assert data["Name"] == f"/{spec.docker_name}"
    assert data["Id"] == created.docker_id == started.docker_id
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    assert not host["CapAdd"]
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True
    assert host["Memory"] == 64 * MIB
    assert host["MemorySwap"] == 64 * MIB
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert not host["Binds"]
    assert not host["Devices"]
    assert not host["VolumesFrom"]
    # Its own volume at /app, and nothing of the host (so never the Docker socket).
    assert [(m["Type"], m["Name"], m["Destination"], m["RW"]) for m in data["Mounts"]] == [
        ("volume", f"edgecloud-app-{spec.container_id}", "/app", True)
    ]
    assert host["Tmpfs"] == {"/tmp": "rw,noexec,nosuid,size=64m"}
    assert host["NetworkMode"] == network_name("tenant-1")
    assert host["Sysctls"] == {"net.ipv6.conf.all.disable_ipv6": "1"}
    assert host["PidMode"] == ""
    assert host["IpcMode"] == "private"
    assert host["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "3", "max-size": "10m"},
    }
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert data["Config"]["Labels"] == {
        "edgecloud.managed": "true",
        "edgecloud.container_id": spec.container_id,
        "edgecloud.tenant": "tenant-1",
        "edgecloud.owner": "alice",
        "edgecloud.image": spec.image,
        "edgecloud.auto_remove": "false",
        "edgecloud.generation": "1",
    }
    # Made from the image's ID, never from a name another tenant could move.
    assert data["Config"]["Image"].startswith("sha256:")
    assert created.image == spec.image
    assert "GREETING=hello" in data["Config"]["Env"]
    assert data["Config"]["Cmd"] == ["sleep", "600"]


async def test_pids_above_the_nodes_cap_are_refused(
    provisioner: Provisioner, create: Create, names: Callable[[], str]
) -> None:
    spec = make_spec(names())
    capped = spec.model_copy(update={"limits": spec.limits.model_copy(update={"pids": 4096})})
    with pytest.raises(PolicyRefused):
        await create(capped)
    assert containers_named(spec.docker_name) == []


async def test_lifecycle(runtime: DockerRuntime, create: Create, names: Callable[[], str]) -> None:
    spec = make_spec(names())
    name, cid = spec.docker_name, spec.container_id
    await create(spec)
    running = await runtime.start(name, container_id=cid)
    assert running.state == "running"
    assert running.started_at is not None

    stopped = await runtime.stop(name, container_id=cid, timeout_s=0)
    assert stopped.state == "exited"
    assert stopped.exit_code == 137
    assert stopped.finished_at is not None

    again = await runtime.start(name, container_id=cid)
    assert again.state == "running"
    assert again.started_at is not None
    assert again.started_at > running.started_at

    restarted = await runtime.restart(name, container_id=cid, timeout_s=0)
    assert restarted.state == "running"
    assert restarted.started_at is not None
    assert restarted.started_at > again.started_at

    seen = await runtime.inspect(name)
    assert seen is not None
    assert seen.state == "running"
    assert seen.container_id == cid

    # Addressed by name *and* container id: another id cannot touch it.
    with pytest.raises(ContainerNotFound):
        await runtime.stop(name, container_id="c-someone-else", timeout_s=0)
    await runtime.remove(name, container_id="c-someone-else")
    assert len(containers_named(name)) == 1

    await runtime.remove(name, container_id=cid)
    assert containers_named(name) == []
    assert await runtime.inspect(name) is None
    await runtime.remove(name, container_id=cid)  # not there: not an error


async def test_name_taken_by_a_container_we_did_not_make(
    runtime: DockerRuntime, create: Create, names: Callable[[], str]
) -> None:
    name = names()
    docker("create", "--network", "none", "--name", name, "edgecloud/busybox:latest", check=True)
    with pytest.raises(NameConflict) as conflict:
        await create(make_spec(name))
    assert conflict.value.code == "name_conflict"
    foreign = await runtime.inspect(name)
    assert foreign is not None
    assert foreign.container_id is None
    with pytest.raises(ContainerNotFound):
        await runtime.start(name, container_id="c-anything")


async def test_create_converges_on_its_own_container(
    create: Create, names: Callable[[], str]
) -> None:
    spec = make_spec(names())
    first = await create(spec)
    second = await create(spec)
    assert second.docker_id == first.docker_id
    assert containers_named(spec.docker_name) == [first.docker_id]


async def test_a_pull_reports_its_progress_and_gives_the_image_id(
    provisioner: Provisioner, registry: str
) -> None:
    docker("image", "rm", "-f", registry)
    assert await provisioner.images.shared(registry) is None
    progress: list[PullStatus] = []
    image_id = await provisioner.images.pull(registry, progress.append)
    assert image_id == docker("image", "inspect", "-f", "{{.Id}}", registry).stdout.strip()
    assert len(progress) >= 2
    assert progress[0].status.startswith("Pulling")
    assert progress[-1].status == "done"
    assert all(update.image == registry for update in progress)
    assert await provisioner.images.shared(registry) == image_id


@pytest.fixture
def fresh_image(registry: str, tmp_path: Path) -> Iterator[str]:
    """An image in the registry whose layer this engine has never seen (so it downloads)."""
    tag = f"127.0.0.1:5000/edgecloud/probe:{secrets.token_hex(4)}"
    root = tmp_path / "rootfs"
    root.mkdir()
    (root / "payload").write_bytes(secrets.token_bytes(3 * MIB))  # random: no compression
    with tarfile.open(tmp_path / "rootfs.tar", "w") as tar:
        tar.add(root, arcname=".")
    docker("import", str(tmp_path / "rootfs.tar"), tag, check=True)
    docker("push", tag, check=True)
    docker("image", "rm", "-f", tag, check=True)
    yield tag
    docker("image", "rm", "-f", tag)
    # Drop the tag from the registry too (its blob stays until a garbage collection).
    repository, _, reference = tag.removeprefix("127.0.0.1:5000/").partition(":")
    head = subprocess.run(
        [
            "curl",
            "-sfI",
            "-H",
            f"Accept: {MANIFEST_V2}",
            f"http://127.0.0.1:5000/v2/{repository}/manifests/{reference}",
        ],
        capture_output=True,
        text=True,
        timeout=10,
    )
    for line in head.stdout.splitlines():
        if line.lower().startswith("docker-content-digest:"):
            digest = line.split(":", 1)[1].strip()
            subprocess.run(
                [
                    "curl",
                    "-sf",
                    "-X",
                    "DELETE",
                    f"http://127.0.0.1:5000/v2/{repository}/manifests/{digest}",
                ],
                capture_output=True,
                timeout=10,
            )


async def test_pull_progress_counts_bytes(runtime: DockerRuntime, fresh_image: str) -> None:
    progress: list[PullStatus] = []
    await runtime.pull(fresh_image, progress.append)
    sized = [update for update in progress if update.total]
    assert sized, progress
    assert all(u.current is not None and u.total and u.current <= u.total for u in sized)
    assert sized[-1].current == sized[-1].total
    assert progress[-1].status == "done"


async def test_pull_of_an_image_that_does_not_exist(
    runtime: DockerRuntime, create: Create, registry: str, names: Callable[[], str]
) -> None:
    with pytest.raises(ImagePullFailed) as failed:
        await runtime.pull("127.0.0.1:5000/edgecloud/no-such-image:1.0")
    assert failed.value.code == "image_pull_failed"
    name = names()
    with pytest.raises(ImagePullFailed):
        await create(make_spec(name, image="127.0.0.1:5000/edgecloud/busybox:no-such-tag"))
    assert containers_named(name) == []


class RecordingUplink:
    connected = True
    link = "wan"
    sessions_joined = 1

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.changed = asyncio.Condition()

    async def call(self, uri: str, *args: object, timeout: float) -> object:
        self.calls.append((uri, args[0]))
        async with self.changed:
            self.changed.notify_all()
        return None

    def containers(self) -> list[ContainerReport]:
        reports = [NodeReport.model_validate(payload) for _, payload in self.calls]
        return [report.container for report in reports if report.container is not None]

    def saw(self, container_id: str, state: str) -> bool:
        return any(
            report.container_id == container_id and report.state == state
            for report in self.containers()
        )


@contextlib.asynccontextmanager
async def reporting(runtime: DockerRuntime, state_dir: Path) -> AsyncIterator[RecordingUplink]:
    """Docker events forwarded as node reports to a recording uplink, as the agent does."""
    uplink = RecordingUplink()
    with contextlib.closing(Outbox(state_dir)) as outbox:
        sender = ReportSender(uplink=uplink, outbox=outbox, timeout_s=5)
        async with asyncio.TaskGroup() as tasks:
            forwarding = tasks.create_task(forward_container_events(runtime, sender))
            sending = tasks.create_task(sender.run())
            await asyncio.sleep(0.5)  # the subscription is up
            try:
                yield uplink
            finally:
                forwarding.cancel()
                sending.cancel()


async def wait_for_state(uplink: RecordingUplink, container_id: str, state: str) -> None:
    async with asyncio.timeout(10), uplink.changed:
        await uplink.changed.wait_for(lambda: uplink.saw(container_id, state))


async def test_state_changes_are_reported(
    runtime: DockerRuntime, create: Create, names: Callable[[], str], tmp_path: Path
) -> None:
    spec = make_spec(names())
    name, cid = spec.docker_name, spec.container_id
    async with reporting(runtime, tmp_path) as uplink:
        await create(spec)
        await runtime.start(name, container_id=cid)
        await wait_for_state(uplink, cid, "running")
        await runtime.stop(name, container_id=cid, timeout_s=0)
        await wait_for_state(uplink, cid, "exited")
        await runtime.remove(name, container_id=cid)
        await wait_for_state(uplink, cid, "removed")
        # Containers the cloud did not make are none of its business.
        other = names()
        docker("run", "--rm", "--network", "none", "--name", other, "edgecloud/busybox:latest")
        await asyncio.sleep(0.3)
    assert all(uri == uris.NODE_REPORT for uri, _ in uplink.calls)
    # (Other platform containers on this engine, e.g. of a dev stack, may report too.)
    assert other not in {report.docker_name for report in uplink.containers()}
    assert {r.docker_name for r in uplink.containers() if r.container_id == cid} == {name}

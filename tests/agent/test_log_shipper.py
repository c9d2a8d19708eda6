"""The log shipper on a real Docker engine: a container's output spooled in segments cut
by size and by time, from a cursor that survives the agent's restart (no line lost or taken
twice, also among lines of one instant), within a bounded spool, and the rest of it taken
before the container is removed."""

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.deploy.log_shipper import LogShipper
from edgecloud_agent.deploy.transfers import CloudFiles
from edgecloud_agent.isolation.provision import Provisioner
from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.state.log_spool import START, LogSpool
from edgecloud_agent.uplink.errors import CallFailed, NotConnected
from edgecloud_contracts import errors
from edgecloud_contracts.containers import ContainerReport, ContainerSpec
from edgecloud_contracts.log_segments import LogSegment, ShippedLine
from tests.agent.conftest import make_spec
from tests.conftest import eventually


class Offline:
    """The uplink of a node that has no session now: its grants wait."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def call(self, uri: str, *args: object, timeout: float) -> Any:
        self.asked.append(uri)
        raise NotConnected("no session")


@pytest.fixture
async def files() -> AsyncIterator[CloudFiles]:
    opened = CloudFiles("http://127.0.0.1:9")
    yield opened
    await opened.close()


def shipper_in(
    runtime: DockerRuntime, spool: LogSpool, files: CloudFiles, **options: Any
) -> LogShipper:
    async def open_gate() -> None:
        return None

    return LogShipper(
        runtime=runtime, spool=spool, uplink=Offline(), files=files, gate=open_gate, **options
    )


def drain(spool: LogSpool) -> list[dict[str, Any]]:
    """Take every spooled segment, oldest first (what an upload would do)."""
    taken = []
    while (entry := spool.oldest()) is not None:
        taken.append(json.loads(entry.body))
        spool.remove(entry.seq)
    return taken


def texts(segments: list[dict[str, Any]]) -> list[str]:
    return [line["text"] for segment in segments for line in segment["lines"]]


async def started(
    runtime: DockerRuntime, create: Callable[[ContainerSpec], Any], spec: ContainerSpec
) -> ContainerReport:
    await create(spec)
    return await runtime.start(spec.docker_name, container_id=spec.container_id)


async def finished(runtime: DockerRuntime, name: str) -> bool:
    found = await runtime.inspect(name)
    return found is not None and found.state == "exited"


async def test_segments_are_cut_by_size_and_by_time(
    runtime: DockerRuntime, create, names, files: CloudFiles, tmp_path: Path
) -> None:
    spool = LogSpool(tmp_path, max_bytes=64 << 20)
    shipper = shipper_in(runtime, spool, files, segment_bytes=4096, segment_s=0.3)
    # 200 lines of 100 characters at once, then one line alone a while later.
    script = (
        "i=0; while [ $i -lt 200 ]; do printf 'L%099d\\n' $i; i=$((i+1)); done;"
        " sleep 3; echo lone; sleep 600"
    )
    spec = make_spec(names(), command=["sh", "-c", script], restart_policy="no")
    report = await started(runtime, create, spec)
    try:
        shipper.observe(report)

        async def all_of_the_burst() -> list[dict[str, Any]] | None:
            segments = drain(spool)
            burst.extend(segments)
            return burst if len(texts(burst)) >= 200 else None

        burst: list[dict[str, Any]] = []
        await eventually(all_of_the_burst, timeout=20, interval=0.1)
        assert texts(burst) == [f"L{i:099d}" for i in range(200)]
        # Cut by size: several segments, none much over the size (one line at most).
        assert len(burst) >= 5
        for segment in burst:
            assert len(json.dumps(segment)) < 4096 + 300
        # Cut by time: the lone line goes alone, long before a segment would be full.
        lone = await eventually(lambda: _async(drain(spool)), timeout=20, interval=0.1)
        assert texts(lone) == ["lone"]
    finally:
        await shipper.close()
        spool.close()


async def _async(value: Any) -> Any:
    return value


async def test_a_restarted_shipper_goes_on_from_its_cursor(
    runtime: DockerRuntime, create, names, files: CloudFiles, tmp_path: Path
) -> None:
    """Lines come in bursts (many share a microsecond stamp); the shipper is stopped and a
    new one started on the same state twice while they come: every line once, in order."""
    script = "n=0; while [ $n -lt 3000 ]; do seq $((n+1)) $((n+300)); n=$((n+300)); sleep 0.4; done"
    spec = make_spec(names(), command=["sh", "-c", script], restart_policy="no")
    report = await started(runtime, create, spec)
    taken: list[dict[str, Any]] = []
    for _ in range(3):
        spool = LogSpool(tmp_path, max_bytes=64 << 20)
        shipper = shipper_in(runtime, spool, files, segment_bytes=2048, segment_s=0.2)
        shipper.observe(report)
        await asyncio.sleep(1.0)
        await shipper.close()
        taken.extend(drain(spool))
        spool.close()
    await eventually(lambda: finished(runtime, spec.docker_name), timeout=30, interval=0.2)
    spool = LogSpool(tmp_path, max_bytes=64 << 20)
    shipper = shipper_in(runtime, spool, files)
    stopped = await runtime.inspect(spec.docker_name)
    assert stopped is not None
    shipper.observe(stopped)  # read to its end, from the cursor
    try:

        async def everything() -> bool:
            taken.extend(drain(spool))
            return len(texts(taken)) >= 3000

        await eventually(everything, timeout=30, interval=0.2)
        await asyncio.sleep(0.5)
        taken.extend(drain(spool))
        assert texts(taken) == [str(n) for n in range(1, 3001)]
    finally:
        await shipper.close()
        spool.close()


async def test_a_full_spool_pauses_reading_and_loses_nothing(
    runtime: DockerRuntime, create, names, files: CloudFiles, tmp_path: Path
) -> None:
    spool = LogSpool(tmp_path, max_bytes=1)  # full with one segment in it
    shipper = shipper_in(runtime, spool, files, segment_bytes=1024, segment_s=0.1)
    spec = make_spec(names(), command=["sh", "-c", "seq 1 500; sleep 600"])
    report = await started(runtime, create, spec)
    taken: list[dict[str, Any]] = []
    try:
        shipper.observe(report)
        while len(texts(taken)) < 500:
            await eventually(lambda: _async(len(spool) > 0), timeout=20, interval=0.05)
            await asyncio.sleep(0.2)
            assert len(spool) == 1  # it waited for room
            taken.extend(drain(spool))
        assert texts(taken) == [str(n) for n in range(1, 501)]
    finally:
        await shipper.close()
        spool.close()


async def test_sealing_takes_the_rest_before_removal(
    runtime: DockerRuntime, create, names, files: CloudFiles, tmp_path: Path
) -> None:
    spool = LogSpool(tmp_path, max_bytes=64 << 20)
    shipper = shipper_in(runtime, spool, files, segment_s=3600)
    spec = make_spec(names(), command=["sh", "-c", "seq 1 50; sleep 600"])
    report = await started(runtime, create, spec)
    try:
        shipper.observe(report)
        await asyncio.sleep(1.0)
        assert len(spool) == 0  # nothing cut yet: neither full nor old enough
        await shipper.seal(spec.docker_name, spec.container_id)
        assert texts(drain(spool)) == [str(n) for n in range(1, 51)]
        await runtime.remove(spec.docker_name, container_id=spec.container_id)
        # Sealing a container that is gone costs nothing and takes nothing.
        await shipper.seal(spec.docker_name, spec.container_id)
        assert len(spool) == 0
    finally:
        await shipper.close()
        spool.close()


async def test_the_node_seals_a_container_before_removing_it(
    runtime: DockerRuntime, provisioner: Provisioner, create, names, files: CloudFiles, tmp_path
) -> None:
    """A container removed before its output was followed (made and removed between two
    events, or while the spool was full): the node takes its lines first."""
    spool = LogSpool(tmp_path, max_bytes=64 << 20)
    shipper = shipper_in(runtime, spool, files)
    node = Provisioner(
        runtime=provisioner.runtime,
        images=provisioner.images,
        networks=provisioner.networks,
        firewall=provisioner.firewall,
        disks=provisioner.disks,
        identities=provisioner.identities,
        broker=provisioner.broker,
        cgroups=provisioner.cgroups,
        tenant_share=provisioner.tenant_share,
        before_remove=shipper.seal,
    )
    spec = make_spec(names(), command=["sh", "-c", "seq 1 20; sleep 600"])
    await started(runtime, create, spec)
    try:

        async def printed() -> bool:
            lines, _ = await runtime.logs(
                spec.docker_name, container_id=spec.container_id, tail=100, since=None
            )
            return len(lines) == 20

        await eventually(printed, timeout=20, interval=0.1)
        await node.remove(spec.docker_name, container_id=spec.container_id, tenant_id=None)
        assert await runtime.inspect(spec.docker_name) is None
        assert texts(drain(spool)) == [str(n) for n in range(1, 21)]
    finally:
        await shipper.close()
        spool.close()


async def test_segments_wait_behind_the_bulk_gate_and_stay_until_they_go(
    runtime: DockerRuntime, files: CloudFiles, tmp_path: Path
) -> None:
    """On the mesh (the uplink's bulk gate shut) nothing is sent, not even a grant asked
    for; once it opens, a segment that cannot go stays spooled for the next try."""
    spool = LogSpool(tmp_path, max_bytes=64 << 20)
    wan = asyncio.Event()
    uplink = Offline()
    shipper = LogShipper(runtime=runtime, spool=spool, uplink=uplink, files=files, gate=wan.wait)
    spool.put(
        LogSegment(
            container_id="c-held",
            lines=[ShippedLine(at=datetime.now(UTC), stream="stdout", text="held")],
        ),
        START,
    )
    uploader = asyncio.create_task(shipper.run())
    try:
        await asyncio.sleep(1.0)
        assert uplink.asked == []
        wan.set()
        await eventually(lambda: _async(uplink.asked), timeout=10, interval=0.05)
        assert len(spool) == 1
    finally:
        uploader.cancel()
        await asyncio.gather(uploader, return_exceptions=True)
        spool.close()


class NotPlacedHere:
    """The cloud's answer while a container is not (yet) placed on this node."""

    def __init__(self) -> None:
        self.asked: list[object] = []

    async def call(self, uri: str, *args: object, timeout: float) -> Any:
        self.asked.append(args[0])
        raise CallFailed(uri, errors.NOT_FOUND, [], {})


async def test_segments_the_cloud_takes_no_grant_for_yet_wait_without_holding_others_up(
    runtime: DockerRuntime, files: CloudFiles, tmp_path: Path
) -> None:
    """A migration's target runs the container a moment before the cloud records the move:
    its first segments wait (asked for again later), and other containers' go meanwhile."""
    spool = LogSpool(tmp_path, max_bytes=64 << 20)
    uplink = NotPlacedHere()

    async def open_gate() -> None:
        return None

    shipper = LogShipper(runtime=runtime, spool=spool, uplink=uplink, files=files, gate=open_gate)
    for container_id in ("c-moving", "c-other"):
        spool.put(
            LogSegment(
                container_id=container_id,
                lines=[ShippedLine(at=datetime.now(UTC), stream="stdout", text="x")],
            ),
            START,
        )
    uploader = asyncio.create_task(shipper.run())
    try:
        await eventually(lambda: _async("c-other" in uplink.asked), timeout=10, interval=0.05)
        await asyncio.sleep(0.5)
        assert uplink.asked == ["c-moving", "c-other"]  # each asked once, not in a loop
        assert len(spool) == 2  # both kept for the next try
    finally:
        uploader.cancel()
        await asyncio.gather(uploader, return_exceptions=True)
        spool.close()

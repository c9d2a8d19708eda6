"""The node's durable outbox, and the report sender draining it over a fake uplink."""

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgecloud_agent.deploy.outbox import Outbox
from edgecloud_agent.deploy.reports import ReportSender
from edgecloud_agent.uplink.errors import CallFailed, NotConnected
from edgecloud_contracts import errors
from edgecloud_contracts.containers import (
    ContainerReport,
    DataBatch,
    DataPoint,
    NodeReport,
    PullProgress,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def container(state: str) -> ContainerReport:
    return ContainerReport(
        container_id="c-1", docker_id="d-1", docker_name="u-web", image="busybox", state=state
    )


def batch(value: float) -> DataBatch:
    return DataBatch(container_id="c-1", points=[DataPoint(at=NOW, name="t", value=value)])


def report(kind: str, label: str) -> NodeReport:
    """A report with an id, told apart by ``label`` (a container state or a data value)."""
    fields = {"container": container(label)} if kind == "container" else {"data": [batch(0)]}
    return NodeReport(id=f"{kind}-{label}", kind=kind, at=NOW, **fields)  # type: ignore[arg-type]


def ids(outbox: Outbox, **held: tuple[str, ...]) -> list[str | None]:
    return [entry.report.id for entry in outbox.oldest(100, **held)]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with contextlib.closing(Outbox(tmp_path)) as box:
        yield box


def test_reports_keep_their_order(outbox: Outbox) -> None:
    for label in ("a", "b", "c"):
        outbox.put(report("container", label))
    outbox.put(report("data", "d"))
    assert ids(outbox) == ["container-a", "container-b", "container-c", "data-d"]
    outbox.remove("container-b")
    outbox.remove("container-b")  # acknowledged twice: no harm
    assert ids(outbox) == ["container-a", "container-c", "data-d"]
    assert ids(outbox, held=("data",)) == ["container-a", "container-c"]
    assert len(outbox) == 3


def test_unreadable_reports_are_dropped_and_the_readable_ones_still_come(
    outbox: Outbox,
) -> None:
    outbox.put(report("container", "a"))
    outbox.put(report("container", "b"))
    outbox.put(report("container", "c"))
    # As if written by an agent that spoke another contract.
    outbox._db.execute("UPDATE reports SET payload = '{}' WHERE id != 'container-c'")
    # Asked for the oldest one, it passes over both to the one it can read.
    assert [entry.report.id for entry in outbox.oldest(1)] == ["container-c"]
    assert (outbox.dropped, len(outbox)) == (2, 1)
    assert ids(outbox) == ["container-c"]


def test_reports_survive_reopening(tmp_path: Path) -> None:
    with contextlib.closing(Outbox(tmp_path)) as first:
        first.put(report("container", "a"))
        first.put(report("data", "b"))
        last_seq = first.last_seq
    with contextlib.closing(Outbox(tmp_path)) as again:
        assert ids(again) == ["container-a", "data-b"]
        assert len(again) == 2
        again.put(report("container", "c"))
        assert again.last_seq > last_seq
        assert ids(again) == ["container-a", "data-b", "container-c"]


def test_a_full_outbox_drops_data_first(tmp_path: Path) -> None:
    with contextlib.closing(Outbox(tmp_path, max_reports=3)) as outbox:
        outbox.put(report("container", "a"))
        outbox.put(report("data", "b"))
        outbox.put(report("container", "c"))
        assert outbox.put(report("container", "d")) == ["data-b"]
        assert outbox.put(report("container", "e")) == ["container-a"]
        assert ids(outbox) == ["container-c", "container-d", "container-e"]
        assert (len(outbox), outbox.dropped) == (3, 2)


class FakeUplink:
    """Connected or not, on the WAN or the mesh; fails the calls it is told to."""

    def __init__(self) -> None:
        self.connected = False
        self.link = "wan"
        self.sessions_joined = 0
        self.failures = 0
        self.call_s = 0.0
        self.received: list[NodeReport] = []
        self.arrived = asyncio.Condition()

    def connect(self) -> None:
        self.connected = True
        self.sessions_joined += 1

    async def call(self, uri: str, *args: object, timeout: float) -> object:
        if not self.connected:
            raise NotConnected("no session")
        await asyncio.sleep(self.call_s)
        if self.failures:
            self.failures -= 1
            raise NotConnected("link lost")
        self.received.append(NodeReport.model_validate(args[0]))
        async with self.arrived:
            self.arrived.notify_all()
        return None

    def labels(self) -> list[str]:
        """What arrived: a container's state, a data value, or the kind."""
        return [label(report) for report in self.received]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(lambda: len(self.received) >= count)


def label(report: NodeReport) -> str:
    if report.container is not None:
        return report.container.state
    if report.data is not None:
        return f"data {report.data[0].points[0].value:g}"
    return report.kind


@contextlib.asynccontextmanager
async def sending(outbox: Outbox, uplink: FakeUplink) -> AsyncIterator[ReportSender]:
    sender = ReportSender(uplink=uplink, outbox=outbox, timeout_s=1, poll_s=0.01)
    runner = asyncio.create_task(sender.run())
    try:
        yield sender
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_reports_made_offline_all_arrive_in_order(outbox: Outbox) -> None:
    uplink = FakeUplink()
    async with sending(outbox, uplink) as sender:
        sender.container(container("created"))
        sender.data([batch(1)])
        sender.container(container("running"))
        await asyncio.sleep(0.05)
        assert (uplink.received, sender.pending, sender.dropped) == ([], 3, 0)
        uplink.connect()
        await uplink.wait_for(3)
        await asyncio.sleep(0.05)
    assert uplink.labels() == ["created", "data 1", "running"]
    assert len({r.id for r in uplink.received}) == 3
    assert all(len(r.id or "") == 32 for r in uplink.received)
    assert (sender.pending, sender.sent, sender.dropped) == (0, 3, 0)


async def test_reports_written_before_a_crash_are_sent_after_it(tmp_path: Path) -> None:
    with contextlib.closing(Outbox(tmp_path)) as before:
        sender = ReportSender(uplink=FakeUplink(), outbox=before, timeout_s=1)
        sender.container(container("exited"))  # the agent dies before sending it
    uplink = FakeUplink()
    uplink.connect()
    with contextlib.closing(Outbox(tmp_path)) as after:
        async with sending(after, uplink):
            await uplink.wait_for(1)
        assert uplink.labels() == ["exited"]


async def test_a_failed_report_is_repeated_before_the_next(outbox: Outbox) -> None:
    uplink = FakeUplink()
    async with sending(outbox, uplink) as sender:
        for state in ("created", "running", "exited"):
            sender.container(container(state))
        uplink.connect()
        await uplink.wait_for(1)
        uplink.failures = 2  # the second report fails twice, then goes
        await uplink.wait_for(3)
        await asyncio.sleep(0.05)
    assert uplink.failures == 0  # both failures happened: the report was really repeated
    assert uplink.labels() == ["created", "running", "exited"]
    assert sender.pending == 0


async def test_a_report_the_cloud_refuses_does_not_block_the_rest(outbox: Outbox) -> None:
    uplink = FakeUplink()
    refused = CallFailed("edge.orchestrator.report", errors.INVALID_ARGUMENT, [], {})
    calls = 0

    async def refuse_the_first(uri: str, *args: object, timeout: float) -> object:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise refused
        return await FakeUplink.call(uplink, uri, *args, timeout=timeout)

    uplink.call = refuse_the_first  # type: ignore[method-assign]
    uplink.connect()
    async with sending(outbox, uplink) as sender:
        sender.container(container("created"))
        sender.container(container("running"))
        await uplink.wait_for(1)
    assert uplink.labels() == ["running"]
    assert (sender.pending, sender.dropped) == (0, 1)


async def test_deliver_returns_once_acknowledged(outbox: Outbox) -> None:
    uplink = FakeUplink()
    async with sending(outbox, uplink) as sender:
        end = NodeReport(kind="container", container=container("exited"), at=NOW)
        delivered = asyncio.create_task(sender.deliver(end))
        await asyncio.sleep(0.05)
        assert not delivered.done()
        assert sender.pending == 1
        uplink.connect()
        await asyncio.wait_for(delivered, 5)
    assert uplink.labels() == ["exited"]
    assert sender.pending == 0


async def test_data_waits_on_the_mesh_while_control_reports_go(outbox: Outbox) -> None:
    uplink = FakeUplink()
    uplink.link = "lowpan"
    uplink.connect()
    async with sending(outbox, uplink) as sender:
        sender.data([batch(1)])
        sender.container(container("running"))
        sender.data([batch(2)])
        sender.container(container("exited"))
        sender.pull(PullProgress(command_id="k", image="busybox", status="Downloading"))
        await uplink.wait_for(2)
        await asyncio.sleep(0.05)
        assert uplink.labels() == ["running", "exited"]
        assert (sender.pending, sender.dropped) == (2, 1)
        uplink.link = "wan"
        await uplink.wait_for(4)
    assert uplink.labels() == ["running", "exited", "data 1", "data 2"]


async def test_pull_progress_is_dropped_while_disconnected(outbox: Outbox) -> None:
    uplink = FakeUplink()
    async with sending(outbox, uplink) as sender:
        sender.pull(PullProgress(command_id="k", image="busybox", status="Downloading"))
        sender.inventory([container("running")])
        uplink.connect()
        sender.pull(PullProgress(command_id="k", image="busybox", status="Extracting"))
        await uplink.wait_for(1)
        await asyncio.sleep(0.05)
    assert [r.pull.status for r in uplink.received if r.pull] == ["Extracting"]
    assert all(r.id is None for r in uplink.received)
    assert (len(uplink.received), sender.dropped) == (1, 2)


async def test_an_inventory_follows_the_reports_made_before_it(outbox: Outbox) -> None:
    uplink = FakeUplink()
    uplink.call_s = 0.02  # the replay takes a while
    async with sending(outbox, uplink) as sender:
        for state in ("created", "running", "exited"):
            sender.container(container(state))
        uplink.connect()
        await asyncio.sleep(0.005)  # the replay has begun
        sender.inventory([container("exited")])  # the snapshot after the reconnect
        sender.container(container("removed"))  # and a change after it
        await uplink.wait_for(5)
    assert uplink.labels() == ["created", "running", "exited", "inventory", "removed"]


def test_every_durable_report_gets_its_own_id(outbox: Outbox) -> None:
    sender = ReportSender(uplink=FakeUplink(), outbox=outbox, timeout_s=1)
    for _ in range(3):
        sender.data([batch(1)])
    found = ids(outbox)
    assert len(set(found)) == 3
    assert all(uuid.UUID(hex=i or "").version == 4 for i in found)

"""The monitor's triggers: sustained pressure, predicted failure, drain; never a short blip.

Time is driven through the injected clock (a sample every 5 s); the health probes are real
small commands.
"""

import asyncio
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from edgecloud_agent.monitor.health import (
    DiskErrorCounter,
    DrainFlag,
    HealthProbe,
    TemperatureSensor,
)
from edgecloud_agent.monitor.monitor import (
    Monitor,
    MonitorConfig,
    Sample,
    SystemSampler,
    request_over,
)
from edgecloud_agent.monitor.pressure import (
    ConsecutiveFailures,
    CounterGrowth,
    Limit,
    RisingEdge,
    SustainedPressure,
)
from edgecloud_agent.uplink.errors import CallFailed, NotConnected
from edgecloud_contracts import errors, uris
from edgecloud_contracts.migrations import MigrationReason, NodeMigrationRequest

STEP = 5.0


def fired_at(detector: SustainedPressure, readings: list[tuple[float, float]]) -> list[float]:
    return [at for at, value in readings if detector.observe(at, value)]


def steady(value: float, start: float, end: float) -> list[tuple[float, float]]:
    """A reading every STEP seconds from start up to, not including, end."""
    return [(start + i * STEP, value) for i in range(round((end - start) / STEP))]


# The detectors


def test_short_blips_fire_nothing() -> None:
    detector = SustainedPressure(90, 70, 60)
    blips = [*steady(97, 0, 55), (55, 89), *steady(97, 60, 115), (115, 50)]
    assert fired_at(detector, blips) == []
    assert not detector.tripped


def test_sustained_pressure_fires_exactly_once() -> None:
    detector = SustainedPressure(90, 70, 60)
    assert fired_at(detector, steady(97, 0, 3600)) == [60]
    assert detector.tripped


def test_no_second_firing_until_the_value_went_under_clear_below() -> None:
    detector = SustainedPressure(90, 70, 60)
    readings = (
        steady(97, 0, 100)
        + steady(80, 100, 120)  # under the threshold, not under clear_below
        + steady(97, 120, 300)
        + [(300, 60)]  # cleared
        + steady(97, 305, 400)
    )
    assert fired_at(detector, readings) == [60, 365]


def test_cooldown_holds_back_a_second_overload() -> None:
    detector = SustainedPressure(90, 70, 60, cooldown_s=300)
    readings = [*steady(97, 0, 100), (100, 10), *steady(97, 105, 500)]
    # Sustained again from 165 on, but within 300 s of the first firing.
    assert fired_at(detector, readings) == [60, 360]


def test_consecutive_failures_need_an_unbroken_streak() -> None:
    detector = ConsecutiveFailures(3)
    outcomes = [False, False, True, False, False, False, False, False, True, False]
    fired = [i for i, ok in enumerate(outcomes) if detector.observe(i * STEP, ok)]
    assert fired == [5]
    assert not detector.tripped  # the success at 8 re-armed it


def test_an_error_counter_fires_on_growth_only() -> None:
    detector = CounterGrowth(2)
    counts = [40, 41, 42, 42, 43, 44, 3, 4, 5]  # errors from before start; a reset at 6
    fired = [i for i, count in enumerate(counts) if detector.observe(i * STEP, count)]
    assert fired == [2, 5, 8]


def test_a_flag_fires_when_it_goes_up() -> None:
    edge = RisingEdge()
    assert [edge.observe(up) for up in (True, True, False, False, True)] == [
        True,
        False,
        False,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("threshold", "clear_below", "for_s", "cooldown_s"),
    [
        (-1, 0, 60, 0),
        (90, 95, 60, 0),  # clear_below above the threshold
        (90, -5, 60, 0),
        (90, 70, -1, 0),
        (90, 70, 60, -1),
        (math.nan, 70, 60, 0),
        (90, 70, math.inf, 0),
    ],
)
def test_bad_limits_are_refused(
    threshold: float, clear_below: float, for_s: float, cooldown_s: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        SustainedPressure(threshold, clear_below, for_s, cooldown_s=cooldown_s)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ConsecutiveFailures(0),
        lambda: CounterGrowth(0),
        lambda: HealthProbe([], timeout_s=1),
        lambda: HealthProbe(["true"], timeout_s=0),
        lambda: MonitorConfig(interval_s=0),
        lambda: MonitorConfig(cooldown_s=-1),
        lambda: MonitorConfig(probe_failures=0),
        lambda: MonitorConfig(cpu=Limit(threshold=90, clear_below=95, for_s=60)),
        lambda: MonitorConfig(memory=Limit(threshold=-90, clear_below=0, for_s=60)),
    ],
)
def test_bad_configuration_is_refused(build: Any) -> None:
    with pytest.raises(ValueError, match="must"):
        build()


# The health inputs


def test_temperature_from_a_thermal_zone_file(tmp_path: Path) -> None:
    zone = tmp_path / "temp"
    sensor = TemperatureSensor(zone)
    assert sensor.read() is None  # not there (yet): unknown, not hot
    zone.write_text("91500\n")
    assert sensor.read() == 91.5
    zone.write_text("hot\n")
    assert sensor.read() is None


def test_disk_error_counter_reads_hex_and_decimal(tmp_path: Path) -> None:
    counter_file = tmp_path / "ioerr_cnt"
    counter = DiskErrorCounter(counter_file)
    assert counter.read() is None
    counter_file.write_text("0x1f\n")
    assert counter.read() == 31
    counter_file.write_text("12\n")
    assert counter.read() == 12
    counter_file.write_text("many\n")
    assert counter.read() is None


def test_drain_flag_is_a_file(tmp_path: Path) -> None:
    flag = DrainFlag(tmp_path / "drain")
    assert not flag.is_set()
    (tmp_path / "drain").touch()
    assert flag.is_set()


async def test_health_probe_verdicts() -> None:
    healthy = await HealthProbe(["true"], timeout_s=10).run()
    assert healthy is not None
    assert healthy.ok
    failed = await HealthProbe(["sh", "-c", "exit 3"], timeout_s=10).run()
    assert failed is not None
    assert (failed.ok, failed.detail) == (False, "exit status 3")
    hung = await HealthProbe(["sleep", "30"], timeout_s=0.2).run()
    assert hung is not None
    assert (hung.ok, hung.detail) == (False, "no answer in 0.2 s")
    # A probe that cannot start is a configuration error, not a sign of failure.
    assert (await HealthProbe(["/nonexistent/probe"], timeout_s=10).run()) is None


def test_system_sampler_reads_percentages(tmp_path: Path) -> None:
    sampler = SystemSampler(tmp_path, TemperatureSensor(tmp_path / "missing"))
    sample = sampler()
    for value in (sample.cpu_percent, sample.memory_percent, sample.disk_percent):
        assert 0 <= value <= 100
    assert sample.temperature_c is None


# The monitor


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Scheduler:
    """Records the requests; the next ``failures`` of them fail as on a lost link, the next
    ``over_rate`` are refused for the node's rate of moves, and the next ``deferring`` are
    taken only in part."""

    def __init__(self) -> None:
        self.requests: list[NodeMigrationRequest] = []
        self.failures = 0
        self.over_rate = 0
        self.deferring = 0
        self.attempts = 0

    async def __call__(self, request: NodeMigrationRequest) -> object:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise NotConnected("no session")
        if self.over_rate:
            self.over_rate -= 1
            raise CallFailed(uris.MIGRATION_REQUEST, errors.TOO_MANY_REQUESTS, [], {})
        self.requests.append(request)
        if self.deferring:
            self.deferring -= 1
            return {"migrations": ["m-1"], "deferred": ["c-21", "c-22"]}
        return {"migrations": []}


class Node:
    """A monitor over scripted gauges."""

    def __init__(self, **config: Any) -> None:
        self.clock = Clock()
        self.scheduler = Scheduler()
        self.sample = Sample(cpu_percent=10, memory_percent=20, disk_percent=30)
        self.monitor = Monitor(
            config=MonitorConfig(**config),
            request=self.scheduler,
            sampler=lambda: self.sample,
            clock=self.clock,
        )

    async def run_for(self, seconds: float, **gauges: Any) -> None:
        """Hold the gauges for ``seconds``, checking every STEP seconds."""
        self.sample = Sample(**{**self.sample.__dict__, **gauges})
        for _ in range(round(seconds / STEP)):
            await self.monitor.check()
            self.clock.now += STEP

    @property
    def reasons(self) -> list[MigrationReason]:
        return [request.reason for request in self.scheduler.requests]


async def test_blips_through_the_monitor_request_nothing() -> None:
    node = Node()
    for _ in range(10):
        await node.run_for(30, cpu_percent=99, memory_percent=99, disk_percent=99)
        await node.run_for(5, cpu_percent=10, memory_percent=10, disk_percent=10)
    assert node.scheduler.attempts == 0


async def test_sustained_cpu_is_requested_once() -> None:
    node = Node()
    await node.run_for(3600, cpu_percent=97)
    assert node.scheduler.requests == [
        NodeMigrationRequest(reason=MigrationReason.CPU, containers=None, detail="cpu 97% for 60 s")
    ]


async def test_memory_and_disk_have_their_own_limits() -> None:
    node = Node(disk_path=Path("/data"))
    await node.run_for(65, memory_percent=92, disk_percent=94)  # disk under its 95%
    await node.run_for(65, memory_percent=92, disk_percent=96)
    assert [r.detail for r in node.scheduler.requests] == [
        "memory 92% for 60 s",
        "disk 96% full (/data) for 60 s",
    ]


async def test_hot_node_predicts_failure() -> None:
    node = Node()
    await node.run_for(25, temperature_c=91)
    assert node.scheduler.requests == []
    await node.run_for(10, temperature_c=91)
    assert node.scheduler.requests == [
        NodeMigrationRequest(
            reason=MigrationReason.PREDICTED_FAILURE, detail="temperature 91 °C for 30 s"
        )
    ]


async def test_probe_failing_in_a_row_predicts_failure(tmp_path: Path) -> None:
    sick = tmp_path / "sick"
    node = Node(probe_command=["test", "!", "-e", str(sick)], probe_failures=3)
    await node.run_for(30)
    sick.touch()
    await node.run_for(2 * STEP)
    sick.unlink()  # one success breaks the streak
    await node.run_for(STEP)
    sick.touch()
    await node.run_for(2 * STEP)
    assert node.scheduler.requests == []
    await node.run_for(10 * STEP)
    assert node.reasons == [MigrationReason.PREDICTED_FAILURE]
    assert node.scheduler.requests[0].detail == (
        "health probe failed 3 times in a row (exit status 1)"
    )


@pytest.mark.parametrize("command", [["false"], ["sh", "-c", "exit 1"]])
async def test_a_failing_probe_command_triggers(command: list[str]) -> None:
    node = Node(probe_command=command, probe_failures=2)
    await node.run_for(STEP)
    assert node.scheduler.requests == []
    await node.run_for(STEP)
    assert node.reasons == [MigrationReason.PREDICTED_FAILURE]


async def test_a_healthy_probe_triggers_nothing() -> None:
    node = Node(probe_command=["true"], probe_failures=1)
    await node.run_for(10 * STEP)
    assert node.scheduler.attempts == 0


async def test_a_hanging_probe_is_timed_out_and_counts_as_a_failure() -> None:
    node = Node(probe_command=["sleep", "30"], probe_timeout_s=0.1, probe_failures=2)
    await node.run_for(2 * STEP)
    assert [r.detail for r in node.scheduler.requests] == [
        "health probe failed 2 times in a row (no answer in 0.1 s)"
    ]


async def test_new_disk_errors_predict_failure(tmp_path: Path) -> None:
    counter = tmp_path / "ioerr_cnt"
    counter.write_text("0x10\n")  # errors from before the agent started
    node = Node(disk_errors_path=counter, disk_errors_limit=2)
    await node.run_for(30)
    counter.write_text("0x11\n")
    await node.run_for(STEP)
    assert node.scheduler.requests == []
    counter.write_text("0x12\n")
    await node.run_for(STEP)
    assert [r.detail for r in node.scheduler.requests] == [f"2 new I/O errors in {counter}"]


async def test_drain_file_requests_every_container_to_leave(tmp_path: Path) -> None:
    drain = tmp_path / "drain"
    node = Node(drain_path=drain)
    await node.run_for(30)
    drain.touch()
    await node.run_for(600)
    assert node.reasons == [MigrationReason.DRAIN]
    assert node.scheduler.requests[0].containers is None
    drain.unlink()
    await node.run_for(STEP)
    drain.touch()
    await node.run_for(STEP)
    assert node.reasons == [MigrationReason.DRAIN, MigrationReason.DRAIN]


async def test_a_failed_request_is_retried_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = Node()
    node.scheduler.failures = 3
    with caplog.at_level(logging.INFO, logger="edgecloud_agent.monitor"):
        await node.run_for(60, cpu_percent=97)
        assert node.scheduler.attempts == 0
        await node.run_for(600, cpu_percent=97)
    assert node.scheduler.attempts == 4  # one a sample, until it went through
    assert node.reasons == [MigrationReason.CPU]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "go through again" in caplog.text


async def test_what_the_scheduler_defers_is_asked_for_again_a_minute_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A drain of more containers than the scheduler moves for a node in a minute: the
    rest are asked for again once a minute has passed, not at every sample, and a refusal
    for the rate is no lost link."""
    node = Node()
    node.scheduler.deferring, node.scheduler.over_rate = 1, 1
    with caplog.at_level(logging.INFO, logger="edgecloud_agent.monitor"):
        await node.run_for(65, cpu_percent=97)  # asked once, taken in part
        assert node.scheduler.attempts == 1
        await node.run_for(55, cpu_percent=97)  # not before a minute
        assert node.scheduler.attempts == 1
        await node.run_for(10, cpu_percent=97)  # refused for the rate: a minute more
        assert node.scheduler.attempts == 2
        await node.run_for(50, cpu_percent=97)
        assert node.scheduler.attempts == 2
        await node.run_for(600, cpu_percent=97)  # then taken whole, and done with
    assert node.scheduler.attempts == 3
    assert node.reasons == [MigrationReason.CPU, MigrationReason.CPU]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_request_is_dropped_when_its_condition_ends_first() -> None:
    node = Node()
    node.scheduler.failures = 1
    await node.run_for(65, cpu_percent=97)
    await node.run_for(STEP, cpu_percent=50)
    await node.run_for(600, cpu_percent=50)
    assert (node.scheduler.attempts, node.scheduler.requests) == (1, [])


async def test_run_samples_every_interval_until_cancelled() -> None:
    clock, scheduler = Clock(), Scheduler()
    naps: list[float] = []
    requested = asyncio.Event()

    async def request(body: NodeMigrationRequest) -> object:
        requested.set()
        return await scheduler(body)

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.now += seconds
        await asyncio.sleep(0)

    monitor = Monitor(
        config=MonitorConfig(interval_s=STEP),
        request=request,
        sampler=lambda: Sample(cpu_percent=97, memory_percent=20, disk_percent=30),
        clock=clock,
        sleep=sleep,
    )
    task = asyncio.create_task(monitor.run())
    await asyncio.wait_for(requested.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [r.detail for r in scheduler.requests] == ["cpu 97% for 60 s"]
    assert set(naps) == {STEP}


async def test_request_over_the_uplink() -> None:
    calls: list[tuple[str, tuple[object, ...], float]] = []

    async def call(uri: str, *args: Any, timeout: float) -> Any:
        calls.append((uri, args, timeout))
        return {"migrations": ["m-1"]}

    request = request_over(call, timeout_s=7)
    body = NodeMigrationRequest(reason=MigrationReason.DRAIN, detail="maintenance")
    assert await request(body) == {"migrations": ["m-1"]}
    assert calls == [
        (
            uris.MIGRATION_REQUEST,
            ({"reason": "drain", "containers": None, "detail": "maintenance"},),
            7,
        )
    ]

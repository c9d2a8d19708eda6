"""The monitor: samples the node every few seconds and asks the scheduler to move containers
off it when a trigger fires (``edge.migration.request``)."""

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import psutil

from edgecloud_contracts import errors, uris
from edgecloud_contracts.migrations import MigrationReason, NodeMigrationRequest

from ..uplink.errors import CallFailed, UplinkError
from .health import DiskErrorCounter, DrainFlag, HealthProbe, TemperatureSensor
from .pressure import (
    ConsecutiveFailures,
    CounterGrowth,
    Detector,
    Limit,
    RisingEdge,
    SustainedPressure,
)

logger = logging.getLogger(__name__)

Request = Callable[[NodeMigrationRequest], Awaitable[object]]


class UplinkCall(Protocol):
    async def __call__(self, uri: str, *args: Any, timeout: float) -> Any: ...


def request_over(call: UplinkCall, *, timeout_s: float) -> Request:
    """The monitor's request as a call of ``edge.migration.request`` through the uplink."""

    async def request(body: NodeMigrationRequest) -> object:
        return await call(uris.MIGRATION_REQUEST, body.model_dump(mode="json"), timeout=timeout_s)

    return request


RATE_WAIT_S = 60.0
"""How long a request the scheduler held back (its rate of a node's moves) waits."""

CPU_LIMIT = Limit(threshold=90.0, clear_below=70.0, for_s=60.0)
MEMORY_LIMIT = Limit(threshold=90.0, clear_below=80.0, for_s=60.0)
DISK_LIMIT = Limit(threshold=95.0, clear_below=90.0, for_s=60.0)
TEMPERATURE_LIMIT = Limit(threshold=85.0, clear_below=80.0, for_s=30.0)
"""Degrees Celsius: a chip that hot for half a minute is about to throttle or shut down."""


@dataclass(frozen=True, kw_only=True)
class MonitorConfig:
    interval_s: float = 5.0
    cooldown_s: float = 300.0
    """The least time between two requests of one trigger."""
    cpu: Limit = CPU_LIMIT
    memory: Limit = MEMORY_LIMIT
    disk: Limit = DISK_LIMIT
    disk_path: Path = Path("/")
    temperature: Limit = TEMPERATURE_LIMIT
    """Degrees Celsius."""
    temperature_path: Path | None = None
    """A file in millidegrees (``/sys/class/thermal/thermal_zone0/temp``); None: psutil's
    sensors, the hottest of them."""
    probe_command: Sequence[str] = ()
    """argv of the operator's health probe; empty: none."""
    probe_timeout_s: float = 10.0
    probe_failures: int = 3
    disk_errors_path: Path | None = None
    """A cumulative I/O error counter (``/sys/block/sda/device/ioerr_cnt``); None: none."""
    disk_errors_limit: int = 1
    """New errors since the agent started (or since the last request) that predict failure."""
    drain_path: Path | None = None
    """Present: an operator drains the node (``<state_dir>/drain``); None: no drain flag."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.interval_s) and self.interval_s > 0):
            raise ValueError(f"interval_s must be > 0, not {self.interval_s}")
        if not (math.isfinite(self.cooldown_s) and self.cooldown_s >= 0):
            raise ValueError(f"cooldown_s must be >= 0, not {self.cooldown_s}")
        if not (math.isfinite(self.probe_timeout_s) and self.probe_timeout_s > 0):
            raise ValueError(f"probe_timeout_s must be > 0, not {self.probe_timeout_s}")
        if self.probe_failures < 1 or self.disk_errors_limit < 1:
            raise ValueError("probe_failures and disk_errors_limit must be at least 1")
        object.__setattr__(self, "probe_command", tuple(self.probe_command))


@dataclass(frozen=True)
class Sample:
    cpu_percent: float
    memory_percent: float
    disk_percent: float
    temperature_c: float | None = None


@dataclass
class SystemSampler:
    """Reads the node's gauges. CPU is measured between this sampler's own readings:
    ``psutil.cpu_percent(interval=None)`` keeps one last reading per thread, which the
    heartbeat's probe shares, so each would see only the time since the other's call."""

    disk_path: Path
    temperature: TemperatureSensor = field(default_factory=TemperatureSensor)

    def __post_init__(self) -> None:
        self._last_cpu = _busy_and_total(psutil.cpu_times())

    def __call__(self) -> Sample:
        busy, total = _busy_and_total(psutil.cpu_times())
        last_busy, last_total = self._last_cpu
        self._last_cpu = busy, total
        elapsed = total - last_total
        cpu = 100.0 * (busy - last_busy) / elapsed if elapsed > 0 else 0.0
        return Sample(
            cpu_percent=min(100.0, max(0.0, cpu)),
            memory_percent=psutil.virtual_memory().percent,
            disk_percent=psutil.disk_usage(str(self.disk_path)).percent,
            temperature_c=self.temperature.read(),
        )


def _busy_and_total(times: Any) -> tuple[float, float]:
    # Linux counts guest time in user time as well (psutil leaves it out of the total too).
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class Monitor:
    """Samples every ``interval_s`` and requests a migration once per trigger that fires.

    A request the uplink fails is tried again at each sample while its trigger stays
    tripped, and dropped when the condition ends first.
    """

    def __init__(
        self,
        *,
        config: MonitorConfig,
        request: Request,
        sampler: Callable[[], Sample] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._request = request
        self._sample = sampler or SystemSampler(
            config.disk_path, TemperatureSensor(config.temperature_path)
        )
        self._clock = clock
        self._sleep = sleep
        cooldown = config.cooldown_s
        self._gauges = {
            name: SustainedPressure(
                limit.threshold, limit.clear_below, limit.for_s, cooldown_s=cooldown
            )
            for name, limit in (
                ("cpu", config.cpu),
                ("memory", config.memory),
                ("disk", config.disk),
                ("temperature", config.temperature),
            )
        }
        self._probe = (
            HealthProbe(config.probe_command, timeout_s=config.probe_timeout_s)
            if config.probe_command
            else None
        )
        self._probe_failures = ConsecutiveFailures(config.probe_failures, cooldown_s=cooldown)
        self._disk_errors = (
            DiskErrorCounter(config.disk_errors_path) if config.disk_errors_path else None
        )
        self._disk_error_growth = CounterGrowth(config.disk_errors_limit, cooldown_s=cooldown)
        self._drain = DrainFlag(config.drain_path) if config.drain_path else None
        self._drained = RisingEdge()
        self._pending: dict[str, tuple[Detector, NodeMigrationRequest]] = {}
        self._not_before: dict[str, float] = {}
        self._failing = False

    async def run(self) -> None:
        """Check every interval until cancelled."""
        while True:
            await self.check()
            await self._sleep(self._config.interval_s)

    async def check(self) -> None:
        """Read every input once, then send the requests of what fired (or failed before)."""
        now = self._clock()
        sample = self._sample()
        self._gauge("cpu", MigrationReason.CPU, now, sample.cpu_percent, "%")
        self._gauge("memory", MigrationReason.MEMORY, now, sample.memory_percent, "%")
        disk_unit = f"% full ({self._config.disk_path})"
        self._gauge("disk", MigrationReason.DISK, now, sample.disk_percent, disk_unit)
        if sample.temperature_c is not None:
            reason = MigrationReason.PREDICTED_FAILURE
            self._gauge("temperature", reason, now, sample.temperature_c, " °C")
        await self._check_health(now)
        await self._send_pending()

    def _gauge(
        self, name: str, reason: MigrationReason, now: float, value: float, unit: str
    ) -> None:
        detector = self._gauges[name]
        if detector.observe(now, value):
            over_s = 0.0 if detector.over_since is None else now - detector.over_since
            self._fire(name, detector, reason, f"{name} {value:.0f}{unit} for {over_s:.0f} s")

    async def _check_health(self, now: float) -> None:
        if self._probe is not None:
            result = await self._probe.run()
            if result is not None and self._probe_failures.observe(now, result.ok):
                detail = (
                    f"health probe failed {self._probe_failures.streak} times in a row "
                    f"({result.detail})"
                )
                self._fire("probe", self._probe_failures, MigrationReason.PREDICTED_FAILURE, detail)
        if self._disk_errors is not None:
            count = self._disk_errors.read()
            growth = self._disk_error_growth
            baseline = growth.baseline
            if count is not None and growth.observe(now, count):
                detail = f"{count - (baseline or 0)} new I/O errors in {self._disk_errors.path}"
                self._fire("disk_errors", growth, MigrationReason.PREDICTED_FAILURE, detail)
        if self._drain is not None and self._drained.observe(self._drain.is_set()):
            detail = f"an operator drains this node ({self._drain.path})"
            self._fire("drain", self._drained, MigrationReason.DRAIN, detail)

    def _fire(self, name: str, detector: Detector, reason: MigrationReason, detail: str) -> None:
        logger.warning("migration trigger %s: %s", name, detail)
        # None: every container of the node; the scheduler picks where they go.
        request = NodeMigrationRequest(reason=reason, containers=None, detail=detail)
        self._pending[name] = detector, request

    async def _send_pending(self) -> None:
        for name, (detector, request) in list(self._pending.items()):
            if not detector.tripped:
                logger.info("trigger %s ended before its migration request went out", name)
                del self._pending[name]
                self._not_before.pop(name, None)
                continue
            if self._clock() < self._not_before.get(name, 0.0):
                continue
            try:
                answer = await self._request(request)
            except UplinkError as err:
                if isinstance(err, CallFailed) and err.error == errors.TOO_MANY_REQUESTS:
                    # The scheduler moves a node's containers at a bounded rate: later.
                    self._not_before[name] = self._clock() + RATE_WAIT_S
                    logger.info("migration request held back by the scheduler's rate: %s", err)
                    continue
                if not self._failing:
                    logger.error(
                        "cannot request a migration (%s): %s; trying again while it lasts",
                        request.detail,
                        err,
                    )
                self._failing = True
                return  # the link is likely down for the others too: next sample
            if self._failing:
                logger.info("migration requests go through again")
            self._failing = False
            deferred = answer.get("deferred") if isinstance(answer, dict) else None
            if deferred:
                # Some of them only: the rest are asked for again once the rate allows.
                self._not_before[name] = self._clock() + RATE_WAIT_S
                logger.info("%d containers to move later (the scheduler's rate)", len(deferred))
                continue
            self._not_before.pop(name, None)
            del self._pending[name]
            logger.info("migration requested: %s (%s)", request.reason, request.detail)

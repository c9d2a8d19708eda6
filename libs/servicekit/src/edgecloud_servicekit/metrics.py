"""The Prometheus series every service shares, and gauges read when /metrics is scraped.

Metrics are process-wide; the ``service`` label tells replicas and services apart. No label
ever holds a device key or another id: a fleet would make a time series of each.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from prometheus_client import Gauge, Histogram

from edgecloud_contracts import uris

logger = logging.getLogger(__name__)

# From a loopback round trip (under a millisecond) to an image pulled by a create (minutes).
WAMP_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    180.0,
)

HTTP_REQUEST_SECONDS = Histogram(
    "edgecloud_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["service", "method", "route", "status"],
)
WAMP_CALL_SECONDS = Histogram(
    "edgecloud_wamp_call_duration_seconds",
    "WAMP calls this service made, by procedure family and outcome (each attempt)",
    ["service", "procedure", "outcome"],
    buckets=WAMP_BUCKETS,
)
WAMP_INVOCATION_SECONDS = Histogram(
    "edgecloud_wamp_invocation_duration_seconds",
    "WAMP procedure invocations this service handled, by procedure and outcome",
    ["service", "procedure", "outcome"],
    buckets=WAMP_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "edgecloud_queue_depth",
    "Items waiting in one of the service's in-memory queues",
    ["service", "queue"],
)
UP = Gauge("edgecloud_dependency_up", "1 when a dependency answers", ["service", "dependency"])


def procedure_family(uri: str) -> str:
    """``uri`` as a label: a device's procedures collapse to ``edge.device.*.<operation>``."""
    if not uri.startswith(uris.DEVICE_PREFIX):
        return uri
    _, _, operation = uri[len(uris.DEVICE_PREFIX) :].partition(".")
    return f"{uris.DEVICE_PREFIX}*.{operation or '*'}"


def error_outcome(error_uri: str) -> str:
    """The outcome label of a WAMP error URI: its last part (``invalid_argument``...)."""
    return error_uri.rsplit(".", 1)[-1] or "error"


Refresh = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class _Hook:
    refresh: Refresh
    max_age_s: float
    refreshed_at: float = float("-inf")
    failing: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ScrapeHooks:
    """Gauges set when /metrics is scraped, from where their values live (a queue's size,
    a short query). A hook with ``max_age_s`` runs at most that often: frequent scrapes of
    several replicas cost the database one query per period. A hook that fails or is slow
    leaves its gauges as they were and does not hold the scrape."""

    def __init__(self, *, timeout_s: float = 2.0) -> None:
        self._hooks: list[_Hook] = []
        self._timeout_s = timeout_s

    def add(self, refresh: Refresh, *, max_age_s: float = 0.0) -> Callable[[], None]:
        """Run ``refresh`` before each scrape; returns what removes it again (the lifespan
        that owns what it reads calls that on its way out)."""
        hook = _Hook(refresh, max_age_s)
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook)

    async def run(self) -> None:
        await asyncio.gather(*(self._run(hook) for hook in list(self._hooks)))

    async def _run(self, hook: _Hook) -> None:
        async with hook.lock:  # concurrent scrapes share one refresh
            if time.monotonic() - hook.refreshed_at < hook.max_age_s:
                return
            try:
                await asyncio.wait_for(hook.refresh(), self._timeout_s)
            except Exception as err:  # a gauge left stale must not fail the scrape
                if not hook.failing:
                    logger.warning("metrics from %s not refreshed: %r", hook.refresh, err)
                hook.failing = True
                return
            hook.refreshed_at = time.monotonic()
            if hook.failing:
                logger.info("metrics from %s refreshed again", hook.refresh)
            hook.failing = False

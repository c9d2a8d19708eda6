"""The series every service shares: WAMP calls timed by procedure family (never a device
key in a label) and outcome, and gauges read from where they live when /metrics is scraped."""

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY, Gauge

from edgecloud_servicekit.metrics import procedure_family
from edgecloud_servicekit.observability import install_observability, scrape_hooks
from edgecloud_servicekit.tracing import timed_call
from edgecloud_servicekit.wamp import WampCallError, WampTimeout

SAMPLED = Gauge("edgecloud_test_sampled", "A gauge the tests' scrape hooks set")


@pytest.mark.parametrize(
    ("uri", "family"),
    [
        ("edge.device.rpi_kitchen_b827eb123456.container.create", "edge.device.*.container.create"),
        ("edge.device.node_1.shell.input", "edge.device.*.shell.input"),
        ("edge.device.node_1", "edge.device.*.*"),
        ("edge.registry.heartbeat", "edge.registry.heartbeat"),
        ("wamp.registration.match", "wamp.registration.match"),
    ],
)
def test_device_procedures_collapse_to_their_family(uri: str, family: str) -> None:
    assert procedure_family(uri) == family


def calls(procedure: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "edgecloud_wamp_call_duration_seconds_count",
        {"service": "test-service", "procedure": procedure, "outcome": outcome},
    )
    return value or 0.0


def test_calls_are_timed_by_family_and_outcome() -> None:
    uri = "edge.device.node_77aa.container.create"
    family = "edge.device.*.container.create"
    before = {o: calls(family, o) for o in ("ok", "timeout", "no_such_procedure")}
    with timed_call("test-service", uri):
        pass
    with pytest.raises(WampTimeout), timed_call("test-service", uri):
        raise WampTimeout(uri, 5)
    with pytest.raises(WampCallError), timed_call("test-service", uri):
        raise WampCallError(uri, "wamp.error.no_such_procedure", [], {})
    assert {o: calls(family, o) - before[o] for o in before} == {
        "ok": 1,
        "timeout": 1,
        "no_such_procedure": 1,
    }
    exposed = [
        sample.labels
        for metric in REGISTRY.collect()
        if metric.name == "edgecloud_wamp_call_duration_seconds"
        for sample in metric.samples
    ]
    assert exposed
    assert not any("node_77aa" in value for labels in exposed for value in labels.values())


class Source:
    def __init__(self) -> None:
        self.reads = 0
        self.broken = False

    async def __call__(self) -> None:
        if self.broken:
            raise ConnectionError("database down")
        self.reads += 1
        SAMPLED.set(self.reads)


@pytest.fixture
async def metrics_app() -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = FastAPI()
    install_observability(app, service="test-service")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        yield app, client


def sampled(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("edgecloud_test_sampled "))


async def test_gauges_are_read_when_scraped(metrics_app) -> None:
    app, client = metrics_app
    source = Source()
    remove = scrape_hooks(app).add(source)
    assert sampled((await client.get("/metrics")).text) == "edgecloud_test_sampled 1.0"
    assert sampled((await client.get("/metrics")).text) == "edgecloud_test_sampled 2.0"
    remove()
    await client.get("/metrics")
    assert source.reads == 2


async def test_a_query_behind_a_gauge_runs_at_most_once_per_period(metrics_app) -> None:
    app, client = metrics_app
    source = Source()
    scrape_hooks(app).add(source, max_age_s=60)
    for _ in range(3):
        assert (await client.get("/metrics")).status_code == 200
    assert source.reads == 1


async def test_a_failing_source_leaves_its_gauge_and_the_scrape_answers(
    metrics_app, caplog: pytest.LogCaptureFixture
) -> None:
    app, client = metrics_app
    source = Source()
    scrape_hooks(app).add(source)
    await client.get("/metrics")
    source.broken = True
    with caplog.at_level(logging.INFO, logger="edgecloud_servicekit.metrics"):
        for _ in range(2):
            answer = await client.get("/metrics")
            assert answer.status_code == 200
            assert sampled(answer.text) == "edgecloud_test_sampled 1.0"
        source.broken = False
        await client.get("/metrics")
    # Said once when it breaks, once when it recovers.
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"]

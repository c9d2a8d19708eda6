"""Parsing and batching of the data points applications publish."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edgecloud_agent.runtime.docker import DockerRuntime
from edgecloud_agent.state.desired import DesiredState
from edgecloud_agent.telemetry import datapoints
from edgecloud_agent.telemetry.datapoints import DataCollector, parse
from edgecloud_contracts.containers import DataBatch

NOW = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"temp": 21.5, "rpm": 3}', {"temp": 21.5, "rpm": 3.0}),
        ('{"ok": true, "temp": 1}', {"temp": 1.0}),  # booleans are no measurements
        ('{"label": "x"}', {}),
        ("[1, 2]", {}),
        ("not json", {}),
        ('{"bad name!": 1}', {}),  # one bad name drops the publication whole
        ('{"temp": NaN}', {}),
        ('{"temp": 1e999}', {}),
    ],
)
def test_parse(payload: str, expected: dict[str, float]) -> None:
    assert {p.name: p.value for p in parse(payload, NOW)} == expected


async def test_flush_sends_in_bounded_reports_and_drops_beyond_the_backlog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(datapoints, "MAX_POINTS_PER_REPORT", 5)
    monkeypatch.setattr(datapoints, "MAX_PENDING", 12)
    sent: list[list[DataBatch]] = []
    desired = DesiredState(tmp_path)
    async with DockerRuntime(url="unix:///nonexistent.sock") as runtime:
        collector = DataCollector(runtime=runtime, desired=desired, send=sent.append, mqtt_url="")
        collector.add("a", parse('{"x": 1, "y": 2, "z": 3}', NOW) * 2)
        collector.add("b", parse('{"x": 1}', NOW) * 6)
        collector.add("c", parse('{"x": 1}', NOW))  # over the backlog: dropped
        assert collector.dropped == 1
        for _ in range(4):
            collector.flush()
    desired.close()
    sizes = [[(b.container_id, len(b.points)) for b in report] for report in sent]
    assert sizes == [[("a", 5)], [("a", 1), ("b", 4)], [("b", 2)]]

"""Alert conditions without a database: readings, the raise/clear step, the words."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from edgecloud_contracts.alerts import Transition
from edgecloud_registry.alerts import conditions
from edgecloud_registry.alerts.models import AlertRule
from edgecloud_registry.devices.models import Device

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def device(**fields: Any) -> Device:
    values: dict[str, Any] = {
        "key": "node_a",
        "name": "node-a",
        "status": "online",
        "status_reason": "heartbeat over wan",
        "cpu_percent": 93.0,
        "memory_used": 3 << 30,
        "memory_total": 4 << 30,
        "disk_free": 10 << 30,
        "disk_total": 40 << 30,
        "containers": [
            {"id": "d1", "name": "ann-web", "image": "x", "state": "running", "status": "Up"},
            {
                "id": "d2",
                "name": "ann-job",
                "image": "x",
                "state": "exited",
                "status": "Exited (3)",
            },
            {"id": "d3", "name": "ann-loop", "image": "x", "state": "restarting", "status": ""},
        ],
    }
    return Device(**(values | fields))


def rule(metric: str, **fields: Any) -> AlertRule:
    values: dict[str, Any] = {
        "metric": metric,
        "op": None,
        "threshold": None,
        "docker_name": None,
        "for_seconds": 0,
    }
    return AlertRule(**(values | fields))


@pytest.mark.parametrize(
    ("metric", "op", "threshold", "holds", "value"),
    [
        ("cpu_percent", ">", 80, True, 93.0),
        ("cpu_percent", "<=", 93, True, 93.0),
        ("cpu_percent", "<", 93, False, 93.0),
        ("memory_percent", ">=", 75, True, 75.0),
        ("memory_percent", ">", 75, False, 75.0),
        ("disk_used_percent", ">", 74.9, True, 75.0),
        ("disk_used_percent", "<", 50, False, 75.0),
    ],
)
def test_load_readings_compare_with_the_threshold(
    metric: str, op: str, threshold: float, holds: bool, value: float
) -> None:
    reading = conditions.read(rule(metric, op=op, threshold=threshold), device())
    assert reading is not None
    assert (reading.holds, reading.value) == (holds, value)


def test_the_words_say_what_and_how_far() -> None:
    reading = conditions.read(rule("cpu_percent", op=">", threshold=80), device())
    assert reading is not None
    raised = conditions.raised_message(reading, for_seconds=30, held_s=31.7)
    assert raised == "CPU of node-a at 93% (above 80%) for 31 s"
    assert conditions.raised_message(reading, for_seconds=0, held_s=0) == (
        "CPU of node-a at 93% (above 80%)"
    )
    low = conditions.read(rule("cpu_percent", op=">", threshold=80), device(cpu_percent=41.25))
    assert low is not None
    assert low.cleared == "CPU of node-a back to 41.2% (no longer above 80%)"


def test_offline_holds_only_when_offline() -> None:
    online = conditions.read(rule("offline"), device())
    offline = conditions.read(
        rule("offline"), device(status="offline", status_reason="missed heartbeats")
    )
    assert online is not None
    assert offline is not None
    assert (online.holds, offline.holds) == (False, True)
    assert offline.raised == "node-a is offline (missed heartbeats)"
    assert online.cleared == "node-a is online again"


@pytest.mark.parametrize(
    "metric_rule",
    [
        rule("cpu_percent", op=">", threshold=1),
        rule("exited", docker_name="ann-job"),
    ],
)
def test_an_offline_device_tells_nothing_about_its_load_or_containers(
    metric_rule: AlertRule,
) -> None:
    assert conditions.read(metric_rule, device(status="offline")) is None
    assert conditions.read(metric_rule, None) is None


def test_a_load_never_reported_is_unknown() -> None:
    assert (
        conditions.read(rule("cpu_percent", op=">", threshold=1), device(cpu_percent=None)) is None
    )
    assert (
        conditions.read(rule("memory_percent", op=">", threshold=1), device(memory_total=0)) is None
    )


@pytest.mark.parametrize(
    ("metric", "name", "holds", "words"),
    [
        ("exited", "ann-job", True, "Container ann-job on node-a has exited (Exited (3))"),
        ("exited", "ann-web", False, "Container ann-web on node-a is running (Up)"),
        ("restarting", "ann-loop", True, "Container ann-loop on node-a is restarting"),
        ("restarting", "ann-web", False, "Container ann-web on node-a is running (Up)"),
        ("exited", "ann-gone", False, "Container ann-gone is no longer on node-a"),
    ],
)
def test_container_states(metric: str, name: str, holds: bool, words: str) -> None:
    reading = conditions.read(rule(metric, docker_name=name), device())
    assert reading is not None
    assert reading.holds is holds
    assert (reading.raised if holds else reading.cleared) == words


@pytest.mark.parametrize(
    ("holds", "since", "firing", "for_seconds", "expected"),
    [
        # Starts breaching: remembered, raised at once only without a window.
        (True, None, False, 30, (NOW, None)),
        (True, None, False, 0, (NOW, Transition.RAISED)),
        # Breaching for less than the window, then for all of it.
        (True, NOW - timedelta(seconds=29), False, 30, (NOW - timedelta(seconds=29), None)),
        (
            True,
            NOW - timedelta(seconds=30),
            False,
            30,
            (NOW - timedelta(seconds=30), Transition.RAISED),
        ),
        # Already firing: nothing new while it holds; cleared as soon as it does not.
        (True, NOW - timedelta(seconds=99), True, 30, (NOW - timedelta(seconds=99), None)),
        (False, NOW - timedelta(seconds=99), True, 30, (None, Transition.CLEARED)),
        # A breach shorter than the window is forgotten without an alert.
        (False, NOW - timedelta(seconds=10), False, 30, (None, None)),
    ],
)
def test_step(
    holds: bool,
    since: datetime | None,
    firing: bool,
    for_seconds: int,
    expected: tuple[datetime | None, Transition | None],
) -> None:
    assert (
        conditions.step(
            holds=holds, breaching_since=since, firing=firing, for_seconds=for_seconds, now=NOW
        )
        == expected
    )


def test_default_names() -> None:
    assert conditions.default_name(metric="cpu_percent", op=">", threshold=80.0) == (
        "cpu_percent > 80"
    )
    assert conditions.default_name(metric="offline", op=None, threshold=None) == "offline"

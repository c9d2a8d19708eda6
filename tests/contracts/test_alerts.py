"""Alert rules as users write them: each field alone, then the fields together."""

import pytest
from pydantic import ValidationError

from edgecloud_contracts.alerts import CreateAlertRule


def rule(**fields: object) -> CreateAlertRule:
    return CreateAlertRule.model_validate(
        {"target_kind": "device", "target": "node_a", "metric": "cpu_percent", **fields}
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"op": ">", "threshold": 80},
        {"op": "<=", "threshold": 0, "for_seconds": 86400},
        {"metric": "offline", "for_seconds": 30},
        {"target_kind": "container", "target": "0b6f-41c2", "metric": "exited"},
        {"target_kind": "container", "target": "c1", "metric": "restarting"},
        {"metric": "disk_used_percent", "op": ">=", "threshold": 90.5},
        {"metric": "memory_percent", "op": ">", "threshold": 50, "webhook": "https://x.io/a?b=c"},
    ],
)
def test_whole_rules_have_no_problem(fields: dict) -> None:
    assert rule(**fields).problem() is None


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"metric": "exited"}, "metric", "cpu_percent, memory_percent, disk_used_percent"),
        ({"target_kind": "container", "op": ">", "threshold": 1}, "metric", "exited, restarting"),
        ({"metric": "offline", "op": ">", "threshold": 1}, "op", "takes no op"),
        ({"target_kind": "container", "metric": "exited", "threshold": 1}, "op", "state"),
        ({"threshold": 80}, "op", "needs an op"),
        ({"op": ">"}, "threshold", "needs a threshold"),
        ({"op": ">", "threshold": 101}, "threshold", "0 to 100"),
        ({"op": ">", "threshold": -1}, "threshold", "0 to 100"),
    ],
)
def test_fields_that_do_not_fit_together_are_named(fields: dict, field: str, words: str) -> None:
    problem = rule(**fields).problem()
    assert problem is not None
    assert problem[0] == field
    assert words in problem[1]


@pytest.mark.parametrize(
    "fields",
    [
        {"op": "=>", "threshold": 1},
        {"metric": "temperature"},
        {"target_kind": "node"},
        {"target": "../etc"},
        {"target": "a.b"},
        {"target": ""},
        {"for_seconds": -1},
        {"for_seconds": 86401},
        {"op": ">", "threshold": float("nan")},
        {"webhook": "ftp://example.com/hook"},
        {"webhook": "not a url"},
        {"webhook": "http://"},
        {"webhook": "https://example.com/" + "a" * 2000},
        {"webhook": "https://example.com/\nInjected: header"},
        {"name": "two\nlines"},
        {"colour": "red"},
    ],
)
def test_invalid_fields_are_refused(fields: dict) -> None:
    with pytest.raises(ValidationError):
        rule(**fields)

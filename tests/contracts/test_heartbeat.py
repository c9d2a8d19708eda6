import pytest
from pydantic import ValidationError

from edgecloud_contracts.heartbeat import MAX_CONTAINERS_PER_HEARTBEAT, Heartbeat
from tests.support.beats import heartbeat


def test_valid_heartbeat_round_trips() -> None:
    raw = heartbeat("probe_abc")
    assert Heartbeat.model_validate(raw).model_dump(mode="json") == raw


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("device", "key"), "Has Spaces"),
        (("device", "cpu_count"), 0),
        (("metrics", "cpu_percent"), -1),
        (("interval_s",), 0),
        (("link",), "carrier-pigeon"),
    ],
)
def test_invalid_values_are_refused(path: tuple[str, ...], value: object) -> None:
    raw = heartbeat("probe_abc")
    target = raw
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    with pytest.raises(ValidationError):
        Heartbeat.model_validate(raw)


def test_unknown_fields_and_too_many_containers_are_refused() -> None:
    with pytest.raises(ValidationError):
        Heartbeat.model_validate(heartbeat("probe_abc", surprise=1))
    container = {"id": "c", "name": "n", "image": "i", "state": "running"}
    with pytest.raises(ValidationError):
        Heartbeat.model_validate(
            heartbeat("probe_abc", containers=[container] * (MAX_CONTAINERS_PER_HEARTBEAT + 1))
        )

"""Which failures a transfer tries again, how long it waits, and when it gives up."""

import pytest

from edgecloud_cli import retries
from edgecloud_cli.client import NO_ANSWER, ApiError
from edgecloud_cli.retries import Retries, transient


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ApiError(NO_ANSWER, "unreachable", "cannot reach"), True),
        (ApiError(NO_ANSWER, "timeout", "did not answer"), True),
        (ApiError(NO_ANSWER, "stream_ended", "the download ended"), True),
        (ApiError(NO_ANSWER, "invalid_url", "invalid URL"), False),
        (ApiError(500, "internal_error", "boom"), True),
        (ApiError(503, "database_unavailable", "later"), True),
        (ApiError(501, "http_501", "Not Implemented"), False),
        (ApiError(409, "offset_mismatch", "elsewhere"), False),
        (ApiError(413, "quota_exceeded", "full"), False),
        (ApiError(401, "token_invalid", "expired"), False),
    ],
)
def test_what_is_transient(err: ApiError, expected: bool) -> None:
    assert transient(err) is expected


def test_the_pauses_grow_then_the_error_stands(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    told: list[float] = []
    monkeypatch.setattr(retries, "sleep", slept.append)
    tries = Retries((0.5, 1.0))
    err = ApiError(NO_ANSWER, "unreachable", "cannot reach")
    tries.pause(err, announce=told.append)
    tries.pause(err, announce=told.append)
    with pytest.raises(ApiError) as caught:
        tries.pause(err)
    assert caught.value is err
    assert slept == told == [0.5, 1.0]
    tries.reset()
    tries.pause(err)
    assert slept == [0.5, 1.0, 0.5]


def test_a_lasting_error_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retries, "sleep", pytest.fail)
    with pytest.raises(ApiError):
        Retries().pause(ApiError(422, "checksum_mismatch", "changed"))


def test_retry_after_is_honoured_within_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(retries, "sleep", slept.append)
    tries = Retries((0.5, 0.5, 0.5))
    tries.pause(ApiError(503, "database_unavailable", "later", retry_after="3"))
    tries.pause(ApiError(503, "database_unavailable", "later", retry_after="3600"))
    tries.pause(ApiError(503, "database_unavailable", "later", retry_after="Wed, 21 Oct"))
    assert slept == [3.0, 30.0, 0.5]


def test_the_schedule_rides_out_a_gateway_restart() -> None:
    delays = retries.RETRY_DELAYS_S
    assert list(delays) == sorted(delays)
    assert 45 <= sum(delays) <= 90

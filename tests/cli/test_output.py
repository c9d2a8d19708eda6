"""Formatting helpers: relative times, byte sizes, timestamps."""

from datetime import UTC, datetime

import pytest

from edgecloud_cli.output import ago, human_bytes, when

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2025-06-01T11:59:57Z", "3s ago"),
        ("2025-06-01T11:59:00+00:00", "1m ago"),
        ("2025-06-01T09:30:00Z", "2h ago"),
        ("2025-05-28T12:00:00Z", "4d ago"),
        ("2025-06-01T14:00:00+02:00", "0s ago"),
        ("2025-06-01T12:00:05Z", "0s ago"),  # a clock slightly ahead of ours
        ("2025-06-01T11:59:50", "10s ago"),  # no offset: UTC
        (None, "-"),
        ("yesterday", "-"),
    ],
)
def test_ago(timestamp: str | None, expected: str) -> None:
    assert ago(timestamp, now=NOW) == expected


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536 * 1024**2, "1.5 GiB"),
        (3 * 1024**5, "3.0 PiB"),
        (5 * 1024**6, "5120.0 PiB"),
        (None, "-"),
    ],
)
def test_human_bytes(size: int | None, expected: str) -> None:
    assert human_bytes(size) == expected


def test_when_prints_utc() -> None:
    assert when("2025-06-01T14:05:09+02:00") == "2025-06-01 12:05 UTC"
    assert when(None) == "-"

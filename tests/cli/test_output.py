"""Formatting helpers: relative times, byte sizes, timestamps, pull progress."""

from datetime import UTC, datetime

import pytest

from edgecloud_cli.output import ago, describe_pull, human_bytes, printable, when

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


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        ({"image": "a:1", "status": "Downloading", "current": 512, "total": 2048},
         "pulling a:1: Downloading 512 B/2.0 KiB"),
        ({"image": "a:1", "status": "Extracting", "current": 3 * 1024**2, "total": None},
         "pulling a:1: Extracting 3.0 MiB"),
        ({"image": "a:1", "status": "Pull complete", "current": None, "total": None},
         "pulling a:1: Pull complete"),
        ({"image": "a:1", "status": None}, "pulling a:1: pulling"),
        ({"image": "a:1", "status": "evil\x1b]0;title\x07 \r"}, "pulling a:1: evil ]0;title   "),
    ],
)  # fmt: skip
def test_describe_pull(progress: dict[str, object], expected: str) -> None:
    assert describe_pull(progress) == expected


def test_printable_keeps_text_and_drops_control_characters() -> None:
    assert printable("déjà vu: 100%\n\x9b31m") == "déjà vu: 100%  31m"

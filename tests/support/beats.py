"""Valid heartbeats for tests that speak the protocol themselves."""

from datetime import UTC, datetime
from typing import Any

from edgecloud_contracts.heartbeat import DeviceInfo, Heartbeat, Metrics


def heartbeat(key: str, *, seq: int = 1, location: str = "lab", **overrides: Any) -> dict[str, Any]:
    beat = Heartbeat(
        device=DeviceInfo(
            id=f"{key}/02:00:00:00:00:01",
            key=key,
            name=key,
            mac="02:00:00:00:00:01",
            location=location,
            arch="aarch64",
            os="Test OS",
            kernel="6.1.0",
            cpu_count=4,
            memory_total=4 << 30,
            disk_total=32 << 30,
        ),
        metrics=Metrics(cpu_percent=12.5, load_1m=0.3, memory_used=1 << 30, disk_free=20 << 30),
        containers=[],
        interval_s=5,
        seq=seq,
        sent_at=datetime.now(UTC),
    )
    return {**beat.model_dump(mode="json"), **overrides}


def numbered_heartbeat(key: str, seq: int) -> dict[str, Any]:
    """A heartbeat whose CPU figure is its own number (``seq / 10``): the device's metrics
    history then tells which beats were written (the test stack keeps every beat's)."""
    metrics = Metrics(cpu_percent=seq / 10, load_1m=0.1, memory_used=1 << 30, disk_free=1 << 30)
    return heartbeat(key, seq=seq, metrics=metrics.model_dump(mode="json"))


def numbers_written(series: dict[str, Any]) -> set[int]:
    """The numbers of the numbered heartbeats in a metrics series
    (``GET /api/v1/devices/{key}/metrics``)."""
    return {round(point["cpu_percent"] * 10) for point in series["items"]}

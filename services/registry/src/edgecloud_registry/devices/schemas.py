"""Devices as the contracts describe them, made from the registry's rows."""

from typing import Any

from edgecloud_contracts.devices import DeviceDetail, DeviceMetricsNow, DeviceView
from edgecloud_contracts.heartbeat import ContainerState, DeviceStatus, Link

from .models import Device


def to_view(device: Device) -> DeviceView:
    return DeviceView(**_view_fields(device))


def _view_fields(device: Device) -> dict[str, Any]:
    return {
        "key": device.key,
        "id": device.id,
        "name": device.name,
        "mac": device.mac,
        "location": device.location,
        "arch": device.arch,
        "os": device.os,
        "kernel": device.kernel,
        "cpu_count": device.cpu_count,
        "memory_total": device.memory_total,
        "disk_total": device.disk_total,
        "status": DeviceStatus(device.status),
        "link": Link(device.link) if device.link else None,
        "last_seen": device.last_seen,
        "metrics": DeviceMetricsNow(
            cpu_percent=device.cpu_percent,
            memory_used=device.memory_used,
            disk_free=device.disk_free,
        ),
        "next_contact_at": device.next_contact_at,
        "peer_url": device.peer_url,
        "collaboration_level": device.collaboration_level,
        "neighbours": device.neighbours or {},
    }


def to_detail(device: Device) -> DeviceDetail:
    return DeviceDetail(
        **_view_fields(device),
        agent_version=device.agent_version,
        runtime=device.runtime,
        heartbeat_interval_s=device.heartbeat_interval_s,
        heartbeats=device.heartbeats,
        first_seen=device.first_seen,
        status_changed_at=device.status_changed_at,
        status_reason=device.status_reason,
        load_1m=device.load_1m,
        containers=[ContainerState.model_validate(c) for c in device.containers],
    )

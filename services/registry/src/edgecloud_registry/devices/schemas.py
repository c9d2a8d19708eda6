"""Devices as the contracts describe them, made from the registry's rows, as much of each
as its viewer may see (.visibility)."""

from typing import Any

from edgecloud_contracts.devices import DeviceDetail, DeviceMetricsNow, DeviceView
from edgecloud_contracts.heartbeat import ContainerState, DeviceStatus, Link, NodePolicy

from .models import Device
from .visibility import Audience


def to_view(device: Device, audience: Audience) -> DeviceView:
    return DeviceView(**_view_fields(device, audience))


def _view_fields(device: Device, audience: Audience) -> dict[str, Any]:
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
        "peer_url": audience.peer_url(device.peer_url),
        "peer_urls": audience.peer_urls(device.peer_urls or []),
        "collaboration_level": device.collaboration_level,
        "neighbours": audience.neighbours(device.neighbours or {}),
        "policy": NodePolicy.model_validate(device.policy) if device.policy else None,
    }


def to_detail(device: Device, audience: Audience) -> DeviceDetail:
    return DeviceDetail(
        **_view_fields(device, audience),
        agent_version=device.agent_version,
        runtime=device.runtime,
        heartbeat_interval_s=device.heartbeat_interval_s,
        heartbeats=device.heartbeats,
        first_seen=device.first_seen,
        status_changed_at=device.status_changed_at,
        status_reason=device.status_reason,
        load_1m=device.load_1m,
        containers=[
            ContainerState.model_validate(c) for c in audience.containers(device.containers)
        ],
    )

"""Alert conditions, without I/O: what a rule's target shows now, whether the rule should
raise or clear its alert, and how to say so in plain words."""

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from edgecloud_contracts.alerts import AlertMetric, Comparison, Transition
from edgecloud_contracts.heartbeat import DeviceStatus

from ..devices.models import Device
from .models import AlertRule

_COMPARE: dict[Comparison, Callable[[float, float], bool]] = {
    Comparison.ABOVE: operator.gt,
    Comparison.AT_OR_ABOVE: operator.ge,
    Comparison.BELOW: operator.lt,
    Comparison.AT_OR_BELOW: operator.le,
}
_WORDS = {
    Comparison.ABOVE: "above",
    Comparison.AT_OR_ABOVE: "at or above",
    Comparison.BELOW: "below",
    Comparison.AT_OR_BELOW: "at or below",
}
_LABELS = {
    AlertMetric.CPU_PERCENT: "CPU",
    AlertMetric.MEMORY_PERCENT: "Memory",
    AlertMetric.DISK_USED_PERCENT: "Disk use",
}
_EXITED_STATES = frozenset({"exited", "dead"})


@dataclass(frozen=True, slots=True)
class Reading:
    """The rule's condition now, and the words for raising or clearing on it."""

    holds: bool
    value: float | None
    raised: str
    cleared: str


def read(rule: AlertRule, device: Device | None) -> Reading | None:
    """What the target shows now; None when that is unknown (the device is unknown, or
    offline for a rule on its load or containers: its last heartbeat is stale)."""
    if device is None:
        return None
    metric = AlertMetric(rule.metric)
    offline = device.status == DeviceStatus.OFFLINE.value
    if metric is AlertMetric.OFFLINE:
        return _offline(device, offline)
    if offline:
        return None
    if metric in _LABELS:
        return _load(rule, device, metric)
    return _container(rule, device, metric)


def _name(device: Device) -> str:
    return device.name or device.key


def _offline(device: Device, offline: bool) -> Reading:
    reason = f" ({device.status_reason})" if device.status_reason else ""
    return Reading(
        holds=offline,
        value=None,
        raised=f"{_name(device)} is offline{reason}",
        cleared=f"{_name(device)} is {device.status} again",
    )


def _percent(part: float | None, whole: int) -> float | None:
    if part is None or whole <= 0:
        return None
    return min(100.0, max(0.0, 100.0 * part / whole))


def _value(device: Device, metric: AlertMetric) -> float | None:
    if metric is AlertMetric.CPU_PERCENT:
        return device.cpu_percent
    if metric is AlertMetric.MEMORY_PERCENT:
        return _percent(device.memory_used, device.memory_total)
    if device.disk_free is None:
        return None
    return _percent(device.disk_total - device.disk_free, device.disk_total)


def _shown(percent: float) -> str:
    return f"{percent:.1f}".rstrip("0").rstrip(".") + "%"


def _load(rule: AlertRule, device: Device, metric: AlertMetric) -> Reading | None:
    value = _value(device, metric)
    if value is None or rule.op is None or rule.threshold is None:
        return None
    op = Comparison(rule.op)
    limit = f"{_WORDS[op]} {_shown(rule.threshold)}"
    label = f"{_LABELS[metric]} of {_name(device)}"
    return Reading(
        holds=_COMPARE[op](value, rule.threshold),
        value=value,
        raised=f"{label} at {_shown(value)} ({limit})",
        cleared=f"{label} back to {_shown(value)} (no longer {limit})",
    )


def _container(rule: AlertRule, device: Device, metric: AlertMetric) -> Reading:
    where = f"Container {rule.docker_name} on {_name(device)}"
    found = next((c for c in device.containers if c.get("name") == rule.docker_name), None)
    if found is None:
        return Reading(
            holds=False,
            value=None,
            raised="",
            cleared=f"Container {rule.docker_name} is no longer on {_name(device)}",
        )
    state = str(found.get("state", ""))
    status = f" ({found['status']})" if found.get("status") else ""
    if metric is AlertMetric.EXITED:
        holds, raised = state in _EXITED_STATES, f"{where} has exited{status}"
    else:
        holds, raised = state == "restarting", f"{where} is restarting{status}"
    return Reading(holds=holds, value=None, raised=raised, cleared=f"{where} is {state}{status}")


def step(
    *,
    holds: bool,
    breaching_since: datetime | None,
    firing: bool,
    for_seconds: int,
    now: datetime,
) -> tuple[datetime | None, Transition | None]:
    """The rule's new "breaching since", and whether its alert is raised or cleared now.

    The condition must hold for ``for_seconds`` before the alert is raised; it clears as
    soon as the condition no longer holds.
    """
    if not holds:
        return None, Transition.CLEARED if firing else None
    since = breaching_since or now
    if not firing and (now - since).total_seconds() >= for_seconds:
        return since, Transition.RAISED
    return since, None


def raised_message(reading: Reading, *, for_seconds: int, held_s: float) -> str:
    return f"{reading.raised} for {int(held_s)} s" if for_seconds else reading.raised


def default_name(*, metric: str, op: str | None, threshold: float | None) -> str:
    """A rule's name when its creator gave none, e.g. ``cpu_percent > 80``."""
    if op is None or threshold is None:
        return metric
    return f"{metric} {op} {threshold:g}"

"""Alert rules and the alerts they raise, as the registry keeps them and users see them.

A rule watches one target: a device (its load from heartbeats, or whether it is offline)
or a container (whether it has exited or keeps restarting). When its condition has held
for ``for_seconds`` the registry raises an alert; when it no longer holds the alert is
cleared. Both are announced on ``edge.event.alert`` and, if the rule names one, posted
to a webhook.
"""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, HttpUrl, ValidationError

from .heartbeat import WireModel
from .identity import KEY_PATTERN
from .ids import DOCKER_NAME_PATTERN
from .text import SINGLE_LINE

MAX_WEBHOOK_LENGTH = 2000
MAX_FOR_SECONDS = 24 * 3600


class TargetKind(StrEnum):
    DEVICE = "device"
    CONTAINER = "container"


class AlertMetric(StrEnum):
    CPU_PERCENT = "cpu_percent"
    MEMORY_PERCENT = "memory_percent"
    """Memory in use, as a percentage of the device's total."""
    DISK_USED_PERCENT = "disk_used_percent"
    """Disk in use, as a percentage of the device's total."""
    OFFLINE = "offline"
    """The device is offline (missed heartbeats or its session closed)."""
    EXITED = "exited"
    """The container has exited (or died)."""
    RESTARTING = "restarting"
    """The container is restarting."""


METRICS_OF: dict[TargetKind, tuple[AlertMetric, ...]] = {
    TargetKind.DEVICE: (
        AlertMetric.CPU_PERCENT,
        AlertMetric.MEMORY_PERCENT,
        AlertMetric.DISK_USED_PERCENT,
        AlertMetric.OFFLINE,
    ),
    TargetKind.CONTAINER: (AlertMetric.EXITED, AlertMetric.RESTARTING),
}
STATE_METRICS = frozenset({AlertMetric.OFFLINE, AlertMetric.EXITED, AlertMetric.RESTARTING})
"""Conditions that hold or not: they take no ``op`` and no ``threshold``."""


class Comparison(StrEnum):
    ABOVE = ">"
    AT_OR_ABOVE = ">="
    BELOW = "<"
    AT_OR_BELOW = "<="


class AlertState(StrEnum):
    FIRING = "firing"
    CLEARED = "cleared"


class Transition(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def _http_url(value: str) -> str:
    try:
        HttpUrl(value)
    except ValidationError as err:
        raise ValueError("the webhook must be an http:// or https:// URL with a host") from err
    return value


WebhookUrl = Annotated[
    str,
    Field(
        max_length=MAX_WEBHOOK_LENGTH,
        pattern=SINGLE_LINE,
        description="an http(s) URL; the alert is POSTed to it as JSON when raised and cleared",
    ),
    AfterValidator(_http_url),
]


class CreateAlertRule(WireModel):
    """``POST /alert-rules``."""

    name: Annotated[str, Field(max_length=100, pattern=SINGLE_LINE)] = ""
    """Shown with the rule's alerts; made from the condition when left empty."""
    target_kind: Annotated[TargetKind, Field(description="what ``target`` names")]
    target: Annotated[
        str,
        Field(
            min_length=1,
            max_length=100,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="the device's key (target_kind device) or the container's id "
            "(target_kind container)",
        ),
    ]
    metric: Annotated[
        AlertMetric,
        Field(
            description="device: cpu_percent, memory_percent, disk_used_percent, offline; "
            "container: exited, restarting"
        ),
    ]
    op: Annotated[
        Comparison | None,
        Field(description="for cpu_percent, memory_percent, disk_used_percent only"),
    ] = None
    threshold: Annotated[
        float | None,
        Field(allow_inf_nan=False, description="a percentage, with op; not for state metrics"),
    ] = None
    for_seconds: Annotated[
        int,
        Field(ge=0, le=MAX_FOR_SECONDS, description="how long the condition must hold"),
    ] = 0
    webhook: WebhookUrl | None = None

    def problem(self) -> tuple[str, str] | None:
        """The field that does not fit the others and why, or None when the rule is whole."""
        allowed = METRICS_OF[self.target_kind]
        if self.metric not in allowed:
            names = ", ".join(metric.value for metric in allowed)
            return "metric", f"a {self.target_kind.value} rule watches one of: {names}"
        if self.metric in STATE_METRICS:
            if self.op is not None or self.threshold is not None:
                return "op", f"{self.metric.value} is a state: it takes no op and no threshold"
            return None
        if self.op is None:
            return "op", f"{self.metric.value} needs an op: >, >=, < or <="
        if self.threshold is None:
            return "threshold", f"{self.metric.value} needs a threshold"
        if not 0 <= self.threshold <= 100:
            return "threshold", f"{self.metric.value} is a percentage: 0 to 100"
        return None


class RegisterAlertRule(CreateAlertRule):
    """What the gateway asks the registry to store: for a container target, the device
    it runs on and its Docker name, which the gateway got from the orchestrator (whose
    answer also proved that the container is the caller's)."""

    device: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None
    docker_name: Annotated[str, Field(pattern=DOCKER_NAME_PATTERN)] | None = None


class AlertRuleView(WireModel):
    id: str
    name: str
    tenant: str
    target_kind: TargetKind
    target: str
    device: str
    """The device the rule watches, or the one its container runs on."""
    container_name: str | None
    """The container's name on its device (``<username>-<name>``), for container rules."""
    metric: AlertMetric
    op: Comparison | None
    threshold: float | None
    for_seconds: int
    webhook: str | None
    created_at: datetime
    created_by: str
    breaching_since: datetime | None
    """Since when the condition holds (the alert fires once it has held for_seconds)."""
    firing_alert: str | None
    """The id of the rule's alert while it fires."""


class AlertRulePage(WireModel):
    items: list[AlertRuleView]
    next_cursor: str | None


class WebhookDelivery(WireModel):
    """How the latest webhook post of an alert went."""

    transition: Transition
    state: DeliveryState
    attempts: int
    error: str | None
    at: datetime | None
    """When the post succeeded or was given up."""


class AlertView(WireModel):
    id: str
    rule: str
    """The rule's id (the alert stays when the rule is deleted)."""
    name: str
    tenant: str
    target_kind: TargetKind
    target: str
    device: str
    metric: AlertMetric
    op: Comparison | None
    threshold: float | None
    state: AlertState
    value: float | None
    """The metric when raised; None for state metrics."""
    message: str
    """Why it fired, in plain words."""
    raised_at: datetime
    cleared_at: datetime | None
    cleared_message: str | None
    """Why it cleared, in plain words."""
    webhook: WebhookDelivery | None
    """None when the rule has no webhook."""


class AlertPage(WireModel):
    items: list[AlertView]
    next_cursor: str | None


class AlertEvent(AlertView):
    """Published on ``edge.event.alert`` (and posted to the rule's webhook) when an alert
    is raised or cleared. ``tenant`` lets the gateway pass it to that tenant only."""

    transition: Transition

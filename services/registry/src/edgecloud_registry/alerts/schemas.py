"""Alert rules and alerts as the contracts describe them, made from the registry's rows."""

from dataclasses import dataclass
from typing import Any

from edgecloud_contracts.alerts import (
    AlertEvent,
    AlertMetric,
    AlertRuleView,
    AlertState,
    AlertView,
    Comparison,
    DeliveryState,
    TargetKind,
    Transition,
    WebhookDelivery,
)

from .models import Alert, AlertRule


@dataclass(frozen=True, slots=True)
class Notice:
    """An alert raised or cleared, to announce once its change is committed."""

    event: AlertEvent
    webhook: str | None


def to_rule_view(rule: AlertRule) -> AlertRuleView:
    return AlertRuleView(
        id=rule.id,
        name=rule.name,
        tenant=rule.tenant_id,
        target_kind=TargetKind(rule.target_kind),
        target=rule.target,
        device=rule.device_key,
        container_name=rule.docker_name,
        metric=AlertMetric(rule.metric),
        op=Comparison(rule.op) if rule.op else None,
        threshold=rule.threshold,
        for_seconds=rule.for_seconds,
        webhook=rule.webhook,
        created_at=rule.created_at,
        created_by=rule.created_by,
        breaching_since=rule.breaching_since,
        firing_alert=rule.firing_alert_id,
    )


def _alert_fields(alert: Alert) -> dict[str, Any]:
    delivery = None
    if alert.webhook_transition is not None and alert.webhook_state is not None:
        delivery = WebhookDelivery(
            transition=Transition(alert.webhook_transition),
            state=DeliveryState(alert.webhook_state),
            attempts=alert.webhook_attempts,
            error=alert.webhook_error,
            at=alert.webhook_at,
        )
    return {
        "id": alert.id,
        "rule": alert.rule_id,
        "name": alert.name,
        "tenant": alert.tenant_id,
        "target_kind": TargetKind(alert.target_kind),
        "target": alert.target,
        "device": alert.device_key,
        "metric": AlertMetric(alert.metric),
        "op": Comparison(alert.op) if alert.op else None,
        "threshold": alert.threshold,
        "state": AlertState(alert.state),
        "value": alert.value,
        "message": alert.message,
        "raised_at": alert.raised_at,
        "cleared_at": alert.cleared_at,
        "cleared_message": alert.cleared_message,
        "webhook": delivery,
    }


def to_alert_view(alert: Alert) -> AlertView:
    return AlertView(**_alert_fields(alert))


def to_notice(alert: Alert, transition: Transition, webhook: str | None) -> Notice:
    return Notice(event=AlertEvent(**_alert_fields(alert), transition=transition), webhook=webhook)

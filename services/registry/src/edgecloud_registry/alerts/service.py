"""Alert rules and alerts: creating and deleting rules, evaluating them, listing alerts."""

import uuid
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.alerts import (
    AlertState,
    DeliveryState,
    RegisterAlertRule,
    TargetKind,
    Transition,
)
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.pagination import newest_first
from edgecloud_servicekit.problems import Forbidden

from ..devices import service as devices_service
from ..devices.models import Device, DeviceGrant
from . import conditions
from .exceptions import AlertRuleNotFound, InvalidAlertRule
from .models import Alert, AlertRule
from .schemas import Notice, to_notice

RULE_DELETED = "The rule was deleted"


async def create_rule(
    *, session: AsyncSession, caller: Identity, request: RegisterAlertRule, quota: int
) -> AlertRule:
    """Store a rule of the caller's tenant on a device it sees or a container of its own."""
    problem = request.problem()
    if problem is not None:
        raise InvalidAlertRule(*problem)
    if request.target_kind is TargetKind.DEVICE:
        device = await devices_service.get_device(
            session=session, caller=caller, key=request.target
        )
        device_key, docker_name = device.key, None
    elif request.device is None or request.docker_name is None:
        raise InvalidAlertRule("target", "a container rule needs the container's device and name")
    else:
        device_key, docker_name = request.device, request.docker_name
    count = await session.scalar(
        select(func.count()).select_from(AlertRule).where(AlertRule.tenant_id == caller.tenant_id)
    )
    if (count or 0) >= quota:
        raise Forbidden(
            f"the tenant's quota of {quota} alert rules is used up",
            code="quota_exceeded",
            limit=quota,
        )
    rule = AlertRule(
        id=str(uuid.uuid4()),
        tenant_id=caller.tenant_id,
        name=request.name
        or conditions.default_name(
            metric=request.metric.value,
            op=request.op.value if request.op else None,
            threshold=request.threshold,
        ),
        target_kind=request.target_kind.value,
        target=request.target,
        device_key=device_key,
        docker_name=docker_name,
        metric=request.metric.value,
        op=request.op.value if request.op else None,
        threshold=request.threshold,
        for_seconds=request.for_seconds,
        webhook=request.webhook,
        needs_grant=request.target_kind is TargetKind.DEVICE and not caller.is_operator,
        created_by=caller.user_id,
        created_at=utcnow(),
        breaching_since=None,
        firing_alert_id=None,
    )
    session.add(rule)
    await session.flush()
    return rule


async def get_rule(
    *, session: AsyncSession, caller: Identity, rule_id: str, lock: bool = False
) -> AlertRule:
    """The caller's rule; ``lock`` waits for an evaluation holding it and reads it anew."""
    rule = await session.get(AlertRule, rule_id, with_for_update=lock)
    if rule is None or rule.tenant_id != caller.tenant_id:
        raise AlertRuleNotFound(rule_id)
    return rule


async def delete_rule(
    *, session: AsyncSession, caller: Identity, rule_id: str, now: datetime
) -> Notice | None:
    """Delete the rule; its firing alert, if any, is cleared (the notice to announce)."""
    rule = await get_rule(session=session, caller=caller, rule_id=rule_id, lock=True)
    notice = None
    if rule.firing_alert_id is not None:
        alert = await session.get(Alert, rule.firing_alert_id)
        if alert is not None:
            notice = _clear(rule, alert, message=RULE_DELETED, now=now)
    await session.delete(rule)
    return notice


async def list_rules(
    *, session: AsyncSession, caller: Identity, limit: int, cursor: str | None
) -> tuple[list[AlertRule], str | None]:
    query = select(AlertRule).where(AlertRule.tenant_id == caller.tenant_id)
    return await newest_first(
        session,
        query,
        at=AlertRule.created_at,
        id_=AlertRule.id,
        limit=limit,
        cursor=cursor,
        scope=f"alert-rules:{caller.tenant_id}",
    )


async def list_alerts(
    *,
    session: AsyncSession,
    caller: Identity,
    state: AlertState | None,
    rule_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Alert], str | None]:
    """The tenant's alerts, firing and cleared, the most recently raised first."""
    query = select(Alert).where(Alert.tenant_id == caller.tenant_id)
    if state is not None:
        query = query.where(Alert.state == state.value)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    return await newest_first(
        session,
        query,
        at=Alert.raised_at,
        id_=Alert.id,
        limit=limit,
        cursor=cursor,
        scope=f"alerts:{caller.tenant_id}",
    )


async def evaluate(*, session: AsyncSession, now: datetime) -> list[Notice]:
    """Evaluate every rule against its target's latest heartbeat and status; raise and
    clear alerts in the caller's transaction and return what to announce.

    The rules are locked (skipping those another replica holds), so replicas evaluating
    side by side record each raise and clear once.
    """
    rules = list(
        (
            await session.scalars(
                select(AlertRule).order_by(AlertRule.id).with_for_update(skip_locked=True)
            )
        ).all()
    )
    if not rules:
        return []
    keys = {rule.device_key for rule in rules}
    devices = {
        device.key: device
        for device in (await session.scalars(select(Device).where(Device.key.in_(keys)))).all()
    }
    granted = {
        (row.device_key, row.tenant_id)
        for row in await session.execute(
            select(DeviceGrant.device_key, DeviceGrant.tenant_id).where(
                DeviceGrant.device_key.in_(keys)
            )
        )
    }
    firing_ids = [rule.firing_alert_id for rule in rules if rule.firing_alert_id]
    firing = {
        alert.id: alert
        for alert in (await session.scalars(select(Alert).where(Alert.id.in_(firing_ids)))).all()
    }
    notices = []
    for rule in rules:
        # A tenant whose grant was revoked no longer hears about the device.
        if rule.needs_grant and (rule.device_key, rule.tenant_id) not in granted:
            continue
        reading = conditions.read(rule, devices.get(rule.device_key))
        alert = firing.get(rule.firing_alert_id or "")
        if reading is None:
            # Nothing known (the device is offline): a firing alert neither clears nor
            # repeats, and a breach not yet long enough starts over, so the time unknown
            # never counts towards for_seconds.
            if alert is None and rule.breaching_since is not None:
                rule.breaching_since = None
            continue
        since, transition = conditions.step(
            holds=reading.holds,
            breaching_since=rule.breaching_since,
            firing=alert is not None,
            for_seconds=rule.for_seconds,
            now=now,
        )
        if since != rule.breaching_since:
            rule.breaching_since = since
        if transition is Transition.RAISED and since is not None:
            message = conditions.raised_message(
                reading, for_seconds=rule.for_seconds, held_s=(now - since).total_seconds()
            )
            notices.append(_raise(session, rule, value=reading.value, message=message, now=now))
        elif transition is Transition.CLEARED and alert is not None:
            notices.append(_clear(rule, alert, message=reading.cleared, now=now))
    return notices


def _raise(
    session: AsyncSession, rule: AlertRule, *, value: float | None, message: str, now: datetime
) -> Notice:
    alert = Alert(
        id=str(uuid.uuid4()),
        rule_id=rule.id,
        tenant_id=rule.tenant_id,
        name=rule.name,
        target_kind=rule.target_kind,
        target=rule.target,
        device_key=rule.device_key,
        metric=rule.metric,
        op=rule.op,
        threshold=rule.threshold,
        state=AlertState.FIRING.value,
        value=value,
        message=message[:500],
        raised_at=now,
        cleared_at=None,
        cleared_message=None,
    )
    _await_delivery(alert, rule, Transition.RAISED)
    session.add(alert)
    rule.firing_alert_id = alert.id
    return to_notice(alert, Transition.RAISED, rule.webhook)


def _clear(rule: AlertRule, alert: Alert, *, message: str, now: datetime) -> Notice:
    alert.state = AlertState.CLEARED.value
    alert.cleared_at = now
    alert.cleared_message = message[:500]
    _await_delivery(alert, rule, Transition.CLEARED)
    rule.firing_alert_id = None
    rule.breaching_since = None
    return to_notice(alert, Transition.CLEARED, rule.webhook)


def _await_delivery(alert: Alert, rule: AlertRule, transition: Transition) -> None:
    has_webhook = rule.webhook is not None
    alert.webhook_transition = transition.value if has_webhook else None
    alert.webhook_state = DeliveryState.PENDING.value if has_webhook else None
    alert.webhook_attempts = 0
    alert.webhook_error = None
    alert.webhook_at = None


async def record_delivery(
    *,
    session: AsyncSession,
    alert_id: str,
    transition: Transition,
    state: DeliveryState,
    attempts: int,
    error: str | None,
    at: datetime,
) -> None:
    """Note how a webhook post went, unless a later transition's post has replaced it."""
    await session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.webhook_transition == transition.value)
        .values(
            webhook_state=state.value,
            webhook_attempts=attempts,
            webhook_error=error[:500] if error else None,
            webhook_at=at,
        )
    )

"""Internal REST: alert rules and alerts of the caller's tenant, as the gateway asks."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status

from edgecloud_contracts.alerts import (
    AlertPage,
    AlertRulePage,
    AlertRuleView,
    AlertState,
    RegisterAlertRule,
)
from edgecloud_contracts.text import OBJECT_ID
from edgecloud_servicekit.db import utcnow

from ..deps import AlertAnnouncerDep, CallerDep, SessionDep
from . import schemas, service

router = APIRouter(prefix="/v1", tags=["alerts"])

Limit = Annotated[int, Query(ge=1, le=1000)]
RuleId = Annotated[str, Path(max_length=64, pattern=OBJECT_ID)]


@router.post("/alert-rules", status_code=status.HTTP_201_CREATED, response_model=AlertRuleView)
async def create_rule(
    body: RegisterAlertRule, request: Request, session: SessionDep, caller: CallerDep
) -> AlertRuleView:
    rule = await service.create_rule(
        session=session,
        caller=caller,
        request=body,
        quota=request.app.state.settings.alert_rules_per_tenant,
    )
    return schemas.to_rule_view(rule)


@router.get("/alert-rules", response_model=AlertRulePage)
async def list_rules(
    session: SessionDep, caller: CallerDep, limit: Limit = 100, cursor: str | None = None
) -> AlertRulePage:
    rules, next_cursor = await service.list_rules(
        session=session, caller=caller, limit=limit, cursor=cursor
    )
    return AlertRulePage(items=[schemas.to_rule_view(r) for r in rules], next_cursor=next_cursor)


@router.get("/alert-rules/{rule_id}", response_model=AlertRuleView)
async def get_rule(rule_id: RuleId, session: SessionDep, caller: CallerDep) -> AlertRuleView:
    rule = await service.get_rule(session=session, caller=caller, rule_id=rule_id)
    return schemas.to_rule_view(rule)


@router.delete("/alert-rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_rule(
    rule_id: RuleId, session: SessionDep, caller: CallerDep, announcer: AlertAnnouncerDep
) -> None:
    """Delete the rule; its firing alert is cleared (and announced) with it."""
    notice = await service.delete_rule(
        session=session, caller=caller, rule_id=rule_id, now=utcnow()
    )
    await session.commit()
    if notice is not None:
        await announcer.announce([notice])


@router.get("/alerts", response_model=AlertPage)
async def list_alerts(
    session: SessionDep,
    caller: CallerDep,
    state: AlertState | None = None,
    rule: Annotated[str | None, Query(max_length=64, pattern=OBJECT_ID)] = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> AlertPage:
    alerts, next_cursor = await service.list_alerts(
        session=session, caller=caller, state=state, rule_id=rule, limit=limit, cursor=cursor
    )
    return AlertPage(items=[schemas.to_alert_view(a) for a in alerts], next_cursor=next_cursor)

"""Deployments: made with their deploy command, moved along by the node's reports.

queued -> downloading -> extracting -> copying -> running -> succeeded | failed
"""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.artifacts import (
    DEPLOYMENT_DONE,
    DeploymentReport,
    DeploymentState,
    DeploymentStep,
    DeploymentView,
)
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import NotFound

from .models import Deployment

# Reports may arrive out of order (a retried one after a newer one): never step back.
_ORDER = {state: rank for rank, state in enumerate(DeploymentState)}


class DeploymentNotFound(NotFound):
    default_code = "deployment_not_found"

    def __init__(self, deployment_id: str) -> None:
        super().__init__(f"deployment {deployment_id} not found")


def new(
    session: AsyncSession,
    *,
    deployment_id: str | None = None,
    tenant_id: str,
    container_id: str,
    device_key: str,
    artifact_id: str,
    script_id: str,
    command_id: str,
) -> Deployment:
    now = utcnow()
    row = Deployment(
        id=deployment_id or str(uuid.uuid4()),
        tenant_id=tenant_id,
        container_id=container_id,
        device_key=device_key,
        artifact_id=artifact_id,
        script_id=script_id,
        command_id=command_id,
        state=DeploymentState.QUEUED.value,
        steps=[],
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    return row


async def get(*, session: AsyncSession, caller: Identity, deployment_id: str) -> Deployment:
    row = await session.get(Deployment, deployment_id)
    if row is None or row.tenant_id != caller.tenant_id:
        raise DeploymentNotFound(deployment_id)
    return row


async def list_for_container(
    *, session: AsyncSession, caller: Identity, container_id: str, limit: int
) -> list[Deployment]:
    rows = await session.scalars(
        select(Deployment)
        .where(Deployment.tenant_id == caller.tenant_id, Deployment.container_id == container_id)
        .order_by(Deployment.created_at.desc())
        .limit(limit)
    )
    return list(rows.all())


async def apply_report(
    *, session: AsyncSession, device_key: str, report: DeploymentReport
) -> Deployment | None:
    """A node's news about one of its own deployments; None if it changes nothing."""
    row = await session.get(Deployment, report.deployment_id, with_for_update=True)
    if row is None or row.device_key != device_key or row.state in DEPLOYMENT_DONE:
        return None
    if _ORDER[report.state] < _ORDER[DeploymentState(row.state)]:
        return None
    row.state = report.state.value
    if report.step is not None:
        steps = [s for s in row.steps if s.get("name") != report.step.name]
        row.steps = [*steps, report.step.model_dump(mode="json")]
    if report.received is not None:
        row.received, row.total = report.received, report.total
    if report.exit_code is not None:
        row.exit_code = report.exit_code
    if report.error_code is not None or report.error is not None:
        row.error_code, row.error = report.error_code, (report.error or "")[:2000] or None
    row.updated_at = utcnow()
    if report.state in DEPLOYMENT_DONE:
        row.finished_at = row.updated_at
    return row


async def fail_for_command(
    *, session: AsyncSession, command_id: str, error_code: str, error: str
) -> Deployment | None:
    """The deploy command itself failed or expired: the deployment never started."""
    row = await session.scalar(select(Deployment).where(Deployment.command_id == command_id))
    if row is None or row.state in DEPLOYMENT_DONE:
        return None
    row.state = DeploymentState.FAILED.value
    row.error_code, row.error = error_code, error[:2000]
    row.updated_at = row.finished_at = utcnow()
    return row


def to_view(row: Deployment) -> DeploymentView:
    return DeploymentView(
        id=row.id,
        container=row.container_id,
        device=row.device_key,
        artifact=row.artifact_id,
        script=row.script_id,
        state=DeploymentState(row.state),
        steps=[DeploymentStep.model_validate(s) for s in row.steps],
        received=row.received,
        total=row.total,
        exit_code=row.exit_code,
        error_code=row.error_code,
        error=row.error,
        command=row.command_id,
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


def event(row: Deployment) -> dict[str, Any]:
    return {"tenant": row.tenant_id, **to_view(row).model_dump(mode="json")}

"""The command outbox: commands are stored (queued) before they are sent, and every
state change of a command is a row update here.

    queued -> sent -> succeeded | failed
       \\________\\__-> expired (not delivered in time)
"""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ScalarSelect, Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.artifacts import DeploymentOrder
from edgecloud_contracts.containers import (
    Action,
    Command,
    CommandResult,
    CommandState,
    CommandView,
    ContainerSpec,
    FilesOrder,
)
from edgecloud_contracts.correlation import current_request_id
from edgecloud_servicekit.db import utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import NotFound

from .models import CommandRow

PENDING = (CommandState.QUEUED.value, CommandState.SENT.value)


class CommandNotFound(NotFound):
    default_code = "command_not_found"

    def __init__(self, command_id: str) -> None:
        super().__init__(f"command {command_id} not found")


def enqueue(
    session: AsyncSession,
    *,
    tenant_id: str,
    container_id: str,
    device_key: str,
    docker_name: str,
    action: Action,
    ttl: timedelta,
    spec: dict[str, object] | None = None,
    deployment: DeploymentOrder | None = None,
    files: FilesOrder | None = None,
    command_id: str | None = None,
) -> CommandRow:
    """Put a command in the outbox, with the request id of the action that made it."""
    command_id = command_id or str(uuid.uuid4())
    command = Command(
        id=command_id,
        action=action,
        container_id=container_id,
        docker_name=docker_name,
        spec=ContainerSpec.model_validate(spec) if spec else None,
        deployment=deployment,
        files=files,
    )
    now = utcnow()
    row = CommandRow(
        id=command_id,
        tenant_id=tenant_id,
        container_id=container_id,
        device_key=device_key,
        action=action.value,
        state=CommandState.QUEUED.value,
        payload=command.model_dump(mode="json"),
        attempts=0,
        created_at=now,
        expires_at=now + ttl,
        correlation_id=current_request_id(),
    )
    session.add(row)
    return row


def select_by_id(command_id: str) -> Select[CommandRow]:
    return select(CommandRow).where(CommandRow.id == command_id)


async def get(*, session: AsyncSession, caller: Identity, command_id: str) -> CommandRow:
    row = await session.scalar(select(CommandRow).where(CommandRow.id == command_id))
    if row is None or (row.tenant_id != caller.tenant_id and not caller.is_operator):
        raise CommandNotFound(command_id)
    return row


async def mark_sent(*, session: AsyncSession, command_id: str, attempts: int) -> bool:
    """Claim the command for one send; False when someone else sent it since it was read
    with ``attempts`` (another replica's sweep, or a user's request): they deliver it."""
    claimed = await session.execute(
        update(CommandRow)
        .where(
            CommandRow.id == command_id,
            CommandRow.state.in_(PENDING),
            CommandRow.attempts == attempts,
        )
        .values(state=CommandState.SENT.value, sent_at=utcnow(), attempts=attempts + 1)
    )
    return getattr(claimed, "rowcount", 0) == 1


async def back_to_queue(*, session: AsyncSession, command_id: str, delivered: bool) -> None:
    """The node was not reachable: the command waits for it. ``delivered=False`` when the
    router knew no such node, so the send was no attempt at all."""
    values: dict[str, Any] = {"state": CommandState.QUEUED.value}
    if not delivered:
        values["attempts"] = CommandRow.attempts - 1
    await session.execute(
        update(CommandRow)
        .where(CommandRow.id == command_id, CommandRow.state == CommandState.SENT.value)
        .values(**values)
    )


async def finish(
    *, session: AsyncSession, command_id: str, result: CommandResult
) -> CommandRow | None:
    """Record the node's answer; None if the command was already finished (a late repeat)."""
    row = await session.scalar(
        select(CommandRow).where(CommandRow.id == command_id).with_for_update()
    )
    if row is None or row.state not in PENDING:
        return None
    row.state = (CommandState.SUCCEEDED if result.ok else CommandState.FAILED).value
    row.result = result.model_dump(mode="json")
    row.error, row.error_code = result.error, result.error_code
    row.finished_at = utcnow()
    return row


async def expire_overdue(*, session: AsyncSession, now: datetime) -> list[CommandRow]:
    rows = list(
        (
            await session.scalars(
                select(CommandRow)
                .where(CommandRow.state.in_(PENDING), CommandRow.expires_at < now)
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
    for row in rows:
        row.state = CommandState.EXPIRED.value
        row.error_code, row.error = "expired", "the node did not receive the command in time"
        row.finished_at = now
    return rows


async def pending_for(*, session: AsyncSession, device_key: str) -> Sequence[CommandRow]:
    """Undelivered commands of one device, oldest first (they are sent in order)."""
    rows = await session.scalars(
        select(CommandRow)
        .where(CommandRow.device_key == device_key, CommandRow.state.in_(PENDING))
        .order_by(CommandRow.seq)
    )
    return rows.all()


def latest_pending(container_id: Any) -> ScalarSelect[str]:
    """The id of the newest command still waiting for the container's node, if any, as a
    subquery (``container_id`` may be a column, so it is read with the container)."""
    return (
        select(CommandRow.id)
        .where(CommandRow.container_id == container_id, CommandRow.state.in_(PENDING))
        .order_by(CommandRow.seq.desc())
        .limit(1)
        .scalar_subquery()
    )


async def pending_counts(*, session: AsyncSession) -> dict[str, int]:
    """How many commands are queued and how many sent (awaiting the node's answer)."""
    rows = await session.execute(
        select(CommandRow.state, func.count())
        .where(CommandRow.state.in_(PENDING))
        .group_by(CommandRow.state)
    )
    counts = dict.fromkeys(PENDING, 0)
    counts.update({state: int(count) for state, count in rows.all()})
    return counts


async def devices_with_pending(*, session: AsyncSession) -> list[str]:
    rows = await session.scalars(
        select(CommandRow.device_key).where(CommandRow.state.in_(PENDING)).distinct()
    )
    return list(rows.all())


def to_view(row: CommandRow) -> CommandView:
    return CommandView(
        id=row.id,
        action=Action(row.action),
        state=CommandState(row.state),
        container=row.container_id,
        device=row.device_key,
        result=row.result,
        error=row.error,
        error_code=row.error_code,
        attempts=row.attempts,
        created_at=row.created_at,
        sent_at=row.sent_at,
        finished_at=row.finished_at,
    )


async def cancel_pending(*, session: AsyncSession, container_id: str) -> None:
    """The container's commands still waiting for a node that is gone: failed, unsent."""
    rows = await session.scalars(
        select(CommandRow)
        .where(CommandRow.container_id == container_id, CommandRow.state.in_(PENDING))
        .with_for_update()
    )
    now = utcnow()
    for row in rows.all():
        row.state = CommandState.FAILED.value
        row.error_code, row.error = "node_lost", "the node was lost; the container moved"
        row.finished_at = now

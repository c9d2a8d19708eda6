"""Devices: registration and updates from heartbeats, liveness transitions, queries."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from edgecloud_contracts.devices import MetricPoint, StatusChange
from edgecloud_contracts.events import DeviceStatusChanged
from edgecloud_contracts.heartbeat import DeviceStatus, Heartbeat, Link
from edgecloud_servicekit.db import upsert, utcnow
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.pagination import decode_cursor, encode_cursor
from edgecloud_servicekit.problems import BadRequest, NotFound

from .exceptions import DeviceNotFound
from .models import Device, DeviceGrant, DeviceMetric, DeviceStatusChange


@dataclass(frozen=True, slots=True)
class ReceivedBeat:
    beat: Heartbeat
    session_id: int | None
    received_at: datetime


def status_for(link: Link) -> DeviceStatus:
    return DeviceStatus.ONLINE if link is Link.WAN else DeviceStatus.DEGRADED


async def record_heartbeats(
    *,
    session: AsyncSession,
    received: Sequence[ReceivedBeat],
    missed_heartbeats: int,
    sample_metrics_for: set[str],
) -> list[DeviceStatusChanged]:
    """Write a batch of heartbeats in the caller's transaction; return the status changes.

    Several heartbeats of one device in a batch collapse into the newest one.
    ``sample_metrics_for`` names the devices whose metrics go into the history now.
    """
    newest: dict[str, ReceivedBeat] = {}
    counts: dict[str, int] = {}
    for item in received:
        key = item.beat.device.key
        counts[key] = counts.get(key, 0) + 1
        current = newest.get(key)
        if current is None or item.beat.seq >= current.beat.seq:
            newest[key] = item

    stored = {
        row.key: row
        for row in await session.execute(
            select(Device.key, Device.status, Device.last_seq, Device.wamp_session).where(
                Device.key.in_(newest)
            )
        )
    }
    for key, item in list(newest.items()):
        known = stored.get(key)
        # A beat older than the newest one stored, sent over a session the device has
        # since left (it moved to another link): it must not bring back the old link.
        if (
            known is not None
            and item.beat.seq < known.last_seq
            and item.session_id != known.wamp_session
        ):
            del newest[key]
    before = {key: row.status for key, row in stored.items()}
    now = utcnow()
    rows: list[dict[str, Any]] = []
    changes: list[DeviceStatusChanged] = []
    for key, item in newest.items():
        beat = item.beat
        status = status_for(beat.link)
        previous = before.get(key)
        changed = previous != status.value
        reason = f"{'heartbeat' if previous else 'registered'} over {beat.link.value}"
        if changed:
            changes.append(
                DeviceStatusChanged(
                    key=key,
                    id=beat.device.id,
                    status=status,
                    previous=DeviceStatus(previous) if previous else None,
                    link=beat.link,
                    reason=reason,
                    at=now,
                )
            )
        rows.append(
            _device_row(
                item,
                count=counts[key],
                status=status,
                change_reason=reason if changed else "",
                missed_heartbeats=missed_heartbeats,
                now=now,
            )
        )

    changed_keys = {change.key for change in changes}
    await _upsert_devices(session, [r for r in rows if r["key"] not in changed_keys], changed=False)
    await _upsert_devices(session, [r for r in rows if r["key"] in changed_keys], changed=True)
    if changes:
        await session.execute(insert(DeviceStatusChange), [_history_row(c) for c in changes])
    samples = [
        {
            "device_key": key,
            "at": item.received_at,
            "cpu_percent": item.beat.metrics.cpu_percent,
            "load_1m": item.beat.metrics.load_1m,
            "memory_used": item.beat.metrics.memory_used,
            "disk_free": item.beat.metrics.disk_free,
        }
        for key, item in newest.items()
        if key in sample_metrics_for
    ]
    if samples:
        await session.execute(insert(DeviceMetric), samples)
    return changes


def _device_row(
    item: ReceivedBeat,
    *,
    count: int,
    status: DeviceStatus,
    change_reason: str,
    missed_heartbeats: int,
    now: datetime,
) -> dict[str, Any]:
    """The devices row a heartbeat describes; ``change_reason`` is empty when the status
    did not change (the stored reason and time of the last change then stay)."""
    beat = item.beat
    return {
        **beat.device.model_dump(),
        "status": status.value,
        "status_reason": change_reason,
        "status_changed_at": now,
        "link": beat.link.value,
        "first_seen": now,
        "last_seen": item.received_at,
        "deadline_at": item.received_at + timedelta(seconds=beat.interval_s * missed_heartbeats),
        "heartbeat_interval_s": beat.interval_s,
        "heartbeats": count,
        "last_seq": beat.seq,
        "wamp_session": item.session_id,
        "next_contact_at": beat.next_contact_at,
        "cpu_percent": beat.metrics.cpu_percent,
        "load_1m": beat.metrics.load_1m,
        "memory_used": beat.metrics.memory_used,
        "disk_free": beat.metrics.disk_free,
        "runtime": beat.runtime,
        "containers": [c.model_dump() for c in beat.containers],
        "neighbours": beat.neighbours,
    }


async def _upsert_devices(
    session: AsyncSession, rows: list[dict[str, Any]], *, changed: bool
) -> None:
    if not rows:
        return
    table = cast(Table, Device.__table__)
    # first_seen is set once; the time and reason of a status change stay until the next one.
    kept = {"key", "first_seen", "heartbeats"}
    if not changed:
        kept |= {"status_changed_at", "status_reason"}
    refreshed: dict[str, Any] = {
        column: (lambda excluded, column=column: excluded[column])
        for column in rows[0]
        if column not in kept
    }
    refreshed["heartbeats"] = lambda excluded: table.c.heartbeats + excluded.heartbeats
    # The device's session is the one the router announced last (attach_session); a beat
    # only fills it in when none is known, so a late beat over a session the device has
    # left cannot make that session's leaving look like the device going away.
    refreshed["wamp_session"] = lambda excluded: func.coalesce(
        table.c.wamp_session, excluded.wamp_session
    )
    await session.execute(upsert(session, table, index_elements=["key"], update=refreshed), rows)


def _history_row(change: DeviceStatusChanged) -> dict[str, Any]:
    return {
        "device_key": change.key,
        "status": change.status.value,
        "previous": change.previous.value if change.previous else None,
        "link": change.link.value if change.link else None,
        "reason": change.reason,
        "at": change.at,
    }


async def _go_offline(
    *, session: AsyncSession, where: Sequence[Any], reason: str
) -> list[DeviceStatusChanged]:
    """Move matching devices to offline. Rows are locked first, so that when several
    replicas race only one of them records (and announces) each transition."""
    now = utcnow()
    candidates = (
        await session.execute(
            select(Device.key, Device.id, Device.status)
            .where(Device.status != DeviceStatus.OFFLINE.value, *where)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not candidates:
        return []
    await session.execute(
        update(Device)
        .where(Device.key.in_([row.key for row in candidates]))
        .values(
            status=DeviceStatus.OFFLINE.value,
            status_reason=reason,
            status_changed_at=now,
            link=None,
            deadline_at=None,
            wamp_session=None,
        )
        .execution_options(synchronize_session=False)
    )
    changes = [
        DeviceStatusChanged(
            key=row.key,
            id=row.id,
            status=DeviceStatus.OFFLINE,
            previous=DeviceStatus(row.status),
            link=None,
            reason=reason,
            at=now,
        )
        for row in candidates
    ]
    await session.execute(insert(DeviceStatusChange), [_history_row(c) for c in changes])
    return changes


async def mark_overdue_offline(*, session: AsyncSession) -> list[DeviceStatusChanged]:
    return await _go_offline(
        session=session, where=[Device.deadline_at < utcnow()], reason="missed heartbeats"
    )


async def restart_deadlines(
    *, session: AsyncSession, since: datetime, wamp_session: int | None = None
) -> int:
    """After an outage of the registry's own (its router or its database), give every
    device not offline its whole window again from ``since``: no heartbeat could reach the
    registry meanwhile, so silence then says nothing about the device. With
    ``wamp_session``: only the device of that session, whose session is forgotten (it left
    during the outage). How many moved."""
    only = [] if wamp_session is None else [Device.wamp_session == wamp_session]
    rows = (
        await session.execute(
            select(Device.key, Device.last_seen, Device.deadline_at).where(
                Device.status != DeviceStatus.OFFLINE.value,
                Device.deadline_at.is_not(None),
                Device.last_seen.is_not(None),
                *only,
            )
        )
    ).all()
    for row in rows:
        values: dict[str, Any] = {
            "deadline_at": max(row.deadline_at, since + (row.deadline_at - row.last_seen))
        }
        if wamp_session is not None:
            values["wamp_session"] = None
        await session.execute(update(Device).where(Device.key == row.key).values(**values))
    return len(rows)


async def mark_session_closed(
    *, session: AsyncSession, wamp_session: int
) -> list[DeviceStatusChanged]:
    back_at = await session.scalar(
        select(Device.next_contact_at).where(Device.wamp_session == wamp_session)
    )
    reason = "session closed"
    if back_at is not None and back_at > utcnow():
        reason = f"asleep until {back_at:%H:%M:%S} UTC (duty cycle)"
    return await _go_offline(
        session=session, where=[Device.wamp_session == wamp_session], reason=reason
    )


async def attach_session(*, session: AsyncSession, device_key: str, wamp_session: int) -> None:
    """Remember which WAMP session a device uses, so its leaving is noticed at once."""
    await session.execute(
        update(Device).where(Device.key == device_key).values(wamp_session=wamp_session)
    )


async def prune_history(
    *, session: AsyncSession, metrics_before: datetime, status_before: datetime
) -> None:
    await session.execute(delete(DeviceMetric).where(DeviceMetric.at < metrics_before))
    await session.execute(delete(DeviceStatusChange).where(DeviceStatusChange.at < status_before))


# Queries, always scoped to what the caller may see.


def _visible(query: Select[Device], caller: Identity) -> Select[Device]:
    if caller.is_operator:
        return query
    granted = select(DeviceGrant.device_key).where(DeviceGrant.tenant_id == caller.tenant_id)
    return query.where(Device.key.in_(granted))


async def list_devices(
    *, session: AsyncSession, caller: Identity, limit: int, cursor: str | None
) -> tuple[list[Device], str | None]:
    query = _visible(select(Device), caller).order_by(Device.key).limit(limit + 1)
    scope = f"devices:{caller.tenant_id}"
    if cursor:
        query = query.where(Device.key > decode_cursor(cursor, scope=scope))
    devices = list((await session.scalars(query)).all())
    next_cursor = (
        encode_cursor(devices[limit - 1].key, scope=scope) if len(devices) > limit else None
    )
    return devices[:limit], next_cursor


async def get_device(*, session: AsyncSession, caller: Identity, key: str) -> Device:
    device = await session.scalar(_visible(select(Device).where(Device.key == key), caller))
    if device is None:
        raise DeviceNotFound(key)
    return device


async def metric_series(
    *,
    session: AsyncSession,
    caller: Identity,
    key: str,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[MetricPoint], str | None]:
    await get_device(session=session, caller=caller, key=key)
    query = select(DeviceMetric).where(DeviceMetric.device_key == key)
    scope = f"metrics:{caller.tenant_id}:{key}"
    if since is not None:
        query = query.where(DeviceMetric.at >= since)
    if until is not None:
        query = query.where(DeviceMetric.at < until)
    if cursor:
        try:
            after = int(decode_cursor(cursor, scope=scope))
        except ValueError as err:
            raise BadRequest("cursor is not valid", code="invalid_cursor") from err
        query = query.where(DeviceMetric.id > after)
    rows = list((await session.scalars(query.order_by(DeviceMetric.id).limit(limit + 1))).all())
    next_cursor = encode_cursor(str(rows[limit - 1].id), scope=scope) if len(rows) > limit else None
    points = [
        MetricPoint(
            at=row.at,
            cpu_percent=row.cpu_percent,
            load_1m=row.load_1m,
            memory_used=row.memory_used,
            disk_free=row.disk_free,
        )
        for row in rows[:limit]
    ]
    return points, next_cursor


async def status_history(
    *, session: AsyncSession, caller: Identity, key: str, limit: int
) -> list[StatusChange]:
    """The device's latest status changes, newest first."""
    await get_device(session=session, caller=caller, key=key)
    rows = await session.scalars(
        select(DeviceStatusChange)
        .where(DeviceStatusChange.device_key == key)
        .order_by(DeviceStatusChange.at.desc(), DeviceStatusChange.id.desc())
        .limit(limit)
    )
    return [
        StatusChange(
            at=row.at, status=row.status, previous=row.previous, link=row.link, reason=row.reason
        )
        for row in rows
    ]


async def list_grants(*, session: AsyncSession, caller: Identity, key: str) -> list[DeviceGrant]:
    await get_device(session=session, caller=caller, key=key)
    rows = await session.scalars(
        select(DeviceGrant).where(DeviceGrant.device_key == key).order_by(DeviceGrant.created_at)
    )
    return list(rows.all())


async def revoke_grant(
    *, session: AsyncSession, caller: Identity, key: str, tenant_id: str
) -> None:
    await get_device(session=session, caller=caller, key=key)
    grant_row = await session.get(DeviceGrant, (key, tenant_id))
    if grant_row is None:
        raise NotFound(f"device {key} is not granted to {tenant_id}", code="grant_not_found")
    await session.delete(grant_row)


async def grant(*, session: AsyncSession, caller: Identity, key: str, tenant_id: str) -> bool:
    """Let ``tenant_id`` use the device; False when the grant already existed."""
    await get_device(session=session, caller=caller, key=key)
    existing = await session.get(DeviceGrant, (key, tenant_id))
    if existing is not None:
        return False
    session.add(
        DeviceGrant(
            device_key=key, tenant_id=tenant_id, granted_by=caller.user_id, created_at=utcnow()
        )
    )
    await session.flush()
    return True

"""Alert rules evaluated against a real (SQLite) database, in process."""

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_contracts.alerts import RegisterAlertRule
from edgecloud_contracts.heartbeat import Heartbeat
from edgecloud_registry.alerts import service
from edgecloud_registry.alerts.exceptions import AlertRuleNotFound, InvalidAlertRule
from edgecloud_registry.alerts.models import Alert, AlertRule
from edgecloud_registry.devices import service as devices
from edgecloud_registry.devices.exceptions import DeviceNotFound
from edgecloud_registry.devices.models import Device, DeviceGrant
from edgecloud_servicekit.db import transaction, utcnow
from edgecloud_servicekit.identity import OPERATOR, Identity
from edgecloud_servicekit.pagination import encode_cursor
from edgecloud_servicekit.problems import BadRequest, Forbidden
from tests.support.beats import heartbeat
from tests.support.users import unique

OPERATOR_ID = Identity(
    user_id="u-op", username="op", tenant_id="t-ops", roles=frozenset({OPERATOR})
)


def tenant() -> Identity:
    return Identity(user_id=unique("u"), username=unique("ann"), tenant_id=unique("t"))


async def beat(
    sessions: async_sessionmaker[AsyncSession], key: str, *, cpu: float = 12.5, **fields: Any
) -> None:
    metrics = {"cpu_percent": cpu, "load_1m": 0.1, "memory_used": 1 << 30, "disk_free": 20 << 30}
    beat = Heartbeat.model_validate(heartbeat(key, metrics=metrics, **fields))
    async with transaction(sessions) as session:
        await devices.record_heartbeats(
            session=session,
            received=[devices.ReceivedBeat(beat, None, utcnow())],
            missed_heartbeats=3,
            sample_metrics_for=set(),
        )


async def create(
    sessions: async_sessionmaker[AsyncSession], caller: Identity, quota: int = 10, **fields: Any
) -> AlertRule:
    request = RegisterAlertRule.model_validate({"target_kind": "device", **fields})
    async with transaction(sessions) as session:
        return await service.create_rule(
            session=session, caller=caller, request=request, quota=quota
        )


async def evaluate(sessions: async_sessionmaker[AsyncSession], at: Any = None) -> list:
    async with transaction(sessions) as session:
        return await service.evaluate(session=session, now=at or utcnow())


async def grant(sessions: async_sessionmaker[AsyncSession], key: str, caller: Identity) -> None:
    async with transaction(sessions) as session:
        await devices.grant(
            session=session, caller=OPERATOR_ID, key=key, tenant_id=caller.tenant_id
        )


async def new_device(sessions: async_sessionmaker[AsyncSession], **fields: Any) -> str:
    key = unique("dev").replace("-", "_")
    await beat(sessions, key, **fields)
    return key


async def busy_device(
    sessions: async_sessionmaker[AsyncSession], cpu: float = 93, **rule: Any
) -> tuple[str, AlertRule]:
    """A new device at ``cpu`` percent, with a rule of the operators' on it: by default
    ``cpu_percent > 80``."""
    key = await new_device(sessions, cpu=cpu)
    fields = {"metric": "cpu_percent", "op": ">", "threshold": 80} | rule
    return key, await create(sessions, OPERATOR_ID, target=key, **fields)


def mine(notices: list, rule: AlertRule) -> list:
    return [n for n in notices if n.event.rule == rule.id]


async def test_an_alert_is_raised_after_its_window_and_cleared_once(sessions) -> None:
    key, rule = await busy_device(sessions, for_seconds=30)
    start = utcnow()

    assert mine(await evaluate(sessions, start), rule) == []
    assert mine(await evaluate(sessions, start + timedelta(seconds=29)), rule) == []
    [raised] = mine(await evaluate(sessions, start + timedelta(seconds=31)), rule)
    assert raised.event.transition == "raised"
    assert raised.event.state == "firing"
    assert raised.event.value == 93
    assert raised.event.message == f"CPU of {key} at 93% (above 80%) for 31 s"
    assert raised.event.tenant == "t-ops"
    assert raised.webhook is None
    assert raised.event.webhook is None
    # Still breaching: nothing new, however often it is evaluated.
    assert mine(await evaluate(sessions, start + timedelta(seconds=40)), rule) == []

    await beat(sessions, key, cpu=20)
    [cleared] = mine(await evaluate(sessions), rule)
    assert (cleared.event.id, cleared.event.transition) == (raised.event.id, "cleared")
    assert cleared.event.cleared_message == f"CPU of {key} back to 20% (no longer above 80%)"
    assert mine(await evaluate(sessions), rule) == []

    async with sessions() as session:
        alerts, _ = await service.list_alerts(
            session=session, caller=OPERATOR_ID, state=None, rule_id=rule.id, limit=10, cursor=None
        )
        stored = await session.get(AlertRule, rule.id)
    assert [(a.id, a.state) for a in alerts] == [(raised.event.id, "cleared")]
    assert stored is not None
    assert (stored.firing_alert_id, stored.breaching_since) == (None, None)


async def test_time_offline_does_not_count_towards_the_window(sessions) -> None:
    key, rule = await busy_device(sessions, for_seconds=30)
    start = utcnow()
    assert mine(await evaluate(sessions, start), rule) == []  # the breach begins
    async with transaction(sessions) as session:
        await session.execute(update(Device).where(Device.key == key).values(status="offline"))
    assert mine(await evaluate(sessions, start + timedelta(seconds=20)), rule) == []
    await beat(sessions, key, cpu=93)  # back, still busy: the window starts again
    assert mine(await evaluate(sessions, start + timedelta(seconds=40)), rule) == []
    assert mine(await evaluate(sessions, start + timedelta(seconds=69)), rule) == []
    [raised] = mine(await evaluate(sessions, start + timedelta(seconds=71)), rule)
    assert raised.event.message.endswith("for 31 s")


async def test_a_short_breach_raises_nothing(sessions) -> None:
    key, rule = await busy_device(sessions, for_seconds=30)
    start = utcnow()
    await evaluate(sessions, start)
    await beat(sessions, key, cpu=10)
    await evaluate(sessions, start + timedelta(seconds=10))
    await beat(sessions, key, cpu=93)
    # The window starts again from the new breach.
    assert mine(await evaluate(sessions, start + timedelta(seconds=35)), rule) == []


async def test_a_tenant_rule_needs_the_device_granted(sessions) -> None:
    key = await new_device(sessions, cpu=93)
    ann = tenant()
    with pytest.raises(DeviceNotFound):
        await create(sessions, ann, target=key, metric="offline")
    await grant(sessions, key, ann)
    rule = await create(sessions, ann, target=key, metric="cpu_percent", op=">", threshold=50)
    assert len(mine(await evaluate(sessions), rule)) == 1
    await beat(sessions, key, cpu=10)
    async with transaction(sessions) as session:
        await session.execute(delete(DeviceGrant).where(DeviceGrant.device_key == key))
    # Without the grant the rule is not evaluated: the tenant hears nothing more.
    assert mine(await evaluate(sessions), rule) == []


async def test_deleting_a_rule_clears_its_alert(sessions) -> None:
    key = await new_device(sessions, cpu=93)
    ann = tenant()
    await grant(sessions, key, ann)
    rule = await create(
        sessions, ann, target=key, metric="cpu_percent", op=">=", threshold=0, webhook="http://x/h"
    )
    [raised] = mine(await evaluate(sessions), rule)
    assert raised.webhook == "http://x/h"
    assert raised.event.webhook is not None
    assert (raised.event.webhook.transition, raised.event.webhook.state) == ("raised", "pending")
    with pytest.raises(AlertRuleNotFound):  # another tenant's rule is not there
        async with transaction(sessions) as session:
            await service.delete_rule(
                session=session, caller=tenant(), rule_id=rule.id, now=utcnow()
            )
    async with transaction(sessions) as session:
        cleared = await service.delete_rule(
            session=session, caller=ann, rule_id=rule.id, now=utcnow()
        )
    assert cleared is not None
    assert (cleared.event.id, cleared.event.state) == (raised.event.id, "cleared")
    assert cleared.event.cleared_message == service.RULE_DELETED
    assert cleared.event.webhook is not None
    assert cleared.event.webhook.transition == "cleared"
    async with sessions() as session:
        assert await session.get(AlertRule, rule.id) is None
        alert = await session.get(Alert, raised.event.id)
    assert alert is not None
    assert alert.state == "cleared"


async def test_mismatched_rules_and_quota_are_refused(sessions) -> None:
    key = await new_device(sessions)
    with pytest.raises(InvalidAlertRule) as refused:
        await create(sessions, OPERATOR_ID, target=key, metric="exited")
    assert refused.value.code == "invalid_alert_rule"
    assert refused.value.extra["fields"] == ["metric"]
    with pytest.raises(InvalidAlertRule):  # the gateway did not say where the container is
        await create(sessions, OPERATOR_ID, target_kind="container", target="c1", metric="exited")
    ann = tenant()
    await grant(sessions, key, ann)
    await create(sessions, ann, quota=1, target=key, metric="offline")
    with pytest.raises(Forbidden) as over:
        await create(sessions, ann, quota=1, target=key, metric="offline")
    assert over.value.code == "quota_exceeded"


async def test_container_rules_follow_the_heartbeats_container_list(sessions) -> None:
    key = unique("dev").replace("-", "_")
    ann = tenant()
    box = {"id": "d1", "name": "ann-web", "image": "busybox", "state": "running", "status": "Up"}
    await beat(sessions, key, containers=[box])
    rule = await create(
        sessions,
        ann,
        target_kind="container",
        target="c-1",
        metric="exited",
        device=key,
        docker_name="ann-web",
    )
    assert rule.needs_grant is False
    assert mine(await evaluate(sessions), rule) == []
    await beat(sessions, key, containers=[box | {"state": "exited", "status": "Exited (1)"}])
    [raised] = mine(await evaluate(sessions), rule)
    assert raised.event.message == f"Container ann-web on {key} has exited (Exited (1))"
    await beat(sessions, key, containers=[])
    [cleared] = mine(await evaluate(sessions), rule)
    assert cleared.event.cleared_message == f"Container ann-web is no longer on {key}"


async def test_lists_page_newest_first(sessions) -> None:
    key = await new_device(sessions)
    ann = tenant()
    await grant(sessions, key, ann)
    made = [await create(sessions, ann, target=key, metric="offline") for _ in range(5)]
    seen: list[str] = []
    cursor = None
    async with sessions() as session:
        while True:
            page, cursor = await service.list_rules(
                session=session, caller=ann, limit=2, cursor=cursor
            )
            seen += [rule.id for rule in page]
            if cursor is None:
                break
        others, _ = await service.list_rules(session=session, caller=tenant(), limit=9, cursor=None)
    # Newest first, rules made within one clock tick in the order of their ids.
    newest_first = sorted(made, key=lambda rule: (rule.created_at, rule.id), reverse=True)
    assert seen == [rule.id for rule in newest_first]
    assert others == []


@pytest.mark.parametrize(
    "position",
    ["2026-01-01T00:00:00|x", "2026-01-01T00:00:00+00:00|../x", "not a time|x", "|"],
)
async def test_a_cursor_it_did_not_make_is_a_400(sessions, position: str) -> None:
    caller = tenant()
    async with sessions() as session:
        with pytest.raises(BadRequest) as refused:
            await service.list_alerts(
                session=session,
                caller=caller,
                state=None,
                rule_id=None,
                limit=5,
                cursor=encode_cursor(position, scope=f"alerts:{caller.tenant_id}"),
            )
    assert refused.value.code == "invalid_cursor"

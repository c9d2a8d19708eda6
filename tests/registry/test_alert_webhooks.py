"""Webhook posts of raised and cleared alerts, to a real receiver on 127.0.0.1."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_registry.alerts import service
from edgecloud_registry.alerts.models import Alert
from edgecloud_registry.alerts.schemas import Notice
from edgecloud_registry.alerts.webhooks import WebhookSender
from edgecloud_servicekit.db import transaction, utcnow
from tests.conftest import eventually
from tests.registry.test_alerts import OPERATOR_ID, busy_device, evaluate, mine
from tests.support.processes import free_port
from tests.support.webhooks import Receiver, webhook_receiver


@asynccontextmanager
async def sender(
    sessions: async_sessionmaker[AsyncSession], *, private_targets: bool = True
) -> AsyncIterator[WebhookSender]:
    webhooks = WebhookSender(
        sessions=sessions,
        timeout_s=2,
        attempts=3,
        backoff_s=0.01,
        private_targets=private_targets,
    )
    running = asyncio.create_task(webhooks.run())
    try:
        yield webhooks
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def raised(sessions: async_sessionmaker[AsyncSession], webhook: str) -> Notice:
    """A fresh device rule whose alert has just been raised."""
    _, rule = await busy_device(sessions, cpu=99, threshold=1, webhook=webhook)
    [notice] = mine(await evaluate(sessions), rule)
    return notice


async def delivery(
    sessions: async_sessionmaker[AsyncSession], alert_id: str, done: Callable[[Alert], bool]
) -> Alert:
    async def recorded() -> Alert | None:
        async with sessions() as session:
            alert = await session.get(Alert, alert_id)
        return alert if alert is not None and done(alert) else None

    found: Alert = await eventually(recorded, timeout=10)
    return found


def finished(alert: Alert) -> bool:
    return alert.webhook_state in ("delivered", "failed")


async def test_raise_then_clear_are_posted_in_order(sessions) -> None:
    async with webhook_receiver() as receiver, sender(sessions) as webhooks:
        notice = await raised(sessions, receiver.url)
        async with transaction(sessions) as session:
            cleared = await service.delete_rule(
                session=session, caller=OPERATOR_ID, rule_id=notice.event.rule, now=utcnow()
            )
        assert cleared is not None
        webhooks.submit(notice)
        webhooks.submit(cleared)
        alert = await delivery(
            sessions,
            notice.event.id,
            lambda a: a.webhook_transition == "cleared" and a.webhook_state == "delivered",
        )
    assert [(b["transition"], b["id"]) for b in receiver.bodies] == [
        ("raised", notice.event.id),
        ("cleared", notice.event.id),
    ]
    assert receiver.bodies[0]["message"] == notice.event.message
    assert receiver.headers[0]["User-Agent"].startswith("edgecloud-alerts")
    assert (alert.webhook_attempts, alert.webhook_error) == (1, None)


@pytest.mark.parametrize(("status", "attempts"), [(503, 3), (429, 3), (404, 1), (302, 1)])
async def test_failing_receivers_are_retried_unless_they_refuse(
    sessions, status: int, attempts: int
) -> None:
    async with webhook_receiver(status=status) as receiver, sender(sessions) as webhooks:
        notice = await raised(sessions, receiver.url)
        webhooks.submit(notice)
        alert = await delivery(sessions, notice.event.id, finished)
    assert len(receiver.bodies) == attempts
    assert (alert.webhook_state, alert.webhook_attempts) == ("failed", attempts)
    assert alert.webhook_error == f"the webhook answered HTTP {status}"


async def test_an_unreachable_receiver_fails_without_holding_up_others(sessions) -> None:
    async with webhook_receiver() as receiver, sender(sessions) as webhooks:
        dead = await raised(sessions, f"http://127.0.0.1:{free_port()}/hook")
        alive = await raised(sessions, receiver.url)
        webhooks.submit(dead)
        webhooks.submit(alive)
        delivered = await delivery(sessions, alive.event.id, finished)
        failed = await delivery(sessions, dead.event.id, finished)
    assert delivered.webhook_state == "delivered"
    assert (failed.webhook_state, failed.webhook_attempts) == ("failed", 3)
    assert failed.webhook_error is not None
    assert "ClientConnectorError" in failed.webhook_error


async def test_private_addresses_are_refused_unless_allowed(sessions) -> None:
    receiver: Receiver
    async with webhook_receiver() as receiver, sender(sessions, private_targets=False) as webhooks:
        by_address = await raised(sessions, receiver.url)
        by_name = await raised(sessions, receiver.url.replace("127.0.0.1", "localhost"))
        webhooks.submit(by_address)
        webhooks.submit(by_name)
        refused = await delivery(sessions, by_address.event.id, finished)
        unresolved = await delivery(sessions, by_name.event.id, finished)
    assert receiver.bodies == []
    assert (refused.webhook_state, refused.webhook_attempts) == ("failed", 1)
    assert refused.webhook_error == "127.0.0.1 is not a public address"
    assert unresolved.webhook_state == "failed"
    assert unresolved.webhook_error is not None
    assert "no public address" in unresolved.webhook_error

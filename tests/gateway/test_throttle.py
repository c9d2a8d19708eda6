from datetime import UTC, datetime, timedelta

import pytest

from edgecloud_gateway.accounts import throttle
from edgecloud_gateway.accounts.throttle import ThrottlePolicy
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.problems import TooManyRequests

POLICY = ThrottlePolicy(
    free_failures=3, lock_after=6, window=timedelta(minutes=15), lock_for=timedelta(minutes=15)
)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_waits_double_then_lock() -> None:
    waits = [POLICY.blocked_until(n, NOW) for n in range(1, 8)]
    assert waits[:3] == [None, None, None]
    assert [(w - NOW).total_seconds() for w in waits[3:5] if w] == [1, 2]
    assert all(w == NOW + timedelta(minutes=15) for w in waits[5:])


async def test_address_is_throttled_across_accounts(sessions) -> None:
    roomy = ThrottlePolicy(100, 200, timedelta(minutes=15), timedelta(minutes=15))
    policies = {"account": roomy, "address": POLICY}
    for n in range(4):  # four different accounts, one address
        async with transaction(sessions) as session:
            await throttle.record_failure(
                session=session, username=f"user{n}", address="10.9.8.7", policies=policies
            )
    async with transaction(sessions) as session:
        with pytest.raises(TooManyRequests) as refused:
            await throttle.check(
                session=session, username="fresh-user", address="10.9.8.7", policies=policies
            )
    assert refused.value.code == "login_throttled"
    assert "this address" in refused.value.detail
    async with transaction(sessions) as session:
        await throttle.check(
            session=session, username="fresh-user", address="10.9.8.8", policies=policies
        )


async def test_lock_names_the_account(sessions) -> None:
    policies = {
        "account": POLICY,
        "address": ThrottlePolicy(100, 200, timedelta(minutes=15), timedelta(minutes=15)),
    }
    for _ in range(6):
        async with transaction(sessions) as session:
            await throttle.record_failure(
                session=session, username="victim", address="10.0.0.1", policies=policies
            )
    async with transaction(sessions) as session:
        with pytest.raises(TooManyRequests) as refused:
            await throttle.check(
                session=session, username="Victim", address="10.0.0.2", policies=policies
            )
    assert refused.value.code == "login_locked"
    assert int(refused.value.headers["Retry-After"]) > 800
    async with transaction(sessions) as session:
        await throttle.clear_account(session=session, username="victim")
    async with transaction(sessions) as session:
        await throttle.check(
            session=session, username="victim", address="10.0.0.2", policies=policies
        )

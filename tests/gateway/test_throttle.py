"""The login throttle in process, on SQLite and on PostgreSQL (where counting really runs
in parallel): the waits, the budgets of client, address and account, and parallel
attempts that never pass the budget. Through the real gateway: tests/security/
test_login_throttle.py."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from edgecloud_gateway.accounts import throttle
from edgecloud_gateway.accounts.throttle import ThrottlePolicy
from edgecloud_servicekit import migrations
from edgecloud_servicekit.db import transaction
from edgecloud_servicekit.problems import TooManyRequests
from tests.support.databases import migrated_sessions, session_factory
from tests.support.stack import PG_PORT, create_pg_database, drop_pg_database
from tests.support.users import unique

WINDOW = timedelta(minutes=15)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def policies(pair: int = 3, address: int = 1000, account: int = 1000) -> dict[str, ThrottlePolicy]:
    return {
        throttle.PAIR: ThrottlePolicy(pair, timedelta(minutes=15), WINDOW),
        throttle.ADDRESS: ThrottlePolicy(address, timedelta(minutes=15), WINDOW),
        throttle.ACCOUNT: ThrottlePolicy(account, timedelta(seconds=60), WINDOW),
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
async def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    if request.param == "sqlite":
        async with migrated_sessions(tmp_path_factory.mktemp("throttle"), "edgecloud_gateway") as f:
            yield f
        return
    name = await asyncio.to_thread(create_pg_database)
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{PG_PORT}/{name}"
    try:
        await asyncio.to_thread(migrations.upgrade, package="edgecloud_gateway", database_url=url)
        async with session_factory(url) as factory:
            yield factory
    finally:
        await asyncio.to_thread(drop_pg_database, name)


async def attempt(
    sessions: async_sessionmaker[AsyncSession],
    username: str,
    address: str,
    rules: dict[str, ThrottlePolicy],
) -> None:
    async with transaction(sessions) as session:
        await throttle.admit(session=session, username=username, address=address, policies=rules)


async def refused(
    sessions: async_sessionmaker[AsyncSession],
    username: str,
    address: str,
    rules: dict[str, ThrottlePolicy],
) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as caught:
        await attempt(sessions, username, address, rules)
    assert caught.value.code == "login_throttled"
    return caught.value


def test_waits_double_up_to_a_ceiling_and_never_lock() -> None:
    policy = ThrottlePolicy(3, timedelta(seconds=60), WINDOW)
    waits = [policy.blocked_until(n, NOW) for n in range(1, 12)]
    assert waits[:3] == [None, None, None]
    assert [(w - NOW).total_seconds() for w in waits[3:] if w] == [1, 2, 4, 8, 16, 32, 60, 60]


@pytest.mark.parametrize(
    ("address", "client"),
    [
        ("10.1.2.3", "10.1.2.3"),
        ("::ffff:10.1.2.3", "10.1.2.3"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("testclient", "testclient"),
    ],
)
def test_an_ipv6_client_is_its_64(address: str, client: str) -> None:
    assert throttle.client_of(address) == client


async def test_parallel_attempts_never_pass_the_budget(backend) -> None:
    """The check and the count are one statement: of 40 attempts at once, exactly the
    free failures plus the one that starts the first wait get through."""
    username, rules = unique("burst"), policies(pair=3)
    outcomes = await asyncio.gather(
        *(attempt(backend, username, "10.0.0.9", rules) for _ in range(40)),
        return_exceptions=True,
    )
    passed = [o for o in outcomes if o is None]
    others = [o for o in outcomes if o is not None]
    assert len(passed) == 4
    assert all(isinstance(o, TooManyRequests) for o in others), others


async def test_a_strangers_failures_elsewhere_do_not_stop_the_owner(backend) -> None:
    username, rules = unique("owner"), policies(pair=3, account=5)
    for n in range(30):  # many strangers, a few guesses each
        for _ in range(3):
            with contextlib.suppress(TooManyRequests):
                await attempt(backend, username, f"10.66.0.{n}", rules)
    # A guesser that failed before now waits for the account as a whole ...
    assert "this account" in (await refused(backend, username, "10.66.0.1", rules)).detail
    # ... a new address gets its one guess, and then waits too ...
    await attempt(backend, username, "10.77.0.1", rules)
    await refused(backend, username, "10.77.0.1", rules)
    # ... and the owner, with a clean record from their own machine, is let in every time.
    for _ in range(3):
        await attempt(backend, username, "192.0.2.10", rules)
        async with transaction(backend) as session:
            await throttle.forgive(session=session, username=username, address="192.0.2.10")


async def test_one_client_waits_for_one_account_only(backend) -> None:
    username, rules = unique("victim"), policies(pair=3)
    for _ in range(4):
        await attempt(backend, username, "10.0.0.1", rules)
    wait = await refused(backend, username.upper(), "10.0.0.1", rules)
    assert "this account from here" in wait.detail
    assert int(wait.headers["Retry-After"]) == 1
    await attempt(backend, username, "10.0.0.2", rules)  # the owner, elsewhere
    await attempt(backend, unique("other"), "10.0.0.1", rules)  # the guesser, elsewhere


async def test_an_address_is_slowed_across_accounts(backend) -> None:
    rules = policies(pair=100, address=3)
    for _ in range(4):
        await attempt(backend, unique("sprayed"), "10.9.8.7", rules)
    assert "this address" in (await refused(backend, unique("fresh"), "10.9.8.7", rules)).detail
    await attempt(backend, unique("fresh"), "10.9.8.8", rules)


async def test_a_right_password_clears_the_clients_record(backend) -> None:
    username, rules = unique("typo"), policies(pair=3)
    for _ in range(3):
        await attempt(backend, username, "10.0.0.3", rules)
    async with transaction(backend) as session:
        await throttle.forgive(session=session, username=username, address="10.0.0.3")
    for _ in range(4):  # the whole budget again
        await attempt(backend, username, "10.0.0.3", rules)
    await refused(backend, username, "10.0.0.3", rules)

"""The shares of long-lived connections, counted in one replica (the end-to-end tests of
access taken away and of the budget are in tests/security/test_live_*.py)."""

import pytest

from edgecloud_gateway.access.live import EVENTS, LOG_FOLLOW, SHELL, LiveConnections, Shares
from edgecloud_gateway.tokens.service import Caller
from edgecloud_servicekit.identity import Identity
from edgecloud_servicekit.problems import TooManyRequests, Unavailable

SHARES = Shares(
    per_user={EVENTS: 2, LOG_FOLLOW: 1, SHELL: 1},
    per_tenant={EVENTS: 3, LOG_FOLLOW: 5, SHELL: 5},
    budget=6,
)


def caller(user: str, tenant: str) -> Caller:
    identity = Identity(user_id=user, username=user, tenant_id=tenant, roles=frozenset({"member"}))
    return Caller(identity=identity, token_id=f"token-{user}", api_per_minute=600)


def live() -> LiveConnections:
    # Neither the database nor the registry is reached by admission.
    return LiveConnections(sessions=None, registry=None, shares=SHARES)  # type: ignore[arg-type]


def test_a_tenants_users_together_hold_at_most_the_tenants_share() -> None:
    connections = live()
    connections.admit(EVENTS, caller("ann", "t1"))
    connections.admit(EVENTS, caller("ann", "t1"))
    with pytest.raises(TooManyRequests) as per_user:
        connections.admit(EVENTS, caller("ann", "t1"))
    assert per_user.value.code == "too_many_streams"
    held = connections.admit(EVENTS, caller("bob", "t1"))
    with pytest.raises(TooManyRequests) as per_tenant:
        connections.admit(EVENTS, caller("cat", "t1"))
    assert "your tenant" in per_tenant.value.detail
    # Other kinds and other tenants have shares of their own; a release gives one back.
    connections.admit(LOG_FOLLOW, caller("cat", "t1"))
    connections.admit(EVENTS, caller("dan", "t2"))
    connections.release(held)
    connections.admit(EVENTS, caller("cat", "t1"))


def test_the_budget_holds_over_every_tenant() -> None:
    connections = live()
    for n in range(SHARES.budget):
        connections.admit(SHELL, caller(f"user-{n}", f"tenant-{n}"))
    with pytest.raises(Unavailable) as full:
        connections.admit(EVENTS, caller("late", "tenant-late"))
    assert full.value.code == "live_connections_full"
    assert full.value.headers["Retry-After"] == str(SHARES.retry_after_s)
